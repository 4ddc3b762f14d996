"""Terminal output: data on stdout, everything else on stderr (STYLE 12).

`--json` prints exactly one JSON document to stdout; tables are Rich on stdout; messages,
progress and logs go to stderr. Errors leave through `abort`.
"""

from __future__ import annotations

import datetime as dt
import json
import sys
from collections.abc import Iterable, Sequence
from decimal import Decimal
from typing import Any, NoReturn

from functools import cache
from typing import TYPE_CHECKING

import typer

if TYPE_CHECKING:
    from rich.console import Console


@cache
def _console(err: bool) -> Console:
    # Rich is imported on first output, not at start-up (`faithflow --help` stays fast).
    # Not cached across CliRunner invocations' stream swaps: the console writes to whatever
    # sys.stdout / sys.stderr is at print time (Console(file=None)).
    from rich.console import Console

    return Console(stderr=err)


def stdout_console() -> Console:
    return _console(False)


def stderr_console() -> Console:
    return _console(True)


def _default(value: Any) -> Any:
    if isinstance(value, dt.datetime | dt.date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, set | frozenset | tuple):
        return list(value)
    raise TypeError(f"cannot serialise {type(value).__name__}")


def dumps(doc: Any) -> str:
    return json.dumps(doc, default=_default, ensure_ascii=False)


def print_json(doc: Any) -> None:
    """Exactly one JSON document on stdout."""
    sys.stdout.write(json.dumps(doc, default=_default, indent=2, ensure_ascii=False) + "\n")
    sys.stdout.flush()


def info(message: str) -> None:
    stderr_console().print(message, highlight=False)


def warn(message: str) -> None:
    stderr_console().print(f"[yellow]warning:[/yellow] {message}", highlight=False)


def abort(message: str, code: int = 2) -> NoReturn:
    """Leave with a one-line message on stderr and an exit code (2 = usage/configuration)."""
    stderr_console().print(f"[red]error:[/red] {message}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


def fmt(value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, dt.datetime):
        return value.isoformat(timespec="seconds")
    if isinstance(value, dict | list):
        return dumps(value)
    return str(value)


def table(columns: Sequence[str], rows: Iterable[Sequence[Any]], title: str | None = None) -> None:
    from rich.table import Table

    t = Table(title=title, show_lines=False, header_style="bold")
    for col in columns:
        t.add_column(col, overflow="fold")
    for row in rows:
        t.add_row(*(fmt(v) for v in row))
    stdout_console().print(t)


def record(fields: dict[str, Any], title: str | None = None) -> None:
    """One record as a two-column table."""
    from rich.table import Table

    t = Table(title=title, show_header=False)
    t.add_column("field", style="bold")
    t.add_column("value", overflow="fold")
    for key, value in fields.items():
        t.add_row(key, fmt(value))
    stdout_console().print(t)


def is_terminal() -> bool:
    return sys.stderr.isatty()
