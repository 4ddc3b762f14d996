"""Engine and session factory (SQLite default, Postgres in production), UTC datetimes, JSON, locks.

One session provider for the CLI, the receiver and the scheduler (STYLE 3): everything calls
`Database(settings)` and asks it for sessions; jobs and services take a session and never
build engines.
"""

from __future__ import annotations

import datetime as dt
import json
import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

from sqlalchemy import (
    JSON,
    ColumnElement,
    CursorResult,
    DateTime,
    Engine,
    String,
    Text,
    any_,
    bindparam,
    create_engine,
    event,
    func,
    literal,
    select,
)
from sqlalchemy import cast as cast_
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Dialect
from sqlalchemy.exc import ArgumentError, NoSuchModuleError
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.sql.functions import FunctionElement
from sqlalchemy.types import TypeDecorator

from faithflow_ops.errors import ConfigError

UTC = dt.UTC


def utcnow() -> dt.datetime:
    return dt.datetime.now(UTC)


class UTCDateTime(TypeDecorator[dt.datetime]):
    """Timezone-aware UTC datetimes on every dialect.

    Postgres stores `timestamptz`; SQLite stores naive UTC text. Naive datetimes are refused on
    the way in — a naive value is a bug (whose clock?) and must not be guessed at.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: dt.datetime | None, dialect: Dialect) -> dt.datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value!r}: pass a timezone-aware UTC value")
        value = value.astimezone(UTC)
        if dialect.name == "sqlite":
            return value.replace(tzinfo=None)
        return value

    def process_result_value(
        self, value: dt.datetime | None, dialect: Dialect
    ) -> dt.datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


class utc_now_default(FunctionElement[dt.datetime]):  # lower case: it reads as SQL in DDL
    """Server default for timestamp columns, stored exactly as UTCDateTime stores values.

    On SQLite, `CURRENT_TIMESTAMP` gives `2026-03-01 09:00:00` while SQLAlchemy writes
    `2026-03-01 09:00:00.000000`; the two compare unequal as text, so a row inserted by raw SQL
    could never be claimed with `updated_at = :seen`. This writes microseconds on SQLite too.
    """

    type = DateTime(timezone=True)
    name = "utc_now_default"
    inherit_cache = True


@compiles(utc_now_default)
def _utc_now_default(_element: Any, _compiler: Any, **_kw: Any) -> str:
    return "CURRENT_TIMESTAMP"


@compiles(utc_now_default, "sqlite")
def _utc_now_default_sqlite(_element: Any, _compiler: Any, **_kw: Any) -> str:
    return "(strftime('%Y-%m-%d %H:%M:%f', 'now') || '000')"


# Provider payloads and free-form metadata: JSONB on Postgres, JSON text elsewhere.
JSONType = JSON().with_variant(postgresql.JSONB(), "postgresql")


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    # Let SQLAlchemy, not pysqlite, decide when transactions begin (see _sqlite_begin).
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def _sqlite_begin(conn: Any) -> None:
    # Writes begin with BEGIN IMMEDIATE so two writers queue on the busy timeout instead of
    # failing with "database is locked" when a deferred reader upgrades. Read-only work
    # (plans, listings) asks for a deferred transaction with the `sqlite_deferred` option.
    if conn.get_execution_options().get("sqlite_deferred"):
        conn.exec_driver_sql("BEGIN")
    else:
        conn.exec_driver_sql("BEGIN IMMEDIATE")


@dataclass(frozen=True)
class DbTimeouts:
    """Seconds a Postgres connection may spend: connecting, on one statement, waiting for one
    lock. Set per use through the connection's `options` (`-c statement_timeout=…`), so the
    receiver and the jobs each get theirs from the same database."""

    statement: float
    lock: float
    connect: int = 5

    def options(self) -> str:
        return (
            f"-c statement_timeout={round(self.statement * 1000)} "
            f"-c lock_timeout={round(self.lock * 1000)}"
        )


# The receiver answers webhooks and probes: short, so a stuck query or lock fails the request
# (503, retried by the sender) instead of holding a worker.
RECEIVER_TIMEOUTS = DbTimeouts(statement=5.0, lock=2.0, connect=2)
JOB_STATEMENT_TIMEOUT = 300.0  # FAITHFLOW_DB_STATEMENT_TIMEOUT's default
JOB_LOCK_TIMEOUT = 30.0


def job_timeouts(statement: float = JOB_STATEMENT_TIMEOUT) -> DbTimeouts:
    """Jobs and the CLI: FAITHFLOW_DB_STATEMENT_TIMEOUT per statement, 30 s per lock wait (at
    most the statement's)."""
    return DbTimeouts(statement=statement, lock=min(JOB_LOCK_TIMEOUT, statement))


def make_engine(
    url: str, *, create: bool = True, timeouts: DbTimeouts | None = None, **kwargs: Any
) -> Engine:
    """Create an engine; for SQLite create the folder and switch on WAL + busy timeout.

    `create=False`: a SQLite file that does not exist is a ConfigError (no file, no folder is
    made): a command that only reads or that needs the schema must not make an empty one.
    `timeouts` (Postgres): the connection's statement, lock and connect timeouts; by default
    the jobs' (`job_timeouts()`)."""
    try:
        if url.startswith("sqlite"):
            path = url.split(":///", 1)[1] if ":///" in url else ""
            if path and path != ":memory:" and not path.startswith("file:"):
                if not create and not Path(path).expanduser().exists():
                    raise ConfigError(
                        f"no database at {Path(path).expanduser()}; run `faithflow db upgrade` "
                        "to create it (or point FAITHFLOW_DATABASE_URL at an existing one)"
                    )
                folder = Path(path).expanduser().parent
                try:
                    folder.mkdir(parents=True, exist_ok=True)
                except OSError as exc:
                    raise ConfigError(
                        f"cannot create the SQLite folder {folder} ({exc.strerror}); set "
                        "FAITHFLOW_DATABASE_URL to a writable path or XDG_DATA_HOME to a "
                        "writable folder"
                    ) from None
            engine = create_engine(url, connect_args={"timeout": 30}, **kwargs)
            event.listen(engine, "connect", _sqlite_pragmas)
            event.listen(engine, "begin", _sqlite_begin)
            return engine
        kwargs.setdefault("pool_pre_ping", True)
        if url.startswith("postgresql"):
            # fail fast when the host is unreachable (readyz, CLI) instead of hanging on TCP
            limits = timeouts or job_timeouts()
            kwargs.setdefault(
                "connect_args",
                {"connect_timeout": limits.connect, "options": limits.options()},
            )
        return create_engine(url, **kwargs)
    except (ArgumentError, NoSuchModuleError, ImportError) as exc:  # a driver not installed
        raise ConfigError(
            f"cannot use database URL {url.split('@')[-1]!r} ({exc}); set "
            "FAITHFLOW_DATABASE_URL to sqlite:///path, postgresql://user@host/db or "
            "postgres://user@host/db"
        ) from None


@dataclass
class Database:
    """The one place sessions come from."""

    engine: Engine

    @classmethod
    def from_url(
        cls, url: str, *, create: bool = True, timeouts: DbTimeouts | None = None
    ) -> Database:
        return cls(make_engine(url, create=create, timeouts=timeouts))

    def __post_init__(self) -> None:
        self._factory = sessionmaker(self.engine, expire_on_commit=False)
        self._read_factory = sessionmaker(
            self.engine.execution_options(sqlite_deferred=True), expire_on_commit=False
        )

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A write session: commits on success, rolls back on error."""
        with self._factory() as session, session.begin():
            yield session

    @contextmanager
    def read_session(self) -> Iterator[Session]:
        """A read-only session (deferred transaction on SQLite); never commits.

        Closing it ends the transaction without expiring what was loaded, so objects read here
        stay usable (detached) after the block.
        """
        with self._read_factory() as session:
            yield session

    def ping(self) -> None:
        with self.engine.connect() as conn:
            conn.execute(select(1))

    def dispose(self) -> None:
        self.engine.dispose()


def upsert_insert(dialect_name: str, table: Any) -> Any:
    """`INSERT` with `on_conflict_do_*` for the dialect in use (SQLite and Postgres only)."""
    if dialect_name == "postgresql":
        return postgresql.insert(table)
    if dialect_name == "sqlite":
        return sqlite.insert(table)
    raise ConfigError(f"database dialect {dialect_name!r} is not supported; use SQLite or Postgres")


def among(column: Any, values: Sequence[Any], dialect_name: str) -> ColumnElement[bool]:
    """`column IN (values)` for a batch of keys: on Postgres `column = ANY(:values)`, ONE array
    parameter whatever the count. An IN list of 500 ids is 500 parameters that psycopg splits
    out of the query text and binds and the server plans, every time: 2.5 ms of a 500-row
    claiming UPDATE (bench/bench_sla.py). Elsewhere a plain IN. The array of a string column
    is `text[]`, never `varchar(n)[]`: that cast would truncate a longer value into a match."""
    if dialect_name == "postgresql":
        item = Text() if isinstance(column.type, String) else column.type
        array = bindparam(None, list(values), type_=postgresql.ARRAY(item))
        return cast(ColumnElement[bool], column == any_(array))
    return cast(ColumnElement[bool], column.in_(values))


def json_member(document: dict[str, Any], key: Any, dialect_name: str) -> ColumnElement[Any]:
    """In a statement over many rows, the member `key` (a column, cast to text) of `document`
    — a JSON object sent as ONE parameter — as JSON, or `{}` when it has none: a per-row JSON
    value for an `INSERT … SELECT` without a row of parameters per row.

    The document is parsed once per statement: on Postgres the cast sits in an uncorrelated
    scalar subquery (an InitPlan), because under a cached generic plan a bare `CAST(:doc AS
    JSONB)` is evaluated, and the whole document parsed, for every row (measured: a 500-row
    INSERT went from 17 ms to 250–300 ms once psycopg had prepared it). Both dialects use the
    `->` operator (SQLite 3.38+), which returns any member as JSON (`null`, strings, numbers
    alike). Keys: ids, or text without a double quote (SQLite's path cannot escape one)."""
    doc = bindparam(None, json.dumps(document, separators=(",", ":")), type_=Text())
    name = cast_(key, Text())
    if dialect_name == "postgresql":
        parsed = select(cast_(doc, postgresql.JSONB())).scalar_subquery()
        found = parsed.op("->")(name)
        empty: ColumnElement[Any] = cast_(literal("{}"), postgresql.JSONB())
    else:
        # SQLite reads a bare label that looks like a number as no member: give it a path
        path = (literal('$."') + name + literal('"')).self_group()
        found, empty = doc.op("->")(path), literal("{}")
    return cast(ColumnElement[Any], func.coalesce(found, empty))


def outage(exc: BaseException) -> str | None:
    """`database unavailable: <the driver's first line>` when `exc` is the database failing
    (unreachable, connection dropped, timed out, locked), else None. A job run that meets one
    fails (exit 1), it is no usage error."""
    from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError

    if not isinstance(exc, DBAPIError):
        return None
    if not isinstance(exc, OperationalError | InterfaceError) and not exc.connection_invalidated:
        return None
    text = str(exc.orig if exc.orig is not None else exc).strip()
    return f"database unavailable: {text.splitlines()[0] if text else type(exc).__name__}"


def rowcount(result: Any) -> int:
    """Rows an UPDATE/DELETE/INSERT matched (`session.execute` is typed as a plain Result)."""
    return cast(CursorResult[Any], result).rowcount


def lock_holder_id() -> str:
    """Who holds a lock: host and pid, so an operator can find the process."""
    return f"{os.uname().nodename}:{os.getpid()}"
