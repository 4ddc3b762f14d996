"""Hostile input into e-mail headers: a control character (CR, LF, NUL…) in a subject variable
or a recipient is refused at enqueue (exit 2 naming the variable, nothing queued); a message
that can never be sent as it is (stored before this check) fails at once instead of being
retried as transient."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator
from typing import Any

import pytest
from fakes.smtp import SmtpServer, smtp_server
from sqlalchemy import func, select, update

from faithflow_ops.comms.outbox import enqueue
from faithflow_ops.db import Database
from faithflow_ops.errors import UserError
from faithflow_ops.models import OutboundMessage

NOW = dt.datetime(2026, 3, 1, 9, 0, tzinfo=dt.UTC)


def _count(db: Database) -> int:
    with db.read_session() as session:
        return session.scalar(select(func.count()).select_from(OutboundMessage)) or 0


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        ("hi\r\nBcc: everyone@example.com", "CR"),
        ("hi\nBcc: everyone@example.com", "LF"),
        ("hi\x00there", "NUL"),
        ("hi\u2028there", "U+2028"),
    ],
)
def test_a_control_character_in_a_subject_variable_is_refused(
    db: Database, cli: Any, value: str, shown: str
) -> None:
    result = cli(
        "comms", "send", "--channel", "email", "--to", "treasurer@church.example",
        "--template", "notice", "--var", f"subject={value}", "--var", "message=Service at 10",
    )  # fmt: skip
    assert result.exit_code == 2, result.stderr
    assert "'subject'" in result.stderr and shown in result.stderr, result.stderr
    assert "Traceback" not in result.stderr
    assert _count(db) == 0


def test_a_control_character_in_the_recipient_is_refused(db: Database, cli: Any) -> None:
    for to in ("treasurer@church.example\r\nBcc: x@example.com", "treas\x00urer@church.example"):
        result = cli(
            "comms", "send", "--channel", "email", "--to", to,
            "--template", "notice", "--var", "subject=Hi", "--var", "message=Service at 10",
        )  # fmt: skip
        assert result.exit_code == 2, result.stderr
        assert "recipient" in result.stderr and "control character" in result.stderr
    assert _count(db) == 0


def test_enqueue_refuses_it_too(db: Database) -> None:
    with db.session() as session, pytest.raises(UserError, match=r"'subject'.*CR"):
        enqueue(
            session,
            channel="email",
            recipient="treasurer@church.example",
            template="notice",
            variables={"subject": "hi\r\nBcc: x@example.com", "message": "m"},
            idempotency_key="hostile:1",
            now=NOW,
        )
    # the body may have as many lines as it likes; an SMS has no headers
    with db.session() as session:
        enqueue(
            session,
            channel="email",
            recipient="treasurer@church.example",
            template="notice",
            variables={"subject": "Notice", "message": "line one\r\nline two"},
            idempotency_key="hostile:2",
            now=NOW,
        )
    assert _count(db) == 1


@pytest.fixture
def smtp(monkeypatch: pytest.MonkeyPatch) -> Iterator[SmtpServer]:
    with smtp_server() as server:
        monkeypatch.setenv("SMTP_URL", server.url())
        monkeypatch.setenv("EMAIL_FROM", "FaithFlow <ops@faithflow.example>")
        yield server


def test_a_message_that_cannot_be_sent_as_it_is_fails_at_once(
    db: Database, cli: Any, smtp: SmtpServer
) -> None:
    with db.session() as session:
        queued = enqueue(
            session,
            channel="email",
            recipient="treasurer@church.example",
            template="notice",
            variables={"subject": "Notice", "message": "m"},
            idempotency_key="hostile:old",
            now=NOW,
        )
        # stored by a version without the check
        session.execute(
            update(OutboundMessage)
            .where(OutboundMessage.id == queued.id)
            .values(subject="hi\r\nBcc: everyone@example.com")
        )
    result = cli("comms", "dispatch", "--now", NOW.isoformat(), "--json")
    assert result.exit_code == 1, result.stderr
    doc = json.loads(result.stdout)
    assert doc["outcomes"] == {"failed": 1}
    with db.read_session() as session:
        row = session.get(OutboundMessage, queued.id)
        assert row is not None
        assert row.status == "failed"  # not scheduled for four more attempts
        assert row.attempts == 1
        assert "cannot be sent" in (row.last_error or "")
    assert smtp.handler.messages == []


def test_a_control_character_in_email_from_is_a_setting_to_fix(
    db: Database, cli: Any, smtp: SmtpServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("EMAIL_FROM", "FaithFlow <ops@faithflow.example>\r\nBcc: x@example.com")
    with db.session() as session:
        enqueue(
            session,
            channel="email",
            recipient="treasurer@church.example",
            template="notice",
            variables={"subject": "Notice", "message": "m"},
            idempotency_key="hostile:from",
            now=NOW,
        )
    result = cli("comms", "dispatch", "--now", NOW.isoformat(), "--json")
    assert result.exit_code == 1, result.stderr
    doc = json.loads(result.stdout)
    assert "EMAIL_FROM contains a control character (CR)" in json.dumps(doc)
    with db.read_session() as session:
        assert session.scalars(select(OutboundMessage.status)).all() == ["queued"]  # unclaimed
    assert smtp.handler.messages == []
