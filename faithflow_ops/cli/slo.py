"""`faithflow slo …`: the objectives of ops/slo.toml — check the file (docs/slo.md)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

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

    return spec.load(path or spec.DEFAULT_PATH)


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
