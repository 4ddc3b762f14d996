"""Suspending a tenant: the tenant's status (tenancy) and its open dunning cases, which close
as `suspended` (their pending messages are canceled). One use case over two packages, so it
lives above both: `subs automate` and `faithflow tenants suspend` call it."""

from __future__ import annotations

import datetime as dt

from sqlalchemy.orm import Session

from faithflow_ops.dunning.cases import close_cases
from faithflow_ops.tenancy.tenants import Transition, mark_suspended


def suspend_tenant(
    session: Session, slug: str, *, reason: str, actor: str, now: dt.datetime | None = None
) -> Transition:
    """Suspend an active tenant; suspending a suspended one changes nothing. The tenant's open
    dunning cases close as `suspended` (their pending messages are canceled)."""
    result = mark_suspended(session, slug, reason=reason, actor=actor, now=now)
    if result.changed:
        tenant = result.tenant
        assert tenant.suspended_at is not None
        close_cases(
            session, tenant_id=tenant.id, status="suspended", at=tenant.suspended_at, actor=actor
        )
    return result
