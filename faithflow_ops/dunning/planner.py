"""The dunning plan: which ladder step each open case takes now, on which channels, and when it
may go out (the rules of `faithflow dunning run`; the action kinds are listed in the job's
docstring, faithflow_ops/jobs/dunning_run.py, and docs/dunning.md).

Read-only. `plan_actions` reads everything in a few set-based queries — the policy, the plans'
grace, the open cases with their subscription, tenant and invoice, the steps already taken, the
latest dunning message per tenant — then decides, case by case (per tenant, oldest episode
first, so a tenant with two cases gets one message per suppression window):

- a case that should no longer be open is closed (`close_case`), a past-due subscription with
  no open case gets one (`open_case`);
- of the steps due and not taken, the latest is taken and the earlier ones are passed over
  (`skip_steps`), as is a step every channel of which the tenant's preferences block;
- a step's message (`send_step`) is never sent early and never dropped: held back by the
  window or the tenant's quiet hours, it is scheduled for the first minute allowed.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, NamedTuple, cast

from sqlalchemy import Table, exists, func, select

from faithflow_ops.actions import Action, encode
from faithflow_ops.clock import iso
from faithflow_ops.comms import templates, whatsapp
from faithflow_ops.dunning import cases as dc
from faithflow_ops.dunning.cases import ATTEMPTS, CASES
from faithflow_ops.dunning.policy import Step, current_policy, suspend_at
from faithflow_ops.dunning.prefs import CHANNELS, Preferences, preferences_for
from faithflow_ops.dunning.quiet import first_allowed, is_quiet
from faithflow_ops.dunning.retry import HARD_DECLINE
from faithflow_ops.models import (
    Invoice,
    OutboundMessage,
    Subscription,
    SubscriptionPlan,
    Tenant,
)

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from faithflow_ops.config import Settings

SUBS = cast(Table, Subscription.__table__)
TENANTS = cast(Table, Tenant.__table__)
INVOICES = cast(Table, Invoice.__table__)
PLANS = cast(Table, SubscriptionPlan.__table__)
MESSAGES = cast(Table, OutboundMessage.__table__)

KINDS = (
    "open_case",
    "close_case",
    "skip_steps",
    "send_step",
    "retry_payment",
    "handover",
    "paused",
    "held",
    "no_contact",
    "waiting",
)
REPORT_ONLY = frozenset({"paused", "held", "no_contact", "waiting"})
# Messages that count for the suppression window: everything but what was never sent.
NOT_SENT = ("canceled", "suppressed")


# --- the payload of each action kind (Action.data is `encode(payload)`) ----------------------


@dataclass(frozen=True)
class OpenCase:
    subscription_id: int
    tenant_id: int
    tenant: str
    past_due_since: dt.datetime | None


@dataclass(frozen=True)
class CloseCase:
    case_id: int
    tenant_id: int
    tenant: str
    subscription_id: int
    status: str  # recovered | suspended | canceled


@dataclass(frozen=True)
class CaseStep:
    """What every ladder action says about its case (the fields the kinds below start with)."""

    case_id: int
    tenant_id: int
    tenant: str
    subscription_id: int
    provider: str
    amount_minor: int
    currency: str
    past_due_since: dt.datetime
    days_past_due: int  # as of the plan's `now`
    suspend_at: dt.datetime  # past_due_since + the grace days


@dataclass(frozen=True)
class SendStep(CaseStep):
    step: str
    step_index: int
    template: str | None  # set on every step with channels (the policy checks it)
    channels: tuple[str, ...]  # the channels it goes out on
    recipients: dict[str, str]  # channel -> recipient
    blocked: dict[str, str]  # channel -> why not
    due_at: dt.datetime
    scheduled_at: dt.datetime  # after the suppression window and the quiet hours
    held_back: tuple[str, ...]  # why scheduled_at is later than due_at (or now)
    invoice_number: str
    pay_url: str
    # channel -> why it stands in for the step's own channels (none of which can be used)
    fallback: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class SkippedStep:
    step: str
    step_index: int
    channels: tuple[str, ...]  # the attempt channels recorded as skipped
    why: str


@dataclass(frozen=True)
class SkipSteps(CaseStep):
    steps: tuple[SkippedStep, ...]


@dataclass(frozen=True)
class RetryPayment(CaseStep):
    step: str
    step_index: int
    invoice: str | None  # the case's provider invoice id, as planned


@dataclass(frozen=True)
class Handover(CaseStep):
    step: str
    step_index: int


@dataclass(frozen=True)
class Paused(CaseStep):  # report-only
    step: str
    paused_until: dt.datetime | None
    note: str | None


@dataclass(frozen=True)
class Held(CaseStep):  # report-only: the step is taken at `until`
    step: str
    step_index: int
    until: dt.datetime
    why: str


@dataclass(frozen=True)
class Waiting(CaseStep):  # report-only, preview: nothing due on the case
    step: str  # the next step ("" when the ladder is done)
    history: tuple[str, ...]  # what each step taken did: "day3 email: sent", "day0 sms: skipped"


@dataclass(frozen=True)
class NoContact(CaseStep):  # report-only
    step: str
    channels: tuple[str, ...]  # always empty: nothing can go out
    blocked: dict[str, str]


# --- plan ------------------------------------------------------------------------------------


class _Case(NamedTuple):
    id: int
    tenant_id: int
    subscription_id: int
    past_due_since: dt.datetime
    amount_minor: int
    currency: str
    invoice_ref: str | None
    sub_status: str
    provider: str
    plan_id: int
    tenant: str
    tenant_status: str
    tenant_gone: bool
    grace_days: int | None
    hosted_url: str | None
    invoice_open: bool
    invoice_number: str | None


@dataclass(frozen=True)
class GraceRule:
    """How long a past-due subscription has before suspension, for `suspend_at` in messages:
    the tenant's `billing_grace_days`, else `plan_grace(plan metadata)`, else `default_days`.
    It is billing's rule (faithflow_ops.billing.grace); the job hands it in, since billing
    imports dunning (the case hook on a status change) and packages never import in a circle."""

    plan_grace: Callable[[object], int | None]
    default_days: int


@dataclass(frozen=True)
class _PlanInfo:
    code: str
    grace_days: int | None


@dataclass
class _Run:
    """What the cases of one run share."""

    now: dt.datetime
    window: dt.timedelta  # at most one dunning message per tenant in this long
    return_url: str  # where to pay when the case's invoice has no page of its own
    default_grace_days: int
    final: Step | None  # the ladder's final notice (suspend_at after a pause)
    settings: Settings | None = None  # the approved WhatsApp templates (TWILIO_CONTENT_SIDS)
    # first_allowed answers by (earliest, zone, windows): many cases share one
    allowed: dict[tuple[Any, ...], dt.datetime] = field(default_factory=dict)


def days_past_due(delta: dt.timedelta) -> int:
    """Whole days in `delta` (never negative): what messages call "days past due"."""
    return max(delta.days, 0)


def plan_actions(
    session: Session,
    now: dt.datetime,
    settings: Settings,
    grace: GraceRule,
    *,
    explain: bool = False,
) -> list[Action]:
    """Every action of one run at `now` (read-only; see the module docstring). `explain` (the
    preview) adds a report-only `waiting` action for each open case with no step due: where
    its ladder stands and what became of its last step's messages, so "why didn't this church
    get a message?" has its answer in the preview."""
    policy = current_policy(session)
    plans = {
        pid: _PlanInfo(code, grace.plan_grace(meta))
        for pid, code, meta in session.execute(
            select(PLANS.c.id, PLANS.c.code, PLANS.c["metadata"])
        ).tuples()
    }
    actions = _missing_cases(session)
    cases = _open_cases(session)
    taken = _taken_steps(session)
    hard = _hard_declines(session)
    last_sent = _last_messages(session)
    run = _Run(
        now,
        dt.timedelta(hours=settings.dunning_window_hours),
        settings.billing_return_url or "",
        grace.default_days,
        policy.final_notice,
        settings,
    )
    # Most open cases have nothing due in a given run: only those that do need preferences.
    due: list[tuple[_Case, list[tuple[int, Step]]]] = []
    idle: list[_Case] = []
    for case in sorted(cases, key=lambda c: (c.tenant_id, c.past_due_since, c.id)):
        closing = _closing(case)
        if closing is not None:
            actions.append(closing)
            continue
        steps = due_steps(policy.steps, taken.get(case.id, set()), case.past_due_since, now)
        if steps:
            due.append((case, steps))
        elif explain:
            idle.append(case)
    tenants = {case.tenant_id for case, _ in due} | {case.tenant_id for case in idle}
    prefs = preferences_for(session, tenants)
    sends: list[Action] = []
    retries: list[Action] = []
    # Per tenant, oldest episode first: a tenant with two cases gets one message per window.
    for case, steps in due:
        ladder = _Ladder(case, run, plans.get(case.plan_id), hard.get(case.id))
        ladder.plan(steps, prefs.get(case.tenant_id), last_sent)
        sends += ladder.actions
        retries += ladder.retries
    waiting = _waiting(session, idle, policy.steps, taken, run, plans, prefs) if idle else []
    # Payment retries last: they go one by one (provider I/O), the rest in batches.
    return actions + sends + retries + waiting


