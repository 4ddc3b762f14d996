"""`faithflow support …`: tickets, the queue, analytics and the knowledge base."""

from __future__ import annotations

import typer

app = typer.Typer(
    rich_markup_mode=None,
    help="Support center: tickets, queue health, analytics, knowledge base and deflection.",
    no_args_is_help=True,
)
