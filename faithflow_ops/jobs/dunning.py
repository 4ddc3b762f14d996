"""`faithflow dunning run` (preview: `dunning preview` = `run --dry-run`): the past-due recovery
ladder. The runbook is docs/dunning.md; this docstring is the contract.

Action kinds:

- `send_step`: the ladder step now due on an open case, on the channels the tenant's
  preferences allow (blocked channels are listed with the reason), scheduled for the first
  minute allowed by the suppression window (at most one dunning message per tenant per
  `FAITHFLOW_DUNNING_WINDOW_HOURS`, default 20; all channels of one step are one contact and go
  together) and the tenant's quiet hours. Applying it enqueues one outbox message per channel
  (`not_before` = the scheduled minute, idempotency key `dunning:{case}:{step}:{channel}`,
  category `dunning`, about the `dunning_attempts` row) and records that row, together.
- `retry_payment`: the step retries the payment at the provider (dunning/retry.py). The attempt
  row is claimed and committed first, the provider called with no transaction open, then the
  outcome recorded; a crash in between leaves the claim without an outcome (never charged twice).
- `handover`: the step hands the case over to suspension (`handed_over_at`); `subs automate`
  suspends the tenant once its grace has run out.
- `skip_steps`: steps passed over, recorded as skipped attempts so they never fire late: the
  earlier steps when several are overdue at once (a case found late: only the latest due step
  is taken), or a step every channel of which the tenant's preferences block (opt-out).
- `open_case` / `close_case`: the safety net for anything that bypassed the hook in
  `set_subscription_status`: a past-due subscription of an active tenant with no open case; an
  open case whose subscription is no longer past due (recovered, canceled, suspended) or whose
  tenant is suspended or gone.
- `paused` (report-only): the tenant paused dunning until a promised payment; nothing is sent
  or charged until then, and the latest step due at the end of the pause is taken.
- `no_contact` (report-only, a human must act): every channel of the step due lacks a contact
  (no email address or phone number); it repeats until one is added or the next step is due.

A step is due once `past_due_since + offset <= now` and no later step was taken; it is never
dropped and never sent early: held back by the window or quiet hours it is scheduled, not
skipped. plan reads everything in a few set-based queries before the first action is yielded
(the runner applies early batches while the plan goes on), so a second run at the same `now`
plans no new sends. apply re-checks that the case is still open (`UPDATE … WHERE status =
'open'`, rowcount) — a payment recovered between preview and run sends nothing — and inserts
each attempt `ON CONFLICT DO NOTHING` (a step is never taken twice).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple, cast

from sqlalchemy import Table, exists, func, select, update
from sqlalchemy.orm import Session

from faithflow_ops import audit
from faithflow_ops.billing.grace import DEFAULT_GRACE_DAYS, plan_grace
from faithflow_ops.comms import outbox
from faithflow_ops.db import rowcount, upsert_insert
from faithflow_ops.dunning import cases as dc
from faithflow_ops.dunning import retry
from faithflow_ops.jobs.base import Action, Job, JobContext, Outcome, StaleAction
from faithflow_ops.models import (
    Invoice,
    OutboundMessage,
    Subscription,
    SubscriptionPlan,
    Tenant,
)
from faithflow_ops.models.billing import AUTHORIZATION_KEY
from faithflow_ops.models.dunning import DunningAttempt, DunningCase

CASES = cast(Table, DunningCase.__table__)
ATTEMPTS = cast(Table, DunningAttempt.__table__)
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
    "no_contact",
)
PAST_DUE = dc.PAST_DUE
CATEGORY = "dunning"
# Messages that count for the suppression window: everything but what was never sent.
NOT_SENT = ("canceled", "suppressed")
AUDIT_STEP = "dunning.step"
AUDIT_SKIP = "dunning.skip"
AUDIT_RETRY = "dunning.payment_retry"
AUDIT_HANDOVER = "dunning.handover"


class Dunning(Job):
    name = "dunning"
    report_only = frozenset({"paused", "no_contact"})
    batch_size = 100  # send_step/skip/handover actions per transaction
    table_columns = (
        "kind",
        "tenant",
        "case",
        "amount",
        "days",
        "step",
        "channels",
        "scheduled (UTC)",
        "held back / reason",
    )

    @classmethod
    def table_rows(cls, action: Action) -> list[tuple[Any, ...]]:
        d = action.data
        amount = f"{d['amount_minor']} {d['currency']}" if "amount_minor" in d else ""
        channels = ", ".join(d.get("channels") or ())
        blocked = d.get("blocked") or {}
        if blocked:
            channels += (" " if channels else "") + " ".join(
                f"(-{ch}: {why})" for ch, why in blocked.items()
            )
        held = "; ".join(d.get("held_back") or ()) or action.reason
        return [
            (
                action.kind,
                d.get("tenant"),
                d.get("case_id") or action.target,
                amount,
                d.get("days_past_due", ""),
                d.get("step", ""),
                channels,
                d.get("scheduled_at", ""),
                held,
            )
        ]

    def plan(self, session: Session, ctx: JobContext) -> Iterator[Action]:
        actions = plan_actions(session, ctx)
        if ctx.progress is not None:
            ctx.progress.start(len(actions))
        yield from actions

    def apply(self, session: Session, ctx: JobContext, action: Action) -> None:
        handler = _APPLY.get(action.kind)
        if handler is None:
            raise ValueError(f"dunning has no action kind {action.kind!r}")
        handler(session, ctx, action.data)

    def apply_batch(
        self, session: Session, ctx: JobContext, actions: Sequence[Action]
    ) -> list[Outcome] | None:
        # Payment retries call a provider outside any transaction: never in a batch.
        if any(a.kind == "retry_payment" for a in actions):
            return None
        try:
            for action in actions:
                self.apply(session, ctx, action)
                session.flush()
        except StaleAction:
            return None  # the runner rolls back and applies them one by one
        return ["applied"] * len(actions)


JOB = Dunning()


# ---------------------------------------------------------------------------------------------
# plan


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
class _PlanInfo:
    code: str
    grace_days: int | None


def _iso(value: dt.datetime) -> str:
    return value.isoformat()


def _days(delta: dt.timedelta) -> int:
    return max(delta.days, 0)


def plan_actions(session: Session, ctx: JobContext) -> list[Action]:
    """Every action of one run (read-only; see the module docstring)."""
    from faithflow_ops.dunning.policy import current_policy
    from faithflow_ops.dunning.prefs import preferences_for

    policy = current_policy(session)
    plans = {
        pid: _PlanInfo(code, plan_grace(meta))
        for pid, code, meta in session.execute(
            select(PLANS.c.id, PLANS.c.code, PLANS.c["metadata"])
        ).tuples()
    }
    actions = _missing_cases(session)
    cases = _open_cases(session)
    taken = _taken_steps(session)
    last_sent = _last_messages(session)
    window = dt.timedelta(hours=ctx.settings.dunning_window_hours)
    # Most open cases have nothing due in a given run: only those that do need preferences.
    due: list[tuple[_Case, list[tuple[int, Any]]]] = []
    for case in sorted(cases, key=lambda c: (c.tenant_id, c.past_due_since, c.id)):
        closing = _closing(case)
        if closing is not None:
            actions.append(closing)
            continue
        steps = due_steps(policy.steps, taken.get(case.id, set()), case.past_due_since, ctx.now)
        if steps:
            due.append((case, steps))
    prefs = preferences_for(session, {case.tenant_id for case, _ in due})
    sends: list[Action] = []
    retries: list[Action] = []
    allowed: dict[tuple[Any, ...], dt.datetime] = {}
    # Per tenant, oldest episode first: a tenant with two cases gets one message per window.
    for case, steps in due:
        ladder = _Ladder(case, ctx, plans.get(case.plan_id), window, allowed)
        ladder.plan(steps, prefs.get(case.tenant_id), last_sent)
        sends += ladder.actions
        retries += ladder.retries
    # Payment retries last: they go one by one (provider I/O), the rest in batches.
    return actions + sends + retries


def _missing_cases(session: Session) -> list[Action]:
    # ix_subscriptions_automate_past_due_since (past-due rows); uq_dunning_cases_open_subscription
    # answers the NOT EXISTS
    rows = session.execute(
        select(SUBS.c.id, SUBS.c.tenant_id, TENANTS.c.slug, SUBS.c.past_due_since)
        .join(TENANTS, TENANTS.c.id == SUBS.c.tenant_id)
        .where(
            SUBS.c.status.in_(PAST_DUE),
            TENANTS.c.status == "active",
            TENANTS.c.deleted_at.is_(None),
            ~exists().where(CASES.c.subscription_id == SUBS.c.id, CASES.c.status == "open"),
        )
        .order_by(SUBS.c.id)
    ).tuples()
    out = []
    for sub_id, tenant_id, slug, since in rows:
        data = {
            "subscription_id": sub_id,
            "tenant_id": tenant_id,
            "tenant": slug,
            "past_due_since": _iso(since) if since else None,
        }
        reason = "subscription is past due with no open dunning case (a missed hook): open one"
        out.append(Action("open_case", f"subscription:{sub_id}", reason, data))
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


def _last_messages(session: Session) -> dict[int, dt.datetime]:
    """The latest dunning message (sent or still to go) per tenant with an open case
    (ix_outbound_messages_tenant_category)."""
    open_tenants = select(CASES.c.tenant_id).where(CASES.c.status == "open")
    rows = session.execute(
        select(MESSAGES.c.tenant_id, func.max(MESSAGES.c.not_before))
        .where(
            MESSAGES.c.category == CATEGORY,
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
    elif case.sub_status not in PAST_DUE:
        status = dc.CLOSE_FOR_STATUS.get(case.sub_status, "canceled")
        why = f"subscription {case.subscription_id} is {case.sub_status}"
    if status is None:
        return None
    data = {
        "case_id": case.id,
        "tenant_id": case.tenant_id,
        "tenant": case.tenant,
        "subscription_id": case.subscription_id,
        "status": status,
    }
    return Action("close_case", f"dunning_case:{case.id}", f"{why}: close as {status}", data)


def _step_channels(step: Any) -> list[str]:
    """The attempt channels a step records: its message channels, then retry and hand-over."""
    out = list(step.channels)
    if step.retry_payment:
        out.append("payment_retry")
    if step.handover:
        out.append("handover")
    return out


def due_steps(
    steps: Sequence[Any], taken: set[str], past_due_since: dt.datetime, now: dt.datetime
) -> list[tuple[int, Any]]:
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
        self,
        case: _Case,
        ctx: JobContext,
        plan: _PlanInfo | None,
        window: dt.timedelta,
        allowed: dict[tuple[Any, ...], dt.datetime],
    ) -> None:
        self.case, self.ctx, self.plan_info, self.window = case, ctx, plan, window
        self.allowed = allowed  # first_allowed answers, shared by the run's cases
        self.actions: list[Action] = []
        self.retries: list[Action] = []

    def _base(self) -> dict[str, Any]:
        c = self.case
        grace = c.grace_days
        if grace is None:
            grace = self.plan_info.grace_days if self.plan_info is not None else None
        if grace is None:
            grace = DEFAULT_GRACE_DAYS
        return {
            "case_id": c.id,
            "tenant_id": c.tenant_id,
            "tenant": c.tenant,
            "subscription_id": c.subscription_id,
            "provider": c.provider,
            "amount_minor": c.amount_minor,
            "currency": c.currency,
            "past_due_since": _iso(c.past_due_since),
            "days_past_due": _days(self.ctx.now - c.past_due_since),
            "suspend_at": _iso(c.past_due_since + dt.timedelta(days=grace)),
        }

    def plan(
        self, due: list[tuple[int, Any]], prefs: Any, last_sent: dict[int, dt.datetime]
    ) -> None:
        c, now = self.case, self.ctx.now
        index, step = due[-1]
        target = f"dunning_case:{c.id}"
        base = self._base()
        if prefs is not None and prefs.paused(now):
            data = base | {
                "step": step.key,
                "paused_until": _iso(prefs.paused_until),
                "note": prefs.pause_note,
            }
            reason = f"dunning paused until {_iso(prefs.paused_until)}" + (
                f" ({prefs.pause_note})" if prefs.pause_note else ""
            )
            self.actions.append(Action("paused", target, reason, data))
            return
        skipped = [(i, s, f"superseded by {step.key}") for i, s in due[:-1]]
        usable: dict[str, str] = {}
        blocked: dict[str, str] = {}
        missing = False
        for channel in step.channels:
            why = prefs.blocked(channel) if prefs is not None else "no preferences"
            contact = prefs.contact(channel) if prefs is not None else None
            if why is None and contact is not None:
                usable[channel] = contact
                continue
            blocked[channel] = why or "no contact"
            if contact is None and _allowed(prefs, channel):
                missing = True
        if step.channels and not (usable or missing or step.retry_payment or step.handover):
            reasons = "; ".join(f"{ch}: {why}" for ch, why in blocked.items())
            skipped.append((index, step, f"every channel blocked ({reasons})"))
        if skipped:
            self._skip(base, skipped)
        if usable:
            self._send(base, index, step, usable, blocked, last_sent, prefs)
        elif step.channels and missing:
            data = base | {"step": step.key, "channels": [], "blocked": blocked}
            reason = f"step {step.key}: no contact on any channel ({_join(blocked)}); add one " + (
                f"with `faithflow dunning prefs set --tenant {c.tenant}` or `faithflow tenants`"
            )
            self.actions.append(Action("no_contact", target, reason, data))
        if step.retry_payment:
            self.retries.append(self._retry(base, index, step))
        if step.handover:
            data = base | {"step": step.key, "step_index": index}
            reason = f"step {step.key} ({step.when()}): hand over to suspension"
            self.actions.append(Action("handover", target, reason, data))

    def _skip(self, base: dict[str, Any], skipped: list[tuple[int, Any, str]]) -> None:
        data = base | {
            "steps": [
                {"step": s.key, "step_index": i, "channels": _step_channels(s), "why": why}
                for i, s, why in skipped
            ]
        }
        reason = "; ".join(f"{s.key}: {why}" for _, s, why in skipped)
        self.actions.append(Action("skip_steps", f"dunning_case:{self.case.id}", reason, data))

    def _send(
        self,
        base: dict[str, Any],
        index: int,
        step: Any,
        usable: dict[str, str],
        blocked: dict[str, str],
        last_sent: dict[int, dt.datetime],
        prefs: Any,
    ) -> None:
        from faithflow_ops.dunning.quiet import first_allowed

        c, now = self.case, self.ctx.now
        due_at = c.past_due_since + step.offset
        earliest = max(due_at, now)
        held: list[str] = []
        last = last_sent.get(c.tenant_id)
        if last is not None and last + self.window > earliest:
            earliest = last + self.window
            hours = self.window.total_seconds() / 3600
            held.append(
                f"window: last dunning message {_iso(last)} + {hours:g} h -> {_iso(earliest)}"
            )
        key = (earliest, prefs.timezone, prefs.quiet_hours)
        scheduled = self.allowed.get(key)
        if scheduled is None:  # many cases share (now, zone, windows): computed once each
            scheduled = self.allowed[key] = first_allowed(*key)
        if scheduled - earliest >= dt.timedelta(minutes=1):
            held.append(f"quiet hours ({prefs.timezone}) until {_iso(scheduled)}")
        last_sent[c.tenant_id] = max(scheduled, last_sent.get(c.tenant_id, scheduled))
        pay_url = (c.hosted_url if c.invoice_open else None) or (
            self.ctx.settings.billing_return_url or ""
        )
        data = base | {
            "step": step.key,
            "step_index": index,
            "template": step.template,
            "channels": list(usable),
            "recipients": usable,
            "blocked": blocked,
            "due_at": _iso(due_at),
            "scheduled_at": _iso(scheduled),
            "held_back": held,
            "invoice_number": c.invoice_number or c.invoice_ref or "",
            "pay_url": pay_url,
        }
        when = "now" if scheduled <= now + dt.timedelta(minutes=1) else _iso(scheduled)
        reason = f"step {step.key} ({step.when()}) by {', '.join(usable)}, {when}"
        self.actions.append(Action("send_step", f"dunning_case:{c.id}", reason, data))

    def _retry(self, base: dict[str, Any], index: int, step: Any) -> Action:
        data = base | {"step": step.key, "step_index": index, "invoice": self.case.invoice_ref}
        reason = f"step {step.key} ({step.when()}): retry the payment at {self.case.provider}"
        return Action("retry_payment", f"dunning_case:{self.case.id}", reason, data)


def _allowed(prefs: Any, channel: str) -> bool:
    """The tenant allows `channel` and has not opted out of it (only the contact is missing)."""
    if prefs is None or channel not in prefs.channels:
        return False
    if channel == "sms" and prefs.sms_opt_out:
        return False
    return not (channel == "whatsapp" and prefs.whatsapp_opt_out)


def _join(blocked: Mapping[str, str]) -> str:
    return "; ".join(f"{ch}: {why}" for ch, why in blocked.items())


# ---------------------------------------------------------------------------------------------
# apply


def _time(data: Mapping[str, Any], key: str) -> dt.datetime:
    return dt.datetime.fromisoformat(data[key])


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
    data: Mapping[str, Any], step: str, index: int, channel: str, at: dt.datetime, now: dt.datetime
) -> dict[str, Any]:
    return {
        "case_id": data["case_id"],
        "tenant_id": data["tenant_id"],
        "step": step,
        "step_index": index,
        "channel": channel,
        "scheduled_at": at,
        "created_at": now,
    }


def _apply_send(session: Session, ctx: JobContext, data: Mapping[str, Any]) -> None:
    case_id, step, index = data["case_id"], data["step"], data["step_index"]
    scheduled = _time(data, "scheduled_at")
    claim_open(session, case_id, ctx.now)
    tenant = session.get(Tenant, data["tenant_id"])
    if tenant is None:
        raise StaleAction(f"tenant {data['tenant']} no longer exists")
    since = _time(data, "past_due_since")
    variables = {
        "amount_minor": data["amount_minor"],
        "currency": data["currency"],
        "invoice_number": data["invoice_number"],
        "days_past_due": _days(scheduled - since),  # as of the day it goes out
        "pay_url": data["pay_url"],
        "suspend_at": data["suspend_at"],
    }
    sent: dict[str, int] = {}
    for channel in data["channels"]:
        attempt_id = _insert_attempt(
            session, _attempt_values(data, step, index, channel, scheduled, ctx.now)
        )
        if attempt_id is None:
            continue  # this channel of the step was already taken
        queued = outbox.enqueue(
            session,
            channel=channel,
            recipient=data["recipients"][channel],
            template=data["template"],
            variables=variables,
            idempotency_key=f"dunning:{case_id}:{step}:{channel}",
            now=ctx.now,
            tenant=tenant,
            not_before=scheduled,
            category=CATEGORY,
            about=(dc.ABOUT, attempt_id),
        )
        session.execute(
            update(ATTEMPTS)
            .where(ATTEMPTS.c.id == attempt_id)
            .values(message_id=queued.id, detail=f"message {queued.status}")
        )
        sent[channel] = queued.id
    if not sent:
        raise StaleAction(f"dunning case {case_id}: step {step} was already taken")
    audit.record(
        session,
        actor=ctx.actor,
        action=AUDIT_STEP,
        entity_type="dunning_case",
        entity_id=case_id,
        tenant_id=data["tenant_id"],
        after={"step": step, "messages": sent, "scheduled_at": data["scheduled_at"]},
    )


def _apply_skip(session: Session, ctx: JobContext, data: Mapping[str, Any]) -> None:
    case_id = data["case_id"]
    claim_open(session, case_id, ctx.now)
    recorded = []
    for item in data["steps"]:
        for channel in item["channels"]:
            values = _attempt_values(
                data, item["step"], item["step_index"], channel, ctx.now, ctx.now
            )
            values["detail"] = f"{dc.SKIPPED_PREFIX} {item['why']}"
            if channel == "payment_retry":
                values["retry_outcome"] = retry.SKIPPED
            if _insert_attempt(session, values) is not None:
                recorded.append(f"{item['step']}:{channel}")
    if not recorded:
        raise StaleAction(f"dunning case {case_id}: the steps were already recorded")
    audit.record(
        session,
        actor=ctx.actor,
        action=AUDIT_SKIP,
        entity_type="dunning_case",
        entity_id=case_id,
        tenant_id=data["tenant_id"],
        after={"skipped": recorded},
    )


def _apply_handover(session: Session, ctx: JobContext, data: Mapping[str, Any]) -> None:
    case_id, step = data["case_id"], data["step"]
    claim_open(session, case_id, ctx.now)
    values = _attempt_values(data, step, data["step_index"], "handover", ctx.now, ctx.now)
    values["detail"] = f"handed over to suspension (suspend at {data['suspend_at']})"
    if _insert_attempt(session, values) is None:
        raise StaleAction(f"dunning case {case_id} was already handed over")
    session.execute(
        update(CASES)
        .where(CASES.c.id == case_id, CASES.c.handed_over_at.is_(None))
        .values(handed_over_at=ctx.now)
        .execution_options(synchronize_session=False)
    )
    audit.record(
        session,
        actor=ctx.actor,
        action=AUDIT_HANDOVER,
        entity_type="dunning_case",
        entity_id=case_id,
        tenant_id=data["tenant_id"],
        after={"step": step, "handed_over_at": _iso(ctx.now), "suspend_at": data["suspend_at"]},
    )


def _retry_target(session: Session, data: Mapping[str, Any]) -> retry.Target:
    """What to charge, read now: the case's invoice if still open, else the oldest open one."""
    sub = session.get(Subscription, data["subscription_id"])
    if sub is None:
        raise StaleAction(f"subscription {data['subscription_id']} no longer exists")
    case = session.get(DunningCase, data["case_id"])
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
    return retry.Target(
        provider=sub.provider,
        case_id=case.id,
        step=data["step"],
        tenant=data["tenant"],
        invoice_ref=invoice.provider_invoice_id if invoice is not None else None,
        amount_minor=amount,
        currency=currency,
        authorization_code=auth.strip() if isinstance(auth, str) and auth.strip() else None,
        email=tenant.billing_email if tenant is not None else None,
        plan=plan.code if plan is not None else None,
    )


