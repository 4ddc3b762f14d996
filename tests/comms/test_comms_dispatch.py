"""`comms dispatch` end to end: the outbox sent to a real SMTP server (aiosmtpd) and a loopback
Twilio stand-in, on SQLite and Postgres: claims, retries, permanent failures, suppressions,
leases that end in `unknown`, and two dispatchers at once."""

from __future__ import annotations

import dataclasses
import datetime as dt
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import trustme
from fakes.smtp import Recorder, SmtpServer, smtp_server
from fakes.twilio import SID, TOKEN, Reply, TwilioFake, error
from sqlalchemy import select

from faithflow_ops.comms import outcomes, sending, suppression
from faithflow_ops.comms.outbox import enqueue
from faithflow_ops.config import Settings
from faithflow_ops.db import Database
from faithflow_ops.jobs import registry
from faithflow_ops.jobs.base import JobContext
from faithflow_ops.jobs.runner import RunResult, run_job
from faithflow_ops.models import OutboundMessage, Suppression, Tenant

NOW = dt.datetime(2026, 3, 1, 9, 0, tzinfo=dt.UTC)
SPEC = registry.get("communications_dispatch")
FROM_SMS = "+15005550006"
FROM_WA = "+14155238886"
# The approved WhatsApp version of the `notice` template (comms/whatsapp.py).
NOTICE_SID = "HX" + "1" * 32
CONTENT_SIDS = {"notice:en": NOTICE_SID}


@pytest.fixture
def twilio() -> Iterator[TwilioFake]:
    fake = TwilioFake()
    with fake.serve():
        yield fake


@pytest.fixture
def smtp() -> Iterator[SmtpServer]:
    with smtp_server() as server:
        yield server


def settings(
    db_url: str, twilio: TwilioFake | None = None, smtp: SmtpServer | None = None, **kw: Any
) -> Settings:
    values: dict[str, Any] = {
        "database_url": db_url,
        "twilio_account_sid": SID,
        "twilio_auth_token": TOKEN,
        "twilio_from": FROM_SMS,
        "twilio_whatsapp_from": FROM_WA,
        "twilio_api_base": twilio.url if twilio else "http://127.0.0.1:9",
        "smtp_url": smtp.url() if smtp else None,
        "email_from": "FaithFlow Billing <billing@faithflow.example>",
        "provider_timeout": 5.0,
        "comms_retry_backoff": 60,
        "comms_retry_max_backoff": 3600,
        "comms_max_attempts": 3,
        "comms_lease_seconds": 300,
        "comms_concurrency": 8,
        "twilio_content_sids": CONTENT_SIDS,
    }
    values.update(kw)
    return Settings(**values)


def run(
    db: Database,
    cfg: Settings,
    now: dt.datetime = NOW,
    *,
    dry_run: bool = False,
    limit: int | None = None,
    spec: registry.JobSpec = SPEC,
) -> RunResult:
    ctx = JobContext(now=now, dry_run=dry_run, trigger="cli", settings=cfg, limit=limit)
    return run_job(db, spec, ctx)


def add(
    db: Database,
    channel: str,
    to: str,
    *,
    message: str = "Service moved to 10am",
    key: str | None = None,
    priority: int = 50,
    not_before: dt.datetime | None = None,
    now: dt.datetime = NOW,
) -> int:
    with db.session() as session:
        result = enqueue(
            session,
            channel=channel,
            recipient=to,
            template="notice",
            variables={"subject": "Notice", "message": message},
            idempotency_key=key or f"test:{channel}:{to}:{message}:{priority}",
            now=now,
            priority=priority,
            not_before=not_before,
            settings=Settings(database_url="sqlite://", twilio_content_sids=CONTENT_SIDS),
        )
    return result.id


def message(db: Database, message_id: int) -> OutboundMessage:
    with db.read_session() as session:
        row = session.get(OutboundMessage, message_id)
        assert row is not None
        return row


def statuses(db: Database) -> dict[int, str]:
    with db.read_session() as session:
        return dict(session.execute(select(OutboundMessage.id, OutboundMessage.status)).all())


# --- sending ------------------------------------------------------------------------------------


