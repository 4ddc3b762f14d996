"""The health checks: each returns a `CheckResult` (ok|warn|fail|skipped, latency, detail, data).

Read-only: the provider probes only read (Stripe `GET /v1/balance`, Paystack `GET /balance`,
Twilio `GET /Accounts/{sid}.json`, Render `GET /v1/services/{id}`, SMTP EHLO/NOOP without a
message, one DNS query), one attempt each within FAITHFLOW_HEALTH_TIMEOUT seconds; the database
checks only SELECT. A provider that is not configured is `skipped`, naming the variable — never a
failure. docs/health.md is the runbook: what each check means and what to do when it fails.

Check names: `database`, `dns`, `smtp`, `stripe`, `paystack`, `twilio`, `render`,
`outbox_backlog`, `webhook_failures`, `webhooks_backlog`, `alert_route` (a setting only: warns
when neither ALERT_WEBHOOK_URL nor PAGERDUTY_ROUTING_KEY is set), and `job:<name>` for every
registered job. The jobs come in as `JobSchedule`s built from the registry by
jobs/health_sweep: health never imports jobs.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from sqlalchemy import case, func, select, text

from faithflow_ops.clock import iso
from faithflow_ops.errors import UserError
from faithflow_ops.models import JobRun, OutboundMessage, WebhookEvent
from faithflow_ops.providers._http import ProviderError, RetryPolicy

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from faithflow_ops.config import Settings

Status = Literal["ok", "warn", "fail", "skipped"]
STATUSES: tuple[Status, ...] = ("ok", "warn", "fail", "skipped")

PROVIDER_CHECKS = ("stripe", "paystack", "twilio", "render")
PROBE_CHECKS = ("dns", "smtp", *PROVIDER_CHECKS)
DATABASE_CHECKS = ("database", "outbox_backlog", "webhook_failures", "webhooks_backlog")

DB_SLOW_MS = 1000.0  # a database round trip slower than this warns
# Job freshness as Healthchecks.io judges a cron check (healthchecks.io/docs/configuring_checks:
# "Grace Time is the additional time to wait before sending an alert when a check is late"):
# the job's next expected run is the first time its schedule fires after its last successful
# run; it is `late` (warn) once that time + the scheduling slack (FAITHFLOW_HEALTH_JOB_GRACE_
# SECONDS) has passed, and `down` (fail: an incident) once that time + its grace has — the
# grace being FAITHFLOW_HEALTH_GRACE_<JOB> seconds, else FAITHFLOW_HEALTH_JOB_GRACE_FRACTION
# (0.25) of its period, never under the slack. A daily job missing one run is down 6 hours
# after the missed time, not three days later.
WEBHOOK_WINDOW = dt.timedelta(hours=1)
# webhooks_backlog: the oldest delivery still waiting to be applied (DESIGN §4: acknowledged
# once stored, applied by a worker) — degraded after 5 minutes, failing after 30.
WEBHOOK_BACKLOG_WARN = dt.timedelta(minutes=5)
WEBHOOK_BACKLOG_FAIL = dt.timedelta(minutes=30)


@dataclass(frozen=True)
class CheckResult:
    name: str
    status: Status
    detail: str
    latency_ms: float | None = None
    data: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class JobSchedule:
    """A scheduled job as its freshness check (`job:<name>`) sees it."""

    name: str
    cli_command: str  # how an operator runs it, e.g. `faithflow dunning run`
    schedule: str | None  # the cron expression in force (CRON_<NAME> or the default)
    schedule_error: str | None = None  # why `schedule` is None: the error naming CRON_<NAME>
    grace_seconds: int | None = None  # FAITHFLOW_HEALTH_GRACE_<NAME>, else a share of the period


# --- action payloads (`health sweep`; faithflow_ops.actions.encode/decode) -------------------


@dataclass(frozen=True)
class RecordCheck:
    """`record_check`: store one check's result as history (linked to its incident)."""

    check: str
    status: Status
    latency_ms: float | None
    detail: str
    data: dict[str, Any]
    cause: str
    incident: str | None  # opened | ongoing | None (not failing)
    checked_at: dt.datetime


@dataclass(frozen=True)
class OpenIncident:
    """`open_incident`: a failing check whose cause has no unresolved incident."""

    check: str
    cause: str
    kind: str
    title: str
    severity: str
    detail: str


