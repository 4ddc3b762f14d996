"""The retention area's fixtures: `church` seeds Grace and Hope on both databases with
webhook events and job runs at chosen ages; `run` runs a job through the runner as the CLI
does."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from faithflow_ops.config import Settings
from faithflow_ops.db import Database
from faithflow_ops.jobs import registry
from faithflow_ops.jobs.base import JobContext
from faithflow_ops.jobs.options import fill
from faithflow_ops.jobs.runner import RunResult, run_job
from faithflow_ops.models import JobRun, WebhookEvent

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
