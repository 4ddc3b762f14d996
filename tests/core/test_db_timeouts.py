"""Statement and lock timeouts (issue 16): set per use through the connection's options on
Postgres — the receiver short (5 s / 2 s), jobs and the CLI long (FAITHFLOW_DB_STATEMENT_TIMEOUT,
default 300 s). A runaway query or a held lock fails instead of hanging."""

from __future__ import annotations

import pytest
from sqlalchemy import text

from faithflow_ops.config import Settings
from faithflow_ops.db import RECEIVER_TIMEOUTS, Database, job_timeouts
from faithflow_ops.errors import ConfigError


def shown(db: Database) -> tuple[str, str]:
    with db.engine.connect() as conn:
        statement = conn.execute(text("SHOW statement_timeout")).scalar_one()
        lock = conn.execute(text("SHOW lock_timeout")).scalar_one()
    return statement, lock


def test_the_receiver_and_the_jobs_get_their_own_timeouts(db_url: str) -> None:
    if not db_url.startswith("postgresql"):
        pytest.skip("timeouts are Postgres settings; SQLite has only its busy timeout")
    receiver = Database.from_url(db_url, timeouts=RECEIVER_TIMEOUTS)
    jobs = Database.from_url(db_url, timeouts=job_timeouts(90.0))
    default = Database.from_url(db_url)  # the CLI's: the jobs' defaults
    try:
        assert shown(receiver) == ("5s", "2s")
        assert shown(jobs) == ("90s", "30s")
        assert shown(default) == ("5min", "30s")
    finally:
        for database in (receiver, jobs, default):
            database.dispose()


def test_the_statement_timeout_setting() -> None:
    assert Settings.from_env({}).db_statement_timeout == 300.0
    assert Settings.from_env({"FAITHFLOW_DB_STATEMENT_TIMEOUT": "90"}).db_statement_timeout == 90
    for bad in ("0", "-1", "soon"):
        with pytest.raises(ConfigError, match="FAITHFLOW_DB_STATEMENT_TIMEOUT"):
            Settings.from_env({"FAITHFLOW_DB_STATEMENT_TIMEOUT": bad})


def test_the_ingest_timeout_settings() -> None:
    """The webhook group-commit writer's own connection (webhooks.ingest.GroupWriter)."""
    default = Settings.from_env({})
    assert (default.ingest_statement_timeout, default.ingest_lock_timeout) == (5.0, 2.0)
    set_ = Settings.from_env(
        {"FAITHFLOW_INGEST_STATEMENT_TIMEOUT": "8", "FAITHFLOW_INGEST_LOCK_TIMEOUT": "0.5"}
    )
    assert (set_.ingest_statement_timeout, set_.ingest_lock_timeout) == (8.0, 0.5)
    for name in ("FAITHFLOW_INGEST_STATEMENT_TIMEOUT", "FAITHFLOW_INGEST_LOCK_TIMEOUT"):
        for bad in ("0", "-1", "soon"):
            with pytest.raises(ConfigError, match=name):
                Settings.from_env({name: bad})


def test_the_cli_takes_its_statement_timeout_from_the_setting(
    db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from faithflow_ops.cli.common import database, reset_database_cache

    if not db_url.startswith("postgresql"):
        pytest.skip("timeouts are Postgres settings; SQLite has only its busy timeout")
    monkeypatch.setenv("FAITHFLOW_DATABASE_URL", db_url)
    monkeypatch.setenv("FAITHFLOW_DB_STATEMENT_TIMEOUT", "45")
    try:
        assert shown(database()) == ("45s", "30s")
    finally:
        reset_database_cache()