@dataclass(frozen=True)
class ResolveIncident:
    """`resolve_incident`: the check no longer fails (or no longer exists)."""

    check: str
    cause: str


def check_names(jobs: Iterable[str]) -> list[str]:
    """Every check the sweep runs, in its order, given the names of the registered jobs."""
    return [
        *DATABASE_CHECKS[:1],
        *PROBE_CHECKS,
        *DATABASE_CHECKS[1:],
        "alert_route",
        *(f"job:{name}" for name in jobs),
    ]


def incident_cause(check: str) -> tuple[str, str]:
    """The incident a failing check raises: (cause, kind). A job's check shares the cause of
    its failed runs, `job:<name>`; every other check is `health:<check>`."""
    if check.startswith("job:"):
        return check, "job"
    return f"health:{check}", "health"


def severity(check: str) -> str:
    """The database down stops everything: critical. Everything else: warning."""
    return "critical" if check == "database" else "warning"


def run_checks(
    session: Session, settings: Settings, now: dt.datetime, jobs: Sequence[JobSchedule]
) -> list[CheckResult]:
    """Every check, in `check_names()` order, with one freshness check per job of `jobs`. The
    outside probes run concurrently on threads while the database checks run on `session` in
    this thread."""
    probes: dict[str, Callable[[], CheckResult]] = {
        "dns": lambda: dns_check(settings),
        "smtp": lambda: smtp_check(settings),
        "stripe": lambda: stripe_check(settings),
        "paystack": lambda: paystack_check(settings),
        "twilio": lambda: twilio_check(settings),
        "render": lambda: render_check(settings),
    }
    results: dict[str, CheckResult] = {}
    with ThreadPoolExecutor(len(probes), thread_name_prefix="health-probe") as pool:
        futures = {name: pool.submit(_guarded, name, fn) for name, fn in probes.items()}
        results["database"] = _guarded("database", lambda: database_check(session))
        results["outbox_backlog"] = _guarded(
            "outbox_backlog", lambda: outbox_check(session, settings, now)
        )
        results["webhook_failures"] = _guarded(
            "webhook_failures", lambda: webhook_check(session, settings, now)
        )
        results["webhooks_backlog"] = _guarded(
            "webhooks_backlog", lambda: webhook_backlog_check(session, now)
        )
        results["alert_route"] = _guarded("alert_route", lambda: alert_route_check(settings))
        for result in job_checks(session, settings, now, jobs):
            results[result.name] = result
        for name, future in futures.items():
            results[name] = future.result()
    names = check_names(job.name for job in jobs)
    return [results[name] for name in names if name in results]


def _guarded(name: str, fn: Callable[[], CheckResult]) -> CheckResult:
    """A check that raised (a bug, a setting that is wrong) fails with the error as detail."""
    started = time.perf_counter()
    try:
        return fn()
    except UserError as exc:
        return CheckResult(name, "fail", str(exc), _ms(started))
    except Exception as exc:
        return CheckResult(name, "fail", f"{type(exc).__name__}: {exc}", _ms(started))


def _ms(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 2)


def _ago(delta: dt.timedelta) -> str:
    seconds = int(delta.total_seconds())
    if seconds < 0:
        return "in the future"
    if seconds < 120:
        return f"{seconds} s ago"
    if seconds < 2 * 3600:
        return f"{seconds // 60} min ago"
    if seconds < 2 * 86400:
        return f"{seconds // 3600} h {seconds % 3600 // 60} min ago"
    return f"{seconds // 86400} d {seconds % 86400 // 3600} h ago"


# --- the database -----------------------------------------------------------------------------


def database_check(session: Session) -> CheckResult:
    started = time.perf_counter()
    value = session.execute(text("SELECT 1")).scalar()
    latency = _ms(started)
    dialect = session.get_bind().dialect.name
    if value != 1:
        return CheckResult("database", "fail", f"SELECT 1 answered {value!r}", latency)
    if latency > DB_SLOW_MS:
        detail = f"{dialect} answered SELECT 1 in {latency:.0f} ms (slower than {DB_SLOW_MS:.0f})"
        return CheckResult("database", "warn", detail, latency, {"dialect": dialect})
    detail = f"{dialect} answered SELECT 1 in {latency:.1f} ms"
    return CheckResult("database", "ok", detail, latency, {"dialect": dialect})


