"""The job contract: leases, job_runs, plan/apply, failures, exit codes."""

from __future__ import annotations

import datetime as dt
import json
import threading
from collections.abc import Iterator, Sequence

import pytest
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from faithflow_ops.config import Settings
from faithflow_ops.db import Database, utcnow
from faithflow_ops.jobs import locks, registry
from faithflow_ops.jobs.base import Action, Job, JobContext, Outcome, StaleAction
from faithflow_ops.jobs.registry import JobSpec
from faithflow_ops.jobs.runner import run_job
from faithflow_ops.models import JobLock, JobRun, Tenant

SPEC = JobSpec(
    name="test_suspend_sweep",
    summary="Suspend tenants named in their suspension_reason",
    cli_group="tenants",
    cli_verb="sweep",
    task_path="/tasks/test/sweep",
    schedule="*/5 * * * *",
    module="tests.test_runner",
    lease_seconds=60,
)


class SuspendSweep(Job):
    """Suspends every active tenant whose name starts with 'late'; 'broken*' fails to apply."""

    name = SPEC.name
    report_only = frozenset({"note"})

    def __init__(self, gate: threading.Event | None = None, batch: int = 1) -> None:
        self.gate = gate
        self.entered = threading.Event()
        self.batch_size = batch  # type: ignore[misc]

    def plan(self, session: Session, ctx: JobContext) -> Iterator[Action]:
        self.entered.set()
        if self.gate is not None:
            assert self.gate.wait(10)
        for t in session.scalars(
            select(Tenant).where(Tenant.status == "active").order_by(Tenant.id)
        ):
            if t.name.startswith(("late", "broken")):
                yield Action("suspend", f"tenant:{t.id}", "late payer", {"id": t.id})
            elif t.name.startswith("odd"):
                yield Action("note", f"tenant:{t.id}", "looks odd", {"id": t.id})

    def apply(self, session: Session, ctx: JobContext, action: Action) -> None:
        tenant = session.get(Tenant, action.data["id"])
        assert tenant is not None
        if tenant.name.startswith("broken"):
            raise ValueError("cannot suspend a broken tenant")
        result = session.execute(
            update(Tenant)
            .where(Tenant.id == tenant.id, Tenant.status == "active")
            .values(status="suspended", suspended_at=ctx.now)
        )
        if result.rowcount != 1:  # type: ignore[attr-defined]
            raise StaleAction("already suspended")

    def apply_batch(
        self, session: Session, ctx: JobContext, actions: Sequence[Action]
    ) -> list[Outcome] | None:
        for action in actions:
            self.apply(session, ctx, action)
        return ["applied"] * len(actions)


def ctx(dry_run: bool = False, **kw) -> JobContext:
    return JobContext(
        now=dt.datetime(2026, 3, 1, 9, tzinfo=dt.UTC),
        dry_run=dry_run,
        trigger="cli",
        settings=Settings.from_env({}),
        **kw,
    )


def seed(db: Database, *names: str) -> None:
    with db.session() as s:
        for i, name in enumerate(names):
            s.add(Tenant(slug=f"t{i}", name=name))


def statuses(db: Database) -> dict[str, str]:
    with db.read_session() as s:
        return {t.name: t.status for t in s.scalars(select(Tenant))}


def test_preview_plans_and_writes_nothing_but_a_job_run(db: Database) -> None:
    seed(db, "late one", "on time", "odd one")
    result = run_job(db, SPEC, ctx(dry_run=True), job=SuspendSweep())
    assert result.status == "succeeded"
    assert dict(result.counts) == {"suspend": 1, "note": 1}
    assert [a.outcome for a in result.actions] == [None, None]
    assert statuses(db)["late one"] == "active"
    with db.read_session() as s:
        run = s.scalars(select(JobRun)).one()
    assert (run.job, run.dry_run, run.status, run.trigger) == (SPEC.name, True, "succeeded", "cli")
    assert run.counts == {"suspend": 1, "note": 1}
    assert run.now == dt.datetime(2026, 3, 1, 9, tzinfo=dt.UTC)
    assert run.finished_at is not None


def test_run_applies_and_a_second_run_plans_nothing(db: Database) -> None:
    seed(db, "late one", "late two", "on time")
    first = run_job(db, SPEC, ctx(), job=SuspendSweep())
    assert first.outcomes == {"applied": 2}
    assert statuses(db) == {"late one": "suspended", "late two": "suspended", "on time": "active"}
    second = run_job(db, SPEC, ctx(), job=SuspendSweep())
    assert sum(second.counts.values()) == 0


