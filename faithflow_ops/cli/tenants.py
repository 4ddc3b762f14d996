"""`faithflow tenants …`."""

from __future__ import annotations

import typer

app = typer.Typer(help="tenants commands.", no_args_is_help=True)
