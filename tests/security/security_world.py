"""The security area's fixtures: `world` seeds two churches on both databases — Grace
(MFA required, sessions time out after 60 minutes, policy set on 1 March 2026) and Hope (SSO
required, default timeout) — and a platform agent; `run` runs a job through the runner as the
CLI does."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select, update

from faithflow_ops.config import Settings
from faithflow_ops.db import Database
from faithflow_ops.jobs import registry
from faithflow_ops.jobs.base import JobContext
from faithflow_ops.jobs.options import fill
from faithflow_ops.jobs.runner import RunResult, run_job
from faithflow_ops.models import AuditLog, OutboundMessage, User, UserSession
from faithflow_ops.tenancy.policies import set_policy
from faithflow_ops.tenancy.tenants import add_tenant

UTC = dt.UTC
NOW = "2026-03-10T12:00:00Z"


def z(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(UTC)


@dataclass
class World:
    db: Database
    grace: int  # tenant ids
    hope: int

    def user(self, email: str, *, tenant: int | None, role: str = "staff", mfa: bool = False,
             disabled: str | None = None) -> int:  # fmt: skip
        with self.db.session() as session:
            row = User(tenant_id=tenant, email=email, name=email.split("@")[0].title(),
                       role=role, mfa_enabled=mfa,
                       disabled_at=z(disabled) if disabled else None)  # fmt: skip
            session.add(row)
            session.flush()
            return row.id

    def login(self, user: int, *, tenant: int | None, method: str = "password",
              mfa: bool = True, seen: str = "2026-03-10T11:50:00Z",
              expires: str | None = None) -> int:  # fmt: skip
        with self.db.session() as session:
            row = UserSession(user_id=user, tenant_id=tenant, auth_method=method,
                              mfa_passed=mfa, last_seen_at=z(seen),
                              expires_at=z(expires) if expires else None)  # fmt: skip
            session.add(row)
            session.flush()
            return row.id

    def session_row(self, session_id: int) -> UserSession:
        with self.db.read_session() as session:
            row = session.get(UserSession, session_id)
            assert row is not None
            session.expunge(row)
            return row

    def user_row(self, user_id: int) -> User:
        with self.db.read_session() as session:
            row = session.get(User, user_id)
            assert row is not None
            session.expunge(row)
            return row


def seed(db: Database) -> World:
    with db.session() as session:
        grace = add_tenant(session, slug="grace", name="Grace Chapel", actor="test")
        hope = add_tenant(session, slug="hope", name="Hope Church", actor="test")
        set_policy(session, "grace", actor="test", mfa_required=True, session_timeout_minutes=60)
        set_policy(session, "hope", actor="test", sso_required=True)
        # the policies were set on 1 March (audit_log is stamped with the wall clock)
        session.execute(update(AuditLog).values(at=z("2026-03-01T09:00:00Z")))
        return World(db, grace.id, hope.id)


def run(db: Database, job: str, now: str, *, dry_run: bool = False, **options: Any) -> RunResult:
    spec = registry.get(job)
    ctx = JobContext(
        now=z(now),
        dry_run=dry_run,
        trigger="cli",
        settings=Settings.from_env(),
        options=fill(spec.options, options, z(now), "json"),
    )
    return run_job(db, spec, ctx)


def messages(db: Database) -> list[OutboundMessage]:
    with db.read_session() as session:
        rows = list(
            session.scalars(
                select(OutboundMessage)
                .where(OutboundMessage.category == "security")
                .order_by(OutboundMessage.id)
            )
        )
        session.expunge_all()
        return rows
