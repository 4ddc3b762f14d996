"""What `faithflow subs automate` does: the subscription lifecycle the providers do not drive
for us. The rules and their plan; the job (jobs/subs_automate.py) is the glue and
billing/automation_apply.py applies each action.

Rules, one action kind each (the runbook, docs/subs-automate.md, says why):

- `trial_ending_notice`: a trial ends within 3 days and no notice was recorded for that
  trial_end (`subscriptions.trial_notice_for`): a new trial end gets a new notice.
- `mark_past_due`: an active Paystack subscription whose period has ended with no paid invoice
  reaching past that period end; `past_due_since` = the period end (kept when already set).
  Not one whose plan change takes over at that period end: the new subscription charges then.
- `suspend_tenant`: past due for longer than the grace (tenant `billing_grace_days`, else the
  plan's `graceDays`, else 14 days): the subscription and the tenant are suspended
  (`non_payment`). Not while the tenant has another active or trialing subscription.
- `cancel_subscription`: `cancel_at_period_end` and the period has ended.
- `apply_plan_change` / `reject_plan_change`: a scheduled plan change whose time has come is
  applied locally (the subscription's plan, and for Paystack the new subscription code and
  email token the change created), or rejected when the subscription was canceled or is on
  neither the change's `from_plan_id` nor its `to_plan_id`. A subscription already on
  `to_plan_id` was moved there by the provider (Stripe's `customer.subscription.updated` for
  the schedule's new phase arrives at the phase start, before the job): the change is applied
  all the same, its reason and audit saying the provider applied it.
- `suspension_held` (report-only): past the grace, but the dunning ladder is not done —
  dunning is paused (a pause extends the grace), or the subscription has an open dunning case
  whose final notice has not been delivered or failed for good yet — also when the dunning
  job never ran on it (dunning.suspension.suspension_holds says which). Without an open case
  (dunning not in use) the grace alone decides.
- `reactivate_tenant`: a tenant suspended for non-payment that has an active subscription
  again (the safety net for a missed webhook).

plan: one indexed query per rule that reads only due rows (each index is named `*_automate_*`
and made for its query), all read before the first action is yielded, so the runner applying
early actions cannot change what later rules see: a second run at the same `now` plans nothing
new. A period left unpaid beyond the grace is marked past due in one run; marking it opens a
dunning case, so when the ladder has a final notice the suspension is `suspension_held` until
that notice went out (with no final notice it is suspended in the same run).
The conditions a rule and its apply share (`no_live_sibling`, `not_cancel_due`, …) live here.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple, cast

from sqlalchemy import ColumnElement, Table, and_, exists, func, or_, select
from sqlalchemy.orm import Session

from faithflow_ops.actions import Action, encode
from faithflow_ops.billing.grace import (
    DEFAULT_GRACE_DAYS,
    Grace,
    PlanGrace,
    plan_grace,
    resolve_grace,
)
from faithflow_ops.billing.lifecycle import NON_PAYMENT
from faithflow_ops.clock import iso
from faithflow_ops.dunning.suspension import Candidate, suspension_holds
from faithflow_ops.models import Invoice, PlanChange, Subscription, SubscriptionPlan, Tenant

SUBS = cast(Table, Subscription.__table__)
TENANTS = cast(Table, Tenant.__table__)
PLANS = cast(Table, SubscriptionPlan.__table__)
INVOICES = cast(Table, Invoice.__table__)
CHANGES = cast(Table, PlanChange.__table__)

TRIAL_NOTICE_WINDOW = dt.timedelta(days=3)
PAST_DUE = ("past_due", "unpaid")
LIVE = ("active", "trialing")  # a tenant with one of these is paying (or trialing)
AUDIT_SUBSCRIPTION = "subscription.automate"
AUDIT_NOTICE = "subscription.trial_ending_notice"

KINDS = (
    "trial_ending_notice",
    "mark_past_due",
    "suspend_tenant",
    "cancel_subscription",
    "apply_plan_change",
    "reject_plan_change",
    "reactivate_tenant",
    "suspension_held",
)
REPORT_ONLY = frozenset({"suspension_held"})


def plan(session: Session, now: dt.datetime) -> list[Action]:
    """Every rule's actions at `now`; each rule reads before anything is applied (see the
    module docstring)."""
    plans = _plans(session)
    return [
        *_trial_notices(session, now),
        *_past_due(session, now, plans),
        *_suspensions(session, now, plans),
        *_cancellations(session, now),
        *_plan_changes(session, now, plans),
        *_reactivations(session),
    ]


def _plans(session: Session) -> dict[int, PlanGrace]:
    """Every plan's code and grace (plans are few: one query)."""
    out: dict[int, PlanGrace] = {}
    for plan_id, code, metadata in session.execute(
        select(PLANS.c.id, PLANS.c.code, PLANS.c["metadata"])
    ).tuples():
        out[plan_id] = PlanGrace(code, plan_grace(metadata))
    return out


