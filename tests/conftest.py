"""Shared fixtures. Every database test runs on SQLite and on Postgres (DESIGN §7)."""

from __future__ import annotations

import logging
import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import hypothesis
import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from faithflow_ops.cli.common import reset_database_cache
from faithflow_ops.db import Database
from faithflow_ops.migrate import upgrade

# Property tests draw the same examples on every run (derandomize): a failure is reproducible
# and CI never goes red on a draw that the next run would not make.
hypothesis.settings.register_profile("faithflow", derandomize=True, print_blob=True)
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


def _fresh_postgres_url() -> Iterator[str]:
    """A new, empty database per test (dropped afterwards) so tests never see each other."""
    admin = create_engine(_pg_admin_url(), isolation_level="AUTOCOMMIT")
    name = f"ff_test_{uuid.uuid4().hex[:12]}"
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = make_url(_pg_admin_url()).set(database=name).render_as_string(hide_password=False)
    try:
        yield url
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture(params=["sqlite", "postgres"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """An empty database URL on each dialect (not migrated)."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'faithflow.db'}"
        return
    if not request.getfixturevalue("postgres_available"):
        pytest.skip("Postgres not configured: set FAITHFLOW_TEST_POSTGRES_URL")
    yield from _fresh_postgres_url()


@pytest.fixture
def db(db_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[Database]:
    """A migrated database on each dialect; the CLI in the same test sees the same one."""
    monkeypatch.setenv("FAITHFLOW_DATABASE_URL", db_url)
    database = Database.from_url(db_url)
    upgrade(database.engine)
    yield database
    database.dispose()
    reset_database_cache()


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


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
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
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
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
