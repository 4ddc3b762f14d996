"""The three SLA clocks of a ticket: episodes, pausing, due and warning times, breaches and
fulfilment (docs/support.md "SLA clocks").

A clock's episode is *active* from `start` until `fulfil`. While active it *runs* unless the
ticket's status is one of the metric's pausing statuses; paused time adds nothing. Clock time is
counted in the policy's unit: business seconds on the support calendar, or calendar seconds.

- due = the running stretch's start + (target − time already used), in clock time;
- warn = the later of due − FAITHFLOW_SLA_WARNING_MINUTES (wall clock, default 15) and the
  moment FAITHFLOW_SLA_WARNING_PERCENT (default 80) of the target is used (clock time);
- a target that changes (a priority, a policy) applies from the change: a clock it puts past
  its due time is due at the change, never before it;
- a paused clock has no due or warning time; a breached clock keeps its due time for good;
- a breach is recorded at the due time: by `sla sweep`, or by a ticket command that stops or
  pauses a clock already past its due time before the sweep saw it (never at a later time).

Every ticket command calls `refresh(ticket, now)` after changing the status, so the stored due
and warning times always match the status, the priority and the policy in force; a calendar or
policy change recomputes every open ticket's clocks in its own transaction (`change_rules`).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar
from zoneinfo import ZoneInfo

from sqlalchemy import and_, or_, select
from sqlalchemy.orm import Session

from faithflow_ops.db import upsert_insert
from faithflow_ops.errors import UserError
from faithflow_ops.models import SlaEvent, SupportTicket, User
from faithflow_ops.models.support import METRICS, OPEN_STATUSES
from faithflow_ops.support import alerts
from faithflow_ops.support.clock import ALWAYS, Calendar
from faithflow_ops.support.policies import Policies, Target, load_calendar, load_policies

if TYPE_CHECKING:
    from faithflow_ops.config import Settings

T = TypeVar("T")


@dataclass(frozen=True)
class Warning:
    minutes: int = 15
    percent: int = 80


@dataclass
class Rules:
    """What the clocks are computed with: targets, the calendar, the warning rule."""

    policies: Policies
    calendar: Calendar
    warning: Warning
    alert: bool = False  # an escalation hook is set: urgent tickets' breaches open incidents

    @classmethod
    def load(cls, session: Session, warning: Warning | None = None, alert: bool = False) -> Rules:
        return cls(load_policies(session), load_calendar(session), warning or Warning(), alert)

    @classmethod
    def from_settings(cls, session: Session, settings: Settings) -> Rules:
        """The rules in force: the stored policies and calendar, the warning rule of
        FAITHFLOW_SLA_WARNING_MINUTES/PERCENT, and incidents for urgent tickets' marks when an
        escalation hook is set (alerts.enabled)."""
        warning = Warning(settings.sla_warning_minutes, settings.sla_warning_percent)
        return cls.load(session, warning, alert=alerts.enabled(settings))

    def target(self, ticket: SupportTicket, metric: str) -> Target:
        return self.policies[ticket.priority, metric]

    def clock(self, target: Target) -> Calendar:
        return self.calendar if target.hours == "business" else ALWAYS


@dataclass(frozen=True)
class SlaMark:
    """The payload of `sla sweep`'s `sla_breach` and `sla_warning` (one shape for both): the
    clock as the plan saw it, claimed again by (ticket, metric, episode) when applied."""

    ticket_id: int
    metric: str
    episode: int
    priority: str
    assignee_id: int | None
    due_at: dt.datetime
    minutes_left: int  # whole minutes to the due time at the plan's `now` (negative: overdue)


def _get(ticket: SupportTicket, metric: str, field: str) -> Any:
    return getattr(ticket, f"{metric}_{field}")


def _set(ticket: SupportTicket, metric: str, field: str, value: Any) -> None:
    setattr(ticket, f"{metric}_{field}", value)


def active(ticket: SupportTicket, metric: str) -> bool:
    return bool(_get(ticket, metric, "episode")) and _get(ticket, metric, "fulfilled_at") is None


def used_seconds(ticket: SupportTicket, metric: str, rules: Rules, now: dt.datetime) -> int:
    """Clock time the current episode has used up to `now`."""
    used = int(_get(ticket, metric, "elapsed_seconds") or 0)
    since = _get(ticket, metric, "running_since")
    if since is not None and now > since:
        used += rules.clock(rules.target(ticket, metric)).seconds_between(since, now)
    return used


def record_event(
    session: Session,
    ticket: SupportTicket,
    metric: str,
    kind: str,
    *,
    occurred_at: dt.datetime,
    now: dt.datetime,
    rules: Rules | None = None,
    data: dict[str, Any] | None = None,
) -> bool:
    """Append one sla_events row (ON CONFLICT DO NOTHING); False when it was already there."""
    target = rules.target(ticket, metric) if rules is not None else None
    started = _get(ticket, metric, "started_at")
    row: dict[str, Any] = {
        "ticket_id": ticket.id,
        "tenant_id": ticket.tenant_id,
        "metric": metric,
        "episode": _get(ticket, metric, "episode"),
        "kind": kind,
        "priority": ticket.priority,
        "occurred_at": occurred_at,
        "started_at": started,
        "due_at": _get(ticket, metric, "due_at"),
        "target_minutes": target.minutes if target else None,
        "hours": target.hours if target else None,
        "assignee_id": ticket.assignee_id,
        "data": data or {},
        "created_at": now,
    }
    if kind == "fulfilled" and rules is not None:
        row["elapsed_seconds"] = int(_get(ticket, metric, "elapsed_seconds") or 0)
        row["calendar_seconds"] = int((occurred_at - started).total_seconds()) if started else None
        row["within_target"] = _get(ticket, metric, "breached_at") is None
    stmt = (
        upsert_insert(session.get_bind().dialect.name, SlaEvent)
        .values(**row)
        .on_conflict_do_nothing(index_elements=["ticket_id", "metric", "episode", "kind"])
        .returning(SlaEvent.id)
    )
    return session.execute(stmt).scalar_one_or_none() is not None


def catch_breach(
    session: Session,
    ticket: SupportTicket,
    metric: str,
    rules: Rules,
    now: dt.datetime,
    by: str,
) -> None:
    """A running clock past its due time that the sweep has not marked yet: mark it now, at
    its due time (the breach happened then), before the clock stops or pauses."""
    due = _get(ticket, metric, "due_at")
    if (
        _get(ticket, metric, "running_since") is not None
        and due is not None
        and due <= now
        and _get(ticket, metric, "breached_at") is None
    ):
        _set(ticket, metric, "breached_at", due)
        data: dict[str, Any] = {"recorded_by": by}
        if rules.alert and ticket.priority == alerts.ALERTED:
            mark = alerts.Mark(
                ticket.id,
                ticket.tenant_id,
                metric,
                int(_get(ticket, metric, "episode")),
                "breach",
                due,
                ticket.subject,
                _agent_email(session, ticket.assignee_id),
            )
            data["alert"] = {"incident": alerts.raise_marks(session, [mark], now=now)[mark.cause]}
        record_event(session, ticket, metric, "breach", occurred_at=due, now=now, data=data)


def _agent_email(session: Session, user_id: int | None) -> str | None:
    user = session.get(User, user_id) if user_id is not None else None
    return user.email if user is not None else None


def _stop_running(ticket: SupportTicket, metric: str, rules: Rules, now: dt.datetime) -> None:
    if _get(ticket, metric, "running_since") is not None:
        _set(ticket, metric, "elapsed_seconds", used_seconds(ticket, metric, rules, now))
        _set(ticket, metric, "running_since", None)


def start(ticket: SupportTicket, metric: str, rules: Rules, now: dt.datetime) -> None:
    """Begin a new episode of `metric` (call refresh afterwards)."""
    _set(ticket, metric, "episode", int(_get(ticket, metric, "episode") or 0) + 1)
    _set(ticket, metric, "started_at", now)
    _set(ticket, metric, "elapsed_seconds", 0)
    for field in ("running_since", "due_at", "warn_at", "warned_at", "breached_at"):
        _set(ticket, metric, field, None)
    _set(ticket, metric, "fulfilled_at", None)


def resume(ticket: SupportTicket, metric: str, rules: Rules, now: dt.datetime) -> None:
    """A reopened ticket's clock picks up where its solve stopped it, as Zendesk's resolution
    metrics do (docs/support.md "Reopened tickets"): a new episode (the event log keeps one
    `fulfilled` per episode) that carries the clock time already used, so only what is left of
    the target remains; a clock that breached stays breached (its due time and breach carried,
    no second breach). Call refresh afterwards."""
    used = int(_get(ticket, metric, "elapsed_seconds") or 0)
    breached = _get(ticket, metric, "breached_at")
    due = _get(ticket, metric, "due_at")
    start(ticket, metric, rules, now)
    _set(ticket, metric, "elapsed_seconds", used)
    if breached is not None:
        _set(ticket, metric, "breached_at", breached)
        _set(ticket, metric, "due_at", due)


def fulfil(
    session: Session, ticket: SupportTicket, metric: str, rules: Rules, now: dt.datetime, by: str
) -> bool:
    """End the active episode of `metric` (a reply, a solve). False when none was active."""
    if not active(ticket, metric):
        return False
    catch_breach(session, ticket, metric, rules, now, by)
    _stop_running(ticket, metric, rules, now)
    _set(ticket, metric, "fulfilled_at", now)
    record_event(session, ticket, metric, "fulfilled", occurred_at=now, now=now, rules=rules)
    if _get(ticket, metric, "warned_at") or _get(ticket, metric, "breached_at"):
        alerts.clear_marks(session, ticket.id, metric, now=now, by=f"sla: fulfilled by {by}")
    if _get(ticket, metric, "breached_at") is None:
        # a met clock has no deadline left (its due time stays in the fulfilled event), so the
        # sweep's `due_at <= now AND breached_at IS NULL` never sees it
        _set(ticket, metric, "due_at", None)
        _set(ticket, metric, "warn_at", None)
    return True


def refresh(
    session: Session,
    ticket: SupportTicket,
    rules: Rules,
    now: dt.datetime,
    by: str,
    *,
    leave_overdue: bool = False,
) -> None:
    """Bring every clock in line with the ticket's status, priority and the policies.
    `leave_overdue`: a running clock already past its due time keeps it, unmarked, for the
    sweep to mark and notify (a rule change, which no agent is acting on)."""
    if ticket.status in ("solved", "closed") and any(
        _get(ticket, m, "warned_at") or _get(ticket, m, "breached_at") for m in METRICS
    ):
        alerts.clear_marks(session, ticket.id, None, now=now, by=f"sla: ticket {ticket.status}")
    for metric in METRICS:
        if not active(ticket, metric):
            continue
        target = rules.target(ticket, metric)
        should_run = ticket.status not in target.pause and ticket.status not in ("solved", "closed")
        running = _get(ticket, metric, "running_since") is not None
        if running and not should_run:
            catch_breach(session, ticket, metric, rules, now, by)
            _stop_running(ticket, metric, rules, now)
        elif not running and should_run:
            _set(ticket, metric, "running_since", now)
        if _get(ticket, metric, "breached_at") is not None:
            continue  # due time frozen at the breach; no warning after it
        since = _get(ticket, metric, "running_since")
        if since is None:
            _set(ticket, metric, "due_at", None)
            _set(ticket, metric, "warn_at", None)
            continue
        used = int(_get(ticket, metric, "elapsed_seconds") or 0)
        due, warn = _schedule(ticket, metric, rules, since, used)
        stored = _get(ticket, metric, "due_at")
        if running and stored is not None and stored <= now and due != stored:
            # the clock ran past its due time under the rules in force then: the breach
            # happened, whatever a policy or calendar change says now (and whether or not the
            # sweep ran in between); an unchanged due time is left to the sweep, which notifies
            if not leave_overdue:
                catch_breach(session, ticket, metric, rules, now, by)
            continue
        if due != stored and due < now:
            # a new target (a raised priority, a stricter policy) applies from the change: a
            # clock it puts past its due time is due at the change, never before it (the
            # ticket was not in breach then); the sweep marks it at that time and notifies
            due = now
        _set(ticket, metric, "due_at", due)
        # An unchanged due time in the past (a clock the sweep has not reached yet) stays
        # unmarked here: the sweep marks it at that due time and notifies the agent.
        _set(ticket, metric, "warn_at", min(warn, due))


def _schedule(
    ticket: SupportTicket, metric: str, rules: Rules, since: dt.datetime, used: int
) -> tuple[dt.datetime, dt.datetime]:
    """(due, warn) of a clock running since `since` with `used` clock seconds already spent."""
    target = rules.target(ticket, metric)
    clock = rules.clock(target)
    try:
        due = clock.add_seconds(since, target.seconds - used)
    except ValueError:
        raise UserError(
            f"the {ticket.priority} {metric} target ({target.minutes} business minutes) "
            "is not reached within ten years on the business calendar; give it more working "
            "hours (`faithflow sla calendar set --hours ...`) or lower the target "
            "(`faithflow sla policy set`)"
        ) from None
    share = target.seconds * rules.warning.percent // 100 - used
    by_share = clock.add_seconds(since, share) if share > 0 else since
    return due, max(due - dt.timedelta(minutes=rules.warning.minutes), by_share)


def clock_doc(ticket: SupportTicket, metric: str, rules: Rules, now: dt.datetime) -> dict[str, Any]:
    """One clock as `tickets show` and the queue report it."""
    target = rules.target(ticket, metric)
    due = _get(ticket, metric, "due_at")
    state = "not started"
    if _get(ticket, metric, "episode"):
        if _get(ticket, metric, "fulfilled_at") is not None:
            state = "fulfilled"
        elif _get(ticket, metric, "breached_at") is not None:
            state = "breached"
        elif _get(ticket, metric, "running_since") is None:
            state = "paused"
        else:
            state = "running"
    left = None
    if due is not None and state in ("running", "breached"):
        left = int((due - now).total_seconds() // 60)
    return {
        "metric": metric,
        "state": state,
        "episode": _get(ticket, metric, "episode"),
        "target_minutes": target.minutes,
        "hours": target.hours,
        "started_at": _get(ticket, metric, "started_at"),
        "used_seconds": used_seconds(ticket, metric, rules, now) if state != "not started" else 0,
        "due_at": due,
        "minutes_left": left,
        "warn_at": _get(ticket, metric, "warn_at"),
        "warned_at": _get(ticket, metric, "warned_at"),
        "breached_at": _get(ticket, metric, "breached_at"),
        "fulfilled_at": _get(ticket, metric, "fulfilled_at"),
    }


# rule changes: a calendar or policy change reaches every open ticket at once


@dataclass(frozen=True)
class Moved:
    """One open clock whose due time a calendar or policy change moved (None: not running)."""

    ticket_id: int
    metric: str
    episode: int
    priority: str
    due_before: dt.datetime | None
    due_after: dt.datetime | None


@dataclass(frozen=True)
class Recomputed:
    """What a rule change did to the open tickets' clocks (the `recomputed` of its output)."""

    now: dt.datetime
    dry_run: bool
    tickets: int  # open tickets with an active clock, all looked at
    moved: list[Moved]

    def doc(self) -> dict[str, Any]:
        return {
            "now": self.now,
            "dry_run": self.dry_run,
            "open_tickets": self.tickets,
            "clocks_moved": len(self.moved),
            "tickets_moved": len({m.ticket_id for m in self.moved}),
            "moved": [
                {
                    "ticket_id": m.ticket_id,
                    "metric": m.metric,
                    "episode": m.episode,
                    "priority": m.priority,
                    "due_before": m.due_before,
                    "due_after": m.due_after,
                }
                for m in self.moved
            ],
        }


