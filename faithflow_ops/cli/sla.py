"""`faithflow sla …`: SLA clocks of support tickets (`sla sweep` is the job)."""

from __future__ import annotations

import typer

app = typer.Typer(
    rich_markup_mode=None,
    help="Support SLAs: the sweep (breaches, warnings), breaches, policies, calendars, analytics.",
    no_args_is_help=True,
)
