"""`faithflow sla …`: SLA clocks of support tickets (`sla sweep` is the job)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer

from faithflow_ops.cli import output, support_analytics
from faithflow_ops.cli.common import JsonOpt, LimitOpt, actor, database, parse_now, settings

if TYPE_CHECKING:
    from collections.abc import Callable

    from sqlalchemy.orm import Session

    from faithflow_ops.support.sla import Recomputed

app = typer.Typer(
    rich_markup_mode=None,
    help="Support SLAs: the sweep (breaches, warnings), breaches, policies, calendars, analytics.",
    no_args_is_help=True,
)
policy_app = typer.Typer(
    rich_markup_mode=None, help="SLA targets per priority and metric.", no_args_is_help=True
)
calendar_app = typer.Typer(
    rich_markup_mode=None,
    help="Support's business calendar: weekly hours, time zone, holidays.",
    no_args_is_help=True,
)
holiday_app = typer.Typer(
    rich_markup_mode=None, help="Holidays (whole local days off).", no_args_is_help=True
)
app.add_typer(policy_app, name="policy")
app.add_typer(calendar_app, name="calendar")
calendar_app.add_typer(holiday_app, name="holiday")
app.command("analytics")(support_analytics.sla_analytics)  # cli/support_analytics.py

T = TypeVar("T")
ChangeNowOpt = Annotated[
    str | None,
    typer.Option(
        "--now",
        help="When the change takes effect: open clocks keep the time used until then and count "
        "the rest under the new rules (ISO-8601; default: now).",
    ),
]
ChangeDryRunOpt = Annotated[
    bool,
    typer.Option(
        "--dry-run", help="Show the change and the open clocks it would move; write nothing."
    ),
]
_SHOWN_MOVES = 20


def _change(
    now: str | None, dry_run: bool, by: str, change: Callable[[Session], T]
) -> tuple[T, Recomputed]:
    """Run a calendar or policy change and recompute the open tickets' clocks, in one
    transaction (support/sla.py change_rules)."""
    from faithflow_ops.support.sla import change_rules

    when = parse_now(now)
    with database().session() as session:
        return change_rules(
            session, settings(), lambda: change(session), now=when, by=by, dry_run=dry_run
        )


def _report(report: Recomputed, as_json: bool = False) -> None:
    """The moved clocks: a table of the first ones (not with --json, whose document has them
    all), then a count on stderr."""
    moved = report.moved
    if moved and not as_json:
        output.table(
            ["ticket", "priority", "metric", "ep", "due before (UTC)", "due now (UTC)"],
            [
                [
                    m.ticket_id,
                    m.priority,
                    m.metric,
                    m.episode,
                    output.minute(m.due_before) if m.due_before else "paused",
                    output.minute(m.due_after) if m.due_after else "paused",
                ]
                for m in moved[:_SHOWN_MOVES]
            ],
            title="open SLA clocks moved",
        )
    tickets = len({m.ticket_id for m in moved})
    verb = "would move" if report.dry_run else "moved"
    more = f" ({len(moved) - _SHOWN_MOVES} not listed)" if len(moved) > _SHOWN_MOVES else ""
    output.info(
        f"{len(moved)} open clock{'s' if len(moved) != 1 else ''} {verb} on {tickets} "
        f"ticket{'s' if tickets != 1 else ''} of {report.tickets} open{more}, as of "
        f"{output.minute(report.now)} UTC"
        + ("; dry run: nothing was written" if report.dry_run else "")
    )


@app.command("breaches")
def breaches(
    open_only: Annotated[
        bool,
        typer.Option("--open", help="Only breaches of open tickets whose clock is still running."),
    ] = False,
    since: Annotated[
        str | None,
        typer.Option(
            "--since",
            help="Breached at or after this ISO-8601 time or date, or this long before --now "
            "(24h, 7d).",
        ),
    ] = None,
    priority: Annotated[str | None, typer.Option("--priority", help="Only this priority.")] = None,
    limit: LimitOpt = 500,
    now: Annotated[
        str | None,
        typer.Option("--now", help="What --since durations count back from (default: now)."),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """SLA breaches, newest first: ticket, metric, episode, due and breached times."""
    from faithflow_ops.clock import parse_since
    from faithflow_ops.support.views import breaches as build

    start = parse_since(since, parse_now(now)) if since is not None else None
    with database().read_session() as session:
        rows = build(session, open_only=open_only, since=start, priority=priority, limit=limit)
    if output.empty(rows, "breach", as_json=as_json):
        return
    if as_json:
        output.print_json(rows)
        return
    output.table(
        ["ticket", "tenant", "priority", "status", "metric", "ep", "due (UTC)", "breached (UTC)"],
        [
            [
                r["ticket_id"],
                r["tenant"],
                r["priority"],
                r["status"],
                r["metric"],
                r["episode"],
                output.minute(r["due_at"]),
                output.minute(r["breached_at"]),
            ]
            for r in rows
        ],
    )
    output.info(f"{len(rows)} breach{'es' if len(rows) != 1 else ''}")


def _print_policies(rows: list[dict[str, Any]], as_json: bool) -> None:
    if as_json:
        output.print_json(rows)
        return
    output.table(
        ["priority", "metric", "target (min)", "hours", "paused in", "source"],
        [
            [
                r["priority"],
                r["metric"],
                r["target_minutes"],
                r["hours"],
                ", ".join(r["pause_statuses"]) or "—",
                r["source"],
            ]
            for r in rows
        ],
    )


@policy_app.command("show")
def policy_show(as_json: JsonOpt = False) -> None:
    """Every target in force (stored, or the built-in default)."""
    from faithflow_ops.support.policies import load_policies, policies_doc

    with database().read_session() as session:
        rows = policies_doc(load_policies(session))
    _print_policies(rows, as_json)


@policy_app.command("set")
def policy_set(
    metric: Annotated[
        str, typer.Option("--metric", help="first_response, next_response or resolution.")
    ],
    priority: Annotated[
        list[str] | None,
        typer.Option("--priority", help="low, normal, high, urgent (repeat; default: all)."),
    ] = None,
    target: Annotated[
        str | None, typer.Option("--target", help="Target: 30m, 4h, 1h30m, or minutes.")
    ] = None,
    hours: Annotated[
        str | None, typer.Option("--hours", help="business (the calendar) or calendar (24/7).")
    ] = None,
    pause: Annotated[
        str | None,
        typer.Option(
            "--pause", help="Statuses that pause this clock, comma-separated ('' = none)."
        ),
    ] = None,
    now: ChangeNowOpt = None,
    dry_run: ChangeDryRunOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """Change a metric's target, hours kind or pausing statuses. Open tickets' clocks are
    recomputed in the same transaction; the output says how many moved."""
    from faithflow_ops.support.policies import parse_duration, set_policy

    minutes = parse_duration(target) if target is not None else None
    paused = [s.strip() for s in pause.split(",") if s.strip()] if pause is not None else None
    rows, report = _change(
        now,
        dry_run,
        "policy",
        lambda session: set_policy(
            session,
            priorities=priority or [],
            metric=metric,
            minutes=minutes,
            hours=hours,
            pause=paused,
            actor=actor(),
        ),
    )
    if as_json:
        output.print_json({"policies": rows, "recomputed": report.doc()})
    else:
        _print_policies(rows, False)
    _report(report, as_json)


def _print_calendar(doc: dict[str, Any], as_json: bool, report: Recomputed | None = None) -> None:
    if as_json:
        output.print_json({**doc, "recomputed": report.doc()} if report else doc)
        if report is not None:
            _report(report, as_json)
        return
    output.record(
        {
            "time zone": doc["timezone"],
            **{
                day: " ".join(f"{a}-{b}" for a, b in spans) or "closed"
                for day, spans in doc["weekly_hours"].items()
            },
            "holidays": ", ".join(
                f"{h['date']}{' ' + h['name'] if h.get('name') else ''}" for h in doc["holidays"]
            )
            or "—",
            "source": doc["source"],
        },
        title=f"business calendar {doc['name']}",
    )
    if report is not None:
        _report(report)


@calendar_app.command("show")
def calendar_show(as_json: JsonOpt = False) -> None:
    """The business calendar business-hours targets count on."""
    from faithflow_ops.support.policies import calendar_doc

    with database().read_session() as session:
        doc = calendar_doc(session)
    _print_calendar(doc, as_json)


@calendar_app.command("set")
def calendar_set(
    timezone: Annotated[
        str | None, typer.Option("--timezone", help="IANA time zone, e.g. Africa/Lagos.")
    ] = None,
    hours: Annotated[
        list[str] | None,
        typer.Option(
            "--hours",
            help="Days and intervals, e.g. 'mon-fri 09:00-17:00' (repeat; days not named are "
            "closed).",
        ),
    ] = None,
    now: ChangeNowOpt = None,
    dry_run: ChangeDryRunOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """Set the time zone and/or the weekly hours. Open tickets' clocks are recomputed in the
    same transaction; the output says how many moved."""
    from faithflow_ops.support.policies import set_calendar

    doc, report = _change(
        now,
        dry_run,
        "calendar",
        lambda session: set_calendar(session, timezone=timezone, hours=hours, actor=actor()),
    )
    _print_calendar(doc, as_json, report)


@holiday_app.command("add")
def holiday_add(
    day: Annotated[str, typer.Argument(metavar="DATE", help="YYYY-MM-DD (a local date).")],
    name: Annotated[str | None, typer.Option("--name", help="e.g. Christmas Day.")] = None,
    now: ChangeNowOpt = None,
    dry_run: ChangeDryRunOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """Add a holiday: no business time that local day. Open clocks due on or after it move
    on, in the same transaction; the output says how many."""
    from faithflow_ops.support.policies import add_holiday, parse_day

    when = parse_day(day)
    doc, report = _change(
        now,
        dry_run,
        "calendar",
        lambda session: add_holiday(session, when, name, actor=actor()),
    )
    _print_calendar(doc, as_json, report)


@holiday_app.command("remove")
def holiday_remove(
    day: Annotated[str, typer.Argument(metavar="DATE", help="YYYY-MM-DD.")],
    now: ChangeNowOpt = None,
    dry_run: ChangeDryRunOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """Remove a holiday. Open clocks are recomputed in the same transaction; the output says
    how many moved."""
    from faithflow_ops.support.policies import parse_day, remove_holiday

    when = parse_day(day)
    doc, report = _change(
        now,
        dry_run,
        "calendar",
        lambda session: remove_holiday(session, when, actor=actor()),
    )
    _print_calendar(doc, as_json, report)
