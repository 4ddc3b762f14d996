"""`volunteers remind`: the planner and the appliers (jobs/volunteer_reminders.py is the glue).

plan (read-only): every pending or confirmed assignment of an event still to come whose
reminder is not done for the event's current start (`reminded_for_start`), whose reminder day
(N local days before the event: the person's setting, else the team's, else 2; -1 = off) has
begun in the event's time zone. Then, per assignment:

- the person is blocked out on the event's local date → `flag_blockout` (the team leaders are
  told; the person gets nothing);
- else it joins the person's reminder of that local day: one `send_reminder` per person and
  day, condensing every assignment of theirs that day (two services, two positions: one
  message). Pending assignments are phrased as a prompt to accept or decline.

The reminder is queued in the outbox for 10:00 local time on its day (zoneinfo: DST-correct),
or at once when the run is later than that (or 10:00 would be after the start).

apply (idempotent): claims each assignment with one conditional UPDATE (still the status
planned, the event still at the start planned, not reminded for it yet) and queues one message
for the claimed ones; an action whose every assignment is gone is stale. A moved event has a
new start, so its assignments are due again.
"""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
from collections import defaultdict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import and_, exists, func, or_, select, update
from sqlalchemy.orm import Session

from faithflow_ops.actions import Action, StaleAction, decode
from faithflow_ops.comms import outbox
from faithflow_ops.config import Settings
from faithflow_ops.db import rowcount
from faithflow_ops.models import (
    Tenant,
    VolunteerAssignment,
    VolunteerBlockout,
    VolunteerEvent,
    VolunteerPerson,
    VolunteerPosition,
    VolunteerTeam,
    VolunteerTeamLeader,
)
from faithflow_ops.volunteers import rules

KINDS = ("send_reminder", "flag_blockout")
LIVE = ("pending", "confirmed")


def _lookahead(session: Session) -> dt.timedelta:
    """How far ahead an assignment can be due: the largest offset in use (the default, or a
    team's or person's), plus a day for time zones — the plan then reads only the assignments
    that can be due (a 100,000-assignment bench: 14,000 rows instead of 48,000)."""
    largest = session.execute(
        select(
            func.max(VolunteerPerson.reminder_days),
            select(func.max(VolunteerTeam.reminder_days)).scalar_subquery(),
        )
    ).one()
    days = max([rules.DEFAULT_REMINDER_DAYS, *(d for d in largest if d is not None)])
    return dt.timedelta(days=days + 1)


@dataclass(frozen=True)
class Item:
    """One assignment in a reminder (or flagged for a blockout)."""

    assignment_id: int
    event_id: int
    event: str
    starts_at: dt.datetime
    timezone: str
    team_id: int
    team: str
    position: str
    status: str  # pending | confirmed, as planned


@dataclass(frozen=True)
class SendReminder:  # kind "send_reminder"
    tenant_id: int
    person_id: int
    person: str
    channel: str
    day: dt.date  # the local day: one reminder per person and day
    send_at: dt.datetime
    items: tuple[Item, ...]


@dataclass(frozen=True)
class FlagBlockout:  # kind "flag_blockout"
    tenant_id: int
    person_id: int
    person: str
    day: dt.date
    blockout_reason: str | None
    item: Item


@functools.lru_cache(maxsize=65536)
def local_label(at: dt.datetime, tz: str) -> str:
    """`Sun 8 Mar 2026 09:00 EDT`: a start as the church reads it (cached: a big plan names the
    same few thousand event starts over and over)."""
    local = at.astimezone(rules.zone(tz))
    return f"{local:%a} {local.day} {local:%b %Y %H:%M} {local.tzname()}"


@functools.lru_cache(maxsize=65536)
def _iso(value: dt.date) -> str:
    """ISO-8601, cached: a plan writes the same event starts and send times many times."""
    return value.isoformat()


