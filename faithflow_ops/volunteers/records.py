"""The operator's side of volunteer scheduling (`faithflow volunteers …`): people, teams and
their leaders, events, needs, assignments and responses, blockouts, and an event's roster.

Every function checks its input and raises UserError (one line naming the fix) before writing
anything; the caller's transaction commits the lot.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from faithflow_ops.comms import contacts
from faithflow_ops.errors import NotFound, UserError, one_of
from faithflow_ops.models import (
    Tenant,
    VolunteerAssignment,
    VolunteerBlockout,
    VolunteerEvent,
    VolunteerNeed,
    VolunteerPerson,
    VolunteerPosition,
    VolunteerTeam,
    VolunteerTeamLeader,
)
from faithflow_ops.models.volunteers import CHANNELS, REPEATS
from faithflow_ops.tenancy.tenants import get_tenant
from faithflow_ops.volunteers import rules


def _get(session: Session, model: Any, ident: int, what: str, hint: str) -> Any:
    row = session.get(model, ident)
    if row is None:
        raise NotFound(f"no {what} with id {ident}; {hint}")
    return row


def get_person(session: Session, person_id: int) -> VolunteerPerson:
    person: VolunteerPerson = _get(
        session, VolunteerPerson, person_id, "volunteer", "add one with `volunteers person add`"
    )
    return person


def get_event(session: Session, event_id: int) -> VolunteerEvent:
    event: VolunteerEvent = _get(
        session, VolunteerEvent, event_id, "event", "add one with `volunteers event add`"
    )
    return event


def get_team(session: Session, team_id: int) -> VolunteerTeam:
    team: VolunteerTeam = _get(
        session, VolunteerTeam, team_id, "team", "add one with `volunteers team add`"
    )
    return team


def _same_tenant(tenant_id: int, row: Any, what: str) -> None:
    if row.tenant_id != tenant_id:
        raise UserError(f"{what} {row.id} belongs to another church; use one of this church's")


def add_person(
    session: Session,
    *,
    tenant: str,
    name: str,
    email: str | None = None,
    phone: str | None = None,
    channel: str = "email",
    reminder_days: int | None = None,
) -> VolunteerPerson:
    """A volunteer with the contact their preferred channel needs."""
    church = get_tenant(session, tenant)
    name = name.strip()
    if not name:
        raise UserError("a volunteer needs a name")
    one_of("--channel", channel, CHANNELS)
    rules.check_reminder_days(reminder_days)
    email = contacts.normalize("email", email) if email else None
    phone = contacts.normalize("sms", phone) if phone else None
    if channel == "email" and email is None:
        raise UserError("--channel email needs --email (or choose --channel sms with --phone)")
    if channel in ("sms", "whatsapp") and phone is None:
        raise UserError(f"--channel {channel} needs --phone (E.164, e.g. +2348031234567)")
    person = VolunteerPerson(
        tenant_id=church.id,
        name=name,
        email=email,
        phone=phone,
        channel=channel,
        reminder_days=reminder_days,
    )
    session.add(person)
    session.flush()
    return person


def add_team(
    session: Session,
    *,
    tenant: str,
    name: str,
    leaders: list[int] | None = None,
    reminder_days: int | None = None,
) -> VolunteerTeam:
    church = get_tenant(session, tenant)
    name = name.strip()
    if not name:
        raise UserError("a team needs a name")
    rules.check_reminder_days(reminder_days)
    if session.scalar(
        select(VolunteerTeam.id).where(
            VolunteerTeam.tenant_id == church.id, VolunteerTeam.name == name
        )
    ):
        raise UserError(f"{church.slug} already has a team named {name!r}")
    people = [get_person(session, pid) for pid in dict.fromkeys(leaders or [])]
    for person in people:
        _same_tenant(church.id, person, "volunteer")
    team = VolunteerTeam(tenant_id=church.id, name=name, reminder_days=reminder_days)
    session.add(team)
    session.flush()
    session.add_all(VolunteerTeamLeader(team_id=team.id, person_id=p.id) for p in people)
    session.flush()
    return team


def add_event(
    session: Session,
    *,
    tenant: str,
    name: str,
    starts_at: dt.datetime,
    timezone: str | None = None,
) -> VolunteerEvent:
    """A service or event; its time zone is the church's unless given."""
    church = get_tenant(session, tenant)
    name = name.strip()
    if not name:
        raise UserError("an event needs a name")
    tz = timezone or church.timezone
    rules.zone(tz)
    event = VolunteerEvent(tenant_id=church.id, name=name, starts_at=starts_at, timezone=tz)
    session.add(event)
    session.flush()
    return event


