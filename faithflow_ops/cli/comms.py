"""`faithflow comms …`: the communications outbox (`comms dispatch` is the job)."""

from __future__ import annotations

import typer

app = typer.Typer(
    rich_markup_mode=None,
    help="The communications outbox: dispatch, list, show, retry, cancel, suppressions.",
    no_args_is_help=True,
)
