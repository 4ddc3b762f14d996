"""Every command that shows money shows it the same way (faithflow_ops.money, the operator
style: `GHS 450.00`, `JPY 7,900`, `UGX 50,000`), over USD, NGN, GHS, KES, JPY and UGX — and
`--json` keeps integer minor units."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import pytest
from sqlalchemy import select

from faithflow_ops.billing.dispute_alerts import alert_body, alert_document
from faithflow_ops.billing.lifecycle import set_subscription_status
from faithflow_ops.db import Database
from faithflow_ops.models import Dispute, Invoice, Subscription, SubscriptionPlan, Tenant

NOW = dt.datetime(2026, 3, 2, 9, 0, tzinfo=dt.UTC)
D = dt.timedelta(days=1)

# currency, provider, minor units, how it is shown
CASES = [
    ("USD", "stripe", 7900, "USD 79.00"),
    ("NGN", "paystack", 1500000, "NGN 15,000.00"),
    ("GHS", "paystack", 45000, "GHS 450.00"),
    ("KES", "paystack", 150000, "KES 1,500.00"),
    ("JPY", "stripe", 7900, "JPY 7,900"),
    ("UGX", "stripe", 50000, "UGX 50,000"),
]
WRONG = ["45000 GHS", "1500000 NGN", "7900 USD", "500.00 UGX", "79.00 JPY", "7900 JPY"]


class World:
    def __init__(self, db: Database) -> None:
        self.db = db
        self.ids: dict[str, dict[str, Any]] = {}
        for currency, provider, minor, _ in CASES:
            self.add(currency, provider, minor)

    def add(self, currency: str, provider: str, minor: int) -> None:
        slug = f"church-{currency.lower()}"
        with self.db.session() as s:
            plan = SubscriptionPlan(
                code=f"growth-{currency.lower()}",
                name="Growth",
                amount_minor=minor,
                currency=currency,
                interval="month",
                metadata_={},
            )
            tenant = Tenant(
                slug=slug,
                name=f"Church {currency}",
                timezone="UTC",
                currency=currency,
                billing_email="treasurer@example.org",
            )
            s.add_all([plan, tenant])
            s.flush()
            sub = Subscription(
                tenant_id=tenant.id,
                plan_id=plan.id,
                provider=provider,
                provider_subscription_id=f"SUB_{slug}",
                status="active",
            )
            s.add(sub)
            s.flush()
            invoice = Invoice(
                tenant_id=tenant.id,
                subscription_id=sub.id,
                provider=provider,
                provider_invoice_id=f"in_{slug}",
                status="open",
                amount_due_minor=minor,
                amount_paid_minor=0,
                currency=currency,
            )
            s.add(invoice)
            s.flush()
            dispute = Dispute(
                tenant_id=tenant.id,
                scope="platform",
                provider=provider,
                provider_dispute_id=f"dp_{slug}",
                invoice_id=invoice.id,
                amount_minor=minor,
                currency=currency,
                reason="fraudulent",
                status="needs_response",
                evidence_due_by=NOW + 2 * D,
            )
            s.add(dispute)
            s.flush()
            set_subscription_status(s, sub, "past_due", NOW - 3 * D, "test:webhook")
            self.ids[currency] = {
                "plan": plan.code,
                "subscription": sub.id,
                "invoice": invoice.id,
                "dispute": dispute.id,
            }


@pytest.fixture
def world(db: Database) -> World:
    return World(db)


def shown(text: str) -> None:
    for currency, _, _, expected in CASES:
        assert expected in text, f"{currency}: {expected!r} not in\n{text}"
    for wrong in WRONG:
        assert wrong not in text, f"{wrong!r} shown in\n{text}"


def ok(cli: Any, *args: str) -> str:
    result = cli(*args)
    assert result.exit_code == 0, result.output
    return str(result.stdout)


def test_invoices_list_and_show(world: World, cli: Any) -> None:
    out = ok(cli, "invoices", "list")
    shown(out)
    assert "currency" in out.splitlines()[1]
    for currency, _, _, expected in CASES:
        assert expected in ok(cli, "invoices", "show", str(world.ids[currency]["invoice"]))
    doc = json.loads(ok(cli, "invoices", "list", "--json"))
    assert {d["currency"]: d["amount_due_minor"] for d in doc} == {c: m for c, _, m, _ in CASES}


def test_disputes_list_and_show(world: World, cli: Any) -> None:
    out = ok(cli, "disputes", "list")
    shown(out)
    assert "minor" not in out
    for currency, _, _, expected in CASES:
        assert expected in ok(cli, "disputes", "show", str(world.ids[currency]["dispute"]))
    doc = json.loads(ok(cli, "disputes", "list", "--json"))
    assert {d["currency"]: d["amount_minor"] for d in doc} == {c: m for c, _, m, _ in CASES}


def test_plans_list_and_show(world: World, cli: Any) -> None:
    shown(ok(cli, "plans", "list"))
    for currency, _, _, expected in CASES:
        assert expected in ok(cli, "plans", "show", world.ids[currency]["plan"])


def test_subs_show_invoices(world: World, cli: Any) -> None:
    for currency, _, _, expected in CASES:
        out = ok(cli, "subs", "show", str(world.ids[currency]["subscription"]))
        assert expected in out, out


def test_dunning_preview_and_run_tables(world: World, cli: Any) -> None:
    shown(ok(cli, "dunning", "preview", "--now", NOW.isoformat()))
    doc = json.loads(ok(cli, "dunning", "preview", "--json", "--now", NOW.isoformat()))
    amounts = {
        a["data"]["currency"]: a["data"]["amount_minor"]
        for a in doc["actions"]
        if "amount_minor" in a.get("data", {})
    }
    assert amounts == {c: m for c, _, m, _ in CASES}


def test_dunning_analytics(world: World, cli: Any) -> None:
    shown(ok(cli, "dunning", "analytics", "--now", NOW.isoformat()))


@pytest.mark.parametrize(("currency", "provider", "minor", "expected"), CASES)
def test_dispute_alert_text_and_email(
    world: World, currency: str, provider: str, minor: int, expected: str
) -> None:
    with world.db.read_session() as s:
        dispute = s.scalar(select(Dispute).where(Dispute.currency == currency))
        assert dispute is not None
        doc = alert_document(dispute, f"church-{currency.lower()}", 3, NOW)
    assert expected in doc["text"]
    assert f"Amount:          {expected}" in alert_body(doc)
    assert (doc["amount_minor"], doc["currency"]) == (minor, currency)  # machine fields unchanged
