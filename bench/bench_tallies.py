"""Request tallies (faithflow_ops/slo/tallies.py): what counting the receiver's answers for
`slo report` costs on the request path, and what a flush costs.

- add: `Tally.add` per answer (bucket lookup + dict increment under a lock), plus the
  `utcnow()` the middleware takes for it — the only work on the request path;
- flush: one upsert per key into request_tallies, for a minute of a busy receiver (every
  route template x 2 status classes x 4 buckets), on SQLite and on Postgres when
  FAITHFLOW_BENCH_POSTGRES_URL (or FAITHFLOW_TEST_POSTGRES_URL) names a database to create
  a scratch one in.

Process start-up and migrations are outside every figure. Prints the load average first.
"""

from __future__ import annotations

import datetime as dt
import os
import tempfile
import time
import uuid
from pathlib import Path

from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from faithflow_ops.db import Database, utcnow
from faithflow_ops.migrate import upgrade
from faithflow_ops.slo.tallies import Tally

ADDS = 200_000
ROUTES = [f"/webhooks/r{i}" for i in range(8)] + [f"/tasks/job{i}" for i in range(25)]
NOW = dt.datetime(2026, 3, 31, 12, 0, tzinfo=dt.UTC)


def bench_add() -> None:
    tally = Tally()
    seconds = [0.003, 0.02, 0.08, 0.3]
    started = time.perf_counter()
    for i in range(ADDS):
        tally.add(ROUTES[i % len(ROUTES)], "2xx", seconds[i % 4], utcnow())
    elapsed = time.perf_counter() - started
    print(f"add: {ADDS} answers, {elapsed / ADDS * 1e6:.2f} us each (incl. utcnow())")


def _minute() -> Tally:
    tally = Tally()
    for route in ROUTES:
        for status in ("2xx", "5xx"):
            for seconds in (0.003, 0.02, 0.08, 0.3):
                tally.add(route, status, seconds, NOW)
    return tally


def bench_flush(name: str, db: Database) -> None:
    upgrade(db.engine)
    times = []
    for _ in range(20):
        tally = _minute()
        started = time.perf_counter()
        keys = tally.flush(db, NOW)
        times.append(time.perf_counter() - started)
    times.sort()
    print(
        f"flush ({name}): {keys} keys, median {times[len(times) // 2] * 1000:.1f} ms, "
        f"max {times[-1] * 1000:.1f} ms (20 flushes, upserts onto existing rows after the first)"
    )


def main() -> None:
    print(f"load average: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    bench_add()
    with tempfile.TemporaryDirectory() as folder:
        db = Database.from_url(f"sqlite:///{Path(folder) / 'tallies.db'}")
        try:
            bench_flush("sqlite", db)
        finally:
            db.dispose()
    admin = os.environ.get("FAITHFLOW_BENCH_POSTGRES_URL") or os.environ.get(
        "FAITHFLOW_TEST_POSTGRES_URL"
    )
    if not admin:
        print("flush (postgres): skipped, set FAITHFLOW_BENCH_POSTGRES_URL")
        return
    name = f"bench_tallies_{uuid.uuid4().hex[:8]}"
    engine = create_engine(make_url(admin).set(drivername="postgresql+psycopg"))
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        url = make_url(admin).set(drivername="postgresql+psycopg", database=name)
        db = Database.from_url(url.render_as_string(hide_password=False))
        try:
            bench_flush("postgres", db)
        finally:
            db.dispose()
    finally:
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(text(f'DROP DATABASE "{name}"'))
        engine.dispose()
    print(f"load average: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
