"""Applying the dunning plan (faithflow_ops.dunning.planner), one action at a time: take a
ladder step (its messages into the outbox), record steps passed over, hand a case over to
suspension, retry a payment at the provider, open or close a case.

Each re-checks that the case is still open while claiming it (`UPDATE … WHERE status =
'open'`, rowcount) — a payment recovered between preview and run sends nothing — and inserts
each attempt `ON CONFLICT DO NOTHING` (a step is never taken twice); anything the plan saw that
no longer holds is a StaleAction. All but the payment retry run in the caller's transaction.
"""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING, Any, cast

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from faithflow_ops import audit
from faithflow_ops.actions import Action, StaleAction, decode
from faithflow_ops.clock import iso
from faithflow_ops.comms import outbox
from faithflow_ops.db import rowcount, upsert_insert
from faithflow_ops.dunning import cases as dc
from faithflow_ops.dunning import retry
from faithflow_ops.dunning.cases import ATTEMPTS, CASES
from faithflow_ops.dunning.planner import (
    SUBS,
    TENANTS,
    CaseStep,
    CloseCase,
    Handover,
    OpenCase,
    RetryPayment,
    SendStep,
    SkipSteps,
    days_past_due,
)
from faithflow_ops.dunning.prefs import preferences_for
from faithflow_ops.dunning.quiet import first_allowed, is_quiet
from faithflow_ops.models import Invoice, Subscription, SubscriptionPlan, Tenant
from faithflow_ops.models.billing import AUTHORIZATION_KEY
from faithflow_ops.models.dunning import DunningAttempt, DunningCase

if TYPE_CHECKING:
    from faithflow_ops.config import Settings

AUDIT_STEP = "dunning.step"
AUDIT_SKIP = "dunning.skip"
AUDIT_RETRY = "dunning.payment_retry"
AUDIT_HANDOVER = "dunning.handover"
# Payment retries call a provider with no transaction open: never in a batch.
UNBATCHED = frozenset({"retry_payment"})


def apply(
    session: Session, action: Action, *, now: dt.datetime, actor: str, settings: Settings
) -> None:
    """Apply one planned action (not a report-only one) or raise StaleAction."""
    kind, data = action.kind, action.data
    if kind == "send_step":
        take_step(session, decode(SendStep, data), now, actor, settings)
    elif kind == "skip_steps":
        record_skipped(session, decode(SkipSteps, data), now, actor)
    elif kind == "handover":
        hand_over(session, decode(Handover, data), now, actor)
    elif kind == "retry_payment":
        retry_payment(session, decode(RetryPayment, data), now, actor, settings)
    elif kind == "open_case":
        open_case(session, decode(OpenCase, data), now, actor)
    elif kind == "close_case":
        close_case(session, decode(CloseCase, data), now, actor)
    else:
        raise ValueError(f"dunning has no action kind {kind!r}")


def _audit(
    session: Session, actor: str, action: str, case: CaseStep, after: dict[str, Any]
) -> None:
    """The audit row of what an action did to its case."""
    audit.record(
        session,
        actor=actor,
        action=action,
        entity_type="dunning_case",
        entity_id=case.case_id,
        tenant_id=case.tenant_id,
        after=after,
    )


def claim_open(session: Session, case_id: int, now: dt.datetime) -> None:
    """Lock the case while it is open (UPDATE … WHERE status = 'open'), else StaleAction."""
    result = session.execute(
        update(CASES)
        .where(CASES.c.id == case_id, CASES.c.status == "open")
        .values(updated_at=now)
        .execution_options(synchronize_session=False)
    )
    if rowcount(result) != 1:
        status = session.scalar(select(CASES.c.status).where(CASES.c.id == case_id))
        raise StaleAction(
            f"dunning case {case_id} is {status or 'gone'} since the plan; nothing done for it"
        )


def _insert_attempt(session: Session, values: dict[str, Any]) -> int | None:
    """Insert one attempt; None when (case, step, channel) is already there."""
    stmt = (
        upsert_insert(session.get_bind().dialect.name, DunningAttempt)
        .values(**values)
        .on_conflict_do_nothing(index_elements=["case_id", "step", "channel"])
        .returning(ATTEMPTS.c.id)
    )
    return cast(int | None, session.execute(stmt).scalar_one_or_none())


def _attempt_values(
    case: CaseStep, step: str, index: int, channel: str, at: dt.datetime, now: dt.datetime
) -> dict[str, Any]:
    return {
        "case_id": case.case_id,
        "tenant_id": case.tenant_id,
        "step": step,
        "step_index": index,
        "channel": channel,
        "scheduled_at": at,
        "created_at": now,
    }