def test_sms_and_whatsapp_go_through_twilio_and_are_marked_sent(
    db: Database, db_url: str, twilio: TwilioFake
) -> None:
    sms = add(db, "sms", "+234 801 234 5678")
    wa = add(db, "whatsapp", "whatsapp:+2348099999999")
    result = run(db, settings(db_url, twilio))
    assert result.status == "succeeded", result.to_dict()
    assert result.counts == {"send": 2}
    assert result.outcomes == {"applied": 2}
    forms = {r.form["To"]: r.form for r in twilio.requests}
    assert forms["+2348012345678"] == {
        "To": "+2348012345678",
        "From": FROM_SMS,
        "Body": "FaithFlow: Service moved to 10am",
    }
    # WhatsApp: the approved template and its values, no free text (Twilio 63016)
    assert forms["whatsapp:+2348099999999"] == {
        "To": "whatsapp:+2348099999999",
        "From": f"whatsapp:{FROM_WA}",
        "ContentSid": NOTICE_SID,
        "ContentVariables": '{"1":"Service moved to 10am"}',
    }
    for message_id in (sms, wa):
        row = message(db, message_id)
        assert row.status == "sent"
        assert row.provider_message_id and row.provider_message_id.startswith("SM")
        assert row.sent_at == NOW
        assert row.attempts == 1
        assert row.lease_expires_at is None