def recompute_open(
    session: Session, before: Rules, after: Rules, now: dt.datetime, by: str
) -> Recomputed:
    """Bring every open ticket's clocks in line with new rules (`after`) at `now`.

    The time a running clock has used up to `now` is counted under the rules in force until
    then (`before`) and kept; what is left of the target is counted from `now` under the new
    ones, and never due before `now`. A clock already past its due time is left as it was: it
    breached under the old rules (the sweep marks it at that due time and notifies). Pausing
    statuses that changed start or stop clocks as a ticket command would. Called in the
    transaction of the change itself."""
    open_ = SupportTicket.status.in_(OPEN_STATUSES)
    has_clock = or_(
        *(
            and_(
                getattr(SupportTicket, f"{m}_episode") > 0,
                getattr(SupportTicket, f"{m}_fulfilled_at").is_(None),
            )
            for m in METRICS
        )
    )
    tickets = session.scalars(
        select(SupportTicket).where(open_, has_clock).order_by(SupportTicket.id).with_for_update()
    ).all()
    moved: list[Moved] = []
    for ticket in tickets:
        if not any(_affected(ticket, m, before, after, now) for m in METRICS if active(ticket, m)):
            continue  # e.g. a holiday after all its due times: nothing to recompute or touch
        was = {m: _get(ticket, m, "due_at") for m in METRICS}
        for metric in METRICS:
            if (
                not active(ticket, metric)
                or _get(ticket, metric, "running_since") is None
                or _get(ticket, metric, "breached_at") is not None
            ):
                continue
            due = was[metric]
            if due is not None and due <= now:
                continue  # breached under the rules in force until now
            # checkpoint: the time used so far, counted under the old rules, is kept
            _set(ticket, metric, "elapsed_seconds", used_seconds(ticket, metric, before, now))
            _set(ticket, metric, "running_since", now)
        refresh(session, ticket, after, now, by, leave_overdue=True)
        for metric in METRICS:
            after_due = _get(ticket, metric, "due_at")
            if after_due != was[metric] and _get(ticket, metric, "breached_at") is None:
                moved.append(
                    Moved(
                        ticket.id,
                        metric,
                        int(_get(ticket, metric, "episode")),
                        ticket.priority,
                        was[metric],
                        after_due,
                    )
                )
    session.flush()
    return Recomputed(now, False, len(tickets), moved)


