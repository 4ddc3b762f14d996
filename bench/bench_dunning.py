"""`faithflow dunning preview` and `dunning run` on Postgres, at the size of issue 5.

Goal: a preview over 50,000 subscriptions with 5,000 past due (each with an open dunning case)
takes < 2 s. The plan reads open cases, their attempts, each tenant's last dunning message and
the tenants' preferences in a few set-based queries, whatever the number of cases.

Data (COPY-loaded into a throwaway database): 10,000 tenants in five time zones; 45,000 active
subscriptions on 5,000 of them; 5,000 past-due subscriptions (one per remaining tenant) with an
open invoice and an open case aged 0-16 days; half the cases have the ladder's earlier steps
already taken (attempts and their sent messages), the rest were found late (several steps due at
once). Preferences: every 5th tenant opted out of SMS, every 50th paused, every 7th has no phone.
No provider keys are set, so the run records its payment retries as `skipped` (no network).

Then, each in its own process on the same copy: the preview (timed), the run (timed; enqueues
every message), and a rerun at the same `--now` (must plan no new sends). The database is
dropped afterwards.

    python bench/bench_dunning.py [--url postgresql://…] [--subscriptions 50000 --past-due 5000]

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

from _common import admin, measure_in_child, url_from, with_database

NOW = dt.datetime(2026, 3, 2, 11, 0, tzinfo=dt.UTC)  # a Monday
GOAL_PREVIEW_SECONDS = 2.0
H, D = dt.timedelta(hours=1), dt.timedelta(days=1)
ZONES = ("UTC", "Africa/Lagos", "America/Chicago", "Europe/London", "Asia/Manila")


def load(url: str, n: int, past_due: int) -> None:
    """Migrate and fill one database (COPY; ids follow the rows in empty tables)."""
    import psycopg
    from sqlalchemy.engine import make_url

    from faithflow_ops.db import Database
    from faithflow_ops.dunning.policy import DEFAULT_POLICY
    from faithflow_ops.migrate import upgrade

    db = Database.from_url(url)
    upgrade(db.engine)
    db.dispose()
    created = NOW - 400 * D
    active_tenants = max(1, (n - past_due) // 9)
    tenants = past_due + active_tenants
    conninfo = make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(conninfo) as conn, conn.cursor() as cur:
        cur.execute(
            "INSERT INTO subscription_plans (code, name, amount_minor, currency, interval, "
            "tier_rank, active, metadata, created_at, updated_at) VALUES ('growth', 'Growth', "
            "1500000, 'NGN', 'month', 0, true, '{}', %s, %s) RETURNING id",
            (created, created),
        )
        row = cur.fetchone()
        assert row is not None
        plan = int(row[0])
        with cur.copy(
            "COPY tenants (slug, name, status, timezone, currency, locale, billing_email, "
            "billing_phone, created_at, updated_at) FROM STDIN"
        ) as copy:
            for t in range(1, tenants + 1):
                phone = None if t % 7 == 0 else f"+23480{t:08d}"
                copy.write_row(
                    (
                        f"church-{t}",
                        f"Church {t}",
                        "active",
                        ZONES[t % len(ZONES)],
                        "NGN",
                        "en",
                        f"treasurer{t}@church{t}.example.org",
                        phone,
                        created,
                        created,
                    )
                )
        with cur.copy(
            "COPY subscriptions (tenant_id, plan_id, provider, provider_subscription_id, status, "
            "current_period_start, current_period_end, cancel_at_period_end, past_due_since, "
            "metadata, created_at, updated_at) FROM STDIN"
        ) as copy:
            for i in range(past_due):  # subscription i+1 = tenant i+1, past due
                since = NOW - ((i * 37) % (16 * 24)) * H
                copy.write_row(
                    (
                        i + 1,
                        plan,
                        "paystack" if i % 2 else "stripe",
                        f"SUB_{i + 1}",
                        "past_due",
                        since - 30 * D,
                        since,
                        False,
                        since,
                        "{}",
                        created,
                        created,
                    )
                )
            for k in range(n - past_due):
                end = NOW + (1 + k % 30) * D
                copy.write_row(
                    (
                        past_due + 1 + k % active_tenants,
                        plan,
                        "stripe",
                        f"sub_{past_due + k + 1}",
                        "active",
                        end - 30 * D,
                        end,
                        False,
                        None,
                        "{}",
                        created,
                        created,
                    )
                )
        with cur.copy(
            "COPY invoices (tenant_id, subscription_id, provider, provider_invoice_id, status, "
            "amount_due_minor, amount_paid_minor, currency, period_start, period_end, "
            "hosted_invoice_url, metadata, created_at, updated_at) FROM STDIN"
        ) as copy:
            for i in range(past_due):  # invoice i+1 = subscription i+1's open invoice
                since = NOW - ((i * 37) % (16 * 24)) * H
                copy.write_row(
                    (
                        i + 1,
                        i + 1,
                        "paystack" if i % 2 else "stripe",
                        f"in_{i + 1}",
                        "open",
                        1500000,
                        0,
                        "NGN",
                        since,
                        since + 30 * D,
                        f"https://invoice.example/in_{i + 1}",
                        "{}",
                        since,
                        since,
                    )
                )
        with cur.copy(
            "COPY dunning_cases (tenant_id, subscription_id, status, opened_at, past_due_since, "
            "invoice_id, provider_invoice_id, amount_minor, currency, opened_by, created_at, "
            "updated_at) FROM STDIN"
        ) as copy:
            for i in range(past_due):  # case i+1 = subscription i+1
                since = NOW - ((i * 37) % (16 * 24)) * H
                copy.write_row(
                    (
                        i + 1,
                        i + 1,
                        "open",
                        since,
                        since,
                        i + 1,
                        f"in_{i + 1}",
                        1500000,
                        "NGN",
                        "webhook:bench",
                        since,
                        since,
                    )
                )
        messages: list[tuple[Any, ...]] = []
        attempts: list[tuple[Any, ...]] = []
        for i in range(0, past_due, 2):  # half the cases: earlier steps already taken
            since = NOW - ((i * 37) % (16 * 24)) * H
            for index, step in enumerate(DEFAULT_POLICY.steps):
                at = since + step.offset
                if at > NOW - D:
                    break
                for channel in step.channels:
                    messages.append((i + 1, channel, at, f"dunning:{i + 1}:{step.key}:{channel}"))
                    attempts.append((i + 1, step.key, index, channel, at, len(messages), None))
                if step.retry_payment:
                    attempts.append((i + 1, step.key, index, "payment_retry", at, None, "failed"))
                if step.handover:
                    attempts.append((i + 1, step.key, index, "handover", at, None, None))
        with cur.copy(
            "COPY outbound_messages (tenant_id, channel, recipient, template, variables, locale, "
            "body, category, priority, status, idempotency_key, attempts, not_before, "
            "next_attempt_at, sent_at, created_at, updated_at) FROM STDIN"
        ) as copy:
            for tenant, channel, at, key in messages:
                to = f"treasurer{tenant}@church{tenant}.example.org"
                recipient = to if channel == "email" else f"+23480{tenant:08d}"
                copy.write_row(
                    (
                        tenant,
                        channel,
                        recipient,
                        "dunning_reminder",
                        "{}",
                        "en",
                        "…",
                        "dunning",
                        50,
                        "sent",
                        key,
                        1,
                        at,
                        at,
                        at,
                        at,
                        at,
                    )
                )
        with cur.copy(
            "COPY dunning_attempts (case_id, tenant_id, step, step_index, channel, scheduled_at, "
            "message_id, retry_outcome, created_at) FROM STDIN"
        ) as copy:
            for case, step_key, index, channel, at, message, outcome in attempts:
                copy.write_row((case, case, step_key, index, channel, at, message, outcome, at))
        with cur.copy(
            "COPY dunning_preferences (tenant_id, sms_opt_out, whatsapp_opt_out, paused_until, "
            "pause_note, created_at, updated_at) FROM STDIN"
        ) as copy:
            for t in range(1, tenants + 1):
                paused = t % 50 == 1
                if t % 5 == 0 or paused:
                    copy.write_row(
                        (t, t % 5 == 0, False)
                        + ((NOW + 2 * D, "promised", created, created) if paused else ())
                        + (() if paused else (None, None, created, created))
                    )
        cur.execute("ANALYZE")
        conn.commit()


def child(url: str, mode: str) -> None:
    from sqlalchemy import text

    from faithflow_ops.config import Settings
    from faithflow_ops.db import Database
    from faithflow_ops.jobs import registry
    from faithflow_ops.jobs.base import ActionResult, JobContext
    from faithflow_ops.jobs.runner import run_job

    db = Database.from_url(url)
    with db.engine.connect() as conn:
        rows = conn.execute(text("SELECT count(*) FROM subscriptions")).scalar_one()
        cases = conn.execute(
            text("SELECT count(*) FROM dunning_cases WHERE status = 'open'")
        ).scalar_one()
    ctx = JobContext(
        now=NOW,
        dry_run=mode == "preview",
        trigger="cli",
        settings=Settings.from_env({}),
        actor="bench",
    )

    def sink(item: ActionResult) -> None:  # what `--json` prints: every action's fields
        json.dumps(item.to_dict(), default=str)

    t0 = time.perf_counter()
    result = run_job(db, registry.get("dunning"), ctx, on_action=sink, collect_actions=False)
    seconds = time.perf_counter() - t0
    with db.engine.connect() as conn:
        queued = conn.execute(
            text("SELECT count(*) FROM outbound_messages WHERE status IN ('queued', 'scheduled')")
        ).scalar_one()
    db.dispose()
    print(
        json.dumps(
            {
                "rows": rows,
                "open_cases": cases,
                "seconds": seconds,
                "status": result.status,
                "error": result.error,
                "counts": dict(result.counts),
                "outcomes": dict(result.outcomes),
                "pending_messages": queued,
            }
        )
    )


def bench(admin_url: str, n: int, past_due: int) -> None:
    name = f"ff_bench_dunning_{uuid.uuid4().hex[:8]}"
    print(
        f"dunning benchmark on {admin_url.split('@')[-1]} (python {sys.version.split()[0]}, "
        f"now {NOW.isoformat()})"
    )
    try:
        admin(admin_url, f'CREATE DATABASE "{name}"')
        t0 = time.perf_counter()
        load(with_database(admin_url, name), n, past_due)
        print(
            f"loaded {n:,} subscriptions, {past_due:,} past due, "
            f"in {time.perf_counter() - t0:.1f} s"
        )
        header = (
            f"{'run':<8} {'seconds':>8} {'open cases':>11} {'pending msgs':>13}  actions / outcomes"
        )
        print(header)
        print("-" * len(header))
        preview = None
        for mode in ("preview", "run", "rerun"):
            doc = measure_in_child(__file__, with_database(admin_url, name), mode)
            if mode == "preview":
                preview = doc["seconds"]
            counts = ", ".join(f"{k}={v}" for k, v in sorted(doc["counts"].items()))
            outcomes = ", ".join(f"{k}={v}" for k, v in sorted(doc["outcomes"].items()))
            print(
                f"{mode:<8} {doc['seconds']:>8.3f} {doc['open_cases']:>11,} "
                f"{doc['pending_messages']:>13,}  {counts or 'nothing'}"
                + (f" / {outcomes}" if outcomes else "")
                + ("" if doc["status"] == "succeeded" else f"  STATUS {doc['status']}")
                + (f" ({doc['error']})" if doc.get("error") else "")
            )
        assert preview is not None
        verdict = "meets" if preview < GOAL_PREVIEW_SECONDS else "MISSES"
        print(
            f"preview of {n:,} subscriptions with {past_due:,} open cases: {preview:.3f} s — "
            f"{verdict} the goal (< {GOAL_PREVIEW_SECONDS:.0f} s)"
        )
    finally:
        admin(admin_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def main() -> None:
    if len(sys.argv) == 4 and sys.argv[1] == "--child":
        child(sys.argv[2], sys.argv[3].replace("rerun", "run"))
        return
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--url", help="Postgres server URL (a database to connect to as admin)")
    parser.add_argument("--subscriptions", type=int, default=50_000)
    parser.add_argument("--past-due", type=int, default=5_000)
    args = parser.parse_args()
    bench(url_from(args), args.subscriptions, args.past_due)


if __name__ == "__main__":
    main()
