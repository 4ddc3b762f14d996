"""`faithflow slo …`: the objectives of ops/slo.toml — check the file (docs/slo.md)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from faithflow_ops.cli import output
from faithflow_ops.cli.common import JsonOpt

if TYPE_CHECKING:
    from faithflow_ops.slo.spec import Spec

app = typer.Typer(
    rich_markup_mode=None,
    help="Service level objectives (ops/slo.toml): check the file, generate Prometheus rules "
    "and the Grafana dashboard, report from the database.",
    no_args_is_help=True,
)

FileOpt = Annotated[
    Path | None,
    typer.Option("--file", help="The SLO file (default: ops/slo.toml of this checkout)."),
]


def _load(path: Path | None) -> Spec:
    from faithflow_ops.slo import spec

    return spec.load(path)


@app.command("check")
def check(file: FileOpt = None, as_json: JsonOpt = False) -> None:
    """Validate the SLO file and list its objectives (exit 2 naming the line of an error)."""
    loaded = _load(file)
    rows = [
        {
            "name": o.name,
            "kind": o.kind,
            "objective": o.objective,
            "budget": o.budget if o.has_budget else None,
            "description": o.description,
        }
        for o in loaded.objectives
    ]
    if as_json:
        output.print_json({"window": loaded.window, "objectives": rows})
        return
    output.table(
        ["name", "kind", "objective", "description"],
        [
            (
                r["name"],
                r["kind"],
                "—" if r["objective"] is None else f"{r['objective']}%",
                r["description"],
            )
            for r in rows
        ],
        title=f"SLOs over {loaded.window}",
    )


@app.command("rules")
def rules_command(file: FileOpt = None) -> None:
    """Print the Prometheus recording and alerting rules (multi-window, multi-burn-rate) for
    the objectives; ops/prometheus/slo-rules.yml is this output."""
    from faithflow_ops.slo import rules

    typer.echo(rules.render(_load(file)), nl=False)


@app.command("dashboard")
def dashboard_command(file: FileOpt = None) -> None:
    """Print the Grafana dashboard JSON (a row per objective: SLI, budget left, burn rate; job
    freshness; backlogs); ops/grafana/slo-dashboard.json is this output."""
    from faithflow_ops.slo import dashboard

    typer.echo(dashboard.render(_load(file)), nl=False)


@app.command("report")
def report_command(
    since: Annotated[
        str | None,
        typer.Option(
            "--since",
            help="Window start: 30d, 24h, or an ISO-8601 time (default: "
            "the SLO window of the file).",
        ),
    ] = None,
    now: Annotated[
        str | None,
        typer.Option("--now", help="As of this time (ISO-8601, e.g. 2026-03-01T09:00:00Z)."),
    ] = None,
    file: FileOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Each objective measured from the database alone (job_runs, webhook_events,
    outbound_messages, the receiver's request tallies): SLI, error budget left, worst
    offenders. For deployments without Prometheus; docs/slo.md says what it cannot see."""
    from faithflow_ops.cli.common import database, parse_now
    from faithflow_ops.clock import parse_since
    from faithflow_ops.slo.report import build

    loaded = _load(file)
    when = parse_now(now)
    start = parse_since(since or loaded.window, when)
    with database().read_session() as session:
        lines = build(session, loaded, now=when, since=start)
    if as_json:
        output.print_json(
            {
                "since": start.isoformat(),
                "now": when.isoformat(),
                "objectives": [line.to_dict() for line in lines],
            }
        )
        return
    output.table(
        ["objective", "target", "SLI", "budget left", "status", "worst / note"],
        [
            (
                line.name,
                "—" if line.objective is None else f"{line.objective:g}%",
                output.percent(line.sli, 3) if line.sli is not None else "—",
                output.percent(line.budget_left, 1) if line.budget_left is not None else "—",
                line.status,
                _worst(line),
            )
            for line in lines
        ],
        title=f"SLOs from {start:%Y-%m-%d %H:%M} to {when:%Y-%m-%d %H:%M} UTC",
    )


def _worst(line: Any) -> str:
    if line.worst:
        first = line.worst[0]
        return ", ".join(f"{k}={v}" for k, v in first.items() if k != "last_error" and v)
    return line.note or ""