def outbox_check(session: Session, settings: Settings, now: dt.datetime) -> CheckResult:
    """Messages due (queued or scheduled, `next_attempt_at` passed) but not sent: any due for
    over FAITHFLOW_HEALTH_OUTBOX_BACKLOG minutes fails; over half of it warns."""
    limit = dt.timedelta(minutes=settings.health_outbox_backlog_minutes)
    fail_before, warn_before = now - limit, now - limit / 2
    started = time.perf_counter()
    row = session.execute(
        # the partial index ix_outbound_messages_dispatch_due serves this
        select(
            func.count(),
            func.coalesce(
                func.sum(case((OutboundMessage.next_attempt_at < fail_before, 1), else_=0)), 0
            ),
            func.min(OutboundMessage.next_attempt_at),
        ).where(
            OutboundMessage.status.in_(("queued", "scheduled")),
            OutboundMessage.next_attempt_at < warn_before,
        )
    ).one()
    latency = _ms(started)
    overdue, very_overdue, oldest = int(row[0]), int(row[1]), row[2]
    data: dict[str, Any] = {
        "overdue": overdue,
        "over_threshold": very_overdue,
        "oldest_due_at": iso(oldest),
        "threshold_minutes": settings.health_outbox_backlog_minutes,
    }
    minutes = settings.health_outbox_backlog_minutes
    if not overdue:
        detail = f"no message has been due for more than {minutes / 2:g} min"
        return CheckResult("outbox_backlog", "ok", detail, latency, data)
    oldest_text = f"oldest due {iso(oldest)}, {_ago(now - oldest)}"
    if very_overdue:
        detail = (
            f"{very_overdue} message{'s' if very_overdue != 1 else ''} due for more than "
            f"{minutes} min and not sent ({oldest_text}); is `comms dispatch` running?"
        )
        return CheckResult("outbox_backlog", "fail", detail, latency, data)
    detail = (
        f"{overdue} message{'s' if overdue != 1 else ''} due for more than {minutes / 2:g} min "
        f"and not sent ({oldest_text})"
    )
    return CheckResult("outbox_backlog", "warn", detail, latency, data)


def webhook_check(session: Session, settings: Settings, now: dt.datetime) -> CheckResult:
    """The share of webhook events first received in the last hour whose handling `failed`:
    at least FAITHFLOW_HEALTH_WEBHOOK_FAILURE_RATE percent fails, half of it warns. Fewer than
    FAITHFLOW_HEALTH_WEBHOOK_MIN_EVENTS events: any failed one warns (too few for a share)."""
    since = now - WEBHOOK_WINDOW
    started = time.perf_counter()
    row = session.execute(
        # ix_webhook_events_first_received_at serves the window
        select(
            func.count(),
            func.coalesce(func.sum(case((WebhookEvent.status == "failed", 1), else_=0)), 0),
        ).where(WebhookEvent.first_received_at > since, WebhookEvent.first_received_at <= now)
    ).one()
    latency = _ms(started)
    total, failed = int(row[0]), int(row[1])
    threshold = settings.health_webhook_failure_rate
    share = 100.0 * failed / total if total else 0.0
    data: dict[str, Any] = {
        "events": total,
        "failed": failed,
        "failed_percent": round(share, 2),
        "threshold_percent": threshold,
    }
    counted = f"{failed} of {total} webhook event{'s' if total != 1 else ''} in the last hour"
    hint = "; see `faithflow webhooks list --status failed`, fix, then `webhooks replay --failed`"
    if total < settings.health_webhook_min_events:
        if failed:
            detail = f"{counted} failed (too few events to judge a share){hint}"
            return CheckResult("webhook_failures", "warn", detail, latency, data)
        return CheckResult("webhook_failures", "ok", f"{counted}, none failed", latency, data)
    if share >= threshold:
        detail = f"{counted} failed ({share:.1f}%, threshold {threshold:g}%){hint}"
        return CheckResult("webhook_failures", "fail", detail, latency, data)
    if share >= threshold / 2:
        detail = f"{counted} failed ({share:.1f}%, warning from {threshold / 2:g}%){hint}"
        return CheckResult("webhook_failures", "warn", detail, latency, data)
    return CheckResult("webhook_failures", "ok", f"{counted} failed ({share:.1f}%)", latency, data)


