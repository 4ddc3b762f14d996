"""Terminal output: data on stdout, everything else on stderr (STYLE 12).

`--json` prints exactly one JSON document to stdout; tables are Rich on stdout; messages,
progress and logs go to stderr. Errors leave through `abort`.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import sys
from collections.abc import Callable, Iterable, Sequence
from decimal import Decimal
from functools import cache
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar

import typer

if TYPE_CHECKING:
    from rich.console import Console

_Doc = TypeVar("_Doc")


@cache
def _console(err: bool) -> Console:
    # Rich is imported on first output, not at start-up (`faithflow --help` stays fast).
    # The console writes to whatever sys.stdout / sys.stderr is at print time
    # (Console(file=None)), so test runners that swap the streams still capture it.
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


def _say(message: str, prefix: str = "", style: str = "") -> None:
    """A message on stderr, one line, printed as plain text (data never becomes markup)."""
    from rich.text import Text

    message = safe(message)
    text = Text.assemble((prefix, style), message) if prefix else Text(message)
    stderr_console().print(text, highlight=False, soft_wrap=True)


def info(message: str) -> None:
    _say(message)


def warn(message: str) -> None:
    _say(message, "warning: ", "yellow")


def error(message: str) -> None:
    _say(message, "error: ", "red")


def abort(message: str, code: int = 2) -> NoReturn:
    """Leave with a one-line message on stderr and an exit code (2 = usage/configuration)."""
    error(message)
    raise typer.Exit(code)


_UNSAFE = {
    code: f"\\x{code:02x}" for code in (*range(0x20), *range(0x7F, 0xA0)) if code not in (9, 10)
} | {code: f"\\u{code:04x}" for code in (*range(0x202A, 0x202F), *range(0x2066, 0x206A))}


def safe(text: str) -> str:
    """`text` with control and bidi-override characters shown escaped (`\\x1b`, `\\u202e`),
    so a stored value can never drive the operator's terminal or reorder what it shows.
    Tabs and newlines stay (they move the cursor, nothing more)."""
    return text.translate(_UNSAFE)


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
    from rich.text import Text

    t = Table(title=title, show_lines=False, header_style="bold")
    for col in columns:
        t.add_column(col, overflow="fold")
    for row in rows:
        t.add_row(*(Text(safe(fmt(v))) for v in row))
    _print_table(t)


def record(fields: dict[str, Any], title: str | None = None) -> None:
    """One record as a two-column table. A record naming its tenant by slug (`tenant`) does
    not show the bare `tenant_id` beside it: operators know churches by slug (--json keeps
    both)."""
    from rich.table import Table
    from rich.text import Text

    t = Table(title=title, show_header=False)
    t.add_column("field", style="bold")
    t.add_column("value", overflow="fold")
    for key, value in fields.items():
        if key == "tenant_id" and "tenant" in fields:
            continue
        t.add_row(Text(safe(key)), Text(safe(fmt(value))))
    _print_table(t)


def section(columns: Sequence[str], rows: Sequence[Sequence[Any]], title: str, none: str) -> None:
    """A titled table of a record's related rows, or the line `none` (stderr) when there are
    none (no empty table)."""
    if rows:
        table(columns, rows, title=title)
    else:
        info(none)


def _print_table(t: Any) -> None:
    # On a terminal Rich fits the table to the window; piped, rows stay whole (no folding at
    # 80 columns) so grep and less see one record per line.
    console = stdout_console()
    if not console.is_terminal:  # Rich clamps print(width=…) to the console's own width
        from rich.console import Console

        console = Console(width=1000)
    console.print(t)


def silence_stdout() -> None:
    """After the reader of stdout went away: send the rest (and Python's exit flush) nowhere."""
    import os

    with contextlib.suppress(OSError, ValueError):
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())


def is_terminal() -> bool:
    return sys.stderr.isatty()


def stdin_is_terminal() -> bool:
    return sys.stdin.isatty()


def confirm(question: str, *, yes: bool) -> None:
    """Ask before a change an operator cannot take back; `--yes` answers for scripts.

    Not on a terminal and no --yes: refused (exit 2, nothing changed), never a silent yes.
    Answered no: exit 1, nothing changed."""
    if yes:
        return
    if not stdin_is_terminal():
        abort(
            f"{question.rstrip('?')}: not confirmed (no terminal to ask on); pass --yes to "
            "confirm from a script, or --dry-run to see what it would do",
            2,
        )
    if not typer.confirm(question, default=False, err=True):
        abort("not confirmed; nothing changed", 1)


def day(value: Any) -> Any:
    """A time shown as its date: enough in a list table (`--json` and `show` keep the time)."""
    return value.date() if isinstance(value, dt.datetime) else value


def minute(value: Any) -> Any:
    """A time shown to the minute in a table (`--json` keeps it whole); other values as they are."""
    return value.strftime("%Y-%m-%d %H:%M") if isinstance(value, dt.datetime) else value


def plural(noun: str) -> str:
    """`invoice` → `invoices`, `breach` → `breaches`, `entry` → `entries`."""
    if noun.endswith(("s", "sh", "ch", "x")):
        return noun + "es"
    if noun.endswith("y") and noun[-2:-1] not in ("a", "e", "o", "u"):
        return noun[:-1] + "ies"
    return noun + "s"


def empty(docs: Sequence[Any], noun: str, *, as_json: bool = False) -> bool:
    """Every list's empty case, one way: `[]` on stdout with --json, and one line `no <nouns>`
    on stderr either way (no empty table). True when there was nothing, so the caller returns."""
    if docs:
        return False
    if as_json:
        print_json([])
    info(f"no {plural(noun)}")
    return True


def list_footer(shown: int, total: int, noun: str, *, as_json: bool = False) -> None:
    """The line under a list (stderr): how many of how many, and how to see the rest.

    `noun` is singular ("invoice"); with --json only a cut-short list says anything; an empty
    list says `no <nouns>` (see `empty`)."""
    if total == 0 or shown == 0:
        info(f"no {plural(noun)}")
    elif total > shown:
        info(f"showing {shown} of {total}; raise --limit to see more")
    elif not as_json:
        info(f"{total} {noun if total == 1 else plural(noun)}")


def listing(
    docs: Sequence[_Doc],
    total: int,
    noun: str,
    columns: Sequence[str],
    row: Callable[[_Doc], Sequence[Any]],
    *,
    as_json: bool = False,
) -> None:
    """A list command's output, one way: `empty` when there is nothing, the documents with
    --json or a table of `row(doc)` under `columns`, then the `list_footer`."""
    if empty(docs, noun, as_json=as_json):
        return
    if as_json:
        print_json(docs)
    else:
        table(columns, [row(d) for d in docs])
    list_footer(len(docs), total, noun, as_json=as_json)


def percent(fraction: float | None, digits: int = 1) -> str:
    """0.123 → "12.3%"; None (nothing to divide by) → "—"."""
    return "—" if fraction is None else f"{fraction * 100:.{digits}f}%"
