"""The retention area's fixtures: `Data` seeds rows of every data class at chosen ages (webhook
events, job runs, health checks, closed tickets with messages, outbox messages, a soft-deleted
tenant with rows across the schema) on both databases; `run` runs a job through the runner as
the CLI does."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select

from faithflow_ops.config import Settings
from faithflow_ops.db import Database
from faithflow_ops.jobs import registry
from faithflow_ops.jobs.base import JobContext
from faithflow_ops.jobs.options import fill
from faithflow_ops.jobs.runner import RunResult, run_job
from faithflow_ops.models import (
    Bounce,
    DomainCheck,
    HealthCheckResult,
    Incident,
    JobRun,
    OutboundMessage,
    SupportMessage,
    SupportTicket,
    Tenant,
    TenantDomain,
    User,
    WebhookEvent,
)
from faithflow_ops.tenancy.tenants import add_tenant

UTC = dt.UTC
NOW = "2026-06-01T03:40:00Z"


def z(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(UTC)


def days_ago(days: int) -> dt.datetime:
    return z(NOW) - dt.timedelta(days=days)


@dataclass
class Data:
    db: Database
    grace: int
    hope: int

    def events(self, n: int, *, tenant: int | None, age: int, status: str = "applied",
               start: int = 0) -> list[int]:  # fmt: skip
        at = days_ago(age)
        with self.db.session() as session:
            rows = [
                WebhookEvent(provider="stripe", scope="tenant" if tenant else "platform",
                             event_key=f"evt_{tenant}_{age}_{status}_{start + i}",
                             event_type="invoice.paid", tenant_id=tenant,
                             payload={"id": f"evt_{i}", "email": "a@b.example"},
                             raw_body=b'{"id": "evt"}', status=status,
                             first_received_at=at, last_received_at=at)
                for i in range(n)
            ]  # fmt: skip
            session.add_all(rows)
            session.flush()
            return [r.id for r in rows]

    def job_run(self, job: str, age: int) -> int:
        at = days_ago(age)
        with self.db.session() as session:
            row = JobRun(job=job, trigger="cli", dry_run=False, status="succeeded", now=at,
                         started_at=at, finished_at=at)  # fmt: skip
            session.add(row)
            session.flush()
            return row.id

    def health(self, check: str, age: int) -> int:
        with self.db.session() as session:
            row = HealthCheckResult(check_name=check, status="ok", checked_at=days_ago(age))
            session.add(row)
            session.flush()
            return row.id

    def tickets(
        self,
        n: int,
        *,
        tenant: int,
        age: int,
        status: str = "closed",
        name: str = "Ada Obi",
        email: str = "ada.obi@example.org",
    ) -> list[int]:
        """n tickets closed `age` days ago, each with a requester message and an agent reply
        that quote the requester's name, e-mail and phone."""
        at = days_ago(age)
        with self.db.session() as session:
            rows = [
                SupportTicket(tenant_id=tenant, requester_email=email, requester_name=name,
                              subject=f"Refund for {name}", status=status, priority="normal",
                              opened_at=at - dt.timedelta(days=2), status_changed_at=at,
                              closed_at=at if status == "closed" else None)
                for _ in range(n)
            ]  # fmt: skip
            session.add_all(rows)
            session.flush()
            for row in rows:
                session.add_all([
                    SupportMessage(ticket_id=row.id, tenant_id=tenant, author_kind="requester",
                                   author_email=email, public=True, created_at=at,
                                   body=f"I am {name}, call me on +234 801 234 5678 or {email}; "
                                   "order 2026-03-01 cost 5000"),
                    SupportMessage(ticket_id=row.id, tenant_id=tenant, author_kind="agent",
                                   author_email="agent@faithflow.example", public=True,
                                   created_at=at, body=f"Hi {name.split()[0]}, refunded."),
                ])  # fmt: skip
            session.flush()
            return [r.id for r in rows]

    def ticket(self, ticket_id: int) -> tuple[SupportTicket, list[SupportMessage]]:
        with self.db.read_session() as session:
            row = session.get(SupportTicket, ticket_id)
            assert row is not None
            messages = list(session.scalars(
                select(SupportMessage).where(SupportMessage.ticket_id == ticket_id)
                .order_by(SupportMessage.id)
            ))  # fmt: skip
            session.expunge_all()
            return row, messages

    def messages(self, n: int, *, tenant: int | None, age: int, status: str = "delivered",
                 start: int = 0) -> list[int]:  # fmt: skip
        at = days_ago(age)
        with self.db.session() as session:
            rows = [
                OutboundMessage(tenant_id=tenant, channel="email", recipient="ada@example.org",
                                template="dunning_notice", variables={"name": "Ada"},
                                subject="Your invoice, Ada", body="Dear Ada, please pay.",
                                status=status, idempotency_key=f"m-{tenant}-{age}-{status}-"
                                f"{start + i}", not_before=at, next_attempt_at=at,
                                created_at=at, delivered_at=at)
                for i in range(n)
            ]  # fmt: skip
            session.add_all(rows)
            session.flush()
            return [r.id for r in rows]

    def message(self, message_id: int) -> OutboundMessage:
        with self.db.read_session() as session:
            row = session.get(OutboundMessage, message_id)
            assert row is not None
            session.expunge(row)
            return row

    def deleted_tenant(self, slug: str, deleted_age: int) -> dict[str, int]:
        """A tenant soft-deleted `deleted_age` days ago with rows across the schema: users,
        tickets and messages, outbox messages (one bounced), webhook events, a domain and its
        check, an incident a platform health check points at. Returns the ids that matter."""
        with self.db.session() as session:
            tenant = add_tenant(session, slug=slug, name=slug.title(), actor="test")
            tenant.billing_email = f"treasurer@{slug}.example"
            tenant_id = tenant.id
            session.add(User(tenant_id=tenant_id, email=f"owner@{slug}.example", name="Owner",
                             role="owner"))  # fmt: skip
            domain = TenantDomain(tenant_id=tenant_id, hostname=f"www.{slug}.example",
                                  verification_token="tok", next_check_at=days_ago(1),
                                  pending_since=days_ago(400), added_by="test")  # fmt: skip
            incident = Incident(cause=f"domain:www.{slug}.example:tls", kind="domain",
                                tenant_id=tenant_id, title="tls", opened_at=days_ago(400),
                                last_seen_at=days_ago(400))  # fmt: skip
            session.add_all([domain, incident])
            session.flush()
            session.add(DomainCheck(domain_id=domain.id, checked_at=days_ago(400), kind="dns",
                                    result="ok"))  # fmt: skip
            check = HealthCheckResult(check_name=f"domain:{slug}", status="fail",
                                      checked_at=days_ago(1), incident_id=incident.id)  # fmt: skip
            session.add(check)
            session.flush()
            ids = {"tenant": tenant_id, "health_check": check.id, "incident": incident.id}
        ids["tickets"] = len(self.tickets(3, tenant=tenant_id, age=400, status="open"))
        [message, *_] = self.messages(3, tenant=tenant_id, age=1, status="queued", start=99)
        with self.db.session() as session:
            bounce = Bounce(message_id=message, channel="email", recipient="ada@example.org",
                            kind="hard", source="smtp", occurred_at=days_ago(1))  # fmt: skip
            session.add(bounce)
            session.flush()
            ids["bounce"] = bounce.id
        self.events(2, tenant=tenant_id, age=1, status="received", start=77)
        with self.db.session() as session:
            row = session.get(Tenant, tenant_id)
            assert row is not None
            row.deleted_at = days_ago(deleted_age)
        return ids

    def event(self, event_id: int) -> WebhookEvent:
        with self.db.read_session() as session:
            row = session.get(WebhookEvent, event_id)
            assert row is not None
            session.expunge(row)
            return row


def run(db: Database, job: str, now: str = NOW, *, dry_run: bool = False, limit: int | None = None,
        **options: Any) -> RunResult:  # fmt: skip
    spec = registry.get(job)
    ctx = JobContext(
        now=z(now),
        dry_run=dry_run,
        trigger="cli",
        settings=Settings.from_env(),
        limit=limit,
        options=fill(spec.options, options, z(now), "json"),
    )
    return run_job(db, spec, ctx)
