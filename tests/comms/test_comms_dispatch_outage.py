"""`comms dispatch` through a database outage while it records outcomes: the SMTP server
accepted the messages, so the status write is retried (with backoff, bounded) and they end
`sent` when the database comes back in time; an outage that outlasts the retries fails the run
(exit 1, a failure of ours — not 2, a setting to fix) and names the outcomes not recorded.

The outage is injected: the commit of every transaction that marks a message `sent` raises
OperationalError the first N times (the backoff delays are zero here)."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator
from typing import Any

import pytest
from fakes.smtp import SmtpServer, smtp_server
from sqlalchemy import event, select
from sqlalchemy.engine import Engine
from sqlalchemy.exc import OperationalError

from faithflow_ops.comms import sending
from faithflow_ops.comms.outbox import enqueue
from faithflow_ops.db import Database
from faithflow_ops.models import OutboundMessage

NOW = dt.datetime(2026, 3, 1, 9, 0, tzinfo=dt.UTC)


@pytest.fixture
def smtp(monkeypatch: pytest.MonkeyPatch) -> Iterator[SmtpServer]:
    with smtp_server() as server:
        monkeypatch.setenv("SMTP_URL", server.url())
        monkeypatch.setenv("EMAIL_FROM", "FaithFlow <ops@faithflow.example>")
        monkeypatch.setenv("FAITHFLOW_COMMS_CONCURRENCY", "2")
        yield server


class Outage:
    """The commit of a transaction that marks a message sent fails `times` times."""

    def __init__(self, times: int) -> None:
        self.left = times
        self.failed = 0

    def before_execute(self, conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if statement.lstrip().upper().startswith("UPDATE OUTBOUND_MESSAGES") and (
            "sent_at" in statement
        ):
            conn.info["marks_sent"] = True

    def commit(self, conn: Any) -> None:
        if conn.info.pop("marks_sent", False) and self.left:
            self.left -= 1
            self.failed += 1
            raise OperationalError("COMMIT", {}, Exception("server closed the connection"))

    def rollback(self, conn: Any) -> None:
        conn.info.pop("marks_sent", None)


@pytest.fixture
def outage(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    monkeypatch.setattr(sending, "WRITE_RETRY_DELAYS", (0.0, 0.0, 0.0))
    made: list[Outage] = []

    def make(times: int) -> Outage:
        o = Outage(times)
        event.listen(Engine, "before_cursor_execute", o.before_execute)
        event.listen(Engine, "commit", o.commit)
        event.listen(Engine, "rollback", o.rollback)
        made.append(o)
        return o

    yield make
    for o in made:
        event.remove(Engine, "before_cursor_execute", o.before_execute)
        event.remove(Engine, "commit", o.commit)
        event.remove(Engine, "rollback", o.rollback)


def _enqueue(db: Database, n: int) -> None:
    with db.session() as session:
        for i in range(n):
            enqueue(
                session,
                channel="email",
                recipient=f"member{i}@church.example",
                template="notice",
                variables={"subject": "Notice", "message": "Service moved to 10am"},
                idempotency_key=f"outage:{i}",
                now=NOW,
            )


def _statuses(db: Database) -> list[str]:
    with db.read_session() as session:
        return sorted(session.scalars(select(OutboundMessage.status)).all())


def test_an_outage_shorter_than_the_retries_still_records_sent(
    db: Database, cli: Any, smtp: SmtpServer, outage: Any
) -> None:
    _enqueue(db, 3)
    down = outage(3)  # the fourth attempt of the first mark gets through
    result = cli("comms", "dispatch", "--now", NOW.isoformat(), "--json")
    assert result.exit_code == 0, result.stderr
    doc = json.loads(result.stdout)
    assert doc["status"] == "succeeded"
    assert doc["outcomes"] == {"applied": 3}
    assert down.failed == 3
    assert _statuses(db) == ["sent"] * 3
    assert len(smtp.handler.messages) == 3  # each sent once: nothing re-sent by a retry


def test_an_outage_longer_than_the_retries_fails_the_run_with_exit_1(
    db: Database, cli: Any, smtp: SmtpServer, outage: Any
) -> None:
    _enqueue(db, 2)
    outage(1000)
    result = cli("comms", "dispatch", "--now", NOW.isoformat(), "--json")
    assert result.exit_code == 1, result.stderr
    doc = json.loads(result.stdout)
    assert doc["status"] == "failed"
    assert doc["failure"] == "internal"
    assert "the database refused recording" in doc["error"]
    assert "not recorded: message" in doc["error"] and "sent" in doc["error"]
    # accepted by the server, not recorded: still claimed, they become unknown after the lease
    assert _statuses(db) == ["sending"] * 2
    assert len(smtp.handler.messages) == 2
