"""A run = take the lease → plan → apply each action → record the run (DESIGN §2).

The CLI, the receiver and the scheduler all call `run_job`; none of them holds decision logic.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import signal
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Literal

import structlog
from sqlalchemy import update

from faithflow_ops.db import Database, lock_holder_id, outage, utcnow
from faithflow_ops.jobs import locks
from faithflow_ops.jobs.base import Action, ActionResult, Job, JobContext, Outcome, StaleAction
from faithflow_ops.jobs.registry import JobSpec
from faithflow_ops.models import JobRun

log = structlog.get_logger("faithflow.jobs")

# Statuses of a run, as stored in job_runs.status and printed in the job JSON; a run left
# `running` by a dead process becomes `locks.ABANDONED` when the next run takes its lease.
SUCCEEDED, PARTIAL, FAILED, SKIPPED = "succeeded", "partial", "failed", "skipped"

# Why a run failed as a whole (`failure` in the job JSON), which decides the CLI's exit code
# and the task endpoint's status: a setting to fix (exit 2, 503), an outside service that
# refused or could not be reached (the provider's exit code, 502), or our own bug (exit 1, 500,
# logged with its traceback).
Failure = Literal["config", "provider", "internal"]

ActionSink = Callable[[ActionResult], None]


class Terminated(BaseException):
    """The process was told to stop mid-run (SIGTERM from cron or Render on shutdown, SIGINT
    from Ctrl-C) while `stop_on_signals` was in force. The runner records the run as failed
    ("terminated by SIGTERM"), releases its lease and returns; the CLI exits 128 + the signal
    (143 for SIGTERM, 130 for SIGINT)."""

    def __init__(self, signum: int) -> None:
        self.signum = signum
        self.signal_name = signal.Signals(signum).name
        super().__init__(f"terminated by {self.signal_name}")

    @property
    def exit_code(self) -> int:
        return 128 + self.signum


@contextlib.contextmanager
def stop_on_signals() -> Iterator[None]:
    """While a CLI run lasts, SIGTERM and SIGINT raise `Terminated` in the main thread: the
    action batch in flight lands, the run is recorded and the lease released before the
    process exits. Later signals are ignored while that bookkeeping happens (SIGKILL still
    works). Off the main thread (where Python cannot install handlers) this does nothing."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    fired = False

    def handler(signum: int, _frame: object) -> None:
        nonlocal fired
        if not fired:
            fired = True
            raise Terminated(signum)

    previous = {sig: signal.signal(sig, handler) for sig in _STOP_SIGNALS}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


_STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