def _apply_retry(session: Session, ctx: JobContext, data: Mapping[str, Any]) -> None:
    case_id, step = data["case_id"], data["step"]
    # 1. Claim: the attempt row, committed at once in its own short transaction.
    with Session(session.get_bind()) as claim, claim.begin():
        claim_open(claim, case_id, ctx.now)
        values = _attempt_values(data, step, data["step_index"], "payment_retry", ctx.now, ctx.now)
        values["detail"] = "in progress: the provider was called; no outcome recorded yet"
        attempt_id = _insert_attempt(claim, values)
        if attempt_id is None:
            raise StaleAction(f"dunning case {case_id}: step {step}'s payment retry was taken")
        target = _retry_target(claim, data)
    # 2. The provider call, with no transaction open.
    result = retry.attempt(ctx.settings, target)
    # 3. The outcome, in the runner's transaction.
    session.execute(
        update(ATTEMPTS)
        .where(ATTEMPTS.c.id == attempt_id)
        .values(retry_outcome=result.outcome, detail=result.detail[:2000])
    )
    audit.record(
        session,
        actor=ctx.actor,
        action=AUDIT_RETRY,
        entity_type="dunning_case",
        entity_id=case_id,
        tenant_id=data["tenant_id"],
        after={
            "step": step,
            "provider": target.provider,
            "invoice": target.invoice_ref,
            "outcome": result.outcome,
            "detail": result.detail,
        },
    )


