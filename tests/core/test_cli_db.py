"""`faithflow db upgrade|current|info` through the CLI, on SQLite and Postgres."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import said
from sqlalchemy.engine import make_url

from faithflow_ops.cli.common import reset_database_cache
from faithflow_ops.cli.db import database_info
from faithflow_ops.config import Settings
from faithflow_ops.db import Database
from faithflow_ops.migrate import head_revision

HEAD = head_revision()
UNREACHABLE = "postgresql://root@127.0.0.1:1/test"



@pytest.fixture
def empty_db(db_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """An empty (never migrated) database that the CLI is configured to use. For SQLite an
    empty file: a missing file is no database at all (see the next test)."""
    if db_url.startswith("sqlite:///"):
        Path(db_url.removeprefix("sqlite:///")).touch()
    monkeypatch.setenv("FAITHFLOW_DATABASE_URL", db_url)
    yield db_url
    reset_database_cache()


def test_current_on_a_missing_sqlite_file_says_there_is_none_and_creates_nothing(
    cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    missing = tmp_path / "nowhere" / "faithflow.db"
    monkeypatch.setenv("FAITHFLOW_DATABASE_URL", f"sqlite:///{missing}")
    result = cli("db", "current")
    assert result.exit_code == 2
    assert f"no database at {missing}; run `faithflow db upgrade`" in said(result)
    assert not missing.parent.exists()
    reset_database_cache()


def test_upgrade_migrates_an_empty_database_then_is_a_no_op(cli, empty_db: str) -> None:
    first = cli("db", "upgrade")
    assert first.exit_code == 0, first.stderr
    assert f"upgraded (empty) → {HEAD}" in said(first)
    second = cli("db", "upgrade")
    assert second.exit_code == 0, second.stderr
    assert f"already at {HEAD}; nothing to do" in said(second)
    assert "upgraded" not in said(second)


def test_upgrade_to_an_unknown_revision_exits_2(cli, empty_db: str) -> None:
    result = cli("db", "upgrade", "--revision", "9999")
    assert result.exit_code == 2
    assert "cannot upgrade to revision '9999'" in said(result)


def test_current_says_whether_the_database_is_at_head(cli, empty_db: str) -> None:
    before = cli("db", "current")
    assert before.exit_code == 0, before.stderr
    assert before.stdout.strip() == f"(empty) (head is {HEAD})"
    assert "run `faithflow db upgrade`" in said(before)
    assert json.loads(cli("db", "current", "--json").stdout) == {
        "current": None, "head": HEAD, "is_head": False,
    }  # fmt: skip
    assert cli("db", "upgrade").exit_code == 0
    after = cli("db", "current")
    assert after.stdout.strip() == f"{HEAD} (head)"
    assert json.loads(cli("db", "current", "--json").stdout)["is_head"] is True


def test_info_json_has_url_dialect_and_revisions(cli, db: Database, db_url: str) -> None:
    result = cli("db", "info", "--json")
    assert result.exit_code == 0, result.stderr
    doc = json.loads(result.stdout)
    assert doc["dialect"] == db.dialect
    assert doc["current_revision"] == HEAD and doc["head_revision"] == HEAD
    assert doc["is_head"] is True and doc["default"] is False
    if db.dialect == "sqlite":
        assert doc["path"] == str(Path(make_url(db_url).database or "").resolve())
        assert doc["url"] == db_url
    else:
        assert doc["server_version"] and doc["database"] == make_url(db_url).database
    table = cli("db", "info")
    assert table.exit_code == 0 and "current_revision" in table.stdout


def test_info_masks_the_password(db: Database) -> None:
    cfg = Settings(database_url="postgresql+psycopg://ops:s3cret-pw@db.internal:5432/faithflow")
    doc = database_info(cfg, db)
    assert doc["url"] == "postgresql+psycopg://ops:***@db.internal:5432/faithflow"
    assert "s3cret-pw" not in json.dumps(doc, default=str)


def test_info_never_prints_the_password_of_the_configured_url(
    cli, db: Database, db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    if db.dialect != "postgresql":
        pytest.skip("SQLite URLs carry no password")
    # The test server trusts local connections, so any password connects.
    with_password = make_url(db_url).set(password="fake-pass-123")
    monkeypatch.setenv(
        "FAITHFLOW_DATABASE_URL", with_password.render_as_string(hide_password=False)
    )
    result = cli("db", "info", "--json")
    assert result.exit_code == 0, result.stderr
    assert "fake-pass-123" not in result.stdout + result.stderr
    assert ":***@" in json.loads(result.stdout)["url"]
    reset_database_cache()


@pytest.mark.parametrize("verb", ["info", "current", "upgrade"])
def test_an_unreachable_database_exits_2_with_a_message(
    cli, monkeypatch: pytest.MonkeyPatch, verb: str
) -> None:
    monkeypatch.setenv("FAITHFLOW_DATABASE_URL", UNREACHABLE)
    try:
        result = cli("db", verb)
    finally:
        reset_database_cache()
    assert result.exit_code == 2
    assert "cannot reach the database" in said(result)
    assert "FAITHFLOW_DATABASE_URL" in said(result)
    assert "Traceback" not in result.stderr


def test_a_database_behind_the_code_says_to_upgrade(cli, empty_db: str) -> None:
    """After installing a newer faithflow on an older database: not "cannot reach"."""
    assert cli("db", "upgrade", "--revision", "0002").exit_code == 0
    result = cli("tenants", "list")
    assert result.exit_code == 2
    assert "the database is behind this version of faithflow" in said(result)
    assert "run `faithflow db upgrade`" in said(result)
    assert "cannot reach" not in said(result)