def _tenant_ok() -> ColumnElement[bool]:
    """Tenants a job may change: not deleted, not archived."""
    return and_(TENANTS.c.deleted_at.is_(None), TENANTS.c.status != "archived")


def no_live_sibling() -> ColumnElement[bool]:
    """The tenant has no other active or trialing subscription (it pays for something)."""
    other = SUBS.alias("other")
    return ~exists().where(
        other.c.tenant_id == SUBS.c.tenant_id,
        other.c.id != SUBS.c.id,
        other.c.status.in_(LIVE),
    )


def not_cancel_due(now: dt.datetime) -> ColumnElement[bool]:
    """Not a cancellation whose period has ended (cancel_subscription takes those)."""
    return or_(
        ~SUBS.c.cancel_at_period_end,
        SUBS.c.current_period_end.is_(None),
        SUBS.c.current_period_end > now,
    )


# A Paystack plan change starts its new subscription at the old one's period end (start_date):
# that period end is the new subscription's first charge, not a missed renewal.
CHANGE_AT_PERIOD_END = dt.timedelta(days=1)


def changed_at_period_end(session: Session, periods: Mapping[int, dt.datetime | None]) -> set[int]:
    """The subscriptions (of `periods`: id → period end) that a plan change, scheduled or
    applied, takes over at that period end."""
    if not periods:
        return set()
    found = set()
    for sub_id, effective in session.execute(
        select(CHANGES.c.subscription_id, CHANGES.c.effective_at).where(
            CHANGES.c.subscription_id.in_(list(periods)),
            CHANGES.c.status.in_(("scheduled", "applied")),
        )
    ):
        end = periods.get(sub_id)
        if (
            end is not None
            and effective is not None
            and abs(effective - end) <= CHANGE_AT_PERIOD_END
        ):
            found.add(sub_id)
    return found


def trial_notice_due(now: dt.datetime) -> tuple[ColumnElement[bool], ...]:
    """A trialing subscription whose trial ends within TRIAL_NOTICE_WINDOW of `now` and has no
    notice sent for that end (the planner's filter and the applier's claim)."""
    return (
        SUBS.c.status == "trialing",
        SUBS.c.trial_end > now,
        SUBS.c.trial_end <= now + TRIAL_NOTICE_WINDOW,
        or_(SUBS.c.trial_notice_for.is_(None), SUBS.c.trial_notice_for != SUBS.c.trial_end),
    )


def cancel_due(now: dt.datetime) -> tuple[ColumnElement[bool], ...]:
    """A cancellation at period end whose period has ended by `now`, not yet canceled."""
    return (
        SUBS.c.cancel_at_period_end,  # bare, as in the index predicate
        SUBS.c.status != "canceled",
        SUBS.c.current_period_end <= now,
    )


def unpaid_after(period_end: Any) -> ColumnElement[bool]:
    """No paid invoice of the subscription reaches past `period_end` (the renewal)."""
    return ~exists().where(
        INVOICES.c.subscription_id == SUBS.c.id,
        INVOICES.c.status == "paid",
        INVOICES.c.period_end > period_end,
    )


# ---------------------------------------------------------------------------------------------
# payloads: one per action kind (`Action.data` is `encode(payload)`; apply reads `decode`)


