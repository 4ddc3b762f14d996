"""`faithflow release …`: the release pre-flight the runbooks in docs/releases/ run."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from faithflow_ops.cli import output
from faithflow_ops.cli.common import JsonOpt

app = typer.Typer(
    rich_markup_mode=None,
    help="Release readiness: the pre-flight check (schema, running jobs, backlogs, budgets).",
    no_args_is_help=True,
)


@app.command("check")
def check(
    migrated: Annotated[
        bool,
        typer.Option(
            "--migrated", help="After the migrate step: a pending migration fails the check."
        ),
    ] = False,
    allow_spent_budget: Annotated[
        bool,
        typer.Option(
            "--allow-spent-budget", help="A fix release: a spent error budget only warns."
        ),
    ] = False,
    now: Annotated[
        str | None,
        typer.Option("--now", help="As of this time (ISO-8601, e.g. 2026-03-01T09:00:00Z)."),
    ] = None,
    file: Annotated[
        Path | None,
        typer.Option("--file", help="The SLO file (default: ops/slo.toml of this checkout)."),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Whether a release may proceed: database not newer than this code (and at head with
    --migrated), no job running, inbox and outbox backlogs within ops/slo.toml, error budgets
    not spent. Exit 1 when it should not proceed."""
    from faithflow_ops.cli.common import database, parse_now
    from faithflow_ops.slo import spec
    from faithflow_ops.slo.release import proceed, run_checks

    checks = run_checks(
        database(),
        spec.load(file),
        parse_now(now),
        migrated=migrated,
        allow_spent=allow_spent_budget,
    )
    ok = proceed(checks)
    if as_json:
        output.print_json({"proceed": ok, "checks": [c.to_dict() for c in checks]})
    else:
        output.table(
            ["check", "status", "detail"],
            [(c.name, c.status, c.detail) for c in checks],
            title="release pre-flight",
        )
        (output.info if ok else output.error)(
            "the release may proceed" if ok else "the release should not proceed"
        )
    if not ok:
        raise typer.Exit(1)
