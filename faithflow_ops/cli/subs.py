"""`faithflow subs …`."""

from __future__ import annotations

import typer

app = typer.Typer(help="subs commands.", no_args_is_help=True)