def webhook_backlog_check(session: Session, now: dt.datetime) -> CheckResult:
    """Deliveries stored but not applied yet: warn (degraded) when the oldest has waited over
    5 minutes, fail over 30 — the worker is off, stuck or far behind."""
    from faithflow_ops.webhooks.applier import backlog

    started = time.perf_counter()
    count, age = backlog(session, now)
    latency = _ms(started)
    data: dict[str, Any] = {"waiting": count, "oldest_seconds": round(age, 1)}
    waiting = f"{count} webhook deliver{'ies' if count != 1 else 'y'} waiting"
    if count == 0:
        return CheckResult("webhooks_backlog", "ok", "no webhook delivery waiting", latency, data)
    oldest = f"{waiting}, the oldest for {age / 60:.0f} min"
    hint = (
        "; is the receiver's worker running (FAITHFLOW_WEBHOOK_WORKER) or `faithflow webhooks "
        "apply` scheduled? `faithflow webhooks list --status received` shows them"
    )
    if age > WEBHOOK_BACKLOG_FAIL.total_seconds():
        return CheckResult("webhooks_backlog", "fail", oldest + hint, latency, data)
    if age > WEBHOOK_BACKLOG_WARN.total_seconds():
        return CheckResult("webhooks_backlog", "warn", oldest + hint, latency, data)
    return CheckResult("webhooks_backlog", "ok", f"{waiting} (oldest {age:.0f} s)", latency, data)


# --- escalation -------------------------------------------------------------------------------


def alert_route_check(settings: Settings) -> CheckResult:
    """Can an incident reach a human? Neither ALERT_WEBHOOK_URL nor PAGERDUTY_ROUTING_KEY set:
    warn (incidents are only recorded; `incidents escalate` reports them `not_escalated`). Only
    which routes are set is told, never their URL or key."""
    routes = [
        name
        for name, value in (
            ("ALERT_WEBHOOK_URL", settings.alert_webhook_url),
            ("PAGERDUTY_ROUTING_KEY", settings.pagerduty_routing_key),
        )
        if value
    ]
    if not routes:
        detail = (
            "no alert route configured: neither ALERT_WEBHOOK_URL nor PAGERDUTY_ROUTING_KEY is "
            "set, so incidents are recorded but reach no one; set one (docs/incidents.md)"
        )
        return CheckResult("alert_route", "warn", detail, None, {"routes": []})
    detail = f"incidents escalate through {' and '.join(routes)}"
    return CheckResult("alert_route", "ok", detail, None, {"routes": routes})


# --- job freshness ----------------------------------------------------------------------------


def _fire_times(expr: str, after: dt.datetime) -> Iterator[dt.datetime]:
    from cronsim import CronSim

    start = after.astimezone(dt.UTC).replace(second=0, microsecond=0)
    return iter(CronSim(expr, start))


def job_checks(
    session: Session, settings: Settings, now: dt.datetime, jobs: Sequence[JobSchedule]
) -> list[CheckResult]:
    """One check per job of `jobs` (`job:<name>`): its last successful run (`succeeded`, not a
    preview, started at or before `now`) against its schedule (the Healthchecks.io note
    above), and its latest finished run: `failed`, `abandoned` or `partial` (some of its
    actions failed: it counts against the job's health, issue 22.5) fails the check."""
    return [_job_check(session, settings, spec, now) for spec in jobs]


def job_grace(settings: Settings, spec: JobSchedule, expected: dt.datetime) -> dt.timedelta:
    """How long after `expected` a missing run is `down`: the job's own grace, else the
    configured share of its period (the gap to the schedule's next time), never under the
    scheduling slack."""
    slack = dt.timedelta(seconds=settings.health_job_grace_seconds)
    if spec.grace_seconds is not None:
        return dt.timedelta(seconds=spec.grace_seconds)
    assert spec.schedule is not None
    period = next(_fire_times(spec.schedule, expected)) - expected
    return max(slack, period * settings.health_job_grace_fraction)