@dataclass(frozen=True)
class _SubscriptionRule:
    """What every kind about one subscription names first (the fields of `data`, in order)."""

    subscription_id: int
    tenant_id: int
    tenant: str  # slug
    rule: str  # the action kind


@dataclass(frozen=True)
class TrialEndingNotice(_SubscriptionRule):
    trial_end: dt.datetime


@dataclass(frozen=True)
class MarkPastDue(_SubscriptionRule):
    current_period_end: dt.datetime
    past_due_since: dt.datetime


@dataclass(frozen=True)
class SuspendTenant(_SubscriptionRule):
    past_due_since: dt.datetime
    grace_days: int
    grace_source: str  # tenant | plan | default


@dataclass(frozen=True)
class CancelSubscription(_SubscriptionRule):
    current_period_end: dt.datetime


@dataclass(frozen=True)
class _DueChange(_SubscriptionRule):
    plan_change_id: int
    from_plan_id: int | None
    to_plan_id: int
    effective_at: dt.datetime


@dataclass(frozen=True)
class ApplyPlanChange(_DueChange):
    pass


@dataclass(frozen=True)
class RejectPlanChange(_DueChange):
    error: str  # why the change no longer fits its subscription


@dataclass(frozen=True)
class ReactivateTenant:
    tenant_id: int
    tenant: str
    subscription_id: int | None  # always None: the tenant is the target
    rule: str


def _trial_notices(session: Session, now: dt.datetime) -> list[Action]:
    # ix_subscriptions_automate_trial_end: trialing rows, by trial_end
    rows = session.execute(
        select(SUBS.c.id, SUBS.c.tenant_id, TENANTS.c.slug, SUBS.c.trial_end)
        .join(TENANTS, TENANTS.c.id == SUBS.c.tenant_id)
        .where(*trial_notice_due(now), _tenant_ok())
        .order_by(SUBS.c.trial_end, SUBS.c.id)
    ).tuples()
    out = []
    for sub_id, tenant_id, slug, trial_end in rows:
        notice = TrialEndingNotice(sub_id, tenant_id, slug, "trial_ending_notice", trial_end)
        hours = (trial_end - now).total_seconds() / 3600
        reason = (
            f"trial ends {iso(trial_end)} (in {hours:.0f} h); no notice sent for this trial end"
        )
        out.append(Action("trial_ending_notice", f"subscription:{sub_id}", reason, encode(notice)))
    return out


class _TenantRow(NamedTuple):
    slug: str
    grace_days: int | None
    writable: bool  # not deleted, not archived


def _tenants(session: Session, ids: set[int]) -> dict[int, _TenantRow]:
    """The tenants of due rows, by primary key."""
    if not ids:
        return {}
    rows = session.execute(
        select(
            TENANTS.c.id,
            TENANTS.c.slug,
            TENANTS.c.billing_grace_days,
            and_(TENANTS.c.deleted_at.is_(None), TENANTS.c.status != "archived"),
        ).where(TENANTS.c.id.in_(sorted(ids)))
    ).tuples()
    return {tid: _TenantRow(slug, grace, bool(ok)) for tid, slug, grace, ok in rows}


def _live_by_tenant(session: Session, tenant_ids: set[int]) -> dict[int, set[int]]:
    """Active or trialing subscriptions of these tenants (ix_subscriptions_tenant_id)."""
    out: dict[int, set[int]] = {}
    if tenant_ids:
        for tenant_id, sub_id in session.execute(
            select(SUBS.c.tenant_id, SUBS.c.id).where(
                SUBS.c.tenant_id.in_(sorted(tenant_ids)), SUBS.c.status.in_(LIVE)
            )
        ).tuples():
            out.setdefault(tenant_id, set()).add(sub_id)
    return out


def _paid_through(session: Session, sub_ids: list[int]) -> dict[int, dt.datetime]:
    """The latest period end a paid invoice covers, per subscription."""
    # ix_invoices_automate_paid_period_end: (subscription_id, period_end) of paid invoices
    if not sub_ids:
        return {}
    rows = session.execute(
        select(INVOICES.c.subscription_id, func.max(INVOICES.c.period_end))
        .where(INVOICES.c.status == "paid", INVOICES.c.subscription_id.in_(sub_ids))
        .group_by(INVOICES.c.subscription_id)
    ).tuples()
    return {sub_id: end for sub_id, end in rows if end is not None}