def _waiting(
    session: Session,
    idle: Sequence[_Case],
    ladder: Sequence[Step],
    taken: Mapping[int, set[str]],
    run: _Run,
    plans: Mapping[int, _PlanInfo],
    prefs: Mapping[int, Preferences],
) -> list[Action]:
    """`waiting` (report-only, preview): each open case with nothing due, explained."""
    last: dict[int, list[str]] = {}
    ids = [c.id for c in idle]
    for offset in range(0, len(ids), 5000):
        for case_id, step, channel, detail, status, at in session.execute(
            select(
                ATTEMPTS.c.case_id,
                ATTEMPTS.c.step,
                ATTEMPTS.c.channel,
                ATTEMPTS.c.detail,
                MESSAGES.c.status,
                MESSAGES.c.next_attempt_at,
            )
            .outerjoin(MESSAGES, MESSAGES.c.id == ATTEMPTS.c.message_id)
            .where(ATTEMPTS.c.case_id.in_(ids[offset : offset + 5000]))
            .order_by(ATTEMPTS.c.case_id, ATTEMPTS.c.step_index, ATTEMPTS.c.channel)
        ).tuples():
            if (detail or "").startswith(dc.SKIPPED_PREFIX):
                state = f"{step} {channel}: skipped ({detail[len(dc.SKIPPED_PREFIX) :].strip()})"
            elif status in ("queued", "scheduled"):
                state = f"{step} {channel}: {status} for {iso(at)}"
            elif status is not None:
                state = f"{step} {channel}: {status}"
            else:
                state = f"{step} {channel}: {detail or 'done'}"
            last.setdefault(case_id, []).append(state)
    out = []
    for case in idle:
        done = taken.get(case.id, set())
        last_index = max((i for i, s in enumerate(ladder) if s.key in done), default=-1)
        upcoming = ladder[last_index + 1] if last_index + 1 < len(ladder) else None
        base = _Ladder(case, run, plans.get(case.plan_id)).base(prefs.get(case.tenant_id))
        if upcoming is not None:
            at = case.past_due_since + upcoming.offset
            step, why = upcoming.key, f"next: step {upcoming.key} ({upcoming.when()}) due {iso(at)}"
        else:
            step, why = "", f"ladder done; suspension may follow from {iso(base['suspend_at'])}"
        history = last.get(case.id, [])
        report = Waiting(**base, step=step, history=tuple(history))
        reason = why + (f"; so far: {'; '.join(history[-4:])}" if history else "; nothing sent yet")
        out.append(Action("waiting", f"dunning_case:{case.id}", reason, encode(report)))
    return out


