"""`faithflow demo`: seed a demo platform into an empty database and preview every job."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from faithflow_ops.cli import output
from faithflow_ops.cli.common import JsonOpt, actor, database, parse_now, settings
from faithflow_ops.cli.jobs import NowOpt, render_run

if TYPE_CHECKING:
    from faithflow_ops.jobs.base import Job


def demo(now: NowOpt = None, as_json: JsonOpt = False) -> None:
    """Seed a demo platform and preview every job.

    Migrates the configured database (FAITHFLOW_DATABASE_URL), refuses one that already holds
    tenants, seeds tenants in several countries and currencies, plans on Stripe and Paystack,
    subscriptions in every status with messy historical metadata, open dunning cases (one held
    by quiet hours, one paused, one with SMS opted out), outbox messages (one to a suppressed
    number), support tickets about to breach their SLA, help-center articles and an open
    incident, all timed relative to --now; then prints what every registered job would do
    (nothing is sent, charged or probed beyond the health checks). Two custom domains wait for
    verification: their DNS is answered by a server on loopback, so the domains preview shows
    one verified and one still missing its TXT record. With no alert route set, the open
    incident's escalation is previewed through a demo route. Exits 1 when a preview fails.
    """
    from faithflow_ops.demo import (
        DEMO_ALERT_URL,
        preview_all,
        seed_demo,
        stand_ins,
        with_alert_route,
    )

    cfg = settings()
    db = database(cfg)
    when = parse_now(now)
    output.info(f"demo database: {cfg.masked_database_url}")
    with stand_ins(cfg) as demo_cfg:
        (before, after), seeded = seed_demo(db, demo_cfg, when)
        output.info(f"migrated {before or '(empty)'} → {after}; seeded the demo platform")
        if not as_json:
            output.table(["record", "count"], seeded.items(), title="seeded")
        output.info(
            f"domain probes ask a DNS server on loopback ({demo_cfg.dns_nameservers[0]}) that "
            "answers for the demo's domains; nothing leaves this machine"
        )
        if with_alert_route(demo_cfg).alert_webhook_url == DEMO_ALERT_URL:
            output.info(
                f"no alert route is set: escalation previews through {DEMO_ALERT_URL} (a "
                "preview sends nothing; set ALERT_WEBHOOK_URL or PAGERDUTY_ROUTING_KEY for yours)"
            )
        with _quiet_job_logs():  # each preview's own summary line says what its log line would
            previews = preview_all(db, demo_cfg, when, actor(), demo_alert_route=True)
    if as_json:
        output.print_json(
            {
                "database": cfg.masked_database_url,
                "seeded": seeded,
                "previews": [preview.to_dict() for preview in previews],
            }
        )
    else:
        for preview in previews:
            if preview.failure == "config":  # a provider the demo has no key for
                output.info(f"{preview.job}: not run here; {preview.error}")
            else:
                render_run(preview, preview.actions, _loaded(preview.job))
    failed = [p.job for p in previews if p.status != "succeeded" and p.failure != "config"]
    if failed:
        output.abort(f"preview failed for: {', '.join(failed)}", 1)
    output.info(next_commands(cfg.masked_database_url, _executable()))


@contextmanager
def _quiet_job_logs() -> Iterator[None]:
    """The jobs' `job run` info lines off while the demo previews: on a terminal they landed
    between its tables; warnings and errors still show (on stderr, like every log)."""
    import logging

    logger = logging.getLogger("faithflow.jobs")
    level = logger.level
    logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        logger.setLevel(level)


_NEXT = (
    "tenants list",
    "subs list",
    "dunning preview",
    "comms list",
    "support tickets list",
    "jobs list",
)


def _executable() -> Path:
    """This `faithflow` script: argv[0] when it is one, else the one next to the Python."""
    import sys

    argv0 = Path(sys.argv[0])
    if argv0.name == "faithflow" and argv0.exists():
        return argv0.resolve()
    return Path(sys.executable).parent / "faithflow"


def next_commands(url: str, executable: Path, *, cwd: Path | None = None) -> str:
    """The commands to try next, each runnable as printed: the demo database's URL and the
    executable's path (relative to `cwd` when under it: `.venv/bin/faithflow`)."""
    import shlex

    here = (cwd or Path.cwd()).resolve()
    try:
        exe = str(executable.relative_to(here))
    except ValueError:
        exe = str(executable)
    prefix = f"FAITHFLOW_DATABASE_URL={shlex.quote(url)} {shlex.quote(exe)}"
    return "next, for example:\n" + "\n".join(f"  {prefix} {cmd}" for cmd in _NEXT)


def _loaded(name: str) -> type[Job] | None:
    """The job's class for its table layout; None (plain rows) when it cannot be loaded."""
    from faithflow_ops.jobs import registry

    try:
        return type(registry.get(name).load())
    except Exception:  # the preview already reported the failure
        return None
