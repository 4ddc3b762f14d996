"""The receiver: `create_app(settings) -> Litestar` (DESIGN §4).

Thin on purpose: health probes, metrics, the OpenAPI UI (Swagger UI served from the package
under /docs/assets: no CDN), the provider webhooks and the task
routes generated from the job registry. Handlers are synchronous and run through Litestar's
`sync_to_thread`, except the webhook routes (async: they store each delivery through the
ingest writer, see `receiver.webhooks`); they call the same code the CLI calls. Every error
leaves as JSON `{"error": …, "detail": …}`.

`ENABLE_INTERNAL_SCHEDULER=1` runs the scheduler in a thread for the life of the app; an
invalid `CRON_*` expression stops `create_app` (so `faithflow serve` exits 2 before listening).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import structlog
from litestar import Litestar, Request, Response
from litestar.exceptions import HTTPException
from litestar.middleware import DefineMiddleware
from litestar.openapi import OpenAPIConfig
from litestar.openapi.plugins import SwaggerRenderPlugin
from litestar.openapi.spec import Components, SecurityScheme
from litestar.static_files import create_static_files_router
from sqlalchemy.exc import OperationalError

from faithflow_ops import __version__
from faithflow_ops.config import Settings
from faithflow_ops.db import RECEIVER_TIMEOUTS, Database, DbTimeouts, job_timeouts
from faithflow_ops.jobs import registry
from faithflow_ops.jobs.registry import JobSpec
from faithflow_ops.jobs.runner import RunResult
from faithflow_ops.slo.tallies import Tally
from faithflow_ops.webhooks.applier import ApplyStats, Worker
from receiver.email_dsn import dsn_handlers
from receiver.health import first_line as _first_line
from receiver.health import health_handlers
from receiver.metrics import (
    JobSchedules,
    Metrics,
    MetricsMiddleware,
    StoredState,
    TallyFlusher,
    WebhookBacklog,
)
from receiver.tasks import task_handlers
from receiver.twilio import twilio_handlers
from receiver.webhooks import WebhookIngest, webhook_handlers

log = structlog.get_logger("faithflow.receiver")

# Swagger UI ships inside the package (swagger-ui-dist, its LICENSE beside it) and is served
# from /docs/assets, so /docs works offline: Litestar's default loads it from a CDN.
SWAGGER_ASSETS = Path(__file__).resolve().parent / "static" / "swagger-ui"
SWAGGER_PATH = "/docs/assets"

SCHEDULER_STOP_SECONDS = 25.0  # Render allows 30 s between SIGTERM and SIGKILL


def _error(status: int, error: str, detail: Any = None, headers: Any = None) -> Response[Any]:
    return Response({"error": error, "detail": detail}, status_code=status, headers=headers)


def _http_error(settings: Settings) -> Any:
    def handler(_: Request[Any, Any, Any], exc: HTTPException) -> Response[Any]:
        if exc.status_code == 413:
            limit = settings.webhook_body_limit
            return _error(413, f"request body is larger than {limit} bytes", {"limit": limit})
        return _error(exc.status_code, exc.detail, exc.extra or None, exc.headers)

    return handler


def _database_down(request: Request[Any, Any, Any], exc: OperationalError) -> Response[Any]:
    log.error("database unavailable", path=request.url.path, error=_first_line(exc))
    return _error(503, "database unavailable; try again later")


def _unexpected(request: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
    log.error("unhandled error", path=request.url.path, exc_info=exc)
    return _error(500, "internal server error")


def check_scheduler_settings(settings: Settings) -> None:
    """Refuse an invalid CRON_* expression now (ConfigError naming the variable), not later."""
    for spec in registry.JOBS:
        registry.schedule_for(spec, settings.cron_overrides)


def _observe(metrics: Metrics) -> Callable[[ApplyStats], None]:
    def observe(stats: ApplyStats) -> None:
        for seconds in stats.latencies:
            metrics.webhook_apply_latency.observe(seconds)

    return observe


def create_app(
    settings: Settings, *, db: Database | None = None, jobs: Sequence[JobSpec] | None = None
) -> Litestar:
    """The receiver for these settings.

    `db`: share a Database (the caller disposes it); by default the app makes two from
    `settings.database_url` and disposes them on shutdown: one with the receiver's short
    timeouts (5 s per statement, 2 s per lock) for requests, one with the jobs'
    (FAITHFLOW_DB_STATEMENT_TIMEOUT) for task runs, the scheduler and the webhook applier.
    `jobs`: the specs to expose as task routes (default: the whole registry).
    """
    if settings.enable_internal_scheduler:
        check_scheduler_settings(settings)
    owns_db = db is None
    database = db or Database.from_url(settings.database_url, timeouts=RECEIVER_TIMEOUTS)
    jobs_db = db or Database.from_url(
        settings.database_url, timeouts=job_timeouts(settings.db_statement_timeout)
    )
    tally = Tally()  # answers counted for `slo report` (slo.tallies)
    metrics = Metrics(tally=tally)
    metrics.registry.register(WebhookBacklog(database))
    metrics.registry.register(StoredState(database))  # job runs and the outbox (ops/slo.toml)
    metrics.registry.register(JobSchedules(settings.cron_overrides))  # freshness alerts
    # webhook applier: stored deliveries are applied in this process unless turned off
    # (FAITHFLOW_WEBHOOK_WORKER=off, then `faithflow webhooks apply` runs from cron).
    worker = Worker(jobs_db, on_pass=_observe(metrics)) if settings.webhook_worker else None

    def counter(trigger: str) -> Callable[[JobSpec, RunResult], None]:
        def count_run(spec: JobSpec, result: RunResult) -> None:
            metrics.observe_run(spec.name, trigger, result)

        return count_run

    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        import anyio.to_thread

        from faithflow_ops.scheduler import start_in_thread

        # webhook applier
        if worker is not None:
            worker.start()
            app.state.webhook_worker = worker
        scheduler = None
        if settings.enable_internal_scheduler:
            scheduler = start_in_thread(jobs_db, settings, on_result=counter("scheduler"))
            app.state.scheduler_thread = scheduler[0]
        try:
            yield
        finally:
            if scheduler is not None:
                thread, stop = scheduler
                stop.set()
                # Running jobs finish first (they hold leases); give up before the platform
                # kills us so the shutdown itself stays clean.
                await anyio.to_thread.run_sync(thread.join, SCHEDULER_STOP_SECONDS)
                if thread.is_alive():
                    log.warning("scheduler still finishing a job at shutdown")
            # webhook applier: the event in hand finishes (its transaction is short)
            if worker is not None:
                await anyio.to_thread.run_sync(worker.stop)
            if owns_db:
                database.dispose()
                jobs_db.dispose()

    ingest = WebhookIngest(  # webhook ingest: group commit on Postgres
        database,
        DbTimeouts(
            statement=settings.ingest_statement_timeout,
            lock=settings.ingest_lock_timeout,
            connect=RECEIVER_TIMEOUTS.connect,
        ),
    )
    if worker is not None:  # webhook applier: woken by every delivery this process stores
        ingest.on_stored = worker.wake
    return Litestar(
        route_handlers=[
            *health_handlers(database, metrics, settings.ready_timeout),
            create_static_files_router(
                SWAGGER_PATH, [SWAGGER_ASSETS], include_in_schema=False, name="swagger-assets"
            ),
            *webhook_handlers(ingest, settings, metrics),
            *twilio_handlers(database, settings, metrics),
            *dsn_handlers(database, settings, metrics),
            *task_handlers(
                jobs if jobs is not None else registry.JOBS, jobs_db, settings, counter("http")
            ),
        ],
        # webhook ingest: after `lifespan` (which starts the applier the writer wakes), and
        # closed before it (the writer's queue is written before the applier stops); request
        # tallies last, so their final flush runs while the database is still open
        lifespan=[lifespan, ingest.lifespan, TallyFlusher(tally, database).lifespan],
        middleware=[DefineMiddleware(MetricsMiddleware, metrics=metrics)],
        exception_handlers={
            HTTPException: _http_error(settings),
            OperationalError: _database_down,
            Exception: _unexpected,
        },
        request_max_body_size=settings.webhook_body_limit,
        openapi_config=OpenAPIConfig(
            title="FaithFlow Ops receiver",
            version=__version__,
            path="/docs",
            render_plugins=[
                SwaggerRenderPlugin(
                    js_url=f"{SWAGGER_PATH}/swagger-ui-bundle.js",
                    css_url=f"{SWAGGER_PATH}/swagger-ui.css",
                    standalone_preset_js_url=f"{SWAGGER_PATH}/swagger-ui-standalone-preset.js",
                )
            ],
            components=Components(
                security_schemes={
                    "bearer": SecurityScheme(
                        type="http", scheme="bearer", description="INTEGRATION_API_KEY"
                    ),
                    "apiKey": SecurityScheme(
                        type="apiKey",
                        name="X-API-Key",
                        security_scheme_in="header",
                        description="INTEGRATION_API_KEY",
                    ),
                }
            ),
        ),
        logging_config=None,  # faithflow_ops.logging owns the handlers (structlog)
        debug=False,
    )


def app_from_env() -> Litestar:
    """Factory for `uvicorn --factory receiver.app:app_from_env` and `serve --workers N`."""
    from faithflow_ops.logging import configure

    settings = Settings.from_env()
    configure(settings.log_format)
    return create_app(settings)
