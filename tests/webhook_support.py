"""Recorded provider payloads (tests/fixtures) and a seeded platform for webhook tests."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

from faithflow_ops.billing.plans import add_plan
from faithflow_ops.db import Database
from faithflow_ops.models import ProviderAccount
from faithflow_ops.tenancy.tenants import add_tenant

FIXTURES = Path(__file__).parent / "fixtures"


def payload(provider: str, name: str) -> dict[str, Any]:
    """A fresh copy of tests/fixtures/<provider>/<name>.json (e.g. "platform.invoice.paid")."""
    doc: dict[str, Any] = json.loads((FIXTURES / provider / f"{name}.json").read_text())
    return copy.deepcopy(doc)


def names(provider: str, scope: str | None = None) -> list[str]:
    found = sorted(path.stem for path in (FIXTURES / provider).glob("*.json"))
    return [name for name in found if scope is None or name.startswith(scope + ".")]


def seed(db: Database, *, link: bool = True) -> None:
    """Grace (USD, Stripe) and Lagos (NGN, Paystack) with their plans; `link` records the
    provider accounts the fixtures name (customers, Connect account, subaccount)."""
    with db.session() as s:
        grace = add_tenant(s, slug="grace", name="Grace Church", actor="test", currency="USD")
        lagos = add_tenant(s, slug="lagos", name="Lagos Chapel", actor="test", currency="NGN")
        add_plan(
            s,
            code="growth",
            name="Growth",
            amount="49",
            currency="USD",
            interval="month",
            actor="test",
            metadata={"stripePriceId": "price_1QGrowthMonthly"},
        )
        add_plan(
            s,
            code="growth-ngn",
            name="Growth (NGN)",
            amount="15000",
            currency="NGN",
            interval="month",
            actor="test",
            metadata={"paystackPlanCode": "PLN_growth0ngn01"},
        )
        s.flush()
        if link:
            for tenant, provider, kind, ref in (
                (grace.id, "stripe", "customer", "cus_QGrace01"),
                (grace.id, "stripe", "connect_account", "acct_1QGraceConnect"),
                (lagos.id, "paystack", "customer", "CUS_lagos0chapel1"),
                (lagos.id, "paystack", "subaccount", "ACCT_lagos0chapel1"),
            ):
                s.add(
                    ProviderAccount(
                        tenant_id=tenant,
                        provider=provider,
                        kind=kind,
                        external_id=ref,
                        source="test",
                    )
                )
