"""Platform disputes find their invoice and tenant on both Stripe Invoice shapes (issue 13,
defect 6), through the webhooks (inbox) and through `disputes monitor` against a loopback
Stripe, on SQLite and Postgres.

Stripe documentation these payloads follow:

- https://docs.stripe.com/changelog/basil/2025-03-31/add-support-for-multiple-partial-payments-on-invoices
  (2025-03-31.basil removes `charge` and `payment_intent` from the Invoice; its payments are
  InvoicePayment objects; `payments.data.payment.payment_intent` when expanded)
- https://docs.stripe.com/changelog/basil/2025-05-28/partial-payments (`invoice_payment.paid`)
- https://docs.stripe.com/api/invoice-payment/object (`payment.type`, `payment.payment_intent`,
  `payment.charge`) and https://docs.stripe.com/api/invoice-payment/list (`invoice`,
  `payment[type]`, `payment[payment_intent]`)
- https://docs.stripe.com/api/disputes/object (`charge`, `payment_intent`; no customer)
- https://docs.stripe.com/api/charges/object (`customer`)

Fixtures: tests/fixtures/stripe/platform.invoice_payment.paid.json and tests/fixtures/stripe/
basil/ (an invoice.paid without charge/payment_intent, a dispute on its payment, the charge).
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from fakes.disputes import AlertReceiver, Answer, PaystackDisputesFake, StripeDisputesFake
from sqlalchemy import select
from webhook_support import payload, seed

from faithflow_ops.billing.lifecycle import DisputeState
from faithflow_ops.db import Database
from faithflow_ops.models import (
    Dispute,
    DisputeAlert,
    Invoice,
    ProviderAccount,
    Tenant,
    WebhookEvent,
)
from faithflow_ops.webhooks import inbox
from faithflow_ops.webhooks import stripe as stripe_hooks
from faithflow_ops.webhooks.events import parse
from faithflow_ops.webhooks.inbox import Received

pytestmark = pytest.mark.filterwarnings("ignore:Use 'content=:DeprecationWarning")  # stripe SDK

INVOICE = "in_1QGraceBasil01"
INTENT = "pi_3QGraceBasil01"
CHARGE = "ch_3QGraceBasil01"
DISPUTE = "dp_1QGraceBasil01"


def basil(name: str) -> dict[str, Any]:
    """A fixture in the 2025-03-31.basil shape (tests/fixtures/stripe/basil/)."""
    return payload("stripe", f"basil/{name}")


def invoice_payment() -> dict[str, Any]:
    return payload("stripe", "platform.invoice_payment.paid")


def deliver(db: Database, doc: dict[str, Any]) -> Received:
    return inbox.receive(db, parse("stripe", "platform", doc))


def one(db: Database, model: Any, **where: Any) -> Any:
    with db.read_session() as s:
        return s.scalars(select(model).filter_by(**where)).one()


def rows(db: Database, model: Any, **where: Any) -> list[Any]:
    with db.read_session() as s:
        return list(s.scalars(select(model).filter_by(**where)))


@pytest.fixture
def seeded(db: Database) -> Database:
    seed(db)
    return db


# --- the fixtures are the documented shapes ----------------------------------------------------


def test_the_basil_fixtures_have_the_basil_shape() -> None:
    invoice = basil("platform.invoice.paid")
    assert invoice["api_version"] == "2025-03-31.basil"
    obj = invoice["data"]["object"]
    assert not {"charge", "payment_intent", "paid", "subscription"} & obj.keys()
    paid = invoice_payment()["data"]["object"]
    assert paid["object"] == "invoice_payment" and paid["invoice"] == obj["id"]
    assert paid["payment"] == {"type": "payment_intent", "payment_intent": INTENT}
    dispute = basil("platform.charge.dispute.created")["data"]["object"]
    assert (dispute["charge"], dispute["payment_intent"]) == (CHARGE, INTENT)
    assert "customer" not in dispute


# --- webhooks ----------------------------------------------------------------------------------


def test_basil_invoice_payment_then_dispute_matches_the_invoice_and_tenant(
    seeded: Database,
) -> None:
    db = seeded
    assert deliver(db, basil("platform.invoice.paid")).status == "applied"
    invoice = one(db, Invoice, provider_invoice_id=INVOICE)
    assert invoice.status == "paid" and "stripePaymentIntentId" not in invoice.metadata_

    paid = deliver(db, invoice_payment())
    assert paid.status == "applied", paid.detail
    assert INTENT in (paid.detail or "")
    invoice = one(db, Invoice, provider_invoice_id=INVOICE)
    assert invoice.metadata_["stripePaymentIntentId"] == INTENT
    assert invoice.metadata_["stripeInvoicePaymentId"] == "inpay_1QGraceBasil0001"
    assert "stripeChargeId" not in invoice.metadata_  # only what the event carries

    created = deliver(db, basil("platform.charge.dispute.created"))
    assert created.status == "applied", created.detail
    dispute = one(db, Dispute, provider_dispute_id=DISPUTE)
    assert (dispute.scope, dispute.invoice_id, dispute.tenant_id) == (
        "platform",
        invoice.id,
        invoice.tenant_id,
    )
    assert (dispute.charge_ref, dispute.status, dispute.amount_minor) == (
        CHARGE,
        "needs_response",
        4900,
    )


def test_a_dispute_before_its_invoice_payment_is_unmatched_then_applied_by_replay(
    seeded: Database,
) -> None:
    db = seeded
    assert deliver(db, basil("platform.invoice.paid")).status == "applied"
    early = deliver(db, basil("platform.charge.dispute.created"))
    assert early.status == "unmatched"
    assert CHARGE in (early.detail or "") and INTENT in (early.detail or "")
    assert "invoice_payment.paid" in (early.detail or "")
    assert rows(db, Dispute) == []

    assert deliver(db, invoice_payment()).status == "applied"
    replayed = inbox.replay(db, early.id)
    assert replayed.status == "applied", replayed.detail
    invoice = one(db, Invoice, provider_invoice_id=INVOICE)
    dispute = one(db, Dispute, provider_dispute_id=DISPUTE)
    assert (dispute.invoice_id, dispute.tenant_id) == (invoice.id, invoice.tenant_id)


def test_the_old_invoice_shape_still_matches_by_charge_and_by_payment_intent(
    seeded: Database,
) -> None:
    db = seeded
    assert deliver(db, payload("stripe", "platform.invoice.paid")).status == "applied"
    invoice = one(db, Invoice, provider_invoice_id="in_1QGrace0001")
    assert invoice.metadata_["stripeChargeId"] == "ch_3QGraceInvoice1"
    assert invoice.metadata_["stripePaymentIntentId"] == "pi_3QGraceInvoice1"
    assert deliver(db, payload("stripe", "platform.charge.dispute.created")).status == "applied"
    assert one(db, Dispute, provider_dispute_id="dp_1QGrace0001").invoice_id == invoice.id

    # A dispute whose charge is not the one stored (a retried payment's second charge) still
    # finds the invoice through the payment intent.
    other = payload("stripe", "platform.charge.dispute.created")
    other["id"] = "evt_1Q0015GraceChurch"
    other["data"]["object"].update(id="dp_1QGrace0002", charge="ch_3QGraceRetry2")
    assert deliver(db, other).status == "applied"
    assert one(db, Dispute, provider_dispute_id="dp_1QGrace0002").invoice_id == invoice.id


def test_an_expanded_basil_invoice_records_its_paid_payment(seeded: Database) -> None:
    doc = basil("platform.invoice.paid")
    failed = {
        "id": "inpay_1QGraceBasil0000",
        "object": "invoice_payment",
        "created": 1795600100,
        "invoice": INVOICE,
        "is_default": False,
        "payment": {"type": "payment_intent", "payment_intent": "pi_3QGraceDeclined"},
        "status": "canceled",
    }
    paid = dict(invoice_payment()["data"]["object"])
    doc["data"]["object"]["payments"] = {
        "object": "list",
        "data": [paid, failed],
        "has_more": False,
        "url": f"/v1/invoices/{INVOICE}/payments",
    }
    assert deliver(seeded, doc).status == "applied"
    meta = one(seeded, Invoice, provider_invoice_id=INVOICE).metadata_
    assert meta["stripePaymentIntentId"] == INTENT
    assert meta["stripeInvoicePaymentId"] == "inpay_1QGraceBasil0001"
    assert deliver(seeded, basil("platform.charge.dispute.created")).status == "applied"


def test_an_invoice_payment_adds_ids_and_nulls_nothing(seeded: Database) -> None:
    db = seeded
    assert deliver(db, payload("stripe", "platform.invoice.paid")).status == "applied"
    doc = invoice_payment()
    doc["data"]["object"].update(invoice="in_1QGrace0001", id="inpay_1QGraceOld")
    doc["data"]["object"]["payment"] = {"type": "charge", "charge": "ch_3QGraceOutOfBand"}
    assert deliver(db, doc).status == "applied"
    meta = one(db, Invoice, provider_invoice_id="in_1QGrace0001").metadata_
    assert meta["stripeChargeId"] == "ch_3QGraceOutOfBand"
    assert meta["stripePaymentIntentId"] == "pi_3QGraceInvoice1"  # kept
    assert meta["stripeInvoicePaymentId"] == "inpay_1QGraceOld"
    again = deliver(db, doc)
    assert again.duplicate and again.status == "applied"


def test_an_invoice_payment_for_an_unrecorded_invoice_says_what_is_missing(db: Database) -> None:
    seed(db, link=False)  # Grace's customer is not linked: her invoice event stays unmatched
    early = deliver(db, invoice_payment())
    assert early.status == "unmatched"
    assert INVOICE in (early.detail or "") and "has not arrived" in (early.detail or "")

    assert deliver(db, basil("platform.invoice.paid")).status == "unmatched"
    again = inbox.replay(db, early.id)
    assert again.status == "unmatched"
    assert "cus_QGrace01" in (again.detail or "") and "tenants link" in (again.detail or "")
    assert rows(db, Invoice) == []  # nothing created

    with db.session() as s:  # what `faithflow tenants link grace cus_QGrace01` records
        grace = s.scalars(select(Tenant).filter_by(slug="grace")).one()
        s.add(
            ProviderAccount(
                tenant_id=grace.id,
                provider="stripe",
                kind="customer",
                external_id="cus_QGrace01",
                source="test",
            )
        )
    invoice_event = one(db, WebhookEvent, object_id=INVOICE)
    assert inbox.replay(db, invoice_event.id).status == "applied"
    assert inbox.replay(db, early.id).status == "applied"
    meta = one(db, Invoice, provider_invoice_id=INVOICE).metadata_
    assert meta["stripePaymentIntentId"] == INTENT


def test_bad_invoice_payments_are_unmatched_or_ignored_with_a_reason(seeded: Database) -> None:
    no_invoice = invoice_payment()
    no_invoice["data"]["object"]["invoice"] = None
    result = deliver(seeded, no_invoice)
    assert result.status == "unmatched" and "names no invoice" in (result.detail or "")

    record = invoice_payment()
    record["id"] = "evt_1Q0023GraceChurch"
    record["data"]["object"]["payment"] = {"type": "payment_record", "payment_record": "prec_1"}
    result = deliver(seeded, record)
    assert result.status == "ignored"
    assert "payment_record" in (result.detail or "")


# --- disputes monitor --------------------------------------------------------------------------

NOW = dt.datetime(2026, 12, 7, 12, 0, tzinfo=dt.UTC)  # the basil dispute's evidence: 2.5 days


@dataclass
class World:
    db: Database
    stripe: StripeDisputesFake
    alerts: AlertReceiver


@pytest.fixture
def world(seeded: Database, monkeypatch: pytest.MonkeyPatch) -> Iterator[World]:
    with (
        StripeDisputesFake().serve() as stripe,
        PaystackDisputesFake().serve() as paystack,
        AlertReceiver().serve() as alerts,
    ):
        for name, value in {
            "STRIPE_SECRET_KEY": "sk_test_1",
            "STRIPE_API_BASE": stripe.url,
            "PAYSTACK_SECRET_KEY": "sk_test_ps",
            "PAYSTACK_API_BASE": paystack.url,
            "ALERT_WEBHOOK_URL": alerts.url + "/hooks/ops",
            "FAITHFLOW_PROVIDER_BACKOFF": "0",
            "FAITHFLOW_PROVIDER_MAX_WAIT": "0",
            "FAITHFLOW_PROVIDER_MAX_ATTEMPTS": "3",
        }.items():
            monkeypatch.setenv(name, value)
        monkeypatch.delenv("SMTP_URL", raising=False)
        stripe.disputes[None] = [basil("platform.charge.dispute.created")["data"]["object"]]
        yield World(seeded, stripe, alerts)


def monitor(cli: Any, *extra: str) -> tuple[int, dict[str, Any]]:
    now = NOW.isoformat().replace("+00:00", "Z")
    result = cli("disputes", "monitor", "--now", now, "--json", *extra)
    return result.exit_code, json.loads(result.stdout)


def lookups(world: World) -> list[str]:
    return [r.path for r in world.stripe.requests if r.path != "/v1/disputes"]


def test_monitor_places_a_basil_dispute_through_invoice_payments_and_alerts(
    world: World, cli: Any
) -> None:
    """invoice_payment.paid never arrived: Stripe's invoice payments name the invoice."""
    assert deliver(world.db, basil("platform.invoice.paid")).status == "applied"
    world.stripe.invoice_payments = [invoice_payment()["data"]["object"]]
    code, out = monitor(cli)
    assert code == 0, out
    assert out["counts"] == {"dispute_pulled": 1, "evidence_due_alert": 1}
    (pulled,) = [a for a in out["actions"] if a["kind"] == "dispute_pulled"]
    assert pulled["data"]["links"] == {"invoice": INVOICE, "customer": None}
    assert pulled["data"]["tenant"] == "grace"
    (query,) = [r.query for r in world.stripe.calls("/v1/invoice_payments")]
    assert query["payment[type]"] == "payment_intent"
    assert query["payment[payment_intent]"] == INTENT
    assert lookups(world) == ["/v1/invoice_payments"]  # the invoice placed it: no charge call

    invoice = one(world.db, Invoice, provider_invoice_id=INVOICE)
    dispute = one(world.db, Dispute, provider_dispute_id=DISPUTE)
    assert (dispute.scope, dispute.invoice_id, dispute.tenant_id) == (
        "platform",
        invoice.id,
        invoice.tenant_id,
    )
    (alert,) = world.alerts.alerts
    assert alert["provider_dispute_id"] == DISPUTE and alert["tenant"] == "grace"
    assert alert["threshold_days"] == 3
    assert len(rows(world.db, DisputeAlert)) == 1

    code, again = monitor(cli)  # recorded now: placed from our own data, no look-up
    assert (code, again["counts"]) == (0, {})
    assert lookups(world) == ["/v1/invoice_payments"]


