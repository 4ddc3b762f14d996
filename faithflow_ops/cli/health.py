"""`faithflow health …`: the current state and uptime of every health check, and their history
(`health sweep` is added from the job registry; runbook: docs/health.md)."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any

import typer

from faithflow_ops.cli import output
from faithflow_ops.cli.common import JsonOpt, database, parse_now

app = typer.Typer(
    rich_markup_mode=None,
    help="Health checks: the sweep (providers, SMTP, DNS, database, job freshness), status "
    "with uptime, history.",
    no_args_is_help=True,
)

NowOpt = Annotated[
    str | None,
    typer.Option("--now", help="As of this time (ISO-8601, e.g. 2026-03-01T09:00:00Z)."),
]


def _short(value: Any) -> Any:
    return value.strftime("%Y-%m-%d %H:%M:%S") if isinstance(value, dt.datetime) else value


def _uptime(value: float | None) -> str:
    """An uptime (a percentage already, 0–100) as "99.50%"."""
    return output.percent(None if value is None else value / 100, 2)


def _ms(value: float | None) -> str:
    return "—" if value is None else f"{value:.0f}"


@app.command("status")
def status(now: NowOpt = None, as_json: JsonOpt = False) -> None:
    """Every check's latest result (status, when, latency, detail, open incident) and its
    uptime over 24 hours and 30 days: the share of ok or warn results among those not skipped."""
    from faithflow_ops.health.history import status as read_status
    from faithflow_ops.jobs.health_sweep import check_names

    when = parse_now(now)
    with database().read_session() as session:
        docs = read_status(session, when, check_names())
    if as_json:
        output.print_json(docs)
        return
    output.table(
        ["check", "status", "checked", "ms", "24 h", "30 d", "incident", "detail"],
        [
            [
                d["check"],
                d["status"] or "—",
                _short(d["checked_at"]),
                _ms(d["latency_ms"]),
                _uptime(d["uptime_24h"]),
                _uptime(d["uptime_30d"]),
                d["incident_id"],
                d["detail"],
            ]
            for d in docs
        ],
        title=f"health at {when.isoformat()}",
    )
    failing = [d["check"] for d in docs if d["status"] == "fail"]
    if failing:
        output.warn(f"failing: {', '.join(failing)}; see docs/health.md for what to do")


@app.command("history")
def history(
    check: Annotated[
        str | None, typer.Option("--check", help="Only this check (e.g. smtp, job:dunning).")
    ] = None,
    since: Annotated[
        str | None,
        typer.Option("--since", help="From this long ago (30m, 24h, 7d) or an ISO-8601 time."),
    ] = None,
    limit: Annotated[int, typer.Option("--limit", min=1, help="Show at most this many.")] = 50,
    now: NowOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Stored check results, newest first."""
    from faithflow_ops.clock import parse_since
    from faithflow_ops.health.history import history as read_history
    from faithflow_ops.jobs.health_sweep import check_names

    when = parse_now(now)
    start = parse_since(since, when) if since is not None else None
    with database().read_session() as session:
        docs, total = read_history(
            session, checks=check_names(), check=check, since=start, until=when, limit=limit
        )
    if output.empty(docs, "result", as_json=as_json):
        return
    if as_json:
        output.print_json(docs)
    else:
        output.table(
            ["id", "check", "status", "checked", "ms", "incident", "detail"],
            [
                [
                    d["id"],
                    d["check"],
                    d["status"],
                    _short(d["checked_at"]),
                    _ms(d["latency_ms"]),
                    d["incident_id"],
                    d["detail"],
                ]
                for d in docs
            ],
        )
    output.list_footer(len(docs), total, "result", as_json=as_json)
