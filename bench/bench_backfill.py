"""Backfill throughput and memory: `faithflow subs backfill` over N subscriptions on Postgres.

Goal (issue 2): >= 20,000 rows/s on 200,000 subscriptions with mixed metadata shapes, and
memory that does not grow with the row count (compare 50k with 200k).

For each size this loads one throwaway template database (COPY), then runs the job (not a
preview, no actions collected) in a fresh process on a copy of it:
  first  — the real backfill: most rows change (timed; ru_maxrss growth of the process)
  second — the idempotent rerun on the result: only conflicts/invalid values are reported
  memory — the first run again on a new copy under tracemalloc (peak of the run; slower)
Every database it creates is dropped afterwards.

    python bench/bench_backfill.py [--rows 50000 200000] [--url postgresql://…] [--skip-memory]

URL: --url, else FAITHFLOW_BENCH_POSTGRES_URL, else FAITHFLOW_TEST_POSTGRES_URL, else
postgresql://root@127.0.0.1:5432/test (the server's admin database; it is not written to).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import random
import sys
import time
import uuid
from collections.abc import Iterator
from typing import Any

from _common import admin, measure_in_child, mib, url_from, with_database

TENANTS_PER_SUBSCRIPTION = 0.1
GOAL_ROWS_PER_SECOND = 20_000


# ---------------------------------------------------------------------------------------------
# Data: mixed shapes, as years of history left them


def _alnum(rng: random.Random, n: int = 14) -> str:
    return "".join(
        rng.choices("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789", k=n)
    )


def _shape(i: int, rng: random.Random) -> tuple[str, dict[str, Any], str | None, str | None]:
    """(provider, metadata, provider_customer_id, provider_subscription_id) for row i."""
    cus, sub = f"cus_{_alnum(rng)}{i}", f"sub_{_alnum(rng)}{i}"
    pcus, psub = f"CUS_{_alnum(rng)}{i}", f"SUB_{_alnum(rng)}{i}"
    auth, tok = f"AUTH_{_alnum(rng, 10)}{i}", f"{_alnum(rng, 15)}{i}"
    shape = i % 16
    if shape == 0:
        return (
            "stripe",
            {"customer": {"id": cus, "object": "customer"}, "source": "checkout"},
            None,
            None,
        )
    if shape == 1:
        return "stripe", {"customer": cus, "priceId": "price_123"}, None, None
    if shape == 2:
        return "stripe", {"customerId": cus, "subscriptionId": sub}, None, None
    if shape == 3:
        return "stripe", {"stripe_customer_id": cus, "church": f"church {i}"}, None, None
    if shape == 4:
        return "stripe", {"stripe": {"customer": {"id": cus}, "subscription": sub}}, None, None
    if shape == 5:  # already normalised: nothing to do
        return "stripe", {"stripeCustomerId": cus}, cus, sub
    if shape == 6:  # two different customers: a conflict
        return "stripe", {"customer": cus, "customerId": f"cus_{_alnum(rng)}x{i}"}, None, None
    if shape == 7:  # inner whitespace: invalid
        return "stripe", {"customer": f"cus_ {_alnum(rng)}"}, None, sub
    if shape == 8:
        return (
            "paystack",
            {
                "customer": {"id": 1000 + i, "customer_code": pcus, "email": f"p{i}@church.org"},
                "subscription_code": psub,
                "email_token": tok,
                "authorization": {"authorization_code": auth, "bin": "408408"},
            },
            None,
            None,
        )
    if shape == 9:
        return "paystack", {"customer_code": pcus, "emailToken": tok}, None, None
    if shape == 10:
        return "paystack", {"customerCode": pcus, "subscriptionCode": psub}, None, None
    if shape == 11:  # Paystack's integer customer id only: invalid
        return "paystack", {"customer": {"id": 5000 + i}}, None, None
    if shape == 12:
        return (
            "paystack",
            {"paystack": {"customer_code": pcus}, "authorization_code": auth},
            None,
            None,
        )
    if shape == 13:  # already normalised: nothing to do
        meta = {"paystackCustomerCode": pcus, "paystackSubscriptionCode": psub}
        return "paystack", meta, pcus, psub
    if shape == 14:
        return "stripe", {"note": "imported from the old system"}, None, None
    return "stripe", {"customer": f"  {cus}\n"}, None, None  # a paste artefact: trimmed


def _rows(n: int, tenants: int, plans: list[int]) -> Iterator[tuple[Any, ...]]:
    rng = random.Random(20260301)
    stamp = dt.datetime(2025, 1, 1, tzinfo=dt.UTC)
    for i in range(n):
        provider, meta, cus, sub = _shape(i, rng)
        at = stamp + dt.timedelta(seconds=i, microseconds=rng.randrange(1_000_000))
        yield (
            1 + i % tenants,
            plans[i % len(plans)],
            provider,
            sub,
            cus,
            "active",
            json.dumps(meta),
            at,
            at,
        )


def load(url: str, n: int) -> None:
    """Migrate and fill one database with n subscriptions (COPY; a few seconds for 200k)."""
    import psycopg
    from sqlalchemy.engine import make_url

    from faithflow_ops.db import Database
    from faithflow_ops.migrate import upgrade

    db = Database.from_url(url)
    upgrade(db.engine)
    db.dispose()
    tenants = max(1, int(n * TENANTS_PER_SUBSCRIPTION))
    now = dt.datetime.now(dt.UTC)
    conninfo = make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(conninfo) as conn, conn.cursor() as cur:
        with cur.copy(
            "COPY tenants (slug, name, status, timezone, currency, created_at, updated_at) "
            "FROM STDIN"
        ) as copy:
            for t in range(tenants):
                copy.write_row((f"church-{t}", f"Church {t}", "active", "UTC", "USD", now, now))
        plan_meta = [
            {"stripePriceId": "price_basic", "paystackPlanCode": "PLN_basic"},
            {"stripePriceId": "price_plus"},
            {"paystackPlanCode": "PLN_plus", "tier": "plus"},
            {"stripePriceId": "price_pro", "features": ["streaming", "sms"]},
        ]
        plans: list[int] = []
        for k, meta in enumerate(plan_meta):
            cur.execute(
                "INSERT INTO subscription_plans (code, name, amount_minor, currency, interval, "
                "tier_rank, active, metadata, created_at, updated_at) "
                "VALUES (%s, %s, %s, 'USD', 'month', %s, true, %s, %s, %s) RETURNING id",
                (f"plan{k}", f"Plan {k}", 1000 * (k + 1), k, json.dumps(meta), now, now),
            )
            row = cur.fetchone()
            assert row is not None
            plans.append(int(row[0]))
        with cur.copy(
            "COPY subscriptions (tenant_id, plan_id, provider, provider_subscription_id, "
            "provider_customer_id, status, metadata, created_at, updated_at) FROM STDIN"
        ) as copy:
            for record in _rows(n, tenants, plans):
                copy.write_row(record)
        cur.execute("ANALYZE")
        conn.commit()


# ---------------------------------------------------------------------------------------------
# One measured run, in its own process so ru_maxrss and tracemalloc see only this run


def child(url: str, mode: str) -> None:
    import gc
    import resource
    import tracemalloc

    from sqlalchemy import text

    from faithflow_ops.config import Settings
    from faithflow_ops.db import Database
    from faithflow_ops.jobs import registry
    from faithflow_ops.jobs.base import JobContext
    from faithflow_ops.jobs.runner import run_job
    from faithflow_ops.jobs.subs_backfill import SubscriptionMetadataBackfill

    spent = {"plan": 0.0, "apply": 0.0, "gc": 0.0}

    class Timed(SubscriptionMetadataBackfill):
        """The real job, with the time spent planning and applying added up."""

        def plan(self, session: Any, ctx: Any) -> Iterator[Any]:
            actions = super().plan(session, ctx)
            while True:
                t0 = time.perf_counter()
                action = next(actions, None)
                spent["plan"] += time.perf_counter() - t0
                if action is None:
                    return
                yield action

        def apply_batch(self, session: Any, ctx: Any, actions: Any) -> Any:
            t0 = time.perf_counter()
            try:
                return super().apply_batch(session, ctx, actions)
            finally:
                spent["apply"] += time.perf_counter() - t0

        def apply(self, session: Any, ctx: Any, action: Any) -> None:
            t0 = time.perf_counter()
            try:
                super().apply(session, ctx, action)
            finally:
                spent["apply"] += time.perf_counter() - t0

    gc_started = [0.0]

    def on_gc(phase: str, _info: dict[str, Any]) -> None:
        if phase == "start":
            gc_started[0] = time.perf_counter()
        else:
            spent["gc"] += time.perf_counter() - gc_started[0]

    spec = registry.get("subscription_metadata_backfill")
    db = Database.from_url(url)
    with db.engine.connect() as conn:
        rows = conn.execute(text("SELECT count(*) FROM subscriptions")).scalar_one()
    ctx = JobContext(
        now=dt.datetime.now(dt.UTC),
        dry_run=False,
        trigger="cli",
        settings=Settings.from_env({}),
        actor="bench",
    )
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    if mode == "memory":
        tracemalloc.start()
    else:
        gc.callbacks.append(on_gc)
    t0 = time.perf_counter()
    gc.freeze()  # as `faithflow` does at start-up (faithflow_ops.cli.main)
    result = run_job(db, spec, ctx, collect_actions=False, job=Timed())
    seconds = time.perf_counter() - t0
    peak = tracemalloc.get_traced_memory()[1] if mode == "memory" else None
    rss_after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    db.dispose()
    print(
        json.dumps(
            {
                "rows": rows,
                "seconds": seconds,
                "spent": spent,
                "status": result.status,
                "counts": dict(result.counts),
                "outcomes": dict(result.outcomes),
                "tracemalloc_peak": peak,
                "maxrss_kib_before": rss_before,
                "maxrss_growth_kib": rss_after - rss_before,
            }
        )
    )


def bench(admin_url: str, sizes: list[int], *, memory: bool = True) -> None:
    tag = uuid.uuid4().hex[:8]
    print(f"backfill benchmark on {admin_url.split('@')[-1]} (python {sys.version.split()[0]})")
    header = (
        f"{'rows':>9} {'run':<7} {'seconds':>8} {'rows/s':>9} {'tracemalloc peak':>17} "
        f"{'maxrss growth':>14}  outcomes"
    )
    print(header)
    print("-" * len(header))
    docs: dict[tuple[int, str], dict[str, Any]] = {}
    for n in sizes:
        template = f"ff_bench_{tag}_{n}_tpl"
        copies = [f"ff_bench_{tag}_{n}_a", f"ff_bench_{tag}_{n}_b"]
        try:
            admin(admin_url, f'CREATE DATABASE "{template}"')
            t0 = time.perf_counter()
            load(with_database(admin_url, template), n)
            load_s = time.perf_counter() - t0
            for name in copies:
                admin(admin_url, f'CREATE DATABASE "{name}" TEMPLATE "{template}"')
            runs = [
                ("first", copies[0], "time"),
                ("second", copies[0], "time"),
                ("memory", copies[1], "memory"),
            ]
            if not memory:
                runs.pop()
            for label, name, mode in runs:
                doc = docs[(n, label)] = measure_in_child(
                    __file__, with_database(admin_url, name), mode
                )
                rate = doc["rows"] / doc["seconds"]
                outcomes = ", ".join(f"{k}={v}" for k, v in sorted(doc["outcomes"].items()))
                spent = doc["spent"]
                split = (
                    ""
                    if mode == "memory"
                    else f"  [plan {spent['plan']:.2f}s + apply {spent['apply']:.2f}s; "
                    f"gc {spent['gc']:.2f}s within them]"
                )
                print(
                    f"{doc['rows']:>9,} {label:<7} {doc['seconds']:>8.2f} {rate:>9,.0f} "
                    f"{mib(doc['tracemalloc_peak']):>17} "
                    f"{mib(doc['maxrss_growth_kib'] * 1024):>14}  {outcomes}{split}"
                    + ("" if doc["status"] == "succeeded" else f"  STATUS {doc['status']}")
                )
            print(f"{'':>9} (loaded {n:,} rows with COPY in {load_s:.1f}s)")
        finally:
            for name in [*copies, template]:
                admin(admin_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    _summary(docs)


def _summary(docs: dict[tuple[int, str], dict[str, Any]]) -> None:
    def slowest(label: str) -> float:
        return min(d["rows"] / d["seconds"] for (_, run), d in docs.items() if run == label)

    if not docs:
        return
    first, second = slowest("first"), slowest("second")
    for label, rate in (("first run (rewrites most rows)", first), ("rerun (idempotent)", second)):
        verdict = "meets" if rate >= GOAL_ROWS_PER_SECOND else "MISSES"
        print(
            f"{label}: slowest {rate:,.0f} rows/s — {verdict} the goal of "
            f"{GOAL_ROWS_PER_SECOND:,} rows/s"
        )
    if not any(run == "memory" for _, run in docs):
        return
    peaks = ", ".join(
        f"{mib(d['tracemalloc_peak'])} at {n:,} rows"
        for (n, run), d in sorted(docs.items())
        if run == "memory"
    )
    print(f"tracemalloc peak of the run (should not grow with rows): {peaks}")


def main() -> None:
    if len(sys.argv) == 4 and sys.argv[1] == "--child":
        child(sys.argv[2], sys.argv[3])
        return
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--rows", type=int, nargs="+", default=[50_000, 200_000], help="subscription counts"
    )
    parser.add_argument("--url", help="Postgres server URL (a database to connect to as admin)")
    parser.add_argument(
        "--skip-memory", action="store_true", help="time only (no tracemalloc run): quicker"
    )
    args = parser.parse_args()
    bench(url_from(args), args.rows, memory=not args.skip_memory)


if __name__ == "__main__":
    main()