def _affected(
    ticket: SupportTicket, metric: str, before: Rules, after: Rules, now: dt.datetime
) -> bool:
    """Whether new rules can change an active clock: its target, hours or pausing statuses
    changed, or (running) its calendar did between today and its due day."""
    old, new = before.target(ticket, metric), after.target(ticket, metric)
    if (old.minutes, old.hours, old.pause) != (new.minutes, new.hours, new.pause):
        return True
    if _get(ticket, metric, "running_since") is None:
        return False  # paused under the same target: its due time is computed at the resume
    a, b = before.clock(old), after.clock(new)
    if a == b:
        return False
    due = _get(ticket, metric, "due_at")
    if due is None or (a.timezone, a.weekly, a.always) != (b.timezone, b.weekly, b.always):
        return True
    # only holidays changed: a day before today changes no time still to count (the time used
    # is kept), a day after the due day none the clock will count
    zone = ZoneInfo(a.timezone)
    today, last = now.astimezone(zone).date(), due.astimezone(zone).date()
    return any(today <= day <= last for day in a.holidays ^ b.holidays)


def change_rules(
    session: Session,
    settings: Settings,
    change: Callable[[], T],
    *,
    now: dt.datetime,
    by: str,
    dry_run: bool = False,
) -> tuple[T, Recomputed]:
    """Run `change` (a calendar or policy change) and recompute the open tickets' clocks in the
    same transaction. With `dry_run` both happen inside a savepoint that is rolled back: the
    result shows what the change would do, and nothing is written."""
    before = Rules.from_settings(session, settings)
    savepoint = session.begin_nested() if dry_run else None
    result = change()
    report = recompute_open(session, before, Rules.from_settings(session, settings), now, by)
    if savepoint is not None:
        savepoint.rollback()
        report = Recomputed(report.now, True, report.tickets, report.moved)
    return result, report
