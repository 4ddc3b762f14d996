"""STOP and START replies through Twilio's incoming message webhook (`POST
/webhooks/twilio/inbound`, receiver/twilio.py → comms/optout.py) over real HTTP, on SQLite and
Postgres, and what `dunning prefs show` says about a suppressed number (issue 21 point 6).

The request is the one Twilio documents in "Twilio's request to your incoming message Webhook
URL" (https://www.twilio.com/docs/messaging/guides/webhook-request): form-encoded `MessageSid`,
`AccountSid`, `From`, `To`, `Body`, `NumMedia`, …, plus `OptOutType` (STOP / START / HELP) when
Advanced Opt-Out is on (https://www.twilio.com/docs/messaging/tutorials/advanced-opt-out);
signed with X-Twilio-Signature like the status callbacks (`sign`, written from Twilio's
documented algorithm, not with the product's code)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest
from fakes.twilio import SID, TOKEN
from helpers import running
from sqlalchemy import select
from test_twilio_status import PUBLIC, callback_form, sent_message, settings_for, sign

from faithflow_ops.comms.optout import keyword
from faithflow_ops.comms.suppression import add_suppression
from faithflow_ops.db import Database
from faithflow_ops.dunning.prefs import preferences_doc
from faithflow_ops.models import AuditLog, Suppression
from faithflow_ops.tenancy.tenants import add_tenant
from receiver.app import create_app

PATH = "/webhooks/twilio/inbound"
URL = PUBLIC + PATH
PHONE = "+2348031234567"
OUR_NUMBER = "+15005550006"
NOW = dt.datetime(2026, 3, 1, 9, 0, tzinfo=dt.UTC)


def inbound_form(body: str, *, from_: str = PHONE, **extra: str) -> dict[str, str]:
    """An incoming SMS as Twilio posts it."""
    form = {
        "ToCountry": "US",
        "SmsMessageSid": "SM" + "b" * 32,
        "NumMedia": "0",
        "SmsSid": "SM" + "b" * 32,
        "SmsStatus": "received",
        "Body": body,
        "To": OUR_NUMBER,
        "NumSegments": "1",
        "MessageSid": "SM" + "b" * 32,
        "AccountSid": SID,
        "From": from_,
        "FromCountry": "NG",
        "ApiVersion": "2010-04-01",
    }
    form.update(extra)
    return form


def post(base: str, form: dict[str, str], *, signature: str | None = None) -> httpx.Response:
    headers = {"Content-Type": "application/x-www-form-urlencoded"}
    sig = sign(TOKEN, URL, form) if signature is None else signature
    if sig:
        headers["X-Twilio-Signature"] = sig
    return httpx.post(base + PATH, content=urlencode(form).encode(), headers=headers, timeout=30)


@pytest.fixture
def base(db: Database, db_url: str) -> Iterator[str]:
    with running(create_app(settings_for(db_url), db=db)) as url:
        yield url


@pytest.fixture
def church(db: Database) -> str:
    with db.session() as s:
        add_tenant(
            s,
            slug="grace-lagos",
            actor="test",
            name="Grace Assembly Lagos",
            timezone="Africa/Lagos",
            currency="NGN",
            email="finance@grace.example",
            phone=PHONE,
        )
    return "grace-lagos"


def suppressions(db: Database) -> list[tuple[str, str, str]]:
    with db.read_session() as s:
        return [(x.channel, x.contact, x.reason) for x in s.scalars(select(Suppression))]


def prefs(db: Database, slug: str, now: dt.datetime = NOW) -> dict[str, Any]:
    with db.read_session() as s:
        return preferences_doc(s, slug, now=now)


# --- keywords ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "opt_out_type", "kind"),
    [
        ("STOP", None, "stop"),
        ("stop", None, "stop"),
        (" Stop. ", None, "stop"),
        ("STOPALL", None, "stop"),
        ("unsubscribe", None, "stop"),
        ("Cancel", None, "stop"),
        ("END", None, "stop"),
        ("quit", None, "stop"),
        ("START", None, "start"),
        ("yes", None, "start"),
        ("UNSTOP", None, "start"),
        ("HELP", None, "help"),
        ("please stop texting me", None, None),  # Twilio matches the whole body only
        ("I paid yesterday", None, None),
        ("ARRET", "STOP", "stop"),  # a keyword Twilio was set up to treat as STOP
        ("OUI", "START", "start"),
    ],
)
def test_opt_out_keywords_are_twilios(body: str, opt_out_type: str | None, kind: str) -> None:
    assert keyword(body, opt_out_type)[0] == kind


# --- the webhook -------------------------------------------------------------------------------


def test_stop_suppresses_the_number_and_prefs_show_it_start_lifts_it(
    base: str, db: Database, church: str
) -> None:
    assert prefs(db, church)["blocked"]["sms"] is None
    answer = post(base, inbound_form("STOP"))
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("application/xml")
    assert "<Response></Response>" in answer.text  # Twilio sends its own STOP confirmation
    assert suppressions(db) == [("sms", PHONE, "stop")]
    doc = prefs(db, church)
    assert doc["blocked"]["sms"].startswith("suppressed: the number replied STOP (since ")
    assert "a START reply lifts it" in doc["blocked"]["sms"]
    assert doc["blocked"]["email"] is None
    assert set(doc["suppressed"]) == {"sms"}
    again = post(base, inbound_form("stop"))
    assert again.status_code == 200 and suppressions(db) == [("sms", PHONE, "stop")]

    assert post(base, inbound_form("START")).status_code == 200
    assert suppressions(db) == []
    assert prefs(db, church)["blocked"]["sms"] is None
    with db.read_session() as s:
        actions = [a.action for a in s.scalars(select(AuditLog).order_by(AuditLog.id))]
    assert actions[-2:] == ["comms.suppress", "comms.unsuppress"]


def test_a_21610_callback_shows_in_prefs_as_the_issue_reported(
    base: str, db: Database, church: str
) -> None:
    # The issue: after Twilio's 21610 the suppression existed but prefs still said SMS allowed.
    sent_message(db, "SM21610", to=PHONE)
    callback = callback_form("SM21610", "undelivered", ErrorCode="21610", To=PHONE)
    headers = {
        "Content-Type": "application/x-www-form-urlencoded",
        "X-Twilio-Signature": sign(TOKEN, PUBLIC + "/webhooks/twilio/status", callback),
    }
    status = httpx.post(
        base + "/webhooks/twilio/status", content=urlencode(callback), headers=headers
    )
    assert status.json()["result"] == "applied"
    assert prefs(db, church)["blocked"]["sms"].startswith("suppressed: the number replied STOP")
    # ... and the number's START lifts it
    post(base, inbound_form("UNSTOP"))
    assert prefs(db, church)["blocked"]["sms"] is None


def test_whatsapp_stop_suppresses_whatsapp_only(base: str, db: Database) -> None:
    post(base, inbound_form("STOP", from_=f"whatsapp:{PHONE}", To=f"whatsapp:{OUR_NUMBER}"))
    assert suppressions(db) == [("whatsapp", PHONE, "stop")]


def test_start_never_lifts_a_bounce_or_an_operators_entry(base: str, db: Database) -> None:
    with db.session() as s:
        add_suppression(s, channel="sms", contact=PHONE, reason="complaint", now=NOW)
    post(base, inbound_form("START"))
    assert suppressions(db) == [("sms", PHONE, "complaint")]


def test_a_soft_suppression_ending_later_is_shown_with_its_end(db: Database, church: str) -> None:
    with db.session() as s:
        add_suppression(
            s,
            channel="email",
            contact="finance@grace.example",
            reason="bounce",
            now=NOW,
            until=NOW + dt.timedelta(days=7),
        )
    assert "until 2026-03-08" in prefs(db, church)["blocked"]["email"]
    assert prefs(db, church, NOW + dt.timedelta(days=8))["blocked"]["email"] is None


def test_help_other_text_and_short_codes_change_nothing(base: str, db: Database) -> None:
    for form in (
        inbound_form("HELP"),
        inbound_form("I will pay on Friday"),
        inbound_form("STOP", from_="40404"),  # a short code: no number to suppress
    ):
        answer = post(base, form)
        assert answer.status_code == 200, answer.text
    assert suppressions(db) == []


def test_refusals_change_nothing(base: str, db: Database, db_url: str) -> None:
    form = inbound_form("STOP")
    bad = {
        "wrong token": post(base, form, signature=sign("nope", URL, form)),
        "missing": post(base, form, signature=""),
        "for the status url": post(
            base, form, signature=sign(TOKEN, PUBLIC + "/webhooks/twilio/status", form)
        ),
        "another account": post(base, inbound_form("STOP", AccountSid="AC" + "9" * 32)),
        "no From": post(base, {k: v for k, v in form.items() if k != "From"}),
    }
    for name, answer in bad.items():
        assert answer.status_code == 400, name
    assert bad["no From"].json()["error"] == "not an incoming message: no From"
    with running(create_app(settings_for(db_url, twilio_auth_token=None), db=db)) as url:
        off = post(url, form)
        assert off.status_code == 503
        assert "TWILIO_AUTH_TOKEN is not set" in off.json()["error"]
    assert suppressions(db) == []
