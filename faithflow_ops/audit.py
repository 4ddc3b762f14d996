"""The audit log: one row per change a person or a job made, with before/after."""

from __future__ import annotations

from typing import Any, cast

from sqlalchemy import Table
from sqlalchemy.orm import Session

from faithflow_ops.bulk import insert_rows
from faithflow_ops.db import utcnow
from faithflow_ops.models import AuditLog


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
    (bulk.insert_rows)."""
    insert_rows(session, cast(Table, AuditLog.__table__), rows, conflict=[])