def move_event(session: Session, event_id: int, starts_at: dt.datetime) -> VolunteerEvent:
    """A new start time: its reminders are due again for the new time (`reminded_for_start`)."""
    event = get_event(session, event_id)
    event.starts_at = starts_at
    session.flush()
    return event


def set_need(
    session: Session, *, event_id: int, team_id: int, position: str, needed: int
) -> VolunteerNeed:
    """How many people `position` (of `team_id`; made if new) needs at the event."""
    event = get_event(session, event_id)
    team = get_team(session, team_id)
    _same_tenant(event.tenant_id, team, "team")
    if needed < 0:
        raise UserError(f"--needed {needed}: give 0 or more people")
    name = position.strip()
    if not name:
        raise UserError("--position needs a name (e.g. 'Sound')")
    pos = session.scalar(
        select(VolunteerPosition).where(
            VolunteerPosition.team_id == team.id, VolunteerPosition.name == name
        )
    )
    if pos is None:
        pos = VolunteerPosition(tenant_id=team.tenant_id, team_id=team.id, name=name)
        session.add(pos)
        session.flush()
    need = session.scalar(
        select(VolunteerNeed).where(
            VolunteerNeed.event_id == event.id, VolunteerNeed.position_id == pos.id
        )
    )
    if need is None:
        need = VolunteerNeed(
            tenant_id=event.tenant_id, event_id=event.id, position_id=pos.id, needed=needed
        )
        session.add(need)
    else:
        need.needed = needed
    session.flush()
    return need


def assign(
    session: Session,
    *,
    event_id: int,
    position_id: int,
    person_id: int,
    confirmed: bool = False,
    now: dt.datetime,
) -> VolunteerAssignment:
    """Schedule a person (pending: they are asked to accept or decline)."""
    event = get_event(session, event_id)
    pos: VolunteerPosition = _get(
        session,
        VolunteerPosition,
        position_id,
        "position",
        "`volunteers need set` makes one; `volunteers roster EVENT` lists them",
    )
    person = get_person(session, person_id)
    _same_tenant(event.tenant_id, pos, "position")
    _same_tenant(event.tenant_id, person, "volunteer")
    if session.scalar(
        select(VolunteerAssignment.id).where(
            VolunteerAssignment.event_id == event.id,
            VolunteerAssignment.position_id == pos.id,
            VolunteerAssignment.person_id == person.id,
        )
    ):
        raise UserError(f"{person.name} is already scheduled as {pos.name} for this event")
    assignment = VolunteerAssignment(
        tenant_id=event.tenant_id,
        event_id=event.id,
        position_id=pos.id,
        person_id=person.id,
        status="confirmed" if confirmed else "pending",
        responded_at=now if confirmed else None,
    )
    session.add(assignment)
    session.flush()
    return assignment


def respond(
    session: Session, assignment_id: int, *, accept: bool, reason: str | None, now: dt.datetime
) -> VolunteerAssignment:
    """The person's answer: confirmed, or declined with an optional reason."""
    assignment: VolunteerAssignment = _get(
        session,
        VolunteerAssignment,
        assignment_id,
        "assignment",
        "`volunteers roster EVENT` lists them",
    )
    if accept and reason:
        raise UserError("--reason goes with --decline only")
    assignment.status = "confirmed" if accept else "declined"
    assignment.decline_reason = None if accept else (reason or None)
    assignment.responded_at = now
    session.flush()
    return assignment