@contextlib.contextmanager
def _shielded() -> Iterator[None]:
    """Hold SIGTERM and SIGINT back while the run's closing write happens: a signal then
    arrives once the run is recorded and the lease released, never halfway through."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    old = signal.pthread_sigmask(signal.SIG_BLOCK, _STOP_SIGNALS)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


@dataclass
class RunResult:
    job: str
    dry_run: bool
    now: dt.datetime
    status: str = SUCCEEDED
    run_id: int | None = None
    counts: Counter[str] = field(default_factory=Counter)
    outcomes: Counter[str] = field(default_factory=Counter)
    actions: list[ActionResult] = field(default_factory=list)
    error: str | None = None
    lock: locks.LockInfo | None = None  # the holder that made us skip
    started_at: dt.datetime | None = None
    finished_at: dt.datetime | None = None
    failure: Failure | None = None  # set when status is failed
    failure_exit: int = 1  # the exit code of that failure
    warnings: list[str] = field(default_factory=list)  # from Job.check: what the run left out

    @property
    def exit_code(self) -> int:
        if self.status == FAILED:
            return self.failure_exit
        return {SUCCEEDED: 0, PARTIAL: 1, SKIPPED: 75}[self.status]

    def fail(self, exc: BaseException) -> None:
        """Record why the run failed as a whole (see `Failure`)."""
        from faithflow_ops.errors import UserError
        from faithflow_ops.providers._http import ProviderError

        self.status = FAILED
        down = outage(exc)
        if isinstance(exc, Terminated):
            self.failure, self.failure_exit, self.error = "internal", exc.exit_code, str(exc)
        elif down is not None:  # the database went away mid-run: the run failed (exit 1)
            self.failure, self.failure_exit, self.error = "internal", 1, down
        elif isinstance(exc, UserError):
            self.failure, self.failure_exit, self.error = "config", exc.exit_code, str(exc)
        elif isinstance(exc, ProviderError):
            self.failure, self.failure_exit, self.error = "provider", exc.exit_code, str(exc)
        else:
            self.failure, self.failure_exit = "internal", 1
            self.error = f"{type(exc).__name__}: {exc}"

    def summary(self) -> dict[str, Any]:
        """The job document without its actions (the CLI streams those)."""
        doc: dict[str, Any] = {
            "job": self.job,
            "dry_run": self.dry_run,
            "now": self.now.isoformat(),
            "status": self.status,
            "run_id": self.run_id,
            "counts": dict(sorted(self.counts.items())),
        }
        if not self.dry_run:
            doc["outcomes"] = dict(sorted(self.outcomes.items()))
        if self.error:
            doc["error"] = self.error
        if self.failure:
            doc["failure"] = self.failure
        if self.warnings:
            doc["warnings"] = list(self.warnings)
        if self.lock:
            doc["lock"] = {
                "holder": self.lock.holder,
                "since": self.lock.acquired_at.isoformat(),
                "expires_at": self.lock.expires_at.isoformat(),
            }
        return doc

    def to_dict(self) -> dict[str, Any]:
        doc = self.summary()
        doc["actions"] = [a.to_dict() for a in self.actions]
        return doc


def skipped_message(result: RunResult) -> str:
    assert result.lock is not None
    return (
        f"{result.job} is already running (since {result.lock.acquired_at.isoformat()}, "
        f"holder {result.lock.holder}); lease ends {result.lock.expires_at.isoformat()}"
    )


class _Lease:
    """Renews the lease while a long run makes progress."""

    def __init__(self, db: Database, spec: JobSpec, holder: str) -> None:
        self.db, self.spec, self.holder = db, spec, holder
        self._last = time.monotonic()

    def tick(self) -> None:
        if time.monotonic() - self._last > self.spec.lease_seconds / 3:
            if not locks.renew(self.db, self.spec.name, self.holder, self.spec.lease_seconds):
                raise RuntimeError("lost the job lease (it expired and another run took it)")
            self._last = time.monotonic()


def run_job(
    db: Database,
    spec: JobSpec,
    ctx: JobContext,
    *,
    on_action: ActionSink | None = None,
    collect_actions: bool = True,
    job: Job | None = None,
) -> RunResult:
    """Run one job. Never raises for a job's own failure: the result says what happened.

    A run the job refuses before it starts (`Job.check`: a bad option, a missing setting)
    raises that UserError and records nothing."""
    job = job or spec.load()
    warnings = job.check(ctx)
    holder = f"{lock_holder_id()}:{uuid.uuid4().hex[:8]}"
    result = RunResult(
        job=spec.name, dry_run=ctx.dry_run, now=ctx.now, started_at=utcnow(), warnings=warnings
    )

    # Take the lease and record the run in one transaction, and later finish the run and
    # release the lease in one: the bookkeeping costs two commits, not five.
    with db.session() as session:
        held_by = locks.take(session, spec.name, holder, spec.lease_seconds)
        if held_by is None:
            run = JobRun(
                job=spec.name,
                trigger=ctx.trigger,
                dry_run=ctx.dry_run,
                status="running",
                now=ctx.now,
                started_at=result.started_at,
                holder=holder,
                counts={},
            )
            session.add(run)
            session.flush()
            result.run_id = run.id
            locks.attach_run(session, spec.name, holder, run.id)
    if held_by is not None:
        result.status, result.lock = SKIPPED, held_by
        result.error = skipped_message(result)
        result.finished_at = utcnow()
        _record_skipped(db, spec, ctx, result)
        log.warning("job skipped", job=spec.name, holder=held_by.holder, trigger=ctx.trigger)
        return result

    try:
        _execute(db, spec, job, ctx, result, _Lease(db, spec, holder), on_action, collect_actions)
    except BaseException as exc:  # record, release, and re-raise only interrupts
        result.fail(exc)
        if not isinstance(exc, Exception | Terminated):
            _finish(db, result, spec.name, holder)
            raise
        if isinstance(exc, Terminated):
            log.warning("job terminated", job=spec.name, run_id=result.run_id, error=str(exc))
        elif result.failure == "internal" and outage(exc) is None:
            log.exception("job failed", job=spec.name, run_id=result.run_id)
        else:  # not our bug: the message says it all, a traceback would only alarm
            log.error(
                "job failed",
                job=spec.name,
                run_id=result.run_id,
                failure=result.failure,
                error=result.error,
            )
    _finish(db, result, spec.name, holder)
    log.info(
        "job run",
        job=spec.name,
        run_id=result.run_id,
        trigger=ctx.trigger,
        dry_run=ctx.dry_run,
        status=result.status,
        counts=dict(result.counts),
        outcomes=dict(result.outcomes),
        seconds=round((result.finished_at - result.started_at).total_seconds(), 3)
        if result.finished_at and result.started_at
        else None,
    )
    return result


def _execute(
    db: Database,
    spec: JobSpec,
    job: Job,
    ctx: JobContext,
    result: RunResult,
    lease: _Lease,
    on_action: ActionSink | None,
    collect: bool,
) -> None:
    first_error: list[str] = []
    ours = 0  # failed actions that failed for a reason of ours (not an outside service)

    def emit(item: ActionResult) -> None:
        nonlocal ours
        if item.outcome is not None:
            result.outcomes[item.outcome] += 1
        if item.outcome == "failed":
            if not first_error:
                first_error.append(item.error or "no error recorded")
            if not (item.outside or item.action.kind in job.failure_kinds):
                ours += 1
        if collect:
            result.actions.append(item)
        if on_action is not None:
            on_action(item)

    # Kinds that say the plan itself could not see everything (a provider pull that failed):
    # a preview holding one is `partial` (exit 1), as the run would be when it applies them.
    incomplete = job.failure_kinds
    pending: list[Action] = []
    # Batches apply on one worker thread while the plan goes on reading: the database works
    # on batch N while Python plans batch N+1. At most one batch is in flight, results are
    # emitted here in plan order, and a worker's error surfaces at the next wait.
    inflight: Future[list[ActionResult]] | None = None

    def wait() -> None:
        nonlocal inflight
        if inflight is not None:
            done, inflight = inflight, None
            for item in done.result():
                emit(item)
            lease.tick()

    def flush(pool: ThreadPoolExecutor) -> None:
        nonlocal pending, inflight
        wait()
        inflight = pool.submit(_apply, db, job, ctx, pending)
        pending = []

    with ThreadPoolExecutor(1, thread_name_prefix=f"{spec.name}-apply") as pool:
        try:
            with db.read_session() as session:
                for n, action in enumerate(job.plan(session, ctx), start=1):
                    result.counts[action.kind] += 1
                    if ctx.dry_run:
                        if action.kind in incomplete:
                            result.status = PARTIAL
                        emit(ActionResult(action))
                        if n % 1000 == 0:
                            lease.tick()
                    else:
                        pending.append(action)
                        if len(pending) >= max(job.batch_size, 1):
                            flush(pool)
                    if ctx.limit is not None and n >= ctx.limit:
                        break
            if pending:
                flush(pool)
            wait()
        except BaseException:
            # The batch in flight still lands and is counted; the first error is the one raised.
            with contextlib.suppress(Exception):
                wait()
            raise
    failed = result.outcomes.get("failed", 0)
    if failed:
        # Every action it tried failed: the run did none of its work, so it failed (exit 1,
        # `job:<name>` fails its health check); some failed: `partial` (issue 22).
        tried = sum(n for outcome, n in result.outcomes.items() if outcome != "reported")
        if failed == tried:
            result.status = FAILED
            result.error = f"every action failed ({failed} of {tried}); first: {first_error[0]}"
            # all at an outside service: `provider` (task 502, no traceback); else ours (500)
            result.failure, result.failure_exit = ("internal" if ours else "provider"), 1
        else:
            result.status = PARTIAL


def _apply(
    db: Database, job: Job, ctx: JobContext, actions: Sequence[Action]
) -> list[ActionResult]:
    to_apply = [a for a in actions if a.kind not in job.report_only]
    own = job.apply_unmanaged(db, ctx, to_apply) if to_apply else None
    if own is not None:
        by_action = {id(a): r for a, r in zip(to_apply, own, strict=True)}
        return [by_action.get(id(a)) or ActionResult(a, "reported") for a in actions]
    done: dict[int, Outcome] = {}
    if len(to_apply) > 1:
        try:
            with db.session() as session:
                outcomes = job.apply_batch(session, ctx, to_apply)
                if outcomes is None:
                    session.rollback()
            if outcomes is not None:
                done = {id(a): o for a, o in zip(to_apply, outcomes, strict=True)}
        except Exception:  # one bad action spoils the batch: find it one by one
            log.debug("batch apply failed; retrying one by one", job=job.name, exc_info=True)
            done = {}
    results: list[ActionResult] = []
    for action in actions:
        if action.kind in job.report_only:
            results.append(ActionResult(action, "reported"))
        elif id(action) in done:
            results.append(ActionResult(action, done[id(action)]))
        else:
            results.append(apply_one(db, job, ctx, action))
    return results


def apply_one(db: Database, job: Job, ctx: JobContext, action: Action) -> ActionResult:
    """One action in its own transaction; a failure is its result (`stale`, `failed`), never an
    exception."""
    from faithflow_ops.providers._http import ProviderError

    try:
        with db.session() as session:
            job.apply(session, ctx, action)
    except StaleAction as exc:
        return ActionResult(action, "stale", str(exc) or None)
    except ProviderError as exc:  # an outside service refused it or could not be reached
        log.warning("action failed", job=job.name, target=action.target, error=str(exc))
        return ActionResult(action, "failed", f"{type(exc).__name__}: {exc}", outside=True)
    except Exception as exc:
        log.warning("action failed", job=job.name, target=action.target, error=str(exc))
        return ActionResult(action, "failed", f"{type(exc).__name__}: {exc}")
    return ActionResult(action, "applied")


# Waits before each further attempt of a run's closing write when the database is down.
FINISH_RETRY_WAITS: tuple[float, ...] = (0.5, 2.0)


def _finish(db: Database, result: RunResult, job: str, holder: str) -> None:
    """Record the run's outcome and release its lease, in one transaction, retried while the
    database is unavailable. When it stays down the run is failed (exit 1, never a usage
    error): the lease then expires on its own and the next run closes this one as
    `abandoned`."""
    result.finished_at = utcnow()
    for wait in (*FINISH_RETRY_WAITS, None):
        try:
            _write_finish(db, result, job, holder)
            return
        except Exception as exc:
            down = outage(exc)
            if down is None:
                raise
            if wait is not None:
                log.warning("cannot record the run yet; retrying", job=job, error=down, wait=wait)
                time.sleep(wait)
                continue
            log.error("cannot record the run", job=job, run_id=result.run_id, error=down)
            lost = f"the run could not be recorded ({down}); its lease expires on its own"
            result.error = f"{result.error}; {lost}" if result.error else lost
            if result.status != FAILED:
                result.status, result.failure, result.failure_exit = FAILED, "internal", 1


def _write_finish(db: Database, result: RunResult, job: str, holder: str) -> None:
    with _shielded(), db.session() as session:
        if result.run_id is not None:
            session.execute(
                update(JobRun)
                .where(JobRun.id == result.run_id)
                .values(
                    status=result.status,
                    finished_at=result.finished_at,
                    counts=dict(result.counts),
                    failed_actions=result.outcomes.get("failed", 0),
                    error=result.error,
                )
            )
        locks.drop(session, job, holder)


def _record_skipped(db: Database, spec: JobSpec, ctx: JobContext, result: RunResult) -> None:
    with db.session() as session:
        run = JobRun(
            job=spec.name,
            trigger=ctx.trigger,
            dry_run=ctx.dry_run,
            status=SKIPPED,
            now=ctx.now,
            started_at=result.started_at,
            finished_at=result.finished_at,
            counts={},
            error=result.error,
        )
        session.add(run)
        session.flush()
        result.run_id = run.id
