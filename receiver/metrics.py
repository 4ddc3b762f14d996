"""Prometheus metrics for one receiver app, and the middleware that records requests.

Each app gets its own `CollectorRegistry`, so building several apps (tests, workers) never
collides on metric names. With `faithflow serve --workers N` every worker counts its own
requests; scrape with a per-process target or run one worker.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, cast

import structlog
from litestar.enums import ScopeType
from prometheus_client import CollectorRegistry, Counter, Histogram

if TYPE_CHECKING:
    from litestar.types import ASGIApp, Message, Receive, Scope, Send

    from faithflow_ops.db import Database

log = structlog.get_logger("faithflow.receiver")

# Probes hit these every few seconds; a success is not worth a log line.
_QUIET_PATHS = frozenset({"/healthz", "/readyz", "/metrics"})


@dataclass
class Metrics:
    registry: CollectorRegistry = field(default_factory=CollectorRegistry)

    def __post_init__(self) -> None:
        self.requests = Counter(
            "faithflow_http_requests",
            "HTTP requests answered, by route template, method and status.",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "faithflow_http_request_duration_seconds",
            "Time to answer an HTTP request, by route template and method.",
            ["method", "route"],
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
        self.job_runs = Counter(
            "faithflow_job_runs",
            "Job runs started through this receiver, by job, trigger and final status.",
            ["job", "trigger", "status"],
            registry=self.registry,
        )


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
            self.metrics.latency.labels(method, route).observe(seconds)
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