def add_blockout(
    session: Session,
    *,
    person_id: int,
    starts_on: dt.date,
    ends_on: dt.date | None = None,
    repeat: str = "none",
    repeat_until: dt.date | None = None,
    reason: str | None = None,
) -> VolunteerBlockout:
    person = get_person(session, person_id)
    one_of("--repeat", repeat, REPEATS)
    ends = ends_on or starts_on
    if ends < starts_on:
        raise UserError(f"--until {ends} is before --from {starts_on}: give the last day blocked")
    if repeat == "weekly" and (ends - starts_on).days >= 7:
        raise UserError("a weekly blockout spans at most 7 days; drop --repeat for a long one")
    if repeat_until is not None and repeat == "none":
        raise UserError("--repeat-until goes with --repeat weekly")
    if repeat_until is not None and repeat_until < starts_on:
        raise UserError(f"--repeat-until {repeat_until} is before --from {starts_on}")
    blockout = VolunteerBlockout(
        tenant_id=person.tenant_id,
        person_id=person.id,
        starts_on=starts_on,
        ends_on=ends,
        repeat=repeat,
        repeat_until=repeat_until,
        reason=reason,
    )
    session.add(blockout)
    session.flush()
    return blockout


@dataclass(frozen=True)
class RosterLine:
    position_id: int
    team: str
    position: str
    needed: int
    confirmed: list[str]
    pending: list[str]
    declined: list[str]

    @property
    def gap(self) -> int:
        return max(self.needed - len(self.confirmed), 0)


def roster(session: Session, event_id: int) -> tuple[VolunteerEvent, list[RosterLine]]:
    """Who is where at an event, per position: needed, confirmed, pending, declined."""
    event = get_event(session, event_id)
    needs = dict(
        session.execute(
            select(VolunteerNeed.position_id, VolunteerNeed.needed).where(
                VolunteerNeed.event_id == event.id
            )
        )
        .tuples()
        .all()
    )
    people: dict[int, dict[str, list[str]]] = {}
    rows = session.execute(
        select(
            VolunteerAssignment.id,
            VolunteerAssignment.position_id,
            VolunteerAssignment.status,
            VolunteerPerson.name,
        )
        .join(VolunteerPerson, VolunteerPerson.id == VolunteerAssignment.person_id)
        .where(VolunteerAssignment.event_id == event.id)
        .order_by(VolunteerPerson.name)
    ).tuples()
    for assignment_id, position_id, status, name in rows:
        by = people.setdefault(position_id, {"confirmed": [], "pending": [], "declined": []})
        by[status].append(f"{name} (#{assignment_id})")
    positions = session.execute(
        select(VolunteerPosition.id, VolunteerTeam.name, VolunteerPosition.name)
        .join(VolunteerTeam, VolunteerTeam.id == VolunteerPosition.team_id)
        .where(VolunteerPosition.id.in_(set(needs) | set(people)))
        .order_by(VolunteerTeam.name, VolunteerPosition.name)
    ).tuples()
    lines = []
    for position_id, team, name in positions:
        by = people.get(position_id, {"confirmed": [], "pending": [], "declined": []})
        lines.append(
            RosterLine(
                position_id,
                team,
                name,
                needs.get(position_id, 0),
                by["confirmed"],
                by["pending"],
                by["declined"],
            )
        )
    return event, lines


def tenant_of(session: Session, tenant_id: int) -> Tenant:
    tenant = session.get(Tenant, tenant_id)
    assert tenant is not None
    return tenant


def counts(session: Session) -> dict[str, int]:
    """Rows per volunteer table (for `faithflow volunteers` summaries and tests)."""
    return {
        model.__tablename__: session.scalar(select(func.count()).select_from(model)) or 0
        for model in (VolunteerPerson, VolunteerTeam, VolunteerEvent, VolunteerAssignment)
    }