def _missing_cases(session: Session) -> list[Action]:
    # ix_subscriptions_automate_past_due_since (past-due rows); uq_dunning_cases_open_subscription
    # answers the NOT EXISTS
    rows = session.execute(
        select(SUBS.c.id, SUBS.c.tenant_id, TENANTS.c.slug, SUBS.c.past_due_since)
        .join(TENANTS, TENANTS.c.id == SUBS.c.tenant_id)
        .where(
            SUBS.c.status.in_(dc.PAST_DUE),
            TENANTS.c.status == "active",
            TENANTS.c.deleted_at.is_(None),
            ~exists().where(CASES.c.subscription_id == SUBS.c.id, CASES.c.status == "open"),
        )
        .order_by(SUBS.c.id)
    ).tuples()
    out = []
    for sub_id, tenant_id, slug, since in rows:
        payload = OpenCase(sub_id, tenant_id, slug, since or None)
        reason = "subscription is past due with no open dunning case (a missed hook): open one"
        out.append(Action("open_case", f"subscription:{sub_id}", reason, encode(payload)))
    return out


def _open_cases(session: Session) -> list[_Case]:
    """Every open case with what its plan needs, in one query."""
    rows = session.execute(
        select(
            CASES.c.id,
            CASES.c.tenant_id,
            CASES.c.subscription_id,
            CASES.c.past_due_since,
            CASES.c.amount_minor,
            CASES.c.currency,
            CASES.c.provider_invoice_id,
            SUBS.c.status,
            SUBS.c.provider,
            SUBS.c.plan_id,
            TENANTS.c.slug,
            TENANTS.c.status,
            TENANTS.c.deleted_at.is_not(None),
            TENANTS.c.billing_grace_days,
            INVOICES.c.hosted_invoice_url,
            INVOICES.c.status.in_(dc.OPEN_INVOICE),
            INVOICES.c["metadata"]["number"].as_string(),
        )
        .join(SUBS, SUBS.c.id == CASES.c.subscription_id)
        .join(TENANTS, TENANTS.c.id == CASES.c.tenant_id)
        .outerjoin(INVOICES, INVOICES.c.id == CASES.c.invoice_id)
        .where(CASES.c.status == "open")
    ).tuples()
    out = []
    for row in rows:
        (case_id, tenant_id, sub_id, since, amount, currency, ref, sub_status, provider) = row[:9]
        plan_id, slug, tenant_status, gone, grace, url, invoice_open, number = row[9:]
        out.append(
            _Case(
                case_id,
                tenant_id,
                sub_id,
                since,
                amount,
                currency,
                ref,
                sub_status,
                provider,
                plan_id,
                slug,
                tenant_status,
                bool(gone),
                grace,
                url,
                bool(invoice_open),
                number,
            )
        )
    return out


