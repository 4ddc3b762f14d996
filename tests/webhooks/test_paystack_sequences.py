"""Paystack's real event sequences for the platform's own billing (issue 13, defects 1–5).

The order and shapes come from Paystack's documentation:
- https://paystack.com/docs/payments/subscriptions/ — "Adding plan code to a transaction": the
  first payment's `charge.success` (carrying the `plan` and our `metadata`) and then
  `subscription.create`; "Listen for subscription events": `invoice.create` ahead of a renewal,
  then `charge.success` and `invoice.update` (whose `transaction.reference` is the charge's
  `reference`) when the renewal is paid, `invoice.payment_failed` when it is not,
  `subscription.not_renew` when the church turns renewal off (status `non-renewing`: it keeps
  what it paid for until the period ends), `subscription.disable` at the end.
- https://paystack.com/docs/payments/webhooks/ — one URL per integration receives every event,
  retried every 3 minutes then hourly for 72 hours; no delivery order is promised.
- https://paystack.com/docs/api/transaction/#initialize — `metadata` travels on the transaction
  and comes back on its `charge.success`; `customer.metadata` is the customer object's own.
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import pytest
from sqlalchemy import func, select
from webhook_support import payload, seed

from faithflow_ops.db import Database
from faithflow_ops.dunning.suspension import suspend_tenant
from faithflow_ops.models import (
    AuditLog,
    DunningCase,
    Invoice,
    Payment,
    ProviderAccount,
    Subscription,
    Tenant,
    WebhookEvent,
)
from faithflow_ops.tenancy.tenants import add_tenant
from faithflow_ops.webhooks import inbox
from faithflow_ops.webhooks.events import parse, paystack_scope
from faithflow_ops.webhooks.inbox import Received

SUB = "SUB_lagos0growth1"
CUSTOMER = "CUS_lagos0chapel1"


def deliver(db: Database, doc: dict[str, Any], scope: str = "platform") -> Received:
    return inbox.receive(db, parse("paystack", scope, doc))


def one(db: Database, model: Any, **where: Any) -> Any:
    with db.read_session() as s:
        return s.scalars(select(model).filter_by(**where)).one()


def rows(db: Database, model: Any, **where: Any) -> list[Any]:
    with db.read_session() as s:
        return list(s.scalars(select(model).filter_by(**where).order_by(model.id)))


def count(db: Database, model: Any, **where: Any) -> int:
    with db.read_session() as s:
        return s.scalar(select(func.count()).select_from(model).filter_by(**where)) or 0


def first_charge() -> dict[str, Any]:
    """The checkout's first payment: `billing checkout` initialized it with the plan and
    `metadata: {tenant, plan}` (providers/paystack.py initialize_transaction)."""
    doc = payload("paystack", "platform.charge.success")
    data = doc["data"]
    data["reference"] = "ff-checkout-lagos-1"
    data["paid_at"] = data["paidAt"] = "2026-11-01T08:00:00.000Z"
    data["created_at"] = "2026-11-01T07:58:00.000Z"
    data["metadata"] = {"tenant": "lagos", "plan": "growth-ngn"}
    return doc


def subscription_create() -> dict[str, Any]:
    return payload("paystack", "platform.subscription.create")


def renewal_charge(reference: str, paid_at: str) -> dict[str, Any]:
    doc = payload("paystack", "platform.charge.success")
    doc["data"]["reference"] = reference
    doc["data"]["paid_at"] = doc["data"]["paidAt"] = paid_at
    return doc


def invoice(
    event: str,
    code: str,
    *,
    reference: str | None,
    paid: bool,
    status: str,
    period: tuple[str, str],
    next_payment: str | None,
    updated: str,
) -> dict[str, Any]:
    doc = payload("paystack", "platform.invoice.update")
    data = doc["data"]
    doc["event"] = event
    data["invoice_code"] = code
    data["paid"], data["status"] = paid, status
    data["paid_at"] = updated if paid else None
    data["period_start"], data["period_end"] = period
    data["subscription"]["next_payment_date"] = next_payment
    data["updated_at"] = updated
    if reference is None:
        data["transaction"] = None
    else:
        data["transaction"] = {
            "reference": reference,
            "status": "success" if paid else "failed",
            "amount": data["amount"],
            "currency": "NGN",
        }
    return doc


NOV = ("2026-11-01T00:00:00.000Z", "2026-11-30T23:59:59.000Z")
DEC = ("2026-12-01T00:00:00.000Z", "2026-12-31T23:59:59.000Z")


def at(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text.replace("Z", "+00:00"))


@pytest.fixture
def fresh(db: Database) -> Database:
    """Lagos and its plan exist; nothing links its Paystack customer yet (a new church)."""
    seed(db, link=False)
    return db


@pytest.fixture
def subscribed(fresh: Database) -> Database:
    """Lagos went through checkout: first charge and subscription.create applied."""
    assert deliver(fresh, first_charge()).status in ("applied", "unmatched")
    assert deliver(fresh, subscription_create()).status == "applied"
    return fresh


# --- 1. the checkout links the church ---------------------------------------------------------


@pytest.mark.parametrize("order", ["charge_first", "subscription_first"])
def test_checkout_links_the_church_and_records_the_first_payment(
    fresh: Database, order: str
) -> None:
    db = fresh
    events = [first_charge(), subscription_create()]
    if order == "subscription_first":
        events.reverse()
    for doc in events:
        deliver(db, doc)
    lagos = one(db, Tenant, slug="lagos")
    link = one(db, ProviderAccount, provider="paystack", kind="customer", external_id=CUSTOMER)
    assert link.tenant_id == lagos.id
    sub = one(db, Subscription, provider_subscription_id=SUB)
    assert (sub.tenant_id, sub.status) == (lagos.id, "active")
    paid = one(db, Invoice, subscription_id=sub.id)
    assert (paid.status, paid.amount_paid_minor, paid.currency) == ("paid", 1500000, "NGN")
    assert paid.metadata_["paystackReference"] == "ff-checkout-lagos-1"
    assert paid.paid_at == at("2026-11-01T08:00:00.000Z")
    assert (paid.period_start, paid.period_end) == (
        at("2026-11-01T08:00:00.000Z"),
        at("2026-12-01T00:00:00.000Z"),  # subscription.create's next_payment_date
    )
    assert {e.status for e in rows(db, WebhookEvent)} == {"applied"}
    # a redelivery of either changes nothing
    for doc in events:
        assert deliver(db, doc).duplicate
    assert count(db, Invoice) == 1


def test_every_later_event_of_the_linked_customer_matches(subscribed: Database) -> None:
    db = subscribed
    failed = invoice(
        "invoice.payment_failed",
        "INV_lagos0dec0001",
        reference="T_dec_failed",
        paid=False,
        status="failed",
        period=DEC,
        next_payment="2027-01-01T00:00:00.000Z",
        updated="2026-12-01T08:06:00.000Z",
    )
    assert deliver(db, failed).status == "applied"
    assert one(db, Subscription, provider_subscription_id=SUB).status == "past_due"
    assert count(db, DunningCase, status="open") == 1


def test_customer_metadata_tenant_finds_the_church(fresh: Database) -> None:
    doc = subscription_create()
    doc["data"]["customer"]["metadata"] = {"tenant": "lagos"}
    assert deliver(fresh, doc).status == "applied"
    assert one(fresh, Subscription, provider_subscription_id=SUB).tenant_id == (
        one(fresh, Tenant, slug="lagos").id
    )


def test_billing_email_finds_the_church_only_when_one_tenant_has_it(fresh: Database) -> None:
    with fresh.session() as s:
        lagos = s.scalars(select(Tenant).filter_by(slug="lagos")).one()
        lagos.billing_email = "Treasurer@LagosChapel.org"
    assert deliver(fresh, subscription_create()).status == "applied"
    assert one(fresh, Subscription, provider_subscription_id=SUB).tenant_id == lagos.id


def test_a_billing_email_two_tenants_share_matches_nobody(fresh: Database) -> None:
    with fresh.session() as s:
        for slug in ("lagos", "grace"):
            s.scalars(
                select(Tenant).filter_by(slug=slug)
            ).one().billing_email = "treasurer@lagoschapel.org"
    result = deliver(fresh, subscription_create())
    assert result.status == "unmatched"
    assert "treasurer@lagoschapel.org" in (result.detail or "")
    assert count(fresh, Subscription) == 0


def test_metadata_tenant_of_another_churchs_customer_is_not_relinked(fresh: Database) -> None:
    with fresh.session() as s:
        grace = s.scalars(select(Tenant).filter_by(slug="grace")).one()
        s.add(
            ProviderAccount(
                tenant_id=grace.id,
                provider="paystack",
                kind="customer",
                external_id=CUSTOMER,
                source="test",
            )
        )
    deliver(fresh, subscription_create())  # applied for grace (the linked code wins)
    sub = one(fresh, Subscription, provider_subscription_id=SUB)
    assert sub.tenant_id == grace.id
    assert one(fresh, ProviderAccount, external_id=CUSTOMER).tenant_id == grace.id


# --- 2. one URL serves both scopes ------------------------------------------------------------


def test_scope_is_read_from_the_content() -> None:
    gift = payload("paystack", "tenant.charge.success")
    assert paystack_scope(gift, "platform") == "tenant"
    assert paystack_scope(first_charge(), "tenant") == "platform"
    assert paystack_scope(subscription_create(), "tenant") == "platform"
    assert paystack_scope(payload("paystack", "platform.invoice.update"), "tenant") == "platform"
    retry = payload("paystack", "platform.charge.success")
    retry["data"]["plan"] = {}
    retry["data"]["metadata"] = json.dumps({"tenant": "lagos", "dunning_case": 4})
    assert paystack_scope(retry, "tenant") == "platform"
    named = payload("paystack", "tenant.charge.success")
    named["data"]["subaccount"] = {}
    named["data"]["metadata"] = {"tenant": "lagos", "purpose": "giving"}
    assert paystack_scope(named, "platform") == "tenant"
    assert paystack_scope(payload("paystack", "tenant.charge.dispute.create"), "platform") == (
        "tenant"
    )
    # nothing in it says: the URL it came to decides
    bare = payload("paystack", "tenant.charge.success")
    bare["data"]["subaccount"] = {}
    bare["data"]["metadata"] = ""
    assert paystack_scope(bare, "platform") == "platform"
    assert paystack_scope(bare, "tenant") == "tenant"


# --- 3. a renewal pays its own invoice, never the oldest ---------------------------------------


def _november_failed(db: Database) -> None:
    deliver(
        db,
        invoice(
            "invoice.payment_failed",
            "INV_lagos0nov0001",
            reference="T_lagos0nov0001",
            paid=False,
            status="failed",
            period=NOV,
            next_payment="2026-12-01T00:00:00.000Z",
            updated="2026-11-01T08:06:00.000Z",
        ),
    )


def _december(event: str, paid: bool) -> dict[str, Any]:
    return invoice(
        event,
        "INV_lagos0dec0001",
        reference="T_lagos0dec0001" if paid else None,
        paid=paid,
        status="success" if paid else "pending",
        period=DEC,
        next_payment="2027-01-01T00:00:00.000Z",
        updated="2026-12-01T08:05:30.000Z" if paid else "2026-11-28T08:00:00.000Z",
    )


@pytest.mark.parametrize(
    "order",
    [
        ("create", "charge", "update"),
        ("create", "update", "charge"),
        ("charge", "update"),
        ("update", "charge"),
        ("charge", "create", "update"),
    ],
)
def test_a_december_charge_pays_december_only(subscribed: Database, order: tuple[str]) -> None:
    db = subscribed
    _november_failed(db)
    docs = {
        "create": _december("invoice.create", paid=False),
        "charge": renewal_charge("T_lagos0dec0001", "2026-12-01T08:05:00.000Z"),
        "update": _december("invoice.update", paid=True),
    }
    for name in order:
        result = deliver(db, docs[name])
        assert result.status in ("applied", "stale"), (name, result.detail)
    nov = one(db, Invoice, provider_invoice_id="INV_lagos0nov0001")
    assert (nov.status, nov.amount_paid_minor) == ("open", 0)
    dec = one(db, Invoice, provider_invoice_id="INV_lagos0dec0001")
    assert (dec.status, dec.amount_paid_minor) == ("paid", 1500000)
    assert dec.metadata_["paystackReference"] == "T_lagos0dec0001"
    sub = one(db, Subscription, provider_subscription_id=SUB)
    # the checkout invoice, November (open) and December: no row for the charge on its own
    assert count(db, Invoice, subscription_id=sub.id) == 3
    assert sub.status == "past_due"  # November is still owed
    assert one(db, DunningCase, subscription_id=sub.id).status == "open"


def test_a_dunning_retry_pays_the_invoice_it_names(subscribed: Database) -> None:
    db = subscribed
    _november_failed(db)
    deliver(db, _december("invoice.create", paid=False))
    case = one(db, DunningCase, status="open")
    doc = payload("paystack", "platform.charge.success")
    doc["data"]["plan"] = {}
    doc["data"]["reference"] = f"ff-dunning-{case.id}-day3"
    doc["data"]["paid_at"] = doc["data"]["paidAt"] = "2026-12-04T09:00:00.000Z"
    doc["data"]["metadata"] = json.dumps(
        {"tenant": "lagos", "dunning_case": case.id, "invoice": "INV_lagos0nov0001"}
    )
    result = deliver(db, doc)
    assert result.status == "applied", result.detail
    nov = one(db, Invoice, provider_invoice_id="INV_lagos0nov0001")
    assert (nov.status, nov.metadata_["paystackReference"]) == ("paid", doc["data"]["reference"])
    assert one(db, Invoice, provider_invoice_id="INV_lagos0dec0001").status == "open"


def test_a_charge_for_another_amount_never_settles_an_invoice(subscribed: Database) -> None:
    db = subscribed
    _november_failed(db)
    doc = renewal_charge("T_unrelated", "2026-12-01T08:05:00.000Z")
    doc["data"]["amount"] = 100
    assert deliver(db, doc).status == "applied"
    assert one(db, Invoice, provider_invoice_id="INV_lagos0nov0001").status == "open"


# --- 4. non-renewing is not a payment ----------------------------------------------------------


def test_not_renew_keeps_a_non_payment_suspension(subscribed: Database) -> None:
    db = subscribed
    _november_failed(db)
    with db.session() as s:
        suspend_tenant(s, "lagos", reason="non_payment", actor="test")
    before = one(db, Subscription, provider_subscription_id=SUB)
    result = deliver(db, payload("paystack", "platform.subscription.not_renew"))
    assert result.status == "applied"
    sub = one(db, Subscription, provider_subscription_id=SUB)
    assert (sub.status, sub.cancel_at_period_end) == ("past_due", True)
    assert sub.past_due_since == before.past_due_since
    assert one(db, Tenant, slug="lagos").status == "suspended"
    assert one(db, Invoice, provider_invoice_id="INV_lagos0nov0001").status == "open"
    audit = rows(db, AuditLog, action="subscription.webhook_update", entity_id=str(sub.id))[-1]
    assert audit.after["cancel_at_period_end"] is True


def test_not_renew_on_a_paid_subscription_keeps_it_active_to_the_period_end(
    subscribed: Database,
) -> None:
    db = subscribed
    deliver(db, payload("paystack", "platform.subscription.not_renew"))
    sub = one(db, Subscription, provider_subscription_id=SUB)
    assert (sub.status, sub.cancel_at_period_end) == ("active", True)
    assert sub.current_period_end == at("2026-12-01T00:00:00.000Z")  # next_payment_date null


# --- 5. the paid period moves forward ----------------------------------------------------------


def test_paid_invoices_advance_the_period_end_and_never_move_it_back(
    subscribed: Database,
) -> None:
    db = subscribed
    assert one(db, Subscription, provider_subscription_id=SUB).current_period_end == at(
        "2026-12-01T00:00:00.000Z"
    )
    deliver(db, _december("invoice.update", paid=True))
    sub = one(db, Subscription, provider_subscription_id=SUB)
    assert sub.current_period_end == at("2027-01-01T00:00:00.000Z")
    # an older, redelivered-late event never moves it back
    late = payload("paystack", "platform.invoice.update")  # November, paid
    assert deliver(db, late).status == "applied"
    assert one(db, Subscription, id=sub.id).current_period_end == at("2027-01-01T00:00:00.000Z")
    # a failed renewal does not move it
    failed = invoice(
        "invoice.payment_failed",
        "INV_lagos0jan0001",
        reference="T_jan",
        paid=False,
        status="failed",
        period=("2027-01-01T00:00:00.000Z", "2027-01-31T23:59:59.000Z"),
        next_payment="2027-02-01T00:00:00.000Z",
        updated="2027-01-01T08:06:00.000Z",
    )
    deliver(db, failed)
    assert one(db, Subscription, id=sub.id).current_period_end == at("2027-01-01T00:00:00.000Z")


def test_the_tenant_url_does_not_book_a_subscription_charge_as_a_gift(fresh: Database) -> None:
    """Without the receiver's routing, a platform charge handled by the tenant handlers would be
    a payment; the scope read from its content keeps it out of `payments`."""
    doc = first_charge()
    scope = paystack_scope(doc, "tenant")
    deliver(fresh, doc, scope=scope)
    assert count(fresh, Payment) == 0


def test_a_gift_named_by_metadata_is_a_payment_of_that_church_only(fresh: Database) -> None:
    with fresh.session() as s:
        add_tenant(s, slug="abuja", name="Abuja Chapel", actor="test", currency="NGN")
    doc = payload("paystack", "tenant.charge.success")
    doc["data"]["subaccount"] = {}
    doc["data"]["metadata"] = {"tenant": "lagos", "purpose": "giving"}
    deliver(fresh, doc, scope=paystack_scope(doc, "platform"))
    gift = one(fresh, Payment, provider_payment_id="T_lagos0gift001")
    assert gift.tenant_id == one(fresh, Tenant, slug="lagos").id


# --- 2, over HTTP: whichever URL is configured ----------------------------------------------


@pytest.mark.parametrize("path", ["/webhooks/paystack", "/webhooks/paystack/platform"])
def test_one_paystack_url_serves_both_scopes(fresh: Database, db_url: str, path: str) -> None:
    import httpx
    from helpers import running, wait_applied

    from faithflow_ops.config import Settings
    from faithflow_ops.providers.paystack import signature
    from receiver.app import create_app

    key = "sk_test_paystack"
    with fresh.session() as s:
        lagos = s.scalars(select(Tenant).filter_by(slug="lagos")).one()
        s.add(
            ProviderAccount(
                tenant_id=lagos.id,
                provider="paystack",
                kind="subaccount",
                external_id="ACCT_lagos0chapel1",
                source="test",
            )
        )
    settings = Settings(database_url=db_url, paystack_secret_keys=(key,))
    keys = []
    with running(create_app(settings, db=fresh)) as url:
        for doc in (payload("paystack", "tenant.charge.success"), first_charge()):
            body = json.dumps(doc).encode()
            answer = httpx.post(
                url + path,
                content=body,
                headers={"x-paystack-signature": signature(body, key)},
                timeout=30,
            )
            assert answer.status_code == 200, answer.text
            keys.append(answer.json()["event_key"])
        wait_applied(fresh, *keys)
    gift = one(fresh, Payment, provider_payment_id="T_lagos0gift001")
    assert (gift.tenant_id, gift.amount_minor) == (lagos.id, gift.amount_minor)
    assert count(fresh, Payment) == 1  # the subscription charge is not a gift
    scopes = {(e.event_type, e.scope) for e in rows(fresh, WebhookEvent)}
    assert scopes == {("charge.success", "tenant"), ("charge.success", "platform")}
    assert one(fresh, ProviderAccount, kind="customer").external_id == CUSTOMER


def test_a_charge_naming_the_church_links_a_customer_its_subscription_found_by_email(
    fresh: Database,
) -> None:
    """subscription.create first finds the church by billing e-mail (links nothing); the
    first charge's metadata.tenant, which names the church outright, then links the code."""
    with fresh.session() as s:
        s.scalars(
            select(Tenant).filter_by(slug="lagos")
        ).one().billing_email = "treasurer@lagoschapel.org"
    assert deliver(fresh, subscription_create()).status == "applied"
    assert count(fresh, ProviderAccount, kind="customer") == 0
    assert deliver(fresh, first_charge()).status == "applied"
    link = one(fresh, ProviderAccount, provider="paystack", kind="customer", external_id=CUSTOMER)
    assert link.tenant_id == one(fresh, Tenant, slug="lagos").id


def test_the_first_period_starts_with_the_subscription(subscribed: Database) -> None:
    sub = one(subscribed, Subscription, provider_subscription_id=SUB)
    assert (sub.current_period_start, sub.current_period_end) == (
        at("2026-11-01T08:00:00.000Z"),
        at("2026-12-01T00:00:00.000Z"),
    )


def test_a_completed_non_renewing_subscription_ends_at_its_period_end(
    subscribed: Database,
) -> None:
    """subscription.disable carries only the subscription's createdAt: a non-renewing one that
    completes is canceled at its period end, not the day it was created."""
    db = subscribed
    deliver(db, payload("paystack", "platform.subscription.not_renew"))
    deliver(db, payload("paystack", "platform.subscription.disable"))
    sub = one(db, Subscription, provider_subscription_id=SUB)
    assert (sub.status, sub.canceled_at) == ("canceled", at("2026-12-01T00:00:00.000Z"))
