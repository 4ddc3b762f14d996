"""`faithflow dunning …`: the past-due recovery ladder. `dunning run` and `dunning preview` are
the `dunning` job's commands (generated from the registry by `cli.load_group`)."""

from __future__ import annotations

import typer

from faithflow_ops.cli import dunning_settings

app = typer.Typer(
    rich_markup_mode=None,
    help="Past-due recovery: preview, run, analytics, the ladder (policy), tenant preferences.",
    no_args_is_help=True,
)

# The ladder, tenant preferences and analytics (cli/dunning_settings.py).
app.add_typer(dunning_settings.policy_app, name="policy")
app.add_typer(dunning_settings.prefs_app, name="prefs")
app.command("analytics")(dunning_settings.analytics)
