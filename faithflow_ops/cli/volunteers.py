"""`faithflow volunteers …`: teams, people, events, needs, assignments, responses, blockouts and
an event's roster (faithflow_ops/volunteers/records.py). `volunteers remind` and
`volunteers gaps` are jobs, generated from the registry."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any

import typer

from faithflow_ops.cli import output
from faithflow_ops.cli.common import JsonOpt, database, parse_now

app = typer.Typer(
    rich_markup_mode=None,
    help="Volunteer scheduling: teams, people, events, needs, assignments, blockouts, roster; "
    "reminders and gap alerts.",
    no_args_is_help=True,
)
team_app = typer.Typer(rich_markup_mode=None, help="Volunteer teams.", no_args_is_help=True)
person_app = typer.Typer(rich_markup_mode=None, help="Volunteers.", no_args_is_help=True)
event_app = typer.Typer(rich_markup_mode=None, help="Services and events.", no_args_is_help=True)
need_app = typer.Typer(
    rich_markup_mode=None, help="How many people a position needs.", no_args_is_help=True
)
blockout_app = typer.Typer(
    rich_markup_mode=None, help="Days a volunteer cannot serve.", no_args_is_help=True
)
app.add_typer(team_app, name="team")
app.add_typer(person_app, name="person")
app.add_typer(event_app, name="event")
app.add_typer(need_app, name="need")
app.add_typer(blockout_app, name="blockout")

TenantOpt = Annotated[str, typer.Option("--tenant", help="The church's slug.")]
RemindDaysOpt = Annotated[
    int | None,
    typer.Option(
        "--remind-days",
        help="Days before an event reminders go out (0-14; -1 = no reminders).",
    ),
]


def _show(row: Any, as_json: bool, what: str) -> None:
    from faithflow_ops.tenancy.records import column_values

    doc = column_values(row)
    if as_json:
        output.print_json(doc)
    else:
        output.record(doc)
    output.info(f"added {what} (id {doc['id']})")


def _date(value: str, option: str) -> dt.date:
    from faithflow_ops.errors import UserError

    try:
        return dt.date.fromisoformat(value.strip())
    except ValueError:
        raise UserError(f"{option} {value!r} is not a date; use YYYY-MM-DD") from None


@person_app.command("add")
def person_add(
    name: Annotated[str, typer.Argument(help="The volunteer's name.")],
    tenant: TenantOpt,
    email: Annotated[str | None, typer.Option("--email", help="Email address.")] = None,
    phone: Annotated[
        str | None, typer.Option("--phone", help="Mobile number in E.164, e.g. +2348031234567.")
    ] = None,
    channel: Annotated[
        str, typer.Option("--channel", help="Preferred channel: email, sms or whatsapp.")
    ] = "email",
    remind_days: RemindDaysOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Add a volunteer (their --remind-days overrides the team's)."""
    from faithflow_ops.volunteers import records

    with database().session() as session:
        person = records.add_person(
            session,
            tenant=tenant,
            name=name,
            email=email,
            phone=phone,
            channel=channel,
            reminder_days=remind_days,
        )
        _show(person, as_json, "volunteer")