def plan(session: Session, now: dt.datetime, limit: int | None = None) -> Iterator[Action]:
    a, e, p = VolunteerAssignment, VolunteerEvent, VolunteerPerson
    pos, team = VolunteerPosition, VolunteerTeam
    candidates = (
        select(
            a.id,
            a.tenant_id,
            a.person_id,
            a.status,
            e.id,
            e.name,
            e.starts_at,
            e.timezone,
            team.id,
            team.name,
            pos.name,
            p.name,
            p.channel,
            p.reminder_days,
            team.reminder_days,
        )
        .join(e, e.id == a.event_id)
        .join(p, p.id == a.person_id)
        .join(pos, pos.id == a.position_id)
        .join(team, team.id == pos.team_id)
        .where(
            a.status.in_(LIVE),  # ix_volunteer_assignments_remind
            e.starts_at > now,
            e.starts_at <= now + _lookahead(session),
            or_(a.reminded_for_start.is_(None), a.reminded_for_start != e.starts_at),
        )
        .order_by(a.person_id, e.starts_at, a.id)
    )
    # plain rows through the session's connection: no ORM result processing for 14,000 rows
    rows = session.connection().execute(candidates).all()
    blockouts = _blockouts(session, {row[2] for row in rows}, now) if rows else {}
    # Payloads are written as the dicts `encode` makes of SendReminder, Item and FlagBlockout
    # (tests/volunteers check they are equal): building 100,000-assignment plans' dataclasses
    # only to encode them again cost more than the query.
    groups: dict[tuple[int, dt.date], list[dict[str, Any]]] = defaultdict(list)
    whats: dict[tuple[int, dt.date], list[str]] = defaultdict(list)
    heads: dict[tuple[int, dt.date], tuple[int, str, str, dt.datetime]] = {}
    flags: list[Action] = []
    # per event (keyed by id: cheaper to hash than an aware datetime): when its reminders go
    # out for an offset, its start in ISO-8601 and as the church reads it
    times: dict[tuple[int, int], rules.ReminderTime | None] = {}
    events: dict[int, tuple[str, str]] = {}
    for (
        assignment_id,
        tenant_id,
        person_id,
        status,
        event_id,
        event_name,
        starts_at,
        tz,
        team_id,
        team_name,
        position,
        person,
        channel,
        person_days,
        team_days,
    ) in rows:
        days = rules.reminder_days(person_days, team_days)
        timing = (event_id, days)
        if timing in times:
            when = times[timing]
        else:
            when = times[timing] = rules.reminder_time(starts_at, tz, days, now)
        if when is None:
            continue
        start = events.get(event_id)
        if start is None:
            start = events[event_id] = (starts_at.isoformat(), local_label(starts_at, tz))
        item = {
            "assignment_id": assignment_id,
            "event_id": event_id,
            "event": event_name,
            "starts_at": start[0],
            "timezone": tz,
            "team_id": team_id,
            "team": team_name,
            "position": position,
            "status": status,
        }
        person_blocks = blockouts.get(person_id)
        if person_blocks:
            event_day = rules.local_date(starts_at, tz)
            blocked = rules.blocking(person_blocks, event_day)
            if blocked is not None:
                flags.append(_flag(tenant_id, person_id, person, event_day, blocked, item, start))
                continue
        key = (person_id, when.day)
        groups[key].append(item)
        whats[key].append(
            f"{position} at {event_name} {start[1]}"
            + (" (asks to accept or decline)" if status == "pending" else "")
        )
        head = heads.get(key)
        if head is None or when.send_at < head[3]:
            heads[key] = (tenant_id, person, channel, when.send_at)
    actions: list[Action] = []
    # by send time, then person (the key of the order the outbox sends them in)
    for key in sorted(groups, key=lambda k: (heads[k][3], k)):
        items = groups[key]
        tenant_id, person, channel, send_at = heads[key]
        sent = _iso(send_at)
        reason = (
            f"remind {person} by {channel} at {sent}"
            f"{' (condensed: ' + str(len(items)) + ' assignments)' if len(items) > 1 else ''}"
            f": {', '.join(whats[key])}"
        )
        reminder = {
            "tenant_id": tenant_id,
            "person_id": key[0],
            "person": person,
            "channel": channel,
            "day": _iso(key[1]),
            "send_at": sent,
            "items": items,
        }
        actions.append(Action("send_reminder", f"volunteer:{key[0]}", reason, reminder))
    out = [*flags, *actions]
    yield from out[:limit] if limit is not None else out


def _blockouts(
    session: Session, people: set[int], now: dt.datetime
) -> dict[int, list[rules.Blockout]]:
    """The blockouts of `people` that can still cover a day from today on, by person."""
    b = VolunteerBlockout
    # a few people: by id; many (a big run): every blockout still able to cover a day from
    # today on (a small table), cheaper than a long IN list
    where = (
        b.person_id.in_(people)
        if len(people) <= 500
        else or_(b.repeat == "weekly", b.ends_on >= now.date() - dt.timedelta(days=1))
    )
    found = session.execute(
        select(b.person_id, b.starts_on, b.ends_on, b.repeat, b.repeat_until, b.reason).where(where)
    ).tuples()
    blockouts: dict[int, list[rules.Blockout]] = defaultdict(list)
    for person_id, starts_on, ends_on, repeat, until, reason in found:
        blockouts[person_id].append(rules.Blockout(starts_on, ends_on, repeat, until, reason))
    return blockouts


