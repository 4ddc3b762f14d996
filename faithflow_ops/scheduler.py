"""The internal scheduler: a cron loop over the registry (DESIGN §8 — no APScheduler).

`faithflow scheduler run` runs it alone; `ENABLE_INTERNAL_SCHEDULER=1 faithflow serve` runs it
in a thread beside the receiver. Runs go through `run_job`, so they take the same lease as cron
and HTTP runs and never overlap them.
"""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import structlog

from faithflow_ops.config import Settings
from faithflow_ops.db import Database, utcnow
from faithflow_ops.errors import UserError
from faithflow_ops.jobs import registry
from faithflow_ops.jobs.registry import JobSpec

if TYPE_CHECKING:
    from faithflow_ops.jobs.runner import RunResult

OnResult = Callable[[JobSpec, "RunResult"], None]

log = structlog.get_logger("faithflow.scheduler")


def next_run(expr: str, after: dt.datetime) -> dt.datetime:
    """The first time strictly after `after` that matches the cron expression (UTC)."""
    from cronsim import CronSim

    start = after.astimezone(dt.UTC).replace(second=0, microsecond=0)
    result: dt.datetime = next(CronSim(expr, start))
    return result


def describe_schedule(expr: str) -> str:
    from cronsim import CronSim

    explained: str = CronSim(expr, dt.datetime(2026, 1, 1, tzinfo=dt.UTC)).explain()
    return explained


@dataclass
class ScheduledJob:
    spec: JobSpec
    expr: str
    due: dt.datetime


@dataclass
class Scheduler:
    """Decides what is due (pure: `due(now)`) and runs it (`tick`, `run_forever`)."""

    db: Database
    settings: Settings
    jobs: list[ScheduledJob] = field(default_factory=list)
    max_workers: int = 4
    clock: Callable[[], dt.datetime] = utcnow
    on_result: OnResult | None = None  # e.g. the receiver's metrics

    @classmethod
    def from_settings(
        cls,
        db: Database,
        settings: Settings,
        start: dt.datetime | None = None,
        on_result: OnResult | None = None,
    ) -> Scheduler:
        """Build from the registry; an invalid CRON_* expression raises ConfigError here."""
        start = start or utcnow()
        jobs = []
        for spec in registry.JOBS:
            expr = registry.schedule_for(spec, settings.cron_overrides)
            jobs.append(ScheduledJob(spec, expr, next_run(expr, start)))
        for name in registry.unknown_overrides(settings.cron_overrides):
            log.warning("cron variable names no registered job; ignored", variable=name)
        return cls(db=db, settings=settings, jobs=jobs, on_result=on_result)

    def due(self, now: dt.datetime) -> list[ScheduledJob]:
        """Jobs whose time has come; each is moved on to its next time after `now`.

        A scheduler that was asleep through several slots runs the job once, not once per
        missed slot.
        """
        ready = [job for job in self.jobs if job.due <= now]
        for job in ready:
            job.due = next_run(job.expr, now)
        return ready

    def run_one(self, job: ScheduledJob, now: dt.datetime) -> None:
        from faithflow_ops.jobs.base import JobContext
        from faithflow_ops.jobs.runner import run_job

        ctx = JobContext(
            now=now,
            dry_run=False,
            trigger="scheduler",
            settings=self.settings,
            actor="scheduler",
        )
        try:
            result = run_job(self.db, job.spec, ctx, collect_actions=False)
            if self.on_result is not None:
                self.on_result(job.spec, result)
        except UserError as exc:  # the job refused this configuration: say which setting
            log.error("scheduled run refused", job=job.spec.name, error=str(exc))
        except Exception:  # a broken job must not stop the scheduler
            log.exception("scheduled run crashed", job=job.spec.name)

    def tick(self, pool: ThreadPoolExecutor | None = None) -> list[Future[None]]:
        now = self.clock()
        futures = []
        for job in self.due(now):
            if pool is None:
                self.run_one(job, now)
            else:
                futures.append(pool.submit(self.run_one, job, now))
        return futures

    def run_forever(self, stop: threading.Event) -> None:
        log.info(
            "scheduler started",
            jobs={j.spec.name: j.expr for j in self.jobs},
        )
        with ThreadPoolExecutor(self.max_workers, thread_name_prefix="faithflow-job") as pool:
            while not stop.is_set():
                self.tick(pool)
                upcoming = min((j.due for j in self.jobs), default=None)
                wait = 30.0 if upcoming is None else (upcoming - self.clock()).total_seconds()
                stop.wait(min(max(wait, 0.05), 30.0))
        log.info("scheduler stopped")


def start_in_thread(
    db: Database, settings: Settings, on_result: OnResult | None = None
) -> tuple[threading.Thread, threading.Event]:
    scheduler = Scheduler.from_settings(db, settings, on_result=on_result)
    stop = threading.Event()
    thread = threading.Thread(
        target=scheduler.run_forever, args=(stop,), name="faithflow-scheduler", daemon=True
    )
    thread.start()
    return thread, stop