def test_a_failed_action_is_recorded_and_the_run_goes_on(db: Database) -> None:
    seed(db, "late one", "broken one", "late two")
    result = run_job(db, SPEC, ctx(), job=SuspendSweep(batch=10))
    assert result.status == "partial"
    assert result.exit_code == 1
    assert result.outcomes == {"applied": 2, "failed": 1}
    failed = [a for a in result.actions if a.outcome == "failed"]
    assert "cannot suspend a broken tenant" in (failed[0].error or "")
    # the batch failed as a whole and was retried one by one: the good ones still landed
    assert statuses(db) == {
        "late one": "suspended",
        "broken one": "active",
        "late two": "suspended",
    }
    with db.read_session() as s:
        run = s.scalars(select(JobRun)).one()
    assert (run.status, run.failed_actions) == ("partial", 1)


def test_a_run_whose_every_action_failed_is_failed_not_partial(db: Database) -> None:
    # issue 22.5: `partial` read as "mostly done" to `health sweep` while nothing was done
    seed(db, "broken one", "broken two", "on time")
    result = run_job(db, SPEC, ctx(), job=SuspendSweep(batch=10))
    assert result.outcomes == {"failed": 2}
    assert (result.status, result.exit_code) == ("failed", 1)
    assert result.error == (
        "every action failed (2 of 2); first: ValueError: cannot suspend a broken tenant"
    )
    with db.read_session() as s:
        run = s.scalars(select(JobRun)).one()
    assert (run.status, run.failed_actions) == ("failed", 2)
    assert run.error is not None and run.error.startswith("every action failed")


def test_a_preview_applied_later_never_double_applies(db: Database) -> None:
    seed(db, "late one")
    job = SuspendSweep()
    preview = run_job(db, SPEC, ctx(dry_run=True), job=job)
    run_job(db, SPEC, ctx(), job=job)
    # apply the hour-old preview's action again: the claim sees it was done
    from faithflow_ops.jobs.runner import apply_one

    again = apply_one(db, job, ctx(), preview.actions[0].action)
    assert again.outcome == "stale"


def test_report_only_actions_change_nothing(db: Database) -> None:
    seed(db, "odd one")
    result = run_job(db, SPEC, ctx(), job=SuspendSweep())
    assert result.outcomes == {"reported": 1}
    assert statuses(db) == {"odd one": "active"}


def test_limit_stops_planning(db: Database) -> None:
    seed(db, "late a", "late b", "late c")
    result = run_job(db, SPEC, ctx(limit=2), job=SuspendSweep())
    assert sum(result.counts.values()) == 2
    assert list(statuses(db).values()).count("suspended") == 2


def test_a_plan_that_crashes_fails_the_run_and_releases_the_lock(db: Database) -> None:
    class Crashes(SuspendSweep):
        def plan(self, session, ctx):
            raise RuntimeError("database exploded")
            yield  # pragma: no cover

    result = run_job(db, SPEC, ctx(), job=Crashes())
    assert result.status == "failed"
    assert "database exploded" in (result.error or "")
    assert locks.current(db, SPEC.name) is None
    with db.read_session() as s:
        assert s.scalars(select(JobRun.status)).one() == "failed"


def test_two_concurrent_runs_one_runs_and_the_other_is_skipped(db: Database) -> None:
    seed(db, "late one")
    gate = threading.Event()
    slow = SuspendSweep(gate=gate)
    results: list = []
    t = threading.Thread(target=lambda: results.append(run_job(db, SPEC, ctx(), job=slow)))
    t.start()
    assert slow.entered.wait(10)
    second = run_job(db, SPEC, ctx(), job=SuspendSweep())
    gate.set()
    t.join(10)
    assert second.status == "skipped"
    assert second.exit_code == 75
    assert second.lock is not None and "already running (since" in (second.error or "")
    assert results[0].status == "succeeded"
    with db.read_session() as s:
        runs = {r.status for r in s.scalars(select(JobRun))}
    assert runs == {"succeeded", "skipped"}
    assert locks.current(db, SPEC.name) is None


def test_a_crashed_holders_lease_expires(db: Database) -> None:
    assert locks.acquire(db, SPEC.name, "dead-host:1", lease_seconds=60) is None
    assert run_job(db, SPEC, ctx(), job=SuspendSweep()).status == "skipped"
    with db.session() as s:  # time passes: the dead holder's lease ends
        s.execute(update(JobLock).values(expires_at=utcnow() - dt.timedelta(seconds=1)))
    assert run_job(db, SPEC, ctx(), job=SuspendSweep()).status == "succeeded"


