"""Bounces that come later (issue 21 point 1): the relay accepts the message at RCPT, then mails
a delivery status notification back; posted to `POST /webhooks/email/dsn` (comms/dsn.py), it is
applied to the original outbox message with the RFC 3463 rules of a refusal at RCPT. Over
real SMTP (aiosmtpd) and real HTTP (uvicorn), on SQLite and Postgres.

The DSN is the one Postfix's bounce(8) writes, in the shape RFC 3464
(https://www.rfc-editor.org/rfc/rfc3464, section 6 examples) and RFC 6522 define:
`multipart/report; report-type=delivery-status` with a text part, a `message/delivery-status`
part (per-message block, then per-recipient Final-Recipient / Action / Status /
Diagnostic-Code) and the original's headers as `text/rfc822-headers`."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from fakes.smtp import SmtpServer, smtp_server
from helpers import running
from sqlalchemy import select

from faithflow_ops.comms.outbox import enqueue
from faithflow_ops.config import Settings
from faithflow_ops.db import Database
from faithflow_ops.jobs import registry
from faithflow_ops.jobs.base import JobContext
from faithflow_ops.jobs.runner import run_job
from faithflow_ops.models import Bounce, Incident, OutboundMessage, Suppression
from receiver.app import create_app

NOW = dt.datetime(2026, 3, 1, 9, 0, tzinfo=dt.UTC)
KEY = "integration-test-key"
AUTH = {"Authorization": f"Bearer {KEY}"}

DSN = """\
Return-Path: <>
From: MAILER-DAEMON@relay.faithflow.example (Mail Delivery System)
Subject: Undelivered Mail Returned to Sender
To: billing@faithflow.example
Auto-Submitted: auto-replied
MIME-Version: 1.0
Content-Type: multipart/report; report-type=delivery-status;
\tboundary="4B3C21A0E2.1772355900/relay.faithflow.example"
Message-Id: <20260301090500.4B3C21A0E2@relay.faithflow.example>

This is a MIME-encapsulated message.

--4B3C21A0E2.1772355900/relay.faithflow.example
Content-Description: Notification
Content-Type: text/plain; charset=us-ascii

This is the mail system at host relay.faithflow.example.

I'm sorry to have to inform you that your message could not
be delivered to one or more recipients.

<{to}>: host mx.church.example[192.0.2.25] said: {code} {status} <{to}>:
    {text} (in reply to RCPT TO command)

--4B3C21A0E2.1772355900/relay.faithflow.example
Content-Description: Delivery report
Content-Type: message/delivery-status

Reporting-MTA: dns; relay.faithflow.example
X-Postfix-Queue-ID: 4B3C21A0E2
X-Postfix-Sender: rfc822; billing@faithflow.example
Arrival-Date: Sun,  1 Mar 2026 09:00:01 +0000 (UTC)

Final-Recipient: rfc822; {to}
Original-Recipient: rfc822;{to}
Action: {action}
Status: {status}
Remote-MTA: dns; mx.church.example
Diagnostic-Code: smtp; {code} {status} <{to}>:
    {text}

--4B3C21A0E2.1772355900/relay.faithflow.example
Content-Description: Undelivered Message Headers
Content-Type: text/rfc822-headers

{headers}
--4B3C21A0E2.1772355900/relay.faithflow.example--
"""


def dsn(
    original: Any,
    *,
    code: int = 550,
    status: str = "5.1.1",
    text: str = "Recipient address rejected: User unknown in virtual mailbox table",
    action: str = "failed",
) -> bytes:
    """The relay's DSN for `original` (a message the loopback server accepted)."""
    to = original.rcpt_tos[0]
    headers = "".join(
        f"{name}: {value}\n"
        for name, value in original.message.items()
        if name in ("From", "To", "Subject", "Date", "Message-ID", "X-FaithFlow-Message")
    )
    return DSN.format(
        to=to, code=code, status=status, text=text, action=action, headers=headers
    ).encode()


@pytest.fixture
def smtp() -> Iterator[SmtpServer]:
    with smtp_server() as server:
        yield server


def settings(db_url: str, smtp: SmtpServer, **kw: Any) -> Settings:
    values: dict[str, Any] = {
        "database_url": db_url,
        "smtp_url": smtp.url(),
        "email_from": "FaithFlow Billing <billing@faithflow.example>",
        "provider_timeout": 5.0,
        "integration_api_key": KEY,
        "comms_max_attempts": 5,
        "comms_retry_backoff": 60,
    }
    values.update(kw)
    return Settings(**values)


def sent(db: Database, cfg: Settings, smtp: SmtpServer, *addresses: str) -> dict[str, int]:
    """Enqueue one e-mail per address and dispatch them: the relay accepts them all."""
    ids = {}
    with db.session() as session:
        for to in addresses:
            ids[to] = enqueue(
                session,
                channel="email",
                recipient=to,
                template="notice",
                variables={"subject": "Invoice 12", "message": "Invoice 12 is due"},
                idempotency_key=f"test:dsn:{to}",
                now=NOW,
            ).id
    spec = registry.get("communications_dispatch")
    result = run_job(db, spec, JobContext(now=NOW, dry_run=False, trigger="cli", settings=cfg))
    assert result.outcomes == {"applied": len(addresses)}, result.to_dict()
    return ids


