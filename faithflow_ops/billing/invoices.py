"""Invoices as operators see them: `faithflow invoices list` and `show` (read-only)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from faithflow_ops.billing.plans import format_amount
from faithflow_ops.errors import NotFound, UserError, one_of
from faithflow_ops.models import AuditLog, Invoice, Subscription
from faithflow_ops.models.billing import INVOICE_STATUSES, PROVIDERS
from faithflow_ops.tenancy.records import column_values, row_with_slug, rows_with_slug
from faithflow_ops.tenancy.tenants import get_tenant


@dataclass(frozen=True)
class Page:
    invoices: list[dict[str, Any]]
    total: int  # matching rows, however many were returned


def invoice_doc(invoice: Invoice, tenant_slug: str | None) -> dict[str, Any]:
    """Columns by name, plus `tenant` (slug) and the amounts formatted."""
    doc = column_values(invoice)
    doc["tenant"] = tenant_slug
    doc["amount_due"] = format_amount(invoice.amount_due_minor, invoice.currency, invoice.provider)
    doc["amount_paid"] = format_amount(
        invoice.amount_paid_minor, invoice.currency, invoice.provider
    )
    return doc


def list_invoices(
    session: Session,
    *,
    tenant: str | None = None,
    status: str | None = None,
    provider: str | None = None,
    limit: int = 100,
) -> Page:
    """Invoices newest first, filtered; `total` counts all that match."""
    if limit < 1:
        raise UserError(f"--limit {limit} must be 1 or more")
    conditions = []
    if status is not None:
        conditions.append(Invoice.status == one_of("--status", status, INVOICE_STATUSES))
    if provider is not None:
        conditions.append(Invoice.provider == one_of("--provider", provider, PROVIDERS))
    if tenant is not None:
        conditions.append(Invoice.tenant_id == get_tenant(session, tenant).id)
    order = [Invoice.created_at.desc(), Invoice.id.desc()]
    rows, total = rows_with_slug(session, Invoice, conditions, order, limit)
    return Page([invoice_doc(inv, slug) for inv, slug in rows], total)


def invoice_details(session: Session, invoice_id: int) -> dict[str, Any]:
    """`invoices show`: every field, the subscription it belongs to, and its audit trail."""
    found = row_with_slug(session, Invoice, invoice_id)
    if found is None:
        raise NotFound(f"no invoice with id {invoice_id}; see `faithflow invoices list`")
    invoice, slug = found
    doc = invoice_doc(invoice, slug)
    sub = session.get(Subscription, invoice.subscription_id) if invoice.subscription_id else None
    doc["subscription"] = (
        None
        if sub is None
        else {
            "id": sub.id,
            "status": sub.status,
            "provider_subscription_id": sub.provider_subscription_id,
        }
    )
    doc["audit"] = [
        {"at": row.at, "actor": row.actor, "action": row.action, "before": row.before,
         "after": row.after}
        for row in session.scalars(
            select(AuditLog)
            .where(AuditLog.entity_type == "invoice", AuditLog.entity_id == str(invoice.id))
            .order_by(AuditLog.id)
        )
    ]  # fmt: skip
    return doc