def _flag(
    tenant_id: int,
    person_id: int,
    person: str,
    day: dt.date,
    blocked: rules.Blockout,
    item: dict[str, Any],
    start: tuple[str, str],
) -> Action:
    """The `flag_blockout` action for one assignment (its payload is `encode(FlagBlockout)`)."""
    reason = (
        f"{person} is blocked out on {day} ({blocked.reason or 'no reason given'}) "
        f"but scheduled as {item['position']} for {item['event']} {start[1]}: "
        "tell the team leaders, no reminder"
    )
    flag = {
        "tenant_id": tenant_id,
        "person_id": person_id,
        "person": person,
        "day": _iso(day),
        "blockout_reason": blocked.reason,
        "item": item,
    }
    return Action("flag_blockout", f"assignment:{item['assignment_id']}", reason, flag)


def _claim(session: Session, item: Item, now: dt.datetime, *, flag: bool) -> bool:
    a, e = VolunteerAssignment, VolunteerEvent
    values: dict[str, object] = {"reminded_for_start": item.starts_at, "updated_at": now}
    if flag:
        values["conflict_flagged_at"] = now
    else:
        values["reminded_at"] = now
        if item.status == "pending":
            values["confirmation_requested_at"] = now
    result = session.execute(
        update(a)
        .where(
            a.id == item.assignment_id,
            a.status == item.status,
            or_(a.reminded_for_start.is_(None), a.reminded_for_start != item.starts_at),
            exists().where(and_(e.id == a.event_id, e.starts_at == item.starts_at)),
        )
        .values(**values)
        .execution_options(synchronize_session=False)
    )
    return rowcount(result) == 1


def address_of(person: VolunteerPerson, channel: str) -> tuple[str, str] | None:
    """(channel, recipient): the preferred channel, else whichever contact they have."""
    order = [channel, *(c for c in ("email", "sms") if c != channel)]
    for c in order:
        to = person.email if c == "email" else person.phone
        if to:
            return c, to
    return None


def apply_reminder(
    session: Session, action: Action, now: dt.datetime, settings: Settings | None
) -> outbox.Enqueued:
    reminder = decode(SendReminder, action.data)
    claimed = [i for i in reminder.items if _claim(session, i, now, flag=False)]
    if not claimed:
        raise StaleAction(
            f"{action.target}: every assignment was answered, moved or reminded since the plan"
        )
    person = session.get(VolunteerPerson, reminder.person_id)
    tenant = session.get(Tenant, reminder.tenant_id)
    if person is None or tenant is None:
        raise StaleAction(f"{action.target}: the volunteer is gone")
    address = address_of(person, person.channel)
    if address is None:
        raise StaleAction(f"{action.target}: {person.name} has no email or phone to remind")
    channel, to = address
    pending = [i for i in claimed if i.status == "pending"]
    lines = [
        f"- {i.event}, {local_label(i.starts_at, i.timezone)}: {i.position} ({i.team})"
        + (
            f" — please accept or decline (assignment #{i.assignment_id})"
            if i.status == "pending"
            else " — confirmed"
        )
        for i in claimed
    ]
    first = claimed[0]
    more = f" (+{len(claimed) - 1} more)" if len(claimed) > 1 else ""
    short = (
        f"{'Please confirm' if pending else 'Reminder'}: {first.position} at {first.event} "
        f"{local_label(first.starts_at, first.timezone)}{more}"
    )
    prompt = (
        "Please accept or decline the assignments marked above: reply to your team leader "
        "or answer in the app."
        if pending
        else "Thank you for serving!"
    )
    headline = (
        f"Please confirm: you are scheduled for {first.event}"
        if pending
        else f"Reminder: you are serving at {first.event}"
    ) + more
    key = f"volunteers:remind:{reminder.person_id}:{reminder.day.isoformat()}"
    message = outbox.Message(
        channel=channel,
        recipient=to,
        template="volunteer_reminder",
        variables={
            "headline": headline,
            "person_name": person.name,
            "items": "\n".join(lines),
            "prompt": prompt,
            "short": short,
        },
        idempotency_key=key,
        tenant=tenant,
        not_before=reminder.send_at,
        category="volunteers",
        about=("volunteer_person", person.id),
    )
    (queued,) = outbox.enqueue_many(session, [message], now=now, settings=settings)
    if not queued.created:
        # This day's reminder is already queued (an assignment made after it went out): these
        # assignments get a message of their own, keyed by them.
        digest = hashlib.sha256(
            ",".join(str(i.assignment_id) for i in claimed).encode()
        ).hexdigest()[:16]
        later = outbox.Message(**{**message.__dict__, "idempotency_key": f"{key}:{digest}"})
        (queued,) = outbox.enqueue_many(session, [later], now=now, settings=settings)
    return queued


