"""`faithflow subs automate`: trial notices, past due, suspension, cancellation, plan changes and
the reactivation safety net — on SQLite and Postgres."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from helpers import running, said
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from faithflow_ops.config import Settings
from faithflow_ops.db import Database
from faithflow_ops.dunning.policy import Policy, Step, save_policy
from faithflow_ops.dunning.suspension import suspend_tenant
from faithflow_ops.jobs import registry
from faithflow_ops.jobs.base import Action, JobContext
from faithflow_ops.jobs.runner import RunResult, apply_one, run_job
from faithflow_ops.jobs.subs_automate import JOB, SubscriptionsAutomate
from faithflow_ops.models import (
    AuditLog,
    Invoice,
    JobRun,
    PlanChange,
    Subscription,
    SubscriptionPlan,
    Tenant,
)

SPEC = registry.get("subscriptions_automate")
NOW = dt.datetime(2026, 3, 2, 9, 0, tzinfo=dt.UTC)  # a Monday
DAY = dt.timedelta(days=1)


def ctx(dry_run: bool = False, now: dt.datetime = NOW, **kw: Any) -> JobContext:
    return JobContext(
        now=now,
        dry_run=dry_run,
        trigger="cli",
        settings=Settings.from_env({}),
        actor="test:ops",
        **kw,
    )


class World:
    def __init__(self, db: Database) -> None:
        self.db = db
        self.tenants: dict[str, int] = {}
        self.plans: dict[str, int] = {}

    def tenant(self, slug: str = "grace", **columns: Any) -> int:
        if slug not in self.tenants:
            with self.db.session() as s:
                t = Tenant(slug=slug, name=slug.title(), **columns)
                s.add(t)
                s.flush()
                self.tenants[slug] = t.id
        return self.tenants[slug]

    def plan(self, code: str = "basic", **metadata: Any) -> int:
        if code not in self.plans:
            with self.db.session() as s:
                p = SubscriptionPlan(
                    code=code,
                    name=code.title(),
                    amount_minor=5000,
                    currency="NGN",
                    interval="month",
                    metadata_=metadata,
                )
                s.add(p)
                s.flush()
                self.plans[code] = p.id
        return self.plans[code]

    def sub(
        self, *, tenant: str = "grace", plan: str = "basic", provider: str = "paystack", **kw: Any
    ) -> int:
        tenant_id, plan_id = self.tenant(tenant), self.plan(plan)
        kw.setdefault("status", "active")
        with self.db.session() as s:
            sub = Subscription(tenant_id=tenant_id, plan_id=plan_id, provider=provider, **kw)
            s.add(sub)
            s.flush()
            return sub.id

    def invoice(self, sub_id: int, *, status: str = "paid", **kw: Any) -> int:
        with self.db.session() as s:
            sub = s.get(Subscription, sub_id)
            assert sub is not None
            inv = Invoice(
                tenant_id=sub.tenant_id,
                subscription_id=sub_id,
                provider=sub.provider,
                status=status,
                currency="NGN",
                amount_due_minor=5000,
                **kw,
            )
            s.add(inv)
            s.flush()
            return inv.id

    def plan_change(self, sub_id: int, to_plan: str, effective_at: dt.datetime, **kw: Any) -> int:
        to_plan_id = self.plan(to_plan)
        with self.db.session() as s:
            sub = s.get(Subscription, sub_id)
            assert sub is not None
            kw.setdefault("from_plan_id", sub.plan_id)
            kw.setdefault("kind", "upgrade")
            change = PlanChange(
                tenant_id=sub.tenant_id,
                subscription_id=sub_id,
                to_plan_id=to_plan_id,
                effective_at=effective_at,
                requested_by="test",
                **kw,
            )
            s.add(change)
            s.flush()
            return change.id

    def get(self, model: Any, row_id: int) -> Any:
        with self.db.read_session() as s:
            row = s.get(model, row_id)
            assert row is not None
            s.expunge(row)
            return row

    def change(self, model: Any, row_id: int, **values: Any) -> None:
        with self.db.session() as s:
            row = s.get(model, row_id)
            assert row is not None
            for name, value in values.items():
                setattr(row, name, value)


@pytest.fixture
def world(db: Database) -> World:
    return World(db)


def run(db: Database, dry_run: bool = False, job: Any = None, **kw: Any) -> RunResult:
    result = run_job(db, SPEC, ctx(dry_run, **kw), job=job)
    assert result.status == "succeeded", (result.error, [a.to_dict() for a in result.actions])
    return result


def planned(result: RunResult) -> list[tuple[str, str]]:
    return [(a.action.kind, a.action.target) for a in result.actions]


def audit(db: Database, action: str | None = None) -> list[AuditLog]:
    with db.read_session() as s:
        query = select(AuditLog).order_by(AuditLog.id)
        if action is not None:
            query = query.where(AuditLog.action == action)
        return list(s.scalars(query))


def snapshot(db: Database) -> dict[str, Any]:
    """Every row the job may write (job_runs excepted)."""
    out: dict[str, Any] = {}
    with db.read_session() as s:
        for model in (Subscription, Tenant, PlanChange, AuditLog, Invoice):
            rows = s.scalars(select(model).order_by(model.id)).all()
            out[model.__tablename__] = [
                {c.key: getattr(r, c.key) for c in model.__mapper__.column_attrs} for r in rows
            ]
    return out


# --- trial_ending_notice --------------------------------------------------------------------------


def test_a_trial_ending_within_three_days_gets_one_notice(world: World) -> None:
    end = NOW + 2 * DAY
    sub = world.sub(status="trialing", trial_end=end, provider="stripe")
    world.sub(status="trialing", trial_end=NOW + 4 * DAY, tenant="later", provider="stripe")
    world.sub(status="trialing", trial_end=NOW - DAY, tenant="ended", provider="stripe")
    world.sub(status="active", trial_end=NOW + DAY, tenant="paid", provider="stripe")

    preview = run(world.db, dry_run=True)
    assert planned(preview) == [("trial_ending_notice", f"subscription:{sub}")]
    action = preview.actions[0].action
    assert action.data["tenant"] == "grace"
    assert action.data["rule"] == "trial_ending_notice"
    assert "trial ends" in action.reason and "2026-03-04" in action.reason

    result = run(world.db)
    assert result.outcomes == {"applied": 1}
    assert world.get(Subscription, sub).trial_notice_for == end
    [row] = audit(world.db, "subscription.trial_ending_notice")
    assert (row.entity_id, row.tenant_id) == (str(sub), world.tenants["grace"])
    assert row.after == {"trial_end": end.isoformat(), "notice": "trial_ending"}

    assert planned(run(world.db)) == []  # once per trial
    next_day = planned(run(world.db, now=NOW + DAY))  # the later trial's turn, not ours again
    assert f"subscription:{sub}" not in {target for _, target in next_day}


def test_a_new_trial_end_gets_a_new_notice(world: World) -> None:
    sub = world.sub(status="trialing", trial_end=NOW + DAY, provider="stripe")
    run(world.db)
    world.change(Subscription, sub, trial_end=NOW + 10 * DAY)  # the trial was extended
    assert planned(run(world.db)) == []
    later = NOW + 8 * DAY
    assert planned(run(world.db, now=later)) == [("trial_ending_notice", f"subscription:{sub}")]
    assert world.get(Subscription, sub).trial_notice_for == NOW + 10 * DAY
    assert len(audit(world.db, "subscription.trial_ending_notice")) == 2


# --- mark_past_due --------------------------------------------------------------------------------


def test_a_paystack_period_ended_without_a_paid_invoice_is_marked_past_due(world: World) -> None:
    period_end = NOW - 2 * DAY
    due = world.sub(current_period_end=period_end)
    renewed = world.sub(current_period_end=period_end, tenant="renewed")
    world.invoice(renewed, period_start=period_end, period_end=period_end + 30 * DAY)
    old_paid = world.sub(current_period_end=period_end, tenant="old-paid")
    world.invoice(old_paid, period_start=period_end - 30 * DAY, period_end=period_end)
    world.invoice(
        old_paid, status="open", period_start=period_end, period_end=period_end + 30 * DAY
    )
    world.sub(current_period_end=NOW + DAY, tenant="running")
    world.sub(current_period_end=period_end, tenant="stripe-one", provider="stripe")

    result = run(world.db)
    assert sorted(planned(result)) == [
        ("mark_past_due", f"subscription:{due}"),
        ("mark_past_due", f"subscription:{old_paid}"),
    ]
    for sub_id in (due, old_paid):
        sub = world.get(Subscription, sub_id)
        assert (sub.status, sub.past_due_since) == ("past_due", period_end)
    assert world.get(Subscription, renewed).status == "active"
    rows = audit(world.db, "subscription.automate")
    assert {r.entity_id for r in rows} == {str(due), str(old_paid)}
    assert rows[0].after["status"] == "past_due"
    assert planned(run(world.db)) == []


def test_a_period_end_a_paystack_plan_change_takes_over_is_not_a_missed_renewal(
    world: World,
) -> None:
    """A Paystack change starts its new subscription at the old period end (start_date): the
    new subscription charges then, so that period end is not a missed payment (found by the
    Paystack end-to-end plan change flow)."""
    period_end = NOW - 2 * DAY
    changing = world.sub(current_period_end=period_end, tenant="changing")
    world.plan_change(changing, "pro", period_end, status="applied", applied_at=period_end)
    later = world.sub(current_period_end=period_end, tenant="later")
    world.plan_change(later, "pro", period_end + 10 * DAY)  # not at this period end
    assert planned(run(world.db)) == [("mark_past_due", f"subscription:{later}")]
    assert world.get(Subscription, changing).status == "active"


def test_a_subscription_cancelling_at_period_end_is_canceled_not_marked_past_due(
    world: World,
) -> None:
    sub = world.sub(current_period_end=NOW - DAY, cancel_at_period_end=True)
    assert planned(run(world.db)) == [("cancel_subscription", f"subscription:{sub}")]
    row = world.get(Subscription, sub)
    assert (row.status, row.canceled_at, row.past_due_since) == ("canceled", NOW - DAY, None)


# --- suspend_tenant -------------------------------------------------------------------------------


def test_past_due_beyond_the_default_grace_suspends_the_tenant(world: World) -> None:
    late = world.sub(status="past_due", past_due_since=NOW - 15 * DAY)
    world.sub(status="past_due", past_due_since=NOW - 13 * DAY, tenant="within")

    preview = run(world.db, dry_run=True)
    assert planned(preview) == [("suspend_tenant", f"subscription:{late}")]
    assert "14 days (default)" in preview.actions[0].action.reason

    run(world.db)
    sub = world.get(Subscription, late)
    tenant = world.get(Tenant, world.tenants["grace"])
    assert sub.status == "suspended"
    assert (tenant.status, tenant.suspension_reason, tenant.suspended_at) == (
        "suspended",
        "non_payment",
        NOW,
    )
    [entry] = audit(world.db, "tenant.suspend")
    assert entry.after["suspension_reason"] == "non_payment"
    assert world.get(Tenant, world.tenants["within"]).status == "active"
    assert planned(run(world.db)) == []


def test_grace_comes_from_the_tenant_then_the_plan_then_the_default(world: World) -> None:
    since = NOW - 20 * DAY
    plan_30 = world.sub(status="past_due", past_due_since=since, plan="long", tenant="a")
    world.plan("long", graceDays=30)
    world.change(SubscriptionPlan, world.plans["long"], metadata_={"graceDays": 30})
    tenant_3 = world.sub(status="past_due", past_due_since=NOW - 4 * DAY, tenant="b")
    world.change(Tenant, world.tenants["b"], billing_grace_days=3)
    tenant_over_plan = world.sub(status="past_due", past_due_since=since, plan="long", tenant="c")
    world.change(Tenant, world.tenants["c"], billing_grace_days=10)
    tenant_long = world.sub(status="past_due", past_due_since=since, tenant="d")
    world.change(Tenant, world.tenants["d"], billing_grace_days=60)
    bad_plan = world.sub(status="past_due", past_due_since=since, plan="odd", tenant="e")
    world.change(SubscriptionPlan, world.plans["odd"], metadata_={"graceDays": "soon"})

    result = run(world.db, dry_run=True)
    reasons = {a.action.target: a.action.reason for a in result.actions}
    assert set(reasons) == {
        f"subscription:{tenant_3}",
        f"subscription:{tenant_over_plan}",
        f"subscription:{bad_plan}",
    }
    assert "3 days (tenant)" in reasons[f"subscription:{tenant_3}"]
    assert "10 days (tenant)" in reasons[f"subscription:{tenant_over_plan}"]
    assert "14 days (default)" in reasons[f"subscription:{bad_plan}"]
    assert f"subscription:{plan_30}" not in reasons
    assert f"subscription:{tenant_long}" not in reasons
    # 31 days on: the plan's 30 days are up, the tenant's 60 are not
    later = {a.action.target for a in run(world.db, dry_run=True, now=since + 31 * DAY).actions}
    assert f"subscription:{plan_30}" in later
    assert f"subscription:{tenant_long}" not in later


def test_a_period_long_unpaid_is_marked_past_due_and_held_for_the_final_notice(
    world: World,
) -> None:
    # Marking it past due opens its dunning case: no suspension before the final notice
    # (issue 21, point 7; tests/dunning/test_dunning_suspension.py has the ladder's side).
    sub = world.sub(current_period_end=NOW - 20 * DAY)
    result = run(world.db)
    assert planned(result) == [
        ("mark_past_due", f"subscription:{sub}"),
        ("suspension_held", f"subscription:{sub}"),
    ]
    assert "run `faithflow dunning run`" in result.actions[1].action.reason
    assert result.outcomes == {"applied": 1, "reported": 1}
    row = world.get(Subscription, sub)
    assert (row.status, row.past_due_since) == ("past_due", NOW - 20 * DAY)
    assert world.get(Tenant, world.tenants["grace"]).status == "active"
    assert planned(run(world.db)) == [("suspension_held", f"subscription:{sub}")]


def test_a_period_long_unpaid_is_suspended_in_one_run_when_no_step_sends(world: World) -> None:
    with world.db.session() as s:  # a ladder with no final notice: the grace alone decides
        save_policy(s, Policy((Step("end", dt.timedelta(days=14), (), None, handover=True),)),
                    source=None, actor="test")  # fmt: skip
    sub = world.sub(current_period_end=NOW - 20 * DAY)
    result = run(world.db)
    assert planned(result) == [
        ("mark_past_due", f"subscription:{sub}"),
        ("suspend_tenant", f"subscription:{sub}"),
    ]
    assert result.outcomes == {"applied": 2}
    row = world.get(Subscription, sub)
    assert (row.status, row.past_due_since) == ("suspended", NOW - 20 * DAY)
    assert world.get(Tenant, world.tenants["grace"]).status == "suspended"
    assert planned(run(world.db)) == []


def test_a_past_due_since_already_set_is_kept(world: World) -> None:
    sub = world.sub(status="unpaid", past_due_since=NOW - 40 * DAY, current_period_end=NOW - DAY)
    run(world.db)
    row = world.get(Subscription, sub)
    assert (row.status, row.past_due_since) == ("suspended", NOW - 40 * DAY)


def test_a_tenant_with_another_active_subscription_is_not_suspended(world: World) -> None:
    # One live subscription per tenant (uq_subscriptions_live_tenant): the past-due one was
    # canceled when the tenant took the active one, and its old clock suspends nobody.
    world.sub(status="canceled", past_due_since=NOW - 30 * DAY, canceled_at=NOW - 2 * DAY)
    world.sub(status="active", provider="stripe", current_period_end=NOW + 10 * DAY)
    assert planned(run(world.db)) == []
    assert world.get(Tenant, world.tenants["grace"]).status == "active"


def test_archived_and_deleted_tenants_are_left_alone(world: World) -> None:
    world.sub(status="past_due", past_due_since=NOW - 30 * DAY, tenant="gone")
    world.change(Tenant, world.tenants["gone"], deleted_at=NOW - DAY)
    world.sub(status="past_due", past_due_since=NOW - 30 * DAY, tenant="old")
    world.change(Tenant, world.tenants["old"], status="archived")
    assert planned(run(world.db)) == []


def test_a_tenant_suspended_by_hand_keeps_its_reason(world: World) -> None:
    sub = world.sub(status="past_due", past_due_since=NOW - 30 * DAY)
    with world.db.session() as s:
        suspend_tenant(s, "grace", reason="abuse report", actor="test")
    run(world.db)
    assert world.get(Subscription, sub).status == "suspended"
    assert world.get(Tenant, world.tenants["grace"]).suspension_reason == "abuse report"
    assert planned(run(world.db)) == []  # and it is not "reactivated" by the safety net


# --- cancel_subscription --------------------------------------------------------------------------


def test_cancel_at_period_end_cancels_once_the_period_has_ended(world: World) -> None:
    due = world.sub(provider="stripe", current_period_end=NOW - DAY, cancel_at_period_end=True)
    world.sub(
        provider="stripe",
        current_period_end=NOW + DAY,
        cancel_at_period_end=True,
        tenant="not-yet",
    )
    world.sub(
        provider="stripe",
        current_period_end=NOW - DAY,
        cancel_at_period_end=True,
        status="canceled",
        tenant="done",
    )
    result = run(world.db)
    assert planned(result) == [("cancel_subscription", f"subscription:{due}")]
    row = world.get(Subscription, due)
    assert (row.status, row.canceled_at) == ("canceled", NOW - DAY)
    assert planned(run(world.db)) == []


# --- apply_plan_change ----------------------------------------------------------------------------


def test_a_scheduled_plan_change_applies_when_its_time_has_come(world: World) -> None:
    sub = world.sub(provider="stripe", current_period_end=NOW + 9 * DAY)
    due = world.plan_change(sub, "plus", NOW - DAY)
    future = world.plan_change(sub, "pro", NOW + DAY)
    canceled = world.plan_change(sub, "max", NOW - DAY, status="canceled")

    preview = run(world.db, dry_run=True)
    assert planned(preview) == [("apply_plan_change", f"plan_change:{due}")]
    assert preview.actions[0].action.data["subscription_id"] == sub
    assert "basic -> plus" in preview.actions[0].action.reason

    run(world.db)
    assert world.get(Subscription, sub).plan_id == world.plans["plus"]
    change = world.get(PlanChange, due)
    assert (change.status, change.applied_at) == ("applied", NOW)
    assert world.get(PlanChange, future).status == "scheduled"
    assert world.get(PlanChange, canceled).status == "canceled"
    [entry] = audit(world.db, "plan_change.apply")
    assert entry.before == {"plan_id": world.plans["basic"], "status": "scheduled"}
    assert entry.after == {"plan_id": world.plans["plus"], "status": "applied"}
    assert planned(run(world.db)) == []


def test_a_plan_change_that_no_longer_fits_is_rejected(world: World) -> None:
    moved = world.sub(provider="stripe")
    change = world.plan_change(moved, "plus", NOW - DAY)
    world.change(Subscription, moved, plan_id=world.plan("pro"))
    ended = world.sub(provider="stripe", status="canceled", tenant="ended")
    gone = world.plan_change(ended, "plus", NOW - DAY)

    result = run(world.db)
    assert sorted(planned(result)) == [
        ("reject_plan_change", f"plan_change:{change}"),
        ("reject_plan_change", f"plan_change:{gone}"),
    ]
    row = world.get(PlanChange, change)
    assert row.status == "rejected"
    assert "no longer on plan basic" in (row.error or "")
    assert "canceled" in (world.get(PlanChange, gone).error or "")
    assert world.get(Subscription, moved).plan_id == world.plans["pro"]
    assert planned(run(world.db)) == []


def test_a_due_change_the_provider_already_applied_is_applied_not_rejected(world: World) -> None:
    # Stripe's customer.subscription.updated for the schedule's new phase (and, for Paystack,
    # whatever moved the row) lands before the job: the row is on the change's target already.
    stripe = world.sub(provider="stripe", plan="pro", provider_subscription_id="sub_1")
    downgrade = world.plan_change(stripe, "starter", NOW - 2 * DAY, kind="downgrade")
    world.change(Subscription, stripe, plan_id=world.plan("starter"))
    refs = {
        "paystack_old_subscription": "SUB_old1",
        "paystack_new_subscription": "SUB_new1",
        "paystack_new_email_token": "tokNew1",
    }
    moved = world.sub(tenant="hope", plan="pro", provider_subscription_id="SUB_new1")
    on_new = world.plan_change(moved, "starter", NOW - DAY, provider_refs=refs)
    world.change(Subscription, moved, plan_id=world.plan("starter"))
    half = world.sub(tenant="faith", plan="pro", provider_subscription_id="SUB_old2")
    old_refs = {**refs, "paystack_old_subscription": "SUB_old2"}
    old_refs.update(paystack_new_subscription="SUB_new2", paystack_new_email_token="tokNew2")
    on_old = world.plan_change(half, "starter", NOW - DAY, provider_refs=old_refs)
    world.change(Subscription, half, plan_id=world.plan("starter"))
    third = world.sub(tenant="joy", plan="pro", provider="stripe")
    elsewhere = world.plan_change(third, "starter", NOW - DAY)
    world.change(Subscription, third, plan_id=world.plan("basic"))

    preview = run(world.db, dry_run=True)
    assert sorted(planned(preview)) == sorted(
        [
            ("apply_plan_change", f"plan_change:{downgrade}"),
            ("apply_plan_change", f"plan_change:{on_new}"),
            ("apply_plan_change", f"plan_change:{on_old}"),
            ("reject_plan_change", f"plan_change:{elsewhere}"),
        ]
    )
    reasons = {a.action.target: a.action.reason for a in preview.actions}
    assert "already on plan starter" in reasons[f"plan_change:{downgrade}"]
    assert "the provider applied it" in reasons[f"plan_change:{downgrade}"]

    result = run(world.db)
    assert result.outcomes == {"applied": 4}
    for change_id in (downgrade, on_new, on_old):
        row = world.get(PlanChange, change_id)
        assert (row.status, row.applied_at, row.error) == ("applied", NOW, None)
    rejected = world.get(PlanChange, elsewhere)
    assert rejected.status == "rejected"
    assert rejected.error == f"subscription {third} is no longer on plan pro (now basic)"
    assert world.get(Subscription, stripe).plan_id == world.plans["starter"]
    assert world.get(Subscription, third).plan_id == world.plans["basic"]
    # Paystack: a row already on the new code stays; one still on the old code moves to it
    assert world.get(Subscription, moved).provider_subscription_id == "SUB_new1"
    after_move = world.get(Subscription, half)
    assert after_move.provider_subscription_id == "SUB_new2"
    assert after_move.metadata_["paystackEmailToken"] == "tokNew2"

    entries = {int(e.entity_id): e for e in audit(world.db, "plan_change.apply")}
    assert set(entries) == {downgrade, on_new, on_old}
    starter = world.plans["starter"]

    def provider_applied(sub_id: int) -> str:
        return (
            f"subscription {sub_id} is already on plan starter: the provider applied it (its "
            "webhook came first)"
        )

    for change_id, sub_id in ((downgrade, stripe), (on_new, moved)):
        assert entries[change_id].before == {"plan_id": starter, "status": "scheduled"}
        assert entries[change_id].after == {
            "plan_id": starter,
            "status": "applied",
            "notes": [provider_applied(sub_id)],
        }
    assert entries[on_old].before == {
        "plan_id": starter,
        "status": "scheduled",
        "provider_subscription_id": "SUB_old2",
    }
    assert entries[on_old].after == {
        "plan_id": starter,
        "status": "applied",
        "provider_subscription_id": "SUB_new2",
        "notes": [provider_applied(half)],
    }
    assert [e.entity_id for e in audit(world.db, "plan_change.reject")] == [str(elsewhere)]
    assert planned(run(world.db)) == []


def test_a_target_plan_reached_between_plan_and_apply_still_applies(world: World) -> None:
    sub = world.sub(provider="stripe", plan="pro")
    change = world.plan_change(sub, "starter", NOW - DAY, kind="downgrade")
    job = Meddling(lambda: world.change(Subscription, sub, plan_id=world.plan("starter")))
    [item] = run(world.db, job=job).actions
    assert (item.action.kind, item.outcome) == ("apply_plan_change", "applied")
    assert world.get(PlanChange, change).status == "applied"
    [entry] = audit(world.db, "plan_change.apply")
    starter = world.plans["starter"]
    assert entry.before == {"plan_id": starter, "status": "scheduled"}
    assert entry.after == {
        "plan_id": starter,
        "status": "applied",
        "notes": [
            f"subscription {sub} is already on plan starter: the provider applied it (its "
            "webhook came first)"
        ],
    }


# --- reactivate_tenant ----------------------------------------------------------------------------


def test_an_active_subscription_reactivates_a_tenant_suspended_for_non_payment(
    world: World,
) -> None:
    world.sub(status="active", provider="stripe", current_period_end=NOW + 20 * DAY)
    other = world.tenant("other")
    world.sub(status="active", provider="stripe", tenant="other", current_period_end=NOW + DAY)
    unpaid = world.tenant("unpaid")
    world.sub(status="suspended", tenant="unpaid")
    with world.db.session() as s:
        suspend_tenant(s, "grace", reason="non_payment", actor="test")
        suspend_tenant(s, "other", reason="terms of service", actor="test")
        suspend_tenant(s, "unpaid", reason="non_payment", actor="test")

    result = run(world.db)
    assert planned(result) == [("reactivate_tenant", f"tenant:{world.tenants['grace']}")]
    assert world.get(Tenant, world.tenants["grace"]).status == "active"
    assert world.get(Tenant, other).status == "suspended"
    assert world.get(Tenant, unpaid).status == "suspended"
    assert [r.tenant_id for r in audit(world.db, "tenant.reactivate")] == [world.tenants["grace"]]
    assert planned(run(world.db)) == []


# --- the run as a whole ---------------------------------------------------------------------------


def mixed(world: World) -> dict[str, int]:
    return {
        "trial": world.sub(status="trialing", trial_end=NOW + DAY, tenant="t1", provider="stripe"),
        "past_due": world.sub(current_period_end=NOW - DAY, tenant="t2"),
        "suspend": world.sub(status="past_due", past_due_since=NOW - 15 * DAY, tenant="t3"),
        "cancel": world.sub(current_period_end=NOW - DAY, cancel_at_period_end=True, tenant="t4"),
        "quiet": world.sub(current_period_end=NOW + 5 * DAY, tenant="t5"),
    }


def test_preview_lists_every_action_and_writes_nothing(world: World) -> None:
    subs = mixed(world)
    world.plan_change(subs["quiet"], "plus", NOW - DAY)
    before = snapshot(world.db)
    result = run(world.db, dry_run=True)
    assert result.counts == {
        "apply_plan_change": 1,
        "cancel_subscription": 1,
        "mark_past_due": 1,
        "suspend_tenant": 1,
        "trial_ending_notice": 1,
    }
    for item in result.actions:
        assert item.outcome is None
        assert {"tenant", "tenant_id", "subscription_id", "rule"} <= set(item.action.data)
        assert item.action.reason
    assert snapshot(world.db) == before
    with world.db.read_session() as s:
        assert s.scalar(select(func.count()).select_from(JobRun)) == 1


def test_a_second_run_at_the_same_now_plans_nothing_new(world: World) -> None:
    mixed(world)
    first = run(world.db)
    assert first.outcomes == {"applied": 4}
    assert planned(run(world.db)) == []
    assert planned(run(world.db, dry_run=True)) == []


def test_a_preview_applied_after_the_run_is_stale_for_every_rule(world: World) -> None:
    subs = mixed(world)
    world.plan_change(subs["quiet"], "plus", NOW - DAY)
    world.sub(status="active", provider="stripe", tenant="back")
    with world.db.session() as s:
        suspend_tenant(s, "back", reason="non_payment", actor="test")
    preview = run(world.db, dry_run=True)
    assert len(preview.actions) == 6
    run(world.db)
    audited = len(audit(world.db))
    for item in preview.actions:
        again = apply_one(world.db, JOB, ctx(), item.action)
        assert again.outcome == "stale", (item.action.kind, again.error)
        assert again.error
    assert len(audit(world.db)) == audited


class Meddling(SubscriptionsAutomate):
    """Plans, then lets someone else change rows before the actions are applied."""

    def __init__(self, meddle: Callable[[], None]) -> None:
        self.meddle = meddle

    def plan(self, session: Session, ctx: JobContext) -> Iterator[Action]:
        actions = list(super().plan(session, ctx))
        self.meddle()
        yield from actions


@pytest.mark.parametrize("batched", [True, False], ids=["batch", "one-by-one"])
def test_rows_that_moved_on_between_plan_and_apply_are_stale(world: World, batched: bool) -> None:
    subs = mixed(world)

    def meddle() -> None:  # webhooks land in between
        world.change(Subscription, subs["past_due"], current_period_end=NOW + 29 * DAY)
        world.change(Subscription, subs["suspend"], status="active", past_due_since=None)
        world.change(Subscription, subs["trial"], status="active")

    job = Meddling(meddle)
    if not batched:
        job.batch_size = 1  # type: ignore[misc]
    result = run(world.db, job=job)
    outcomes = {a.action.kind: a.outcome for a in result.actions}
    assert outcomes == {
        "trial_ending_notice": "stale",
        "mark_past_due": "stale",
        "suspend_tenant": "stale",
        "cancel_subscription": "applied",
    }
    assert world.get(Subscription, subs["past_due"]).status == "active"
    assert world.get(Tenant, world.tenants["t3"]).status == "active"
    assert world.get(Subscription, subs["trial"]).trial_notice_for is None
    assert [r.action for r in audit(world.db)] == ["subscription.automate"]


def test_a_grace_raised_between_plan_and_apply_makes_the_suspension_stale(world: World) -> None:
    sub = world.sub(status="past_due", past_due_since=NOW - 15 * DAY)
    job = Meddling(lambda: world.change(Tenant, world.tenants["grace"], billing_grace_days=30))
    result = run(world.db, job=job)
    [item] = result.actions
    assert item.outcome == "stale"
    assert "30 days" in (item.error or "")
    assert world.get(Subscription, sub).status == "past_due"


def test_limit_stops_after_that_many_actions(world: World) -> None:
    mixed(world)
    assert len(run(world.db, dry_run=True, limit=2).actions) == 2


# --- CLI, tenants set-grace and the task endpoint -------------------------------------------------


def test_cli_preview_json_names_tenant_subscription_rule_and_reason(world: World, cli: Any) -> None:
    mixed(world)
    result = cli("subs", "automate", "--dry-run", "--json", "--now", "2026-03-02T09:00:00Z")
    assert result.exit_code == 0, result.stderr
    doc = json.loads(result.stdout)
    assert doc["job"] == "subscriptions_automate"
    assert doc["dry_run"] is True
    assert doc["now"] == NOW.isoformat()
    assert doc["counts"]["suspend_tenant"] == 1
    for action in doc["actions"]:
        assert action["data"]["tenant"] in {"t1", "t2", "t3", "t4"}
        assert action["data"]["rule"] == action["kind"]
        assert action["reason"]


def test_cli_table_then_run_then_nothing(world: World, cli: Any) -> None:
    mixed(world)
    preview = cli("subs", "automate", "--dry-run", "--now", "2026-03-02T09:00:00Z")
    assert preview.exit_code == 0, preview.stderr
    assert "suspend_tenant" in preview.stdout and "t3" in preview.stdout
    done = cli("subs", "automate", "--now", "2026-03-02T09:00:00Z", "--json")
    assert done.exit_code == 0, done.stderr
    assert json.loads(done.stdout)["outcomes"] == {"applied": 4}
    again = cli("subs", "automate", "--now", "2026-03-02T09:00:00Z", "--json")
    assert json.loads(again.stdout)["counts"] == {}


def test_cli_bad_now_is_a_usage_error(world: World, cli: Any) -> None:
    result = cli("subs", "automate", "--now", "monday")
    assert result.exit_code == 2
    assert "--now" in said(result)


def test_tenants_set_grace_sets_and_clears_the_override(world: World, cli: Any) -> None:
    tenant_id = world.tenant("grace")
    result = cli("tenants", "set-grace", "grace", "21")
    assert result.exit_code == 0, result.stderr
    assert world.get(Tenant, tenant_id).billing_grace_days == 21
    assert "21 days" in said(result)
    [entry] = audit(world.db, "tenant.set_grace")
    assert (entry.before, entry.after) == ({"billing_grace_days": None}, {"billing_grace_days": 21})
    cleared = cli("tenants", "set-grace", "grace", "default")
    assert cleared.exit_code == 0, cleared.stderr
    assert world.get(Tenant, tenant_id).billing_grace_days is None
    shown = json.loads(cli("tenants", "show", "grace", "--json").stdout)
    assert shown["billing_grace_days"] is None


@pytest.mark.parametrize("days", ["-1", "soon", "400", "1.5"])
def test_tenants_set_grace_refuses_bad_days(world: World, cli: Any, days: str) -> None:
    world.tenant("grace")
    result = cli("tenants", "set-grace", "grace", days)
    assert result.exit_code == 2
    assert "DAYS" in said(result) or "days" in said(result)
    assert world.get(Tenant, world.tenants["grace"]).billing_grace_days is None


def test_tenants_set_grace_on_an_unknown_tenant(world: World, cli: Any) -> None:
    result = cli("tenants", "set-grace", "nobody", "3")
    assert result.exit_code != 0
    assert "nobody" in said(result)


def test_the_task_endpoint_runs_the_same_job(world: World, db_url: str) -> None:
    from receiver.app import create_app

    mixed(world)
    key = "k" * 32
    app = create_app(Settings(database_url=db_url, integration_api_key=key), db=world.db)
    with running(app) as url:
        headers = {"X-API-Key": key}
        body = {"dry_run": True, "now": "2026-03-02T09:00:00Z"}
        preview = httpx.post(url + "/tasks/subscriptions/automate", json=body, headers=headers)
        assert preview.status_code == 200, preview.text
        assert preview.json()["counts"]["mark_past_due"] == 1
        body["dry_run"] = False
        done = httpx.post(
            url + "/tasks/subscriptions/automate", json=body, headers=headers, timeout=30
        )
        assert done.status_code == 200, done.text
        assert done.json()["outcomes"] == {"applied": 4}
        again = httpx.post(url + "/tasks/subscriptions/automate", json=body, headers=headers)
        assert again.json()["counts"] == {}
    with world.db.read_session() as s:
        triggers = s.scalars(select(JobRun.trigger).order_by(JobRun.id)).all()
    assert triggers == ["http", "http", "http"]
