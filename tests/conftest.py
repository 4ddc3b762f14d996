"""Shared fixtures. Every database test runs on SQLite and on Postgres (DESIGN §7)."""

from __future__ import annotations

import contextlib
import itertools
import logging
import os
import shutil
import sqlite3
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import hypothesis
import psycopg
import pytest
from sqlalchemy import create_engine, event, text
from sqlalchemy.engine import make_url

from faithflow_ops.cli.common import reset_database_cache
from faithflow_ops.db import Database
from faithflow_ops.migrate import upgrade

# Property tests draw the same examples on every run (derandomize): a failure is reproducible
# and CI never goes red on a draw that the next run would not make. Nor on the clock: no
# per-example deadline, no "input generation is slow" check (both are wall-clock limits, and a
# loaded 2-core machine once took 1.8 s over a draw the quiet one makes in milliseconds).
hypothesis.settings.register_profile(
    "faithflow",
    derandomize=True,
    print_blob=True,
    deadline=None,
    suppress_health_check=[hypothesis.HealthCheck.too_slow],
)
hypothesis.settings.load_profile("faithflow")

POSTGRES_URL = os.environ.get("FAITHFLOW_TEST_POSTGRES_URL")
REQUIRE_POSTGRES = os.environ.get("FAITHFLOW_REQUIRE_POSTGRES") == "1"


def _pg_admin_url() -> str:
    from faithflow_ops.config import normalize_database_url

    assert POSTGRES_URL
    return normalize_database_url(POSTGRES_URL)


@pytest.fixture(scope="session")
def postgres_available() -> bool:
    if not POSTGRES_URL:
        if REQUIRE_POSTGRES:
            pytest.fail("FAITHFLOW_REQUIRE_POSTGRES=1 but FAITHFLOW_TEST_POSTGRES_URL is not set")
        return False
    try:
        engine = create_engine(_pg_admin_url())
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        engine.dispose()
    except Exception as exc:
        if REQUIRE_POSTGRES:
            pytest.fail(f"Postgres at FAITHFLOW_TEST_POSTGRES_URL is unreachable: {exc}")
        return False
    return True


@pytest.fixture(params=["sqlite", "postgres"])
def db_url(request: pytest.FixtureRequest) -> Iterator[str]:
    """A database URL on each dialect: empty (not migrated), or — for a test that also asks
    for `db` — already a copy of the session's migrated template."""
    migrated = "db" in request.fixturenames
    if request.param == "sqlite":
        if not migrated:
            tmp_path: Path = request.getfixturevalue("tmp_path")
            yield f"sqlite:///{tmp_path / 'faithflow.db'}"
            return
        sqlite_templates: _Templates = request.getfixturevalue("_templates")
        path = sqlite_templates.take_sqlite()
        try:
            yield f"sqlite:///{path}"
        finally:
            sqlite_templates.give_back_sqlite(path)
        return
    if not request.getfixturevalue("postgres_available"):
        pytest.skip("Postgres not configured: set FAITHFLOW_TEST_POSTGRES_URL")
    templates: _Templates = request.getfixturevalue("_templates")
    name = templates.take_postgres() if migrated else templates.take_scratch()
    try:
        yield make_url(_pg_admin_url()).set(database=name).render_as_string(hide_password=False)
    finally:
        if migrated:
            templates.give_back_postgres(name)
        else:
            templates.give_back_scratch(name)