def _past_due(session: Session, now: dt.datetime, plans: Mapping[int, PlanGrace]) -> list[Action]:
    # ix_subscriptions_automate_paystack_period_end: active Paystack rows, by period end. The
    # due rows' invoices, tenants and siblings are then read by id (a join here let the
    # planner scan whole tables).
    rows = (
        session.execute(
            select(
                SUBS.c.id,
                SUBS.c.tenant_id,
                SUBS.c.plan_id,
                SUBS.c.current_period_end,
                SUBS.c.past_due_since,
            )
            .where(
                SUBS.c.provider == "paystack",
                SUBS.c.status == "active",
                SUBS.c.current_period_end <= now,
                ~SUBS.c.cancel_at_period_end,
            )
            .order_by(SUBS.c.current_period_end, SUBS.c.id)
        )
        .tuples()
        .all()
    )
    paid = _paid_through(session, [r[0] for r in rows])
    rows = [r for r in rows if not (r[0] in paid and paid[r[0]] > r[3])]
    changing = changed_at_period_end(session, {r[0]: r[3] for r in rows})
    rows = [r for r in rows if r[0] not in changing]
    tenants = _tenants(session, {r[1] for r in rows})
    live = _live_by_tenant(session, {r[1] for r in rows})
    out = []
    for sub_id, tenant_id, plan_id, period_end, since in rows:
        tenant = tenants.get(tenant_id)
        if tenant is None or not tenant.writable:
            continue
        since = since or period_end
        mark = MarkPastDue(sub_id, tenant_id, tenant.slug, "mark_past_due", period_end, since)
        reason = f"period ended {iso(period_end)} with no paid invoice after it"
        out.append(Action("mark_past_due", f"subscription:{sub_id}", reason, encode(mark)))
        grace = resolve_grace(tenant.grace_days, plans.get(plan_id))
        alone = not (live.get(tenant_id, set()) - {sub_id})
        if alone and since + dt.timedelta(days=grace.days) <= now:
            due = [(sub_id, tenant_id, tenant.slug, since, grace)]
            out += _unless_held(session, now, due, case_opens=True)
    return out


def _suspend(
    sub_id: int, tenant_id: int, slug: str, since: dt.datetime, grace: Grace, now: dt.datetime
) -> Action:
    suspend = SuspendTenant(
        sub_id, tenant_id, slug, "suspend_tenant", since, grace.days, grace.source
    )
    days = (now - since).total_seconds() / 86400
    reason = (
        f"past due since {iso(since)} ({days:.1f} days), beyond the grace of "
        f"{grace.describe()}: suspend the tenant for non-payment"
    )
    return Action("suspend_tenant", f"subscription:{sub_id}", reason, encode(suspend))


def _min_grace(session: Session, plans: Mapping[int, PlanGrace]) -> int:
    """The smallest grace any subscription can have: bounds the past-due scan by time."""
    # ix_tenants_automate_billing_grace_days answers min() from the index
    tenant_min = session.scalar(
        select(func.min(TENANTS.c.billing_grace_days)).where(
            TENANTS.c.billing_grace_days.is_not(None)
        )
    )
    candidates = [DEFAULT_GRACE_DAYS]
    candidates += [p.grace_days for p in plans.values() if p.grace_days is not None]
    if tenant_min is not None:
        candidates.append(tenant_min)
    return min(candidates)


def shortest_grace(session: Session) -> tuple[int, str]:
    """The shortest grace any church can have now, and whose it is (for `dunning policy set`,
    which refuses a final notice after the suspension day)."""
    days, whose = DEFAULT_GRACE_DAYS, "the default grace"
    for plan_code, plan_days in sorted(
        (p.code, p.grace_days) for p in _plans(session).values() if p.grace_days is not None
    ):
        if plan_days < days:
            days, whose = plan_days, f"plan {plan_code} (graceDays)"
    row = session.execute(
        select(TENANTS.c.slug, TENANTS.c.billing_grace_days)
        .where(TENANTS.c.billing_grace_days.is_not(None), _tenant_ok())
        .order_by(TENANTS.c.billing_grace_days, TENANTS.c.slug)
        .limit(1)
    ).first()
    if row is not None and row[1] < days:
        days, whose = row[1], f"tenant {row[0]} (billing grace)"
    return days, whose


