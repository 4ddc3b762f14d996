"""Disputes as operators see them (`faithflow disputes list|show`): read-only. Disputes are
written by the webhooks and by `disputes monitor` (faithflow_ops/jobs/disputes_monitor.py)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from faithflow_ops.errors import NotFound, UserError, one_of
from faithflow_ops.models import Dispute, DisputeAlert
from faithflow_ops.models.payments import DISPUTE_CLOSED as CLOSED
from faithflow_ops.models.payments import DISPUTE_SCOPES
from faithflow_ops.tenancy.records import column_values, row_with_slug, rows_with_slug
from faithflow_ops.tenancy.tenants import get_tenant


@dataclass(frozen=True)
class Page:
    disputes: list[dict[str, Any]]
    total: int  # matching rows, however many were returned


def is_open(dispute: Dispute) -> bool:
    return dispute.closed_at is None and dispute.status not in CLOSED


def dispute_doc(dispute: Dispute, slug: str | None) -> dict[str, Any]:
    """Columns by name, plus `tenant` (slug) and `open`."""
    doc = column_values(dispute)
    doc["tenant"] = slug
    doc["open"] = is_open(dispute)
    return doc


def list_disputes(
    session: Session,
    *,
    open_only: bool = False,
    tenant: str | None = None,
    scope: str | None = None,
    limit: int = 100,
) -> Page:
    """Disputes by evidence deadline (soonest first, none last), then newest."""
    if limit < 1:
        raise UserError(f"limit {limit} must be 1 or more")
    conditions: list[Any] = []
    if open_only:
        conditions += [Dispute.closed_at.is_(None), Dispute.status.not_in(sorted(CLOSED))]
    if tenant is not None:
        conditions.append(Dispute.tenant_id == get_tenant(session, tenant).id)
    if scope is not None:
        conditions.append(Dispute.scope == one_of("scope", scope, DISPUTE_SCOPES))
    order = [
        or_(Dispute.evidence_due_by.is_(None), Dispute.closed_at.is_not(None)),
        Dispute.evidence_due_by,
        Dispute.id.desc(),
    ]
    rows, total = rows_with_slug(session, Dispute, conditions, order, limit)
    return Page([dispute_doc(d, slug) for d, slug in rows], total)


def dispute_details(session: Session, dispute_id: int) -> dict[str, Any]:
    """`disputes show`: every field and the evidence-due alerts sent for it."""
    row = row_with_slug(session, Dispute, dispute_id)
    if row is None:
        raise NotFound(f"no dispute with id {dispute_id}; see `faithflow disputes list`")
    dispute, slug = row
    doc = dispute_doc(dispute, slug)
    doc["alerts"] = [
        {"threshold_days": a.threshold_days, "sent_at": a.sent_at, "channel": a.channel}
        for a in session.scalars(
            select(DisputeAlert)
            .where(DisputeAlert.dispute_id == dispute.id)
            .order_by(DisputeAlert.sent_at, DisputeAlert.id)
        )
    ]
    return doc
