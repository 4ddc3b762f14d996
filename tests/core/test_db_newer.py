"""A database newer than this faithflow (issue 16): it is named as such — by `db current`,
`db info`, `db upgrade` and any command that trips over the schema — never "run db upgrade",
which cannot help."""

from __future__ import annotations

import json

from helpers import said
from sqlalchemy import text

from faithflow_ops.db import Database
from faithflow_ops.migrate import head_revision

FUTURE = "0099_from_a_newer_faithflow"


def _from_the_future(db: Database) -> None:
    with db.session() as s:
        s.execute(text("UPDATE alembic_version SET version_num = :v"), {"v": FUTURE})


def test_db_current_and_info_name_a_newer_database(cli, db: Database) -> None:
    _from_the_future(db)
    current = cli("db", "current")
    assert current.exit_code == 0, current.stderr
    assert current.stdout.strip() == f"{FUTURE} (head is {head_revision()})"
    message = f"the database is at revision {FUTURE}, newer than this faithflow"
    assert message in said(current)
    assert "run `faithflow db upgrade`" not in said(current)
    doc = json.loads(cli("db", "info", "--json").stdout)
    assert (doc["is_head"], doc["newer_than_code"]) == (False, True)
    assert message in said(cli("db", "info"))


def test_db_upgrade_refuses_a_newer_database_and_changes_nothing(cli, db: Database) -> None:
    _from_the_future(db)
    result = cli("db", "upgrade")
    assert result.exit_code == 2
    assert f"revision {FUTURE}, newer than this faithflow (head {head_revision()})" in said(
        result
    )
    assert "upgrade faithflow" in said(result)
    with db.read_session() as s:
        assert s.scalar(text("SELECT version_num FROM alembic_version")) == FUTURE


def test_a_command_that_trips_over_a_newer_schema_says_so(cli, db: Database) -> None:
    _from_the_future(db)
    with db.session() as s:  # what a newer faithflow might do: a table renamed away
        s.execute(text("ALTER TABLE tenants RENAME TO church_tenants"))
    result = cli("tenants", "list")
    assert result.exit_code == 2
    assert f"the database is at revision {FUTURE}, newer than this faithflow" in said(result)
    assert "run `faithflow db upgrade`" not in said(result)
