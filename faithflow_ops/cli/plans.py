"""`faithflow plans …`."""

from __future__ import annotations

import typer

app = typer.Typer(help="plans commands.", no_args_is_help=True)