def accepted(smtp: SmtpServer, to: str) -> Any:
    return next(m for m in smtp.handler.messages if m.rcpt_tos == [to])


def status_of(db: Database, message_id: int) -> OutboundMessage:
    with db.read_session() as s:
        row = s.get(OutboundMessage, message_id)
        assert row is not None
        return row


def suppressions(db: Database) -> list[tuple[str, str, Any]]:
    with db.read_session() as s:
        return [(x.contact, x.reason, x.until) for x in s.scalars(select(Suppression))]


def post(url: str, body: bytes, headers: dict[str, str] | None = None) -> httpx.Response:
    return httpx.post(
        url + "/webhooks/email/dsn",
        content=body,
        headers={"Content-Type": "message/rfc822", **(AUTH if headers is None else headers)},
        timeout=30,
    )


def test_a_later_hard_bounce_fails_the_message_and_suppresses_the_address(
    db: Database, db_url: str, smtp: SmtpServer
) -> None:
    cfg = settings(db_url, smtp)
    ids = sent(db, cfg, smtp, "gone@church.example", "pastor@church.example")
    assert status_of(db, ids["gone@church.example"]).status == "sent"
    report = dsn(accepted(smtp, "gone@church.example"))
    with running(create_app(cfg, db=db)) as url:
        answer = post(url, report)
        assert answer.status_code == 200, answer.text
        doc = answer.json()
        assert (doc["result"], doc["message"], doc["status"], doc["kind"]) == (
            "applied",
            ids["gone@church.example"],
            "failed",
            "hard",
        )
        assert "recipient suppressed" in doc["note"]
        again = post(url, report)  # the mailbox hook delivered it twice
        assert again.json()["result"] == "duplicate"
    row = status_of(db, ids["gone@church.example"])
    assert row.status == "failed" and "bounced later (DSN" in (row.last_error or "")
    assert "550 5.1.1" in (row.last_error or "")
    assert status_of(db, ids["pastor@church.example"]).status == "sent"
    assert suppressions(db) == [("gone@church.example", "bounce", None)]
    with db.read_session() as s:
        (bounce,) = s.scalars(select(Bounce))
        assert (bounce.source, bounce.kind, bounce.status) == ("dsn", "hard", "5.1.1")


def test_a_later_policy_bounce_retries_and_raises_an_incident(
    db: Database, db_url: str, smtp: SmtpServer
) -> None:
    cfg = settings(db_url, smtp)
    ids = sent(db, cfg, smtp, "treasurer@church.example")
    report = dsn(
        accepted(smtp, "treasurer@church.example"),
        code=554,
        status="5.7.1",
        text="Service unavailable; Client host [203.0.113.9] blocked using zen.spamhaus.org",
    )
    with running(create_app(cfg, db=db)) as url:
        doc = post(url, report).json()
    assert (doc["result"], doc["status"], doc["kind"]) == ("applied", "scheduled", "policy")
    assert suppressions(db) == []
    with db.read_session() as s:
        (incident,) = s.scalars(select(Incident))
        assert incident.cause == "comms:email:policy"
    assert status_of(db, ids["treasurer@church.example"]).status == "scheduled"


def test_a_later_full_mailbox_is_retried_and_counted(
    db: Database, db_url: str, smtp: SmtpServer
) -> None:
    cfg = settings(db_url, smtp)
    ids = sent(db, cfg, smtp, "full@church.example")
    report = dsn(
        accepted(smtp, "full@church.example"), code=552, status="5.2.2", text="Mailbox full"
    )
    with running(create_app(cfg, db=db)) as url:
        doc = post(url, report).json()
    assert (doc["status"], doc["kind"]) == ("scheduled", "soft")
    assert "recipient not suppressed" in doc["note"]
    assert suppressions(db) == []
    row = status_of(db, ids["full@church.example"])
    assert row.next_attempt_at > NOW


def test_delays_foreign_messages_and_bad_bodies_change_nothing(
    db: Database, db_url: str, smtp: SmtpServer
) -> None:
    cfg = settings(db_url, smtp)
    ids = sent(db, cfg, smtp, "slow@church.example")
    original = accepted(smtp, "slow@church.example")
    delayed = dsn(original, code=451, status="4.4.1", text="Connection timed out", action="delayed")
    forged = dsn(original).replace(b"<outbox.", b"<outbox.9")  # not a Message-ID of ours
    with running(create_app(cfg, db=db)) as url:
        assert post(url, delayed).json()["result"] == "ignored"
        assert post(url, forged).json()["result"] == "unmatched"
        plain = post(url, b"From: someone@example.org\nSubject: hello\n\nhi\n")
        assert plain.status_code == 400
        assert "not multipart/report" in plain.json()["error"]
        assert post(url, b"").status_code == 400
        assert post(url, dsn(original), headers={}).status_code == 401
        assert post(url, dsn(original), headers={"X-API-Key": "wrong"}).status_code == 401
    with running(create_app(settings(db_url, smtp, integration_api_key=None), db=db)) as url:
        assert post(url, dsn(original)).status_code == 503
    assert status_of(db, ids["slow@church.example"]).status == "sent"
    assert suppressions(db) == []
