"""Dunning cases open and close with the subscription: from the webhooks (Stripe
`invoice.payment_failed`, `invoice.paid`, `customer.subscription.deleted`), from `subs automate`
(mark_past_due, suspension) and from a tenant's suspension — on SQLite and Postgres."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from sqlalchemy import func, select
from webhook_support import payload, seed

from faithflow_ops.config import Settings
from faithflow_ops.db import Database
from faithflow_ops.dunning import cases
from faithflow_ops.dunning.suspension import suspend_tenant
from faithflow_ops.jobs import registry
from faithflow_ops.jobs.base import JobContext
from faithflow_ops.jobs.runner import run_job
from faithflow_ops.models import (
    AuditLog,
    Invoice,
    OutboundMessage,
    Subscription,
    SubscriptionPlan,
    Tenant,
)
from faithflow_ops.models.dunning import DunningCase
from faithflow_ops.webhooks import inbox
from faithflow_ops.webhooks.events import parse


def stripe(db: Database, name: str, doc: dict[str, Any] | None = None) -> str:
    received = inbox.receive(
        db, parse("stripe", "platform", doc or payload("stripe", "platform." + name))
    )
    return str(received.status)


def at(epoch: int) -> dt.datetime:
    return dt.datetime.fromtimestamp(epoch, dt.UTC)


def all_cases(db: Database) -> list[DunningCase]:
    with db.read_session() as s:
        return list(s.scalars(select(DunningCase).order_by(DunningCase.id)))


def ctx(now: dt.datetime, dry_run: bool = False) -> JobContext:
    return JobContext(
        now=now, dry_run=dry_run, trigger="cli", settings=Settings.from_env({}), actor="test:job"
    )


@pytest.fixture
def grace_failed(db: Database) -> Database:
    """Grace Church's Stripe subscription, its invoice, and the failed payment."""
    seed(db)
    for name in (
        "checkout.session.completed",
        "customer.updated",  # the billing email the reminders go to
        "customer.subscription.created",
        "customer.subscription.updated",
        "invoice.created",
        "invoice.finalized",
        "invoice.payment_failed",
    ):
        assert stripe(db, name) == "applied", name
    return db


def test_a_stripe_payment_failure_opens_one_case_with_the_failed_invoice(
    grace_failed: Database,
) -> None:
    db = grace_failed
    failed = payload("stripe", "platform.invoice.payment_failed")
    [case] = all_cases(db)
    assert case.status == "open"
    assert (case.provider_invoice_id, case.amount_minor, case.currency) == (
        "in_1QGrace0001",
        4900,
        "USD",
    )
    assert case.past_due_since == at(failed["created"])
    assert case.opened_by.startswith("webhook:stripe:")
    # More failure news about the same episode never opens a second case.
    assert stripe(db, "invoice.payment_action_required") == "applied"
    again = payload("stripe", "platform.invoice.payment_failed")
    again["id"] = "evt_second_failure"
    again["created"] += 3600
    assert stripe(db, "invoice.payment_failed", again) == "applied"
    assert len(all_cases(db)) == 1
    with db.read_session() as s:
        opened = s.scalar(
            select(func.count()).select_from(AuditLog).where(AuditLog.action == "dunning_case.open")
        )
    assert opened == 1


def test_payment_closes_the_case_recovered_and_cancels_its_scheduled_messages(
    grace_failed: Database,
) -> None:
    db = grace_failed
    [case] = all_cases(db)
    # The ladder's first message, held by quiet hours (23:00 UTC: night in the default windows)
    night = case.past_due_since.replace(hour=23, minute=0, second=0)
    result = run_job(db, registry.get("dunning"), ctx(night))
    assert result.counts.get("send_step") == 1, result.to_dict()
    with db.read_session() as s:
        [message] = s.scalars(select(OutboundMessage)).all()
    assert message.status == "scheduled"
    assert stripe(db, "invoice.paid") == "applied"
    [case] = all_cases(db)
    # its one message was still held by quiet hours, then canceled: no step gets the credit
    assert (case.status, case.recovered_after_step) == ("recovered", None)
    assert case.closed_by is not None and case.closed_by.startswith("webhook:stripe:")
    with db.read_session() as s:
        message = s.get(OutboundMessage, message.id)
        assert message is not None
    assert message.status == "canceled"
    assert f"dunning case {case.id} closed as recovered" in (message.last_error or "")


def test_cancellation_closes_the_case_as_canceled(grace_failed: Database) -> None:
    assert stripe(grace_failed, "customer.subscription.deleted") == "applied"
    [case] = all_cases(grace_failed)
    assert case.status == "canceled" and case.closed_at is not None


def test_suspending_the_tenant_closes_its_cases_as_suspended(grace_failed: Database) -> None:
    db = grace_failed
    with db.session() as s:
        suspend_tenant(s, "grace", reason="non_payment", actor="test:ops")
    [case] = all_cases(db)
    assert (case.status, case.closed_by) == ("suspended", "test:ops")
    # Paid later: the tenant comes back; the closed case stays closed, no new one opens.
    assert stripe(db, "invoice.paid") == "applied"
    assert [c.status for c in all_cases(db)] == ["suspended"]
    # The next failure is a new episode: a new case.
    again = payload("stripe", "platform.invoice.payment_failed")
    again["id"], again["created"] = "evt_next_episode", again["created"] + 40 * 86400
    assert stripe(db, "invoice.payment_failed", again) == "applied"
    assert [c.status for c in all_cases(db)] == ["suspended", "open"]


