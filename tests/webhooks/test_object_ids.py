"""Issue 16: an event whose object has no usable id is malformed — refused with 400 and never
stored by the receiver, and a row stored before this rule is given up (`failed` for good),
never applied to an object named `None`.

Shapes: Stripe's event object (docs.stripe.com/api/events/object) carries the API resource in
`data.object`, whose `id` is always a string (`pi_…`, `in_…`); Paystack's events carry the
transaction in `data` with an integer `id` and a string `reference`, subscriptions and invoices
with string `subscription_code` / `invoice_code` (paystack.com/docs/payments/webhooks)."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from helpers import running
from sqlalchemy import func, insert, select
from webhook_support import names, payload, seed

from faithflow_ops.config import Settings
from faithflow_ops.db import Database
from faithflow_ops.models import Payment, WebhookEvent
from faithflow_ops.providers.paystack import signature
from faithflow_ops.providers.stripe import signature_header
from faithflow_ops.webhooks import applier, inbox
from faithflow_ops.webhooks.events import MalformedEvent, parse
from receiver.app import create_app

WHSEC_CONNECT = "whsec_test_connect"
PAYSTACK_KEY = "sk_test_paystack"
BAD_IDS = [12345, None, ["pi_1"], {"id": "pi_1"}, "", True, 1.5]


@pytest.mark.parametrize("name", names("stripe"))
@pytest.mark.parametrize("bad", BAD_IDS, ids=repr)
def test_a_stripe_object_id_that_is_not_a_string_is_malformed(name: str, bad: object) -> None:
    scope = name.split(".", 1)[0]
    doc = payload("stripe", name)
    doc["data"]["object"]["id"] = bad
    with pytest.raises(MalformedEvent, match=r"data\.object\.id"):
        inbox.parse_event("stripe", scope, doc)


@pytest.mark.parametrize("name", names("stripe"))
def test_a_handled_stripe_object_without_an_id_is_malformed(name: str) -> None:
    scope = name.split(".", 1)[0]
    doc = payload("stripe", name)
    del doc["data"]["object"]["id"]
    assert parse("stripe", scope, doc).object_id is None  # the shape alone allows it …
    with pytest.raises(MalformedEvent, match="has no id"):  # … a handler needs it
        inbox.parse_event("stripe", scope, doc)


def test_an_unhandled_stripe_object_without_an_id_is_still_an_event() -> None:
    # e.g. `balance.available`: a Balance object has no id; it is stored and ignored
    doc = payload("stripe", "platform.customer.updated")
    doc["type"], doc["data"]["object"] = "balance.available", {"object": "balance"}
    event = inbox.parse_event("stripe", "platform", doc)
    assert event.object_id is None and inbox.handler_for(event) is None


@pytest.mark.parametrize("name", [n for n in names("paystack") if "expiring" not in n])
@pytest.mark.parametrize("field", ["id", "reference", "subscription_code", "invoice_code"])
@pytest.mark.parametrize("bad", [["x"], {"a": 1}, True, 1.5, ""], ids=repr)
def test_a_paystack_identifier_of_the_wrong_type_is_malformed(
    name: str, field: str, bad: object
) -> None:
    scope = name.split(".", 1)[0]
    doc = payload("paystack", name)
    doc["data"][field] = bad
    with pytest.raises(MalformedEvent, match=rf"data\.{field}"):
        inbox.parse_event("paystack", scope, doc)


def test_paystack_integer_ids_and_null_references_still_parse() -> None:
    doc = payload("paystack", "tenant.charge.success")
    doc["data"]["id"] = 302961
    assert inbox.parse_event("paystack", "tenant", doc).object_id == doc["data"]["reference"]
    doc["data"]["reference"] = None  # the handler ignores a charge without a reference
    assert inbox.parse_event("paystack", "tenant", doc).object_id == "302961"


# --- over HTTP and from the inbox --------------------------------------------------------------


@pytest.fixture
def seeded(db: Database) -> Database:
    seed(db)
    return db


@pytest.fixture
def base(seeded: Database, db_url: str) -> Iterator[str]:
    settings = Settings(
        database_url=db_url,
        stripe_webhook_secrets=(WHSEC_CONNECT,),
        paystack_secret_keys=(PAYSTACK_KEY,),
    )
    with running(create_app(settings, db=seeded)) as url:
        yield url


def count(db: Database, model: Any) -> int:
    with db.read_session() as s:
        return s.scalar(select(func.count()).select_from(model)) or 0


@pytest.mark.parametrize("bad", [12345, None, ["pi_1"]], ids=repr)
def test_the_receiver_refuses_a_payment_intent_without_a_string_id(
    base: str, seeded: Database, bad: object
) -> None:
    doc = payload("stripe", "tenant.payment_intent.succeeded")
    doc["data"]["object"]["id"] = bad
    body = json.dumps(doc).encode()
    answer = httpx.post(
        base + "/webhooks/stripe",
        content=body,
        headers={"Stripe-Signature": signature_header(body, WHSEC_CONNECT)},
        timeout=30,
    )
    assert answer.status_code == 400
    assert "data.object.id" in answer.json()["error"]
    assert count(seeded, WebhookEvent) == 0 and count(seeded, Payment) == 0


def test_the_receiver_refuses_a_paystack_charge_with_a_list_reference(
    base: str, seeded: Database
) -> None:
    doc = payload("paystack", "tenant.charge.success")
    doc["data"]["reference"] = ["T1", "T2"]
    body = json.dumps(doc).encode()
    answer = httpx.post(
        base + "/webhooks/paystack",
        content=body,
        headers={"x-paystack-signature": signature(body, PAYSTACK_KEY)},
        timeout=30,
    )
    assert answer.status_code == 400
    assert "data.reference" in answer.json()["error"]
    assert count(seeded, WebhookEvent) == 0 and count(seeded, Payment) == 0


def test_a_row_stored_before_the_rule_is_given_up_never_applied(seeded: Database) -> None:
    now = dt.datetime(2026, 12, 1, 9, 0, tzinfo=dt.UTC)
    doc = payload("stripe", "tenant.payment_intent.succeeded")
    doc["data"]["object"]["id"] = 12345
    with seeded.session() as s:
        row_id = s.execute(
            insert(WebhookEvent)
            .values(
                provider="stripe",
                scope="tenant",
                event_key=doc["id"],
                event_type=doc["type"],
                payload=doc,
                status="received",
                delivery_count=1,
                first_received_at=now,
                last_received_at=now,
                next_attempt_at=now,
            )
            .returning(WebhookEvent.id)
        ).scalar_one()
    stats = applier.apply_waiting(seeded, now=now)
    assert stats.statuses == {"failed": 1}
    with seeded.read_session() as s:
        row = s.get(WebhookEvent, row_id)
        assert row is not None and row.status == "failed" and row.next_attempt_at is None
        assert "data.object.id" in (row.last_error or "")
    assert count(seeded, Payment) == 0