def _apply_open(session: Session, ctx: JobContext, data: Mapping[str, Any]) -> None:
    sub = session.scalars(
        select(Subscription).where(Subscription.id == data["subscription_id"]).with_for_update()
    ).first()
    if sub is None or sub.status not in PAST_DUE:
        raise StaleAction(
            f"subscription {data['subscription_id']} is no longer past due "
            f"({sub.status if sub else 'gone'})"
        )
    if dc.open_case(session, sub, ctx.now, ctx.actor) is None:
        raise StaleAction(f"subscription {sub.id} already has an open dunning case")


def _apply_close(session: Session, ctx: JobContext, data: Mapping[str, Any]) -> None:
    case_id, status = data["case_id"], data["status"]
    row = session.execute(
        select(SUBS.c.status, TENANTS.c.status, TENANTS.c.deleted_at)
        .join(TENANTS, TENANTS.c.id == SUBS.c.tenant_id)
        .where(SUBS.c.id == data["subscription_id"])
    ).first()
    still_due = row is not None and row[0] in PAST_DUE and row[1] == "active" and row[2] is None
    if still_due:
        raise StaleAction(f"subscription {data['subscription_id']} is past due again; case stays")
    closed = dc.close_cases(
        session,
        subscription_id=data["subscription_id"],
        status=status,
        at=ctx.now,
        actor=ctx.actor,
    )
    if case_id not in closed:
        raise StaleAction(f"dunning case {case_id} was already closed")


_APPLY = {
    "send_step": _apply_send,
    "skip_steps": _apply_skip,
    "handover": _apply_handover,
    "retry_payment": _apply_retry,
    "open_case": _apply_open,
    "close_case": _apply_close,
}