def take_step(
    session: Session, p: SendStep, now: dt.datetime, actor: str, settings: Settings | None = None
) -> None:
    """`send_step`: one outbox message per channel, each with its attempt row (WhatsApp as
    its approved template: `settings`; a channel standing in for another says why)."""
    case_id, step, index, scheduled = p.case_id, p.step, p.step_index, p.scheduled_at
    claim_open(session, case_id, now)
    tenant = session.get(Tenant, p.tenant_id)
    if tenant is None:
        raise StaleAction(f"tenant {p.tenant} no longer exists")
    assert p.template is not None  # a step with channels has a template (policy.parse_policy)
    variables = {
        "amount_minor": p.amount_minor,
        "currency": p.currency,
        "invoice_number": p.invoice_number,
        "days_past_due": days_past_due(scheduled - p.past_due_since),  # as of the day it goes out
        "pay_url": p.pay_url,
        "suspend_at": iso(p.suspend_at),
    }
    sent: dict[str, int] = {}
    for channel in p.channels:
        attempt_id = _insert_attempt(
            session, _attempt_values(p, step, index, channel, scheduled, now)
        )
        if attempt_id is None:
            continue  # this channel of the step was already taken
        queued = outbox.enqueue(
            session,
            channel=channel,
            recipient=p.recipients[channel],
            template=p.template,
            variables=variables,
            idempotency_key=f"dunning:{case_id}:{step}:{channel}",
            now=now,
            tenant=tenant,
            not_before=scheduled,
            category=dc.CATEGORY,
            about=(dc.ABOUT, attempt_id),
            settings=settings,
            note=f"{channel} {p.fallback[channel]}" if channel in p.fallback else None,
        )
        session.execute(
            update(ATTEMPTS)
            .where(ATTEMPTS.c.id == attempt_id)
            .values(message_id=queued.id, detail=f"message {queued.status}")
        )
        sent[channel] = queued.id
    if not sent:
        raise StaleAction(f"dunning case {case_id}: step {step} was already taken")
    after = {"step": step, "messages": sent, "scheduled_at": iso(scheduled)}
    _audit(session, actor, AUDIT_STEP, p, after)


def record_skipped(session: Session, p: SkipSteps, now: dt.datetime, actor: str) -> None:
    """`skip_steps`: an attempt row per channel of each step passed over, marked skipped."""
    case_id = p.case_id
    claim_open(session, case_id, now)
    recorded = []
    for item in p.steps:
        for channel in item.channels:
            values = _attempt_values(p, item.step, item.step_index, channel, now, now)
            values["detail"] = f"{dc.SKIPPED_PREFIX} {item.why}"
            if channel == "payment_retry":
                values["retry_outcome"] = retry.SKIPPED
            if _insert_attempt(session, values) is not None:
                recorded.append(f"{item.step}:{channel}")
    if not recorded:
        raise StaleAction(f"dunning case {case_id}: the steps were already recorded")
    _audit(session, actor, AUDIT_SKIP, p, {"skipped": recorded})


def hand_over(session: Session, p: Handover, now: dt.datetime, actor: str) -> None:
    """`handover`: the case is handed over to suspension (`subs automate` suspends)."""
    case_id, step, suspend_at = p.case_id, p.step, iso(p.suspend_at)
    claim_open(session, case_id, now)
    values = _attempt_values(p, step, p.step_index, "handover", now, now)
    values["detail"] = f"handed over to suspension (suspend at {suspend_at})"
    if _insert_attempt(session, values) is None:
        raise StaleAction(f"dunning case {case_id} was already handed over")
    session.execute(
        update(CASES)
        .where(CASES.c.id == case_id, CASES.c.handed_over_at.is_(None))
        .values(handed_over_at=now)
        .execution_options(synchronize_session=False)
    )
    after = {"step": step, "handed_over_at": iso(now), "suspend_at": suspend_at}
    _audit(session, actor, AUDIT_HANDOVER, p, after)


