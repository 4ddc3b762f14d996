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
