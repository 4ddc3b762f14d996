"""Prometheus metrics for one receiver app, and the middleware that records requests.

Each app gets its own `CollectorRegistry`, so building several apps (tests, workers) never
collides on metric names. With `faithflow serve --workers N` every worker counts its own
requests; scrape with a per-process target or run one worker.
"""

from __future__ import annotations

import threading
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, cast

import structlog
from litestar.enums import ScopeType
from prometheus_client import CollectorRegistry, Counter, Histogram

from faithflow_ops.db import utcnow

if TYPE_CHECKING:
    from litestar import Litestar
    from litestar.types import ASGIApp, Message, Receive, Scope, Send

    from faithflow_ops.db import Database
    from faithflow_ops.slo.tallies import Tally

log = structlog.get_logger("faithflow.receiver")

# Probes hit these every few seconds; a success is not worth a log line.
_QUIET_PATHS = frozenset({"/healthz", "/readyz", "/metrics"})


# Requests counted in the request tallies (slo.tallies): the receiver's work (webhooks, task
# endpoints, callbacks) is POST; probes, /metrics and the docs are GET.
_TALLIED_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


@dataclass
class Metrics:
    registry: CollectorRegistry = field(default_factory=CollectorRegistry)
    # answers counted for the database (slo report); None: not counted
    tally: Tally | None = None

    def __post_init__(self) -> None:
        self.requests = Counter(
            "faithflow_http_requests",
            "HTTP requests answered, by route template, method and status.",
            ["method", "route", "status"],
            registry=self.registry,
        )
        # Its _count is also the request counter the SLOs read (ops/slo.toml): the status
        # class (2xx…5xx) keeps the label set small where the exact status would not.
        self.latency = Histogram(
            "faithflow_http_request_duration_seconds",
            "Time to answer an HTTP request, by route template, method and status class.",
            ["method", "route", "status_class"],
            registry=self.registry,
        )
        self.webhooks = Counter(
            "faithflow_webhook_deliveries",
            "Webhook deliveries by provider, scope and result: the inbox status (applied, "
            "ignored, unmatched, stale, failed), duplicate, or why it was refused "
            "(bad_signature, not_json, malformed, forbidden_address, not_configured, "
            "wrong_account). Twilio status callbacks count as provider twilio, scope status.",
            ["provider", "scope", "result"],
            registry=self.registry,
        )
        self.webhook_apply_latency = Histogram(
            "faithflow_webhook_apply_latency_seconds",
            "Time from a webhook delivery's acknowledgement (stored) to its effects applied by "
            "the receiver's worker.",
            registry=self.registry,
            buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600),
        )
        # `job_name`, not `job`: Prometheus's own target label `job` would rename ours
        # `exported_job` at scrape time.
        self.job_runs = Counter(
            "faithflow_job_runs",
            "Job runs started through this receiver, by job, trigger and final status.",
            ["job_name", "trigger", "status"],
            registry=self.registry,
        )
        self.job_duration = Histogram(
            "faithflow_job_run_duration_seconds",
            "Wall time of job runs started in this process (task endpoints, internal "
            "scheduler), by job and final status.",
            ["job_name", "status"],
            registry=self.registry,
            buckets=(0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600),
        )

    def observe_run(self, job: str, trigger: str, result: Any) -> None:
        """Count and time one finished run (a `RunResult`)."""
        self.job_runs.labels(job, trigger, result.status).inc()
        if result.started_at is not None and result.finished_at is not None:
            seconds = (result.finished_at - result.started_at).total_seconds()
            self.job_duration.labels(job, result.status).observe(max(seconds, 0.0))


def status_class(status: int) -> str:
    """200 → "2xx"; the label the SLO rules select on."""
    return f"{status // 100}xx" if 100 <= status < 600 else "other"