def test_monitor_places_a_dispute_through_the_charges_customer(world: World, cli: Any) -> None:
    """No invoice recorded and none listed: the charge's customer names the tenant."""
    world.stripe.charges[CHARGE] = basil("charge")
    code, out = monitor(cli)
    assert code == 0, out
    assert out["counts"] == {"dispute_pulled": 1, "evidence_due_alert": 1}
    assert lookups(world) == ["/v1/invoice_payments", f"/v1/charges/{CHARGE}"]
    dispute = one(world.db, Dispute, provider_dispute_id=DISPUTE)
    grace = one(world.db, ProviderAccount, external_id="cus_QGrace01")
    assert (dispute.invoice_id, dispute.tenant_id) == (None, grace.tenant_id)
    (alert,) = world.alerts.alerts
    assert alert["tenant"] == "grace"

    # A later webhook for the same dispute is placed by the recorded dispute (no API call;
    # whether it then applies or is stale depends on the pull's wall-clock date, not tested).
    updated = basil("platform.charge.dispute.created")
    updated.update(id="evt_1Q0024GraceChurch", type="charge.dispute.updated")
    with world.db.read_session() as s:
        state = stripe_hooks.dispute_state(s, parse("stripe", "platform", updated))
    assert isinstance(state, DisputeState)
    assert (state.tenant_id, state.invoice_id) == (grace.tenant_id, None)


