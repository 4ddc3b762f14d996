"""What every command shares: settings, the database, `--now` parsing, the option types."""

from __future__ import annotations

import datetime as dt
import getpass
import os
from typing import TYPE_CHECKING, Annotated

import typer

if TYPE_CHECKING:
    from faithflow_ops.config import Settings
    from faithflow_ops.db import Database

JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON document to stdout.")]
LimitOpt = Annotated[int, typer.Option("--limit", min=1, help="Show at most this many.")]
ProviderOpt = Annotated[
    str | None, typer.Option("--provider", help="Only stripe or only paystack.")
]


def settings() -> Settings:
    from faithflow_ops.config import Settings  # not at import: `faithflow --help` stays fast

    return Settings.from_env()


_db_cache: dict[str, Database] = {}

# Whether `database()` may create a missing SQLite database. The root command sets it for each
# command it runs (`cli._Group.get_command`): only `demo` (which migrates at once) and
# `db upgrade` (which asks explicitly) create one; any other command on a missing file stops
# with "no database at …" (exit 2) and creates nothing. Library callers create as before.
_creating = True


def allow_creating(flag: bool) -> None:
    global _creating
    _creating = flag


def database(cfg: Settings | None = None, *, create: bool | None = None) -> Database:
    """The configured database (one engine per URL per process)."""
    from faithflow_ops.db import Database, job_timeouts

    cfg = cfg or settings()
    if cfg.database_url not in _db_cache:
        may_create = _creating if create is None else create
        _db_cache[cfg.database_url] = Database.from_url(
            cfg.database_url,
            create=may_create,
            timeouts=job_timeouts(cfg.db_statement_timeout),  # FAITHFLOW_DB_STATEMENT_TIMEOUT
        )
    return _db_cache[cfg.database_url]


def reset_database_cache() -> None:
    for db in _db_cache.values():
        db.dispose()
    _db_cache.clear()


def parse_now(
    value: str | None, option: str = "--now", example: str = "2026-03-01T09:00:00Z"
) -> dt.datetime:
    """`--now` (default: the wall clock) and any other point-in-time option (`--until`):
    ISO-8601 (`2026-03-01T09:00:00Z`, an offset, or a date; naive means UTC), from 1970 to
    8999; an empty value is refused. `--since` options take `faithflow_ops.clock.parse_since`
    (durations too)."""
    from faithflow_ops.clock import parse_instant

    if value is None:
        return dt.datetime.now(dt.UTC)
    return parse_instant(value, option, example)


def actor() -> str:
    """Who is acting, for the audit log: `cli:<user>@<host>`."""
    try:
        user = getpass.getuser()
    except Exception:  # no passwd entry in some containers
        user = "unknown"
    return f"cli:{user}@{os.uname().nodename}"
