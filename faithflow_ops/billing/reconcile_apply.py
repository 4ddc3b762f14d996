"""Applying `faithflow invoices reconcile`'s fixes (the findings: billing/reconcile_plan.py).

Each fix claims its row with a condition (`UPDATE invoices SET status = 'paid' … WHERE
id = :id AND status = :seen`; `INSERT … ON CONFLICT DO NOTHING` for imports and links) and
checks the rowcount, so a rerun, or a webhook that got there first, finds nothing to do
(`StaleAction`); every change is audited in the same transaction. A second run plans only
findings.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, or_, select, update
from sqlalchemy.orm import Session

from faithflow_ops import audit
from faithflow_ops.actions import Action, StaleAction, decode
from faithflow_ops.billing import lifecycle as fx
from faithflow_ops.billing import reconcile_allocation as alloc
from faithflow_ops.billing.reconcile_plan import (
    ACCOUNTS,
    INVOICES,
    SUBS,
    AdvancePeriod,
    MissingLocally,
    RelinkCustomer,
    ReopenInvoice,
    StatusMismatch,
)
from faithflow_ops.billing.reconcile_remote import WebhookRules
from faithflow_ops.clock import iso, jsonable
from faithflow_ops.db import rowcount, upsert_insert, utcnow
from faithflow_ops.models import Invoice, Subscription, Tenant

SOURCE = "job:invoices_reconcile"
AUDIT_IMPORT = "invoice.reconcile_import"
AUDIT_PAID = "invoice.reconcile_paid"
AUDIT_SETTLE = "subscription.reconcile_settle"
AUDIT_LINK = "provider_account.reconcile_link"
AUDIT_REOPEN = "invoice.reconcile_reopen"
AUDIT_PAST_DUE = "subscription.reconcile_past_due"
AUDIT_PERIOD = "subscription.reconcile_period"


@dataclass(frozen=True)
class Run:
    """What every applier needs of the run: its time, who acts, and the webhooks' rules."""

    now: dt.datetime
    actor: str
    rules: WebhookRules


def apply(
    session: Session, action: Action, *, now: dt.datetime, actor: str, rules: WebhookRules
) -> None:
    """Apply one planned fix at `now` as `actor`, or raise StaleAction."""
    handler = _APPLY.get(action.kind)
    if handler is None:
        raise ValueError(f"invoices reconcile cannot apply {action.kind!r}")
    handler(session, Run(now, actor, rules), action.data)


def _settle(session: Session, run: Run, sub_id: int | None, at: dt.datetime) -> list[str]:
    """The webhooks' rule: a subscription with no open invoice left is active again."""
    if sub_id is None:
        return []
    sub = session.get(Subscription, sub_id, with_for_update=True, populate_existing=True)
    if sub is None:
        return []
    return fx.settle_if_paid(session, sub, at, run.actor, audit_action=AUDIT_SETTLE)


def _stamp_paid(run: Run, invoice: Invoice, provider: str, at: dt.datetime) -> None:
    """Record the paid state's time and rank as the webhooks would, so an older event that
    arrives late cannot reopen the invoice."""
    rank = run.rules.paid_rank(provider)
    if fx.is_current(invoice, at, rank):
        fx.stamp(invoice, at, rank)


def _apply_link(session: Session, run: Run, data: Mapping[str, Any]) -> None:
    p = decode(RelinkCustomer, data)
    dialect = session.get_bind().dialect.name
    inserted = session.execute(
        upsert_insert(dialect, ACCOUNTS)
        .values(
            tenant_id=p.tenant_id,
            provider=p.provider,
            kind="customer",
            external_id=p.customer,
            source=SOURCE,
            created_at=utcnow(),
            updated_at=utcnow(),
        )
        .on_conflict_do_nothing(index_elements=["provider", "kind", "external_id"])
        .returning(ACCOUNTS.c.id)
    ).scalar()
    if inserted is None:
        owner = session.scalar(
            select(Tenant.slug)
            .join(ACCOUNTS, ACCOUNTS.c.tenant_id == Tenant.id)
            .where(
                ACCOUNTS.c.provider == p.provider,
                ACCOUNTS.c.kind == "customer",
                ACCOUNTS.c.external_id == p.customer,
            )
        )
        raise StaleAction(f"{p.customer} is already linked (to tenant {owner})")
    audit.record(
        session,
        actor=run.actor,
        action=AUDIT_LINK,
        entity_type="provider_account",
        entity_id=inserted,
        tenant_id=p.tenant_id,
        before=None,
        after={"provider": p.provider, "kind": "customer", "external_id": p.customer},
    )


