"""`faithflow health sweep`: run every health check, store each result as history, and open or
resolve incidents when a check starts or stops failing (runbook: docs/health.md).

plan: runs the checks (faithflow_ops.health.checks — read-only probes of the database, the DNS
resolver, SMTP and each configured provider API, plus job freshness, outbox backlog and webhook
failure rate computed at `now`) and compares each with the unresolved incidents of its cause
(`health:<check>`, or `job:<name>` for a job's check — the cause failed job runs share). It
yields, per check:

- `open_incident` when the check has failed FAITHFLOW_HEALTH_FAILURE_THRESHOLD (2) sweeps in a
  row (this one included: one blip opens nothing) and its cause has no unresolved incident
  (before the check's row, so the row links to it); a cause a job resolved less than
  FAITHFLOW_INCIDENT_FLAP_MINUTES ago reopens that incident (a flap) instead of a new one;
- `resolve_incident` when the check no longer fails (ok, warn or skipped) and its cause has an
  unresolved incident; also for an unresolved `health:` cause whose check no longer exists;
- `record_check` always: status ok|warn|fail|skipped, latency, detail.

A check that keeps failing gets no incident action: its `record_check` counts one more
occurrence of the open incident (raise_incident deduplicates on the cause). Only `fail` opens
an incident; `warn` shows in `health status` and the history.

apply: `record_check` inserts the history row unless a row for that check at that `now`
exists (StaleAction: a preview applied twice); `open_incident` raises the incident unless one is
already unresolved (StaleAction); `resolve_incident` resolves it, StaleAction when someone
already did. Escalation (alert webhook, PagerDuty) is `incidents escalate`'s job.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from faithflow_ops.actions import decode, encode
from faithflow_ops.config import HEALTH_GRACE_PREFIX, Settings
from faithflow_ops.errors import ConfigError
from faithflow_ops.health import checks
from faithflow_ops.health.checks import (
    CheckResult,
    JobSchedule,
    OpenIncident,
    RecordCheck,
    ResolveIncident,
    incident_cause,
    run_checks,
    severity,
)
from faithflow_ops.incidents.records import clear_incident, open_causes, raise_incident
from faithflow_ops.jobs import registry
from faithflow_ops.jobs.base import Action, Job, JobContext, StaleAction
from faithflow_ops.models import HealthCheckResult, Incident

KINDS = ("record_check", "open_incident", "resolve_incident")
ACTOR = "job:health_sweep"


class HealthSweep(Job):
    name = "health_sweep"
    table_columns = ("kind", "check", "status", "latency ms", "detail")

    @classmethod
    def table_rows(cls, action: Action) -> list[tuple[Any, ...]]:
        if action.kind == "record_check":
            record = decode(RecordCheck, action.data)
            latency = record.latency_ms
            shown = f"{latency:.0f}" if isinstance(latency, int | float) else "—"
            return [(action.kind, record.check, record.status, shown, record.detail)]
        return [(action.kind, decode(ResolveIncident, action.data).check, "", "", action.reason)]

    def check(self, ctx: JobContext) -> list[str]:
        """Refuse a FAITHFLOW_HEALTH_GRACE_<JOB> that names no job (a typo would silently
        leave the default grace)."""
        known = {spec.name.upper() for spec in registry.JOBS}
        unknown = sorted(set(ctx.settings.health_job_grace_overrides) - known)
        if unknown:
            raise ConfigError(
                f"{', '.join(HEALTH_GRACE_PREFIX + name for name in unknown)} names no job; "
                f"use one of: {', '.join(sorted(HEALTH_GRACE_PREFIX + n for n in known))}"
            )
        return []

    def plan(self, session: Session, ctx: JobContext) -> Iterator[Action]:
        results = run_checks(session, ctx.settings, ctx.now, monitored_jobs(ctx.settings))
        threshold = ctx.settings.health_failure_threshold
        streaks = _fail_streaks(
            session, [r.name for r in results if r.status == "fail"], ctx.now, threshold - 1
        )
        unresolved = open_causes(session, "health:") | open_causes(session, "job:")
        if ctx.progress is not None:
            ctx.progress.start(len(results))
        actions: list[Action] = []
        covered: set[str] = set()
        for result in results:
            cause, kind = incident_cause(result.name)
            covered.add(cause)
            incident: str | None = None
            if result.status == "fail":
                failing = streaks.get(result.name, 0) + 1
                if cause in unresolved:
                    incident = "ongoing"
                elif failing >= threshold:
                    incident = "opened"
                    actions.append(_open(result, cause, kind, failing))
            elif cause in unresolved:
                actions.append(_resolve(result.name, cause, f"{result.name} is {result.status}"))
            actions.append(_record(result, cause, incident, ctx))
        for cause in sorted(unresolved - covered):
            if cause.startswith("health:"):  # a check this version no longer runs
                check = cause.removeprefix("health:")
                actions.append(_resolve(check, cause, f"there is no {check!r} check any more"))
        yield from actions

    def apply(self, session: Session, ctx: JobContext, action: Action) -> None:
        if action.kind == "record_check":
            _apply_record(session, ctx, decode(RecordCheck, action.data))
        elif action.kind == "open_incident":
            opening = decode(OpenIncident, action.data)
            if _unresolved_id(session, opening.cause) is not None:
                raise StaleAction(f"an incident for {opening.cause} is already open")
            raise_incident(
                session,
                cause=opening.cause,
                kind=opening.kind,
                title=opening.title,
                now=ctx.now,
                severity=opening.severity,
                detail=opening.detail,
                reopen_within=_reopen_within(ctx),
            )
        elif action.kind == "resolve_incident":
            cause = decode(ResolveIncident, action.data).cause
            if clear_incident(session, cause, now=ctx.now, by=ACTOR) is None:
                raise StaleAction(f"no unresolved incident for {cause} any more")
        else:
            raise ValueError(f"health sweep has no action kind {action.kind!r}")


JOB = HealthSweep()


def monitored_jobs(settings: Settings) -> tuple[JobSchedule, ...]:
    """Every registered job with the schedule in force (CRON_<NAME> or the registry default)
    and its grace (FAITHFLOW_HEALTH_GRACE_<NAME>, if set), for its freshness check; an invalid
    CRON_<NAME> becomes that check's failure."""
    return tuple(_job_schedule(spec, settings) for spec in registry.JOBS)