def test_monitor_does_not_ask_stripe_when_the_invoice_payment_was_recorded(
    world: World, cli: Any
) -> None:
    assert deliver(world.db, basil("platform.invoice.paid")).status == "applied"
    assert deliver(world.db, invoice_payment()).status == "applied"
    code, out = monitor(cli)
    assert code == 0, out
    assert out["counts"] == {"dispute_pulled": 1, "evidence_due_alert": 1}
    assert lookups(world) == []
    invoice = one(world.db, Invoice, provider_invoice_id=INVOICE)
    assert one(world.db, Dispute, provider_dispute_id=DISPUTE).invoice_id == invoice.id


def test_monitor_reports_a_dispute_stripe_places_nowhere(world: World, cli: Any) -> None:
    charge = basil("charge")
    charge["customer"] = "cus_QStranger01"
    world.stripe.charges[CHARGE] = charge
    code, out = monitor(cli)
    assert code == 0, out
    assert out["counts"] == {"unmapped_dispute": 1}
    (action,) = out["actions"]
    assert action["outcome"] == "reported"
    assert "cus_QStranger01" in action["reason"] and "tenants link" in action["reason"]
    assert rows(world.db, Dispute) == [] and world.alerts.alerts == []

    del world.stripe.charges[CHARGE]  # Stripe has no such charge (404): still an answer
    code, out = monitor(cli)
    assert (code, out["counts"]) == (0, {"unmapped_dispute": 1})
    assert f"Stripe names no customer for {CHARGE}" in out["actions"][0]["reason"]


