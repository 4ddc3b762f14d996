"""`comms dispatch` stopped mid-run by SIGTERM (cron and Render send it on shutdown): a real
`faithflow comms dispatch` process against the SMTP stand-in holding DATA. Only the messages
being sent are claimed; the sends in flight finish and are recorded, the rest stay queued
(never `sending`, never `unknown`), and the process exits 143."""

from __future__ import annotations

import datetime as dt
import os
import queue
import signal
import subprocess
import sys
import threading
from collections import Counter
from collections.abc import Iterator

import pytest
from fakes.smtp import SmtpServer, smtp_server
from sqlalchemy import select

from faithflow_ops.comms.outbox import enqueue
from faithflow_ops.db import Database
from faithflow_ops.models import OutboundMessage

NOW = dt.datetime(2026, 3, 1, 9, 0, tzinfo=dt.UTC)
CONCURRENCY = 2


@pytest.fixture
def smtp() -> Iterator[SmtpServer]:
    with smtp_server() as server:
        yield server


def _lines(stream: object, into: queue.Queue[str | None]) -> None:
    for line in stream:  # type: ignore[attr-defined]
        into.put(line)
    into.put(None)


def _wait_for(lines: queue.Queue[str | None], text: str, seen: list[str]) -> bool:
    while True:
        try:
            line = lines.get(timeout=60)
        except queue.Empty:
            return False
        if line is None:
            return False
        seen.append(line)
        if text in line:
            return True


def test_sigterm_finishes_the_sends_in_flight_and_leaves_the_rest_queued(
    db: Database, db_url: str, smtp: SmtpServer
) -> None:
    with db.session() as session:
        for n in range(8):
            enqueue(
                session,
                channel="email",
                recipient=f"member{n}@church.example",
                template="notice",
                variables={"subject": "Notice", "message": "Service moved to 10am"},
                idempotency_key=f"stop:{n}",
                now=NOW,
            )
    smtp.handler.hold()
    env = {
        **os.environ,
        "FAITHFLOW_DATABASE_URL": db_url,
        "SMTP_URL": smtp.url(),
        "EMAIL_FROM": "FaithFlow <ops@faithflow.example>",
        "FAITHFLOW_COMMS_CONCURRENCY": str(CONCURRENCY),
    }
    faithflow = os.path.join(os.path.dirname(sys.executable), "faithflow")
    proc = subprocess.Popen(
        [faithflow, "comms", "dispatch", "--now", NOW.isoformat(), "--json"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    lines: queue.Queue[str | None] = queue.Queue()
    reader = threading.Thread(target=_lines, args=(proc.stderr, lines), daemon=True)
    reader.start()
    seen: list[str] = []
    try:
        # Mid-batch: the server holds the DATA of as many messages as are sent at once.
        assert smtp.handler.wait_held(CONCURRENCY), "the dispatcher never sent"
        with db.read_session() as session:
            sending = session.scalars(
                select(OutboundMessage.id).where(OutboundMessage.status == "sending")
            ).all()
        assert len(sending) == CONCURRENCY  # only what is being sent is claimed
        proc.send_signal(signal.SIGTERM)
        # The dispatcher says it is stopping (and claims nothing more) before we let the
        # server answer the sends in flight.
        assert _wait_for(lines, "stopping", seen), "".join(seen)
        smtp.handler.release()
        out, _ = proc.communicate(timeout=60)
    finally:
        smtp.handler.release()
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    reader.join(10)
    err = "".join(seen) + "".join(iter(lambda: lines.get_nowait() or "", ""))
    assert proc.returncode == 143, err
    assert "Traceback" not in err
    with db.read_session() as session:
        rows = session.execute(
            select(OutboundMessage.id, OutboundMessage.status, OutboundMessage.attempts)
        ).all()
    by_status = Counter(status for _, status, _ in rows)
    # the sends in flight were answered and recorded; the rest were never claimed
    assert by_status == {"sent": CONCURRENCY, "queued": 8 - CONCURRENCY}, rows
    assert sorted(r.id for r in rows if r.status == "sent") == sorted(sending)
    assert all(attempts == 0 for _, status, attempts in rows if status == "queued")
    assert len(smtp.handler.messages) == CONCURRENCY
    # nothing is left claimed: the next dispatch sends the rest at once, no lease to wait out
    assert out is not None