def _taken_steps(session: Session) -> dict[int, set[str]]:
    """The steps each open case already has an attempt for (uq_dunning_attempts_case_id_…)."""
    out: dict[int, set[str]] = {}
    for case_id, step in session.execute(
        select(ATTEMPTS.c.case_id, ATTEMPTS.c.step)
        .join(CASES, CASES.c.id == ATTEMPTS.c.case_id)
        .where(CASES.c.status == "open")
        .distinct()
    ).tuples():
        out.setdefault(case_id, set()).add(step)
    return out


def _hard_declines(session: Session) -> dict[int, str]:
    """Open cases whose card was hard-declined (stolen, lost, do not honor…): 'hard decline
    (stolen_card) at step day3' — their later payment retries are skipped."""
    out: dict[int, str] = {}
    for case_id, step, detail in session.execute(
        select(ATTEMPTS.c.case_id, ATTEMPTS.c.step, ATTEMPTS.c.detail)
        .join(CASES, CASES.c.id == ATTEMPTS.c.case_id)
        .where(
            CASES.c.status == "open",
            ATTEMPTS.c.channel == "payment_retry",
            ATTEMPTS.c.detail.like(HARD_DECLINE + "%"),
        )
        .order_by(ATTEMPTS.c.id)
    ).tuples():
        code = (detail or "").split(":", 1)[0]
        out.setdefault(case_id, f"{code} at step {step}")
    return out


def _last_messages(session: Session) -> dict[int, dt.datetime]:
    """The latest dunning message (sent or still to go) per tenant with an open case
    (ix_outbound_messages_tenant_category)."""
    open_tenants = select(CASES.c.tenant_id).where(CASES.c.status == "open")
    rows = session.execute(
        select(MESSAGES.c.tenant_id, func.max(MESSAGES.c.not_before))
        .where(
            MESSAGES.c.category == dc.CATEGORY,
            MESSAGES.c.tenant_id.in_(open_tenants),
            MESSAGES.c.status.not_in(NOT_SENT),
        )
        .group_by(MESSAGES.c.tenant_id)
    ).tuples()
    return {tenant_id: at for tenant_id, at in rows if at is not None}


