"""The internal scheduler: what is due when (injected clocks, no sleeping), CRON_* overrides,
and runs that go through the same locks as cron and HTTP runs."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from faithflow_ops.config import Settings
from faithflow_ops.db import Database
from faithflow_ops.errors import ConfigError
from faithflow_ops.jobs import locks, registry
from faithflow_ops.jobs.base import Action, Job, JobContext
from faithflow_ops.jobs.registry import JobSpec
from faithflow_ops.models import JobRun
from faithflow_ops.scheduler import ScheduledJob, Scheduler

UTC = dt.UTC
BACKFILL = "SUBSCRIPTION_METADATA_BACKFILL"  # registry default: 10 2 * * *

FAKE = JobSpec(
    name="fake_every_five",
    summary="A job for scheduler tests",
    cli_group="test",
    cli_verb="five",
    task_path="/tasks/test/five",
    schedule="*/5 * * * *",
    module=__name__,
)


class EveryFive(Job):
    name = FAKE.name

    def __init__(self) -> None:
        self.plans: list[JobContext] = []

    def plan(self, session: Session, ctx: JobContext) -> Iterator[Action]:
        self.plans.append(ctx)
        yield Action("tick", "clock:1", f"at {ctx.now.isoformat()}")

    def apply(self, session: Session, ctx: JobContext, action: Action) -> None:
        pass


JOB = EveryFive()


def at(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text).replace(tzinfo=UTC)


def scheduler(
    env: dict[str, str] | None = None,
    start: str = "2026-03-01T00:00:00",
    db: Database | None = None,
) -> Scheduler:
    cfg = Settings.from_env({"FAITHFLOW_DATABASE_URL": "sqlite://", **(env or {})})
    return Scheduler.from_settings(db or Database.from_url("sqlite://"), cfg, start=at(start))


def job_named(s: Scheduler, name: str) -> ScheduledJob:
    [job] = [j for j in s.jobs if j.spec.name == name]
    return job


def test_a_job_becomes_due_at_its_cron_time_then_moves_to_the_next_slot(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Only the backfill: other registered jobs have their own slots in this window.
    monkeypatch.setattr(registry, "JOBS", (registry.get(BACKFILL.lower()),))
    s = scheduler()
    job = job_named(s, BACKFILL.lower())
    assert job.due == at("2026-03-01T02:10:00")
    assert s.due(at("2026-03-01T02:09:59")) == []
    assert s.due(at("2026-03-01T02:10:00")) == [job]
    assert job.due == at("2026-03-02T02:10:00")
    assert s.due(at("2026-03-01T02:10:30")) == []  # the same slot never runs twice


def test_missed_slots_run_once_not_once_per_slot(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(registry, "JOBS", (FAKE,))
    s = scheduler()
    [job] = s.jobs
    assert job.due == at("2026-03-01T00:05:00")
    # Asleep for an hour: twelve slots went by; the job is due once, then at the next slot.
    assert s.due(at("2026-03-01T01:02:00")) == [job]
    assert job.due == at("2026-03-01T01:05:00")
    assert s.due(at("2026-03-01T01:04:59")) == []
    assert s.due(at("2026-03-01T01:05:00")) == [job]


def test_a_cron_override_replaces_the_default_schedule() -> None:
    s = scheduler({f"CRON_{BACKFILL}": "*/15 * * * *"}, start="2026-03-01T00:07:00")
    job = job_named(s, BACKFILL.lower())
    assert job.expr == "*/15 * * * *"
    assert job.due == at("2026-03-01T00:15:00")


@pytest.mark.parametrize("expr", ["61 * * * *", "every day", "* * * *", "*/0 * * * *"])
def test_an_invalid_cron_override_is_refused_naming_the_variable(expr: str) -> None:
    with pytest.raises(ConfigError) as info:
        scheduler({f"CRON_{BACKFILL}": expr})
    message = str(info.value)
    assert message.startswith(f"CRON_{BACKFILL}={expr!r} is not a valid cron expression")
    assert "e.g. '*/5 * * * *'" in message


def test_a_cron_variable_for_no_job_is_ignored() -> None:
    s = scheduler({"CRON_NO_SUCH_JOB": "* * * * *"})
    assert {j.spec.name for j in s.jobs} == {spec.name for spec in registry.JOBS}


def test_a_scheduled_run_respects_a_held_lock(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(registry, "JOBS", (FAKE,))
    JOB.plans.clear()
    s = scheduler(db=db)
    s.clock = lambda: at("2026-03-01T00:05:00")
    assert locks.acquire(db, FAKE.name, "cron-box:99", 600) is None  # cron is running it

    s.tick()  # due now; runs inline (no pool)

    assert JOB.plans == []  # never planned
    with db.read_session() as session:
        [row] = session.scalars(select(JobRun)).all()
    assert (row.job, row.trigger, row.status) == (FAKE.name, "scheduler", "skipped")
    assert "cron-box:99" in (row.error or "")

    locks.release(db, FAKE.name, "cron-box:99")
    s.clock = lambda: at("2026-03-01T00:10:00")
    s.tick()
    [ctx] = JOB.plans
    assert (ctx.trigger, ctx.actor, ctx.dry_run) == ("scheduler", "scheduler", False)
    assert ctx.now == at("2026-03-01T00:10:00")
    with db.read_session() as session:
        rows = session.scalars(select(JobRun).order_by(JobRun.id)).all()
    assert [(r.status, r.counts) for r in rows] == [("skipped", {}), ("succeeded", {"tick": 1})]
    assert locks.current(db, FAKE.name) is None
