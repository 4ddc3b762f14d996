"""Templates: rendered in the tenant's locale, currency and time zone; every SMS template fits
one GSM-7 segment with typical values; and the Twilio client's classification of answers."""

from __future__ import annotations

import string
from importlib import resources

import httpx
import pytest

from faithflow_ops.comms import templates
from faithflow_ops.comms.dispatch import mask
from faithflow_ops.config import Settings
from faithflow_ops.errors import ConfigError
from faithflow_ops.providers.twilio import TwilioClient, TwilioError

PAID = {"amount_minor": 1500000, "currency": "NGN", "paid_at": "2026-03-01T23:30:00Z"}


@pytest.mark.parametrize(
    ("locale", "timezone", "variables", "expected"),
    [
        (
            "en_NG",
            "Africa/Lagos",
            PAID,
            "payment of ₦15,000.00 on 2 Mar 2026 at 00:30",
        ),
        ("en", "America/New_York", PAID, "on Mar 1, 2026 at 6:30\u202fPM"),
        (
            "de_DE",
            "Europe/Berlin",
            {**PAID, "amount_minor": 123450, "currency": "EUR"},
            "payment of 1.234,50\xa0€ on 02.03.2026 at 00:30",
        ),
        (
            "fr_CI",
            "Africa/Abidjan",
            {**PAID, "amount_minor": 250000, "currency": "XOF"},
            "250\u202f000\xa0F\u202fCFA",
        ),
    ],
)
def test_the_email_is_written_in_the_tenants_locale_currency_and_time_zone(
    locale: str, timezone: str, variables: dict[str, object], expected: str
) -> None:
    rendered = templates.render(
        "payment_received",
        "email",
        {**variables, "tenant_name": "Grace"},
        locale=locale,
        timezone=timezone,
    )
    assert expected in rendered.body.replace("\n", " ")
    assert rendered.subject is not None and rendered.subject.startswith("Payment received: ")


def test_sms_money_uses_the_currency_code_so_it_stays_gsm7() -> None:
    rendered = templates.render(
        "payment_received",
        "sms",
        {**PAID, "tenant_name": "Grace"},
        locale="en_NG",
        timezone="Africa/Lagos",
    )
    assert "NGN 15,000.00" in rendered.body
    assert templates.sms_segments(rendered.body) == 1


def _typical(name: str) -> str:
    """A typical, longish value for a placeholder, by what its name says it is."""
    if name.endswith("_date"):
        return "28 Sept 2026"
    if name.endswith("_time"):
        return "11:45 PM"
    if "url" in name or "link" in name:
        return "https://ffl.app/p/Ab12Cd34"
    if name in {"amount", "total", "balance"} or name.endswith("_amount"):
        return "NGN 150,000.00"
    if name.startswith("tenant"):
        return "Grace Chapel Lagos"
    if name == "message":
        return "Choir practice moves to 6pm on Saturday."
    return "Sample text"


def _sms_templates() -> list[str]:
    folder = resources.files("faithflow_ops.comms").joinpath("templates")
    return sorted(e.name for e in folder.iterdir() if e.name.endswith(".sms.txt"))


@pytest.mark.parametrize("filename", _sms_templates())
def test_every_sms_template_fits_one_gsm7_segment_with_typical_values(filename: str) -> None:
    name = filename.split(".")[0]
    source = templates.load(name, "sms").body
    placeholders = {
        m.group("named") or m.group("braced")
        for m in string.Template.pattern.finditer(source.template)
        if m.group("named") or m.group("braced")
    }
    text = source.substitute({p: _typical(p) for p in placeholders}).strip()
    assert templates.sms_segments(text) == 1, f"{filename}: {len(text)} chars: {text!r}"


def test_segments_are_counted_as_carriers_do() -> None:
    assert templates.sms_segments("a" * 160) == 1
    assert templates.sms_segments("a" * 161) == 2
    assert templates.sms_segments("€" * 80) == 1  # extension characters take two septets
    assert templates.sms_segments("₦" + "a" * 69) == 1  # not GSM-7: UCS-2, 70 per segment
    assert templates.sms_segments("₦" + "a" * 70) == 2


def test_masking() -> None:
    assert mask("email", "treasurer@church.org") == "t***@church.org"
    assert mask("sms", "+2348012345678") == "+234******5678"


# --- the Twilio client's reading of answers (httpx MockTransport: no socket needed) --------


def _client(status: int, body: object, headers: dict[str, str] | None = None) -> TwilioClient:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(status, json=body, headers=headers or {})

    cfg = Settings(
        database_url="sqlite://",
        twilio_account_sid="AC1",
        twilio_auth_token="t",
        twilio_from="+15005550006",
        twilio_whatsapp_from="+14155238886",
    )
    return TwilioClient(cfg, transport=httpx.MockTransport(handler))


@pytest.mark.parametrize(
    ("status", "code", "headers", "kind", "retry_after"),
    [
        (400, 21211, {}, "permanent", None),
        (400, 21610, {}, "permanent", None),
        (400, 21606, {}, "config", None),
        (401, 20003, {}, "config", None),
        (429, 20429, {"Retry-After": "30"}, "transient", 30.0),
        (500, 20500, {}, "transient", None),
        (503, None, {}, "transient", None),
    ],
)
def test_twilio_answers_are_classified(
    status: int, code: int | None, headers: dict[str, str], kind: str, retry_after: float | None
) -> None:
    body = {"code": code, "message": "no", "status": status}
    with _client(status, body, headers) as client, pytest.raises(TwilioError) as caught:
        client.send("sms", "+2348012345678", "hi")
    exc = caught.value
    assert {"permanent": exc.permanent, "config": exc.config}.get(
        kind, not (exc.permanent or exc.config)
    )
    assert exc.retry_after == retry_after
    assert exc.suppress == ("stop" if code == 21610 else None)


def test_twilio_settings_are_named_when_missing() -> None:
    with pytest.raises(ConfigError, match="TWILIO_ACCOUNT_SID is not set"):
        TwilioClient(Settings(database_url="sqlite://"))
    with _client(201, {"sid": "SM1", "status": "queued"}) as client:
        client.settings = Settings(
            database_url="sqlite://", twilio_account_sid="AC1", twilio_auth_token="t"
        )
        with pytest.raises(ConfigError, match="TWILIO_WHATSAPP_FROM is not set"):
            client.send("whatsapp", "+2348012345678", "hi")


def test_a_twilio_timeout_is_transient() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("slow", request=request)

    cfg = Settings(
        database_url="sqlite://",
        twilio_account_sid="AC1",
        twilio_auth_token="t",
        twilio_from="+15005550006",
    )
    transport = httpx.MockTransport(handler)
    with TwilioClient(cfg, transport=transport) as client, pytest.raises(TwilioError) as caught:
        client.send("sms", "+2348012345678", "hi")
    assert caught.value.timed_out and not caught.value.permanent
