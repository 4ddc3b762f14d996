"""`faithflow retention run` on Postgres (issue 19): throughput per data class and the proof that
it works in batches without long locks (the largest single transaction, by time and by rows).

A throwaway database gets, spread over `--tenants` churches (rows of all tenants interleaved in
id order, as production writes them):

- `--messages` delivered outbox messages created 200 days ago (COPY);
- `--tickets` closed support tickets closed 400 days ago (COPY), each with a requester message
  and an agent reply that quote the requester's name, e-mail and phone (INSERT … SELECT);

then `retention run --data-class C` for `outbound_messages` and `support_tickets` through the
real runner (plan on one connection while batches apply on another, one transaction each).
Every batch's transaction is timed from its BEGIN to its COMMIT (the job's own applier wrapped
with a clock, nothing else changed). Printed per class: rows, plan time (a preview run: the
keyset pages only), run time, rows/s, batches, the largest transaction (seconds and rows) and
the median; the load average (`uptime`) before and after; process start-up (imports) apart.
Afterwards every row must be done and a rerun must find nothing. The database is dropped.

    python bench/bench_retention.py [--messages 1000000] [--tickets 500000] [--tenants 200]
                                    [--batch-size 5000] [--url …]

URL: --url, else FAITHFLOW_BENCH_POSTGRES_URL, else FAITHFLOW_TEST_POSTGRES_URL, else
postgresql://root@127.0.0.1:5432/test (the server's admin database; it is not written to).
"""

from __future__ import annotations

import time

_STARTED = time.perf_counter()

import argparse  # noqa: E402
import dataclasses  # noqa: E402
import datetime as dt  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import uuid  # noqa: E402
from collections.abc import Sequence  # noqa: E402
from typing import Any  # noqa: E402

from _common import admin, url_from, with_database  # noqa: E402

NOW = dt.datetime(2026, 6, 1, 3, 40, tzinfo=dt.UTC)
MESSAGE_AGE = dt.timedelta(days=200)
TICKET_AGE = dt.timedelta(days=400)


def load_average() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()


def fill(db: Any, tenants: int, messages: int, tickets: int) -> dict[str, float]:
    """COPY the rows in; returns seconds per step."""
    from sqlalchemy import insert

    from faithflow_ops.models import Tenant

    took: dict[str, float] = {}
    with db.session() as session:
        session.execute(
            insert(Tenant),
            [{"slug": f"church-{i}", "name": f"Church {i}"} for i in range(1, tenants + 1)],
        )
    raw = db.engine.raw_connection()
    try:
        conn: Any = raw.driver_connection
        cur = conn.cursor()
        started = time.perf_counter()
        sent = NOW - MESSAGE_AGE
        with cur.copy(
            "COPY outbound_messages (tenant_id, channel, recipient, template, variables, locale, "
            "subject, body, category, priority, status, idempotency_key, attempts, not_before, "
            "next_attempt_at, created_at, updated_at, sent_at, delivered_at) FROM STDIN"
        ) as copy:
            for i in range(messages):
                copy.write_row((
                    i % tenants + 1, "email", f"member{i}@church.example", "notice",
                    json.dumps({"name": f"Member {i}", "message": "Choir practice at 6pm"}), "en",
                    f"Notice for Member {i}", f"Dear Member {i}, choir practice moves to 6pm.",
                    "bench", 50, "delivered", f"bench:{i}", 1, sent, sent, sent, sent, sent, sent,
                ))  # fmt: skip
        conn.commit()
        took["copy outbound_messages"] = time.perf_counter() - started
        started = time.perf_counter()
        closed = NOW - TICKET_AGE
        opened = closed - dt.timedelta(days=3)
        with cur.copy(
            "COPY support_tickets (tenant_id, requester_email, requester_name, subject, "
            "priority, status, opened_at, status_changed_at, solved_at, closed_at, resolution, "
            "created_at, updated_at) FROM STDIN"
        ) as copy:
            for i in range(tickets):
                copy.write_row((
                    i % tenants + 1, f"ada.obi{i}@example.org", f"Ada Obi{i}",
                    f"Refund for Ada Obi{i}", "normal", "closed", opened, closed, closed, closed,
                    "solved", opened, closed,
                ))  # fmt: skip
        cur.execute(
            "INSERT INTO support_messages (ticket_id, tenant_id, author_kind, author_email, "
            "public, body, created_at) "
            "SELECT id, tenant_id, 'requester', requester_email, true, 'I am ' || "
            "requester_name || ', call me on +234 801 234 5678 or ' || requester_email, "
            "opened_at FROM support_tickets "
            "UNION ALL SELECT id, tenant_id, 'agent', 'agent@faithflow.example', true, "
            "'Hi ' || requester_name || ', refunded on 2026-03-01.', closed_at "
            "FROM support_tickets"
        )
        conn.commit()
        took["copy support_tickets + messages"] = time.perf_counter() - started
        started = time.perf_counter()
        conn.autocommit = True
        cur.execute("VACUUM ANALYZE outbound_messages, support_tickets, support_messages")
        took["vacuum analyze"] = time.perf_counter() - started
    finally:
        raw.close()
    return took


