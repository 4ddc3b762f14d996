"""`faithflow demo`: seed a demo platform into an empty database and preview every job."""

from __future__ import annotations

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
    (nothing is sent, charged or probed beyond the health checks). Exits 1 when a preview fails.
    """
    from faithflow_ops.demo import preview_all, seed_demo

    cfg = settings()
    db = database(cfg)
    when = parse_now(now)
    output.info(f"demo database: {cfg.masked_database_url}")
    (before, after), seeded = seed_demo(db, cfg, when)
    output.info(f"migrated {before or '(empty)'} → {after}; seeded the demo platform")
    if not as_json:
        output.table(["record", "count"], seeded.items(), title="seeded")
    previews = preview_all(db, cfg, when, actor())
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
    output.info(
        "next: `faithflow tenants list`, `faithflow subs list`, `faithflow dunning preview`, "
        "`faithflow comms list`, `faithflow support tickets list`, "
        "`faithflow jobs run <name> --dry-run`"
    )


def _loaded(name: str) -> type[Job] | None:
    """The job's class for its table layout; None (plain rows) when it cannot be loaded."""
    from faithflow_ops.jobs import registry

    try:
        return type(registry.get(name).load())
    except Exception:  # the preview already reported the failure
        return None
