"""`faithflow plans deactivate|reprice` and the validation of `plans add` / `set-meta` (issue
16): a free plan, a provider id that is not one. On SQLite and Postgres."""

from __future__ import annotations

import json
from typing import Any

import pytest
from helpers import said
from sqlalchemy import func, select

from faithflow_ops.db import Database
from faithflow_ops.models import AuditLog, Subscription, SubscriptionPlan


def ok(result: Any) -> Any:
    assert result.exit_code == 0, result.stderr
    return result


def _plans(db: Database) -> dict[str, tuple[int, bool, dict[str, Any]]]:
    with db.read_session() as session:
        return {
            p.code: (p.amount_minor, p.active, dict(p.metadata_ or {}))
            for p in session.scalars(select(SubscriptionPlan))
        }


@pytest.fixture
def platform(cli: Any, db: Database) -> Database:
    for args in (
        ("tenants", "add", "cornerstone", "--name", "Cornerstone"),
        ("plans", "add", "growth", "--name", "Growth", "--amount", "79", "--currency", "USD",
         "--interval", "month", "--tier", "2", "--meta", "stripePriceId=price_1Growth",
         "--meta", "stripeProductId=prod_Growth"),
        ("subs", "add", "--tenant", "cornerstone", "--plan", "growth", "--provider", "stripe"),
    ):  # fmt: skip
        ok(cli(*args, "--json"))  # the rows, not a Rich record per add
    return db


# --- plans deactivate --------------------------------------------------------------------------


def test_deactivate_stops_sales_and_leaves_subscribers_alone(cli: Any, platform: Database) -> None:
    result = ok(cli("plans", "deactivate", "growth"))
    assert "no new subscriptions on it; 1 live subscription(s) keep it" in said(result)
    assert _plans(platform)["growth"][1] is False
    with platform.read_session() as session:
        assert session.scalar(select(Subscription.status)) == "active"
        assert session.scalar(select(func.count()).where(AuditLog.action == "plan.deactivate")) == 1
    checkout = cli("billing", "checkout", "--tenant", "cornerstone", "--plan", "growth")
    assert checkout.exit_code == 2 and "is not active" in said(checkout)
    again = ok(cli("plans", "deactivate", "growth"))
    assert "already inactive; nothing changed" in said(again)


def test_deactivate_an_unknown_plan(cli: Any, platform: Database) -> None:
    result = cli("plans", "deactivate", "nope")
    assert result.exit_code == 2 and "no plan with code 'nope'" in said(result)


# --- plans reprice -----------------------------------------------------------------------------


def test_reprice_adds_a_version_and_retires_the_old(cli: Any, platform: Database) -> None:
    result = ok(cli("plans", "reprice", "growth", "--amount", "89", "--json"))
    doc = json.loads(result.stdout)
    assert doc["code"] == "growth-v2" and doc["amount_minor"] == 8900
    assert doc["tier_rank"] == 2 and doc["interval"] == "month" and doc["active"] is True
    # the old price's id is not carried over; other metadata is, with the lineage
    assert doc["metadata"] == {"stripeProductId": "prod_Growth", "previousVersion": "growth"}
    assert "1 live subscription(s) stay on growth" in said(result)
    assert "growth-v2 has no stripePriceId" in said(result)
    plans = _plans(platform)
    assert plans["growth"][:2] == (7900, False)
    with platform.read_session() as session:
        plan_id = session.scalar(select(Subscription.plan_id))
        assert session.get(SubscriptionPlan, plan_id).code == "growth"  # type: ignore[union-attr]
    ok(cli("plans", "add", "pro", "--name", "Pro", "--amount", "1", "--currency", "USD",
           "--interval", "month"))  # fmt: skip
    third = ok(cli("plans", "reprice", "growth-v2", "--amount", "99",
                   "--meta", "stripePriceId=price_1GrowthV3", "--json"))  # fmt: skip
    assert json.loads(third.stdout)["code"] == "growth-v3"
    assert "has no stripePriceId" not in said(third)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("growth", "--amount", "79"), "plan growth already costs USD 79.00; nothing to change"),
        (("growth", "--amount", "0"), "is zero: free plans are not billed through a provider"),
        (("growth", "--amount", "1.001"), "too many decimals"),
        (("nope", "--amount", "5"), "no plan with code 'nope'"),
        (("growth", "--amount", "5", "--meta", "stripePriceId=bogus"),
         "stripePriceId 'bogus' is not a Stripe price id (does not start with price_)"),
        (("growth", "--amount", "5", "--code", "Bad Code"), "plan code 'Bad Code' is not valid"),
    ],
)  # fmt: skip
def test_reprice_refusals_change_nothing(
    cli: Any, platform: Database, args: Any, message: str
) -> None:
    before = _plans(platform)
    result = cli("plans", "reprice", *args)
    assert result.exit_code == 2, result.stderr
    assert message in said(result)
    assert _plans(platform) == before


def test_reprice_an_inactive_plan_is_refused(cli: Any, platform: Database) -> None:
    ok(cli("plans", "deactivate", "growth"))
    result = cli("plans", "reprice", "growth", "--amount", "5")
    assert result.exit_code == 2 and "plan growth is not active" in said(result)


# --- validation of plans add / set-meta ------------------------------------------------------


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (("--amount", "0"), "amount '0' is zero: free plans are not billed through a provider"),
        (("--amount", "0.00"), "is zero"),
        (("--amount", "5", "--meta", "stripePriceId=bogus"),
         "stripePriceId 'bogus' is not a Stripe price id (does not start with price_); write it "
         "as e.g. stripePriceId=price_1PGrowth"),
        (("--amount", "5", "--meta", "paystackPlanCode=pln_lower"),
         "paystackPlanCode 'pln_lower' is not a Paystack plan code (does not start with PLN_)"),
        (("--amount", "5", "--meta", "stripePriceId=price_with space"),
         "has characters other than letters and digits after price_"),
    ],
)  # fmt: skip
def test_add_refuses_free_plans_and_bogus_provider_ids(
    cli: Any, db: Database, extra: Any, message: str
) -> None:
    result = cli("plans", "add", "x1", "--name", "X", "--currency", "USD", "--interval",
                 "month", *extra)  # fmt: skip
    assert result.exit_code == 2, result.stderr
    assert message in said(result)
    assert _plans(db) == {}


def test_set_meta_refuses_bogus_provider_ids(cli: Any, platform: Database) -> None:
    before = _plans(platform)
    result = cli("plans", "set-meta", "growth", "paystackPlanCode=bogus")
    assert result.exit_code == 2
    assert "paystackPlanCode 'bogus' is not a Paystack plan code" in said(result)
    assert _plans(platform) == before
    ok(cli("plans", "set-meta", "growth", "paystackPlanCode=PLN_abc123"))