def _closing(case: _Case) -> Action | None:
    """A close_case action when the case should no longer be open (the safety net)."""
    status: str | None = None
    if case.tenant_gone or case.tenant_status == "archived":
        status, why = "canceled", f"tenant {case.tenant} is deleted or archived"
    elif case.tenant_status == "suspended":
        status, why = "suspended", f"tenant {case.tenant} is suspended"
    elif case.sub_status not in dc.PAST_DUE:
        status = dc.CLOSE_FOR_STATUS.get(case.sub_status, "canceled")
        why = f"subscription {case.subscription_id} is {case.sub_status}"
    if status is None:
        return None
    payload = CloseCase(case.id, case.tenant_id, case.tenant, case.subscription_id, status)
    reason = f"{why}: close as {status}"
    return Action("close_case", f"dunning_case:{case.id}", reason, encode(payload))


def _step_channels(step: Step) -> list[str]:
    """The attempt channels a step records: its message channels, then retry and hand-over."""
    out = list(step.channels)
    if step.retry_payment:
        out.append("payment_retry")
    if step.handover:
        out.append("handover")
    return out


def due_steps(
    steps: Sequence[Step], taken: set[str], past_due_since: dt.datetime, now: dt.datetime
) -> list[tuple[int, Step]]:
    """(index, step) of the steps due and not taken: offset reached, after the last step taken.
    The last of them is the one to take; the others are passed over."""
    last = -1
    if taken:
        last = max((i for i, s in enumerate(steps) if s.key in taken), default=-1)
    elapsed = now - past_due_since
    return [
        (i, s)
        for i, s in enumerate(steps)
        if i > last and s.offset <= elapsed and _step_channels(s)
    ]


