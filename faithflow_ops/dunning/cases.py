"""Dunning cases: one per past-due episode of a subscription (docs/dunning.md).

A case opens when a subscription goes past due (`open_case`, called by
`billing.lifecycle.set_subscription_status`, which the webhooks and `subs automate` both go
through) and closes once (`close_cases`):

- `recovered`: the subscription is active or trialing again (a paid invoice settles it);
  `recovered_after_step` is the last ladder step whose message reached the church (or whose
  retry took the payment) before it (`credited_step`);
- `suspended`: the tenant (or the subscription) was suspended;
- `canceled`: the subscription ended.

Closing cancels the case's messages still waiting in the outbox (queued or scheduled), so
nothing is sent after a recovery. Everything happens in the caller's transaction, audited.
Idempotent: one open case per subscription is a partial unique index
(`uq_dunning_cases_open_subscription`), and the insert treats its conflict as "already open".
"""

from __future__ import annotations

import datetime as dt
from typing import Any, cast

from sqlalchemy import Table, and_, func, or_, select, text, update
from sqlalchemy.orm import Session

from faithflow_ops import audit
from faithflow_ops.comms import outbox
from faithflow_ops.db import rowcount, upsert_insert
from faithflow_ops.models import Invoice, OutboundMessage, Subscription, SubscriptionPlan
from faithflow_ops.models.dunning import DunningAttempt, DunningCase
from faithflow_ops.money import iso_minor

CASES = cast(Table, DunningCase.__table__)
ATTEMPTS = cast(Table, DunningAttempt.__table__)

PAST_DUE = ("past_due", "unpaid")
OPEN_INVOICE = ("draft", "open")
CLOSED_STATUSES = ("recovered", "suspended", "canceled")
# The subscription status that closes a case, and how.
CLOSE_FOR_STATUS = {
    "active": "recovered",
    "trialing": "recovered",
    "canceled": "canceled",
    "suspended": "suspended",
}
ABOUT = "dunning_attempt"  # outbound_messages.about_type of dunning messages
CATEGORY = "dunning"  # outbound_messages.category of dunning messages
SKIPPED_PREFIX = "skipped:"  # dunning_attempts.detail of a step passed over (never taken)


def oldest_open_invoice(session: Session, subscription_id: int) -> Invoice | None:
    """The subscription's oldest invoice still waiting for payment (draft or open)."""
    return session.scalars(
        select(Invoice)
        .where(Invoice.subscription_id == subscription_id, Invoice.status.in_(OPEN_INVOICE))
        .order_by(Invoice.period_start.asc().nulls_first(), Invoice.id)
        .limit(1)
    ).first()


def open_case_id(session: Session, subscription_id: int) -> int | None:
    found: int | None = session.scalar(
        select(CASES.c.id).where(
            CASES.c.subscription_id == subscription_id, CASES.c.status == "open"
        )
    )
    return found


def open_case(session: Session, sub: Subscription, at: dt.datetime, actor: str) -> int | None:
    """Open the case of a subscription that went past due; returns the new case's id, or None
    when it is not past due or a case is already open (nothing changes)."""
    if sub.status not in PAST_DUE:
        return None
    if open_case_id(session, sub.id) is not None:
        return None
    invoice = oldest_open_invoice(session, sub.id)
    if invoice is not None:
        owed = max(invoice.amount_due_minor - (invoice.amount_paid_minor or 0), 0)
        # the invoice holds the provider's units (Stripe: MGA zero-decimal, ISK two-decimal);
        # a case holds ISO 4217 minor units, like the plan's price below
        amount = iso_minor(owed, invoice.currency, invoice.provider)
        currency, invoice_id, ref = invoice.currency, invoice.id, invoice.provider_invoice_id
    else:
        plan = session.get(SubscriptionPlan, sub.plan_id)
        amount = plan.amount_minor if plan is not None else 0
        currency = plan.currency if plan is not None else "USD"
        invoice_id, ref = None, None
    since = sub.past_due_since or at
    values: dict[str, Any] = {
        "tenant_id": sub.tenant_id,
        "subscription_id": sub.id,
        "status": "open",
        "opened_at": at,
        "past_due_since": since,
        "invoice_id": invoice_id,
        "provider_invoice_id": ref,
        "amount_minor": amount,
        "currency": currency,
        "opened_by": actor[:200],
        "created_at": at,
        "updated_at": at,
    }
    stmt = (
        upsert_insert(session.get_bind().dialect.name, DunningCase)
        .values(**values)
        .on_conflict_do_nothing(
            index_elements=["subscription_id"], index_where=text("status = 'open'")
        )
        .returning(CASES.c.id)
    )
    case_id: int | None = session.execute(stmt).scalar_one_or_none()
    if case_id is None:
        return None  # a concurrent transaction opened it first
    audit.record(
        session,
        actor=actor,
        action="dunning_case.open",
        entity_type="dunning_case",
        entity_id=case_id,
        tenant_id=sub.tenant_id,
        after={
            "subscription_id": sub.id,
            "past_due_since": since.isoformat(),
            "invoice": ref,
            "amount_minor": amount,
            "currency": currency,
        },
    )
    return case_id


