"""`faithflow subs automate` on Postgres: preview and run times, and memory, as rows grow.

Goal (issue 4): a preview over 200,000 subscriptions with 1% due for some action takes < 3 s,
and the time grows with the due rows, not with the total: each rule reads only its own due
rows through an index made for it.

Cases (`--cases ROWS:DUE …`, default 50000:500 200000:2000 200000:500): ROWS subscriptions of
which DUE are due for an action, spread over every rule (trial notices 20%, mark past due
20%, suspend 20%, cancel 15%, plan changes 15%, reactivations 10%), among rows that are not
due (active and renewing, long trials, canceled, past due within the grace, renewals paid but
not yet advanced, plan-change history, paid invoices). Per case, one template database is
COPY-loaded, then copied twice:
  preview — `--dry-run` (timed), then the run (applies every action), then a rerun at the same
            `--now` (must plan nothing)
  memory  — the preview and then the run again on a fresh copy under tracemalloc (peaks)
Each measurement runs in its own process. Every database it creates is dropped afterwards.

    python bench/bench_subs_automate.py [--cases 50000:500 200000:2000] [--url …] [--skip-memory]

URL: --url, else FAITHFLOW_BENCH_POSTGRES_URL, else FAITHFLOW_TEST_POSTGRES_URL, else
postgresql://root@127.0.0.1:5432/test (the server's admin database; it is not written to).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
import time
import uuid
from typing import Any

from _common import admin, measure_in_child, mib, url_from, with_database

DEFAULT_CASES = ["50000:500", "200000:2000", "200000:500"]
NOW = dt.datetime(2026, 3, 2, 9, 0, tzinfo=dt.UTC)
GOAL_PREVIEW_SECONDS = 3.0
H, D = dt.timedelta(hours=1), dt.timedelta(days=1)


# ---------------------------------------------------------------------------------------------
# Data


# rule of the j-th due row, by j % 20
def _rule(j: int) -> str:
    k = j % 20
    if k < 4:
        return "trial"
    if k < 8:
        return "past_due"
    if k < 12:
        return "suspend"
    if k < 15:
        return "cancel"
    if k < 18:
        return "plan_change"
    return "reactivate"


class _Data:
    """Every row of one case, built in memory (tuples) and then COPY-loaded."""

    def __init__(self, n: int, due: int, plans: list[int]) -> None:
        self.regular = max(1, n // 10)  # tenants 1..regular: ~10 subscriptions each
        self.subs: list[tuple[Any, ...]] = []
        self.invoices: list[tuple[Any, ...]] = []
        self.changes: list[tuple[Any, ...]] = []
        self.suspended: set[int] = set()  # regular tenants suspended for non-payment
        self.dedicated = 0  # tenants after the regular ones: one due subscription each
        step = max(1, n // due)
        j = 0
        for i in range(n):
            sub_id = i + 1  # COPY into an empty table: ids follow the rows
            tenant = 1 + i % self.regular
            plan = plans[i % len(plans)]
            provider = "paystack" if i % 2 else "stripe"
            row: dict[str, Any] = {
                "tenant": tenant,
                "plan": plan,
                "provider": provider,
                "status": "active",
                "trial_end": None,
                "cpe": NOW + (i % 30) * D + H,
                "cancel": False,
                "since": None,
            }
            if i % step == 0 and j < due:
                self._due(row, _rule(j), j, sub_id, plans)
                j += 1
            else:
                self._background(row, i, sub_id, plans)
            cps = row["cpe"] - 30 * D if row["cpe"] else None
            self.subs.append(
                (
                    row["tenant"],
                    row["plan"],
                    row["provider"],
                    f"{'SUB' if provider == 'paystack' else 'sub'}_{sub_id}",
                    row["status"],
                    row["trial_end"],
                    cps,
                    row["cpe"],
                    row["cancel"],
                    row["since"],
                    "{}",
                    NOW - 400 * D,
                    NOW - 2 * D,
                )
            )

    def _due(self, row: dict[str, Any], rule: str, j: int, sub_id: int, plans: list[int]) -> None:
        if rule == "trial":
            row.update(status="trialing", trial_end=NOW + (1 + j % 70) * H, provider="stripe")
        elif rule == "past_due":  # a Paystack period ended 1-5 days ago, no renewal paid
            row.update(provider="paystack", cpe=NOW - (1 + j % 5) * D)
        elif rule == "suspend":  # long past due, on a tenant with nothing else live
            self.dedicated += 1
            row.update(
                tenant=self.regular + self.dedicated,
                status="past_due",
                since=NOW - (41 + j % 5) * D,
                cpe=NOW - (41 + j % 5) * D,
            )
        elif rule == "cancel":
            row.update(cancel=True, cpe=NOW - (1 + j % 48) * H)
        elif rule == "plan_change":
            to = plans[(plans.index(row["plan"]) + 1) % len(plans)]
            self.changes.append(
                (row["tenant"], sub_id, row["plan"], to, "upgrade", "scheduled", NOW - H, None)
            )
        else:  # reactivate: its own tenant, suspended for non-payment; this one is active
            self.dedicated += 1
            row["tenant"] = self.regular + self.dedicated
            self.suspended.add(row["tenant"])

    def _background(self, row: dict[str, Any], i: int, sub_id: int, plans: list[int]) -> None:
        r = i % 100
        if r == 1:  # a long trial
            row.update(status="trialing", trial_end=NOW + (10 + i % 20) * D)
        elif r == 2:
            row.update(status="canceled")
        elif r == 3:  # past due, within any grace
            row.update(status="past_due", since=NOW - 3 * D)
        elif r == 5:  # cancels at a period end still ahead
            row.update(cancel=True)
        elif i % 500 == 4:  # renewal paid, period not advanced yet by its webhook: not due
            row.update(provider="paystack", cpe=NOW - D)
            self._invoice(row, sub_id, row["cpe"], row["cpe"] + 30 * D)
        if i % 4 == 0 and row["status"] == "active":  # the current period, paid
            self._invoice(row, sub_id, row["cpe"] - 30 * D, row["cpe"])
        if i % 50 == 7:  # an applied change in the history
            to = plans[(plans.index(row["plan"]) + 1) % len(plans)]
            self.changes.append(
                (row["tenant"], sub_id, to, row["plan"], "downgrade", "applied", NOW - 20 * D, NOW)
            )
        elif i % 200 == 9:  # scheduled for later
            to = plans[(plans.index(row["plan"]) + 1) % len(plans)]
            self.changes.append(
                (row["tenant"], sub_id, row["plan"], to, "upgrade", "scheduled", NOW + 9 * D, None)
            )

    def _invoice(
        self, row: dict[str, Any], sub_id: int, start: dt.datetime, end: dt.datetime
    ) -> None:
        n = len(self.invoices)
        tenant, provider = row["tenant"], row["provider"]
        head = (tenant, sub_id, provider, f"inv_{n}", "paid", 5000, 5000, "USD")
        # period_start, period_end, paid_at, metadata, created_at, updated_at
        self.invoices.append((*head, start, end, start, "{}", start, start))


def load(url: str, n: int, due: int) -> None:
    """Migrate and fill one database (COPY)."""
    import psycopg
    from sqlalchemy.engine import make_url

    from faithflow_ops.db import Database
    from faithflow_ops.migrate import upgrade

    db = Database.from_url(url)
    upgrade(db.engine)
    db.dispose()
    created = NOW - 400 * D
    conninfo = make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(conninfo) as conn, conn.cursor() as cur:
        plan_meta = [{}, {"graceDays": 21}, {"tier": "plus"}, {"graceDays": "soon"}]
        plans: list[int] = []
        for k, meta in enumerate(plan_meta):
            cur.execute(
                "INSERT INTO subscription_plans (code, name, amount_minor, currency, interval, "
                "tier_rank, active, metadata, created_at, updated_at) "
                "VALUES (%s, %s, %s, 'USD', 'month', %s, true, %s, %s, %s) RETURNING id",
                (f"plan{k}", f"Plan {k}", 1000 * (k + 1), k, json.dumps(meta), created, created),
            )
            row = cur.fetchone()
            assert row is not None
            plans.append(int(row[0]))
        data = _Data(n, due, plans)
        with cur.copy(
            "COPY tenants (slug, name, status, suspension_reason, suspended_at, timezone, "
            "currency, billing_grace_days, created_at, updated_at) FROM STDIN"
        ) as copy:
            for t in range(1, data.regular + data.dedicated + 1):
                off = t in data.suspended
                grace = 30 if t % 100 == 0 else 7 if t % 250 == 1 else None
                copy.write_row(
                    (
                        f"church-{t}",
                        f"Church {t}",
                        "suspended" if off else "active",
                        "non_payment" if off else None,
                        NOW - 2 * D if off else None,
                        "UTC",
                        "USD",
                        grace,
                        created,
                        created,
                    )
                )
        with cur.copy(
            "COPY subscriptions (tenant_id, plan_id, provider, provider_subscription_id, status, "
            "trial_end, current_period_start, current_period_end, cancel_at_period_end, "
            "past_due_since, metadata, created_at, updated_at) FROM STDIN"
        ) as copy:
            for record in data.subs:
                copy.write_row(record)
        with cur.copy(
            "COPY invoices (tenant_id, subscription_id, provider, provider_invoice_id, status, "
            "amount_due_minor, amount_paid_minor, currency, period_start, period_end, paid_at, "
            "metadata, created_at, updated_at) FROM STDIN"
        ) as copy:
            for record in data.invoices:
                copy.write_row(record)
        with cur.copy(
            "COPY plan_changes (tenant_id, subscription_id, from_plan_id, to_plan_id, kind, "
            "status, effective_at, applied_at, provider_refs, created_at, updated_at) FROM STDIN"
        ) as copy:
            for change in data.changes:
                copy.write_row((*change, "{}", created, created))
        cur.execute("ANALYZE")
        conn.commit()


# ---------------------------------------------------------------------------------------------
# One measured run, in its own process


def child(url: str, mode: str) -> None:
    import resource
    import tracemalloc
    from collections import Counter

    from sqlalchemy import text

    from faithflow_ops.config import Settings
    from faithflow_ops.db import Database
    from faithflow_ops.jobs import registry
    from faithflow_ops.jobs.base import ActionResult, JobContext
    from faithflow_ops.jobs.runner import run_job

    memory = mode.startswith("memory-")
    dry_run = mode.endswith("preview")
    spec = registry.get("subscriptions_automate")
    db = Database.from_url(url)
    with db.engine.connect() as conn:
        rows = conn.execute(text("SELECT count(*) FROM subscriptions")).scalar_one()
    ctx = JobContext(
        now=NOW, dry_run=dry_run, trigger="cli", settings=Settings.from_env({}), actor="bench"
    )
    shown: Counter[str] = Counter()

    def sink(item: ActionResult) -> None:  # what a preview prints: every action's fields
        item.to_dict()
        shown[item.action.kind] += 1

    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    if memory:
        tracemalloc.start()
    t0 = time.perf_counter()
    result = run_job(db, spec, ctx, on_action=sink, collect_actions=False)
    seconds = time.perf_counter() - t0
    peak = tracemalloc.get_traced_memory()[1] if memory else None
    rss_after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    db.dispose()
    print(
        json.dumps(
            {
                "rows": rows,
                "seconds": seconds,
                "status": result.status,
                "counts": dict(result.counts),
                "outcomes": dict(result.outcomes),
                "tracemalloc_peak": peak,
                "maxrss_growth_kib": rss_after - rss_before,
            }
        )
    )


def bench(admin_url: str, cases: list[tuple[int, int]], *, memory: bool = True) -> None:
    tag = uuid.uuid4().hex[:8]
    print(
        f"subs automate benchmark on {admin_url.split('@')[-1]} "
        f"(python {sys.version.split()[0]}, now {NOW.isoformat()})"
    )
    header = (
        f"{'rows':>9} {'due':>6} {'run':<15} {'seconds':>8} {'tracemalloc peak':>17} "
        f"{'maxrss growth':>14}  actions / outcomes"
    )
    print(header)
    print("-" * len(header))
    previews: list[tuple[int, int, float]] = []
    for n, due in cases:
        template = f"ff_bench_{tag}_{n}_{due}_tpl"
        copies = [f"ff_bench_{tag}_{n}_{due}_a", f"ff_bench_{tag}_{n}_{due}_b"]
        try:
            admin(admin_url, f'CREATE DATABASE "{template}"')
            t0 = time.perf_counter()
            load(with_database(admin_url, template), n, due)
            load_s = time.perf_counter() - t0
            for name in copies:
                admin(admin_url, f'CREATE DATABASE "{name}" TEMPLATE "{template}"')
            runs = [
                ("preview", copies[0], "preview"),
                ("run", copies[0], "run"),
                ("rerun", copies[0], "run"),
                ("preview (mem)", copies[1], "memory-preview"),
                ("run (mem)", copies[1], "memory-run"),
            ]
            if not memory:
                runs = runs[:3]
            for label, name, mode in runs:
                doc = measure_in_child(__file__, with_database(admin_url, name), mode)
                if label == "preview":
                    previews.append((n, due, doc["seconds"]))
                what = doc["outcomes"] if "preview" not in label else doc["counts"]
                total = sum(doc["counts"].values())
                detail = f"{total:,} planned: " + ", ".join(
                    f"{k}={v}" for k, v in sorted(what.items())
                )
                print(
                    f"{doc['rows']:>9,} {due:>6,} {label:<15} {doc['seconds']:>8.3f} "
                    f"{mib(doc['tracemalloc_peak']):>17} "
                    f"{mib(doc['maxrss_growth_kib'] * 1024):>14}  {detail}"
                    + ("" if doc["status"] == "succeeded" else f"  STATUS {doc['status']}")
                )
            print(f"{'':>9} (loaded {n:,} subscriptions with COPY in {load_s:.1f}s)")
        finally:
            for name in [*copies, template]:
                admin(admin_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    for n, due, seconds in previews:
        verdict = "meets" if seconds < GOAL_PREVIEW_SECONDS else "MISSES"
        print(
            f"preview of {n:,} rows with {due:,} due: {seconds:.3f} s — {verdict} the goal "
            f"(< {GOAL_PREVIEW_SECONDS:.0f} s); {seconds / due * 1000:.2f} ms per due row"
        )


def main() -> None:
    if len(sys.argv) == 4 and sys.argv[1] == "--child":
        child(sys.argv[2], sys.argv[3])
        return
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--cases", nargs="+", default=DEFAULT_CASES, help="ROWS:DUE pairs, e.g. 200000:2000"
    )
    parser.add_argument("--url", help="Postgres server URL (a database to connect to as admin)")
    parser.add_argument(
        "--skip-memory", action="store_true", help="time only (no tracemalloc runs): quicker"
    )
    args = parser.parse_args()
    cases = []
    for case in args.cases:
        rows, _, due = case.partition(":")
        cases.append((int(rows), int(due or max(1, int(rows) // 100))))
    bench(url_from(args), cases, memory=not args.skip_memory)


if __name__ == "__main__":
    main()
