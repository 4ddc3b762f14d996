"""Issue 16: one live subscription per tenant, from the webhooks' side. A subscription event
for a tenant whose live subscription was recorded by hand (same provider, no provider id) gives
that row its id; one for a tenant with another live subscription waits `unmatched`, naming it."""

from __future__ import annotations

from sqlalchemy import select
from webhook_support import payload, seed

from faithflow_ops.billing.subscriptions import add_subscription
from faithflow_ops.db import Database
from faithflow_ops.models import Subscription
from faithflow_ops.webhooks import inbox


def subs(db: Database) -> list[tuple[str, str | None, str]]:
    with db.read_session() as s:
        rows = s.scalars(select(Subscription).order_by(Subscription.id))
        return [(r.provider, r.provider_subscription_id, r.status) for r in rows]


def receive(db: Database, name: str) -> inbox.Received:
    doc = payload("stripe", name)
    return inbox.receive(db, inbox.parse_event("stripe", "platform", doc))


def test_a_hand_recorded_subscription_is_adopted_not_doubled(db: Database) -> None:
    seed(db)
    with db.session() as s:
        add_subscription(s, tenant="grace", plan="growth", provider="stripe", actor="test")
    result = receive(db, "platform.customer.subscription.created")
    assert result.status == "applied", result.detail
    assert subs(db) == [("stripe", "sub_1QGraceGrowth", "incomplete")]


def test_another_live_subscription_keeps_the_event_unmatched(db: Database) -> None:
    seed(db)
    with db.session() as s:
        add_subscription(s, tenant="grace", plan="growth", provider="paystack", actor="test")
    result = receive(db, "platform.customer.subscription.created")
    assert result.status == "unmatched"
    assert result.detail is not None and "already has live subscription 1" in result.detail
    assert "faithflow subs cancel --subscription 1" in result.detail
    assert subs(db) == [("paystack", None, "active")]