def _job_schedule(spec: registry.JobSpec, settings: Settings) -> JobSchedule:
    grace = settings.health_job_grace_overrides.get(spec.name.upper())
    try:
        expr = registry.schedule_for(spec, settings.cron_overrides)
    except ConfigError as exc:
        return JobSchedule(spec.name, spec.cli_command, None, str(exc), grace)
    return JobSchedule(spec.name, spec.cli_command, expr, None, grace)


def _reopen_within(ctx: JobContext) -> dt.timedelta:
    return dt.timedelta(minutes=ctx.settings.incident_flap_minutes)


def _fail_streaks(
    session: Session, names: list[str], now: dt.datetime, depth: int
) -> dict[str, int]:
    """Per check of `names`: how many of its stored results just before `now` failed in a row
    (at most `depth`; ix_health_checks_check_at serves each lookup)."""
    streaks: dict[str, int] = {}
    if depth <= 0:
        return streaks
    for name in names:
        recent = session.scalars(
            select(HealthCheckResult.status)
            .where(HealthCheckResult.check_name == name, HealthCheckResult.checked_at < now)
            .order_by(HealthCheckResult.checked_at.desc(), HealthCheckResult.id.desc())
            .limit(depth)
        ).all()
        count = 0
        for status in recent:
            if status != "fail":
                break
            count += 1
        streaks[name] = count
    return streaks


def check_names() -> list[str]:
    """Every check the sweep runs, in its order (`health status` lists them in this order)."""
    return checks.check_names(spec.name for spec in registry.JOBS)


def _title(result: CheckResult) -> str:
    if result.name.startswith("job:"):
        job = result.name.removeprefix("job:")
        if result.data.get("latest_status") in ("failed", "abandoned", "partial"):
            status = result.data["latest_status"]
            return f"job {job} {status} (run {result.data.get('latest_run')})"
        if result.data.get("last_success_at"):
            return f"job {job} is down: no successful run since {result.data['last_success_at']}"
        return f"job {job} is failing its health check"
    return f"health check {result.name} is failing"


def _open(result: CheckResult, cause: str, kind: str, failing: int) -> Action:
    opening = OpenIncident(
        check=result.name,
        cause=cause,
        kind=kind,
        title=_title(result),
        severity=severity(result.name),
        detail=result.detail,
    )
    reason = f"{opening.title} ({failing} failing sweep{'s' if failing != 1 else ''} in a row)"
    return Action("open_incident", f"incident:{cause}", reason, encode(opening))


def _resolve(check: str, cause: str, why: str) -> Action:
    payload = encode(ResolveIncident(check=check, cause=cause))
    return Action("resolve_incident", f"incident:{cause}", f"{why}: resolve {cause}", payload)


def _record(result: CheckResult, cause: str, incident: str | None, ctx: JobContext) -> Action:
    record = RecordCheck(
        check=result.name,
        status=result.status,
        latency_ms=result.latency_ms,
        detail=result.detail,
        data=result.data,
        cause=cause,
        incident=incident,
        checked_at=ctx.now,
    )
    reason = f"{result.status}: {result.detail}"
    return Action("record_check", f"check:{result.name}", reason, encode(record))


def _unresolved_id(session: Session, cause: str) -> int | None:
    found = session.scalar(
        select(Incident.id).where(Incident.cause == cause, Incident.status != "resolved")
    )
    return int(found) if found is not None else None


def _apply_record(session: Session, ctx: JobContext, record: RecordCheck) -> None:
    check = record.check
    exists = session.scalar(
        select(HealthCheckResult.id).where(
            HealthCheckResult.check_name == check, HealthCheckResult.checked_at == ctx.now
        )
    )
    if exists is not None:
        raise StaleAction(f"{check} is already recorded at {ctx.now.isoformat()}")
    incident_id: int | None = None
    if record.status == "fail":
        if record.incident == "ongoing":
            # Still failing: one more occurrence of its incident (a new one if a human
            # resolved it meanwhile), with the latest detail.
            cause, kind = incident_cause(check)
            current = _unresolved_title(session, cause)
            raised = raise_incident(
                session,
                cause=cause,
                kind=kind,
                title=current or f"health check {check} is failing",
                now=ctx.now,
                severity=severity(check),
                detail=record.detail,
                reopen_within=_reopen_within(ctx),
            )
            incident_id = raised.id
        else:
            incident_id = _unresolved_id(session, record.cause)
    session.add(
        HealthCheckResult(
            check_name=check,
            status=record.status,
            latency_ms=record.latency_ms,
            detail=record.detail,
            checked_at=ctx.now,
            data=record.data or {},
            incident_id=incident_id,
        )
    )
    session.flush()


def _unresolved_title(session: Session, cause: str) -> str | None:
    return session.scalar(
        select(Incident.title).where(Incident.cause == cause, Incident.status != "resolved")
    )
