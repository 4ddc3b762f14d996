"""`outbox.enqueue_many` on both dialects: the same answers as `enqueue` one message at a time
(duplicates within a batch and across batches, suppressed recipients, scheduled vs queued),
and a bad message refuses the whole batch, naming the message, with nothing inserted."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from sqlalchemy import func, select

from faithflow_ops.comms import templates
from faithflow_ops.comms.outbox import Enqueued, Message, enqueue, enqueue_many
from faithflow_ops.comms.suppression import add_suppression
from faithflow_ops.config import Settings
from faithflow_ops.db import Database
from faithflow_ops.errors import UserError
from faithflow_ops.models import OutboundMessage, Tenant

NOW = dt.datetime(2026, 3, 2, 9, 0, tzinfo=dt.UTC)


def notice(to: str, key: str, channel: str = "email", **kw: Any) -> Message:
    return Message(
        channel=channel,
        recipient=to,
        template="notice",
        variables={"subject": "Notice", "message": f"about {key}"},
        idempotency_key=key,
        **kw,
    )


def rows(db: Database) -> list[tuple[int, str, str, str, str | None]]:
    with db.read_session() as s:
        return [
            (m.id, m.idempotency_key, m.recipient, m.status, m.last_error)
            for m in s.scalars(select(OutboundMessage).order_by(OutboundMessage.id))
        ]


def test_a_batch_is_stored_like_single_enqueues_and_answers_in_order(db: Database) -> None:
    with db.session() as s:
        out = enqueue_many(
            s,
            [
                notice(" Ada@Church.Example ", "k1"),
                notice("+234 801 234 5678", "k2", channel="sms"),
                notice("ben@church.example", "k3", not_before=NOW + dt.timedelta(hours=2)),
                notice("cy@church.example", "k4", not_before=NOW - dt.timedelta(hours=2)),
            ],
            now=NOW,
        )
    stored = rows(db)
    assert [(o.status, o.created) for o in out] == [
        ("queued", True),
        ("queued", True),
        ("scheduled", True),
        ("queued", True),  # a not_before in the past is due now
    ]
    assert [o.id for o in out] == [r[0] for r in stored]
    assert [(r[1], r[2], r[3]) for r in stored] == [
        ("k1", "ada@church.example", "queued"),
        ("k2", "+2348012345678", "queued"),
        ("k3", "ben@church.example", "scheduled"),
        ("k4", "cy@church.example", "queued"),
    ]
    with db.read_session() as s:
        later = s.scalars(select(OutboundMessage).filter_by(idempotency_key="k3")).one()
        past = s.scalars(select(OutboundMessage).filter_by(idempotency_key="k4")).one()
        first = s.scalars(select(OutboundMessage).filter_by(idempotency_key="k1")).one()
    assert later.not_before == later.next_attempt_at == NOW + dt.timedelta(hours=2)
    assert past.not_before == NOW
    assert first.subject == "Notice" and first.body.startswith("about k1")
    assert first.variables == {"subject": "Notice", "message": "about k1"}
    assert first.created_at == NOW and first.attempts == 0


def test_a_key_twice_in_a_batch_and_again_in_a_later_batch_is_one_message(db: Database) -> None:
    with db.session() as s:
        out = enqueue_many(
            s,
            [
                notice("ada@church.example", "same"),
                notice("ada@church.example", "other"),
                notice("ben@church.example", "same"),  # same key, other text: ignored
            ],
            now=NOW,
        )
    assert out[0].created and out[1].created and not out[2].created
    assert out[2] == Enqueued(out[0].id, "queued", False)
    with db.session() as s:
        again = enqueue_many(
            s,
            [notice("cy@church.example", "new"), notice("zed@church.example", "same")],
            now=NOW + dt.timedelta(hours=1),
        )
        single = enqueue(
            s,
            channel="email",
            recipient="zed@church.example",
            template="notice",
            variables={"subject": "s", "message": "m"},
            idempotency_key="other",
            now=NOW,
        )
    assert again[0].created and again[1] == Enqueued(out[0].id, "queued", False)
    assert single == Enqueued(out[1].id, "queued", False)
    assert [(r[1], r[2]) for r in rows(db)] == [
        ("same", "ada@church.example"),
        ("other", "ada@church.example"),
        ("new", "cy@church.example"),
    ]


def test_an_existing_key_answers_its_current_status(db: Database) -> None:
    with db.session() as s:
        (first,) = enqueue_many(s, [notice("ada@church.example", "k")], now=NOW)
        s.execute(
            OutboundMessage.__table__.update()
            .where(OutboundMessage.__table__.c.id == first.id)
            .values(status="sent")
        )
    with db.session() as s:
        out = enqueue_many(
            s, [notice("ben@church.example", "j"), notice("x@y.example", "k")], now=NOW
        )
    assert out[1] == Enqueued(first.id, "sent", False)


def test_suppressed_recipients_get_a_suppressed_row_per_channel_and_expiry(db: Database) -> None:
    with db.session() as s:
        add_suppression(s, channel="email", contact="gone@church.example", reason="bounce", now=NOW)
        add_suppression(s, channel="sms", contact="+2348000000001", reason="stop", now=NOW)
        add_suppression(
            s,
            channel="email",
            contact="back@church.example",
            reason="complaint",
            now=NOW,
            until=NOW - dt.timedelta(minutes=1),  # expired: sent again
        )
    with db.session() as s:
        out = enqueue_many(
            s,
            [
                notice("GONE@church.example", "a"),
                notice("+2348000000001", "b", channel="sms"),
                notice("+2348000000001", "c", channel="whatsapp"),  # not suppressed there
                notice("back@church.example", "d"),
                notice("gone@church.example", "e", not_before=NOW + dt.timedelta(days=1)),
            ],
            now=NOW,
            # an approved WhatsApp template, or "c" would go by SMS (and be suppressed there)
            settings=Settings(
                database_url="sqlite://",
                twilio_content_sids={"notice:en": "HX" + "0" * 32},
            ),
        )
    assert [o.status for o in out] == ["suppressed", "suppressed", "queued", "queued", "suppressed"]
    errors = {r[1]: r[4] for r in rows(db)}
    assert errors["a"] == "suppressed: bounce" and errors["b"] == "suppressed: stop"
    assert errors["c"] is None and errors["d"] is None


@pytest.mark.parametrize(
    ("bad", "said"),
    [
        (notice("not-an-address", "bad"), "'not-an-address' is not an email address"),
        (notice("12345", "bad", channel="sms"), "is not a phone number"),
        (
            Message("email", "a@b.example", "no_such_template", {}, "bad"),
            "template 'no_such_template' has no email version",
        ),
        (
            Message("email", "a@b.example", "notice", {"subject": "s"}, "bad"),
            "needs the variable 'message'",
        ),
    ],
)
def test_a_bad_message_refuses_the_batch_naming_it_and_inserts_nothing(
    db: Database, bad: Message, said: str
) -> None:
    with db.session() as s:
        enqueue_many(s, [notice("old@church.example", "old")], now=NOW)
    with pytest.raises(UserError) as err, db.session() as s:
        enqueue_many(
            s, [notice("ada@church.example", "k1"), bad, notice("b@c.example", "k3")], now=NOW
        )
    message = str(err.value)
    assert message.startswith("message 2 of 3 (idempotency key 'bad'): ")
    assert said in message and "nothing of the batch was queued" in message
    assert [r[1] for r in rows(db)] == ["old"]
    # a batch of one says it as enqueue always did
    with pytest.raises(UserError) as one, db.session() as s:
        enqueue_many(s, [bad], now=NOW)
    assert not str(one.value).startswith("message ") and said in str(one.value)


def test_an_empty_batch_does_nothing(db: Database) -> None:
    with db.session() as s:
        assert enqueue_many(s, [], now=NOW) == []
    assert rows(db) == []


def test_tenant_messages_are_rendered_in_the_tenants_locale_in_a_batch(db: Database) -> None:
    with db.session() as s:
        fr = Tenant(slug="abidjan", name="Abidjan", locale="fr_CI", timezone="Africa/Abidjan")
        ng = Tenant(slug="lagos", name="Lagos", locale="en_NG", timezone="Africa/Lagos")
        s.add_all([fr, ng])
        s.flush()
        paid = {"amount_minor": 2500000, "currency": "XOF", "paid_at": "2026-03-01T23:30:00Z"}
        out = enqueue_many(
            s,
            [
                Message("sms", "+2250700000001", "payment_received", paid, "fr", tenant=fr),
                Message(
                    "sms",
                    "+2348000000002",
                    "payment_received",
                    {**paid, "currency": "NGN", "amount_minor": 1500000},
                    "ng",
                    tenant=ng,
                ),
            ],
            now=NOW,
        )
        fr_id, ng_id = fr.id, ng.id
    with db.read_session() as s:
        bodies = {
            m.idempotency_key: (m.tenant_id, m.locale, m.body, m.variables)
            for m in s.scalars(
                select(OutboundMessage).where(OutboundMessage.id.in_([o.id for o in out]))
            )
        }
        assert s.scalar(select(func.count()).select_from(OutboundMessage)) == 2
    assert bodies["fr"][0] == fr_id and bodies["fr"][1] == "fr_CI"
    assert "XOF 2 500 000" in bodies["fr"][2]  # plain spaces: still GSM-7
    assert templates.sms_segments(bodies["fr"][2]) == 1
    assert bodies["fr"][3]["tenant_name"] == "Abidjan"
    assert bodies["ng"][0] == ng_id and "NGN 15,000.00" in bodies["ng"][2]


@pytest.mark.parametrize(
    ("locale", "minor", "currency", "expected"),
    [
        ("fr_FR", 123450, "EUR", "EUR 1 234,50"),  # Babel groups with U+202F
        ("fr_CI", 25000000, "XOF", "XOF 25 000 000"),
        ("en_NG", 1500000, "NGN", "NGN 15,000.00"),
    ],
)
def test_sms_money_has_plain_spaces_so_a_french_sms_stays_gsm7(
    locale: str, minor: int, currency: str, expected: str
) -> None:
    assert templates.money(minor, currency, templates.babel_locale(locale), code=True) == expected
    body = templates.render(
        "payment_received",
        "sms",
        {
            "amount_minor": minor,
            "currency": currency,
            "paid_at": "2026-03-01T10:00:00Z",
            "tenant_name": "Grace",
        },
        locale=locale,
        timezone="Europe/Paris",
    ).body
    assert expected in body and templates.sms_segments(body) == 1, body
    # e-mail keeps the locale's own typography (symbol, narrow no-break spaces)
    assert templates.money(123450, "EUR", templates.babel_locale("fr_FR")) == "1\u202f234,50\xa0€"


@pytest.mark.parametrize(
    "source",
    ["a $a b ${b}c $$ {x} }{ $$name {{", "$a$b${name}x", "cost: $$5 {0} {}", "$ bad", "${a", "$1"],
)
def test_filling_a_template_gives_what_string_template_gives(source: str) -> None:
    import string

    template = string.Template(source)
    values = {k: f"<{k}> {{}} $x" for k in ("a", "b", "name", "x")}
    try:
        want: object = template.substitute(values)
    except ValueError:
        want = ValueError
    try:
        got: object = templates.fill_template(template, values)
    except ValueError:
        got = ValueError
    assert got == want
    with pytest.raises(KeyError) as missing:
        templates.fill_template(string.Template("x $b y"), {"a": "1"})
    assert missing.value.args[0] == "b"


def test_a_malformed_dollar_in_a_template_is_a_user_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import string

    broken = templates.Template("broken", "sms", None, string.Template("pay $ now"))
    monkeypatch.setattr(templates, "load", lambda name, channel: broken)
    with pytest.raises(UserError, match=r"broken\.sms\.txt is malformed"):
        templates.render("broken", "sms", {})
