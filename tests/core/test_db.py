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
        s.add(Tenant(slug="grace", name="Grace", suspended_at=dt.datetime(2026, 3, 1)))  # noqa: DTZ001 — the point
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
    result = cli("db", "upgrade")  # the command that creates a missing database
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


def test_among_matches_a_batch_of_keys_with_one_parameter_on_postgres(db: Database) -> None:
    from faithflow_ops.db import among

    with db.session() as s:
        for n in range(5):
            s.add(Tenant(slug=f"church-{n}", name=f"Church {n}"))
    with db.read_session() as s:
        ids = sorted(s.scalars(select(Tenant.id)).all())
        where = among(Tenant.id, ids[1:4], db.dialect)
        assert sorted(s.scalars(select(Tenant.id).where(where)).all()) == ids[1:4]
        assert s.scalars(select(Tenant.id).where(among(Tenant.id, [], db.dialect))).all() == []
        compiled = select(Tenant.id).where(where).compile(dialect=s.get_bind().dialect)
    assert ("= ANY (" in str(compiled)) == (db.dialect == "postgresql")  # one array parameter


def test_among_on_a_string_column_never_truncates_into_a_match(db: Database) -> None:
    from sqlalchemy import Column, MetaData, String, Table

    from faithflow_ops.db import among

    codes = Table("among_codes", MetaData(), Column("code", String(8), primary_key=True))
    with db.session() as s:
        codes.create(s.connection())
        s.execute(codes.insert(), [{"code": "grace-ch"}, {"code": "hope"}])
        where = among(codes.c.code, ["grace-church", "hope"], db.dialect)
        # a varchar(8)[] cast of the values would have matched grace-ch
        assert s.scalars(select(codes.c.code).where(where)).all() == ["hope"]


def test_json_member_gives_each_row_its_own_value_or_an_empty_object(db: Database) -> None:
    import json

    from sqlalchemy import cast
    from sqlalchemy.types import Text

    from faithflow_ops.db import json_member

    with db.session() as s:
        for n in range(6):
            s.add(Tenant(slug=f"church-{n}", name=f"Church {n}"))
    with db.read_session() as s:
        ids = sorted(s.scalars(select(Tenant.id)).all())
        values = [{"a": [1, "x"]}, {"quote": 'say "hi"'}, "text", None, True]
        document: dict[str, object] = {str(i): v for i, v in zip(ids, values, strict=False)}
        member = cast(json_member(document, Tenant.id, db.dialect), Text)
        found = dict(s.execute(select(Tenant.id, member).order_by(Tenant.id)).tuples().all())
    # every member comes back as JSON, the same on both dialects; a missing one as {}
    assert [json.loads(found[i]) for i in ids] == [*values, {}]


def test_json_member_parses_its_document_once_even_under_a_generic_plan(db: Database) -> None:
    if db.dialect != "postgresql":
        pytest.skip("plan caching is a Postgres matter")
    from faithflow_ops.db import json_member

    stmt = select(Tenant.id, json_member({"1": {}}, Tenant.id, db.dialect))
    compiled = stmt.compile(dialect=db.engine.dialect, compile_kwargs={"literal_binds": True})
    sql = str(compiled).replace("""'{"1":{}}'""", "$1")
    assert "$1" in sql
    with db.session() as s:
        s.execute(text("SET LOCAL plan_cache_mode = force_generic_plan"))
        s.execute(text(f"PREPARE member_once(text) AS {sql}"))
        plan = "\n".join(r[0] for r in s.execute(text("EXPLAIN EXECUTE member_once('{}')")))
        s.execute(text("DEALLOCATE member_once"))
    # an InitPlan runs once per statement; a bare CAST($1 AS JSONB) in the target list parses
    # the whole document again for every row once the plan is generic
    assert "InitPlan" in plan, plan
