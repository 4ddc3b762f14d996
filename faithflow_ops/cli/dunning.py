"""`faithflow dunning …`: the past-due recovery ladder (`dunning run` is the job)."""

from __future__ import annotations

import typer

app = typer.Typer(
    rich_markup_mode=None,
    help="Past-due recovery: preview, run, analytics, the ladder (policy), tenant preferences.",
    no_args_is_help=True,
)
