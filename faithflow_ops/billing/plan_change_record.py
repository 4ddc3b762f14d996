"""Plan changes, step 3 (`record`): write the `plan_changes` row the provider calls led to —
and for a change applied now, the subscription's new plan (and Paystack code) — with its audit
entries, in one transaction. Also the rows' documents (`change_doc`), the claimed cancel of a
scheduled row (`cancel_row`), and the move of a subscription to the Paystack code a change
created (`move_to_new_paystack_code`, shared with `subs automate`)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from faithflow_ops import audit
from faithflow_ops.billing.plan_change_rules import EMAIL_TOKEN_KEY, ChangeRequest, Outcome
from faithflow_ops.clock import iso
from faithflow_ops.db import rowcount, utcnow
from faithflow_ops.models import PlanChange, Subscription, SubscriptionPlan


def change_doc(change: PlanChange, plans: dict[int, str], slug: str) -> dict[str, Any]:
    refs = {k: v for k, v in (change.provider_refs or {}).items() if "email_token" not in k}
    return {
        "id": change.id,
        "tenant": slug,
        "subscription_id": change.subscription_id,
        "kind": change.kind,
        "from_plan": plans.get(change.from_plan_id) if change.from_plan_id else None,
        "to_plan": plans.get(change.to_plan_id),
        "from_interval": change.from_interval,
        "to_interval": change.to_interval,
        "status": change.status,
        "effective_at": iso(change.effective_at),
        "applied_at": iso(change.applied_at),
        "canceled_at": iso(change.canceled_at),
        "requested_by": change.requested_by,
        "reason": change.reason,
        "provider_refs": refs,
        "error": change.error,
        "created_at": iso(change.created_at),
    }


def plan_codes(session: Session) -> dict[int, str]:
    return {i: c for i, c in session.execute(select(SubscriptionPlan.id, SubscriptionPlan.code))}


def cancel_row(
    session: Session, change_id: int, *, actor: str, now: dt.datetime, why: str, tenant_id: int
) -> bool:
    """`scheduled` → `canceled` (claimed: False when it is no longer scheduled)."""
    stmt = (
        update(PlanChange)
        .where(PlanChange.id == change_id, PlanChange.status == "scheduled")
        .values(status="canceled", canceled_at=now, updated_at=utcnow())
    )
    if rowcount(session.execute(stmt)) != 1:
        return False
    audit.record(
        session,
        actor=actor,
        action="plan_change.cancel",
        entity_type="plan_change",
        entity_id=change_id,
        tenant_id=tenant_id,
        before={"status": "scheduled"},
        after={"status": "canceled", "why": why},
    )
    return True


def record(
    session: Session, request: ChangeRequest, outcome: Outcome, *, now: dt.datetime
) -> tuple[PlanChange, list[str]]:
    """Write the change (and for one applied now, the subscription's new plan), audited."""
    notes: list[str] = []
    replaced = request.replaces
    if (
        replaced is not None
        and outcome.replaced_canceled
        and cancel_row(
            session,
            replaced.id,
            actor=request.requested_by,
            now=now,
            why="replaced by a new change (--replace)",
            tenant_id=request.tenant_id,
        )
    ):
        notes.append(f"canceled change {replaced.id} (replaced)")
    error = str(outcome.error) if outcome.error is not None else outcome.refund_error
    change = PlanChange(
        tenant_id=request.tenant_id,
        subscription_id=request.subscription_id,
        from_plan_id=request.from_plan_id,
        to_plan_id=request.to_plan_id,
        from_interval=request.from_interval,
        to_interval=request.to_interval,
        kind=request.kind,
        requested_by=request.requested_by,
        reason=request.reason,
        status=outcome.status,
        effective_at=outcome.effective_at,
        applied_at=now if outcome.status == "applied" else None,
        provider_refs=outcome.provider_refs,
        error=error,
    )
    session.add(change)
    session.flush()
    after: dict[str, Any] = {
        "status": change.status,
        "kind": change.kind,
        "from_plan": request.from_plan,
        "to_plan": request.to_plan,
        "to_interval": request.to_interval,
        "effective_at": iso(change.effective_at),
    }
    if error:
        after["error"] = error
    refund = {
        key.removeprefix("refund_"): value
        for key, value in outcome.provider_refs.items()
        if key.startswith("refund_") and key != "refund_error"
    }
    if refund:
        after["refund"] = refund
    action = {"applied": "apply", "scheduled": "schedule", "rejected": "reject"}[change.status]
    audit.record(
        session,
        actor=request.requested_by,
        action=f"plan_change.{action}",
        entity_type="plan_change",
        entity_id=change.id,
        tenant_id=request.tenant_id,
        before={"plan": request.from_plan, "interval": request.from_interval},
        after=after,
    )
    if change.status == "applied":
        notes += _apply_locally(session, request, outcome)
    return change, notes


def move_to_new_paystack_code(
    session: Session, sub: Subscription, refs: Mapping[str, Any]
) -> tuple[dict[str, Any], dict[str, Any], list[str]]:
    """Point `sub` at the Paystack subscription a plan change created (`paystack_new_subscription`
    and its email token in `refs`), so Paystack's later events for it land on this row. Used
    when the change is applied: now (`record`) or at its time (`subs automate`). Returns the
    audit's before/after entries and notes; nothing when the change made no new subscription,
    a note when another row already holds the code (its webhook came first)."""
    new_code = refs.get("paystack_new_subscription")
    if not new_code or new_code == sub.provider_subscription_id:
        return {}, {}, []
    taken = session.scalar(
        select(Subscription.id).where(
            Subscription.provider == "paystack",
            Subscription.provider_subscription_id == new_code,
            Subscription.id != sub.id,
        )
    )
    if taken is not None:
        note = (
            f"{new_code} is already recorded as subscription {taken} (its webhook came first); "
            f"subscription {sub.id} keeps {sub.provider_subscription_id}"
        )
        return {}, {}, [note]
    before = {"provider_subscription_id": sub.provider_subscription_id}
    sub.provider_subscription_id = new_code
    # Another Paystack subscription: its events are ordered among themselves from the start.
    sub.provider_state_at, sub.provider_state_rank = None, 0
    token = refs.get("paystack_new_email_token")
    if token:
        sub.metadata_ = {**(sub.metadata_ or {}), EMAIL_TOKEN_KEY: token}
    return before, {"provider_subscription_id": new_code}, []


def _apply_locally(session: Session, request: ChangeRequest, outcome: Outcome) -> list[str]:
    sub = session.get(Subscription, request.subscription_id, with_for_update=True)
    assert sub is not None
    notes: list[str] = []
    before: dict[str, Any] = {"plan_id": sub.plan_id}
    after: dict[str, Any] = {"plan_id": request.to_plan_id}
    if sub.plan_id != request.from_plan_id:
        notes.append(
            f"subscription {sub.id} was no longer on {request.from_plan} when recorded; it is "
            f"now on {request.to_plan} as the provider is"
        )
    sub.plan_id = request.to_plan_id
    moved_from, moved_to, moved_notes = move_to_new_paystack_code(
        session, sub, outcome.provider_refs
    )
    before.update(moved_from)
    after.update(moved_to)
    notes += moved_notes
    session.flush()
    audit.record(
        session,
        actor=request.requested_by,
        action="subscription.plan_change",
        entity_type="subscription",
        entity_id=sub.id,
        tenant_id=request.tenant_id,
        before=before,
        after=after,
    )
    return notes
