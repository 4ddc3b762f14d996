"""`faithflow streams ingest-views` and `faithflow streams analytics` (mounted by
cli/streams.py): thin over faithflow_ops/streams/views.py (the import) and
faithflow_ops/streams/analytics.py (the report); this module draws the report for a terminal
(Rich tables and a bar chart of concurrent viewers over time)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

import typer

from faithflow_ops.cli import output
from faithflow_ops.cli.common import JsonOpt, database

if TYPE_CHECKING:
    from rich.console import Console

_BLOCKS = " ▁▂▃▄▅▆▇█"
CHART_HEIGHT = 8  # rows of the concurrency chart


def ingest_views(
    file: Annotated[
        str, typer.Argument(help="The beacons file: CSV with a header, or JSON lines.")
    ],
    session_id: Annotated[
        int | None,
        typer.Option(
            "--session", help="The session every line belongs to (else a session_id column)."
        ),
    ] = None,
    fmt: Annotated[
        str | None,
        typer.Option("--format", help="csv or jsonl (default: from the file's extension)."),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Import player view events (join, heartbeat, leave) for `streams analytics`: every line
    is checked first and a file with a bad line imports nothing; re-importing adds nothing."""
    from faithflow_ops.streams.views import ingest_views as ingest

    with database().session() as session:
        result = ingest(session, file, fmt=fmt, session_id=session_id)
    if as_json:
        output.print_json(result.doc())
    output.info(
        f"imported {result.inserted} view event{'s' if result.inserted != 1 else ''} from "
        f"{result.file} ({result.duplicates} already there) in {result.seconds:.2f} s "
        f"({result.per_second:,.0f} lines/s); "
        + (
            f"{result.views} views rebuilt in {result.views_seconds:.2f} s"
            if result.inserted
            else f"nothing new: the {result.views} views stand"
        )
    )


def analytics(
    session_id: Annotated[int, typer.Argument(help="The session's id.")],
    buckets: Annotated[
        int,
        typer.Option("--buckets", help="Retention points: at every 1/N of the stream (1-100)."),
    ] = 10,
    slots: Annotated[
        int, typer.Option("--slots", help="Columns of the concurrency chart (1-500).")
    ] = 60,
    rebuild: Annotated[
        bool,
        typer.Option(
            "--rebuild",
            help="Rebuild the session's views from its events first (ingest-views does it; "
            "needed only after events were changed by other means).",
        ),
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """A session's audience from its view events: views, unique viewers, watch time, peak
    concurrent viewers (stored on the session), retention at each 10% of the stream, sources
    and top referrers, and a chart of concurrent viewers over time."""
    from faithflow_ops.streams.analytics import session_analytics

    with database().session() as session:
        doc = session_analytics(session, session_id, buckets=buckets, slots=slots, rebuild=rebuild)
    if as_json:
        output.print_json(doc)
        return
    render(doc, output.stdout_console())


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    whole = round(seconds)
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}h{minutes:02d}m{secs:02d}s" if hours else f"{minutes}m{secs:02d}s"


def render(doc: dict[str, Any], console: Console) -> None:
    """The report: figures, retention, sources, referrers, then the chart."""
    from rich.console import Console
    from rich.table import Table

    if not console.is_terminal:  # piped: whole rows, no folding at 80 columns
        console = Console(width=max(120, len(doc["concurrency"]["slots"]) + 20))
    info = doc["session"]
    console.print(
        f"session {info['id']}: {output.safe(info['title'])} ({info['status']})", style="bold"
    )
    if doc["span"] is None:
        console.print("no view events inside the session's span: nothing to report")
        return
    span = doc["span"]
    peak = doc["peak_concurrent"]
    watch = doc["watch_time"]
    output.record(
        {
            "span": f"{output.minute(span['from'])} → {output.minute(span['to'])} "
            f"({_duration(span['seconds'])}{', from the events' if span['from_events'] else ''})",
            "views": doc["views"],
            "unique viewers": doc["unique_viewers"],
            "watch time": _duration(watch["total_s"]),
            "average per view": _duration(watch["avg_per_view_s"]),
            "average per viewer": _duration(watch["avg_per_viewer_s"]),
            "peak concurrent": f"{peak['viewers']}"
            + (f" at {peak['at'].strftime('%H:%M:%S')}" if peak["at"] else ""),
        }
    )
    retention = Table(title="retention (share of unique viewers watching)", title_justify="left")
    for col in ("at", "time", "viewers", "share", ""):
        retention.add_column(col, justify="left" if col in ("time", "") else "right")
    for point in doc["retention"]:
        share = point["share"] or 0.0
        retention.add_row(
            f"{point['percent']:g}%",
            point["at"].strftime("%H:%M:%S") if point["at"] else "—",
            str(point["viewers"]),
            output.percent(point["share"]),
            "█" * round(share * 30),
        )
    console.print(retention)
    sources = Table(title="sources", title_justify="left")
    for col in ("source", "views", "share", "viewers", "watch time"):
        sources.add_column(col, justify="left" if col == "source" else "right")
    for src in doc["sources"]:
        sources.add_row(
            src["source"],
            str(src["views"]),
            output.percent(src["share"]),
            str(src["viewers"]),
            _duration(src["watch_time_s"]),
        )
    console.print(sources)
    if doc["top_referrers"]:
        refs = Table(title="top referrers", title_justify="left")
        for col in ("referrer", "views", "share"):
            refs.add_column(col, justify="left" if col == "referrer" else "right")
        for ref in doc["top_referrers"]:
            refs.add_row(
                output.safe(ref["referrer"]), str(ref["views"]), output.percent(ref["share"])
            )
        console.print(refs)
    chart(doc, console)


def chart(doc: dict[str, Any], console: Console) -> None:
    """Concurrent viewers over time: one column per slot, eighth blocks for the fraction, the
    viewer scale on the left and the time axis (UTC) below."""
    slots = doc["concurrency"]["slots"]
    if not slots:
        return
    values = [s["viewers"] for s in slots]
    top = max(values) or 1
    label_width = len(str(top))
    console.print(
        f"\nconcurrent viewers (UTC; one column = {_duration(doc['concurrency']['slot_seconds'])})",
        style="bold",
    )
    for row in range(CHART_HEIGHT, 0, -1):
        cells = []
        for value in values:
            eighths = round(value / top * CHART_HEIGHT * 8)
            full = (row - 1) * 8
            cells.append(_BLOCKS[max(0, min(8, eighths - full))])
        label = str(top) if row == CHART_HEIGHT else ("0" if row == 1 else "")
        console.print(f"{label:>{label_width}} │{''.join(cells)}", style="cyan", highlight=False)
    width = len(values)
    axis = [" "] * width
    ticks = sorted({0, width // 2, max(0, width - 5)})
    for tick in ticks:
        stamp = slots[tick]["from"].strftime("%H:%M")
        for i, ch in enumerate(stamp):
            if tick + i < width:
                axis[tick + i] = ch
    console.print(f"{'':>{label_width}} └{'─' * width}", highlight=False)
    console.print(f"{'':>{label_width}}  {''.join(axis)}", highlight=False)
