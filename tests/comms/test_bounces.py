"""E-mail bounces classified by RFC 3463 enhanced status code (comms/bounces.py), against a real
SMTP server on loopback (aiosmtpd) answering RCPT as real relays do, on SQLite and Postgres.

RFC 3463 (https://www.rfc-editor.org/rfc/rfc3463): class 4 = persistent transient, 5 =
permanent; subject 1 = addressing (5.1.1 bad destination mailbox), 2 = mailbox (5.2.2 mailbox
full), 7 = security or policy (5.7.1 delivery not authorized / relay denied). The replies below
are the ones Postfix gives: `554 5.7.1 <x>: Relay access denied` (smtpd_relay_restrictions),
`550 5.1.1 <x>: Recipient address rejected: User unknown in local recipient table`, and
`552 5.2.2 Mailbox full` (quota, as Dovecot's LMTP reports it through the relay)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from typing import Any

import pytest
from fakes.smtp import SmtpServer, smtp_server
from sqlalchemy import select

from faithflow_ops.comms.admin import message_details
from faithflow_ops.comms.bounces import classify
from faithflow_ops.comms.outbox import enqueue
from faithflow_ops.config import Settings
from faithflow_ops.db import Database
from faithflow_ops.jobs import registry
from faithflow_ops.jobs.base import JobContext
from faithflow_ops.jobs.runner import RunResult, run_job
from faithflow_ops.models import Bounce, Incident, OutboundMessage, Suppression
from faithflow_ops.providers.smtp import enhanced_status

NOW = dt.datetime(2026, 3, 1, 9, 0, tzinfo=dt.UTC)
SPEC = registry.get("communications_dispatch")
RELAY_DENIED = "554 5.7.1 <{to}>: Relay access denied"
USER_UNKNOWN = "550 5.1.1 <{to}>: Recipient address rejected: User unknown in local recipient table"
MAILBOX_FULL = "552 5.2.2 <{to}>: Mailbox full"


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
        "comms_retry_backoff": 60,
        "comms_retry_max_backoff": 3600,
        "comms_max_attempts": 10,
    }
    values.update(kw)
    return Settings(**values)


def add(db: Database, to: str, key: str = "", now: dt.datetime = NOW) -> int:
    with db.session() as session:
        return enqueue(
            session,
            channel="email",
            recipient=to,
            template="notice",
            variables={"subject": "Your invoice", "message": "Invoice 12 is due"},
            idempotency_key=f"test:bounce:{to}:{key}",
            now=now,
        ).id


def run(db: Database, cfg: Settings, now: dt.datetime = NOW) -> RunResult:
    return run_job(db, SPEC, JobContext(now=now, dry_run=False, trigger="cli", settings=cfg))


def reject(smtp: SmtpServer, reply: str, *addresses: str) -> None:
    for to in addresses:
        smtp.handler.reject[to] = reply.format(to=to)


def rows(db: Database, model: Any) -> list[Any]:
    with db.read_session() as session:
        return list(session.scalars(select(model).order_by(model.id)))


def message(db: Database, message_id: int) -> OutboundMessage:
    with db.read_session() as session:
        row = session.get(OutboundMessage, message_id)
        assert row is not None
        return row


# --- the classification (RFC 3463) --------------------------------------------------------------


@pytest.mark.parametrize(
    ("code", "status", "stage", "kind"),
    [
        (550, "5.1.1", "rcpt", "hard"),  # bad destination mailbox address
        (550, "5.1.10", "rcpt", "hard"),  # RFC 7505: recipient domain has a null MX
        (553, "5.1.3", "rcpt", "hard"),  # bad destination mailbox address syntax
        (553, "5.1.7", "rcpt", "policy"),  # bad SENDER mailbox syntax: ours
        (552, "5.2.2", "rcpt", "soft"),  # mailbox full
        (550, "5.2.1", "rcpt", "soft"),  # mailbox disabled: may come back
        (552, "5.3.4", "data", "message"),  # message too big for system
        (552, "5.2.3", "data", "message"),  # message length exceeds administrative limit
        (554, "5.7.1", "rcpt", "policy"),  # relay access denied
        (550, "5.7.26", "data", "policy"),  # DMARC (RFC 7372)
        (550, "5.7.606", "rcpt", "policy"),  # Microsoft: IP on the blocklist
        (451, "4.7.1", "rcpt", None),  # greylisting: retry, nothing recorded
        (452, "4.2.2", "rcpt", "soft"),  # mailbox full, temporary
        (451, "4.3.0", "rcpt", "soft"),
        (554, "5.6.0", "data", "message"),  # content
        (501, "5.5.2", "rcpt", "policy"),  # protocol: our client
        (550, None, "rcpt", "soft"),  # a 5xx without a status: never proof enough
        (421, None, "session", None),  # the server went away: nothing about the recipient
        (535, "5.7.8", "session", None),  # login failed: a setting, not a bounce
        (550, "5.1.1", "dsn", "hard"),
    ],
)
def test_classification_follows_rfc_3463(
    code: int, status: str | None, stage: str, kind: str | None
) -> None:
    assert classify(code, status, stage=stage) == kind


def test_the_enhanced_status_is_read_from_the_start_of_the_reply() -> None:
    assert enhanced_status("5.1.1 <a@x>: User unknown") == "5.1.1"
    assert enhanced_status("5.7.606 Access denied, banned sending IP") == "5.7.606"
    assert enhanced_status("Relay access denied 5.7.1") is None  # must lead the text
    assert enhanced_status("5.1.1.2 nonsense") is None
    assert enhanced_status("3.1.1 not a class") is None
    assert enhanced_status(None) is None


# --- against the relay ---------------------------------------------------------------------------


def test_a_relay_policy_refusal_raises_an_incident_and_suppresses_nobody(
    db: Database, db_url: str, smtp: SmtpServer
) -> None:
    # The case: a relay refusing every RCPT by policy silenced four churches for good.
    people = [f"treasurer{i}@church{i}.example" for i in range(4)]
    reject(smtp, RELAY_DENIED, *people[:2])
    # the wording, from a relay whose client host is on a blocklist
    reject(
        smtp, "550 5.7.1 Relay access denied (client host listed at zen.spamhaus.org)", *people[2:]
    )
    ids = [add(db, to) for to in people]
    result = run(db, settings(db_url, smtp))
    assert result.outcomes == {"failed": 4}
    assert rows(db, Suppression) == []
    for message_id in ids:
        row = message(db, message_id)
        assert row.status == "scheduled", row.last_error  # retried later
        assert row.next_attempt_at == NOW + dt.timedelta(seconds=60)
        assert "5.7.1" in (row.last_error or "") and "[policy]" in (row.last_error or "")
    (incident,) = rows(db, Incident)
    assert incident.cause == "comms:email:policy" and incident.kind == "comms"
    assert incident.status == "open" and "Relay access denied" in incident.title
    assert "NOT suppressed" in (incident.detail or "")
    assert sorted((b.kind, b.status, b.smtp_code) for b in rows(db, Bounce)) == [
        ("policy", "5.7.1", 550),
        ("policy", "5.7.1", 550),
        ("policy", "5.7.1", 554),
        ("policy", "5.7.1", 554),
    ]
    # the relay is fixed: the next dispatch delivers all four
    smtp.handler.reject.clear()
    again = run(db, settings(db_url, smtp), NOW + dt.timedelta(minutes=2))
    assert again.outcomes == {"applied": 4}
    assert sorted(m.rcpt_tos[0] for m in smtp.handler.messages) == sorted(people)
    (incident,) = rows(db, Incident)  # the relay takes our mail again: resolved
    assert incident.status == "resolved" and incident.resolved_by == "comms bounces"


def test_a_full_mailbox_is_retried_and_suppressed_only_after_repeats(
    db: Database, db_url: str, smtp: SmtpServer
) -> None:
    to = "full@church.example"
    reject(smtp, MAILBOX_FULL, to)
    cfg = settings(db_url, smtp, comms_soft_bounce_limit=3, comms_soft_bounce_suppress_days=5)
    message_id = add(db, to)
    at = NOW
    for attempt in (1, 2):
        run(db, cfg, at)
        row = message(db, message_id)
        assert (row.status, row.attempts) == ("scheduled", attempt), row.last_error
        assert "[soft bounce]" in (row.last_error or "")
        assert rows(db, Suppression) == []
        assert rows(db, Bounce)[-1].outcome == f"counted: soft bounce {attempt} of 3"
        at = row.next_attempt_at
    run(db, cfg, at)  # the third soft bounce within the window
    (entry,) = rows(db, Suppression)
    assert (entry.contact, entry.channel, entry.reason) == (to, "email", "bounce")
    assert entry.until == at + dt.timedelta(days=5)  # a soft suppression ends
    assert "3 soft bounces in 7 days" in (entry.note or "") and "5.2.2" in (entry.note or "")
    assert rows(db, Incident) == []
    # the message, still due for its retry, is now suppressed rather than sent again
    later = message(db, message_id).next_attempt_at
    result = run(db, cfg, later)
    assert result.counts == {"suppress": 1}
    assert message(db, message_id).status == "suppressed"
    # after the suppression ends, the address gets mail again
    smtp.handler.reject.clear()
    back = add(db, to, key="after", now=at + dt.timedelta(days=6))
    run(db, cfg, at + dt.timedelta(days=6))
    assert message(db, back).status == "sent"


def test_soft_bounces_outside_the_window_do_not_add_up(
    db: Database, db_url: str, smtp: SmtpServer
) -> None:
    to = "sometimes@church.example"
    reject(smtp, MAILBOX_FULL, to)
    # one attempt each: only the three messages' own bounces, a week and a day apart
    cfg = settings(db_url, smtp, comms_soft_bounce_window_days=7, comms_max_attempts=1)
    for week in range(3):
        at = NOW + dt.timedelta(days=8 * week)
        add(db, to, key=str(week), now=at)
        run(db, cfg, at)
    assert rows(db, Suppression) == []
    assert [b.outcome for b in rows(db, Bounce)] == ["counted: soft bounce 1 of 3"] * 3


def test_an_unknown_user_fails_at_once_and_is_suppressed_for_good(
    db: Database, db_url: str, smtp: SmtpServer
) -> None:
    to = "left-the-church@church.example"
    reject(smtp, USER_UNKNOWN, to)
    message_id = add(db, to)
    fine = add(db, "pastor@church.example")
    run(db, settings(db_url, smtp))
    row = message(db, message_id)
    assert row.status == "failed" and "[hard bounce]" in (row.last_error or "")
    assert message(db, fine).status == "sent"
    (entry,) = rows(db, Suppression)
    assert (entry.contact, entry.reason, entry.until) == (to, "bounce", None)
    assert entry.created_by == "comms bounces"
    assert "hard bounce (smtp): 550 5.1.1" in (entry.note or "")
    assert f"(message {message_id})" in (entry.note or "")
    (bounce,) = rows(db, Bounce)
    assert (bounce.kind, bounce.source, bounce.outcome) == (
        "hard",
        "smtp",
        "suppressed (hard bounce)",
    )
    assert bounce.settled_at == NOW
    # `comms show ID` says what the server answered
    with db.read_session() as session:
        shown = message_details(session, message_id)["bounces"]
    assert [(b["kind"], b["status"], b["smtp_code"]) for b in shown] == [("hard", "5.1.1", 550)]
    assert "User unknown" in shown[0]["diagnostic"]


def test_a_hard_bounce_turns_a_soft_suppression_into_one_for_good(
    db: Database, db_url: str, smtp: SmtpServer
) -> None:
    from faithflow_ops.comms.suppression import add_suppression

    to = "moved@church.example"
    with db.session() as session:
        add_suppression(
            session,
            channel="email",
            contact=to,
            reason="bounce",
            now=NOW - dt.timedelta(days=10),
            until=NOW - dt.timedelta(days=3),  # ended: the address may be written to again
        )
    reject(smtp, USER_UNKNOWN, to)
    add(db, to)
    run(db, settings(db_url, smtp))
    (entry,) = rows(db, Suppression)
    assert entry.until is None and "5.1.1" in (entry.note or "")


def test_a_burst_of_bounces_raises_an_incident_instead_of_suppressing(
    db: Database, db_url: str, smtp: SmtpServer
) -> None:
    # A relay that suddenly answers 5.1.1 for most addresses (a broken recipient map, a
    # misrouted domain) must not wipe out the churches' addresses.
    bad = [f"member{i}@church.example" for i in range(6)]
    reject(smtp, USER_UNKNOWN, *bad)
    for to in [*bad, "ok1@church.example", "ok2@church.example"]:
        add(db, to)
    cfg = settings(db_url, smtp, comms_bounce_burst_min=5, comms_bounce_burst_share=0.25)
    result = run(db, cfg)
    assert result.outcomes == {"applied": 2, "failed": 6}
    assert rows(db, Suppression) == []
    (incident,) = rows(db, Incident)
    assert incident.cause == "comms:email:bounce-burst" and incident.severity == "critical"
    assert incident.title.startswith("6 of 8 e-mails in one dispatch bounced")
    assert {b.outcome for b in rows(db, Bounce)} == {
        "burst: not suppressed (incident comms:email:bounce-burst)"
    }


def test_below_the_burst_minimum_bounces_suppress_as_usual(
    db: Database, db_url: str, smtp: SmtpServer
) -> None:
    bad = [f"member{i}@church.example" for i in range(2)]
    reject(smtp, USER_UNKNOWN, *bad)
    for to in bad:
        add(db, to)
    run(db, settings(db_url, smtp, comms_bounce_burst_min=5))
    assert sorted(s.contact for s in rows(db, Suppression)) == sorted(bad)
    assert rows(db, Incident) == []
