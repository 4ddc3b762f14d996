"""`faithflow release check`: the pre-flight exits 1 when a release should not proceed."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from slo_world import delivery, message, run
from sqlalchemy import text

from faithflow_ops.db import Database, utcnow
from faithflow_ops.models import JobLock
from faithflow_ops.slo.release import FAIL, OK, WARN, check_schema, pending_revisions


def _check(cli, *args: str) -> tuple[int, dict[str, dict[str, object]]]:  # type: ignore[no-untyped-def]
    result = cli("release", "check", "--json", *args)
    assert result.exit_code in (0, 1), result.output
    doc = json.loads(result.stdout)
    assert doc["proceed"] is (result.exit_code == 0)
    return result.exit_code, {c["name"]: c for c in doc["checks"]}


def test_a_quiet_database_at_head_may_proceed(db: Database, cli) -> None:  # type: ignore[no-untyped-def]
    code, checks = _check(cli)
    assert code == 0
    assert checks["schema"]["status"] == OK and checks["schema"]["pending"] == []
    assert checks["job_locks"]["status"] == OK
    assert checks["webhook_backlog"]["status"] == OK
    assert checks["outbox_backlog"]["status"] == OK


def test_a_running_job_or_an_old_backlog_stops_the_release(db: Database, cli) -> None:  # type: ignore[no-untyped-def]
    now = utcnow()
    with db.session() as session:
        session.add(
            JobLock(
                job="dunning",
                holder="cron@host:123",
                acquired_at=now - dt.timedelta(minutes=1),
                expires_at=now + dt.timedelta(minutes=9),
            )
        )
        session.add(  # an expired lease is a dead run: it does not block
            JobLock(
                job="health_sweep",
                holder="cron@host:9",
                acquired_at=now - dt.timedelta(hours=2),
                expires_at=now - dt.timedelta(hours=1),
            )
        )
        message(session, "queued", now - dt.timedelta(minutes=30))
    code, checks = _check(cli)
    assert code == 1
    assert checks["job_locks"]["status"] == FAIL
    assert [h["job"] for h in checks["job_locks"]["held"]] == ["dunning"]
    assert checks["outbox_backlog"]["status"] == FAIL
    table = cli("release", "check")
    assert table.exit_code == 1
    assert "should not proceed" in table.stderr


def test_a_spent_error_budget_stops_all_but_a_fix_release(db: Database, cli) -> None:  # type: ignore[no-untyped-def]
    now = utcnow()
    with db.session() as session:
        for i in range(10):  # 3 failures in 10: 30 % against a 1 % budget
            status = "failed" if i < 3 else "succeeded"
            run(session, "dunning", status, now - dt.timedelta(hours=i + 1))
    code, checks = _check(cli)
    assert code == 1
    assert checks["budget:job_success"]["status"] == FAIL
    assert checks["budget:job_success"]["budget_left"] == pytest.approx(-29.0)
    code, checks = _check(cli, "--allow-spent-budget")
    assert code == 0
    assert checks["budget:job_success"]["status"] == WARN


@pytest.fixture
def empty_db(db_url: str) -> Iterator[Database]:
    database = Database.from_url(db_url)
    yield database
    database.dispose()


def test_pending_migrations_warn_before_migrating_and_fail_after(empty_db: Database) -> None:
    every = pending_revisions(None)
    assert len(every) > 10 and every == sorted(every)  # oldest first (names carry dates)
    before = check_schema(empty_db, migrated=False)
    assert before.status == WARN and before.data["pending"] == every
    after = check_schema(empty_db, migrated=True)
    assert after.status == FAIL


def test_a_database_newer_than_this_code_stops_the_release(db: Database, cli) -> None:  # type: ignore[no-untyped-def]
    with db.session() as session:
        session.execute(text("UPDATE alembic_version SET version_num = '0099_from_the_future'"))
    code, checks = _check(cli)
    assert code == 1
    assert checks["schema"]["status"] == FAIL
    assert "newer than this release" in checks["schema"]["detail"]
    assert list(checks) == ["schema"]  # its tables may not be this code's: nothing else read


def test_an_old_webhook_backlog_alone_stops_the_release(db: Database, cli) -> None:  # type: ignore[no-untyped-def]
    now = utcnow()
    with db.session() as session:
        delivery(session, "received", now - dt.timedelta(minutes=6))  # limit: 5 minutes
    code, checks = _check(cli)
    assert code == 1
    assert checks["webhook_backlog"]["status"] == FAIL
    assert checks["webhook_backlog"]["waiting"] == 1
    # and that one delivery, late, is the whole apply-latency SLI so far: its budget is spent
    failed = {c for c, v in checks.items() if v["status"] == FAIL}
    assert failed == {"webhook_backlog", "budget:webhook_apply_latency"}


def test_an_empty_database_may_be_migrated_but_not_left_pending(
    empty_db: Database,
    db_url: str,
    cli,
    monkeypatch: pytest.MonkeyPatch,  # type: ignore[no-untyped-def]
) -> None:
    """A new deployment: before migrating nothing can be read, which warns; after the
    migrate step, revisions still pending stop the release (exit 1)."""
    monkeypatch.setenv("FAITHFLOW_DATABASE_URL", db_url)
    empty_db.ping()  # an SQLite file exists once connected to
    code, checks = _check(cli)
    assert code == 0
    assert checks["schema"]["status"] == WARN
    assert {checks[name]["status"] for name in ("job_locks", "backlogs", "budgets")} == {WARN}
    assert "not checked before migrating" in checks["budgets"]["detail"]
    code, checks = _check(cli, "--migrated")
    assert code == 1
    assert checks["schema"]["status"] == FAIL


def test_before_migrating_a_table_the_release_adds_is_not_read(db: Database, cli) -> None:  # type: ignore[no-untyped-def]
    """Production one release behind: request_tallies (read by the budgets) does not exist
    yet. The pre-flight warns instead of failing; after migrating it reads everything."""
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    from faithflow_ops.migrate import MIGRATIONS_DIR

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    script = ScriptDirectory.from_config(cfg)
    adds = next(
        r
        for r in script.walk_revisions()
        if r.path and 'create_table(\n        "request_tallies"' in Path(r.path).read_text()
    )
    with db.session() as session:
        session.execute(text("DROP TABLE request_tallies"))
        session.execute(
            text("UPDATE alembic_version SET version_num = :v"), {"v": adds.down_revision}
        )
    code, checks = _check(cli)
    assert code == 0
    assert checks["schema"]["status"] == WARN and adds.revision in checks["schema"]["pending"]
    assert checks["budgets"]["status"] == WARN
    assert checks["job_locks"]["status"] == OK
    code, checks = _check(cli, "--migrated")
    assert code == 1 and checks["schema"]["status"] == FAIL
