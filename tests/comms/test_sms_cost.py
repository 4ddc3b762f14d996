"""What an SMS costs (issue 21, point 3): segments counted at enqueue, a dunning SMS kept to
one GSM-7 segment.

Twilio's rules (https://www.twilio.com/docs/glossary/what-sms-character-limit,
https://www.twilio.com/docs/glossary/what-is-gsm-7-character-encoding): GSM-7 carries 160
septets in one segment and 153 per segment beyond (the concatenation header), the extension
table (`^ { } [ ] ~ \\ | €`) costs two septets each and an escape pair is never split; any
other character makes the whole text UCS-2, 70 code units in one segment and 67 beyond, a
character outside the BMP (most emoji) costing two units.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from faithflow_ops.comms import sms, templates
from faithflow_ops.comms.outbox import enqueue
from faithflow_ops.db import Database
from faithflow_ops.errors import UserError
from faithflow_ops.models import OutboundMessage, Tenant
from faithflow_ops.tenancy.tenants import add_tenant

NOW = dt.datetime(2026, 3, 2, 10, 0, tzinfo=dt.UTC)
YORUBA = "Ọlọ́run Ni Ọba Parish, Ìbàdàn"
EXTENSION = "{}[]~\\^€|"


# --- counting -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "encoding", "units", "segments"),
    [
        ("", "GSM-7", 0, 1),
        ("a" * 160, "GSM-7", 160, 1),
        ("a" * 161, "GSM-7", 161, 2),
        ("a" * 306, "GSM-7", 306, 2),
        ("a" * 307, "GSM-7", 307, 3),
        (EXTENSION, "GSM-7", 18, 1),  # each extension character is escape + character
        ("€" * 80, "GSM-7", 160, 1),
        ("€" * 81, "GSM-7", 162, 2),
        # 152 septets, then an escape pair that does not fit the 153 left: it opens segment 2
        ("a" * 152 + "€" + "a" * 152, "GSM-7", 306, 3),
        ("Église à Noël", "UCS-2", 13, 1),  # ë is not GSM-7 (é, à are)
        ("₦" + "a" * 69, "UCS-2", 70, 1),
        ("₦" + "a" * 70, "UCS-2", 71, 2),
        ("🙏" * 35, "UCS-2", 70, 1),  # outside the BMP: two units each
        ("🙏" * 36, "UCS-2", 72, 2),
        # a surrogate pair is not split either: 66 units, then 2 that do not fit the 67
        ("ọ" * 66 + "🙏" + "ọ" * 66, "UCS-2", 134, 3),
        (YORUBA, "UCS-2", 29, 1),
    ],
)
def test_segments_follow_gsm7_and_ucs2_limits(
    text: str, encoding: str, units: int, segments: int
) -> None:
    assert sms.cost(text) == sms.Cost(encoding, units, segments)
    assert templates.sms_segments(text) == segments


@given(st.text(alphabet=sorted(sms.GSM7_BASIC | sms.GSM7_EXTENSION), max_size=700))
def test_gsm7_segments_hold_every_septet_and_never_more_than_153(text: str) -> None:
    cost = sms.cost(text)
    assert cost.encoding == "GSM-7"
    assert cost.segments * 153 >= cost.units or cost.units <= 160
    assert cost.segments >= -(-cost.units // 153) if cost.units > 160 else cost.segments == 1


# --- folding to GSM-7 -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "folded"),
    [
        (YORUBA, "Olorun Ni Oba Parish, Ibadan"),  # tone marks and dots below
        ("Ṣọ́ọ̀ṣì Kírísítì, Ọ̀yọ́", "Soosi Kirisiti, Oyo"),
        ("Ƙungiyar Ɗariƙa ta Ɓauchi", "Kungiyar Darika ta Bauchi"),  # Hausa hooked letters
        ("Ụlọ Ụka Chineke, Ọnịtsha", "Ulo Uka Chineke, Onitsha"),  # Igbo
        ("Ɔdɔ Nyame Asɔre, Kumasi", "Odo Nyame Asore, Kumasi"),  # Twi open vowels
        ("Ɛbɛnɛzɛr Presby", "Ebenezer Presby"),
        ("Grace 🙏 Chapel ✝️", "Grace Chapel"),  # emoji dropped
        ("St. Mary’s – “Accra”", 'St. Mary\'s - "Accra"'),  # typography
        ("Église Évangélique", "Église Évangélique"),  # GSM-7 already: kept
        ("Youth {Choir} [A] ~ \\ ^ € |", "Youth {Choir} [A] ~ \\ ^ € |"),  # extension kept
        ("ቅዱስ ጊዮርጊስ", ""),  # nothing GSM-7 can write: the slug stands in (outbox)
    ],
)
def test_a_name_is_folded_to_gsm7_word_by_word(name: str, folded: str) -> None:
    assert sms.fold(name) == folded
    assert sms.is_gsm7(sms.fold(name))


# --- at enqueue -----------------------------------------------------------------------------------


def church(db: Database, name: str = YORUBA, **kw: Any) -> int:
    with db.session() as s:
        return add_tenant(
            s,
            slug="oba",
            name=name,
            actor="test",
            timezone="Africa/Lagos",
            currency="NGN",
            phone="+2348031234567",
            **kw,
        ).id


def queue(
    db: Database,
    tenant_id: int,
    template: str = "dunning_reminder",
    category: str = "dunning",
    **variables: Any,
) -> OutboundMessage:
    values = {"amount_minor": 1_500_000, "currency": "NGN"} | variables
    with db.session() as s:
        tenant = s.get(Tenant, tenant_id)
        queued = enqueue(
            s,
            channel="sms",
            recipient="+2348031234567",
            template=template,
            variables=values,
            idempotency_key=f"{template}:{category}:{sorted(variables.items())}",
            now=NOW,
            tenant=tenant,
            category=category,
        )
    with db.read_session() as s:
        row = s.get(OutboundMessage, queued.id)
        assert row is not None
        return row


def test_the_yoruba_name_keeps_the_dunning_sms_to_one_gsm7_segment(db: Database) -> None:
    tenant_id = church(db)
    # what it cost before: the name as it is turns the whole text into UCS-2
    raw = templates.render(
        "dunning_reminder",
        "sms",
        {"amount_minor": 1_500_000, "currency": "NGN", "tenant_name": YORUBA},
    ).body
    assert sms.cost(raw) == sms.Cost("UCS-2", 143, 3)  # issue 21: "3 UCS-2 segments"

    row = queue(db, tenant_id)
    assert row.body == (
        "FaithFlow reminder: NGN 15,000.00 for Olorun Ni Oba Parish, Ibadan is still unpaid. "
        "Please pay in Settings > Billing. Already paid? Thank you!"
    )
    assert (row.sms_encoding, row.sms_segments, row.note) == ("GSM-7", 1, None)
    assert row.variables["tenant_name"] == "Olorun Ni Oba Parish, Ibadan"  # what was sent


def test_a_short_name_the_tenant_set_is_used_in_sms(db: Database, cli: Any) -> None:
    tenant_id = church(db)
    assert cli("tenants", "set", "oba", "--sms-name", "Oba Parish  Ibadan").exit_code == 0
    row = queue(db, tenant_id)
    assert "for Oba Parish Ibadan is still unpaid" in row.body
    assert (row.sms_encoding, row.sms_segments) == ("GSM-7", 1)
    assert cli("tenants", "set", "oba", "--sms-name", "").exit_code == 0  # cleared
    again = queue(db, tenant_id, days_past_due=1)
    assert "Olorun Ni Oba Parish, Ibadan" in again.body


@pytest.mark.parametrize(
    ("value", "said"),
    [
        ("Ọba Parish", "UCS-2 (70 characters a segment instead of 160): use GSM-7 letters, "
         "e.g. 'Oba Parish'"),
        ("Grace Assembly of the Redeemed", None),  # exactly 30: accepted
        ("Grace Assembly of the Redeemed!", "takes 31 characters in an SMS; at most 30"),
        ("{Grace} [Assembly] Redeemed", "takes 31 characters"),  # { } [ ] are two each
    ],
)  # fmt: skip
def test_a_short_name_must_be_gsm7_and_fit(
    db: Database, cli: Any, value: str, said: str | None
) -> None:
    church(db)
    result = cli("tenants", "set", "oba", "--sms-name", value)
    if said is None:
        assert result.exit_code == 0, result.stderr
        return
    assert result.exit_code == 2 and said in result.stderr
    assert "Traceback" not in result.stderr
    with db.read_session() as s:
        tenant = s.get(Tenant, 1)
        assert tenant is not None and tenant.sms_name is None  # nothing written


def test_a_dunning_sms_that_cannot_fit_goes_out_with_a_warning(db: Database) -> None:
    tenant_id = church(
        db, name="The Redeemed Christian Church of God, Living Waters Parish, Ibadan"
    )
    row = queue(db, tenant_id)
    assert row.status == "queued"  # the church is still told
    assert (row.sms_encoding, row.sms_segments) == ("GSM-7", 2)
    assert row.note is not None
    assert "2 GSM-7 segment(s)" in row.note and "does not fit one SMS" in row.note
    assert "faithflow tenants set oba --sms-name" in row.note


def test_a_dunning_sms_is_folded_when_a_value_is_not_gsm7(db: Database) -> None:
    tenant_id = church(db, name="Grace")
    row = queue(
        db,
        tenant_id,
        template="dunning_final_notice",
        suspend_at="2026-03-12T00:00:00+00:00",
    )
    assert (row.sms_encoding, row.sms_segments) == ("GSM-7", 1)
    with db.session() as s:
        tenant = s.get(Tenant, tenant_id)
        assert tenant is not None
        tenant.locale = "yo"  # dates written in Yoruba, with tone marks
    row = queue(
        db,
        tenant_id,
        template="dunning_final_notice",
        suspend_at="2026-03-13T00:00:00+00:00",
    )
    assert (row.sms_encoding, row.sms_segments) == ("GSM-7", 1), row.body


def test_other_sms_are_counted_not_rewritten(db: Database) -> None:
    tenant_id = church(db)
    row = queue(db, tenant_id, template="notice", category="general", message="Ẹ ku ọdun 🙏")
    assert row.body == "FaithFlow: Ẹ ku ọdun 🙏"  # an operator's words are left as typed
    assert (row.sms_encoding, row.sms_segments, row.note) == ("UCS-2", 1, None)


# --- template validation --------------------------------------------------------------------------

LOCALES = ("en", "en_NG", "fr", "fr_CI", "pt_BR", "sw", "yo", "ha", "ig", "ak", "ee")


@pytest.mark.parametrize("name", [n for n in templates.names() if n.startswith("dunning_")])
def test_every_dunning_sms_template_leaves_room_for_a_30_character_name(name: str) -> None:
    templates.check_sms_fit(name, LOCALES)
    assert min(templates.sms_room(name, locale) for locale in LOCALES) >= 30


def test_the_room_is_what_one_segment_leaves_with_the_longest_values() -> None:
    longest = (
        "FaithFlow reminder: NGN 9,999,999.99 for  is still unpaid. Please pay in Settings > "
        "Billing. Already paid? Thank you!"
    )
    assert templates.sms_room("dunning_reminder") == 160 - len(longest) == 43


def test_a_template_too_long_for_one_segment_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(templates, "sms_room", lambda name, locale="en": 12)
    with pytest.raises(UserError) as err:
        templates.check_sms_fit("dunning_reminder", ("en", "fr"))
    assert str(err.value) == (
        "template dunning_reminder.sms.txt does not fit one SMS segment (160 GSM-7 characters) "
        "with a 30-character church name and the longest amount and date in en: it leaves 12 "
        "for the name; shorten it by 18 characters"
    )


def test_a_ladder_step_whose_sms_cannot_fit_is_refused_with_its_line(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from faithflow_ops.dunning.policy import PolicyError, parse_policy

    ladder = (
        '[[step]]\nkey = "day0"\nday = 0\nchannels = ["email"]\ntemplate = "dunning_reminder"\n'
        '\n[[step]]\nkey = "day5"\nday = 5\nchannels = ["whatsapp"]\n'
        'template = "dunning_reminder"\n'
    )
    assert [s.key for s in parse_policy(ladder).steps] == ["day0", "day5"]
    monkeypatch.setattr(templates, "sms_room", lambda name, locale="en": 12)
    parse_policy(ladder.replace('["whatsapp"]', '["email"]'))  # no SMS: not measured
    with pytest.raises(PolicyError) as err:
        parse_policy(ladder)  # WhatsApp may go by SMS: measured
    assert str(err.value).startswith(
        "policy.toml line 11: step 'day5': template dunning_reminder.sms.txt does not fit one "
        "SMS segment"
    )