def _apply_import(session: Session, run: Run, data: Mapping[str, Any]) -> None:
    p = decode(MissingLocally, data)
    provider, ref = p.provider, p.provider_ref
    if provider == "paystack":
        holder = session.scalar(
            select(INVOICES.c.id).where(
                INVOICES.c.provider == "paystack",
                INVOICES.c["metadata"]["paystackReference"].as_string() == ref,
            )
        )
        if holder is not None:
            raise StaleAction(f"invoice {holder} already records {ref}")
    now = utcnow()
    values = {
        "tenant_id": p.tenant_id,
        "subscription_id": p.subscription_id,
        "provider": provider,
        "provider_invoice_id": ref,
        "status": p.status,
        "amount_due_minor": p.amount_due,
        "amount_paid_minor": p.amount_paid,
        "currency": p.currency,
        "period_start": p.period_start,
        "period_end": p.period_end,
        "due_at": p.due_at,
        "paid_at": p.paid_at,
        "hosted_invoice_url": p.hosted_invoice_url[:1000] if p.hosted_invoice_url else None,
        "metadata": p.metadata,
        "created_at": now,
        "updated_at": now,
    }
    dialect = session.get_bind().dialect.name
    invoice_id = session.execute(
        upsert_insert(dialect, INVOICES)
        .values(**values)
        .on_conflict_do_nothing(index_elements=["provider", "provider_invoice_id"])
        .returning(INVOICES.c.id)
    ).scalar()
    if invoice_id is None:
        raise StaleAction(
            f"{provider} invoice {ref} is already recorded (a webhook got there first)"
        )
    after = {k: v for k, v in values.items() if k not in ("created_at", "updated_at")}
    audit.record(
        session,
        actor=run.actor,
        action=AUDIT_IMPORT,
        entity_type="invoice",
        entity_id=invoice_id,
        tenant_id=p.tenant_id,
        before=None,
        after=jsonable(after),
    )
    if p.status == "paid":
        _settle(session, run, p.subscription_id, p.paid_at or run.now)


def _apply_paid(session: Session, run: Run, data: Mapping[str, Any]) -> None:
    p = decode(StatusMismatch, data)
    invoice_id, seen = p.invoice_id, p.seen_status
    paid_at = p.paid_at or run.now
    claimed = session.execute(
        update(INVOICES)
        .where(INVOICES.c.id == invoice_id, INVOICES.c.status == seen)
        .values(
            status="paid",
            amount_paid_minor=p.amount_paid,
            paid_at=func.coalesce(INVOICES.c.paid_at, paid_at),
            updated_at=utcnow(),
        )
    )
    if rowcount(claimed) != 1:
        current = _status_now(session, invoice_id)
        raise StaleAction(f"invoice {invoice_id} is {current} now, not {seen}: nothing to do")
    invoice = session.get(Invoice, invoice_id, populate_existing=True)
    assert invoice is not None
    if p.reference:
        invoice.metadata_ = {**(invoice.metadata_ or {}), "paystackReference": p.reference}
    _stamp_paid(run, invoice, p.provider, paid_at)
    session.flush()
    audit.record(
        session,
        actor=run.actor,
        action=AUDIT_PAID,
        entity_type="invoice",
        entity_id=invoice_id,
        tenant_id=invoice.tenant_id,
        before={"status": seen},
        after={
            "status": "paid",
            "amount_paid_minor": p.amount_paid,
            "provider_ref": p.provider_ref,
        },
    )
    _settle(session, run, invoice.subscription_id, paid_at)


def _status_now(session: Session, invoice_id: int) -> str:
    """The status of an invoice whose claim failed; StaleAction when it no longer exists."""
    current = session.scalar(select(INVOICES.c.status).where(INVOICES.c.id == invoice_id))
    if current is None:
        raise StaleAction(f"invoice {invoice_id} no longer exists")
    return str(current)


def _meta_is(key: str, value: str | None) -> Any:
    member = INVOICES.c["metadata"][key].as_string()
    return member.is_(None) if value is None else member == value