class MetricsMiddleware:
    """Counts and times every routed request; writes one structured log line per request."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app, self.metrics = app, metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != ScopeType.HTTP:
            await self.app(scope, receive, send)
            return
        status = 500  # what the server answers if the app dies before starting a response
        started = time.perf_counter()

        async def send_and_watch(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_and_watch)
        finally:
            seconds = time.perf_counter() - started
            route = scope.get("path_template") or "unmatched"
            method = scope["method"]
            self.metrics.requests.labels(method, route, str(status)).inc()
            self.metrics.latency.labels(method, route, status_class(status)).observe(seconds)
            tally = self.metrics.tally
            # "unmatched" stands for any path: not an objective's route
            if tally is not None and method in _TALLIED_METHODS and route != "unmatched":
                tally.add(route, status_class(status), seconds, utcnow())
            if status >= 400 or scope["path"] not in _QUIET_PATHS:
                log.info(
                    "request",
                    method=method,
                    path=scope["path"],
                    status=status,
                    ms=round(seconds * 1000, 1),
                    **cast("dict[str, Any]", scope.get("log_fields", {})),  # added by the route
                )


class WebhookBacklog:
    """Prometheus collector read at each scrape: webhook deliveries stored but not applied yet
    (received, or failed and due) and the age of the oldest of them. A scrape while the
    database is down leaves the two gauges out rather than failing `/metrics`."""

    def __init__(self, db: Database) -> None:
        self.db = db

    @staticmethod
    def _families(count: float, age: float) -> list[Any]:
        from prometheus_client.core import GaugeMetricFamily

        return [
            GaugeMetricFamily(
                "faithflow_webhook_backlog",
                "Webhook deliveries stored and waiting to be applied (received, or failed and "
                "due again).",
                value=count,
            ),
            GaugeMetricFamily(
                "faithflow_webhook_oldest_waiting_seconds",
                "Age of the oldest webhook delivery waiting to be applied (0 with none).",
                value=age,
            ),
        ]

    def describe(self) -> list[Any]:
        return self._families(0, 0)

    def collect(self) -> list[Any]:
        from faithflow_ops.db import utcnow
        from faithflow_ops.webhooks.applier import backlog

        try:
            with self.db.read_session() as session:
                count, age = backlog(session, utcnow())
        except Exception as exc:  # the database is down: /metrics still answers
            log.warning("webhook backlog not read", error=type(exc).__name__)
            return []
        return self._families(count, age)


class StoredState:
    """Prometheus collector read at each scrape from the database, so runs of cron-started
    jobs (other processes) and the outbox count too: recorded runs per job and status, each
    job's last success, finished outbound messages per channel and status, and the outbox
    backlog. Dry runs and skipped runs are not counted. Left out while the database is down.

    Cost: two GROUP BY counts per scrape (job_runs, outbound_messages by status, which has an
    index) plus the backlog's partial-index read."""

    def __init__(self, db: Database) -> None:
        self.db = db

    @staticmethod
    def _families(state: Any) -> list[Any]:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        runs = CounterMetricFamily(
            "faithflow_job_runs_recorded",
            "Job runs recorded in job_runs (every trigger: cron, task endpoint, scheduler), "
            "not dry runs, by job and final status.",
            labels=["job_name", "status"],
        )
        last = GaugeMetricFamily(
            "faithflow_job_last_success_timestamp_seconds",
            "Unix time when each job's latest successful (or partly successful) run finished.",
            labels=["job_name"],
        )
        messages = CounterMetricFamily(
            "faithflow_outbox_messages_finished",
            "Outbound messages that reached a final status (sent, delivered, failed, unknown), "
            "by channel and status.",
            labels=["channel", "status"],
        )
        for (job, status), count in sorted(state.runs.items()):
            runs.add_metric([job, status], count)
        for job, when in sorted(state.last_success.items()):
            last.add_metric([job], when)
        for (channel, status), count in sorted(state.messages.items()):
            messages.add_metric([channel, status], count)
        return [
            runs,
            last,
            messages,
            GaugeMetricFamily(
                "faithflow_outbox_backlog",
                "Outbound messages due and waiting to be sent (queued or scheduled).",
                value=state.outbox_count,
            ),
            GaugeMetricFamily(
                "faithflow_outbox_oldest_waiting_seconds",
                "How long the longest-waiting due outbound message has been due (0 with none).",
                value=state.outbox_age,
            ),
        ]

    def describe(self) -> list[Any]:
        from faithflow_ops.slo.state import StoredCounts

        return self._families(StoredCounts())

    def collect(self) -> list[Any]:
        from faithflow_ops.db import utcnow
        from faithflow_ops.slo.state import read_counts

        try:
            with self.db.read_session() as session:
                state = read_counts(session, utcnow())
        except Exception as exc:  # the database is down: /metrics still answers
            log.warning("stored state not read", error=type(exc).__name__)
            return []
        return self._families(state)


