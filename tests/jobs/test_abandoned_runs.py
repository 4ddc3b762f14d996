"""A run whose process died (SIGKILL, a lost machine) stays `running` only until the next run
takes the expired lease: taking it closes the dead holder's run as `abandoned`."""

from __future__ import annotations

import datetime as dt
import json

from sqlalchemy import select, update

from faithflow_ops.db import Database, utcnow
from faithflow_ops.jobs import locks
from faithflow_ops.models import JobLock, JobRun

JOB = "subscription_metadata_backfill"
NOW = dt.datetime(2026, 3, 1, 9, 0, tzinfo=dt.UTC)


def _crashed_run(db: Database, *, expired: bool) -> int:
    """A run that took the lease and recorded itself `running`, then its process died."""
    assert locks.acquire(db, JOB, "deadhost:1:abcd", 600) is None
    with db.session() as s:
        run = JobRun(
            job=JOB,
            trigger="cli",
            dry_run=False,
            status="running",
            now=NOW,
            started_at=utcnow() - dt.timedelta(hours=1),
            holder="deadhost:1:abcd",
            counts={},
        )
        s.add(run)
        s.flush()
        locks.attach_run(s, JOB, "deadhost:1:abcd", run.id)
        if expired:
            s.execute(
                update(JobLock)
                .where(JobLock.job == JOB)
                .values(expires_at=utcnow() - dt.timedelta(minutes=1))
            )
        return run.id


def _run(db: Database, run_id: int) -> JobRun:
    with db.read_session() as s:
        run = s.get(JobRun, run_id)
        assert run is not None
        return run


def test_taking_an_expired_lease_closes_the_dead_holders_run_as_abandoned(
    db: Database, cli
) -> None:
    dead = _crashed_run(db, expired=True)
    result = cli("subs", "backfill", "--now", "2026-03-01T09:00:00Z", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["status"] == "succeeded"
    run = _run(db, dead)
    assert run.status == "abandoned"
    assert run.finished_at is not None
    assert "lease" in (run.error or "") and "deadhost:1:abcd" in (run.error or "")
    with db.read_session() as s:
        assert s.get(JobLock, JOB) is None  # the new run released it
        statuses = sorted(s.scalars(select(JobRun.status).where(JobRun.job == JOB)))
    assert statuses == ["abandoned", "succeeded"]

    listed = cli("jobs", "runs", "--status", "abandoned", "--json")
    assert listed.exit_code == 0, listed.output
    assert [r["id"] for r in json.loads(listed.stdout)] == [dead]


def test_a_live_lease_is_not_taken_and_its_run_stays_running(db: Database, cli) -> None:
    alive = _crashed_run(db, expired=False)
    result = cli("subs", "backfill", "--now", "2026-03-01T09:00:00Z")
    assert result.exit_code == 75
    assert _run(db, alive).status == "running"


def test_an_unknown_status_is_refused_naming_abandoned(cli) -> None:
    result = cli("jobs", "runs", "--status", "dead")
    assert result.exit_code == 2
    assert "abandoned" in result.stderr