def leaders_of(session: Session, team_id: int) -> list[VolunteerPerson]:
    return list(
        session.scalars(
            select(VolunteerPerson)
            .join(VolunteerTeamLeader, VolunteerTeamLeader.person_id == VolunteerPerson.id)
            .where(VolunteerTeamLeader.team_id == team_id)
            .order_by(VolunteerPerson.id)
        )
    )


def to_leaders(
    session: Session,
    team_id: int,
    *,
    template: str,
    variables: dict[str, Any],
    key: str,
    **fields: Any,
) -> list[outbox.Message]:
    """One message per leader of the team who has a contact (their preferred channel first):
    `variables` plus the leader's name, idempotency key `key:<leader id>`, the other outbox
    fields as given."""
    messages = []
    for leader in leaders_of(session, team_id):
        address = address_of(leader, leader.channel)
        if address is None:
            continue
        messages.append(
            outbox.Message(
                channel=address[0],
                recipient=address[1],
                template=template,
                variables={**variables, "leader_name": leader.name},
                idempotency_key=f"{key}:{leader.id}",
                **fields,
            )
        )
    return messages


def apply_flag(
    session: Session, action: Action, now: dt.datetime, settings: Settings | None
) -> list[outbox.Enqueued]:
    flag = decode(FlagBlockout, action.data)
    item = flag.item
    if not _claim(session, item, now, flag=True):
        raise StaleAction(f"{action.target}: answered, moved or already flagged since the plan")
    tenant = session.get(Tenant, flag.tenant_id)
    if tenant is None:
        raise StaleAction(f"{action.target}: the church is gone")
    messages = to_leaders(
        session,
        item.team_id,
        template="volunteer_conflict",
        variables={
            "headline": f"{flag.person} is blocked out for {item.event} ({item.position})",
            "person_name": flag.person,
            "position_name": item.position,
            "team_name": item.team,
            "event_name": item.event,
            "event_local": local_label(item.starts_at, item.timezone),
            "event_tz": item.timezone,
            "event_id": item.event_id,
            "blockout_reason": f" ({flag.blockout_reason})" if flag.blockout_reason else "",
        },
        key=f"volunteers:conflict:{item.assignment_id}:{item.starts_at:%Y%m%dT%H%M%SZ}",
        tenant=tenant,
        not_before=rules.daytime(now, item.timezone, item.starts_at),
        category="volunteers",
        about=("volunteer_assignment", item.assignment_id),
    )
    return outbox.enqueue_many(session, messages, now=now, settings=settings)


def apply(
    session: Session, action: Action, now: dt.datetime, settings: Settings | None = None
) -> None:
    if action.kind == "send_reminder":
        apply_reminder(session, action, now, settings)
    elif action.kind == "flag_blockout":
        apply_flag(session, action, now, settings)
    else:
        raise ValueError(f"volunteers remind has no action kind {action.kind!r}")


def table_rows(action: Action) -> Sequence[tuple[object, ...]]:
    if action.kind == "flag_blockout":
        flag = decode(FlagBlockout, action.data)
        i = flag.item
        return [
            (
                action.kind,
                flag.person,
                "-",
                i.event,
                local_label(i.starts_at, i.timezone),
                i.position,
                "blocked out",
            )
        ]
    reminder = decode(SendReminder, action.data)
    return [
        (
            action.kind,
            reminder.person,
            reminder.channel,
            i.event,
            local_label(i.starts_at, i.timezone),
            i.position,
            f"{i.status} · send {local_label(reminder.send_at, i.timezone)}",
        )
        for i in reminder.items
    ]