class JobSchedules:
    """Prometheus collector: each job's schedule interval in seconds (the longest gap between
    two firings of its cron, CRON_* overrides applied), which the freshness alerts multiply, so
    the rules file need not change when a job is added or rescheduled."""

    def __init__(self, overrides: Any) -> None:
        self.overrides = overrides
        self._intervals: dict[str, float] | None = None

    @property
    def intervals(self) -> dict[str, float]:
        """Computed at the first scrape, not when the app is built (about 1 s for the
        every-minute jobs; schedule_interval caches per expression)."""
        if self._intervals is None:
            from faithflow_ops.errors import UserError
            from faithflow_ops.jobs import registry
            from faithflow_ops.slo.spec import schedule_interval

            intervals: dict[str, float] = {}
            for spec in registry.JOBS:
                try:
                    expr = registry.schedule_for(spec, self.overrides)
                except UserError:  # a bad CRON_* is refused where it is used (the scheduler)
                    expr = spec.schedule
                intervals[spec.name] = schedule_interval(expr).total_seconds()
            self._intervals = intervals
        return self._intervals

    def describe(self) -> list[Any]:
        from prometheus_client.core import GaugeMetricFamily

        return [
            GaugeMetricFamily(
                "faithflow_job_schedule_interval_seconds",
                "Longest gap between two scheduled runs of each job (from its cron expression).",
                labels=["job_name"],
            )
        ]

    def collect(self) -> list[Any]:
        from prometheus_client.core import GaugeMetricFamily

        family = GaugeMetricFamily(
            "faithflow_job_schedule_interval_seconds",
            "Longest gap between two scheduled runs of each job (from its cron expression).",
            labels=["job_name"],
        )
        for name, seconds in sorted(self.intervals.items()):
            family.add_metric([name], seconds)
        return [family]


class TallyFlusher:
    """Writes a `Tally` to request_tallies every `seconds` from a thread, and once more at
    shutdown. A failed flush (the database down) keeps the counts for the next one and logs
    once per outage."""

    def __init__(self, tally: Tally, db: Database, seconds: float | None = None) -> None:
        from faithflow_ops.slo.tallies import FLUSH_SECONDS

        self.tally, self.db = tally, db
        self.seconds = FLUSH_SECONDS if seconds is None else seconds
        self._stop = threading.Event()
        self._failing = False

    def flush(self) -> None:
        from faithflow_ops.db import utcnow

        try:
            self.tally.flush(self.db, utcnow())
        except Exception as exc:  # kept for the next flush
            if not self._failing:
                log.warning("request tallies not written; kept", error=type(exc).__name__)
            self._failing = True
        else:
            if self._failing:
                log.info("request tallies written again")
            self._failing = False

    def _loop(self) -> None:
        while not self._stop.wait(self.seconds):
            self.flush()

    @asynccontextmanager
    async def lifespan(self, app: Litestar) -> AsyncIterator[None]:
        import anyio.to_thread

        del app
        thread = threading.Thread(target=self._loop, name="request-tallies", daemon=True)
        thread.start()
        try:
            yield
        finally:
            self._stop.set()
            await anyio.to_thread.run_sync(thread.join)
            await anyio.to_thread.run_sync(self.flush)
