"""`faithflow comms dispatch` on Postgres: messages per second to the loopback Twilio stand-in
(SMS over HTTP) and to a loopback SMTP server (aiosmtpd), and the exactly-once check.

Goal (issue 5): ≥ 500 SMS/s with bounded concurrency (FAITHFLOW_COMMS_CONCURRENCY).

Per channel, a throwaway database gets N queued messages (COPY-fast bulk insert of rendered
rows), then one `comms dispatch` run (the real job through the runner: plan, claim a message
per free sending slot, send concurrently, mark the outcomes as they come with the next claims)
is timed in this process. The stand-ins run in processes of
their own so they do not take this process's CPU or GIL: `tests/fakes/twilio.py` (a threading
HTTP server) and an aiosmtpd server started by this script (`--smtp-child`). Afterwards the
stand-ins are asked how many requests/messages they received (must equal N, one per
recipient) and every row must be `sent`. Every database it creates is dropped.

    python bench/bench_dispatch.py [--sms 10000] [--email 10000] [--concurrency 16] [--url …]

URL: --url, else FAITHFLOW_BENCH_POSTGRES_URL, else FAITHFLOW_TEST_POSTGRES_URL, else
postgresql://root@127.0.0.1:5432/test (the server's admin database; it is not written to).
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import json
import os
import subprocess
import sys
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

from _common import admin, url_from, with_database

ROOT = Path(__file__).resolve().parent.parent
NOW = dt.datetime(2026, 3, 1, 9, 0, tzinfo=dt.UTC)
GOAL_SMS_PER_SECOND = 500
SID, TOKEN = "AC00000000000000000000000000000000", "twilio-test-token"


# --- the SMTP stand-in (a child process) -----------------------------------------------------


def smtp_child() -> None:
    """aiosmtpd on a free loopback port; prints `port N`; answers `count` on stdin with the
    messages and recipients received, `quit` stops."""
    import socket

    from aiosmtpd.controller import Controller

    class Counting:
        def __init__(self) -> None:
            self.messages = 0
            self.rcpts: Counter[str] = Counter()

        async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
            self.messages += 1
            self.rcpts.update(envelope.rcpt_tos)
            return "250 OK"

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    handler = Counting()
    controller = Controller(handler, hostname="127.0.0.1", port=port)
    controller.start()
    print(f"port {port}", flush=True)
    for line in sys.stdin:
        if line.strip() == "count":
            dupes = sum(1 for n in handler.rcpts.values() if n > 1)
            print(json.dumps({"messages": handler.messages, "duplicates": dupes}), flush=True)
        elif line.strip() == "quit":
            break
    controller.stop()


# --- setup ------------------------------------------------------------------------------------


def fill(db: Any, channel: str, n: int) -> None:
    from sqlalchemy import insert

    from faithflow_ops.comms import templates
    from faithflow_ops.models import OutboundMessage

    rows = []
    for i in range(n):
        variables = {"subject": "Notice", "message": f"Choir practice moves to 6pm ({i})"}
        rendered = templates.render("notice", channel, variables)
        to = f"+2348{i:09d}" if channel != "email" else f"member{i}@church.example"
        rows.append(
            {
                "channel": channel,
                "recipient": to,
                "template": "notice",
                "variables": variables,
                "locale": "en",
                "subject": rendered.subject,
                "body": rendered.body,
                "category": "bench",
                "priority": 50,
                "status": "queued",
                "idempotency_key": f"bench:{channel}:{i}",
                "attempts": 0,
                "not_before": NOW,
                "next_attempt_at": NOW,
                "created_at": NOW,
                "updated_at": NOW,
            }
        )
    with db.session() as session:
        for start in range(0, n, 2000):
            session.execute(insert(OutboundMessage), rows[start : start + 2000])


def run_case(url: str, channel: str, n: int, settings: Any) -> dict[str, Any]:
    from sqlalchemy import func, select

    from faithflow_ops.db import Database
    from faithflow_ops.jobs import registry
    from faithflow_ops.jobs.base import JobContext
    from faithflow_ops.jobs.runner import run_job
    from faithflow_ops.migrate import upgrade
    from faithflow_ops.models import OutboundMessage

    name = f"ff_bench_dispatch_{uuid.uuid4().hex[:8]}"
    admin(url, f'CREATE DATABASE "{name}"')
    db = Database.from_url(with_database(url, name))
    try:
        upgrade(db.engine)
        fill(db, channel, n)
        cfg = dataclasses.replace(settings, database_url=str(db.engine.url))
        ctx = JobContext(now=NOW, dry_run=False, trigger="cli", settings=cfg)
        started = time.perf_counter()
        result = run_job(db, registry.get("communications_dispatch"), ctx, collect_actions=False)
        seconds = time.perf_counter() - started
        with db.read_session() as session:
            by_status = dict(
                session.execute(
                    select(OutboundMessage.status, func.count()).group_by(OutboundMessage.status)
                ).all()
            )
        return {
            "seconds": seconds,
            "per_second": n / seconds,
            "status": result.status,
            "outcomes": dict(result.outcomes),
            "rows": by_status,
        }
    finally:
        db.dispose()
        admin(url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def main() -> None:
    if len(sys.argv) == 2 and sys.argv[1] == "--smtp-child":
        smtp_child()
        return
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sms", type=int, default=10_000, help="SMS messages (0: skip)")
    parser.add_argument("--email", type=int, default=10_000, help="e-mails (0: skip)")
    parser.add_argument("--concurrency", type=int, default=16, help="sends at once")
    parser.add_argument("--url", help="Postgres server URL (a database is created on it)")
    args = parser.parse_args()
    url = url_from(args)
    os.environ.setdefault("FAITHFLOW_LOG_FORMAT", "json")
    from faithflow_ops.config import Settings
    from faithflow_ops.logging import configure

    configure("json")
    import logging

    logging.getLogger().setLevel(logging.WARNING)

    import httpx

    twilio = subprocess.Popen(
        [sys.executable, "-m", "fakes.twilio", "--sid", SID, "--token", TOKEN],
        cwd=ROOT / "tests",
        stdout=subprocess.PIPE,
        text=True,
    )
    smtp = subprocess.Popen(
        [sys.executable, __file__, "--smtp-child"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert twilio.stdout and smtp.stdout and smtp.stdin
        twilio_url = twilio.stdout.readline().split()[-1]
        smtp_port = int(smtp.stdout.readline().split()[-1])
        settings = Settings(
            database_url="",
            twilio_account_sid=SID,
            twilio_auth_token=TOKEN,
            twilio_from="+15005550006",
            twilio_api_base=twilio_url,
            smtp_url=f"smtp://127.0.0.1:{smtp_port}",
            email_from="FaithFlow <notices@faithflow.example>",
            comms_concurrency=args.concurrency,
        )
        print(
            f"comms dispatch on Postgres; concurrency {args.concurrency}; stand-ins in their own "
            "processes (Twilio: tests/fakes/twilio.py, SMTP: aiosmtpd)"
        )
        ok = True
        if args.sms:
            doc = run_case(url, "sms", args.sms, settings)
            stats = httpx.get(twilio_url + "/_stats").json()
            once = stats["requests"] == args.sms and all(v == 1 for v in stats["by_to"].values())
            all_sent = doc["rows"] == {"sent": args.sms}
            goal = doc["per_second"] >= GOAL_SMS_PER_SECOND
            ok = ok and once and all_sent
            print(
                f"sms:   {args.sms:,} messages in {doc['seconds']:.2f} s = "
                f"{doc['per_second']:,.0f} msg/s (goal ≥ {GOAL_SMS_PER_SECOND}: "
                f"{'met' if goal else 'NOT met'}); Twilio requests received "
                f"{stats['requests']:,} (exactly once: {once}); rows {doc['rows']}"
            )
        if args.email:
            doc = run_case(url, "email", args.email, settings)
            smtp.stdin.write("count\n")
            smtp.stdin.flush()
            got = json.loads(smtp.stdout.readline())
            once = got["messages"] == args.email and got["duplicates"] == 0
            all_sent = doc["rows"] == {"sent": args.email}
            ok = ok and once and all_sent
            print(
                f"email: {args.email:,} messages in {doc['seconds']:.2f} s = "
                f"{doc['per_second']:,.0f} msg/s; SMTP messages received {got['messages']:,} "
                f"(exactly once: {once}); rows {doc['rows']}"
            )
        if not ok:
            sys.exit(1)
    finally:
        twilio.terminate()
        if smtp.stdin:
            smtp.stdin.write("quit\n")
            smtp.stdin.flush()
        smtp.wait(10)
        twilio.wait(10)


if __name__ == "__main__":
    main()
