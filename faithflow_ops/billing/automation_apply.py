"""Applying `faithflow subs automate`'s actions (the rules: billing/automation_plan.py).

Each action claims its row with `UPDATE … WHERE id = :id AND <its condition still holds>` and
checks the rowcount (`StaleAction` when it no longer holds), then makes the change with the
rules the webhooks use (`billing.lifecycle`, `dunning.suspension`) and audits it in the same
transaction. Domain times (suspended_at, applied_at) are the run's `now`.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

from sqlalchemy import Table, select, update
from sqlalchemy.orm import Session

from faithflow_ops import audit
from faithflow_ops.actions import Action, StaleAction, decode
from faithflow_ops.billing.automation_plan import (
    AUDIT_NOTICE,
    AUDIT_SUBSCRIPTION,
    CHANGES,
    PAST_DUE,
    PLANS,
    SUBS,
    TENANTS,
    ApplyPlanChange,
    CancelSubscription,
    MarkPastDue,
    ReactivateTenant,
    RejectPlanChange,
    SuspendTenant,
    TrialEndingNotice,
    cancel_due,
    changed_at_period_end,
    live_subscription,
    misfit,
    no_live_sibling,
    not_cancel_due,
    provider_applied,
    trial_notice_due,
    unpaid_after,
)
from faithflow_ops.billing.grace import PlanGrace, plan_grace, resolve_grace
from faithflow_ops.billing.lifecycle import (
    NON_PAYMENT,
    reactivate_if_suspended_for_non_payment,
    set_subscription_status,
)
from faithflow_ops.billing.plan_change_record import move_to_new_paystack_code
from faithflow_ops.clock import iso
from faithflow_ops.db import rowcount, utcnow
from faithflow_ops.dunning.suspension import Candidate, suspend_tenant, suspension_holds
from faithflow_ops.models import Subscription, SubscriptionPlan, Tenant


def apply(session: Session, action: Action, *, now: dt.datetime, actor: str) -> None:
    """Apply one planned action at `now` as `actor`, or raise StaleAction."""
    handler = _APPLY.get(action.kind)
    if handler is None:
        raise ValueError(f"subs automate has no action kind {action.kind!r}")
    session.flush()  # earlier actions of a batch are visible to this claim
    handler(session, now, actor, action)


def _claim(session: Session, table: Table, row_id: int, *conditions: Any, **values: Any) -> bool:
    """`UPDATE table SET … WHERE id = :id AND <conditions>`; True when the row was claimed."""
    values.setdefault("updated_at", utcnow())
    stmt = update(table).where(table.c.id == row_id, *conditions).values(**values)
    return rowcount(session.execute(stmt)) == 1


def _claim_subscription(
    session: Session, sub_id: int, expected: str, *conditions: Any, **values: Any
) -> None:
    """Claim subscription `sub_id` while `conditions` hold, or raise why not (`_stale`)."""
    if not _claim(session, SUBS, sub_id, *conditions, **values):
        raise _stale(session, sub_id, expected)


def _subscription(session: Session, sub_id: int) -> Subscription:
    sub = session.get(Subscription, sub_id)
    if sub is None:
        raise StaleAction(f"subscription {sub_id} no longer exists")
    return sub


def _stale(session: Session, sub_id: int, expected: str) -> StaleAction:
    """Why a subscription could not be claimed: what it is now against what the plan saw."""
    row = session.execute(
        select(
            SUBS.c.status,
            SUBS.c.current_period_end,
            SUBS.c.past_due_since,
            SUBS.c.trial_end,
            SUBS.c.trial_notice_for,
        ).where(SUBS.c.id == sub_id)
    ).first()
    if row is None:
        return StaleAction(f"subscription {sub_id} no longer exists")
    status, period_end, since, trial_end, noticed = row
    parts = [f"status {status}"]
    for name, value in (
        ("period end", period_end),
        ("past due since", since),
        ("trial end", trial_end),
        ("notice sent for", noticed),
    ):
        if value is not None:
            parts.append(f"{name} {iso(value)}")
    return StaleAction(
        f"subscription {sub_id} changed since the plan ({', '.join(parts)}); {expected} no "
        "longer holds — run again to re-plan it"
    )


def _apply_trial_notice(session: Session, now: dt.datetime, actor: str, action: Action) -> None:
    p = decode(TrialEndingNotice, action.data)
    sub_id, trial_end = p.subscription_id, p.trial_end
    _claim_subscription(
        session,
        sub_id,
        "a trial ending within 3 days with no notice sent",
        SUBS.c.trial_end == trial_end,
        *trial_notice_due(now),
        trial_notice_for=trial_end,
    )
    audit.record(
        session,
        actor=actor,
        action=AUDIT_NOTICE,
        entity_type="subscription",
        entity_id=sub_id,
        tenant_id=p.tenant_id,
        before={"trial_notice_for": None},
        after={"trial_end": iso(trial_end), "notice": "trial_ending"},
    )


def _apply_mark_past_due(session: Session, now: dt.datetime, actor: str, action: Action) -> None:
    p = decode(MarkPastDue, action.data)
    sub_id, period_end = p.subscription_id, p.current_period_end
    if changed_at_period_end(session, {sub_id: period_end}):
        raise StaleAction(f"subscription {sub_id}: a plan change takes over at its period end")
    _claim_subscription(
        session,
        sub_id,
        "an active period ended without a paid invoice",
        SUBS.c.provider == "paystack",
        SUBS.c.status == "active",
        ~SUBS.c.cancel_at_period_end,
        SUBS.c.current_period_end == period_end,
        SUBS.c.current_period_end <= now,
        unpaid_after(SUBS.c.current_period_end),
    )
    sub = _subscription(session, sub_id)
    set_subscription_status(
        session, sub, "past_due", period_end, actor, audit_action=AUDIT_SUBSCRIPTION
    )


def _apply_suspend(session: Session, now: dt.datetime, actor: str, action: Action) -> None:
    p = decode(SuspendTenant, action.data)
    sub_id, since = p.subscription_id, p.past_due_since
    _claim_subscription(
        session,
        sub_id,
        "past due since the planned time, nothing else active",
        SUBS.c.status.in_(PAST_DUE),
        SUBS.c.past_due_since == since,
        not_cancel_due(now),
        no_live_sibling(),
    )
    sub = _subscription(session, sub_id)
    tenant = session.get(Tenant, sub.tenant_id)
    assert tenant is not None
    if tenant.deleted_at is not None or tenant.status == "archived":
        raise StaleAction(f"tenant {tenant.slug} is {tenant.status or 'deleted'}; left alone")
    plan = session.get(SubscriptionPlan, sub.plan_id)
    grace = resolve_grace(
        tenant.billing_grace_days,
        PlanGrace(plan.code, plan_grace(plan.metadata_)) if plan is not None else None,
    )
    if since + dt.timedelta(days=grace.days) > now:
        raise StaleAction(
            f"subscription {sub_id}'s grace is now {grace.describe()}: past due since "
            f"{iso(since)}, it runs until {iso(since + dt.timedelta(days=grace.days))}"
        )
    held = suspension_holds(session, [Candidate(sub_id, tenant.id, since, grace.days)], now)
    if sub_id in held:
        raise StaleAction(f"subscription {sub_id} is not suspended: {held[sub_id]}")
    set_subscription_status(session, sub, "suspended", now, actor, audit_action=AUDIT_SUBSCRIPTION)
    suspend_tenant(session, tenant.slug, reason=NON_PAYMENT, actor=actor, now=now)


def _apply_cancel(session: Session, now: dt.datetime, actor: str, action: Action) -> None:
    p = decode(CancelSubscription, action.data)
    sub_id, period_end = p.subscription_id, p.current_period_end
    _claim_subscription(
        session,
        sub_id,
        "a cancellation at a period end that has passed",
        SUBS.c.current_period_end == period_end,
        *cancel_due(now),
    )
    sub = _subscription(session, sub_id)
    set_subscription_status(
        session, sub, "canceled", period_end, actor, audit_action=AUDIT_SUBSCRIPTION
    )


def _claim_change(session: Session, now: dt.datetime, change_id: int, **values: Any) -> None:
    claimed = _claim(
        session,
        CHANGES,
        change_id,
        CHANGES.c.status == "scheduled",
        CHANGES.c.effective_at <= now,
        **values,
    )
    if not claimed:
        status = session.scalar(select(CHANGES.c.status).where(CHANGES.c.id == change_id))
        raise StaleAction(
            f"plan change {change_id} is no longer scheduled (now {status or 'gone'}); "
            "run again to re-plan it"
        )


def _apply_plan_change(session: Session, now: dt.datetime, actor: str, action: Action) -> None:
    p = decode(ApplyPlanChange, action.data)
    change_id, sub_id = p.plan_change_id, p.subscription_id
    from_id, to_id = p.from_plan_id, p.to_plan_id
    _claim_change(session, now, change_id, status="applied", applied_at=now)
    fits = [SUBS.c.status != "canceled"]
    if from_id is not None:
        # on the target plan already: the provider's webhook applied the change first
        fits.append(SUBS.c.plan_id.in_(sorted({from_id, to_id})))
    before = session.scalar(select(SUBS.c.plan_id).where(SUBS.c.id == sub_id))
    expected = f"a live subscription on plan #{from_id} or #{to_id}"
    _claim_subscription(session, sub_id, expected, *fits, plan_id=to_id)
    # Paystack: the claimed row moves to the subscription the change created at the provider
    refs = session.scalar(select(CHANGES.c.provider_refs).where(CHANGES.c.id == change_id))
    sub = session.get(Subscription, sub_id, populate_existing=True)  # after the claim
    assert sub is not None
    moved_from, moved_to, notes = move_to_new_paystack_code(session, sub, refs or {})
    if before == to_id and before != from_id:
        plan = session.scalar(select(PLANS.c.code).where(PLANS.c.id == to_id))
        notes = [provider_applied(sub_id, plan or f"#{to_id}"), *notes]
    session.flush()
    after: dict[str, Any] = {"plan_id": to_id, "status": "applied", **moved_to}
    if notes:
        after["notes"] = notes
    audit.record(
        session,
        actor=actor,
        action="plan_change.apply",
        entity_type="plan_change",
        entity_id=change_id,
        tenant_id=p.tenant_id,
        before={"plan_id": before, "status": "scheduled", **moved_from},
        after=after,
    )


def _apply_reject_change(session: Session, now: dt.datetime, actor: str, action: Action) -> None:
    p = decode(RejectPlanChange, action.data)
    change_id, sub_id = p.plan_change_id, p.subscription_id
    _claim_change(session, now, change_id, status="rejected", error=p.error)
    row = session.execute(select(SUBS.c.status, SUBS.c.plan_id).where(SUBS.c.id == sub_id)).first()
    if row is not None:
        status, plan_id = row
        if misfit(status, plan_id, p.from_plan_id, p.to_plan_id, {}, sub_id) is None:
            raise StaleAction(f"subscription {sub_id} fits plan change {change_id} again")
    audit.record(
        session,
        actor=actor,
        action="plan_change.reject",
        entity_type="plan_change",
        entity_id=change_id,
        tenant_id=p.tenant_id,
        before={"status": "scheduled"},
        after={"status": "rejected", "error": p.error},
    )


def _apply_reactivate(session: Session, now: dt.datetime, actor: str, action: Action) -> None:
    p = decode(ReactivateTenant, action.data)
    tenant_id = p.tenant_id
    claimed = _claim(
        session,
        TENANTS,
        tenant_id,
        TENANTS.c.status == "suspended",
        TENANTS.c.suspension_reason == NON_PAYMENT,
        TENANTS.c.deleted_at.is_(None),
        live_subscription(TENANTS.c.id),
    )
    if not claimed:
        raise StaleAction(
            f"tenant {p.tenant} is no longer suspended for non-payment with an active "
            "subscription; run again to re-plan it"
        )
    session.expire_all()  # the claim moved updated_at under any loaded tenant
    reactivate_if_suspended_for_non_payment(session, tenant_id, actor)


_APPLY: dict[str, Callable[[Session, dt.datetime, str, Action], None]] = {
    "trial_ending_notice": _apply_trial_notice,
    "mark_past_due": _apply_mark_past_due,
    "suspend_tenant": _apply_suspend,
    "cancel_subscription": _apply_cancel,
    "apply_plan_change": _apply_plan_change,
    "reject_plan_change": _apply_reject_change,
    "reactivate_tenant": _apply_reactivate,
}