class _Ladder:
    """The plan for one open case."""

    def __init__(
        self, case: _Case, run: _Run, plan: _PlanInfo | None, hard_decline: str | None = None
    ) -> None:
        self.case, self.run, self.now, self.plan_info = case, run, run.now, plan
        self.hard_decline = hard_decline  # why the case's card must not be charged again
        self.actions: list[Action] = []
        self.retries: list[Action] = []

    def base(self, prefs: Preferences | None) -> dict[str, Any]:
        """The CaseStep fields, to start each payload with."""
        c = self.case
        grace = c.grace_days
        if grace is None:
            grace = self.plan_info.grace_days if self.plan_info is not None else None
        if grace is None:
            grace = self.run.default_grace_days
        paused_until = prefs.paused_until if prefs is not None else None
        return {
            "case_id": c.id,
            "tenant_id": c.tenant_id,
            "tenant": c.tenant,
            "subscription_id": c.subscription_id,
            "provider": c.provider,
            "amount_minor": c.amount_minor,
            "currency": c.currency,
            "past_due_since": c.past_due_since,
            "days_past_due": days_past_due(self.now - c.past_due_since),
            "suspend_at": suspend_at(c.past_due_since, grace, paused_until, self.run.final),
        }

    def plan(
        self,
        due: list[tuple[int, Step]],
        prefs: Preferences | None,
        last_sent: dict[int, dt.datetime],
    ) -> None:
        c, now = self.case, self.now
        target = f"dunning_case:{c.id}"
        base = self.base(prefs)
        routes = [route(step, prefs, self.run.settings) for _, step in due]
        # The step taken is the latest due one that sends something; the steps after it send
        # nothing (a payment retry, the handover) and are taken with it.
        chosen = next((k for k in range(len(due) - 1, -1, -1) if routes[k].usable), len(due) - 1)
        index, step = due[chosen]
        if prefs is not None and prefs.paused(now):
            paused = Paused(
                **base, step=step.key, paused_until=prefs.paused_until, note=prefs.pause_note
            )
            reason = f"dunning paused until {iso(prefs.paused_until)}" + (
                f" ({prefs.pause_note})" if prefs.pause_note else ""
            )
            self.actions.append(Action("paused", target, reason, encode(paused)))
            return
        retrying = [s for _, s in due[chosen:] if s.retry_payment and self.hard_decline is None]
        if retrying and prefs is not None and is_quiet(now, prefs.timezone, prefs.quiet_hours):
            # A payment retry is a contact too: never in the church's quiet hours. The whole
            # step waits (its messages would wait for the same minute anyway).
            until = self._allowed(now, prefs)
            held = Held(
                **base,
                step=step.key,
                step_index=index,
                until=until,
                why=f"payment retry in quiet hours ({prefs.timezone}) until {iso(until)}",
            )
            reason = f"step {step.key} ({step.when()}) held: {held.why}; taken then"
            self.actions.append(Action("held", target, reason, encode(held)))
            return
        skipped = [(i, s, f"superseded by {step.key}") for i, s in due[:chosen]]
        for k in range(chosen, len(due)):
            i, s = due[k]
            self._take(base, i, s, routes[k], prefs, last_sent, skipped if k == chosen else [])

    def _take(
        self,
        base: dict[str, Any],
        index: int,
        step: Step,
        way: Route,
        prefs: Preferences | None,
        last_sent: dict[int, dt.datetime],
        skipped: list[tuple[int, Step, str]],
    ) -> None:
        c = self.case
        target = f"dunning_case:{c.id}"
        if step.channels and not (way.usable or way.missing or step.retry_payment or step.handover):
            skipped.append((index, step, f"every channel blocked ({_join(way.blocked)})"))
        if skipped:
            self._skip(base, skipped)
        if way.usable:
            assert prefs is not None  # a usable channel has a contact from the preferences
            self._send(base, index, step, way, last_sent, prefs)
        elif step.channels and way.missing:
            report = NoContact(**base, step=step.key, channels=(), blocked=way.blocked)
            reason = f"step {step.key}: no contact on any channel ({_join(way.blocked)}); add " + (
                f"one with `faithflow dunning prefs set --tenant {c.tenant}` or `faithflow tenants`"
            )
            self.actions.append(Action("no_contact", target, reason, encode(report)))
        if step.retry_payment and self.hard_decline is not None:
            why = f"no payment retry after a {self.hard_decline}"
            skip = SkippedStep(step.key, index, ("payment_retry",), why)
            payload = SkipSteps(**base, steps=(skip,))
            reason = f"{step.key}: {why}"
            self.actions.append(Action("skip_steps", target, reason, encode(payload)))
        elif step.retry_payment:
            self.retries.append(self._retry(base, index, step))
        if step.handover:
            handover = Handover(**base, step=step.key, step_index=index)
            reason = f"step {step.key} ({step.when()}): hand over to suspension"
            self.actions.append(Action("handover", target, reason, encode(handover)))

    def _allowed(self, earliest: dt.datetime, prefs: Preferences) -> dt.datetime:
        key = (earliest, prefs.timezone, prefs.quiet_hours)
        scheduled = self.run.allowed.get(key)
        if scheduled is None:  # many cases share (now, zone, windows): computed once each
            scheduled = self.run.allowed[key] = first_allowed(*key)
        return scheduled

    def _skip(self, base: dict[str, Any], skipped: list[tuple[int, Step, str]]) -> None:
        payload = SkipSteps(
            **base,
            steps=tuple(
                SkippedStep(s.key, i, tuple(_step_channels(s)), why) for i, s, why in skipped
            ),
        )
        reason = "; ".join(f"{s.key}: {why}" for _, s, why in skipped)
        target = f"dunning_case:{self.case.id}"
        self.actions.append(Action("skip_steps", target, reason, encode(payload)))

    def _send(
        self,
        base: dict[str, Any],
        index: int,
        step: Step,
        way: Route,
        last_sent: dict[int, dt.datetime],
        prefs: Preferences,
    ) -> None:
        c, now = self.case, self.now
        due_at = c.past_due_since + step.offset
        earliest = max(due_at, now)
        held: list[str] = []
        last = last_sent.get(c.tenant_id)
        window = self.run.window
        if last is not None and last + window > earliest:
            earliest = last + window
            hours = window.total_seconds() / 3600
            held.append(
                f"window: last dunning message {iso(last)} + {hours:g} h -> {iso(earliest)}"
            )
        scheduled = self._allowed(earliest, prefs)
        if scheduled - earliest >= dt.timedelta(minutes=1):
            held.append(f"quiet hours ({prefs.timezone}) until {iso(scheduled)}")
        last_sent[c.tenant_id] = max(scheduled, last_sent.get(c.tenant_id, scheduled))
        pay_url = (c.hosted_url if c.invoice_open else None) or self.run.return_url
        send = SendStep(
            **base,
            step=step.key,
            step_index=index,
            template=step.template,
            channels=tuple(way.usable),
            recipients=way.usable,
            blocked=way.blocked,
            due_at=due_at,
            scheduled_at=scheduled,
            held_back=tuple(held),
            invoice_number=c.invoice_number or c.invoice_ref or "",
            pay_url=pay_url,
            fallback=way.fallback,
        )
        when = "now" if scheduled <= now + dt.timedelta(minutes=1) else iso(scheduled)
        reason = f"step {step.key} ({step.when()}) by {', '.join(way.usable)}, {when}"
        if way.fallback:
            reason += f" (falling back: {_join(way.fallback)})"
        self.actions.append(Action("send_step", f"dunning_case:{c.id}", reason, encode(send)))

    def _retry(self, base: dict[str, Any], index: int, step: Step) -> Action:
        retry = RetryPayment(**base, step=step.key, step_index=index, invoice=self.case.invoice_ref)
        reason = f"step {step.key} ({step.when()}): retry the payment at {self.case.provider}"
        return Action("retry_payment", f"dunning_case:{self.case.id}", reason, encode(retry))


