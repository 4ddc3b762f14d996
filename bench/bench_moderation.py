"""`streams moderate` on one busy service: --messages chat messages (default 50,000) from
--viewers viewers (default 5,000) over an hour, under a strict policy (20 blocked terms, 5
flagged, links blocked, max length 300, slow mode 5 s, first-time chatters held), on Postgres and
on SQLite. A tenth of the messages carry a blocked term, a twentieth a link; nine viewers in
ten chatted (approved) in last week's service, the rest are first-time chatters.

Printed per database, each the median of --repeat runs (the messages are reset to `pending`
between runs, untimed), with the load average (the machine may be shared):

- import: `moderation_records.add_messages` of the whole chat (checked, one multi-row INSERT …
  ON CONFLICT DO NOTHING per 1,000), then the same again (every message a duplicate);
- plan: `streams preview-moderate` through `run_job` (lease, job_runs row, the plan);
- run: `streams moderate` (plan, claim UPDATEs per batch of 500, the action rows);
- rerun: the same once nothing is pending.

Process start-up is not in any figure (the data is set up and timed in one process).

    .venv/bin/python bench/bench_moderation.py [--url postgresql://…] [--messages 50000]
        [--viewers 5000] [--repeat 3]
"""

from __future__ import annotations

import argparse
import datetime as dt
import logging
import os
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from _common import admin, url_from, with_database

START = dt.datetime(2026, 3, 8, 14, 0, tzinfo=dt.UTC)
NOW = START + dt.timedelta(hours=2)
BLOCKED = [f"badword{i}" for i in range(20)]
FLAGGED = [f"prayer{i}" for i in range(5)]
WORDS = [
    "amen",
    "praise",
    "god",
    "hallelujah",
    "blessings",
    "good",
    "morning",
    "church",
    "family",
    "grace",
    "peace",
]


def chat(messages: int, viewers: int) -> list[dict[str, object]]:
    rng = random.Random(18)
    out: list[dict[str, object]] = []
    for n in range(messages):
        words = rng.choices(WORDS, k=rng.randint(2, 12))
        if n % 10 == 3:
            words.append(rng.choice(BLOCKED).upper())
        if n % 20 == 7:
            words.append("see bit.ly/x" + str(n))
        if n % 50 == 11:
            words.append(rng.choice(FLAGGED))
        at = START + dt.timedelta(seconds=3600 * n / messages)
        out.append(
            {
                "id": f"msg-{n}",
                "viewer_id": f"viewer-{rng.randrange(viewers)}",
                "body": " ".join(words),
                "sent_at": at.isoformat(),
            }
        )
    return out


def timed(fn: Callable[[], object]) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def bench(url: str, label: str, args: argparse.Namespace) -> None:
    from sqlalchemy import delete, update

    from faithflow_ops.config import Settings
    from faithflow_ops.db import Database
    from faithflow_ops.jobs import registry
    from faithflow_ops.jobs.base import JobContext
    from faithflow_ops.jobs.runner import run_job
    from faithflow_ops.migrate import upgrade
    from faithflow_ops.models import StreamChatMessage, StreamModerationAction
    from faithflow_ops.streams import moderation_policy as policies
    from faithflow_ops.streams import moderation_records as records
    from faithflow_ops.streams import records as streams
    from faithflow_ops.tenancy.tenants import add_tenant

    db = Database.from_url(url, create=True)
    upgrade(db.engine)
    with db.session() as session:
        add_tenant(session, slug="grace", name="Grace", actor="bench", timezone="UTC")
        channel = streams.add_channel(session, tenant="grace", name="Main", provider="custom")
        week_ago = START - dt.timedelta(days=7)
        sid, last = (
            streams.schedule_session(
                session, channel_id=channel.id, title=title, start=start, now=week_ago
            ).id
            for title, start in (("Sunday", START), ("Last Sunday", week_ago + dt.timedelta(1)))
        )
        # nine viewers in ten chatted (approved) last week: known, not first-time chatters
        records.add_messages(
            session,
            last,
            [
                {"viewer_id": f"viewer-{v}", "body": "amen", "sent_at": week_ago.isoformat()}
                for v in range(args.viewers)
                if v % 10
            ],
        )
        session.execute(
            update(StreamChatMessage)
            .where(StreamChatMessage.session_id == last)
            .values(status="approved", moderated_at=week_ago)
        )
        records.set_policy(
            session,
            channel.id,
            policies.Change(
                block_terms=tuple(BLOCKED),
                flag_terms=tuple(FLAGGED),
                block_links=True,
                max_length=300,
                slow_mode_s=5,
                hold_first_time=True,
            ),
            by="bench",
        )
    messages = chat(args.messages, args.viewers)
    settings = Settings.from_env({"FAITHFLOW_DATABASE_URL": url})
    spec = registry.get("streams_moderate")

    def job(dry_run: bool) -> dict[str, int]:
        ctx = JobContext(now=NOW, dry_run=dry_run, trigger="cli", settings=settings)
        result = run_job(db, spec, ctx)
        assert result.status == "succeeded", result.summary()
        return dict(result.counts)

    def add() -> None:
        with db.session() as session:
            records.add_messages(session, sid, messages)

    imports = timed(add)
    again = timed(add)
    plans, runs, reruns = [], [], []
    counts: dict[str, int] = {}
    for _ in range(args.repeat):
        with db.session() as session:
            session.execute(delete(StreamModerationAction))
            session.execute(
                update(StreamChatMessage)
                .where(StreamChatMessage.session_id == sid)
                .values(status="pending", rule=None, moderated_at=None)
            )
        plans.append(timed(lambda: job(True)))
        runs.append(timed(lambda: counts.update(job(False))))
        reruns.append(timed(lambda: job(False)))
    db.dispose()
    load = os.getloadavg()
    print(
        f"{label}: {args.messages:,} messages, {args.viewers:,} viewers · "
        f"import {imports:.2f} s ({args.messages / imports:,.0f}/s), re-import {again:.2f} s · "
        f"plan {statistics.median(plans):.2f} s · run {statistics.median(runs):.2f} s "
        f"({args.messages / statistics.median(runs):,.0f} messages/s) · "
        f"rerun {statistics.median(reruns):.3f} s · load {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}"
    )
    print(f"  outcome: {dict(sorted(counts.items()))}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url")
    parser.add_argument("--messages", type=int, default=50_000)
    parser.add_argument("--viewers", type=int, default=5_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    logging.disable(logging.WARNING)
    os.environ.setdefault("FAITHFLOW_LOG_FORMAT", "json")
    admin_url = url_from(args)
    name = f"bench_moderation_{os.getpid()}"
    admin(admin_url, f'CREATE DATABASE "{name}"')
    try:
        bench(with_database(admin_url, name), "postgres", args)
    finally:
        admin(admin_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    with tempfile.TemporaryDirectory() as tmp:
        bench(f"sqlite:///{tmp}/bench.db", "sqlite", args)


if __name__ == "__main__":
    main()
