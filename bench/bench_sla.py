"""`sla sweep` on Postgres: 1,000,000 tickets (10,000 open, 500 with a resolution clock past its
due time at --now), against the same breach marking written by hand as one SQL statement on the
same data in the same run; then the same open load in a 100,000-ticket table, to show the
sweep's time follows the open tickets, not the total.

Data is generated with set-based SQL (generate_series) in a throwaway database per size. Each
measurement is repeated (--repeat, default 3; the data is reset between runs, untimed) and the
median is printed:

- sweep: `run_job` of support_sla_sweep, as `faithflow sla sweep` runs it (lease, job_runs row,
  plan through the partial indexes, claim UPDATE … RETURNING, sla_events rows, an outbox e-mail
  per breach to FAITHFLOW_SUPPORT_QUEUE_EMAIL);
- sweep, no e-mail address: the same with FAITHFLOW_SUPPORT_QUEUE_EMAIL unset (claims and
  sla_events only: what the outbox e-mails cost is the difference);
- sweep (plan only): the same with --dry-run;
- SQL UPDATE: `UPDATE support_tickets SET resolution_breached_at = resolution_due_at WHERE …`;
- SQL UPDATE + events: the UPDATE in a CTE feeding the `INSERT INTO sla_events`.

    .venv/bin/python bench/bench_sla.py [--url postgresql://…] [--total 1000000] [--small 100000]
"""

from __future__ import annotations

import argparse
import datetime as dt
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from _common import admin, url_from, with_database

NOW = dt.datetime(2026, 3, 2, 12, 0, tzinfo=dt.UTC)

GENERATE = """
INSERT INTO support_tickets (
    tenant_id, requester_email, subject, priority, status, opened_at, status_changed_at,
    assignee_id, reopen_count, resolution, solved_at, closed_at, first_responded_at,
    first_response_episode, first_response_started_at, first_response_fulfilled_at,
    resolution_episode, resolution_started_at, resolution_elapsed_seconds,
    resolution_running_since, resolution_due_at, resolution_warn_at, resolution_warned_at,
    resolution_fulfilled_at, created_at, updated_at)
SELECT
    :tenant,
    'requester' || g || '@example.org',
    'ticket ' || g,
    (ARRAY['low', 'normal', 'high', 'urgent'])[1 + g % 4],
    CASE WHEN g <= :open THEN 'open' ELSE 'closed' END,
    opened, opened,
    NULL,  -- unassigned: notifications go to the queue address (or nowhere)
    0,
    CASE WHEN g <= :open THEN NULL ELSE 'solved' END,
    CASE WHEN g <= :open THEN NULL ELSE opened + interval '5 hours' END,
    CASE WHEN g <= :open THEN NULL ELSE opened + interval '4 days' END,
    opened + interval '20 minutes',
    1, opened, opened + interval '20 minutes',
    1, opened, 0,
    CASE WHEN g <= :open THEN opened END,
    -- open: the first :breaching are overdue at NOW (already warned), the rest due later
    CASE WHEN g <= :breaching THEN :now - (g * interval '1 minute')
         WHEN g <= :open THEN :now + interval '1 day' + (g * interval '1 second')
         ELSE opened + interval '1 day' END,
    CASE WHEN g <= :breaching THEN :now - interval '2 hours'
         WHEN g <= :open THEN :now + interval '20 hours' + (g * interval '1 second') END,
    CASE WHEN g <= :breaching THEN :now - interval '2 hours' END,
    CASE WHEN g <= :open THEN NULL ELSE opened + interval '5 hours' END,
    opened, opened
FROM (
    SELECT g, :now - interval '400 days' + (g * interval '31 seconds') AS opened
    FROM generate_series(1, :total) AS g
) AS s
"""

HAND_UPDATE = """
UPDATE support_tickets SET resolution_breached_at = resolution_due_at, updated_at = :now
WHERE resolution_breached_at IS NULL AND status NOT IN ('solved', 'closed')
  AND resolution_due_at <= :now
"""

HAND_UPDATE_EVENTS = """
WITH marked AS (
    UPDATE support_tickets SET resolution_breached_at = resolution_due_at, updated_at = :now
    WHERE resolution_breached_at IS NULL AND status NOT IN ('solved', 'closed')
      AND resolution_due_at <= :now
    RETURNING id, tenant_id, priority, resolution_episode, resolution_started_at,
              resolution_due_at, assignee_id
)
INSERT INTO sla_events (ticket_id, tenant_id, metric, episode, kind, priority, occurred_at,
                        started_at, due_at, assignee_id, data, created_at)
SELECT id, tenant_id, 'resolution', resolution_episode, 'breach', priority, resolution_due_at,
       resolution_started_at, resolution_due_at, assignee_id, '{}'::jsonb, :now
FROM marked
ON CONFLICT DO NOTHING
"""

RESET = [
    "UPDATE support_tickets SET resolution_breached_at = NULL "
    "WHERE id <= :breaching AND resolution_breached_at IS NOT NULL",
    "DELETE FROM sla_events",
    "DELETE FROM outbound_messages",
    "DELETE FROM job_locks",
]


