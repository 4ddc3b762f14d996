"""`faithflow support analytics` and `faithflow sla analytics` (mounted by cli/support.py and
cli/sla.py): thin over faithflow_ops/support/analytics.py, which computes the report; this
module draws it for the terminal (Rich tables and text bar charts)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

import typer

from faithflow_ops.cli import output
from faithflow_ops.cli.common import JsonOpt, database, parse_now

if TYPE_CHECKING:
    import datetime as dt
    from collections.abc import Callable

    from rich.console import Console

NowOpt = Annotated[
    str | None,
    typer.Option("--now", help="Act as at this time (ISO-8601, e.g. 2026-03-01T09:00:00Z)."),
]
SinceOpt = Annotated[
    str | None,
    typer.Option(
        "--since",
        help="Start of the period: ISO-8601, or a duration before --until (30d, 2w); default "
        "30 days before --until.",
    ),
]
UntilOpt = Annotated[
    str | None, typer.Option("--until", help="End of the period, exclusive (default: --now).")
]
ByOpt = Annotated[
    str | None, typer.Option("--by", help="Split the figures by priority, agent or tenant.")
]


def _period(
    since: str | None, until: str | None, now: str | None
) -> tuple[dt.datetime, dt.datetime]:
    from faithflow_ops.clock import parse_since
    from faithflow_ops.support.analytics import period

    end = parse_now(until, "--until") if until is not None else parse_now(now)
    start = parse_since(since, end) if since is not None else None
    return period(start, end)


def analytics(
    since: SinceOpt = None,
    until: UntilOpt = None,
    by: ByOpt = None,
    now: NowOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Support analytics for a period: tickets created/solved, first response and resolution
    time (median, p90; business and calendar), reopen rate, SLA achievement per metric,
    backlog per day, deflection rate and top deflecting articles."""
    from faithflow_ops.support.analytics import support_report

    _report(support_report, _period(since, until, now), by, as_json)


def sla_analytics(
    since: SinceOpt = None,
    until: UntilOpt = None,
    by: ByOpt = None,
    now: NowOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """SLA achievement for a period: per metric, clocks met and breached and the achievement
    rate, with first response and resolution times against the period (median, p90)."""
    from faithflow_ops.support.analytics import sla_report

    _report(sla_report, _period(since, until, now), by, as_json)


def _report(
    build: Callable[..., dict[str, Any]],
    period: tuple[dt.datetime, dt.datetime],
    by: str | None,
    as_json: bool,
) -> None:
    """Build the report for `period` in a read-only session and print it."""
    with database().read_session() as session:
        doc = build(session, since=period[0], until=period[1], by=by)
    if as_json:
        output.print_json(doc)
    else:
        render(doc, output.stdout_console())


# ---------------------------------------------------------------- terminal


def _mins(value: float | None) -> str:
    if value is None:
        return "—"
    if value >= 60 * 24:
        return f"{value / 60 / 24:.1f} d"
    if value >= 60:
        return f"{value / 60:.1f} h"
    return f"{value:.0f} min"


def _bar(value: int, top: int, width: int = 40) -> str:
    if top <= 0 or value <= 0:
        return ""
    return "█" * max(1, round(value / top * width))


def render(doc: dict[str, Any], console: Console) -> None:
    """A support or SLA report as Rich tables and text bar charts."""
    from rich.console import Console
    from rich.table import Table

    from faithflow_ops.models.support import METRICS

    if not console.is_terminal:  # piped: whole rows, no folding at 80 columns
        console = Console(width=1000)

    pct = output.percent
    full = "backlog" in doc
    columns = [("all", doc["totals"])] + [(g["key"], g) for g in doc["groups"]]
    title = "support" if full else "SLA"
    table = Table(
        title=f"{title} analytics {doc['since']:%Y-%m-%d %H:%M} → {doc['until']:%Y-%m-%d %H:%M} "
        f"(business hours: {doc['calendar']['timezone']} calendar)",
        header_style="bold",
    )
    table.add_column("figure", no_wrap=True)
    for name, _ in columns:
        table.add_column(str(name), justify="right", no_wrap=True)

    def row(label: str, get: Any) -> None:
        table.add_row(label, *(get(m) for _, m in columns))

    if full:
        row("tickets created", lambda m: str(m["created"]))
        row("tickets solved", lambda m: str(m["solved"]))
    for metric, label in (("first_response", "first response"), ("resolution", "resolution")):
        for unit in ("business", "calendar"):
            row(
                f"{label} median ({unit})",
                lambda m, k=metric, u=unit: _mins(m[k][u]["median_minutes"]),
            )
            row(f"{label} p90 ({unit})", lambda m, k=metric, u=unit: _mins(m[k][u]["p90_minutes"]))
    if full:
        row("reopen rate", lambda m: pct(m["reopen"]["rate"]))
    for metric in METRICS:
        row(
            f"SLA {metric.replace('_', ' ')} (met/clocks)",
            lambda m, k=metric: (
                f"{pct(m['sla'][k]['rate'])} "
                f"({m['sla'][k]['achieved']}/{m['sla'][k]['achieved'] + m['sla'][k]['breached']})"
            ),
        )
    if full:
        row("deflection rate", lambda m: f"{pct(m['deflection_rate'])} ({m['deflected']})")
    console.print(table)

    if full:
        top = max((d["open"] for d in doc["backlog"]), default=0)
        console.print("\nbacklog (unsolved at the end of each UTC day)", style="bold")
        for day in doc["backlog"]:
            console.print(f"{day['date']} {day['open']:>7} {_bar(day['open'], top)}")
        articles = doc["deflection"]["top_articles"]
        console.print(
            f"\ndeflection: an article sent on {doc['deflection']['sent']} ticket(s), "
            f"{doc['deflection']['confirmed']} confirmed solved "
            f"({pct(doc['deflection']['confirmation_rate'])})",
            style="bold",
        )
        most = max((a["deflections"] for a in articles), default=0)
        for article in articles:
            console.print(
                f"{article['slug']:<40} {article['deflections']:>5} of {article['sent']:<5} "
                f"{_bar(article['deflections'], most, 30)}"
            )
