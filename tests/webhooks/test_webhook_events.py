"""Parsing verified bodies into events, and the idempotency key rule (no database)."""

from __future__ import annotations

import datetime as dt
import itertools

import pytest
from webhook_support import names, payload

from faithflow_ops.webhooks import inbox
from faithflow_ops.webhooks.events import KEY_MAX, MalformedEvent, parse, paystack_event_key


def test_every_handled_type_has_a_recorded_payload() -> None:
    for provider, scope in itertools.product(("stripe", "paystack"), ("platform", "tenant")):
        recorded = {name.split(".", 1)[1] for name in names(provider, scope)}
        assert set(inbox.handled_types(provider, scope)) == recorded, (provider, scope)


@pytest.mark.parametrize("name", names("stripe"))
def test_stripe_key_is_the_event_id(name: str) -> None:
    scope = name.split(".", 1)[0]
    doc = payload("stripe", name)
    event = parse("stripe", scope, doc)
    assert event.key == doc["id"]
    assert event.type == doc["type"]
    assert event.object_id == doc["data"]["object"]["id"]
    assert event.occurred_at == dt.datetime.fromtimestamp(doc["created"], dt.UTC)
    assert (event.account_ref is not None) == (scope == "tenant")


@pytest.mark.parametrize("name", names("paystack"))
def test_paystack_key_is_stable_across_redeliveries(name: str) -> None:
    scope = name.split(".", 1)[0]
    first = parse("paystack", scope, payload("paystack", name))
    again = parse("paystack", scope, payload("paystack", name))
    assert first.key == again.key
    assert first.key.startswith(first.type + ":")
    assert len(first.key) <= KEY_MAX


def test_no_two_recorded_paystack_events_share_a_key() -> None:
    keys = {}
    for name in names("paystack"):
        scope = name.split(".", 1)[0]
        key = parse("paystack", scope, payload("paystack", name)).key
        assert key not in keys, f"{name} and {keys.get(key)} share {key}"
        keys[key] = name


@pytest.mark.parametrize("name", [n for n in names("paystack") if "expiring" not in n])
def test_a_new_state_of_the_same_object_is_a_new_paystack_event(name: str) -> None:
    scope = name.split(".", 1)[0]
    doc = payload("paystack", name)
    before = parse("paystack", scope, doc).key
    doc["data"]["status"] = "something-else"
    assert parse("paystack", scope, doc).key != before
    doc = payload("paystack", name)
    for field in ("updatedAt", "updated_at", "paid_at", "createdAt", "created_at"):
        if doc["data"].get(field):
            doc["data"][field] = "2030-01-01T00:00:00.000Z"
            break
    assert parse("paystack", scope, doc).key != before


def test_paystack_keys_name_the_object_and_its_state() -> None:
    doc = payload("paystack", "platform.invoice.update")
    key = parse("paystack", "platform", doc).key
    assert key == (
        "invoice.update:invoice_code=INV_lagos0nov0001:status=success:paid=true:"
        "updated_at=2026-11-03T10:00:00.000Z"
    )
    cards = parse(
        "paystack", "platform", payload("paystack", "platform.subscription.expiring_cards")
    )
    assert cards.key == "subscription.expiring_cards:SUB_lagos0growth1@12/2026"


def test_overlong_paystack_keys_are_hashed_and_shapeless_bodies_fall_back_to_a_hash() -> None:
    long_key = paystack_event_key("charge.success", {"reference": "r" * 400, "status": "success"})
    assert long_key.startswith("charge.success:sha256=") and len(long_key) <= KEY_MAX
    shapeless = paystack_event_key("transfer.success", {"amount": 5})
    assert shapeless == paystack_event_key("transfer.success", {"amount": 5})
    assert shapeless != paystack_event_key("transfer.success", {"amount": 6})


def test_customer_ids_arrive_in_canonical_form() -> None:
    doc = payload("stripe", "platform.customer.subscription.updated")
    doc["data"]["object"]["customer"] = "  cus_QGrace01 "
    assert parse("stripe", "platform", doc).customer_ref == "cus_QGrace01"
    doc["data"]["object"]["customer"] = "not a customer"
    assert parse("stripe", "platform", doc).customer_ref is None


@pytest.mark.parametrize(
    ("provider", "body", "message"),
    [
        ("stripe", [1, 2], "JSON object, not a list"),
        ("stripe", {"type": "invoice.paid"}, "missing or wrong id, created, data.object"),
        (
            "stripe",
            {"id": "evt_1", "type": "x", "created": "yesterday", "data": {"object": {}}},
            "created",
        ),
        ("paystack", {"data": {}}, "needs an `event` name"),
        ("paystack", {"event": "charge.success", "data": [1]}, "other than objects"),
    ],
)
def test_bodies_that_are_not_events_are_refused(provider: str, body: object, message: str) -> None:
    with pytest.raises(MalformedEvent, match=message):
        parse(provider, "platform", body)
