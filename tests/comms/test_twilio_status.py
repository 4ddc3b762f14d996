"""Twilio delivery status callbacks over real HTTP (uvicorn on loopback, httpx), on SQLite and
Postgres: `POST /webhooks/twilio/status` moves outbox messages from `sent` to `delivered` or
`failed`, forward only, once; the dispatcher asks for the callbacks when FAITHFLOW_PUBLIC_URL
is set. Signatures are computed here from Twilio's documented algorithm (`sign`), not with
the product's code, so each checks the other."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import io
import json
import logging
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest
from fakes.twilio import SID, TOKEN, TwilioFake
from helpers import running, said
from sqlalchemy import func, select, text, update

from faithflow_ops.comms.outbox import enqueue
from faithflow_ops.config import Settings
from faithflow_ops.db import Database
from faithflow_ops.errors import ConfigError
from faithflow_ops.jobs import registry
from faithflow_ops.jobs.base import JobContext
from faithflow_ops.jobs.runner import run_job
from faithflow_ops.models import OutboundMessage, Suppression
from faithflow_ops.providers import SignatureError
from faithflow_ops.providers.twilio import request_signature, verify_request
from receiver.app import create_app

NOW = dt.datetime(2026, 3, 1, 9, 0, tzinfo=dt.UTC)
PUBLIC = "https://ops.faithflow.example"
PATH = "/webhooks/twilio/status"
CALLBACK = PUBLIC + PATH
TO = "+2348012345678"
FROM_SMS = "+15005550006"


def sign(token: str, url: str, form: dict[str, str]) -> str:
    """X-Twilio-Signature as Twilio documents it (https://www.twilio.com/docs/usage/security):
    base64(HMAC-SHA1(token, url + name1 + value1 + name2 + value2 …)), names sorted."""
    data = url + "".join(name + form[name] for name in sorted(form))
    digest = hmac.new(token.encode(), data.encode(), hashlib.sha1).digest()
    return base64.b64encode(digest).decode()


def callback_form(sid: str, status: str, **extra: str) -> dict[str, str]:
    """A status callback's parameters as Twilio sends them for an SMS."""
    form = {
        "SmsSid": sid,
        "SmsStatus": status,
        "MessageStatus": status,
        "To": TO,
        "MessageSid": sid,
        "AccountSid": SID,
        "From": FROM_SMS,
        "ApiVersion": "2010-04-01",
    }
    form.update(extra)
    return form


def settings_for(db_url: str, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "database_url": db_url,
        "twilio_account_sid": SID,
        "twilio_auth_token": TOKEN,
        "twilio_from": FROM_SMS,
        "public_url": PUBLIC,
    }
    values.update(overrides)
    return Settings(**values)


@pytest.fixture
def base(db: Database, db_url: str) -> Iterator[str]:
    with running(create_app(settings_for(db_url), db=db)) as url:
        yield url


def post(
    base: str,
    form: dict[str, str],
    *,
    token: str = TOKEN,
    url: str = CALLBACK,
    signature: str | None = None,
    body: bytes | None = None,
    query: str = "",
) -> httpx.Response:
    """POST `form` as Twilio would to `url` (+ `?query`), signed for that URL."""
    headers = {"Content-Type": "application/x-www-form-urlencoded"}
    tail = f"?{query}" if query else ""
    sig = sign(token, url + tail, form) if signature is None else signature
    if sig:
        headers["X-Twilio-Signature"] = sig
    content = urlencode(form).encode() if body is None else body
    return httpx.post(base + PATH + tail, content=content, headers=headers, timeout=30)


def sent_message(
    db: Database, sid: str, *, to: str = TO, channel: str = "sms", key: str | None = None
) -> int:
    """An outbox message the dispatcher has sent: `sent`, with Twilio's sid."""
    with db.session() as session:
        result = enqueue(
            session,
            channel=channel,
            recipient=to,
            template="notice",
            variables={"subject": "Notice", "message": "Service moved to 10am"},
            idempotency_key=key or f"test:{sid}",
            now=NOW,
        )
        session.execute(
            update(OutboundMessage)
            .where(OutboundMessage.id == result.id)
            .values(status="sent", provider_message_id=sid, sent_at=NOW, attempts=1)
        )
    return result.id


def message(db: Database, message_id: int) -> OutboundMessage:
    with db.read_session() as session:
        row = session.get(OutboundMessage, message_id)
        assert row is not None
        return row


def metric(url: str, result: str) -> float:
    for line in httpx.get(url + "/metrics").text.splitlines():
        if (
            line.startswith("faithflow_webhook_deliveries_total{")
            and 'provider="twilio"' in line
            and f'result="{result}"' in line
        ):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


# --- the signature -----------------------------------------------------------------------------


def test_request_signature_matches_twilios_documented_example() -> None:
    # The worked example of Twilio's security page (and of its helper libraries' tests).
    url = "https://mycompany.com/myapp.php?foo=1&bar=2"
    params = {
        "CallSid": "CA1234567890ABCDE",
        "Caller": "+12349013030",
        "Digits": "1234",
        "From": "+12349013030",
        "To": "+18005551212",
    }
    assert request_signature("12345", url, params.items()) == "0/KCTR6DLpKmkAf8muzZqo1nDgQ="
    assert sign("12345", url, params) == "0/KCTR6DLpKmkAf8muzZqo1nDgQ="
    verify_request(url, list(params.items()), "0/KCTR6DLpKmkAf8muzZqo1nDgQ=", "12345")


def test_verification_accepts_the_default_port_written_or_not_and_nothing_else() -> None:
    form = callback_form("SM1", "delivered")
    params = list(form.items())
    verify_request(
        CALLBACK, params, sign(TOKEN, "https://ops.faithflow.example:443" + PATH, form), TOKEN
    )
    verify_request(
        "https://ops.faithflow.example:443" + PATH, params, sign(TOKEN, CALLBACK, form), TOKEN
    )
    for bad in (
        sign(TOKEN, "http://ops.faithflow.example" + PATH, form),  # another scheme
        sign(TOKEN, "https://ops.faithflow.example:8443" + PATH, form),  # another port
        sign("another-token", CALLBACK, form),
        sign(TOKEN, CALLBACK, {**form, "MessageStatus": "failed"}),
        "",
        None,
    ):
        with pytest.raises(SignatureError):
            verify_request(CALLBACK, params, bad, TOKEN)


# --- effects -----------------------------------------------------------------------------------


def test_delivered_callback_marks_the_message_delivered(base: str, db: Database) -> None:
    sid = "SM" + "a" * 32
    message_id = sent_message(db, sid)
    before = time.time()
    answer = post(base, callback_form(sid, "delivered"))
    assert answer.status_code == 200, answer.text
    assert answer.json() == {
        "result": "applied",
        "message": message_id,
        "status": "delivered",
        "note": f"twilio says delivered: message {message_id} is delivered",
    }
    row = message(db, message_id)
    assert row.status == "delivered"
    assert row.delivered_at is not None and row.delivered_at.timestamp() >= before - 1
    assert row.failed_at is None and row.last_error is None
    assert metric(base, "applied") == 1


def test_read_counts_as_delivered_and_read_after_delivered_is_a_duplicate(
    base: str, db: Database
) -> None:
    first = sent_message(db, "SMread1", channel="whatsapp")
    assert post(base, callback_form("SMread1", "read")).json()["result"] == "applied"
    assert message(db, first).status == "delivered"
    second = sent_message(db, "SMread2", channel="whatsapp")
    post(base, callback_form("SMread2", "delivered"))
    delivered_at = message(db, second).delivered_at
    again = post(base, callback_form("SMread2", "read"))
    assert again.json()["result"] == "duplicate"
    assert message(db, second).delivered_at == delivered_at


def test_undelivered_with_an_error_code_marks_it_failed_with_the_code(
    base: str, db: Database
) -> None:
    message_id = sent_message(db, "SMfail")
    answer = post(base, callback_form("SMfail", "undelivered", ErrorCode="30003"))
    assert answer.status_code == 200
    assert answer.json()["result"] == "applied" and answer.json()["status"] == "failed"
    row = message(db, message_id)
    assert row.status == "failed" and row.failed_at is not None and row.delivered_at is None
    assert row.last_error == (
        "twilio reported undelivered [Twilio 30003]: unreachable destination handset"
    )
    other = sent_message(db, "SMfail2", to="+2348099999999")
    post(base, callback_form("SMfail2", "failed", ErrorCode="30999"))
    assert message(db, other).last_error == (
        "twilio reported failed [Twilio 30999]; see https://www.twilio.com/docs/errors/30999"
    )
    with db.read_session() as session:  # only 21610 puts a recipient on the list
        assert session.scalar(select(func.count()).select_from(Suppression)) == 0


def test_undelivered_21610_puts_the_recipient_on_the_stop_list(base: str, db: Database) -> None:
    message_id = sent_message(db, "SMstop")
    answer = post(base, callback_form("SMstop", "undelivered", ErrorCode="21610"))
    assert answer.json()["result"] == "applied"
    assert "added to the suppression list" in answer.json()["note"]
    with db.read_session() as session:
        entry = session.scalars(select(Suppression)).one()
        assert (entry.contact, entry.channel, entry.reason) == (TO, "sms", "stop")
        assert entry.created_by == "twilio status callback"
        assert entry.note is not None and f"message {message_id}" in entry.note
    # the next message to that number is suppressed at enqueue, never sent
    with db.session() as session:
        later = enqueue(
            session,
            channel="sms",
            recipient=TO,
            template="notice",
            variables={"subject": "Notice", "message": "again"},
            idempotency_key="test:after-stop",
            now=NOW,
        )
        assert later.status == "suppressed"


def test_a_late_sent_after_delivered_leaves_it_delivered(base: str, db: Database) -> None:
    message_id = sent_message(db, "SMorder")
    assert post(base, callback_form("SMorder", "delivered")).json()["result"] == "applied"
    for late in ("sent", "sending", "queued"):
        answer = post(base, callback_form("SMorder", late))
        assert answer.status_code == 200
        assert answer.json()["result"] == "stale" and answer.json()["status"] == "delivered"
    contradiction = post(base, callback_form("SMorder", "undelivered", ErrorCode="30003"))
    assert contradiction.json()["result"] == "stale"
    row = message(db, message_id)
    assert row.status == "delivered" and row.failed_at is None and row.last_error is None
    assert metric(base, "stale") == 4


def test_a_sent_callback_before_the_verdict_changes_nothing(base: str, db: Database) -> None:
    message_id = sent_message(db, "SMsent")
    updated_at = message(db, message_id).updated_at
    for status in ("sent", "partially_delivered", "some_future_status"):
        answer = post(base, callback_form("SMsent", status))
        assert answer.status_code == 200 and answer.json()["result"] == "ignored"
    row = message(db, message_id)
    assert row.status == "sent" and row.updated_at == updated_at
    assert post(base, callback_form("SMsent", "delivered")).json()["result"] == "applied"


def test_duplicates_sequential_and_concurrent_apply_once(base: str, db: Database) -> None:
    message_id = sent_message(db, "SMdup")
    form = callback_form("SMdup", "delivered")
    first = post(base, form)
    delivered_at = message(db, message_id).delivered_at
    second = post(base, form)
    assert (first.json()["result"], second.json()["result"]) == ("applied", "duplicate")
    assert message(db, message_id).delivered_at == delivered_at
    # ten deliveries of one callback at once: one changes the row
    other = sent_message(db, "SMconc")
    failed = callback_form("SMconc", "undelivered", ErrorCode="21610")
    with ThreadPoolExecutor(10) as pool:
        answers = list(pool.map(lambda _: post(base, failed), range(10)))
    assert [a.status_code for a in answers] == [200] * 10
    results = sorted(a.json()["result"] for a in answers)
    assert results == ["applied"] + ["duplicate"] * 9
    assert message(db, other).status == "failed"
    with db.read_session() as session:
        assert session.scalar(select(func.count()).select_from(Suppression)) == 1
    assert metric(base, "duplicate") == 10


def test_a_non_ascii_digit_error_code_or_message_ref_is_no_500(base: str, db: Database) -> None:
    # "²".isdigit() is true and int("²") raises: a signed callback must never make that a 500
    message_id = sent_message(db, "SMsup")
    answer = post(base, callback_form("SMsup", "undelivered", ErrorCode="²"), query="m=%C2%B2")
    assert answer.status_code == 200, answer.text
    row = message(db, message_id)
    assert row.status == "failed" and "[Twilio" not in (row.last_error or "")
    # numbers past a 32-bit column, for a sid we do not know yet (kept as an early status)
    huge = callback_form("SMhuge", "undelivered", ErrorCode="99999999999")
    assert post(base, huge, query="m=99999999999").status_code == 200


def test_an_unknown_sid_is_200_with_a_note_and_a_log_line(base: str, db: Database) -> None:
    from faithflow_ops.logging import configure

    stream = io.StringIO()
    root = logging.getLogger()
    saved = root.handlers[:]
    configure("json", stream=stream)
    try:
        answer = post(base, callback_form("SMnobody", "delivered"))
        deadline = time.monotonic() + 60  # a bound for a failure, not a wait
        while '"event": "request"' not in stream.getvalue():
            assert time.monotonic() < deadline
            time.sleep(0.01)
    finally:
        root.handlers[:] = saved
    assert answer.status_code == 200
    assert answer.json()["result"] == "unmatched" and answer.json()["message"] is None
    assert "no outbox message was sent as SMnobody" in answer.json()["note"]
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    warning = [line for line in lines if line["event"] == "twilio status for an unknown message"]
    assert len(warning) == 1 and warning[0]["sid"] == "SMnobody"
    request = [line for line in lines if line["event"] == "request"]
    assert request[0]["result"] == "unmatched" and request[0]["status"] == 200
    assert TOKEN not in stream.getvalue()
    assert metric(base, "unmatched") == 1


def test_a_callback_never_touches_an_email_or_a_message_sent_again(base: str, db: Database) -> None:
    # an operator retried a failed message: it is queued again, with the old sid still on it
    message_id = sent_message(db, "SMretried")
    with db.session() as session:
        session.execute(
            update(OutboundMessage).where(OutboundMessage.id == message_id).values(status="queued")
        )
    answer = post(base, callback_form("SMretried", "delivered"))
    assert answer.json()["result"] == "stale" and answer.json()["status"] == "queued"
    assert message(db, message_id).status == "queued"


# --- refusals ----------------------------------------------------------------------------------


def test_a_bad_signature_is_400_and_nothing_changes(base: str, db: Database) -> None:
    message_id = sent_message(db, "SMbad")
    form = callback_form("SMbad", "delivered")
    tampered = {**form, "MessageStatus": "undelivered"}
    cases = {
        "wrong token": post(base, form, token="not-the-token"),
        "tampered": post(base, tampered, signature=sign(TOKEN, CALLBACK, form)),
        "missing": post(base, form, signature=""),
        # signed for the URL the receiver sees, not the one Twilio was given
        "local url": post(base, form, url=base + PATH),
    }
    for name, answer in cases.items():
        assert answer.status_code == 400, name
    assert cases["missing"].json()["error"] == "missing X-Twilio-Signature header"
    assert (
        "does not verify for https://ops.faithflow.example/webhooks/twilio/status"
        in (cases["wrong token"].json()["error"])
    )
    assert message(db, message_id).status == "sent"
    assert metric(base, "bad_signature") == 4


def test_a_missing_auth_token_is_503_naming_the_variable(db: Database, db_url: str) -> None:
    message_id = sent_message(db, "SMnotoken")
    with running(create_app(settings_for(db_url, twilio_auth_token=None), db=db)) as url:
        answer = post(url, callback_form("SMnotoken", "delivered"))
        assert answer.status_code == 503
        assert "TWILIO_AUTH_TOKEN is not set" in answer.json()["error"]
        assert metric(url, "not_configured") == 1
    assert message(db, message_id).status == "sent"


def test_another_accounts_callback_is_400(base: str, db: Database) -> None:
    message_id = sent_message(db, "SMacct")
    other = callback_form("SMacct", "delivered", AccountSid="AC" + "9" * 32)
    answer = post(base, other)  # properly signed, by whoever holds our token, for another account
    assert answer.status_code == 400
    assert answer.json()["error"] == f"AccountSid AC{'9' * 32} is not TWILIO_ACCOUNT_SID"
    no_account = {
        k: v for k, v in callback_form("SMacct", "delivered").items() if k != "AccountSid"
    }
    assert post(base, no_account).status_code == 400
    assert message(db, message_id).status == "sent"
    assert metric(base, "wrong_account") == 2


def test_signed_bodies_that_are_not_status_callbacks_are_400(base: str, db: Database) -> None:
    no_sid = {k: v for k, v in callback_form("SMx", "delivered").items() if "Sid" not in k}
    no_sid["AccountSid"] = SID
    answer = post(base, no_sid)
    assert answer.status_code == 400
    assert answer.json()["error"] == "not a message status callback: no MessageSid"
    not_utf8 = post(base, {}, body=b"MessageSid=\xff\xfe", signature="x")
    assert not_utf8.status_code == 400 and not_utf8.json()["error"] == "body is not a UTF-8 form"


def test_an_oversized_body_is_413(base: str) -> None:
    form = callback_form("SMbig", "delivered", Padding="x" * (300 * 1024))
    answer = post(base, form)
    assert answer.status_code == 413 and "larger than" in answer.json()["error"]


def test_without_a_public_url_the_request_url_is_what_is_signed(db: Database, db_url: str) -> None:
    message_id = sent_message(db, "SMlocal")
    with running(create_app(settings_for(db_url, public_url=None), db=db)) as url:
        assert post(url, callback_form("SMlocal", "delivered")).status_code == 400
        answer = post(url, callback_form("SMlocal", "delivered"), url=url + PATH)
        assert answer.status_code == 200 and answer.json()["result"] == "applied"
    assert message(db, message_id).status == "delivered"


def test_database_down_is_503(db_url: str) -> None:
    down = Database.from_url("postgresql+psycopg://nobody@127.0.0.1:1/nothing")
    try:
        with running(create_app(settings_for(db_url), db=down)) as url:
            answer = post(url, callback_form("SMdown", "delivered"))
            assert answer.status_code == 503
    finally:
        down.dispose()


def test_the_openapi_document_lists_the_route(base: str) -> None:
    paths = httpx.get(base + "/docs/openapi.json").json()["paths"]
    assert "post" in paths[PATH]


# --- the dispatcher asks for callbacks -----------------------------------------------------------


@pytest.fixture
def twilio() -> Iterator[TwilioFake]:
    fake = TwilioFake()
    with fake.serve():
        yield fake


def test_dispatch_asks_for_status_callbacks_and_they_close_the_loop(
    db: Database, db_url: str, twilio: TwilioFake
) -> None:
    with db.session() as session:
        for key, to in (("a", TO), ("b", "+2348099999999")):
            enqueue(
                session,
                channel="sms",
                recipient=to,
                template="notice",
                variables={"subject": "Notice", "message": "Service moved to 10am"},
                idempotency_key=f"test:dispatch:{key}",
                now=NOW,
            )
    cfg = settings_for(db_url, twilio_api_base=twilio.url, provider_timeout=5.0)
    spec = registry.get("communications_dispatch")
    result = run_job(db, spec, JobContext(now=NOW, dry_run=False, trigger="cli", settings=cfg))
    assert result.status == "succeeded", result.to_dict()
    with db.read_session() as session:
        rows = {m.recipient: m for m in session.scalars(select(OutboundMessage))}
    # each message asks for callbacks at a URL naming its outbox id (signed with the URL)
    assert {r.form["To"]: r.form["StatusCallback"] for r in twilio.requests} == {
        to: f"{CALLBACK}?m={row.id}" for to, row in rows.items()
    }
    # Twilio calls the URL it was given; here the test plays Twilio and the proxy in front
    with running(create_app(cfg, db=db)) as url:
        delivered = post(
            url,
            callback_form(rows[TO].provider_message_id or "", "delivered"),
            query=f"m={rows[TO].id}",
        )
        failed = post(
            url,
            callback_form(rows["+2348099999999"].provider_message_id or "", "undelivered")
            | {"To": "+2348099999999", "ErrorCode": "30005"},
            query=f"m={rows['+2348099999999'].id}",
        )
    assert delivered.json()["result"] == failed.json()["result"] == "applied"
    with db.read_session() as session:
        final = dict(
            session.execute(select(OutboundMessage.recipient, OutboundMessage.status)).all()
        )
    assert final == {TO: "delivered", "+2348099999999": "failed"}


def test_dispatch_without_a_public_url_asks_for_no_callback(
    db: Database, db_url: str, twilio: TwilioFake
) -> None:
    with db.session() as session:
        enqueue(
            session,
            channel="whatsapp",
            recipient=TO,
            template="notice",
            variables={"subject": "Notice", "message": "Hi"},
            idempotency_key="test:no-callback",
            now=NOW,
        )
    cfg = settings_for(
        db_url, public_url=None, twilio_api_base=twilio.url, twilio_whatsapp_from="+14155238886"
    )
    spec = registry.get("communications_dispatch")
    result = run_job(db, spec, JobContext(now=NOW, dry_run=False, trigger="cli", settings=cfg))
    assert result.status == "succeeded", result.to_dict()
    assert "StatusCallback" not in twilio.requests[0].form


# --- FAITHFLOW_PUBLIC_URL ----------------------------------------------------------------------


def test_public_url_is_read_without_its_trailing_slash() -> None:
    base_env = {"FAITHFLOW_DATABASE_URL": "sqlite:///x.db"}
    assert Settings.from_env(base_env).public_url is None
    env = {**base_env, "FAITHFLOW_PUBLIC_URL": " https://ops.faithflow.example/ "}
    assert Settings.from_env(env).public_url == "https://ops.faithflow.example"
    env["FAITHFLOW_PUBLIC_URL"] = "https://faithflow.example:8443/ops/"
    assert Settings.from_env(env).public_url == "https://faithflow.example:8443/ops"


@pytest.mark.parametrize(
    "raw",
    [
        "http://ops.faithflow.example",
        "ops.faithflow.example",
        "https://",
        "https:///path",
        "https://ops.faithflow.example?x=1",
        "https://ops.faithflow.example/#top",
        "https://user:pw@ops.faithflow.example",
        "https://ops.faithflow.example:99999",
    ],
)
def test_a_bad_public_url_names_the_variable(raw: str) -> None:
    env = {"FAITHFLOW_DATABASE_URL": "sqlite:///x.db", "FAITHFLOW_PUBLIC_URL": raw}
    with pytest.raises(ConfigError, match=r"FAITHFLOW_PUBLIC_URL=.* absolute https URL"):
        Settings.from_env(env)


# --- faithflow webhooks sign --provider twilio -------------------------------------------------


def test_cli_sign_twilio_signs_the_form_for_the_url_and_the_receiver_accepts_it(
    cli, base: str, db: Database, tmp_path: Path
) -> None:
    message_id = sent_message(db, "SMcli")
    form = callback_form("SMcli", "delivered", To="whatsapp:+2348012345678")
    body = urlencode(form).encode()
    path = tmp_path / "callback.form"
    path.write_bytes(body)
    result = cli(
        "webhooks", "sign", "--provider", "twilio", "--secret", TOKEN, "--url", CALLBACK,
        str(path),
    )  # fmt: skip
    assert result.exit_code == 0, result.stderr
    name, _, value = result.stdout.strip().partition(": ")
    assert (name, value) == ("X-Twilio-Signature", sign(TOKEN, CALLBACK, form))
    hint = said(result)
    assert "curl -X POST http://127.0.0.1:8000/webhooks/twilio/status" in hint
    assert "application/x-www-form-urlencoded" in hint and f"@{path}" in hint
    answer = post(base, form, signature=value, body=body)
    assert answer.status_code == 200 and message(db, message_id).status == "delivered"


def test_cli_sign_twilio_defaults_to_the_configured_token_and_public_url(
    cli, monkeypatch: pytest.MonkeyPatch
) -> None:
    form = callback_form("SMenv", "sent")
    monkeypatch.setenv("TWILIO_AUTH_TOKEN", TOKEN)
    monkeypatch.setenv("FAITHFLOW_PUBLIC_URL", PUBLIC + "/")
    result = cli("webhooks", "sign", "--provider", "twilio", "-", "--json", input=urlencode(form))
    assert result.exit_code == 0, result.stderr
    doc = json.loads(result.stdout)
    assert doc == {"headers": {"X-Twilio-Signature": sign(TOKEN, CALLBACK, form)}, "url": CALLBACK}


def test_cli_sign_twilio_bad_inputs_exit_2(cli, tmp_path: Path) -> None:
    path = tmp_path / "callback.form"
    path.write_bytes(b"MessageSid=SM1")
    no_token = cli("webhooks", "sign", "--provider", "twilio", str(path))
    assert no_token.exit_code == 2
    assert "no secret: pass --secret or set TWILIO_AUTH_TOKEN" in said(no_token)
    no_url = cli("webhooks", "sign", "--provider", "twilio", "--secret", "t", str(path))
    assert no_url.exit_code == 2 and "pass --url" in said(no_url)
    assert "FAITHFLOW_PUBLIC_URL" in said(no_url)
    bad_url = cli(
        "webhooks", "sign", "--provider", "twilio", "--secret", "t", "--url", "ops.example",
        str(path),
    )  # fmt: skip
    assert bad_url.exit_code == 2 and "is not an absolute http(s) URL" in said(bad_url)
    path.write_bytes(b"MessageSid=\xff")
    not_utf8 = cli(
        "webhooks", "sign", "--provider", "twilio", "--secret", "t", "--url", CALLBACK, str(path)
    )
    assert not_utf8.exit_code == 2 and "is not UTF-8 text" in said(not_utf8)
    assert "" == no_token.stdout == no_url.stdout == bad_url.stdout == not_utf8.stdout


# --- callbacks that come before the dispatcher recorded the sid (issue 21 point 4) --------------


def test_callbacks_that_beat_the_send_answer_are_applied_when_the_sid_lands(
    db: Database, db_url: str, twilio: TwilioFake
) -> None:
    # Twilio posts `sent` and `delivered` before its 201 to the send has reached us: the sid is
    # not recorded yet (the message is still `sending`). Before the fix these were answered
    # `unmatched` and lost, and the messages stayed `sent` for good.
    n = 24
    with db.session() as session:
        for i in range(n):
            enqueue(
                session,
                channel="sms",
                recipient=f"+23480{i:08d}",
                template="notice",
                variables={"subject": "Notice", "message": "Service moved to 10am"},
                idempotency_key=f"test:early:{i}",
                now=NOW,
            )
    cfg = settings_for(
        db_url, twilio_api_base=twilio.url, provider_timeout=10.0, comms_concurrency=8
    )
    answers: list[str] = []
    with running(create_app(cfg, db=db)) as url:

        def call_back_first(req: Any, sid: str) -> None:
            query = req.form["StatusCallback"].partition("?")[2]
            for status in ("sent", "delivered"):
                form = callback_form(sid, status, To=req.form["To"])
                answers.append(post(url, form, query=query).json()["result"])

        twilio.before_answer = call_back_first
        spec = registry.get("communications_dispatch")
        result = run_job(db, spec, JobContext(now=NOW, dry_run=False, trigger="cli", settings=cfg))
        assert result.status == "succeeded", result.to_dict()
        assert metric(url, "early") == 2 * n
    assert answers == ["early"] * (2 * n)
    with db.read_session() as session:
        final = session.execute(
            select(OutboundMessage.status, func.count()).group_by(OutboundMessage.status)
        ).all()
        assert dict(final) == {"delivered": n}
        kept = session.execute(
            text("SELECT result, count(*) FROM comms_early_statuses GROUP BY result")
        ).all()
        assert dict(kept) == {"ignored": n, "applied": n}  # `sent` says nothing new


def test_an_early_failed_21610_suppresses_once_the_sid_lands(base: str, db: Database) -> None:
    from faithflow_ops.comms.outcomes import Claimed, Outcome
    from faithflow_ops.comms.sending import _mark  # the dispatcher's mark, as a unit

    message_id = sent_message(db, "SMlater")
    with db.session() as session:  # back to the moment before the mark: sending, no sid
        session.execute(
            update(OutboundMessage)
            .where(OutboundMessage.id == message_id)
            .values(status="sending", provider_message_id=None, claimed_by="test-holder")
        )
    form = callback_form("SMlater", "undelivered", ErrorCode="21610")
    early = post(base, form, query=f"m={message_id}")
    again = post(base, form, query=f"m={message_id}")
    assert early.status_code == 200 and early.json()["result"] == "early"
    assert "kept" in early.json()["note"] and "already kept" in again.json()["note"]
    assert message(db, message_id).status == "sending"
    claimed = Claimed(message_id, "sms", TO, None, "body", 1, "test:SMlater")
    with db.session() as session:
        assert _mark(session, NOW, "test-holder", [(claimed, Outcome("sent", "SMlater"))]) == set()
    row = message(db, message_id)
    assert row.status == "failed" and "21610" in (row.last_error or "")
    with db.read_session() as session:
        assert [(s.contact, s.reason) for s in session.scalars(select(Suppression))] == [
            (TO, "stop")
        ]


def test_a_callback_for_another_sid_of_the_message_changes_nothing(base: str, db: Database) -> None:
    message_id = sent_message(db, "SMnow")
    answer = post(base, callback_form("SMbefore", "delivered"), query=f"m={message_id}")
    assert answer.json()["result"] == "stale" and "as SMnow" in answer.json()["note"]
    assert message(db, message_id).status == "sent"
    # an `m` that is no outbox SMS: as before, unmatched
    assert post(base, callback_form("SMx", "delivered"), query="m=999999").json()["result"] == (
        "unmatched"
    )