class _Templates:
    """One migrated database per dialect per test process, copied for each test instead of
    running every revision per test (SQLite: a file copy; Postgres: CREATE DATABASE …
    TEMPLATE). Built on first use, dropped at the end of the session."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.sqlite: Path | None = None
        self.postgres: str | None = None
        self.free: list[str] = []  # migrated Postgres databases, emptied, ready for a test
        self.scratch_free: list[str] = []  # Postgres databases with no schema, ready
        self.made: list[str] = []
        self.shape: str | None = None  # the template's tables, indexes, sequences, revision
        self.conns: dict[str, psycopg.Connection[Any]] = {}  # one kept open per database
        self.sqlite_free: list[Path] = []  # SQLite paths a test gave back
        self.sqlite_made = 0
        # backend pids of the idle connections kept for a database's next test (_Engines)
        self.spared: Callable[[str], list[int]] = lambda name: []

    def sqlite_copy(self, target: Path) -> None:
        if self.sqlite is None:
            path = self.folder / "template.db"
            database = Database.from_url(f"sqlite:///{path}")
            upgrade(database.engine)
            database.dispose()
            with contextlib.closing(sqlite3.connect(path)) as conn:  # all into the main file
                conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            self.sqlite = path
        shutil.copyfile(self.sqlite, target)

    # Migrated SQLite databases live at a few paths per process, reused like the Postgres
    # names, so that a URL comes back and its engine (see _Engines) with it. Each test gets a
    # new copy of the template: the old file is unlinked first, so a connection a test left
    # open can only ever see its own file.

    def take_sqlite(self) -> Path:
        if self.sqlite_free:
            path = self.sqlite_free.pop()
        else:
            self.sqlite_made += 1
            path = self.folder / f"sqlite-{self.sqlite_made}" / "faithflow.db"
            path.parent.mkdir()
        for stale in (path, *(path.with_name(path.name + s) for s in ("-wal", "-shm", "-journal"))):
            stale.unlink(missing_ok=True)
        self.sqlite_copy(path)
        return path

    def give_back_sqlite(self, path: Path) -> None:
        self.sqlite_free.append(path)

    def pooled(self, url: str) -> bool:
        """Whether `url` names one of the databases handed out again and again."""
        if url.startswith("sqlite:///"):
            return Path(url[len("sqlite:///") :]).parent.parent == self.folder
        return make_url(url).database in self.made

    def ready(self, url: str) -> bool:
        """Whether `url` names a pooled Postgres database waiting, emptied, for a test."""
        return not url.startswith("sqlite") and make_url(url).database in self.free

    def postgres_template(self) -> str:
        """The name of the migrated template database (made on first use)."""
        if self.postgres is None:
            name = f"ff_tpl_{uuid.uuid4().hex[:12]}"
            admin = create_engine(_pg_admin_url(), isolation_level="AUTOCOMMIT")
            with admin.connect() as conn:
                conn.execute(text(f'CREATE DATABASE "{name}"'))
            admin.dispose()
            template_url = make_url(_pg_admin_url()).set(database=name)
            engine = create_engine(template_url.render_as_string(hide_password=False))
            upgrade(engine)
            engine.dispose()  # CREATE DATABASE … TEMPLATE needs it unused
            self.postgres = name
        return self.postgres

    # A migrated Postgres database per test, reused: CREATE DATABASE … TEMPLATE and DROP cost
    # about a second each on this machine under load (DROP forces a checkpoint, so the few
    # databases a test leaves unusable are dropped together at the end, not one by one).
    # Emptying one is a single round trip on a connection kept open per database (a DO block:
    # 35 DELETEs one by one took five times as long, and connecting anew each time as long
    # again). A database whose schema a test changed (or that will not empty) is not reused.

    _RESET = """
        DO $$
        DECLARE r record;
        BEGIN
          PERFORM pg_terminate_backend(pid) FROM pg_stat_activity
            WHERE datname = current_database() AND pid <> pg_backend_pid()
              AND pid <> ALL('{SPARED}'::int[]);
          SET LOCAL session_replication_role = replica;
          FOR r IN SELECT quote_ident(tablename) AS t FROM pg_tables
                   WHERE schemaname = 'public' AND tablename <> 'alembic_version' LOOP
            EXECUTE 'DELETE FROM ' || r.t;
          END LOOP;
          PERFORM setval(c.oid, 1, false) FROM pg_class c
            JOIN pg_namespace n ON n.oid = c.relnamespace
            WHERE n.nspname = 'public' AND c.relkind = 'S';
        END $$;
        SELECT (SELECT string_agg(c.relname || ':' || c.relkind::text, ','
                                  ORDER BY c.relname, c.relkind)
                FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                WHERE n.nspname = 'public')
               || '@' || (SELECT string_agg(version_num, ',') FROM alembic_version)
    """

    # An empty Postgres database per test that migrates one itself, reused the same way: DROP
    # DATABASE forces a checkpoint (seconds once the run has dirtied many pages), dropping the
    # public schema does not.

    _EMPTY = """
        DO $$
        DECLARE r record;
        BEGIN
          PERFORM pg_terminate_backend(pid) FROM pg_stat_activity
            WHERE datname = current_database() AND pid <> pg_backend_pid();
          FOR r IN SELECT quote_ident(nspname) AS n FROM pg_namespace
                   WHERE nspname NOT LIKE 'pg\\_%' AND nspname <> 'information_schema' LOOP
            EXECUTE 'DROP SCHEMA ' || r.n || ' CASCADE';
          END LOOP;
          CREATE SCHEMA public;
        END $$;
        SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE n.nspname NOT LIKE 'pg\\_%' AND n.nspname <> 'information_schema'
    """

    def take_scratch(self) -> str:
        return self.scratch_free.pop() if self.scratch_free else self._create()

    def give_back_scratch(self, name: str) -> None:
        self._give_back(name, self.scratch_free, lambda: self._run(name, self._EMPTY) == "0")

    def take_postgres(self) -> str:
        if self.free:
            return self.free.pop()
        name = self._create(self.postgres_template())
        if self.shape is None:
            self.shape = self._reset(name)
        return name

    def give_back_postgres(self, name: str) -> None:
        self._give_back(name, self.free, lambda: self._reset(name) == self.shape)

    def _create(self, template: str | None = None) -> str:
        name = f"ff_test_{uuid.uuid4().hex[:12]}"
        copy = f' TEMPLATE "{template}"' if template else ""
        admin = create_engine(_pg_admin_url(), isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"{copy}'))
            # Tests need no durability: commits need not wait for the WAL flush.
            conn.execute(text(f'ALTER DATABASE "{name}" SET synchronous_commit = off'))
        admin.dispose()
        self.made.append(name)
        return name

    def _give_back(self, name: str, free: list[str], emptied: Callable[[], bool]) -> None:
        """Back into `free` when `emptied()` made it as good as new; else set aside (dropped
        with the others at the end)."""
        try:
            reusable = emptied()
        except Exception:
            reusable = False
        if reusable:
            free.append(name)
        else:
            self._close(name)

    def _reset(self, name: str) -> str | None:
        """Empty `name` — every row gone and every sequence back at 1, as in a fresh copy of
        the template (whose only rows are alembic_version's), sessions a test left behind
        ended, but for the idle connections pooled for the next test (`spared`) — and return
        its shape (tables, indexes, sequences, revision)."""
        spared = ",".join(str(int(pid)) for pid in self.spared(name))
        return self._run(name, self._RESET.replace("{SPARED}", "{" + spared + "}"))

    def _run(self, name: str, script: str) -> str | None:
        """Run a DO block and the query after it on the connection kept for `name`; the
        query's one value."""
        conn = self.conns.get(name)
        if conn is None or conn.closed:
            url = make_url(_pg_admin_url()).set(database=name)
            conn = psycopg.connect(
                url.set(drivername="postgresql").render_as_string(hide_password=False),
                autocommit=True,
            )
            self.conns[name] = conn
        try:
            with conn.transaction():
                cursor = conn.execute(script)
                cursor.nextset()  # past the DO block's result to the SELECT's
                row = cursor.fetchone()
        except psycopg.Error:
            self._close(name)
            raise
        return None if row is None else str(row[0])

    def _close(self, name: str) -> None:
        conn = self.conns.pop(name, None)
        if conn is not None:
            conn.close()

    def _drop(self, name: str) -> None:
        admin = create_engine(_pg_admin_url(), isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()

    def drop(self) -> None:
        for name in list(self.conns):
            self._close(name)
        for name in self.made:
            self._drop(name)
        if self.postgres is not None:
            self._drop(self.postgres)


@pytest.fixture(scope="session")
def _templates(tmp_path_factory: pytest.TempPathFactory) -> Iterator[_Templates]:
    templates = _Templates(tmp_path_factory.mktemp("templates"))
    yield templates
    templates.drop()


@pytest.fixture
def db(db_url: str, monkeypatch: pytest.MonkeyPatch, _templates: _Templates) -> Iterator[Database]:
    """A migrated database on each dialect (`db_url` made it a copy of the session's migrated
    template); the CLI in the same test sees the same one."""
    monkeypatch.setenv("FAITHFLOW_DATABASE_URL", db_url)
    database = Database.from_url(db_url)
    yield database
    database.dispose()
    reset_database_cache()


@pytest.fixture
def sqlite_db(_templates: _Templates) -> Iterator[Database]:
    """A migrated SQLite database (a copy of the session's template) for a test whose subject
    is not the dialect — one database, not one per dialect like `db`."""
    path = _templates.take_sqlite()
    database = Database.from_url(f"sqlite:///{path}")
    yield database
    database.dispose()
    _templates.give_back_sqlite(path)


@pytest.fixture(scope="session", autouse=True)
def _one_default_tls_context() -> Iterator[None]:
    """httpx builds a new default TLS context for every client — loading certifi's CA bundle,
    about 0.09 s — and each top-level `httpx.get`/`httpx.post` is a new client: thousands of
    them in a run, nearly all to plain-http loopback servers. Build the default one once per
    process (per CA setting); a test that passes its own `verify=` context is untouched."""
    import httpx._transports.default as transport

    build = transport.create_ssl_context
    made: dict[tuple[str | None, str | None], Any] = {}

    def shared(verify: Any = True, cert: Any = None, trust_env: bool = True) -> Any:
        if verify is not True or cert is not None or not trust_env:
            return build(verify=verify, cert=cert, trust_env=trust_env)
        key = (os.environ.get("SSL_CERT_FILE"), os.environ.get("SSL_CERT_DIR"))
        if key not in made:
            made[key] = build(verify=verify, cert=cert, trust_env=trust_env)
        return made[key]

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(transport, "create_ssl_context", shared)
        yield


class _Engines:
    """One SQLAlchemy engine per database URL (and timeouts) per test process, handed to each
    `Database` made for that URL. SQLAlchemy caches compiled SQL per engine: with a new engine
    per test, two statements in three that tests/webhooks, support and comms executed were
    compiled anew (31 s of a 282 s profile), and each new Postgres engine queried the server
    on its first connection (7 ms). The tests' databases come back under the same URLs (the
    pooled Postgres names and SQLite paths of _Templates), always as a fresh copy of the
    template, and an engine holds connections, not data. When a test ends, SQLite engines are
    disposed (the next test's copy is a new file); a Postgres engine keeps its idle
    connections for the database's next test, which the reset between tests spares (they hold
    no transaction, hence no lock or snapshot; anything else connected is ended). One a test
    added event listeners to is not reused; nor is one for any other URL."""

    def __init__(self, make: Callable[..., Any], pooled: Callable[[str], bool]) -> None:
        self.make = make
        self.pooled = pooled
        self.engines: dict[tuple[str, Any], Any] = {}
        self.listeners: dict[tuple[str, Any], tuple[int, ...]] = {}
        self.idle: dict[tuple[str, Any], set[int]] = {}  # per Postgres engine (_track_idle)

    @staticmethod
    def _listeners(engine: Any) -> tuple[int, ...]:
        events = engine.dispatch
        return tuple(len(getattr(events, name)) for name in dir(events) if name[0] != "_")

    def engine(self, url: Any, *, create: bool = True, timeouts: Any = None, **kwargs: Any) -> Any:
        from faithflow_ops.db import job_timeouts

        if kwargs or not isinstance(url, str):
            return self.make(url, create=create, timeouts=timeouts, **kwargs)
        if url.startswith("sqlite"):
            path = url.split(":///", 1)[1] if ":///" in url else ""
            if not path or path.startswith("file:") or not Path(path).exists():
                # a new file, or a refusal to make one: as without the cache
                return self.make(url, create=create, timeouts=timeouts)
            key: tuple[str, Any] = (url, None)
        else:
            key = (url, timeouts or job_timeouts())
        if key not in self.engines:
            engine = self.engines[key] = self.make(url, create=create, timeouts=timeouts)
            if not url.startswith("sqlite") and self.pooled(url):
                # Its connections outlive the test (see close): the code under test disposing
                # of its Database must not close them.
                engine.dispose = lambda close=True: None
                self.idle[key] = self._track_idle(engine)
            self.listeners[key] = self._listeners(engine)
        return self.engines[key]

    @staticmethod
    def _track_idle(engine: Any) -> set[int]:
        """The backend pids of `engine`'s connections that are checked in, kept up to date by
        its pool's events."""
        idle: set[int] = set()

        def connected(dbapi_connection: Any, record: Any) -> None:
            record.info["backend_pid"] = dbapi_connection.info.backend_pid

        def checked_in(dbapi_connection: Any, record: Any) -> None:
            if dbapi_connection is not None and "backend_pid" in record.info:
                idle.add(record.info["backend_pid"])

        def gone(dbapi_connection: Any, record: Any, *args: Any) -> None:
            idle.discard(record.info.get("backend_pid", 0))

        event.listen(engine, "connect", connected)
        event.listen(engine, "checkin", checked_in)
        for name in ("checkout", "close", "invalidate", "detach"):
            event.listen(engine, name, gone)
        return idle

    @staticmethod
    def _dispose(engine: Any) -> None:
        type(engine).dispose(engine)

    def idle_pids(self, database: str) -> list[int]:
        """Backend pids of the connections idle in the pools of `database`'s engines."""
        return [
            pid
            for key, pids in self.idle.items()
            if make_url(key[0]).database == database
            for pid in pids
        ]

    def close(self, keep: Callable[[str], bool], ready: Callable[[str], bool]) -> None:
        """Close every engine's connections, but for those of the Postgres databases `ready`
        for their next test: a new connection is a new server process that must load the
        catalog again (about 8 ms of CPU per test between the two). Engines whose URL `keep`
        accepts and whose listeners are as they were made stay for the next test."""
        for key, engine in list(self.engines.items()):
            same = self._listeners(engine) == self.listeners[key]
            if same and ready(key[0]):
                continue
            self._dispose(engine)
            if not same or not keep(key[0]):
                del self.engines[key], self.listeners[key]
                self.idle.pop(key, None)


@pytest.fixture(scope="session")
def _engines(_templates: _Templates) -> Iterator[_Engines]:
    import faithflow_ops.db

    engines = _Engines(faithflow_ops.db.make_engine, _templates.pooled)
    _templates.spared = engines.idle_pids
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(faithflow_ops.db, "make_engine", engines.engine)
        yield engines
    engines.close(lambda url: False, lambda url: False)


@pytest.fixture(autouse=True)
def _engines_closed(_engines: _Engines, _templates: _Templates) -> Iterator[None]:
    """After each test (and after its databases went back to the pools): no connection left
    open but the idle ones of the Postgres databases ready for their next test; engines of
    the pooled databases kept."""
    yield
    _engines.close(_templates.pooled, _templates.ready)


@pytest.fixture(scope="session", autouse=True)
def _one_root_command() -> Iterator[None]:
    """Typer's test runner converts the app to a click command at every invoke (every
    signature read, every annotation evaluated: about 2 ms, paid at each of the suite's
    thousands of in-process `faithflow` calls). `faithflow` itself converts once per process;
    so do the tests, for the real app (an app a test builds itself is converted as before)."""
    import typer.main
    import typer.testing

    from faithflow_ops.cli import app

    convert = typer.main.get_command  # what typer.testing calls as `_get_command`
    root = convert(app)

    def converted(typer_app: Any) -> Any:
        return root if typer_app is app else convert(typer_app)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(typer.testing, "_get_command", converted)
        yield


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    """Every CLI invocation configures logging onto its own (then closed) stderr: put the root
    handlers back after each test, so a later test's server thread never logs into a closed
    stream ("--- Logging error --- I/O operation on closed file")."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


@pytest.fixture(scope="session")
def _data_homes(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A new XDG_DATA_HOME path for each test, made only if the test writes there: a
    `tmp_path` for every test (5,000 folders, each numbered by listing its parent) cost more
    than many a test itself."""
    base = tmp_path_factory.mktemp("xdg")
    return (base / str(n) for n in itertools.count(1))


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch, _data_homes: Iterator[Path]) -> None:
    """No test reads the developer's own configuration or database."""
    for name in list(os.environ):
        if name.startswith(
            ("FAITHFLOW_", "CRON_", "STRIPE_", "PAYSTACK_", "TWILIO_")
        ) and name not in (
            "FAITHFLOW_TEST_POSTGRES_URL",
            "FAITHFLOW_REQUIRE_POSTGRES",
        ):
            monkeypatch.delenv(name, raising=False)
    for name in ("DATABASE_URL", "INTEGRATION_API_KEY", "ENABLE_INTERNAL_SCHEDULER", "SMTP_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("XDG_DATA_HOME", str(next(_data_homes)))
    monkeypatch.setenv("FAITHFLOW_LOG_FORMAT", "json")


@pytest.fixture
def cli():
    """Invoke `faithflow` in-process; returns (exit_code, stdout, stderr)."""
    from typer.testing import CliRunner

    from faithflow_ops.cli import app

    runner = CliRunner()

    def invoke(*args: str, input: str | None = None):
        result = runner.invoke(app, list(args), input=input, catch_exceptions=False)
        return result

    return invoke
