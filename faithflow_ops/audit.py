"""The audit log: one row per change a person or a job made, with before/after."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any, cast

from sqlalchemy import Table, func, select
from sqlalchemy.orm import Session

from faithflow_ops.bulk import insert_rows
from faithflow_ops.db import utcnow
from faithflow_ops.errors import NotFound, UserError
from faithflow_ops.models import AuditLog, Tenant


def audit_row(
    *,
    actor: str,
    action: str,
    entity_type: str,
    entity_id: int | str,
    tenant_id: int | None = None,
    before: dict[str, Any] | None = None,
    after: dict[str, Any] | None = None,
) -> dict[str, Any]:
    now = utcnow()
    return {
        "actor": actor,
        "action": action,
        "entity_type": entity_type,
        "entity_id": str(entity_id),
        "tenant_id": tenant_id,
        "before": before,
        "after": after,
        "at": now,
        "created_at": now,
    }


def record(session: Session, **fields: Any) -> None:
    """Add one audit entry in the caller's transaction: it lands with the change or not at all."""
    record_many(session, [audit_row(**fields)])


def record_many(session: Session, rows: list[dict[str, Any]]) -> None:
    """Bulk form of `record` for batch jobs: rows from `audit_row`, in one statement
    (bulk.insert_rows). audit_log has no unique key, so nothing can conflict: no ON CONFLICT,
    and SQLAlchemy caches the statement (every interactive change writes one entry)."""
    insert_rows(session, cast(Table, AuditLog.__table__), rows, conflict=None)


# ---------------------------------------------------------------------------------------------
# Browsing (`faithflow audit list`)


@dataclass(frozen=True)
class Page:
    entries: list[dict[str, Any]]
    total: int  # entries that match, however many were returned


def _action_filter(action: str) -> Any:
    """`plan.add` is exact; `plan` (no dot) or `plan.*` is every action of that kind."""
    text = action.strip()
    if not text:
        raise UserError("--action is empty; give an action such as plan.add, or a kind: plan")
    if text.endswith(".*"):
        text = text[:-2]
    elif "." in text:
        return AuditLog.action == text
    return AuditLog.action.like(f"{text}.%")


def list_entries(
    session: Session,
    *,
    tenant: str | None = None,
    since: dt.datetime | None = None,
    action: str | None = None,
    limit: int = 50,
) -> Page:
    """Audit entries, newest first, with the tenant's slug (not its id); `total` counts every
    match. `tenant` is a slug."""
    if limit < 1:
        raise UserError(f"--limit {limit} must be 1 or more")
    conditions: list[Any] = []
    if tenant is not None:
        tenant_id = session.scalar(select(Tenant.id).where(Tenant.slug == tenant.strip()))
        if tenant_id is None:
            raise NotFound(f"no tenant with slug {tenant!r}; see `faithflow tenants list`")
        conditions.append(AuditLog.tenant_id == tenant_id)
    if since is not None:
        conditions.append(AuditLog.at >= since)
    if action is not None:
        conditions.append(_action_filter(action))
    total = session.scalar(select(func.count()).select_from(AuditLog).where(*conditions)) or 0
    rows = session.execute(
        select(AuditLog, Tenant.slug)
        .outerjoin(Tenant, Tenant.id == AuditLog.tenant_id)
        .where(*conditions)
        .order_by(AuditLog.at.desc(), AuditLog.id.desc())
        .limit(limit)
    )
    entries = [
        {
            "id": entry.id,
            "at": entry.at,
            "actor": entry.actor,
            "action": entry.action,
            "tenant": slug,
            "entity_type": entry.entity_type,
            "entity_id": entry.entity_id,
            "before": entry.before,
            "after": entry.after,
        }
        for entry, slug in rows
    ]
    return Page(entries, total)