def _retry_target(session: Session, p: RetryPayment) -> retry.Target:
    """What to charge, read now: the case's invoice if still open, else the oldest open one."""
    sub = session.get(Subscription, p.subscription_id)
    if sub is None:
        raise StaleAction(f"subscription {p.subscription_id} no longer exists")
    case = session.get(DunningCase, p.case_id)
    assert case is not None
    invoice = session.get(Invoice, case.invoice_id) if case.invoice_id is not None else None
    if invoice is None or invoice.status not in dc.OPEN_INVOICE:
        invoice = dc.oldest_open_invoice(session, sub.id)
    tenant = session.get(Tenant, sub.tenant_id)
    plan = session.get(SubscriptionPlan, sub.plan_id)
    amount, currency = case.amount_minor, case.currency
    if invoice is not None:
        amount = max(invoice.amount_due_minor - (invoice.amount_paid_minor or 0), 0)
        currency = invoice.currency
    auth = (sub.metadata_ or {}).get(AUTHORIZATION_KEY)
    # What Paystack may already hold a payment under: the invoice's own charge reference
    # (webhooks.paystack.REFERENCE_KEY) and the case's earlier retries.
    paid: list[str] = []
    if invoice is not None and isinstance((invoice.metadata_ or {}).get("paystackReference"), str):
        paid.append(invoice.metadata_["paystackReference"])
    for earlier in session.scalars(
        select(ATTEMPTS.c.step).where(
            ATTEMPTS.c.case_id == case.id,
            ATTEMPTS.c.channel == "payment_retry",
            ATTEMPTS.c.step != p.step,
            func.coalesce(ATTEMPTS.c.retry_outcome, "") != retry.SKIPPED,
        )
    ):
        paid.append(retry.reference_for(case.id, earlier))
    return retry.Target(
        provider=sub.provider,
        case_id=case.id,
        step=p.step,
        tenant=p.tenant,
        invoice_ref=invoice.provider_invoice_id if invoice is not None else None,
        amount_minor=amount,
        currency=currency,
        authorization_code=auth.strip() if isinstance(auth, str) and auth.strip() else None,
        email=tenant.billing_email if tenant is not None else None,
        plan=plan.code if plan is not None else None,
        paid_references=tuple(paid),
    )


def _not_in_quiet_hours(session: Session, p: RetryPayment, now: dt.datetime) -> None:
    """StaleAction when `now` is in the church's quiet hours: a charge is a contact too (a
    card-issuer SMS at 23:00), re-checked on every attempt; the next run takes it after them."""
    prefs = preferences_for(session, [p.tenant_id]).get(p.tenant_id)
    if prefs is not None and is_quiet(now, prefs.timezone, prefs.quiet_hours):
        until = first_allowed(now, prefs.timezone, prefs.quiet_hours)
        raise StaleAction(
            f"dunning case {p.case_id}: payment retry of step {p.step} is in quiet hours "
            f"({prefs.timezone}) until {iso(until)}; it is taken then"
        )


def retry_payment(
    session: Session, p: RetryPayment, now: dt.datetime, actor: str, settings: Settings
) -> None:
    """`retry_payment`: claim (committed), charge at the provider, record the outcome."""
    case_id, step = p.case_id, p.step
    # 1. Claim: the attempt row, committed at once in its own short transaction.
    with Session(session.get_bind()) as claim, claim.begin():
        claim_open(claim, case_id, now)
        _not_in_quiet_hours(claim, p, now)
        values = _attempt_values(p, step, p.step_index, "payment_retry", now, now)
        values["detail"] = "in progress: the provider was called; no outcome recorded yet"
        attempt_id = _insert_attempt(claim, values)
        if attempt_id is None:
            raise StaleAction(f"dunning case {case_id}: step {step}'s payment retry was taken")
        target = _retry_target(claim, p)
    # 2. The provider call, with no transaction open.
    result = retry.attempt(settings, target)
    # 3. The outcome, in the caller's transaction.
    session.execute(
        update(ATTEMPTS)
        .where(ATTEMPTS.c.id == attempt_id)
        .values(retry_outcome=result.outcome, detail=result.detail[:2000])
    )
    after = {
        "step": step,
        "provider": target.provider,
        "invoice": target.invoice_ref,
        "outcome": result.outcome,
        "detail": result.detail,
    }
    _audit(session, actor, AUDIT_RETRY, p, after)


def open_case(session: Session, p: OpenCase, now: dt.datetime, actor: str) -> None:
    """`open_case`: the case a missed hook did not open."""
    sub = session.scalars(
        select(Subscription).where(Subscription.id == p.subscription_id).with_for_update()
    ).first()
    if sub is None or sub.status not in dc.PAST_DUE:
        raise StaleAction(
            f"subscription {p.subscription_id} is no longer past due "
            f"({sub.status if sub else 'gone'})"
        )
    if dc.open_case(session, sub, now, actor) is None:
        raise StaleAction(f"subscription {sub.id} already has an open dunning case")


def close_case(session: Session, p: CloseCase, now: dt.datetime, actor: str) -> None:
    """`close_case`: the case whose subscription or tenant no longer needs dunning."""
    case_id, status = p.case_id, p.status
    row = session.execute(
        select(SUBS.c.status, TENANTS.c.status, TENANTS.c.deleted_at)
        .join(TENANTS, TENANTS.c.id == SUBS.c.tenant_id)
        .where(SUBS.c.id == p.subscription_id)
    ).first()
    still_due = row is not None and row[0] in dc.PAST_DUE and row[1] == "active" and row[2] is None
    if still_due:
        raise StaleAction(f"subscription {p.subscription_id} is past due again; case stays")
    closed = dc.close_cases(
        session,
        subscription_id=p.subscription_id,
        status=status,
        at=now,
        actor=actor,
    )
    if case_id not in closed:
        raise StaleAction(f"dunning case {case_id} was already closed")
