"""`volunteers remind` and `volunteers gaps` previews on Postgres: 2,000 churches (five time
zones), 100,000 assignments over the next 30 days (issue 17: goal < 2 s each).

Per church: 25 volunteers (one in four by SMS, the first one leads the team), one team with 3
positions, 8 services spread over 30 days (each position needs 2 or 3 people), and 50
assignments (one in five pending, one in seven declined, the rest confirmed). Data is made with
set-based SQL (generate_series) in a throwaway database.

Per job, --repeat times each, the 1-minute load average read before every run:

- end to end, as an operator sees it: `faithflow volunteers remind --dry-run --json` (and
  `gaps`) in a fresh process, its JSON read from stdout; split into the run (lease, job_runs
  row, plan, JSON written: the `seconds` of its `job run` log line) and the rest (interpreter
  start-up, imports, settings, exit);
- the planning in-process: the planner call alone (`plan()` to a list) in a fresh process
  after one warm-up query and gc.freeze() (as the CLI runs a job), wall and CPU time, rows the
  plan's queries read, actions.

Python's bytecode cache is kept under the temp directory (PYTHONPYCACHEPREFIX), warmed by one
untimed run, as an installed faithflow has it (a PYTHONDONTWRITEBYTECODE environment would
otherwise compile every module at each start). On a shared machine the wall time is mostly
waiting for a core: the fastest run and the CPU time say what the code costs, the median and
the load average what it cost here.

    .venv/bin/python bench/bench_volunteers.py [--url postgresql://…] [--tenants 2000]
        [--assignments 100000] [--repeat 5]
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import gc
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

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


JOBS = (("volunteer_reminders", "remind"), ("volunteer_gap_alerts", "gaps"))


def child(url: str, job: str) -> None:
    """The planner call alone, in this fresh process: wall and CPU time, rows read, actions."""
    from collections import Counter

    from sqlalchemy import event, text

    from faithflow_ops.config import Settings
    from faithflow_ops.db import Database
    from faithflow_ops.jobs import registry
    from faithflow_ops.jobs.base import JobContext

    db = Database.from_url(url)
    settings = Settings.from_env({"FAITHFLOW_DATABASE_URL": url})
    planner = registry.get(job).load()
    ctx = JobContext(now=NOW, dry_run=True, trigger="cli", settings=settings)
    with db.read_session() as session:  # connect (and set the mappers up) before the clock
        session.execute(text("SELECT 1"))
    gc.freeze()  # the modules' objects out of gc's scans, as `faithflow` does before a run
    rows = 0

    @event.listens_for(db.engine, "after_cursor_execute")
    def count(conn: object, cursor: object, *args: object) -> None:
        nonlocal rows
        rows += max(getattr(cursor, "rowcount", 0) or 0, 0)

    t0, cpu0 = time.perf_counter(), time.process_time()
    with db.read_session() as session:
        actions = list(planner.plan(session, ctx))
    seconds, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    db.dispose()
    kinds = Counter(a.kind for a in actions)
    print(json.dumps({"seconds": seconds, "cpu": cpu, "rows": rows, "counts": dict(kinds)}))


def cli_preview(faithflow: str, url: str, verb: str) -> dict[str, Any]:
    """`faithflow volunteers VERB --dry-run --json` in a fresh process, as an operator runs it:
    its wall time, the run's own `seconds` (its `job run` log line), the actions and bytes."""
    env = {**os.environ, "FAITHFLOW_DATABASE_URL": url, "FAITHFLOW_LOG_FORMAT": "json"}
    command = [faithflow, "volunteers", verb, "--dry-run", "--json", "--now", NOW.isoformat()]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    out = subprocess.run(command, capture_output=True, text=True, env=env, check=False)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    if out.returncode != 0:
        raise SystemExit(f"{' '.join(command)} exited {out.returncode}: {out.stderr[-2000:]}")
    doc = json.loads(out.stdout)
    run = None
    for line in out.stderr.splitlines():
        with contextlib.suppress(ValueError):
            record = json.loads(line)
            if isinstance(record, dict) and record.get("event") == "job run":
                run = float(record["seconds"])
    assert doc["status"] == "succeeded", doc.get("error")
    assert len(doc["actions"]) == sum(doc["counts"].values()), "the JSON lost actions"
    return {
        "seconds": wall,
        "cpu": cpu,
        "run": run if run is not None else float("nan"),
        "counts": doc["counts"],
        "bytes": len(out.stdout.encode()),
    }


def spread(values: list[float]) -> str:
    return f"min {min(values):.3f} s, median {statistics.median(values):.3f} s"


def bench(admin_url: str, tenants: int, assignments: int, repeat: int) -> None:
    # bytecode cached as an installed faithflow has it, outside the checkout
    os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
    os.environ["PYTHONPYCACHEPREFIX"] = str(Path(tempfile.gettempdir()) / "faithflow-bench-pyc")
    faithflow = shutil.which("faithflow", path=str(Path(sys.executable).parent)) or "faithflow"
    name = f"ff_bench_volunteers_{uuid.uuid4().hex[:8]}"
    print(
        f"volunteers benchmark on {admin_url.split('@')[-1]} (python {sys.version.split()[0]}, "
        f"{os.cpu_count()} cores, now {NOW.isoformat()}, load average "
        f"{' '.join(f'{x:.2f}' for x in os.getloadavg())})"
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
        for _, verb in JOBS:  # untimed: the bytecode cache and the database's buffers
            cli_preview(faithflow, url, verb)
        for job, verb in JOBS:
            loads: list[float] = []
            walls: list[float] = []
            cli_cpus: list[float] = []
            runs: list[float] = []
            plans: list[float] = []
            cpus: list[float] = []
            cli: dict[str, Any] = {}
            planned: dict[str, Any] = {}
            for _ in range(repeat):
                loads.append(os.getloadavg()[0])
                cli = cli_preview(faithflow, url, verb)
                walls.append(cli["seconds"])
                cli_cpus.append(cli["cpu"])
                runs.append(cli["run"])
                loads.append(os.getloadavg()[0])
                planned = measure_in_child(__file__, url, job)
                plans.append(planned["seconds"])
                cpus.append(planned["cpu"])
            assert planned["counts"] == cli["counts"], (planned["counts"], cli["counts"])
            rest = [w - r for w, r in zip(walls, runs, strict=True)]
            shown = ", ".join(f"{k}={v:,}" for k, v in sorted(cli["counts"].items()))
            verdict = " and ".join(
                f"{label} {'meets' if value < GOAL_SECONDS else 'MISSES'}"
                for label, value in (("fastest", min(walls)), ("median", statistics.median(walls)))
            )
            print(
                f"{verb} ({repeat} runs, load average {min(loads):.2f}–{max(loads):.2f}; "
                f"{shown or 'nothing'})"
            )
            print(
                f"  end to end  `faithflow volunteers {verb} --dry-run --json`: {spread(walls)} "
                f"— {verdict} the goal (< {GOAL_SECONDS:.0f} s); process cpu min "
                f"{min(cli_cpus):.3f} s; {cli['bytes'] / 2**20:.1f} MiB of JSON"
            )
            print(
                f"    the run (lease, job_runs, plan, JSON written) {spread(runs)}; "
                f"start-up, imports and exit {spread(rest)}"
            )
            print(
                f"  planning in-process (the planner call): {spread(plans)}, "
                f"python cpu min {min(cpus):.3f} s; {planned['rows']:,} rows read"
            )
        print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
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
