"""Issue 16: an event writes only the fields it carries. A signed `invoice.paid` without
`period_end` nulled the stored period end; every handler is checked here the same way: apply a
full event, then a newer one of the same object with fields left out, and the stored columns
those fields fill are unchanged (a field sent as `null` still writes NULL: Stripe's
`trial_end: null` means "no trial")."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import select
from webhook_support import payload, seed

from faithflow_ops.db import Database
from faithflow_ops.models import Dispute, Invoice, Payment, Subscription
from faithflow_ops.webhooks import inbox


def apply(db: Database, provider: str, name: str, doc: dict[str, Any]) -> str:
    event = inbox.parse_event(provider, name.split(".", 1)[0], doc)
    return inbox.receive(db, event).status


def later_stripe(name: str, seconds: int, *drop: str, **changes: Any) -> dict[str, Any]:
    doc = payload("stripe", name)
    doc["id"] += "_partial"
    doc["created"] += seconds
    for field in drop:
        doc["data"]["object"].pop(field)
    doc["data"]["object"].update(changes)
    return doc


def later_paystack(name: str, *drop: str, transaction: tuple[str, ...] = ()) -> dict[str, Any]:
    doc = payload("paystack", name)
    for field in drop:
        doc["data"].pop(field)
    for field in transaction:
        doc["data"]["transaction"].pop(field)
    doc["data"]["updatedAt"] = "2026-12-30T09:00:00.000Z"  # newer than the first
    return doc


# (case, provider, first fixture, first-event edits, the later event, model, where, columns)
CASES: list[tuple[str, str, str, dict[str, Any], Any, Any, dict[str, Any], list[str]]] = [
    (
        "stripe invoice.paid without its period, amounts, due date and currency",
        "stripe",
        "platform.invoice.created",
        {"due_date": 1796000000},
        lambda: later_stripe(
            "platform.invoice.paid",
            300,
            "period_end",
            "period_start",
            "due_date",
            "amount_due",
            "currency",
        ),
        Invoice,
        {"provider_invoice_id": "in_1QGrace0001"},
        ["period_end", "period_start", "due_at", "amount_due_minor", "currency"],
    ),
    (
        "stripe subscription.updated without trial_end and cancel_at_period_end",
        "stripe",
        "platform.customer.subscription.created",
        {"trial_end": 1796000000, "cancel_at_period_end": True},
        lambda: later_stripe(
            "platform.customer.subscription.updated",
            120,
            "trial_end",
            "cancel_at_period_end",
        ),
        Subscription,
        {"provider_subscription_id": "sub_1QGraceGrowth"},
        ["trial_end", "cancel_at_period_end"],
    ),
    (
        "stripe payment_intent.succeeded without amounts, currency and metadata",
        "stripe",
        "tenant.payment_intent.processing",
        {"currency": "eur"},
        lambda: later_stripe(
            "tenant.payment_intent.succeeded",
            60,
            "amount",
            "amount_received",
            "currency",
            "metadata",
        ),
        Payment,
        {"provider_payment_id": "pi_3QGift0001"},
        ["amount_minor", "currency", "metadata_", "purpose"],
    ),
    (
        "stripe charge.dispute.updated without amount, currency, reason, status",
        "stripe",
        "tenant.charge.dispute.created",
        {},
        lambda: later_stripe(
            "tenant.charge.dispute.updated",
            60,
            "amount",
            "currency",
            "reason",
            "status",
            "evidence_details",
        ),
        Dispute,
        {"provider_dispute_id": "dp_1QGift0001"},
        ["amount_minor", "currency", "reason", "status", "evidence_due_by"],
    ),
    (
        "paystack charge.success without id, amount, currency, metadata, paid_at",
        "paystack",
        "tenant.charge.success",
        {"currency": "GHS"},
        lambda: later_paystack(
            "tenant.charge.success", "id", "amount", "currency", "metadata", "paid_at", "paidAt"
        ),
        Payment,
        {"provider_payment_id": "T_lagos0gift001"},
        ["provider_charge_id", "amount_minor", "currency", "metadata_", "paid_at"],
    ),
    (
        "paystack charge.dispute.remind without amounts, currency, category, status",
        "paystack",
        "tenant.charge.dispute.create",
        {"currency": "GHS"},
        lambda: later_paystack(
            "tenant.charge.dispute.remind",
            "refund_amount",
            "currency",
            "category",
            "status",
            "dueAt",
            transaction=("amount", "currency"),
        ),
        Dispute,
        {"provider": "paystack"},
        ["amount_minor", "currency", "reason", "status", "evidence_due_by"],
    ),
]


def columns(db: Database, model: Any, where: dict[str, Any], names: list[str]) -> dict[str, Any]:
    with db.read_session() as s:
        row = s.scalars(select(model).filter_by(**where)).one()
        return {name: getattr(row, name) for name in names}


@pytest.mark.parametrize(
    ("provider", "first", "edits", "later", "model", "where", "kept"),
    [case[1:] for case in CASES],
    ids=[case[0] for case in CASES],
)
def test_a_field_the_event_leaves_out_keeps_its_stored_value(
    db: Database,
    provider: str,
    first: str,
    edits: dict[str, Any],
    later: Any,
    model: Any,
    where: dict[str, Any],
    kept: list[str],
) -> None:
    seed(db)
    doc = payload(provider, first)
    (doc["data"]["object"] if provider == "stripe" else doc["data"]).update(edits)
    assert apply(db, provider, first, doc) == "applied"
    before = columns(db, model, where, kept)
    assert all(value is not None for value in before.values()), before
    assert apply(db, provider, first, later()) == "applied"
    assert columns(db, model, where, kept) == before


@pytest.fixture
def seeded(db: Database) -> Database:
    seed(db)
    return db


def test_stripe_trial_end_null_clears_the_trial(seeded: Database) -> None:
    doc = payload("stripe", "platform.customer.subscription.created")
    doc["data"]["object"]["trial_end"] = 1796000000
    assert apply(seeded, "stripe", "platform.x", doc) == "applied"
    later = later_stripe("platform.customer.subscription.updated", 120, trial_end=None)
    assert apply(seeded, "stripe", "platform.x", later) == "applied"
    where = {"provider_subscription_id": "sub_1QGraceGrowth"}
    assert columns(seeded, Subscription, where, ["trial_end"]) == {"trial_end": None}