def _suspensions(
    session: Session, now: dt.datetime, plans: Mapping[int, PlanGrace]
) -> list[Action]:
    # ix_subscriptions_automate_past_due_since: past-due rows, by how long
    horizon = now - dt.timedelta(days=_min_grace(session, plans))
    rows = session.execute(
        select(
            SUBS.c.id,
            SUBS.c.tenant_id,
            TENANTS.c.slug,
            SUBS.c.plan_id,
            SUBS.c.past_due_since,
            TENANTS.c.billing_grace_days,
        )
        .join(TENANTS, TENANTS.c.id == SUBS.c.tenant_id)
        .where(
            SUBS.c.status.in_(PAST_DUE),
            SUBS.c.past_due_since <= horizon,
            not_cancel_due(now),
            no_live_sibling(),
            _tenant_ok(),
        )
        .order_by(SUBS.c.past_due_since, SUBS.c.id)
    ).tuples()
    due = []
    for sub_id, tenant_id, slug, plan_id, since, tenant_days in rows:
        grace = resolve_grace(tenant_days, plans.get(plan_id))
        if since + dt.timedelta(days=grace.days) <= now:
            due.append((sub_id, tenant_id, slug, since, grace))
    return _unless_held(session, now, due)


def _unless_held(
    session: Session,
    now: dt.datetime,
    due: list[tuple[int, int, str, dt.datetime, Grace]],
    *,
    case_opens: bool = False,
) -> list[Action]:
    """`suspend_tenant` for each past-grace subscription, or `suspension_held` when the
    dunning ladder is not done with it (dunning.suspension.suspension_holds). `case_opens`:
    marked past due in this run, so its dunning case opens when that action applies."""
    holds = suspension_holds(
        session,
        [
            Candidate(sub, tenant, since, grace.days, case_opens)
            for sub, tenant, _, since, grace in due
        ],
        now,
    )
    out = []
    for sub_id, tenant_id, slug, since, grace in due:
        why = holds.get(sub_id)
        if why is None:
            out.append(_suspend(sub_id, tenant_id, slug, since, grace, now))
            continue
        held = SuspendTenant(
            sub_id, tenant_id, slug, "suspension_held", since, grace.days, grace.source
        )
        reason = f"past due since {iso(since)}, beyond the grace of {grace.describe()}, but {why}"
        out.append(Action("suspension_held", f"subscription:{sub_id}", reason, encode(held)))
    return out


def _cancellations(session: Session, now: dt.datetime) -> list[Action]:
    # ix_subscriptions_automate_cancel_at_period_end: pending cancellations, by period end
    rows = session.execute(
        select(SUBS.c.id, SUBS.c.tenant_id, TENANTS.c.slug, SUBS.c.current_period_end)
        .join(TENANTS, TENANTS.c.id == SUBS.c.tenant_id)
        .where(*cancel_due(now), _tenant_ok())
        .order_by(SUBS.c.current_period_end, SUBS.c.id)
    ).tuples()
    out = []
    for sub_id, tenant_id, slug, period_end in rows:
        cancel = CancelSubscription(sub_id, tenant_id, slug, "cancel_subscription", period_end)
        reason = f"set to cancel at period end; the period ended {iso(period_end)}"
        out.append(Action("cancel_subscription", f"subscription:{sub_id}", reason, encode(cancel)))
    return out


def misfit(
    status: str,
    plan_id: int,
    from_plan_id: int | None,
    to_plan_id: int,
    plans: Mapping[int, PlanGrace],
    sub_id: int,
) -> str | None:
    """Why a scheduled change can no longer apply to its subscription, or None. A subscription
    already on the target plan fits: the provider applied the change before we did."""
    if status == "canceled":
        return f"subscription {sub_id} is canceled"
    if from_plan_id is not None and plan_id not in (from_plan_id, to_plan_id):
        return (
            f"subscription {sub_id} is no longer on plan {_code(plans, from_plan_id)} "
            f"(now {_code(plans, plan_id)})"
        )
    return None