def test_lock_is_exclusive_and_released_only_by_its_holder(db: Database) -> None:
    assert locks.acquire(db, "j", "a", 60) is None
    held = locks.acquire(db, "j", "b", 60)
    assert held is not None and held.holder == "a"
    locks.release(db, "j", "b")  # not b's to release
    assert locks.current(db, "j") is not None
    locks.release(db, "j", "a")
    assert locks.acquire(db, "j", "b", 60) is None


def test_renew_extends_only_our_own_lease(db: Database) -> None:
    assert locks.acquire(db, "j", "a", 1) is None
    assert locks.renew(db, "j", "a", 600)
    assert not locks.renew(db, "j", "b", 600)
    cur = locks.current(db, "j")
    assert cur is not None and cur.expires_at > utcnow() + dt.timedelta(seconds=500)


def test_result_document_has_the_design_shape(db: Database) -> None:
    seed(db, "late one")
    doc = run_job(db, SPEC, ctx(dry_run=True), job=SuspendSweep()).to_dict()
    json.dumps(doc)
    assert doc["job"] == SPEC.name and doc["dry_run"] is True
    assert doc["now"] == "2026-03-01T09:00:00+00:00"
    assert doc["status"] == "succeeded" and doc["counts"] == {"suspend": 1}
    assert doc["actions"][0] == {
        "kind": "suspend",
        "target": doc["actions"][0]["target"],
        "reason": "late payer",
        "data": doc["actions"][0]["data"],
    }


def test_registry_names_are_unique_and_schedules_valid() -> None:
    names = [s.name for s in registry.JOBS]
    assert len(names) == len(set(names))
    paths = [s.task_path for s in registry.JOBS]
    assert len(paths) == len(set(paths))
    for spec in registry.JOBS:
        registry.validate_cron(spec.schedule, spec.name)
        assert spec.task_path.startswith("/tasks/")
        assert spec.load().name == spec.name


def test_cron_override_is_used_and_a_bad_one_names_the_variable() -> None:
    spec = registry.JOBS[0]
    assert registry.schedule_for(spec, {spec.name.upper(): "0 3 * * *"}) == "0 3 * * *"
    from faithflow_ops.errors import ConfigError

    with pytest.raises(ConfigError, match=spec.cron_variable):
        registry.schedule_for(spec, {spec.name.upper(): "every tuesday"})


def test_unknown_job_name_lists_the_known_ones() -> None:
    from faithflow_ops.errors import UserError

    with pytest.raises(UserError, match="no job named 'nope'; known jobs: "):
        registry.get("nope")


def test_each_run_logs_one_json_line_with_its_counts(db: Database) -> None:
    import io

    from faithflow_ops.logging import configure

    stream = io.StringIO()
    configure("json", stream=stream)
    seed(db, "late one")
    run_job(db, SPEC, ctx(), job=SuspendSweep())
    lines = [json.loads(x) for x in stream.getvalue().splitlines() if x.strip()]
    runs = [x for x in lines if x["event"] == "job run"]
    assert len(runs) == 1
    assert runs[0]["job"] == SPEC.name and runs[0]["counts"] == {"suspend": 1}
    assert runs[0]["outcomes"] == {"applied": 1} and runs[0]["status"] == "succeeded"


def test_a_batch_applies_while_the_next_batch_is_planned(db: Database) -> None:
    """The database works on batch N while the plan reads batch N+1; results stay in order."""
    seed(db, *(f"late {i}" for i in range(6)))
    overlapped: list[bool] = []

    class Overlapping(SuspendSweep):
        def __init__(self) -> None:
            super().__init__(batch=2)
            self.planned = 0
            self.third_planned = threading.Event()

        def plan(self, session, ctx):
            for action in super().plan(session, ctx):
                self.planned += 1
                if self.planned == 3:
                    self.third_planned.set()
                yield action

        def apply_batch(self, session, ctx, actions):
            if not overlapped:  # the first batch waits until the plan has gone past it
                overlapped.append(self.third_planned.wait(10))
            return super().apply_batch(session, ctx, actions)

    result = run_job(db, SPEC, ctx(), job=Overlapping())
    assert overlapped == [True]
    assert result.outcomes == {"applied": 6}
    targets = [a.action.target for a in result.actions]
    assert targets == sorted(targets, key=lambda t: int(t.split(":")[1]))


def test_an_error_in_the_last_batch_in_flight_is_not_lost(db: Database) -> None:
    seed(db, "late one", "late two", "broken three")
    result = run_job(db, SPEC, ctx(), job=SuspendSweep(batch=2))
    assert result.outcomes == {"applied": 2, "failed": 1}
    assert result.status == "partial"