@dataclass(frozen=True)
class Route:
    """Where one step's message can go for one tenant."""

    usable: dict[str, str]  # channel -> recipient
    blocked: dict[str, str]  # the step's channels that cannot be used -> why
    fallback: dict[str, str]  # channels used instead of the step's own -> why
    missing: bool  # a channel is allowed but lacks a contact (a human can add one)


def route(step: Step, prefs: Preferences | None, settings: Settings | None = None) -> Route:
    """The step's channels the church can receive; when none can be used, the first other
    channel (email, sms, whatsapp) the step's template has a version for and the church has
    a contact on and has not opted out of: a church with a phone and no e-mail gets the SMS
    version of an e-mail step. WhatsApp needs the church's opt-in and an approved template
    for the step's template in its locale (`settings`, comms/whatsapp.py); without either the
    step goes by SMS instead, whatever else it sends."""
    usable: dict[str, str] = {}
    blocked: dict[str, str] = {}
    missing = False
    for channel in step.channels:
        why = prefs.blocked(channel) if prefs is not None else "no preferences"
        if why is None and prefs is not None and channel == "whatsapp" and step.template:
            why = whatsapp.unavailable(settings, step.template, prefs.locale)
        contact = prefs.contact(channel) if prefs is not None else None
        if why is None and contact is not None:
            usable[channel] = contact
            continue
        blocked[channel] = why or "no contact"
        if contact is None and _allowed(prefs, channel):
            missing = True
    fallback: dict[str, str] = {}
    sms_too = prefs is not None and prefs.blocked("sms") is None and prefs.phone is not None
    if "whatsapp" in blocked and "sms" not in usable and sms_too and step.template is not None:
        assert prefs is not None and prefs.phone is not None
        if "sms" in templates.available(step.template):  # WhatsApp's stand-in: the SMS
            usable["sms"] = prefs.phone
            fallback["sms"] = f"instead of whatsapp: {blocked['whatsapp']}"
    if step.channels and not usable and prefs is not None and step.template is not None:
        versions = templates.available(step.template)
        for channel in CHANNELS:
            if channel in step.channels or channel not in versions:
                continue
            contact = prefs.contact(channel)
            if prefs.blocked(channel) is None and contact is not None:
                usable[channel] = contact
                fallback[channel] = "instead of " + _join(blocked)
                break
    return Route(usable, blocked, fallback, missing)


def _allowed(prefs: Preferences | None, channel: str) -> bool:
    """The tenant allows `channel` and has not opted out of it (only the contact is missing)."""
    if prefs is None or channel not in prefs.channels:
        return False
    if channel == "sms" and prefs.sms_opt_out:
        return False
    return not (channel == "whatsapp" and prefs.whatsapp_opt_out)


def _join(blocked: Mapping[str, str]) -> str:
    return "; ".join(f"{ch}: {why}" for ch, why in blocked.items())
