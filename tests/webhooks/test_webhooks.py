"""Webhook handling through the inbox (the code every delivery and replay runs), on SQLite and
Postgres: effects, duplicates, order safety, unmatched events, failures and replay."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import pytest
from sqlalchemy import func, select
from webhook_support import payload, seed

from faithflow_ops.billing import lifecycle as effects
from faithflow_ops.db import Database
from faithflow_ops.dunning.suspension import suspend_tenant
from faithflow_ops.models import (
    AuditLog,
    Dispute,
    Invoice,
    Payment,
    ProviderAccount,
    Subscription,
    Tenant,
    WebhookEvent,
)
from faithflow_ops.webhooks import inbox
from faithflow_ops.webhooks.events import parse
from faithflow_ops.webhooks.inbox import Received


def deliver(db: Database, provider: str, name: str, doc: dict[str, Any] | None = None) -> Received:
    scope = name.split(".", 1)[0]
    return inbox.receive(db, parse(provider, scope, doc or payload(provider, name)))


def stripe(db: Database, name: str, doc: dict[str, Any] | None = None) -> Received:
    return deliver(db, "stripe", "platform." + name, doc)


def paystack(db: Database, name: str, doc: dict[str, Any] | None = None) -> Received:
    return deliver(db, "paystack", "platform." + name, doc)


def one(db: Database, model: Any, **where: Any) -> Any:
    with db.read_session() as s:
        return s.scalars(select(model).filter_by(**where)).one()


def count(db: Database, model: Any, **where: Any) -> int:
    with db.read_session() as s:
        return s.scalar(select(func.count()).select_from(model).filter_by(**where)) or 0


def at(epoch: int) -> dt.datetime:
    return dt.datetime.fromtimestamp(epoch, dt.UTC)


@pytest.fixture
def seeded(db: Database) -> Database:
    seed(db)
    return db


# --- Stripe, platform scope --------------------------------------------------------------------


def test_stripe_subscription_lifecycle_end_to_end(seeded: Database) -> None:
    db = seeded
    assert stripe(db, "checkout.session.completed").status == "applied"
    assert stripe(db, "customer.subscription.created").status == "applied"
    sub = one(db, Subscription, provider_subscription_id="sub_1QGraceGrowth")
    assert (sub.status, sub.provider_customer_id) == ("incomplete", "cus_QGrace01")
    assert stripe(db, "customer.subscription.updated").status == "applied"
    for name in ("invoice.created", "invoice.finalized"):
        assert stripe(db, name).status == "applied"
    assert one(db, Invoice, provider_invoice_id="in_1QGrace0001").status == "open"

    failed = payload("stripe", "platform.invoice.payment_failed")
    assert stripe(db, "invoice.payment_failed", failed).status == "applied"
    sub = one(db, Subscription, id=sub.id)
    assert sub.status == "past_due"
    assert sub.past_due_since == at(failed["created"])
    assert stripe(db, "invoice.payment_action_required").status == "applied"
    assert one(db, Subscription, id=sub.id).past_due_since == at(failed["created"])  # kept

    with db.session() as s:  # what `subs automate` does after the grace period
        suspend_tenant(s, "grace", reason="non_payment", actor="test")
    paid = stripe(db, "invoice.paid")
    assert paid.status == "applied"
    assert "reactivated" in (paid.detail or "")
    sub = one(db, Subscription, id=sub.id)
    assert (sub.status, sub.past_due_since) == ("active", None)
    assert one(db, Tenant, slug="grace").status == "active"
    assert count(db, AuditLog, action="tenant.reactivate") == 1
    invoice = one(db, Invoice, provider_invoice_id="in_1QGrace0001")
    assert (invoice.status, invoice.amount_paid_minor) == ("paid", 4900)
    assert invoice.metadata_["stripeChargeId"] == "ch_3QGraceInvoice1"
    assert stripe(db, "invoice.payment_succeeded").status == "applied"

    assert stripe(db, "customer.updated").status == "applied"
    assert one(db, Tenant, slug="grace").billing_email == "finance@gracechurch.org"

    for name in ("charge.dispute.created", "charge.dispute.updated", "charge.dispute.closed"):
        assert stripe(db, name).status == "applied"
    dispute = one(db, Dispute, provider_dispute_id="dp_1QGrace0001")
    assert (dispute.scope, dispute.status, dispute.invoice_id) == ("platform", "won", invoice.id)
    assert dispute.closed_at is not None

    assert stripe(db, "customer.subscription.deleted").status == "applied"
    sub = one(db, Subscription, id=sub.id)
    assert sub.status == "canceled" and sub.canceled_at is not None


def test_voided_and_uncollectible_invoices(seeded: Database) -> None:
    db = seeded
    stripe(db, "checkout.session.completed")
    stripe(db, "customer.subscription.updated")
    assert stripe(db, "invoice.voided").status == "applied"
    assert stripe(db, "invoice.marked_uncollectible").status == "applied"
    assert one(db, Invoice, provider_invoice_id="in_1QGrace0002").status == "void"
    assert one(db, Invoice, provider_invoice_id="in_1QGrace0003").status == "uncollectible"


def test_trial_will_end_records_the_trial(seeded: Database) -> None:
    db = seeded
    stripe(db, "checkout.session.completed")
    result = stripe(db, "customer.subscription.trial_will_end")
    assert result.status == "applied" and "trial ends" in (result.detail or "")
    assert one(db, Subscription, provider_subscription_id="sub_1QGraceGrowth").status == "trialing"


def test_a_duplicate_has_no_second_effect(seeded: Database) -> None:
    db = seeded
    stripe(db, "checkout.session.completed")
    stripe(db, "customer.subscription.updated")
    first = stripe(db, "invoice.payment_failed")
    audits = count(db, AuditLog)
    second = stripe(db, "invoice.payment_failed")
    assert (first.duplicate, second.duplicate) == (False, True)
    assert second.status == "applied" and second.delivery_count == 2
    assert count(db, Invoice) == 1 and count(db, AuditLog) == audits
    row = one(db, WebhookEvent, event_key=first.event_key)
    assert row.delivery_count == 2 and row.applied_at is not None


def test_updated_before_created_leaves_the_newer_state(seeded: Database) -> None:
    db = seeded
    stripe(db, "checkout.session.completed")
    assert stripe(db, "customer.subscription.updated").status == "applied"  # active, t=3
    late = stripe(db, "customer.subscription.created")  # incomplete, t=2
    assert late.status == "stale"
    assert one(db, Subscription, provider_subscription_id="sub_1QGraceGrowth").status == "active"


def test_deleted_before_created_ends_deleted_even_in_the_same_second(seeded: Database) -> None:
    db = seeded
    stripe(db, "checkout.session.completed")
    created = payload("stripe", "platform.customer.subscription.created")
    deleted = payload("stripe", "platform.customer.subscription.deleted")
    deleted["created"] = created["created"]  # Stripe times are whole seconds
    assert stripe(db, "customer.subscription.deleted", deleted).status == "applied"
    assert stripe(db, "customer.subscription.created", created).status == "stale"
    # Stripe never revives a deleted subscription: a later update is history too.
    assert stripe(db, "customer.subscription.updated").status == "stale"
    sub = one(db, Subscription, provider_subscription_id="sub_1QGraceGrowth")
    assert sub.status == "canceled"


def test_paid_is_not_undone_by_a_late_failure_or_finalized(seeded: Database) -> None:
    db = seeded
    stripe(db, "checkout.session.completed")
    stripe(db, "customer.subscription.updated")
    stripe(db, "invoice.paid")
    assert stripe(db, "invoice.finalized").status == "stale"
    assert stripe(db, "invoice.payment_failed").status == "stale"
    assert one(db, Invoice, provider_invoice_id="in_1QGrace0001").status == "paid"
    assert one(db, Subscription, provider_subscription_id="sub_1QGraceGrowth").status == "active"


def test_subscription_event_before_checkout_is_handled_once_the_customer_is_linked(
    db: Database,
) -> None:
    seed(db, link=False)
    doc = payload("stripe", "platform.customer.subscription.updated")
    del doc["data"]["object"]["metadata"]["tenant"]
    early = stripe(db, "customer.subscription.updated", doc)
    assert early.status == "unmatched" and "cus_QGrace01" in (early.detail or "")
    assert count(db, Subscription) == 0
    assert stripe(db, "checkout.session.completed").status == "applied"
    assert one(db, WebhookEvent, id=early.id).status == "applied"
    assert one(db, Subscription, provider_subscription_id="sub_1QGraceGrowth").status == "active"


def test_unknown_tenant_is_unmatched_then_replayed_once_after_linking(db: Database) -> None:
    seed(db, link=False)
    doc = payload("stripe", "platform.checkout.session.completed")
    doc["data"]["object"]["client_reference_id"] = "hope"
    doc["data"]["object"]["metadata"]["tenant"] = "hope"
    first = stripe(db, "checkout.session.completed", doc)
    assert first.status == "unmatched" and "'hope'" in (first.detail or "")
    assert inbox.replay(db, first.id, dry_run=True).status == "unmatched"
    with db.session() as s:
        s.add(Tenant(slug="hope", name="Hope Church"))
    dry = inbox.replay(db, first.id, dry_run=True)
    assert dry.status == "applied" and dry.detail and dry.detail.startswith("would be applied")
    assert count(db, ProviderAccount) == 0  # the dry run wrote nothing
    assert inbox.replay(db, first.id).status == "applied"
    assert count(db, ProviderAccount) == 1
    again = inbox.replay(db, first.id)
    assert again.duplicate and again.status == "applied"
    assert stripe(db, "checkout.session.completed", doc).duplicate


def test_unknown_price_says_which_metadata_to_set(seeded: Database) -> None:
    doc = payload("stripe", "platform.customer.subscription.created")
    doc["data"]["object"]["items"]["data"][0]["price"]["id"] = "price_Unknown"
    result = stripe(seeded, "customer.subscription.created", doc)
    assert result.status == "unmatched"
    assert "faithflow plans set-meta CODE stripePriceId=price_Unknown" in (result.detail or "")


def test_a_handler_error_is_kept_as_failed_with_nothing_half_written(
    seeded: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    db = seeded
    stripe(db, "checkout.session.completed")
    stripe(db, "customer.subscription.updated")

    def broken(*args: Any, **kwargs: Any) -> list[str]:
        raise RuntimeError("bug in the past-due rule")

    monkeypatch.setattr(effects, "set_subscription_status", broken)
    result = stripe(db, "invoice.payment_failed")
    assert result.status == "failed" and "bug in the past-due rule" in (result.detail or "")
    assert count(db, Invoice) == 0  # the invoice write was rolled back with the savepoint
    row = one(db, WebhookEvent, id=result.id)
    assert row.status == "failed" and "RuntimeError" in (row.last_error or "")
    monkeypatch.undo()
    assert inbox.replay(db, result.id).status == "applied"
    assert one(db, Subscription, provider_subscription_id="sub_1QGraceGrowth").status == "past_due"
    assert stripe(db, "invoice.payment_failed").duplicate
    assert count(db, Invoice) == 1


def test_unknown_types_are_stored_as_ignored(seeded: Database) -> None:
    doc = payload("stripe", "platform.customer.updated")
    doc["id"], doc["type"] = "evt_unknown_type", "product.created"
    result = stripe(seeded, "customer.updated", doc)
    assert result.status == "ignored" and "not handled" in (result.detail or "")


# --- Stripe, tenant scope (Connect) ------------------------------------------------------------


def test_connect_payments_refunds_and_disputes_belong_to_the_church(seeded: Database) -> None:
    db = seeded
    for name in (
        "payment_intent.processing",
        "payment_intent.succeeded",
        "payment_intent.payment_failed",
        "payment_intent.canceled",
        "charge.refunded",
        "charge.dispute.created",
        "charge.dispute.updated",
        "charge.dispute.closed",
    ):
        assert deliver(db, "stripe", "tenant." + name).status == "applied", name
    grace = one(db, Tenant, slug="grace")
    gift = one(db, Payment, provider_payment_id="pi_3QGift0001")
    assert (gift.tenant_id, gift.status, gift.amount_minor) == (
        grace.id,
        "partially_refunded",
        10000,
    )
    assert (gift.amount_refunded_minor, gift.purpose) == (4000, "giving")
    assert one(db, Payment, provider_payment_id="pi_3QGift0002").status == "failed"
    assert one(db, Payment, provider_payment_id="pi_3QGift0003").status == "canceled"
    dispute = one(db, Dispute, provider_dispute_id="dp_1QGift0001")
    assert (dispute.scope, dispute.status, dispute.payment_id) == ("tenant", "lost", gift.id)


def test_processing_after_succeeded_is_stale(seeded: Database) -> None:
    deliver(seeded, "stripe", "tenant.payment_intent.succeeded")
    doc = payload("stripe", "tenant.payment_intent.processing")
    assert deliver(seeded, "stripe", "tenant.payment_intent.processing", doc).status == "stale"
    assert one(seeded, Payment, provider_payment_id="pi_3QGift0001").status == "succeeded"


def test_an_unlinked_connect_account_is_unmatched(db: Database) -> None:
    seed(db, link=False)
    result = deliver(db, "stripe", "tenant.payment_intent.succeeded")
    assert result.status == "unmatched" and "acct_1QGraceConnect" in (result.detail or "")
    assert count(db, Payment) == 0


# --- Paystack ----------------------------------------------------------------------------------


def test_paystack_subscription_lifecycle(seeded: Database) -> None:
    db = seeded
    assert paystack(db, "subscription.create").status == "applied"
    sub = one(db, Subscription, provider_subscription_id="SUB_lagos0growth1")
    assert (sub.status, sub.provider_customer_id) == ("active", "CUS_lagos0chapel1")
    assert sub.metadata_["paystackEmailToken"] == "lagos0token01"
    assert sub.metadata_["paystackAuthorizationCode"] == "AUTH_lagos0auth1"  # for retries
    assert paystack(db, "invoice.create").status == "applied"
    failed = paystack(db, "invoice.payment_failed")
    assert failed.status == "applied"
    sub = one(db, Subscription, id=sub.id)
    assert sub.status == "past_due"
    assert sub.past_due_since == dt.datetime(2026, 11, 1, 8, 6, tzinfo=dt.UTC)
    with db.session() as s:
        suspend_tenant(s, "lagos", reason="non_payment", actor="test")
    paid = paystack(db, "invoice.update")
    assert paid.status == "applied" and "reactivated" in (paid.detail or "")
    assert one(db, Subscription, id=sub.id).status == "active"
    assert one(db, Tenant, slug="lagos").status == "active"
    assert one(db, Invoice, provider_invoice_id="INV_lagos0nov0001").currency == "NGN"

    assert paystack(db, "subscription.expiring_cards").status == "applied"
    assert one(db, Subscription, id=sub.id).metadata_["paystackCardExpiry"] == "12/2026"
    assert paystack(db, "subscription.not_renew").status == "applied"
    assert one(db, Subscription, id=sub.id).cancel_at_period_end is True
    assert paystack(db, "subscription.disable").status == "applied"
    assert one(db, Subscription, id=sub.id).status == "canceled"


def test_paystack_disable_before_create_stays_canceled(seeded: Database) -> None:
    db = seeded
    assert paystack(db, "subscription.disable").status == "applied"
    assert paystack(db, "subscription.create").status == "stale"
    sub = one(db, Subscription, provider_subscription_id="SUB_lagos0growth1")
    assert sub.status == "canceled"


def test_paystack_plan_charge_pays_only_its_own_invoice(seeded: Database) -> None:
    """A charge pays the invoice whose transaction reference it is, never the oldest open one
    (a December renewal once settled November's failed invoice)."""
    db = seeded
    paystack(db, "subscription.create")
    paystack(db, "invoice.create")
    paystack(db, "invoice.payment_failed")
    december = paystack(db, "charge.success")  # T_lagos0dec0001: not November's
    assert december.status == "applied"
    assert one(db, Invoice, provider_invoice_id="INV_lagos0nov0001").status == "open"
    assert one(db, Subscription, provider_subscription_id="SUB_lagos0growth1").status == (
        "past_due"
    )
    own = payload("paystack", "platform.charge.success")
    own["data"]["reference"] = "T_lagos0nov0001"  # November's own transaction
    assert paystack(db, "charge.success", own).status == "applied"
    assert one(db, Invoice, provider_invoice_id="INV_lagos0nov0001").status == "paid"
    assert one(db, Subscription, provider_subscription_id="SUB_lagos0growth1").status == "active"
    doc = payload("paystack", "platform.charge.success")
    doc["data"]["plan"] = {}
    doc["data"]["reference"] = "T_other"
    assert paystack(db, "charge.success", doc).status == "ignored"


def test_paystack_dunning_retry_charge_settles_through_its_case(seeded: Database) -> None:
    """A dunning retry charges the saved authorization: the charge.success carries no plan,
    only `metadata.dunning_case`; it pays the invoice and recovers the subscription."""
    from faithflow_ops.models import DunningCase

    db = seeded
    paystack(db, "subscription.create")
    paystack(db, "invoice.create")
    paystack(db, "invoice.payment_failed")
    case = one(db, DunningCase, status="open")
    doc = payload("paystack", "platform.charge.success")
    doc["data"]["plan"] = {}
    doc["data"]["reference"] = f"ff-dunning-{case.id}-day3"
    doc["data"]["metadata"] = json.dumps({"tenant": "lagos", "dunning_case": case.id})
    result = paystack(db, "charge.success", doc)
    assert result.status == "applied", result.detail
    assert one(db, Invoice, provider_invoice_id="INV_lagos0nov0001").status == "paid"
    assert one(db, Subscription, provider_subscription_id="SUB_lagos0growth1").status == "active"
    assert one(db, DunningCase, id=case.id).status == "recovered"
    doc["data"]["reference"] = "ff-dunning-999-day3"
    doc["data"]["metadata"] = {"dunning_case": 999}
    assert paystack(db, "charge.success", doc).status == "unmatched"


def test_paystack_disputes_on_both_scopes(seeded: Database) -> None:
    db = seeded
    paystack(db, "subscription.create")
    paystack(db, "invoice.update")
    for verb in ("create", "remind", "resolve"):
        assert paystack(db, f"charge.dispute.{verb}").status == "applied"
    platform = one(db, Dispute, provider_dispute_id="358950")
    invoice = one(db, Invoice, provider_invoice_id="INV_lagos0nov0001")
    assert (platform.scope, platform.status, platform.invoice_id) == (
        "platform",
        "resolved",
        invoice.id,
    )
    assert platform.metadata_["resolution"] == "merchant-accepted"

    assert deliver(db, "paystack", "tenant.charge.success").status == "applied"
    gift = one(db, Payment, provider_payment_id="T_lagos0gift001")
    lagos = one(db, Tenant, slug="lagos")
    assert (gift.tenant_id, gift.status, gift.purpose) == (lagos.id, "succeeded", "giving")
    for verb in ("create", "remind", "resolve"):
        assert deliver(db, "paystack", f"tenant.charge.dispute.{verb}").status == "applied"
    church = one(db, Dispute, provider_dispute_id="358977")
    assert (church.scope, church.payment_id, church.status) == ("tenant", gift.id, "resolved")


def test_paystack_tenant_charge_found_by_metadata_when_no_subaccount(db: Database) -> None:
    seed(db, link=False)
    doc = payload("paystack", "tenant.charge.success")
    doc["data"]["subaccount"] = {}
    doc["data"]["metadata"] = '{"tenant": "lagos", "purpose": "event_fee"}'  # a JSON string
    assert deliver(db, "paystack", "tenant.charge.success", doc).status == "applied"
    assert one(db, Payment, provider_payment_id="T_lagos0gift001").purpose == "event_fee"


def test_paystack_duplicate_delivery_counts_once(seeded: Database) -> None:
    first = deliver(seeded, "paystack", "tenant.charge.success")
    second = deliver(seeded, "paystack", "tenant.charge.success")
    assert second.duplicate and second.id == first.id
    assert count(seeded, Payment) == 1


def test_customer_ids_are_written_in_the_form_subs_backfill_uses(db: Database) -> None:
    seed(db, link=False)
    doc = payload("stripe", "platform.customer.subscription.created")
    doc["data"]["object"]["customer"] = " cus_QGrace01\n"  # as some payloads carry it
    assert stripe(db, "customer.subscription.created", doc).status == "applied"
    sub = one(db, Subscription, provider_subscription_id="sub_1QGraceGrowth")
    assert sub.provider_customer_id == "cus_QGrace01"
    doc = payload("paystack", "platform.subscription.create")
    with db.session() as s:
        s.add(
            ProviderAccount(
                tenant_id=one(db, Tenant, slug="lagos").id,
                provider="paystack",
                kind="customer",
                external_id="CUS_lagos0chapel1",
                source="test",
            )
        )
    doc["data"]["customer"]["customer_code"] = "  CUS_lagos0chapel1 "
    assert paystack(db, "subscription.create", doc).status == "applied"
    sub = one(db, Subscription, provider_subscription_id="SUB_lagos0growth1")
    assert sub.provider_customer_id == "CUS_lagos0chapel1"


def test_paystack_invoice_webhook_adopts_the_row_reconcile_imported(seeded: Database) -> None:
    """`invoices reconcile` imports a Paystack charge keyed by its transaction reference; the
    invoice webhook naming that reference takes the row over instead of adding a second."""
    db = seeded
    paystack(db, "subscription.create")
    sub = one(db, Subscription, provider_subscription_id="SUB_lagos0growth1")
    with db.session() as s:
        s.add(
            Invoice(
                tenant_id=sub.tenant_id,
                subscription_id=sub.id,
                provider="paystack",
                provider_invoice_id="T_lagos0nov0001",  # as reconcile imports it
                status="paid",
                amount_due_minor=1500000,
                amount_paid_minor=1500000,
                currency="NGN",
                metadata_={"paystackReference": "T_lagos0nov0001"},
            )
        )
    assert paystack(db, "invoice.update").status == "applied"
    assert count(db, Invoice) == 1
    invoice = one(db, Invoice, provider="paystack")
    assert invoice.provider_invoice_id == "INV_lagos0nov0001" and invoice.status == "paid"
