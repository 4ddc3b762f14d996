"""A dunning step on WhatsApp (issue 21, point 2): it goes out as the approved template when
the church opted in and the template is approved in its locale; otherwise by SMS, and the
preview and the message say why. Twilio's rule: a business-initiated WhatsApp message outside
the 24-hour window must be an approved template (error 63016;
https://www.twilio.com/docs/whatsapp/tutorial/send-whatsapp-notification-messages-templates)."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import select

from faithflow_ops.billing.lifecycle import set_subscription_status
from faithflow_ops.config import Settings
from faithflow_ops.db import Database
from faithflow_ops.dunning.policy import parse_policy, save_policy
from faithflow_ops.dunning.prefs import save_preferences
from faithflow_ops.jobs import registry
from faithflow_ops.jobs.base import Action, JobContext
from faithflow_ops.jobs.runner import RunResult, run_job
from faithflow_ops.models import OutboundMessage, Subscription, SubscriptionPlan, Tenant

NOW = dt.datetime(2026, 3, 2, 9, 0, tzinfo=dt.UTC)  # Monday 10:00 in Lagos
SID = "HX" + "5" * 32
POLICY = """\
[[step]]
key = "day0"
day = 0
channels = ["email", "whatsapp"]
template = "dunning_reminder"
"""


def church(db: Database, *, locale: str = "en", email: str | None = "t@grace.example") -> None:
    with db.session() as s:
        save_policy(s, parse_policy(POLICY), source=POLICY, actor="test")
        plan = SubscriptionPlan(
            code="growth", name="Growth", amount_minor=1500000, currency="NGN", interval="month"
        )
        tenant = Tenant(
            slug="grace",
            name="Ọlọ́run Ni Ọba Parish, Ìbàdàn",
            timezone="Africa/Lagos",
            currency="NGN",
            locale=locale,
            billing_email=email,
            billing_phone="+2348012345678",
        )
        s.add_all([plan, tenant])
        s.flush()
        sub = Subscription(
            tenant_id=tenant.id,
            plan_id=plan.id,
            provider="paystack",
            provider_subscription_id="SUB_grace",
            status="active",
        )
        s.add(sub)
        s.flush()
        set_subscription_status(s, sub, "past_due", NOW - dt.timedelta(hours=1), "test")


def opt_in(db: Database) -> None:
    with db.session() as s:
        save_preferences(
            s,
            "grace",
            actor="test",
            now=NOW - dt.timedelta(days=3),
            whatsapp="+2348099999999",
            whatsapp_consent="signed form, 2026-02-27",
        )


def run(db: Database, *, dry_run: bool = False, **env: str) -> RunResult:
    cfg = Settings.from_env({"TWILIO_CONTENT_SIDS": f"dunning_reminder:en={SID}", **env})
    ctx = JobContext(now=NOW, dry_run=dry_run, trigger="cli", settings=cfg, actor="test:ops")
    result = run_job(db, registry.get("dunning"), ctx)
    assert result.status == "succeeded", result.error
    return result


def send_step(result: RunResult) -> Action:
    [send] = [a.action for a in result.actions if a.action.kind == "send_step"]
    return send


def messages(db: Database) -> dict[str, OutboundMessage]:
    with db.read_session() as s:
        return {m.channel: m for m in s.scalars(select(OutboundMessage))}


def test_an_opted_in_church_gets_the_approved_whatsapp_template(db: Database) -> None:
    church(db)
    opt_in(db)
    send = send_step(run(db))
    assert send.data["channels"] == ["email", "whatsapp"] and send.data["fallback"] == {}
    sent = messages(db)
    assert sent["whatsapp"].recipient == "+2348099999999"
    assert sent["whatsapp"].content_sid == SID
    assert sent["whatsapp"].content_variables is not None
    assert sent["whatsapp"].content_variables["2"] == "Ọlọ́run Ni Ọba Parish, Ìbàdàn"
    assert "sms" not in sent


def _assert_sms_instead(db: Database, why: str) -> None:
    preview = send_step(run(db, dry_run=True))
    assert preview.data["channels"] == ["email", "sms"]
    assert preview.data["blocked"] == {"whatsapp": why}
    assert preview.data["fallback"] == {"sms": f"instead of whatsapp: {why}"}
    assert f"falling back: sms: instead of whatsapp: {why}" in preview.reason
    assert messages(db) == {}  # a preview sends nothing
    run(db)
    sent = messages(db)
    assert set(sent) == {"email", "sms"}
    sms: Any = sent["sms"]
    assert sms.recipient == "+2348012345678"  # the phone, not a WhatsApp number
    assert sms.note == f"sms instead of whatsapp: {why}"
    # the Yoruba name folded to GSM-7: one segment, not three UCS-2 ones
    assert "Olorun Ni Oba Parish, Ibadan" in sms.body
    assert (sms.sms_encoding, sms.sms_segments) == ("GSM-7", 1)


def test_without_an_opt_in_the_whatsapp_step_goes_by_sms(db: Database) -> None:
    church(db)
    _assert_sms_instead(db, "no whatsapp number (the phone is not used without an opt-in)")


def test_without_an_approved_template_in_its_language_it_goes_by_sms(db: Database) -> None:
    church(db, locale="fr")
    opt_in(db)
    _assert_sms_instead(
        db,
        "no approved WhatsApp template for dunning_reminder:fr in TWILIO_CONTENT_SIDS",
    )


def test_a_whatsapp_only_church_without_email_still_gets_the_sms(db: Database) -> None:
    church(db, email=None)
    send = send_step(run(db))
    assert send.data["channels"] == ["sms"]
    assert set(messages(db)) == {"sms"}
