"""`volunteers remind` and `volunteers gaps` previews on Postgres: 2,000 churches (five time
zones), 100,000 assignments over the next 30 days (issue 17: goal < 2 s each).

Per church: 25 volunteers (one in four by SMS, the first one leads the team), one team with 3
positions, 8 services spread over 30 days (each position needs 2 or 3 people), and 50
assignments (one in five pending, one in seven declined, the rest confirmed). Data is made with
set-based SQL (generate_series) in a throwaway database; each preview runs in a fresh process
(`run_job` with --dry-run, as `faithflow volunteers preview-remind` runs it: lease, job_runs
row, the plan), --repeat times; the median and the fastest wall time are printed, with the
process's own CPU time (on a shared machine the wall time is mostly waiting for a core: compare
the two) and the load average.

    .venv/bin/python bench/bench_volunteers.py [--url postgresql://…] [--tenants 2000]
        [--assignments 100000] [--repeat 5]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import statistics
import sys
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from _common import admin, measure_in_child, url_from, with_database

NOW = dt.datetime(2026, 3, 2, 12, 0, tzinfo=dt.UTC)
GOAL_SECONDS = 2.0
PEOPLE, POSITIONS, EVENTS = 25, 3, 8  # per church
ZONES = "ARRAY['America/New_York', 'Africa/Lagos', 'Europe/London', 'America/Los_Angeles', " \
    "'Africa/Nairobi']"  # fmt: skip

STATEMENTS = [
    f"""INSERT INTO tenants (id, slug, name, status, timezone, currency, locale)
    SELECT g, 'church-' || g, 'Church ' || g, 'active', ({ZONES})[1 + g % 5], 'USD', 'en'
    FROM generate_series(1, :tenants) g""",
    f"""INSERT INTO volunteer_people (id, tenant_id, name, email, phone, channel)
    SELECT (t - 1) * {PEOPLE} + p, t, 'Volunteer ' || p,
        'v' || p || '@church-' || t || '.example',
        '+1555' || lpad(((t - 1) * {PEOPLE} + p)::text, 7, '0'),
        CASE WHEN p % 4 = 0 THEN 'sms' ELSE 'email' END
    FROM generate_series(1, :tenants) t, generate_series(1, {PEOPLE}) p""",
    "INSERT INTO volunteer_teams (id, tenant_id, name) "
    "SELECT t, t, 'Worship Tech' FROM generate_series(1, :tenants) t",
    f"INSERT INTO volunteer_team_leaders (team_id, person_id) "
    f"SELECT t, (t - 1) * {PEOPLE} + 1 FROM generate_series(1, :tenants) t",
    f"""INSERT INTO volunteer_positions (id, tenant_id, team_id, name)
    SELECT (t - 1) * {POSITIONS} + k, t, t, (ARRAY['Sound', 'Camera', 'Lights'])[k]
    FROM generate_series(1, :tenants) t, generate_series(1, {POSITIONS}) k""",
    f"""INSERT INTO volunteer_events (id, tenant_id, name, starts_at, timezone)
    SELECT (t - 1) * {EVENTS} + e, t, 'Service ' || e,
        :now + make_interval(hours => (e - 1) * 90 + 13 + t % 11),
        ({ZONES})[1 + t % 5]
    FROM generate_series(1, :tenants) t, generate_series(1, {EVENTS}) e""",
    f"""INSERT INTO volunteer_needs (tenant_id, event_id, position_id, needed)
    SELECT t, (t - 1) * {EVENTS} + e, (t - 1) * {POSITIONS} + k, 2 + (e + k) % 2
    FROM generate_series(1, :tenants) t, generate_series(1, {EVENTS}) e,
        generate_series(1, {POSITIONS}) k""",
    # i < 200 is unique per (i % 8, i % 25): no (event, position, person) twice
    f"""INSERT INTO volunteer_assignments (tenant_id, event_id, position_id, person_id, status)
    SELECT t, (t - 1) * {EVENTS} + 1 + i % {EVENTS},
        (t - 1) * {POSITIONS} + 1 + (i / {EVENTS}) % {POSITIONS},
        (t - 1) * {PEOPLE} + 1 + i % {PEOPLE},
        CASE WHEN i % 5 = 0 THEN 'pending' WHEN i % 7 = 0 THEN 'declined' ELSE 'confirmed' END
    FROM generate_series(1, :tenants) t, generate_series(0, :per_tenant - 1) i""",
]
SEQUENCES = ["tenants", "volunteer_people", "volunteer_teams", "volunteer_positions",
             "volunteer_events"]  # fmt: skip


def load(url: str, tenants: int, assignments: int) -> None:
    from sqlalchemy import text

    from faithflow_ops.db import Database
    from faithflow_ops.migrate import upgrade

    db = Database.from_url(url)
    try:
        upgrade(db.engine)
        params = {"tenants": tenants, "per_tenant": assignments // tenants, "now": NOW}
        with db.engine.begin() as conn:
            for sql in STATEMENTS:
                conn.execute(text(sql), params)
            for table in SEQUENCES:
                conn.execute(
                    text(
                        f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "
                        f"(SELECT max(id) FROM {table}))"
                    )
                )
            conn.execute(text("ANALYZE"))
    finally:
        db.dispose()


def child(url: str, job: str) -> None:
    from faithflow_ops.config import Settings
    from faithflow_ops.db import Database
    from faithflow_ops.jobs import registry
    from faithflow_ops.jobs.base import JobContext
    from faithflow_ops.jobs.runner import run_job

    db = Database.from_url(url)
    settings = Settings.from_env({"FAITHFLOW_DATABASE_URL": url})
    spec = registry.get(job)
    ctx = JobContext(now=NOW, dry_run=True, trigger="cli", settings=settings)
    t0, cpu0 = time.perf_counter(), time.process_time()
    result = run_job(db, spec, ctx)
    seconds, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    db.dispose()
    print(
        json.dumps(
            {
                "seconds": seconds,
                "cpu": cpu,
                "status": result.status,
                "error": result.error,
                "counts": dict(result.counts),
            }
        )
    )


def bench(admin_url: str, tenants: int, assignments: int, repeat: int) -> None:
    name = f"ff_bench_volunteers_{uuid.uuid4().hex[:8]}"
    print(
        f"volunteers benchmark on {admin_url.split('@')[-1]} (python {sys.version.split()[0]}, "
        f"now {NOW.isoformat()}, load average {os.getloadavg()[0]:.2f})"
    )
    try:
        admin(admin_url, f'CREATE DATABASE "{name}"')
        t0 = time.perf_counter()
        url = with_database(admin_url, name)
        load(url, tenants, assignments)
        print(
            f"loaded {tenants:,} churches, {assignments:,} assignments over 30 days in "
            f"{time.perf_counter() - t0:.1f} s"
        )
        for job, label in (("volunteer_reminders", "remind"), ("volunteer_gap_alerts", "gaps")):
            times: list[float] = []
            cpus: list[float] = []
            counts: dict[str, int] = {}
            for _ in range(repeat):
                doc = measure_in_child(__file__, url, job)
                assert doc["status"] == "succeeded", doc
                times.append(doc["seconds"])
                cpus.append(doc["cpu"])
                counts = doc["counts"]
            median = statistics.median(times)
            verdict = "meets" if median < GOAL_SECONDS else "MISSES"
            shown = ", ".join(f"{k}={v:,}" for k, v in sorted(counts.items()))
            print(
                f"{label:<7} preview: median {median:.3f} s, fastest {min(times):.3f} s, "
                f"python cpu {statistics.median(cpus):.3f} s "
                f"({repeat} runs; {shown or 'nothing'}) — {verdict} the goal "
                f"(< {GOAL_SECONDS:.0f} s)"
            )
        print(f"load average after: {os.getloadavg()[0]:.2f}")
    finally:
        admin(admin_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def main() -> None:
    if len(sys.argv) == 4 and sys.argv[1] == "--child":
        child(sys.argv[2], sys.argv[3])
        return
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--url", help="Postgres server URL (a database to connect to as admin)")
    parser.add_argument("--tenants", type=int, default=2_000)
    parser.add_argument("--assignments", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    bench(url_from(args), args.tenants, args.assignments, args.repeat)


if __name__ == "__main__":
    main()
