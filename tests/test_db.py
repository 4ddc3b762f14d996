from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import select, text, update

from faithflow_ops.db import Database
from faithflow_ops.migrate import current_revision, head_revision, schema_diff, upgrade
from faithflow_ops.models import Tenant


def test_models_and_migrations_agree(db: Database) -> None:
    assert schema_diff(db.engine) == []


def test_upgrade_on_an_up_to_date_database_is_a_no_op(db: Database) -> None:
    head = head_revision()
    assert current_revision(db.engine) == head
    assert upgrade(db.engine) == (head, head)


def test_datetimes_come_back_timezone_aware_utc(db: Database) -> None:
    lagos = dt.timezone(dt.timedelta(hours=1))
    when = dt.datetime(2026, 3, 1, 10, 0, tzinfo=lagos)
    with db.session() as s:
        s.add(Tenant(slug="grace", name="Grace", suspended_at=when))
    with db.read_session() as s:
        got = s.scalars(select(Tenant.suspended_at)).one()
    assert got == when
    assert got is not None and got.utcoffset() == dt.timedelta(0)


def test_naive_datetimes_are_refused(db: Database) -> None:
    with pytest.raises(Exception, match="naive datetime"), db.session() as s:
        s.add(Tenant(slug="grace", name="Grace", suspended_at=dt.datetime(2026, 3, 1)))
        s.flush()


def test_sqlite_runs_in_wal_mode_with_a_busy_timeout(tmp_path) -> None:
    db = Database.from_url(f"sqlite:///{tmp_path / 'x.db'}")
    with db.engine.connect() as conn:
        assert conn.execute(text("PRAGMA journal_mode")).scalar() == "wal"
        assert conn.execute(text("PRAGMA busy_timeout")).scalar() == 30000
    db.dispose()


def test_sqlite_folder_is_created(tmp_path) -> None:
    path = tmp_path / "deep" / "er" / "faithflow.db"
    db = Database.from_url(f"sqlite:///{path}")
    db.ping()
    assert path.exists()
    db.dispose()


def test_a_write_session_rolls_back_on_error(db: Database) -> None:
    with pytest.raises(RuntimeError), db.session() as s:
        s.add(Tenant(slug="gone", name="Gone"))
        s.flush()
        raise RuntimeError("boom")
    with db.read_session() as s:
        assert s.scalars(select(Tenant)).all() == []


def test_an_uncreatable_sqlite_folder_exits_2_naming_the_fix(cli, monkeypatch) -> None:
    monkeypatch.setenv("FAITHFLOW_DATABASE_URL", "sqlite:////proc/nope/x.db")
    result = cli("db", "info")
    assert result.exit_code == 2
    assert "cannot create the SQLite folder /proc/nope" in result.stderr
    assert "FAITHFLOW_DATABASE_URL" in result.stderr


def test_rows_inserted_by_raw_sql_store_timestamps_like_the_orm(db: Database) -> None:
    """The server default keeps microseconds on SQLite, so `updated_at = :seen` claims match."""
    with db.session() as s:
        s.execute(text("INSERT INTO tenants (slug, name) VALUES ('raw', 'Raw SQL')"))
    with db.read_session() as s:
        seen = s.scalars(select(Tenant.updated_at).where(Tenant.slug == "raw")).one()
    assert seen.tzinfo is not None
    with db.session() as s:
        claimed = s.execute(
            update(Tenant)
            .where(Tenant.slug == "raw", Tenant.updated_at == seen)
            .values(name="claimed")
        )
        assert claimed.rowcount == 1
