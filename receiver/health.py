"""`GET /healthz` (the process answers), `GET /readyz` (the database answers), `GET /metrics`."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import structlog
from litestar import Response, get
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

if TYPE_CHECKING:
    from litestar.handlers import HTTPRouteHandler

    from faithflow_ops.db import Database
    from receiver.metrics import Metrics

log = structlog.get_logger("faithflow.receiver")
# Litestar appends "; charset=utf-8" to text/* media types itself.
METRICS_MEDIA_TYPE = CONTENT_TYPE_LATEST.replace("; charset=utf-8", "")


def first_line(exc: BaseException) -> str:
    """`OperationalError: connection refused…`: enough to act on, never a multi-line dump."""
    lines = str(getattr(exc, "orig", None) or exc).strip().splitlines()
    return f"{type(exc).__name__}: {lines[0]}" if lines else type(exc).__name__


def health_handlers(db: Database, metrics: Metrics) -> list[HTTPRouteHandler]:
    @get("/healthz", sync_to_thread=False, tags=["health"], summary="The process is alive")
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @get(
        "/readyz",
        sync_to_thread=True,
        tags=["health"],
        summary="The database is reachable (503 when it is not)",
    )
    def readyz() -> Response[dict[str, Any]]:
        try:
            db.ping()
        except Exception as exc:
            reason = first_line(exc)
            log.warning("not ready: database unreachable", error=reason)
            return Response({"error": "database unreachable", "detail": reason}, status_code=503)
        return Response({"status": "ready", "database": db.dialect})

    @get(
        "/metrics",
        sync_to_thread=False,
        tags=["health"],
        summary="Prometheus metrics",
        media_type=METRICS_MEDIA_TYPE,
    )
    def metrics_text() -> bytes:
        return generate_latest(metrics.registry)

    return [healthz, readyz, metrics_text]