def _paystack_period_ended(db: Database, now: dt.datetime) -> int:
    with db.session() as s:
        tenant = Tenant(slug="lagos", name="Lagos Chapel", timezone="Africa/Lagos")
        plan = SubscriptionPlan(
            code="growth-ngn",
            name="Growth",
            amount_minor=1500000,
            currency="NGN",
            interval="month",
            metadata_={"paystackPlanCode": "PLN_growth", "graceDays": 14},
        )
        s.add_all([tenant, plan])
        s.flush()
        sub = Subscription(
            tenant_id=tenant.id,
            plan_id=plan.id,
            provider="paystack",
            provider_subscription_id="SUB_lagos",
            status="active",
            current_period_end=now - dt.timedelta(days=2),
        )
        s.add(sub)
        s.flush()
        return sub.id


def test_subs_automate_mark_past_due_opens_a_case_with_the_plan_amount(db: Database) -> None:
    now = dt.datetime(2026, 3, 2, 9, 0, tzinfo=dt.UTC)
    sub_id = _paystack_period_ended(db, now)
    result = run_job(db, registry.get("subscriptions_automate"), ctx(now))
    assert result.counts["mark_past_due"] == 1
    [case] = all_cases(db)
    assert case.subscription_id == sub_id and case.status == "open"
    assert (case.amount_minor, case.currency, case.invoice_id) == (1500000, "NGN", None)
    assert case.past_due_since == now - dt.timedelta(days=2)  # the period end
    assert case.opened_by == "test:job"
    # Past the grace, once the dunning job took the final notice (the church has no contact:
    # recorded skipped, nothing to wait for), subs automate suspends: the case closes as such.
    later = now + dt.timedelta(days=13)
    held = run_job(db, registry.get("subscriptions_automate"), ctx(later, dry_run=True))
    assert held.counts == {"suspension_held": 1}
    run_job(db, registry.get("dunning"), ctx(later))
    result = run_job(db, registry.get("subscriptions_automate"), ctx(later))
    assert result.counts["suspend_tenant"] == 1
    [case] = all_cases(db)
    assert case.status == "suspended"


def test_open_case_is_idempotent_and_ignores_a_subscription_not_past_due(db: Database) -> None:
    now = dt.datetime(2026, 3, 2, 9, 0, tzinfo=dt.UTC)
    sub_id = _paystack_period_ended(db, now)
    with db.session() as s:
        sub = s.get(Subscription, sub_id)
        assert sub is not None
        assert cases.open_case(s, sub, now, "test") is None  # active: no case
        sub.status, sub.past_due_since = "past_due", now
        first = cases.open_case(s, sub, now, "test")
        assert first is not None
        assert cases.open_case(s, sub, now, "test") is None
    assert len(all_cases(db)) == 1


def test_close_cases_refuses_an_unknown_status(db: Database) -> None:
    with db.session() as s, pytest.raises(ValueError, match="closes as one of"):
        cases.close_cases(
            s, subscription_id=1, status="paid", at=dt.datetime.now(dt.UTC), actor="x"
        )


@pytest.mark.parametrize(
    ("currency", "stripe_due", "iso_minor", "shown"),
    [("MGA", 500, 50000, "MGA 500.00"), ("ISK", 500, 5, "ISK 5"), ("USD", 7900, 7900, "USD 79.00")],
)
def test_a_case_from_a_stripe_invoice_holds_the_amount_in_iso_units(
    db: Database, currency: str, stripe_due: int, iso_minor: int, shown: str
) -> None:
    """Stripe sends MGA zero-decimal and ISK two-decimal (https://docs.stripe.com/currencies
    #zero-decimal, #special-cases); a case's amount is read everywhere (the church's reminder,
    `dunning analytics`, the job's table) as ISO 4217 minor units, like a plan's."""
    from faithflow_ops.money import format_money

    now = dt.datetime(2026, 3, 2, 9, 0, tzinfo=dt.UTC)
    with db.session() as s:
        tenant = Tenant(slug="tana", name="Tana Chapel")
        plan = SubscriptionPlan(
            code="growth-x", name="Growth", amount_minor=iso_minor, currency=currency,
            interval="month", metadata_={},
        )  # fmt: skip
        s.add_all([tenant, plan])
        s.flush()
        sub = Subscription(
            tenant_id=tenant.id, plan_id=plan.id, provider="stripe",
            provider_subscription_id="sub_1Tana", status="past_due", past_due_since=now,
        )  # fmt: skip
        s.add(sub)
        s.flush()
        s.add(
            Invoice(
                tenant_id=tenant.id, subscription_id=sub.id, provider="stripe",
                provider_invoice_id="in_1Tana", status="open", amount_due_minor=stripe_due,
                currency=currency,
            )
        )  # fmt: skip
        s.flush()
        assert cases.open_case(s, sub, now, "test") is not None
    [case] = all_cases(db)
    assert (case.amount_minor, case.currency) == (iso_minor, currency)
    assert format_money(case.amount_minor, case.currency) == shown
