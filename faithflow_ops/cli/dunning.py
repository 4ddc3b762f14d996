"""`faithflow dunning …`: the past-due recovery ladder (`dunning run` is the job)."""

from __future__ import annotations

import typer

from faithflow_ops.cli import dunning_settings, jobs
from faithflow_ops.cli.common import JsonOpt
from faithflow_ops.jobs import registry

app = typer.Typer(
    rich_markup_mode=None,
    help="Past-due recovery: preview, run, analytics, the ladder (policy), tenant preferences.",
    no_args_is_help=True,
)


@app.command("preview")
def preview(
    now: jobs.NowOpt = None,
    as_json: JsonOpt = False,
    limit: jobs.LimitOpt = None,
) -> None:
    """What `dunning run` would do now, changing nothing (= `dunning run --dry-run`).

    Per open case: tenant, amount, days past due, the step now due, its channels (blocked ones
    with the reason), the send time after quiet hours and the 20-hour window, and why anything
    is held back; also payment retries, hand-overs, and cases to open or close.
    """
    jobs.execute(registry.get("dunning"), dry_run=True, now=now, as_json=as_json, limit=limit)


jobs.add_job_command(app, registry.get("dunning"))  # `dunning run`
app.add_typer(dunning_settings.policy_app, name="policy")
app.add_typer(dunning_settings.prefs_app, name="prefs")
app.command("analytics")(dunning_settings.analytics)

# The ladder, tenant preferences and analytics (cli/dunning_settings.py).
app.add_typer(dunning_settings.policy_app, name="policy")
app.add_typer(dunning_settings.prefs_app, name="prefs")
app.command("analytics")(dunning_settings.analytics)