def _job_check(
    session: Session, settings: Settings, spec: JobSchedule, now: dt.datetime
) -> CheckResult:
    name = f"job:{spec.name}"
    started = time.perf_counter()
    expr = spec.schedule
    if expr is None:
        error = spec.schedule_error or "no schedule"
        return CheckResult(name, "fail", error, _ms(started), {"schedule": None})
    real = (JobRun.job == spec.name, JobRun.dry_run.is_(False), JobRun.started_at <= now)
    # ix_job_runs_job_started serves both: newest first per job
    last_ok = session.execute(
        select(JobRun.id, JobRun.started_at)
        .where(*real, JobRun.status == "succeeded")
        .order_by(JobRun.started_at.desc(), JobRun.id.desc())
        .limit(1)
    ).first()
    latest = session.execute(
        select(JobRun.id, JobRun.started_at, JobRun.status, JobRun.error, JobRun.failed_actions)
        .where(*real, JobRun.status.in_(("succeeded", "partial", "failed", "abandoned")))
        .order_by(JobRun.started_at.desc(), JobRun.id.desc())
        .limit(1)
    ).first()
    latency = _ms(started)
    data: dict[str, Any] = {
        "job": spec.name,
        "schedule": expr,
        "last_success_run": last_ok.id if last_ok else None,
        "last_success_at": iso(last_ok.started_at) if last_ok else None,
        "latest_run": latest.id if latest else None,
        "latest_status": latest.status if latest else None,
    }
    success_text = (
        f"last successful run {last_ok.id} started {iso(last_ok.started_at)} "
        f"({_ago(now - last_ok.started_at)})"
        if last_ok
        else "no successful run yet"
    )
    if latest is not None and latest.status in ("failed", "abandoned", "partial"):
        if latest.status == "partial":
            failed = latest.failed_actions or 0
            error = f"{failed} action{'s' if failed != 1 else ''} failed" + (
                f" ({latest.error.strip().splitlines()[0][:200]})" if latest.error else ""
            )
        else:
            error = (latest.error or "no error recorded").strip().splitlines()[0][:300]
        detail = (
            f"run {latest.id} (started {iso(latest.started_at)}) {latest.status}: {error}; "
            f"{success_text}; see `faithflow jobs runs --job {spec.name}`"
        )
        return CheckResult(name, "fail", detail, latency, data)
    if last_ok is None:
        detail = f"never run (schedule {expr}); run `{spec.cli_command}` or check cron"
        return CheckResult(name, "warn", detail, latency, data)
    expected = next(_fire_times(expr, last_ok.started_at))
    grace = job_grace(settings, spec, expected)
    slack = min(dt.timedelta(seconds=settings.health_job_grace_seconds), grace)
    late_at, down_at = expected + slack, expected + grace
    data.update(
        expected_at=iso(expected),
        grace_seconds=int(grace.total_seconds()),
        late_after=iso(late_at),
        down_after=iso(down_at),
    )
    if now > down_at:
        detail = (
            f"down: {success_text}; schedule {expr} expected a run at {iso(expected)} "
            f"(grace {_span(grace)}); check cron / the scheduler and the job's log"
        )
        return CheckResult(name, "fail", detail, latency, data)
    if now > late_at:
        detail = (
            f"late: {success_text}; schedule {expr} expected a run at {iso(expected)}; "
            f"down after {iso(down_at)}"
        )
        return CheckResult(name, "warn", detail, latency, data)
    detail = f"{success_text}; next run expected {iso(expected)}, down after {iso(down_at)}"
    return CheckResult(name, "ok", detail, latency, data)


def _span(delta: dt.timedelta) -> str:
    seconds = int(delta.total_seconds())
    if seconds < 120:
        return f"{seconds} s"
    if seconds < 2 * 3600:
        return f"{seconds // 60} min"
    return f"{seconds // 3600} h {seconds % 3600 // 60} min".replace(" 0 min", "")


# --- outside services -------------------------------------------------------------------------


def _policy(settings: Settings) -> RetryPolicy:
    """A health probe: one attempt, FAITHFLOW_HEALTH_TIMEOUT seconds."""
    return RetryPolicy(attempts=1, timeout=settings.health_timeout, backoff=0, max_wait=0)


def _missing(settings: Settings, *pairs: tuple[str, str]) -> list[str]:
    return [variable for attr, variable in pairs if not getattr(settings, attr)]


def _skipped(name: str, missing: list[str]) -> CheckResult:
    verb = "is" if len(missing) == 1 else "are"
    detail = f"{' and '.join(missing)} {verb} not set: {name} is not configured"
    return CheckResult(name, "skipped", detail, None, {"missing": missing})


