"""`faithflow release check`: the pre-flight exits 1 when a release should not proceed."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator

import pytest
from slo_world import message, run

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