def _apply_reopen(session: Session, run: Run, data: Mapping[str, Any]) -> None:
    """Reopen an invoice paid by a charge that is not its own: only while it is still paid
    with the references the plan saw, and (shared charge) while its owner still holds it."""
    p = decode(ReopenInvoice, data)
    invoice_id = p.invoice_id
    match: dict[str, str | None] = dict(p.match or {})
    if p.cause == "no_reference":
        match = dict.fromkeys(alloc.PAYING_KEYS[p.provider])
    for owner in p.owner_invoice_ids or ():
        holds = [INVOICES.c.id == owner, INVOICES.c.status == "paid"]
        if p.cause == "shared_charge":
            holds += [_meta_is(key, value) for key, value in match.items()]
        if session.scalar(select(INVOICES.c.id).where(*holds)) is None:
            raise StaleAction(
                f"invoice {owner} no longer holds the charge as paid: invoice {invoice_id} is "
                "left as it is; run the reconcile again"
            )
    claimed = session.execute(
        update(INVOICES)
        .where(
            INVOICES.c.id == invoice_id,
            INVOICES.c.status == "paid",
            *(_meta_is(key, value) for key, value in match.items()),
        )
        .values(status="open", amount_paid_minor=0, paid_at=None, updated_at=utcnow())
    )
    if rowcount(claimed) != 1:
        current = _status_now(session, invoice_id)
        raise StaleAction(
            f"invoice {invoice_id} is {current} now, or names another charge: nothing to do"
        )
    invoice = session.get(Invoice, invoice_id, populate_existing=True)
    assert invoice is not None
    meta = dict(invoice.metadata_ or {})
    dropped = {k: v for k, v in (p.drop or {}).items() if meta.get(k) == v}
    for key in dropped:
        meta.pop(key)
    note = {
        "at": iso(run.now),
        "cause": p.cause,
        "reference": p.reference,
        "dropped": dropped,
        "ownerInvoiceIds": list(p.owner_invoice_ids or ()),
        "amountPaid": p.amount_paid,
        "paidAt": iso(p.paid_at),
    }
    meta[alloc.NOTE_KEY] = [*(meta.get(alloc.NOTE_KEY) or []), note]
    invoice.metadata_ = meta
    session.flush()
    audit.record(
        session,
        actor=run.actor,
        action=AUDIT_REOPEN,
        entity_type="invoice",
        entity_id=invoice_id,
        tenant_id=invoice.tenant_id,
        before={
            "status": "paid",
            "amount_paid_minor": p.amount_paid,
            "paid_at": iso(p.paid_at),
            **dropped,
        },
        after={"status": "open", "amount_paid_minor": 0, "paid_at": None, "note": note},
    )
    if p.mark_past_due and invoice.subscription_id is not None:
        _past_due(session, run, invoice.subscription_id, p.due)


def _past_due(session: Session, run: Run, sub_id: int, due: dt.datetime | None) -> None:
    """A subscription the wrong payment settled owes the reopened invoice again: past due from
    now (so the dunning grace runs from today), if it is still active and the invoice is due."""
    sub = session.get(Subscription, sub_id, with_for_update=True, populate_existing=True)
    if sub is None or sub.status not in alloc.SETTLED or due is None or due > run.now:
        return
    fx.set_subscription_status(
        session, sub, "past_due", run.now, run.actor, audit_action=AUDIT_PAST_DUE
    )


def _apply_period(session: Session, run: Run, data: Mapping[str, Any]) -> None:
    """Move a subscription's period forward to its newest paid invoice's (never back)."""
    p = decode(AdvancePeriod, data)
    sub_id, invoice_id = p.subscription_id, p.invoice_id
    start, end = p.period_start, p.period_end
    still_paid = (
        select(INVOICES.c.id)
        .where(
            INVOICES.c.id == invoice_id,
            INVOICES.c.status == "paid",
            INVOICES.c.period_end == end,
        )
        .exists()
    )
    claimed = session.execute(
        update(SUBS)
        .where(
            SUBS.c.id == sub_id,
            or_(SUBS.c.current_period_end.is_(None), SUBS.c.current_period_end < end),
            still_paid,
        )
        .values(
            current_period_end=end,
            current_period_start=start if start is not None else SUBS.c.current_period_start,
            updated_at=utcnow(),
        )
    )
    if rowcount(claimed) != 1:
        raise StaleAction(
            f"subscription {sub_id}'s period already reaches {end.isoformat()}, or invoice "
            f"{invoice_id} is no longer paid for it: nothing to do"
        )
    audit.record(
        session,
        actor=run.actor,
        action=AUDIT_PERIOD,
        entity_type="subscription",
        entity_id=sub_id,
        tenant_id=p.tenant_id,
        before={
            "current_period_start": iso(p.current_period_start),
            "current_period_end": iso(p.current_period_end),
        },
        after={
            "current_period_start": iso(start or p.current_period_start),
            "current_period_end": iso(end),
            "invoice_id": invoice_id,
        },
    )


_APPLY: dict[str, Callable[[Session, Run, Mapping[str, Any]], None]] = {
    "relink_customer": _apply_link,
    "missing_locally": _apply_import,
    "status_mismatch": _apply_paid,
    "reopen_invoice": _apply_reopen,
    "advance_period": _apply_period,
}