def _probe(name: str, fn: Callable[[], str]) -> CheckResult:
    """Run one provider probe: ok with its detail, or the ProviderError as a failure (a 429 is
    reachable and authenticated, only busy: warn)."""
    started = time.perf_counter()
    try:
        detail = fn()
    except ProviderError as exc:
        status: Status = "warn" if exc.status == 429 else "fail"
        data = {"http_status": exc.status, "timed_out": exc.timed_out}
        return CheckResult(name, status, str(exc), _ms(started), data)
    latency = _ms(started)
    return CheckResult(name, "ok", f"{detail} in {latency:.0f} ms", latency)


def stripe_check(settings: Settings) -> CheckResult:
    missing = _missing(settings, ("stripe_secret_key", "STRIPE_SECRET_KEY"))
    if missing:
        return _skipped("stripe", missing)
    from faithflow_ops.providers.stripe import health_check

    def go() -> str:
        health_check(settings, _policy(settings))
        return f"GET {settings.stripe_api_base}/v1/balance authenticated"

    return _probe("stripe", go)


def paystack_check(settings: Settings) -> CheckResult:
    missing = _missing(settings, ("paystack_secret_key", "PAYSTACK_SECRET_KEY"))
    if missing:
        return _skipped("paystack", missing)
    from faithflow_ops.providers.paystack import health_check

    def go() -> str:
        health_check(settings, _policy(settings))
        return f"GET {settings.paystack_api_base}/balance authenticated"

    return _probe("paystack", go)


def twilio_check(settings: Settings) -> CheckResult:
    missing = _missing(
        settings,
        ("twilio_account_sid", "TWILIO_ACCOUNT_SID"),
        ("twilio_auth_token", "TWILIO_AUTH_TOKEN"),
    )
    if missing:
        return _skipped("twilio", missing)
    from faithflow_ops.providers.twilio import health_check

    sid = settings.twilio_account_sid
    seen: list[str] = []

    def go() -> str:
        seen.append(health_check(settings, timeout=settings.health_timeout))
        return f"account {sid} is {seen[0]}"

    result = _probe("twilio", go)
    if not seen:
        return result
    result = dataclasses.replace(result, data={**result.data, "account_status": seen[0]})
    if seen[0] != "active":
        detail = f"account {sid} is {seen[0]}, not active: SMS and WhatsApp cannot be sent"
        return dataclasses.replace(result, status="fail", detail=detail)
    return result


def render_check(settings: Settings) -> CheckResult:
    missing = _missing(
        settings,
        ("render_api_key", "RENDER_API_KEY"),
        ("render_service_id", "RENDER_SERVICE_ID"),
    )
    if missing:
        return _skipped("render", missing)
    from faithflow_ops.providers.render import RenderAPI

    def go() -> str:
        with RenderAPI(settings, _policy(settings)) as api:
            api.check()
        return f"service {settings.render_service_id} readable"

    return _probe("render", go)


def smtp_check(settings: Settings) -> CheckResult:
    missing = _missing(settings, ("smtp_url", "SMTP_URL"))
    if missing:
        return _skipped("smtp", missing)
    from faithflow_ops.config import mask_url, parse_smtp_url
    from faithflow_ops.providers.smtp import health_check

    url = parse_smtp_url(settings.smtp_url or "")

    def go() -> str:
        steps = health_check(settings, timeout=settings.health_timeout)
        return f"{mask_url(settings.smtp_url or '')}: {steps}"

    result = _probe("smtp", go)
    return dataclasses.replace(result, data={**result.data, "host": url.host, "port": url.port})


def dns_check(settings: Settings) -> CheckResult:
    """The resolver the domain probes use (FAITHFLOW_DNS_NAMESERVERS, else the system's)
    answers: any answer, NXDOMAIN included, is ok; a timeout or SERVFAIL fails."""
    from faithflow_ops.providers.dns import resolver_check_sync

    probe_settings = dataclasses.replace(
        settings, dns_timeout=min(settings.dns_timeout, settings.health_timeout)
    )
    result = resolver_check_sync(probe_settings)
    servers = ", ".join(settings.dns_nameservers) or "the system resolver"
    latency = round(result.latency_ms, 2)
    data = {
        "name": result.name,
        "answer": result.status,
        "nameservers": list(settings.dns_nameservers),
    }
    if result.transient:
        return CheckResult("dns", "fail", f"{servers}: {result.detail}", latency, data)
    detail = f"{servers} answered {result.name or '.'} ({result.status}) in {latency:.0f} ms"
    return CheckResult("dns", "ok", detail, latency, data)
