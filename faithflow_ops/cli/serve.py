"""`faithflow serve`: the receiver on uvicorn (and the internal scheduler when enabled)."""

from __future__ import annotations

from typing import Annotated

import typer

HostOpt = Annotated[
    str,
    typer.Option("--host", help="Interface to listen on; use 0.0.0.0 in a container or on Render."),
]
PortOpt = Annotated[
    int,
    typer.Option(
        "--port",
        envvar="PORT",
        min=1,
        max=65535,
        help="Port to listen on (default: $PORT, as Render sets it, else 8000).",
    ),
]
WorkersOpt = Annotated[
    int,
    typer.Option(
        "--workers",
        min=1,
        help="Worker processes. With ENABLE_INTERNAL_SCHEDULER=1 and more than one "
        "worker, the scheduler runs once, in the supervising process.",
    ),
]


def serve(host: HostOpt = "127.0.0.1", port: PortOpt = 8000, workers: WorkersOpt = 1) -> None:
    """Run the receiver: /tasks/* (INTEGRATION_API_KEY), /healthz, /readyz, /metrics, /docs.

    With ENABLE_INTERNAL_SCHEDULER=1 the scheduler runs due jobs in-process, under the same
    locks as cron and HTTP runs. Settings are checked before listening: a bad CRON_* expression,
    or a CRON_* naming no job, stops here with exit 2 whether or not the scheduler is on.
    """
    import os

    import uvicorn

    from faithflow_ops.cli import output
    from faithflow_ops.config import Settings
    from faithflow_ops.jobs import registry
    from faithflow_ops.logging import configure
    from receiver.app import create_app

    cfg = Settings.from_env()
    configure(cfg.log_format)
    registry.validate_schedules(cfg.cron_overrides)  # exit 2 on a bad or unknown CRON_*
    # log_config=None: our structlog handlers render uvicorn's own logs; access_log=False: the
    # receiver logs each request itself (one structured line, probes left out);
    # proxy_headers=False: uvicorn would otherwise believe X-Forwarded-For from 127.0.0.1, and
    # the Paystack allowlist must trust only FAITHFLOW_TRUSTED_PROXIES.
    if workers == 1:
        app = create_app(cfg)  # raises ConfigError (exit 2) before anything listens
        output.info(f"receiver on http://{host}:{port} (API docs at /docs)")
        uvicorn.run(
            app, host=host, port=port, log_config=None, access_log=False, proxy_headers=False
        )
        return

    scheduler = None
    if cfg.enable_internal_scheduler:
        from faithflow_ops.cli.common import database
        from faithflow_ops.scheduler import start_in_thread

        scheduler = start_in_thread(database(cfg), cfg)  # ConfigError on a bad CRON_*
        # Workers are spawned with this environment: they serve, the supervisor schedules.
        os.environ["ENABLE_INTERNAL_SCHEDULER"] = "0"
    output.info(f"receiver on http://{host}:{port}, {workers} workers (API docs at /docs)")
    try:
        uvicorn.run(
            "receiver.app:app_from_env",
            factory=True,
            workers=workers,
            host=host,
            port=port,
            log_config=None,
            access_log=False,
            proxy_headers=False,
        )
    finally:
        if scheduler is not None:
            thread, stop = scheduler
            stop.set()
            thread.join(25)