def credited_step(session: Session, case_id: int, paid_at: dt.datetime) -> str | None:
    """The ladder step a recovery at `paid_at` is credited to: the latest whose message
    actually reached the church before the payment — delivered, or sent for e-mail (no delivery
    feedback) — or whose payment retry took the payment. A step skipped, canceled (by quiet
    hours, then the payment) or still waiting did nothing, and gets no credit."""
    messages = cast(Table, OutboundMessage.__table__)
    reached = or_(
        and_(
            messages.c.status == "delivered",
            func.coalesce(messages.c.delivered_at, messages.c.sent_at) <= paid_at,
        ),
        and_(
            ATTEMPTS.c.channel == "email",
            messages.c.status == "sent",
            messages.c.sent_at <= paid_at,
        ),
        ATTEMPTS.c.retry_outcome == "succeeded",
    )
    step: str | None = session.scalar(
        select(ATTEMPTS.c.step)
        .select_from(ATTEMPTS.outerjoin(messages, messages.c.id == ATTEMPTS.c.message_id))
        .where(ATTEMPTS.c.case_id == case_id, reached)
        .order_by(ATTEMPTS.c.step_index.desc(), ATTEMPTS.c.id.desc())
        .limit(1)
    )
    return step


def close_cases(
    session: Session,
    *,
    subscription_id: int | None = None,
    tenant_id: int | None = None,
    status: str,
    at: dt.datetime,
    actor: str,
) -> list[int]:
    """Close the open cases of a subscription or of a whole tenant as `status` (recovered,
    suspended, canceled); cancels their pending messages. Returns the closed cases' ids."""
    if status not in CLOSED_STATUSES:
        raise ValueError(f"a case closes as one of {CLOSED_STATUSES}, not {status!r}")
    if (subscription_id is None) == (tenant_id is None):
        raise ValueError("close_cases takes subscription_id or tenant_id")
    where = (
        CASES.c.subscription_id == subscription_id
        if subscription_id is not None
        else CASES.c.tenant_id == tenant_id
    )
    found = session.execute(
        select(CASES.c.id, CASES.c.tenant_id).where(where, CASES.c.status == "open")
    ).all()
    closed: list[int] = []
    for case_id, case_tenant in found:
        after_step = credited_step(session, case_id, at) if status == "recovered" else None
        claimed = session.execute(
            update(CASES)
            .where(CASES.c.id == case_id, CASES.c.status == "open")
            .values(
                status=status,
                closed_at=at,
                closed_by=actor[:200],
                recovered_after_step=after_step,
                updated_at=at,
            )
        )
        if rowcount(claimed) != 1:
            continue  # closed meanwhile by someone else
        attempt_ids = session.scalars(
            select(ATTEMPTS.c.id).where(
                ATTEMPTS.c.case_id == case_id, ATTEMPTS.c.message_id.is_not(None)
            )
        ).all()
        canceled = outbox.cancel_pending(
            session,
            [(ABOUT, attempt_id) for attempt_id in attempt_ids],
            now=at,
            reason=f"dunning case {case_id} closed as {status}",
        )
        audit.record(
            session,
            actor=actor,
            action="dunning_case.close",
            entity_type="dunning_case",
            entity_id=case_id,
            tenant_id=case_tenant,
            before={"status": "open"},
            after={
                "status": status,
                "recovered_after_step": after_step,
                "messages_canceled": canceled,
            },
        )
        closed.append(case_id)
    # Loaded DunningCase objects must not keep their pre-close state.
    for obj in list(session.identity_map.values()):
        if isinstance(obj, DunningCase) and obj.id in closed:
            session.expire(obj)
    return closed


def on_subscription_status(
    session: Session, sub: Subscription, at: dt.datetime, actor: str
) -> list[str]:
    """Keep the subscription's case in step with its status (set_subscription_status calls
    this after every change): past due opens one, active/trialing/canceled/suspended close it."""
    if sub.status in PAST_DUE:
        case_id = open_case(session, sub, at, actor)
        return [f"dunning case {case_id} opened"] if case_id is not None else []
    closing = CLOSE_FOR_STATUS.get(sub.status)
    if closing is None:
        return []
    closed = close_cases(session, subscription_id=sub.id, status=closing, at=at, actor=actor)
    return [f"dunning case {case_id} closed as {closing}" for case_id in closed]