def test_a_failed_look_up_fails_the_run_and_the_next_run_places_it(world: World, cli: Any) -> None:
    assert deliver(world.db, basil("platform.invoice.paid")).status == "applied"
    world.stripe.invoice_payments = [invoice_payment()["data"]["object"]]
    boom = Answer(500, {"error": {"type": "api_error", "message": "boom"}})
    world.stripe.queue("/v1/invoice_payments", boom, boom, boom)
    code, out = monitor(cli)
    assert code == 1
    assert out["counts"] == {"pull_failed": 1}
    (failed,) = out["actions"]
    assert failed["target"] == f"dispute:stripe:{DISPUTE}"
    assert failed["outcome"] == "failed" and "after 3 attempts" in failed["error"]
    assert rows(world.db, Dispute) == []

    code, out = monitor(cli)
    assert code == 0, out
    assert out["counts"] == {"dispute_pulled": 1, "evidence_due_alert": 1}
    assert one(world.db, Dispute, provider_dispute_id=DISPUTE).invoice_id is not None


def test_the_preview_looks_up_but_writes_nothing(world: World, cli: Any) -> None:
    world.stripe.charges[CHARGE] = basil("charge")
    code, out = monitor(cli, "--dry-run")
    assert code == 0, out
    assert out["counts"] == {"dispute_pulled": 1, "evidence_due_alert": 1}
    assert rows(world.db, Dispute) == [] and world.alerts.alerts == []
    code, out = monitor(cli)
    assert out["outcomes"] == {"applied": 2}


def test_an_invoice_payment_that_beats_its_invoice_is_applied_when_the_invoice_lands(
    seeded: Database,
) -> None:
    """Stripe sends invoice_payment.paid beside invoice.paid in no set order
    (https://docs.stripe.com/webhooks#event-ordering): the payment waits unmatched and the
    invoice's event handles it, so a later dispute finds the invoice without a replay."""
    db = seeded
    first = deliver(db, invoice_payment())
    assert first.status == "unmatched"
    assert deliver(db, basil("platform.invoice.paid")).status == "applied"
    assert one(db, WebhookEvent, id=first.id).status == "applied"
    invoice = one(db, Invoice, provider_invoice_id=INVOICE)
    assert invoice.metadata_["stripePaymentIntentId"] == INTENT
    assert deliver(db, basil("platform.charge.dispute.created")).status == "applied"
    assert one(db, Dispute, provider_dispute_id=DISPUTE).invoice_id == invoice.id