@team_app.command("add")
def team_add(
    name: Annotated[str, typer.Argument(help="The team's name, e.g. 'Worship Tech'.")],
    tenant: TenantOpt,
    leader: Annotated[
        list[int] | None,
        typer.Option("--leader", help="A leader's volunteer id (repeat for several)."),
    ] = None,
    remind_days: RemindDaysOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Add a team; its leaders get gap alerts and blockout conflicts."""
    from faithflow_ops.volunteers import records

    with database().session() as session:
        team = records.add_team(
            session, tenant=tenant, name=name, leaders=leader, reminder_days=remind_days
        )
        _show(team, as_json, "team")


@event_app.command("add")
def event_add(
    name: Annotated[str, typer.Argument(help="The event, e.g. 'Sunday 9am Service'.")],
    tenant: TenantOpt,
    start: Annotated[str, typer.Option("--start", help="Start time, ISO-8601 with offset or Z.")],
    timezone: Annotated[
        str | None,
        typer.Option("--timezone", help="IANA time zone (default: the church's)."),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Add a service or event."""
    from faithflow_ops.volunteers import records

    starts_at = parse_now(start, "--start", "2026-03-08T09:00:00-05:00")
    with database().session() as session:
        event = records.add_event(
            session, tenant=tenant, name=name, starts_at=starts_at, timezone=timezone
        )
        _show(event, as_json, "event")


@event_app.command("move")
def event_move(
    event: Annotated[int, typer.Argument(help="The event's id.")],
    start: Annotated[str, typer.Option("--start", help="New start time, ISO-8601.")],
    as_json: JsonOpt = False,
) -> None:
    """Move an event; its volunteers are reminded again for the new time."""
    from faithflow_ops.tenancy.records import column_values
    from faithflow_ops.volunteers import records

    starts_at = parse_now(start, "--start", "2026-03-08T09:00:00-05:00")
    with database().session() as session:
        doc = column_values(records.move_event(session, event, starts_at))
    if as_json:
        output.print_json(doc)
    output.info(f"event {event} now starts {doc['starts_at']}")


@need_app.command("set")
def need_set(
    event: Annotated[int, typer.Argument(help="The event's id.")],
    team: Annotated[int, typer.Option("--team", help="The team's id.")],
    position: Annotated[str, typer.Option("--position", help="The position's name (made if new).")],
    needed: Annotated[int, typer.Option("--needed", help="How many people it needs.")],
    as_json: JsonOpt = False,
) -> None:
    """Set how many people a position needs at an event."""
    from faithflow_ops.tenancy.records import column_values
    from faithflow_ops.volunteers import records

    with database().session() as session:
        doc = column_values(
            records.set_need(
                session, event_id=event, team_id=team, position=position, needed=needed
            )
        )
    if as_json:
        output.print_json(doc)
    else:
        output.record(doc)
    output.info(f"event {event} needs {needed} × position {doc['position_id']}")


@app.command("assign")
def assign(
    event: Annotated[int, typer.Argument(help="The event's id.")],
    position: Annotated[int, typer.Option("--position", help="The position's id.")],
    person: Annotated[int, typer.Option("--person", help="The volunteer's id.")],
    confirmed: Annotated[
        bool, typer.Option("--confirmed", help="Already confirmed (else pending: asked).")
    ] = False,
    now: Annotated[str | None, typer.Option("--now", help="When (ISO-8601).")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Schedule a volunteer for a position at an event."""
    from faithflow_ops.volunteers import records

    when = parse_now(now)
    with database().session() as session:
        row = records.assign(
            session,
            event_id=event,
            position_id=position,
            person_id=person,
            confirmed=confirmed,
            now=when,
        )
        _show(row, as_json, "assignment")


@app.command("respond")
def respond(
    assignment: Annotated[int, typer.Argument(help="The assignment's id.")],
    accept: Annotated[bool, typer.Option("--accept", help="The volunteer accepts.")] = False,
    decline: Annotated[bool, typer.Option("--decline", help="The volunteer declines.")] = False,
    reason: Annotated[
        str | None, typer.Option("--reason", help="Why they decline (with --decline).")
    ] = None,
    now: Annotated[str | None, typer.Option("--now", help="When (ISO-8601).")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Record a volunteer's answer: --accept or --decline [--reason]."""
    from faithflow_ops.errors import UserError
    from faithflow_ops.tenancy.records import column_values
    from faithflow_ops.volunteers import records

    if accept == decline:
        raise UserError("give exactly one of --accept and --decline")
    when = parse_now(now)
    with database().session() as session:
        doc = column_values(
            records.respond(session, assignment, accept=accept, reason=reason, now=when)
        )
    if as_json:
        output.print_json(doc)
    output.info(f"assignment {assignment} is {doc['status']}")


@blockout_app.command("add")
def blockout_add(
    person: Annotated[int, typer.Argument(help="The volunteer's id.")],
    start: Annotated[str, typer.Option("--from", help="First day blocked (YYYY-MM-DD).")],
    until: Annotated[
        str | None, typer.Option("--until", help="Last day blocked (default: --from).")
    ] = None,
    repeat: Annotated[
        str, typer.Option("--repeat", help="none, or weekly (the same days every week).")
    ] = "none",
    repeat_until: Annotated[
        str | None,
        typer.Option("--repeat-until", help="Last day a weekly blockout repeats (default: ever)."),
    ] = None,
    reason: Annotated[str | None, typer.Option("--reason", help="Why (shown to leaders).")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Block out days a volunteer cannot serve (once, or every week)."""
    from faithflow_ops.volunteers import records

    starts_on = _date(start, "--from")
    ends_on = _date(until, "--until") if until else None
    repeat_end = _date(repeat_until, "--repeat-until") if repeat_until else None
    with database().session() as session:
        row = records.add_blockout(
            session,
            person_id=person,
            starts_on=starts_on,
            ends_on=ends_on,
            repeat=repeat,
            repeat_until=repeat_end,
            reason=reason,
        )
        _show(row, as_json, "blockout")


@app.command("roster")
def roster(
    event: Annotated[int, typer.Argument(help="The event's id.")],
    as_json: JsonOpt = False,
) -> None:
    """Who is where at an event; positions short of confirmed people are marked GAP."""
    from faithflow_ops.volunteers import records
    from faithflow_ops.volunteers.reminders import local_label

    with database().read_session() as session:
        ev, lines = records.roster(session, event)
        title = f"{ev.name} · {local_label(ev.starts_at, ev.timezone)}"
        doc: dict[str, Any] = {
            "event": {"id": ev.id, "name": ev.name, "starts_at": ev.starts_at.isoformat()},
            "positions": [
                {
                    "position_id": line.position_id,
                    "team": line.team,
                    "position": line.position,
                    "needed": line.needed,
                    "confirmed": line.confirmed,
                    "pending": line.pending,
                    "declined": line.declined,
                    "gap": line.gap,
                }
                for line in lines
            ],
        }
    if as_json:
        output.print_json(doc)
        return
    output.table(
        ["position", "team", "needed", "confirmed", "tentative (pending)", "declined", "gap"],
        [
            [
                f"{p['position']} (#{p['position_id']})",
                p["team"],
                p["needed"],
                ", ".join(p["confirmed"]) or "-",
                ", ".join(p["pending"]) or "-",
                ", ".join(p["declined"]) or "-",
                f"GAP {p['gap']}" if p["gap"] else "",
            ]
            for p in doc["positions"]
        ],
        title=title,
    )