def _code(plans: Mapping[int, PlanGrace], plan_id: int | None) -> str:
    plan = plans.get(plan_id) if plan_id is not None else None
    return plan.code if plan is not None else f"#{plan_id}"


def provider_applied(sub_id: int, plan: str) -> str:
    return (
        f"subscription {sub_id} is already on plan {plan}: the provider applied it (its "
        "webhook came first)"
    )


def _plan_changes(
    session: Session, now: dt.datetime, plans: Mapping[int, PlanGrace]
) -> list[Action]:
    # ix_plan_changes_automate_scheduled: scheduled changes, by effective time; their
    # subscriptions and tenants are then read by id
    rows = (
        session.execute(
            select(
                CHANGES.c.id,
                CHANGES.c.subscription_id,
                CHANGES.c.tenant_id,
                CHANGES.c.from_plan_id,
                CHANGES.c.to_plan_id,
                CHANGES.c.kind,
                CHANGES.c.effective_at,
            )
            .where(CHANGES.c.status == "scheduled", CHANGES.c.effective_at <= now)
            .order_by(CHANGES.c.effective_at, CHANGES.c.id)
        )
        .tuples()
        .all()
    )
    if not rows:
        return []
    subs = {
        sub_id: (plan_id, status)
        for sub_id, plan_id, status in session.execute(
            select(SUBS.c.id, SUBS.c.plan_id, SUBS.c.status).where(
                SUBS.c.id.in_(sorted({r[1] for r in rows}))
            )
        ).tuples()
    }
    tenants = _tenants(session, {r[2] for r in rows})
    out = []
    for change_id, sub_id, tenant_id, from_id, to_id, kind, at in rows:
        plan_id, status = subs[sub_id]
        slug = tenants[tenant_id].slug if tenant_id in tenants else f"#{tenant_id}"
        target = f"plan_change:{change_id}"
        why = misfit(status, plan_id, from_id, to_id, plans, sub_id)
        if why is not None:
            reject = RejectPlanChange(
                sub_id, tenant_id, slug, "reject_plan_change", change_id, from_id, to_id, at, why
            )
            reason = f"{why}: reject the change"
            out.append(Action("reject_plan_change", target, reason, encode(reject)))
            continue
        change = ApplyPlanChange(
            sub_id, tenant_id, slug, "apply_plan_change", change_id, from_id, to_id, at
        )
        source = from_id if from_id is not None else plan_id
        reason = (
            f"{kind} {_code(plans, source)} -> {_code(plans, to_id)} "
            f"for subscription {sub_id}, effective {iso(at)}"
        )
        if plan_id == to_id and plan_id != from_id:
            reason += f"; {provider_applied(sub_id, _code(plans, to_id))}: mark it applied"
        out.append(Action("apply_plan_change", target, reason, encode(change)))
    return out


def live_subscription(tenant_id: Any) -> ColumnElement[bool]:
    return exists().where(SUBS.c.tenant_id == tenant_id, SUBS.c.status.in_(LIVE))


def _reactivations(session: Session) -> list[Action]:
    # ix_tenants_automate_suspended_non_payment; ix_subscriptions_tenant_id for the EXISTS
    rows = session.execute(
        select(TENANTS.c.id, TENANTS.c.slug, TENANTS.c.suspended_at)
        .where(
            TENANTS.c.status == "suspended",
            TENANTS.c.suspension_reason == NON_PAYMENT,
            TENANTS.c.deleted_at.is_(None),
            live_subscription(TENANTS.c.id),
        )
        .order_by(TENANTS.c.id)
    ).tuples()
    out = []
    for tenant_id, slug, since in rows:
        reactivate = ReactivateTenant(tenant_id, slug, None, "reactivate_tenant")
        when = f" since {iso(since)}" if since else ""
        reason = (
            f"suspended for non-payment{when} but has an active subscription "
            "(a missed webhook?): reactivate"
        )
        out.append(Action("reactivate_tenant", f"tenant:{tenant_id}", reason, encode(reactivate)))
    return out
