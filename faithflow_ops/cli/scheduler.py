"""`faithflow scheduler …`: the internal scheduler on its own."""

from __future__ import annotations

from typing import Annotated

import typer

from faithflow_ops.cli import output
from faithflow_ops.cli.common import database, settings

app = typer.Typer(
    rich_markup_mode=None,
    help="Run the internal scheduler (cron loop over the job registry).",
    no_args_is_help=True,
)


@app.command("run")
def run(
    once: Annotated[
        bool, typer.Option("--once", help="Run every registered job once now, then exit.")
    ] = False,
) -> None:
    """Run due jobs in-process until interrupted (Ctrl-C / SIGTERM stop it cleanly).

    Uses the same job locks as cron and HTTP runs, so it never overlaps them.
    """
    import signal
    import threading

    from faithflow_ops.scheduler import Scheduler

    cfg = settings()
    db = database(cfg)
    scheduler = Scheduler.from_settings(db, cfg)
    if once:
        for job in scheduler.jobs:
            job.due = scheduler.clock()
        scheduler.tick()
        return
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    for job in scheduler.jobs:
        output.info(f"{job.spec.name}: {job.expr} (next {job.due.isoformat()})")
    try:
        scheduler.run_forever(stop)
    except KeyboardInterrupt:
        stop.set()