def build(url: str, total: int, open_: int, breaching: int) -> str:
    from sqlalchemy import text

    from faithflow_ops.db import Database
    from faithflow_ops.migrate import upgrade

    name = f"ff_bench_sla_{total}"
    admin(url, f"DROP DATABASE IF EXISTS {name}")
    admin(url, f"CREATE DATABASE {name}")
    target = with_database(url, name)
    db = Database.from_url(target)
    upgrade(db.engine)
    started = time.perf_counter()
    with db.engine.begin() as conn:
        tenant = conn.execute(
            text("INSERT INTO tenants (slug, name) VALUES ('grace', 'Grace') RETURNING id")
        ).scalar_one()
        conn.execute(
            text(GENERATE),
            {
                "tenant": tenant,
                "open": open_,
                "breaching": breaching,
                "total": total,
                "now": NOW,
            },
        )
    with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text("VACUUM ANALYZE"))
    print(f"  generated {total:,} tickets in {time.perf_counter() - started:.1f} s", flush=True)
    db.dispose()
    return target


def timed(db_url: str, breaching: int, repeat: int) -> dict[str, float]:
    from sqlalchemy import text

    from faithflow_ops.config import Settings
    from faithflow_ops.db import Database
    from faithflow_ops.jobs import registry
    from faithflow_ops.jobs.base import JobContext
    from faithflow_ops.jobs.runner import run_job

    db = Database.from_url(db_url)
    settings = Settings.from_env(
        {"FAITHFLOW_DATABASE_URL": db_url, "FAITHFLOW_SUPPORT_QUEUE_EMAIL": "queue@ff.example"}
    )
    quiet = Settings.from_env({"FAITHFLOW_DATABASE_URL": db_url})  # no e-mail address at all
    spec = registry.get("support_sla_sweep")

    def reset() -> None:
        with db.engine.begin() as conn:
            for sql in RESET:
                conn.execute(text(sql), {"breaching": breaching})

    def sweep(dry_run: bool, cfg: Settings = settings) -> Callable[[], int]:
        def go() -> int:
            ctx = JobContext(now=NOW, dry_run=dry_run, trigger="cli", settings=cfg)
            result = run_job(db, spec, ctx, collect_actions=False)
            assert result.status == "succeeded", result.error
            return sum(result.counts.values())

        return go

    def sql(statement: str) -> Callable[[], int]:
        def go() -> int:
            with db.engine.begin() as conn:
                return int(conn.execute(text(statement), {"now": NOW}).rowcount)

        return go

    cases = {
        "sweep": sweep(False),
        "sweep, no e-mail address": sweep(False, quiet),
        "sweep (plan only, --dry-run)": sweep(True),
        "SQL UPDATE": sql(HAND_UPDATE),
        "SQL UPDATE + sla_events": sql(HAND_UPDATE_EVENTS),
    }
    samples: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(repeat):
        for name, case in cases.items():
            reset()
            started = time.perf_counter()
            done = case()
            samples[name].append(time.perf_counter() - started)
            assert done == breaching, (name, done)
    db.dispose()
    return {name: statistics.median(values) for name, values in samples.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", help="Postgres server (default: the test server)")
    parser.add_argument("--total", type=int, default=1_000_000)
    parser.add_argument("--small", type=int, default=100_000)
    parser.add_argument("--open", type=int, default=10_000)
    parser.add_argument("--breaching", type=int, default=500)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--keep", action="store_true", help="keep the generated databases")
    args = parser.parse_args()
    url = url_from(args)
    results: dict[int, dict[str, float]] = {}
    for total in (args.small, args.total):
        print(f"{total:,} tickets, {args.open:,} open, {args.breaching} breaching:", flush=True)
        target = build(url, total, args.open, args.breaching)
        results[total] = timed(target, args.breaching, args.repeat)
        for name, seconds in results[total].items():
            print(f"  {name:<30} {seconds * 1000:9.1f} ms", flush=True)
        if not args.keep:
            admin(url, f"DROP DATABASE IF EXISTS ff_bench_sla_{total}")
    big, small = results[args.total], results[args.small]
    print()
    print(
        f"sweep / SQL UPDATE at {args.total:,}: {big['sweep'] / big['SQL UPDATE']:.2f}x; "
        f"sweep / SQL UPDATE + sla_events: {big['sweep'] / big['SQL UPDATE + sla_events']:.2f}x "
        "(goal <= 3x)"
    )
    print(
        f"sweep without e-mails / SQL UPDATE + sla_events at {args.total:,}: "
        f"{big['sweep, no e-mail address'] / big['SQL UPDATE + sla_events']:.2f}x"
    )
    print(
        f"sweep {args.total:,} / {args.small:,} tickets (same {args.open:,} open): "
        f"{big['sweep'] / small['sweep']:.2f}x; plan only: "
        f"{big['sweep (plan only, --dry-run)'] / small['sweep (plan only, --dry-run)']:.2f}x "
        "(1.0 = time follows open tickets, not total)"
    )


if __name__ == "__main__":
    main()
