"""Issue 16: one live subscription per tenant, from the webhooks' side. A subscription event
for a tenant whose live subscription was recorded by hand (same provider, no provider id) gives
that row its id; one for a tenant with another live subscription waits `unmatched`, naming it."""

from __future__ import annotations

import pytest
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
    assert "faithflow subs cancel --tenant grace --subscription 1" in result.detail
    assert subs(db) == [("paystack", None, "active")]


def _canceled_and_another_live(db: Database, provider: str, ref: str, tenant: str) -> int:
    """`ref` recorded and canceled for `tenant`, which has since taken another live one."""
    plan = "growth" if provider == "stripe" else "growth-ngn"
    other = "paystack" if provider == "stripe" else "stripe"
    with db.session() as s:
        add_subscription(s, tenant=tenant, plan=plan, provider=provider, actor="test",
                         provider_subscription_id=ref, status="canceled")  # fmt: skip
        live = add_subscription(s, tenant=tenant, plan=plan, provider=other, actor="test")
        return live.id


@pytest.mark.parametrize(
    ("provider", "name", "ref", "tenant"),
    [
        # https://docs.stripe.com/api/events/types#event_types-customer.subscription.updated
        ("stripe", "platform.customer.subscription.updated", "sub_1QGraceGrowth", "grace"),
        # https://paystack.com/docs/payments/subscriptions/#listen-for-subscription-events
        ("paystack", "platform.subscription.create", "SUB_lagos0growth1", "lagos"),
    ],
)
def test_an_event_reviving_a_canceled_subscription_waits_while_another_is_live(
    db: Database, provider: str, name: str, ref: str, tenant: str
) -> None:
    seed(db)
    live_id = _canceled_and_another_live(db, provider, ref, tenant)
    before = subs(db)
    doc = payload(provider, name)
    result = inbox.receive(db, inbox.parse_event(provider, "platform", doc))
    assert result.status == "unmatched", result.detail
    assert result.detail is not None
    assert f"tenant {tenant} already has live subscription {live_id}" in result.detail
    assert "would become active" in result.detail
    assert f"faithflow subs cancel --tenant {tenant} --subscription {live_id}" in result.detail
    assert subs(db) == before  # nothing written


def test_a_status_change_that_would_revive_one_is_refused_in_words(db: Database) -> None:
    """Every caller of the state machine meets the same check (the index's words)."""
    from faithflow_ops.billing.lifecycle import set_subscription_status
    from faithflow_ops.billing.live import SecondLiveSubscription

    seed(db)
    live_id = _canceled_and_another_live(db, "stripe", "sub_1QGraceGrowth", "grace")
    with db.session() as s:
        old = s.scalars(select(Subscription).where(Subscription.status == "canceled")).one()
        with pytest.raises(SecondLiveSubscription, match=f"live subscription {live_id}"):
            set_subscription_status(s, old, "past_due", old.created_at, "test")


def test_a_racing_writer_meets_the_index_and_hears_why(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two writers past the check at once: the second one's IntegrityError becomes a failed
    event naming the rule, retried later (when the check sees the first one)."""
    from faithflow_ops.billing import lifecycle

    seed(db)
    with db.session() as s:
        add_subscription(s, tenant="grace", plan="growth", provider="paystack", actor="test")
    monkeypatch.setattr(lifecycle, "live_subscription", lambda session, tenant_id: None)
    result = receive(db, "platform.customer.subscription.created")
    assert result.status == "failed"
    assert result.detail is not None
    assert "another live subscription for this tenant was recorded at the same moment" in (
        result.detail
    )
    assert subs(db) == [("paystack", None, "active")]


@pytest.mark.parametrize(
    ("provider", "name", "ref", "tenant"),
    [
        # https://docs.stripe.com/api/events/types#event_types-customer.subscription.deleted
        ("stripe", "platform.customer.subscription.deleted", "sub_1QGraceGrowth", "grace"),
        # https://paystack.com/docs/payments/subscriptions/#listen-for-subscription-events
        ("paystack", "platform.subscription.disable", "SUB_lagos0growth1", "lagos"),
    ],
)
def test_an_ended_subscription_is_recorded_as_history_beside_the_live_one(
    db: Database, provider: str, name: str, ref: str, tenant: str
) -> None:
    """An old subscription's end takes no live place: recorded canceled, the live one kept
    (no 'end the live one' advice for an event that changes nothing live)."""
    seed(db)
    other = "paystack" if provider == "stripe" else "stripe"
    plan = "growth" if provider == "stripe" else "growth-ngn"
    with db.session() as s:
        add_subscription(s, tenant=tenant, plan=plan, provider=other, actor="test")
    result = inbox.receive(db, inbox.parse_event(provider, "platform", payload(provider, name)))
    assert result.status == "applied", result.detail
    assert subs(db) == [(other, None, "active"), (provider, ref, "canceled")]