def run_class(db: Any, settings: Any, data_class: str, batch_size: int) -> dict[str, Any]:
    from faithflow_ops.jobs import registry
    from faithflow_ops.jobs.base import ActionResult, JobContext
    from faithflow_ops.jobs.options import RetentionOptions
    from faithflow_ops.jobs.retention_run import RetentionRun
    from faithflow_ops.jobs.runner import apply_one, run_job

    transactions: list[tuple[float, int]] = []

    class Timed(RetentionRun):
        """The real job; each batch's transaction (BEGIN … apply … COMMIT) timed."""

        def apply_unmanaged(
            self, db: Any, ctx: JobContext, actions: Sequence[Any]
        ) -> list[ActionResult]:
            results = []
            for action in actions:
                started = time.perf_counter()
                result = apply_one(db, self, ctx, action)
                transactions.append((time.perf_counter() - started, action.data["rows"]))
                results.append(result)
            return results

    spec = registry.get("retention")
    options = RetentionOptions(data_class=data_class, batch_size=batch_size)

    def ctx(dry_run: bool) -> JobContext:
        return JobContext(
            now=NOW, dry_run=dry_run, trigger="cli", settings=settings, options=options
        )

    started = time.perf_counter()
    preview = run_job(db, spec, ctx(True), collect_actions=True, job=Timed())
    plan_seconds = time.perf_counter() - started
    planned = sum(a.action.data["rows"] for a in preview.actions)
    started = time.perf_counter()
    result = run_job(db, spec, ctx(False), collect_actions=False, job=Timed())
    seconds = time.perf_counter() - started
    rerun = run_job(db, spec, ctx(False), collect_actions=False, job=Timed())
    rows = sum(n for _, n in transactions)
    longest = max(transactions, default=(0.0, 0))
    return {
        "status": result.status,
        "outcomes": dict(result.outcomes),
        "planned": planned,
        "rows": rows,
        "plan_seconds": plan_seconds,
        "seconds": seconds,
        "per_second": rows / seconds if seconds else 0.0,
        "batches": len(transactions),
        "longest": longest,
        "largest_rows": max((n for _, n in transactions), default=0),
        "median": statistics.median(s for s, _ in transactions) if transactions else 0.0,
        "rerun": dict(rerun.counts),
    }


def check(db: Any) -> dict[str, int]:
    from sqlalchemy import func, select

    from faithflow_ops.models import OutboundMessage, SupportMessage, SupportTicket

    with db.read_session() as session:
        return {
            "messages not redacted": session.scalar(
                select(func.count()).where(OutboundMessage.redacted_at.is_(None))
            )
            or 0,
            "tickets not anonymised": session.scalar(
                select(func.count()).where(SupportTicket.anonymised_at.is_(None))
            )
            or 0,
            "ticket messages still naming an e-mail": session.scalar(
                select(func.count()).where(SupportMessage.body.like("%@example.org%"))
            )
            or 0,
        }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--messages", type=int, default=1_000_000, help="delivered messages")
    parser.add_argument("--tickets", type=int, default=500_000, help="closed tickets")
    parser.add_argument("--tenants", type=int, default=200, help="churches the rows spread over")
    parser.add_argument("--batch-size", type=int, default=5000, help="rows per transaction")
    parser.add_argument("--url", help="Postgres server URL (a database is created on it)")
    args = parser.parse_args()
    url = url_from(args)
    os.environ.setdefault("FAITHFLOW_LOG_FORMAT", "json")
    import logging

    from faithflow_ops.config import Settings
    from faithflow_ops.db import Database
    from faithflow_ops.logging import configure
    from faithflow_ops.migrate import upgrade

    configure("json")
    logging.getLogger().setLevel(logging.WARNING)
    startup = time.perf_counter() - _STARTED

    name = f"ff_bench_retention_{uuid.uuid4().hex[:8]}"
    admin(url, f'CREATE DATABASE "{name}"')
    db = Database.from_url(with_database(url, name))
    try:
        upgrade(db.engine)
        print(f"load before: {load_average()}")
        took = fill(db, args.tenants, args.messages, args.tickets)
        for step, seconds in took.items():
            print(f"  setup {step}: {seconds:.1f} s")
        settings = dataclasses.replace(Settings.from_env({}), database_url=str(db.engine.url))
        print(
            f"retention run on Postgres: {args.messages:,} delivered messages, {args.tickets:,} "
            f"closed tickets ({2 * args.tickets:,} ticket messages), {args.tenants} tenants, "
            f"batches of {args.batch_size:,} rows; process start-up (imports) {startup:.2f} s"
        )
        ok = True
        for data_class in ("outbound_messages", "support_tickets"):
            doc = run_class(db, settings, data_class, args.batch_size)
            longest_s, longest_rows = doc["longest"]
            unit = (
                "tickets (each with 2 messages rewritten)"
                if data_class == "support_tickets"
                else "rows"
            )
            print(
                f"  {data_class}: {doc['rows']:,} {unit} in {doc['seconds']:.1f} s = "
                f"{doc['per_second']:,.0f}/s; plan (preview) {doc['plan_seconds']:.1f} s; "
                f"{doc['batches']} transactions, median {doc['median'] * 1000:.0f} ms, longest "
                f"{longest_s * 1000:.0f} ms ({longest_rows:,} {unit.split()[0]}), largest "
                f"{doc['largest_rows']:,}; status {doc['status']} {doc['outcomes']}; "
                f"rerun {doc['rerun'] or 'nothing to do'}"
            )
            ok = ok and doc["status"] == "succeeded" and not doc["rerun"]
            ok = ok and doc["rows"] == doc["planned"]
            print(f"    load: {load_average()}")
        left = check(db)
        print(f"  left over: {left}")
        ok = ok and not any(left.values())
        print("OK" if ok else "FAILED")
        if not ok:
            raise SystemExit(1)
    finally:
        db.dispose()
        admin(url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


if __name__ == "__main__":
    main()
