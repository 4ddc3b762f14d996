"""`GET /healthz` (the process answers), `GET /readyz` (the database answers and is at the head
revision), `GET /metrics`.

`/readyz` answers within FAITHFLOW_READY_TIMEOUT seconds (1.5) whatever the database does: the
probe runs on its own thread (one at a time; a call while one is in flight waits on that one)
and a probe that has not finished by the deadline is `503 database unavailable`. The caller
learns only "database unavailable" or "database not at head"; the host and the driver's error
go to the log."""

from __future__ import annotations

import threading
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
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
UNAVAILABLE, NOT_AT_HEAD = "database unavailable", "database not at head"


def first_line(exc: BaseException) -> str:
    """`OperationalError: connection refused…`: enough to act on, never a multi-line dump."""
    lines = str(getattr(exc, "orig", None) or exc).strip().splitlines()
    return f"{type(exc).__name__}: {lines[0]}" if lines else type(exc).__name__


class Readiness:
    """The database probe behind /readyz: reachable AND at the migrations' head revision."""

    def __init__(self, db: Database, deadline: float) -> None:
        self.db, self.deadline = db, deadline
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="readyz")
        self._lock = threading.Lock()
        self._probe: Future[str | None] | None = None
        self._head: str | None = None

    def check(self) -> str | None:
        """None when ready, else what the caller may be told (UNAVAILABLE or NOT_AT_HEAD)."""
        with self._lock:
            if self._probe is None or self._probe.done():
                self._probe = self._pool.submit(self._run)
            probe = self._probe
        try:
            return probe.result(timeout=self.deadline)
        except FutureTimeout:
            log.warning(
                "not ready: database did not answer",
                host=self.db.engine.url.host,
                seconds=self.deadline,
            )
            return UNAVAILABLE

    def _run(self) -> str | None:
        from faithflow_ops.migrate import current_revision, head_revision

        try:
            current = current_revision(self.db.engine)
        except Exception as exc:
            log.warning(
                "not ready: database unreachable",
                host=self.db.engine.url.host,
                error=first_line(exc),
            )
            return UNAVAILABLE
        if self._head is None:
            self._head = head_revision()
        if current != self._head:
            log.warning("not ready: database not at head", current=current, head=self._head)
            return NOT_AT_HEAD
        return None


def health_handlers(db: Database, metrics: Metrics, ready_timeout: float) -> list[HTTPRouteHandler]:
    readiness = Readiness(db, ready_timeout)

    @get("/healthz", sync_to_thread=False, tags=["health"], summary="The process is alive")
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @get(
        "/readyz",
        sync_to_thread=True,
        tags=["health"],
        summary="The database is reachable and migrated (503 when not), within 2 s",
    )
    def readyz() -> Response[dict[str, Any]]:
        problem = readiness.check()
        if problem is not None:
            return Response({"error": "not ready", "detail": problem}, status_code=503)
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