def test_email_goes_over_smtp_with_a_stable_message_id_on_one_connection(
    db: Database, db_url: str
) -> None:
    class Counting(Recorder):
        ehlo = 0

        async def handle_EHLO(
            self, server: Any, session: Any, envelope: Any, hostname: str, responses: list[str]
        ) -> list[str]:
            Counting.ehlo += 1
            session.host_name = hostname
            return responses

    from aiosmtpd.controller import Controller
    from fakes.smtp import free_port

    handler = Counting()
    port = free_port()
    controller = Controller(handler, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        ids = [add(db, "email", f"Treasurer{n}@Church.example") for n in range(5)]
        cfg = settings(db_url, smtp_url=f"smtp://127.0.0.1:{port}", comms_concurrency=1)
        result = run(db, cfg)
    finally:
        controller.stop()
    assert result.outcomes == {"applied": 5}, result.to_dict()
    assert Counting.ehlo == 1  # one connection for the whole batch
    got = {m.rcpt_tos[0]: m.message for m in handler.messages}
    assert set(got) == {f"treasurer{n}@church.example" for n in range(5)}
    first = got["treasurer0@church.example"]
    assert first["Subject"] == "Notice"
    assert first["From"] == "FaithFlow Billing <billing@faithflow.example>"
    assert first["Auto-Submitted"] == "auto-generated"
    assert "Service moved to 10am" in first.get_content()
    with db.read_session() as session:
        key = session.scalar(
            select(OutboundMessage.idempotency_key).where(OutboundMessage.id == ids[0])
        )
    assert key is not None
    expected = sending.email_message_id(ids[0], key, "billing@faithflow.example")
    assert first["Message-ID"] == expected
    assert expected.startswith(f"<outbox.{ids[0]}.") and expected.endswith("@faithflow.example>")
    assert all(message(db, i).status == "sent" for i in ids)


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.mark.parametrize("scheme", ["smtp", "smtp+starttls", "smtps"])
def test_email_goes_over_starttls_and_implicit_tls(
    db: Database,
    db_url: str,
    scheme: str,
    ca: trustme.CA,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import ssl

    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(server_ctx)
    bundle = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(bundle))
    monkeypatch.setenv("SSL_CERT_FILE", str(bundle))  # the client trusts the test CA
    kwargs: dict[str, Any] = (
        {"ssl_context": server_ctx}
        if scheme == "smtps"
        else {"tls_context": server_ctx, "require_starttls": True}
    )
    with smtp_server(**kwargs) as server:
        message_id = add(db, "email", "pastor@church.example")
        result = run(db, settings(db_url, smtp_url=server.url(scheme)))
        assert result.outcomes == {"applied": 1}, result.to_dict()
        assert [m.rcpt_tos for m in server.handler.messages] == [["pastor@church.example"]]
    assert message(db, message_id).status == "sent"


# --- failures -----------------------------------------------------------------------------------


def test_a_transient_failure_backs_off_exponentially_then_fails_at_max_attempts(
    db: Database, db_url: str, twilio: TwilioFake
) -> None:
    cfg = settings(db_url, twilio, comms_max_attempts=3, comms_retry_backoff=60)
    message_id = add(db, "sms", "+2348011111111")
    twilio.script("+2348011111111", *[error(500, 20500, "Internal Server Error")] * 3)

    first = run(db, cfg)
    assert first.outcomes == {"failed": 1}
    assert first.status == "failed"  # its one action failed (issue 22.5)
    assert "retry 2 of 3" in (first.actions[0].error or "")
    row = message(db, message_id)
    assert (row.status, row.attempts, row.next_attempt_at) == (
        "scheduled",
        1,
        NOW + dt.timedelta(seconds=60),
    )
    assert "HTTP 500" in (row.last_error or "")

    assert run(db, cfg, NOW + dt.timedelta(seconds=59)).counts == {}  # not due yet
    run(db, cfg, NOW + dt.timedelta(seconds=60))
    row = message(db, message_id)
    assert (row.status, row.attempts) == ("scheduled", 2)
    assert row.next_attempt_at == NOW + dt.timedelta(seconds=60 + 120)  # doubled

    run(db, cfg, NOW + dt.timedelta(seconds=180))
    row = message(db, message_id)
    assert (row.status, row.attempts) == ("failed", 3)
    assert row.failed_at == NOW + dt.timedelta(seconds=180)
    assert "gave up after 3 attempts" in (row.last_error or "")
    assert twilio.count("+2348011111111") == 3
    assert run(db, cfg, NOW + dt.timedelta(days=1)).counts == {}  # never again by itself


def test_the_backoff_is_capped_and_retry_after_is_honoured(
    db: Database, db_url: str, twilio: TwilioFake
) -> None:
    cfg = settings(
        db_url, twilio, comms_max_attempts=10, comms_retry_backoff=60, comms_retry_max_backoff=100
    )
    assert outcomes.retry_delay(cfg, 1) == 60
    assert outcomes.retry_delay(cfg, 2) == 100  # 120, capped
    assert outcomes.retry_delay(cfg, 5) == 100
    assert outcomes.retry_delay(cfg, 1, retry_after=900) == 900
    message_id = add(db, "sms", "+2348022222222")
    twilio.script(
        "+2348022222222", error(429, 20429, "Too Many Requests", **{"Retry-After": "900"})
    )
    run(db, cfg)
    row = message(db, message_id)
    assert (row.status, row.next_attempt_at) == ("scheduled", NOW + dt.timedelta(seconds=900))
    run(db, cfg, NOW + dt.timedelta(seconds=900))
    assert message(db, message_id).status == "sent"


@pytest.mark.parametrize(
    ("code", "suppressed"),
    [(21211, None), (21614, None), (21408, None), (63016, None), (21610, "stop")],
)
def test_a_permanent_twilio_refusal_fails_at_once(
    db: Database, db_url: str, twilio: TwilioFake, code: int, suppressed: str | None
) -> None:
    to = "+2348033333333"
    message_id = add(db, "sms", to)
    twilio.script(to, error(400, code, f"refused {code}"))
    result = run(db, settings(db_url, twilio))
    assert result.outcomes == {"failed": 1}
    row = message(db, message_id)
    assert (row.status, row.attempts, row.failed_at) == ("failed", 1, NOW)
    assert f"[Twilio {code}]" in (row.last_error or "")
    with db.read_session() as session:
        sup = session.scalar(select(Suppression).where(Suppression.contact == to))
    assert (sup.reason if sup else None) == suppressed
    # Nothing is retried later.
    assert run(db, settings(db_url, twilio), NOW + dt.timedelta(days=1)).counts == {}
    assert twilio.count(to) == 1


def test_a_stop_reply_suppresses_the_next_message_to_that_number(
    db: Database, db_url: str, twilio: TwilioFake
) -> None:
    to = "+2348044444444"
    add(db, "sms", to, message="first")
    twilio.script(to, error(400, 21610, "Attempt to send to unsubscribed recipient"))
    run(db, settings(db_url, twilio))
    later = add(db, "sms", to, message="second")  # enqueue refuses it up front
    assert message(db, later).status == "suppressed"
    assert twilio.count(to) == 1


def test_bad_twilio_credentials_are_ours_to_fix_and_the_message_is_kept(
    db: Database, db_url: str, twilio: TwilioFake
) -> None:
    message_id = add(db, "sms", "+2348055555555")
    result = run(db, settings(db_url, twilio, twilio_auth_token="wrong"))
    assert result.outcomes == {"failed": 1}
    assert "TWILIO_AUTH_TOKEN" in (result.actions[0].error or "")
    row = message(db, message_id)
    assert row.status == "scheduled"  # retried once the setting is fixed
    run(db, settings(db_url, twilio), NOW + dt.timedelta(seconds=60))
    assert message(db, message_id).status == "sent"


def test_a_rejected_address_fails_at_once_and_bounces_a_deferral_is_retried(
    db: Database, db_url: str, smtp: SmtpServer
) -> None:
    smtp.handler.reject["gone@church.example"] = "550 5.1.1 no such user"
    smtp.handler.reject["busy@church.example"] = "451 4.3.0 try again later"
    gone = add(db, "email", "gone@church.example")
    busy = add(db, "email", "busy@church.example")
    fine = add(db, "email", "fine@church.example")
    result = run(db, settings(db_url, smtp=smtp))
    assert result.outcomes == {"applied": 1, "failed": 2}
    assert message(db, fine).status == "sent"
    row = message(db, gone)
    assert row.status == "failed" and "SMTP 550" in (row.last_error or "")
    row = message(db, busy)
    assert row.status == "scheduled" and "SMTP 451" in (row.last_error or "")
    with db.read_session() as session:
        sups = session.execute(select(Suppression.contact, Suppression.reason)).all()
    assert [tuple(s) for s in sups] == [("gone@church.example", "bounce")]


def test_an_unreachable_smtp_server_is_transient(db: Database, db_url: str) -> None:
    message_id = add(db, "email", "a@church.example")
    result = run(db, settings(db_url, smtp_url="smtp://127.0.0.1:9"))
    assert result.outcomes == {"failed": 1}
    row = message(db, message_id)
    assert row.status == "scheduled" and "could not reach smtp" in (row.last_error or "")


def test_missing_settings_name_the_variable_and_leave_the_message_queued(
    db: Database, db_url: str, smtp: SmtpServer
) -> None:
    sms = add(db, "sms", "+2348066666666")
    wa = add(db, "whatsapp", "+2348066666666")
    mail = add(db, "email", "a@church.example")
    cfg = settings(db_url, smtp=smtp, twilio_from=None, twilio_whatsapp_from=None)
    result = run(db, cfg)
    errors = {a.action.data["channel"]: a.error for a in result.actions}
    assert "TWILIO_FROM is not set" in (errors["sms"] or "")
    assert "TWILIO_WHATSAPP_FROM is not set" in (errors["whatsapp"] or "")
    assert errors["email"] is None
    assert statuses(db) == {sms: "queued", wa: "queued", mail: "sent"}
    assert message(db, sms).attempts == 0  # never claimed
    no_smtp = run(db, settings(db_url, smtp_url=None), NOW)
    assert "SMTP_URL is not set" not in str(no_smtp.to_dict())  # no e-mail left to send


# --- suppressions, preview, order ------------------------------------------------------------


def test_suppressed_at_enqueue_and_at_dispatch_is_never_sent(
    db: Database, db_url: str, twilio: TwilioFake
) -> None:
    with db.session() as session:
        suppression.add_suppression(
            session, channel="sms", contact="+2348077777777", reason="unsubscribe", now=NOW
        )
    at_enqueue = add(db, "sms", "+2348077777777")
    queued = add(db, "sms", "+2348088888888")
    expired = add(db, "sms", "+2348099999990")
    with db.session() as session:  # suppressed after it was enqueued
        suppression.add_suppression(
            session, channel="sms", contact="+2348088888888", reason="complaint", now=NOW
        )
        # a suppression that has ended does not hold anything back
        suppression.add_suppression(
            session,
            channel="sms",
            contact="+2348099999990",
            reason="bounce",
            now=NOW - dt.timedelta(days=30),
            until=NOW - dt.timedelta(days=1),
        )
    preview = run(db, settings(db_url, twilio), dry_run=True)
    assert preview.counts == {"suppress": 1, "send": 1}
    result = run(db, settings(db_url, twilio))
    assert result.outcomes == {"applied": 2}
    assert statuses(db) == {at_enqueue: "suppressed", queued: "suppressed", expired: "sent"}
    assert message(db, queued).last_error == "suppressed: complaint"
    assert [r.form["To"] for r in twilio.requests] == ["+2348099999990"]


def test_the_preview_changes_nothing_and_shows_masked_recipients(
    db: Database, db_url: str, twilio: TwilioFake
) -> None:
    sms = add(db, "sms", "+2348012345678")
    mail = add(db, "email", "treasurer@church.example")
    later = add(db, "sms", "+2348012345679", not_before=NOW + dt.timedelta(hours=1))
    before = statuses(db)
    preview = run(db, settings(db_url, twilio), dry_run=True)
    assert preview.counts == {"send": 2}
    assert statuses(db) == before == {sms: "queued", mail: "queued", later: "scheduled"}
    assert twilio.requests == []
    data = {a.action.data["message"]: a.action.data for a in preview.actions}
    assert data[sms]["to"] == "+234******5678"
    assert data[mail]["to"] == "t***@church.example"
    assert data[sms]["scheduled_at"] == NOW.isoformat()
    assert data[sms]["template"] == "notice" and data[sms]["attempts"] == 0
    assert message(db, sms).attempts == 0


def test_lower_priority_numbers_go_first_and_the_limit_holds(
    db: Database, db_url: str, twilio: TwilioFake
) -> None:
    low = add(db, "sms", "+2348000000001", priority=90)
    high = add(db, "sms", "+2348000000002", priority=10)
    mid = add(db, "sms", "+2348000000003", priority=50)
    result = run(db, settings(db_url, twilio), limit=2)
    assert [a.action.data["message"] for a in result.actions] == [high, mid]
    assert statuses(db) == {high: "sent", mid: "sent", low: "queued"}


def test_a_huge_limit_is_no_limit(db: Database, db_url: str, twilio: TwilioFake) -> None:
    add(db, "sms", "+2348000000001")
    result = run(db, settings(db_url, twilio), dry_run=True, limit=10**20)
    assert result.status == "succeeded", result.error
    assert result.counts == {"send": 1}


def test_a_scheduled_message_is_never_sent_early(
    db: Database, db_url: str, twilio: TwilioFake
) -> None:
    later = add(db, "sms", "+2348000000004", not_before=NOW + dt.timedelta(hours=2))
    assert run(db, settings(db_url, twilio), NOW + dt.timedelta(minutes=119)).counts == {}
    run(db, settings(db_url, twilio), NOW + dt.timedelta(hours=2))
    assert message(db, later).status == "sent"


def test_enqueue_is_idempotent_by_key(db: Database) -> None:
    first = add(db, "sms", "+2348000000005", key="same")
    second = add(db, "sms", "+2348000000005", key="same", message="different text")
    assert first == second
    assert message(db, first).body == "FaithFlow: Service moved to 10am"
    with db.read_session() as session:
        assert len(session.scalars(select(OutboundMessage)).all()) == 1


# --- leases, crashes, concurrency ------------------------------------------------------------


def test_a_crash_between_send_and_mark_ends_unknown_and_is_never_resent(
    db: Database, db_url: str, twilio: TwilioFake, monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg = settings(db_url, twilio, comms_lease_seconds=300)
    ids = [add(db, "sms", f"+23480100000{n:02d}") for n in range(5)]

    def die(*args: Any, **kwargs: Any) -> Any:
        raise SystemExit("killed after the provider accepted")

    monkeypatch.setattr(sending, "_mark", die)
    with pytest.raises(SystemExit):
        run(db, cfg)
    monkeypatch.undo()
    assert len(twilio.accepted) == 5  # Twilio took them all
    assert set(statuses(db).values()) == {"sending"}

    # Within the lease: nothing to do (not due, not expired), nothing sent again.
    assert run(db, cfg, NOW + dt.timedelta(seconds=299)).counts == {}
    after = run(db, cfg, NOW + dt.timedelta(seconds=301))
    assert after.counts == {"mark_unknown": 5}
    assert after.outcomes == {"applied": 5}
    assert set(statuses(db).values()) == {"unknown"}
    assert "comms retry" in (message(db, ids[0]).last_error or "")
    assert run(db, cfg, NOW + dt.timedelta(days=1)).counts == {}
    assert len(twilio.requests) == 5  # never re-sent by a dispatch

    # The operator's decision: retry one.
    from faithflow_ops.comms import admin

    later = NOW + dt.timedelta(days=2)
    with db.session() as session:
        assert admin.retry(session, ids[0], now=later, actor="test") == "unknown"
    run(db, cfg, later)
    assert message(db, ids[0]).status == "sent"
    assert len(twilio.requests) == 6


def test_no_answer_after_twilio_got_the_request_is_unknown_and_never_resent(
    db: Database, db_url: str, twilio: TwilioFake
) -> None:
    # Twilio received the request (and may have created the message) but its answer did not
    # arrive in time: resending could text the church twice, so the outcome is unknown.
    cfg = settings(db_url, twilio, provider_timeout=0.3)
    late = add(db, "sms", "+2348012340001")
    twilio.script("+2348012340001", Reply(201, {"sid": "SMlate", "status": "queued"}, delay=1.5))
    result = run(db, cfg)
    assert result.outcomes == {"failed": 1}
    row = message(db, late)
    assert row.status == "unknown"
    assert "may have" in (row.last_error or "") and "comms retry" in (row.last_error or "")
    assert run(db, cfg, NOW + dt.timedelta(days=1)).counts == {}
    assert twilio.count("+2348012340001") == 1
    # A connection that never reached Twilio is safe to retry: that stays transient.
    down = add(db, "sms", "+2348012340002")
    run(db, settings(db_url, None), NOW + dt.timedelta(days=1))
    assert message(db, down).status == "scheduled"


def test_two_dispatchers_at_once_never_send_one_message_twice(
    db: Database, db_url: str, twilio: TwilioFake, smtp: SmtpServer
) -> None:
    sms = [f"+2348{n:09d}" for n in range(240)]
    mails = [f"member{n}@church.example" for n in range(60)]
    with db.session() as session:
        for n, to in enumerate(sms):
            enqueue(
                session,
                channel="sms",
                recipient=to,
                template="notice",
                variables={"subject": "s", "message": f"m{n}"},
                idempotency_key=f"s{n}",
                now=NOW,
            )
        for n, to in enumerate(mails):
            enqueue(
                session,
                channel="email",
                recipient=to,
                template="notice",
                variables={"subject": "s", "message": f"m{n}"},
                idempotency_key=f"e{n}",
                now=NOW,
            )
    cfg = settings(db_url, twilio, smtp, comms_concurrency=4)
    # Two specs under different lock names: both runs plan all 300 messages and race to claim.
    specs = [SPEC, dataclasses.replace(SPEC, name="communications_dispatch_second")]
    results: list[RunResult] = []
    barrier = threading.Barrier(2)

    def go(spec: registry.JobSpec) -> None:
        barrier.wait()
        results.append(run(db, cfg, spec=spec))

    threads = [threading.Thread(target=go, args=(s,)) for s in specs]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert len(results) == 2
    applied = sum(r.outcomes.get("applied", 0) for r in results)
    stale = sum(r.outcomes.get("stale", 0) for r in results)
    assert applied == 300
    assert applied + stale == sum(sum(r.counts.values()) for r in results)
    assert len(twilio.requests) == 240
    assert sorted(r.form["To"] for r in twilio.requests) == sorted(sms)
    assert sorted(m.rcpt_tos[0] for m in smtp.handler.messages) == sorted(mails)
    assert set(statuses(db).values()) == {"sent"}


def test_the_task_endpoint_dispatches(db: Database, db_url: str, twilio: TwilioFake) -> None:
    from helpers import running

    from receiver.app import create_app

    message_id = add(db, "sms", "+2348000000006")
    cfg = dataclasses.replace(settings(db_url, twilio), integration_api_key="k" * 32)
    app = create_app(cfg, db=db, jobs=[SPEC])
    with running(app) as url:
        preview = httpx.post(
            url + SPEC.task_path,
            json={"dry_run": True, "now": NOW.isoformat()},
            headers={"X-API-Key": "k" * 32},
            timeout=30,
        )
        assert preview.status_code == 200, preview.text
        assert preview.json()["counts"] == {"send": 1}
        assert message(db, message_id).status == "queued"
        done = httpx.post(
            url + SPEC.task_path,
            json={"now": NOW.isoformat()},
            headers={"X-API-Key": "k" * 32},
            timeout=30,
        )
    assert done.status_code == 200, done.text
    doc = done.json()
    assert (doc["job"], doc["status"], doc["outcomes"]) == (
        "communications_dispatch",
        "succeeded",
        {"applied": 1},
    )
    assert message(db, message_id).status == "sent"


def test_a_tenant_message_is_rendered_in_its_locale(
    db: Database, db_url: str, twilio: TwilioFake
) -> None:
    with db.session() as session:
        tenant = Tenant(
            slug="grace-lagos",
            name="Grace Lagos",
            timezone="Africa/Lagos",
            locale="en_NG",
            currency="NGN",
        )
        session.add(tenant)
        session.flush()
        enqueue(
            session,
            channel="sms",
            recipient="+2348000000007",
            template="payment_received",
            variables={
                "amount_minor": 1500000,
                "currency": "NGN",
                "paid_at": "2026-03-01T23:30:00Z",
            },
            idempotency_key="receipt-1",
            now=NOW,
            tenant=tenant,
        )
    run(db, settings(db_url, twilio))
    [req] = twilio.requests
    assert req.form["Body"] == (
        "FaithFlow: payment of NGN 15,000.00 for Grace Lagos received on 2 Mar 2026. Thank you!"
    )
