"""`faithflow plans …` through the CLI, on SQLite and Postgres."""

from __future__ import annotations

import json
from typing import Any

import pytest
from helpers import said
from sqlalchemy import select

from faithflow_ops.billing.plans import format_amount, parse_amount
from faithflow_ops.db import Database
from faithflow_ops.errors import UserError
from faithflow_ops.models import AuditLog

GROWTH = (
    "plans", "add", "growth-monthly-usd", "--name", "Growth (monthly)", "--amount", "49.99",
    "--currency", "USD", "--interval", "month", "--tier", "2",
    "--meta", "stripePriceId=price_1PGrowth", "--meta", "stripeProductId=prod_Growth",
)  # fmt: skip


def show(cli: Any, code: str) -> dict[str, Any]:
    result = cli("plans", "show", code, "--json")
    assert result.exit_code == 0, result.stderr
    doc: dict[str, Any] = json.loads(result.stdout)
    return doc


def add(cli: Any, code: str, amount: str, currency: str, *extra: str) -> Any:
    return cli(
        "plans", "add", code, "--name", code, "--amount", amount, "--currency", currency,
        "--interval", "month", *extra,
    )  # fmt: skip


def test_add_stores_the_price_in_minor_units_and_json_uses_column_names(cli, db: Database) -> None:
    result = cli(*GROWTH)
    assert result.exit_code == 0, result.stderr
    assert "added plan growth-monthly-usd" in said(result)
    assert "USD 49.99 per month" in said(result)
    doc = show(cli, "growth-monthly-usd")
    assert doc["code"] == "growth-monthly-usd"
    assert doc["name"] == "Growth (monthly)"
    assert doc["amount_minor"] == 4999
    assert doc["amount"] == "49.99"
    assert doc["currency"] == "USD"
    assert doc["interval"] == "month"
    assert doc["tier_rank"] == 2
    assert doc["active"] is True
    assert doc["metadata"] == {"stripePriceId": "price_1PGrowth", "stripeProductId": "prod_Growth"}
    assert doc["subscriptions"] == {}


@pytest.mark.parametrize(
    ("amount", "currency", "minor"),
    [
        ("49.99", "USD", 4999),
        ("0.29", "USD", 29),  # float(0.29) * 100 == 28.999999999999996
        ("15000", "NGN", 1500000),
        ("15000.5", "ngn", 1500050),
        ("450.00", "GHS", 45000),
        ("1200", "JPY", 1200),
        ("1200.000", "JPY", 1200),
        ("1.234", "KWD", 1234),
        ("0.01", "USD", 1),  # zero is refused: test_plans_versions.py
    ],
)
def test_amounts_convert_exactly_by_the_currency_exponent(
    cli, db: Database, amount: str, currency: str, minor: int
) -> None:
    result = add(cli, "plan-x", amount, currency)
    assert result.exit_code == 0, result.stderr
    assert show(cli, "plan-x")["amount_minor"] == minor


@pytest.mark.parametrize(
    ("amount", "currency", "message"),
    [
        ("49.999", "USD", "amount '49.999' has too many decimals: USD takes at most 2 decimals"),
        ("100.5", "JPY", "amount '100.5' has too many decimals: JPY takes no decimals"),
        ("1.2345", "KWD", "KWD takes at most 3 decimals"),
        ("-5", "USD", "amount '-5' is not a price; write it in major units with a dot, e.g. 49.99"),
        ("1e3", "USD", "amount '1e3' is not a price"),
        ("1,000", "NGN", "amount '1,000' is not a price"),
        ("NaN", "USD", "amount 'NaN' is not a price"),
        ("10", "NAIRA", "currency 'NAIRA' is not an ISO 4217 code"),
        ("9999999999999999", "USD", "implausibly large"),
    ],
)
def test_bad_amounts_are_refused_never_rounded(
    cli, db: Database, amount: str, currency: str, message: str
) -> None:
    result = add(cli, "plan-x", amount, currency)
    assert result.exit_code == 2
    assert message in said(result)
    assert json.loads(cli("plans", "list", "--json").stdout) == []


def test_parse_amount_and_format_amount_round_trip() -> None:
    assert parse_amount("49.99", "USD") == 4999
    assert format_amount(4999, "USD") == "49.99"
    assert format_amount(1500000, "NGN") == "15000.00"
    assert format_amount(1200, "JPY") == "1200"
    assert format_amount(1234, "KWD") == "1.234"
    with pytest.raises(UserError):
        parse_amount("1.001", "GBP")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--interval", "week"), "interval 'week' is not one of: month, year"),
        (("--tier", "-1"), "tier -1 must be 0 or more"),
    ],
)
def test_bad_interval_or_tier_exits_2(
    cli, db: Database, args: tuple[str, str], message: str
) -> None:
    result = cli(
        "plans", "add", "plan-x", "--name", "X", "--amount", "10", "--currency", "USD",
        "--interval", "month", *args,
    )  # fmt: skip
    assert result.exit_code == 2
    assert message in said(result)


@pytest.mark.parametrize("code", ["Growth", "g", "growth monthly", "growth!"])
def test_a_bad_plan_code_is_refused(cli, db: Database, code: str) -> None:
    result = add(cli, code, "10", "USD")
    assert result.exit_code == 2
    assert f"plan code {code!r} is not valid" in said(result)


@pytest.mark.parametrize(
    ("meta", "message"),
    [
        (
            "stripePriceId",
            "--meta 'stripePriceId' is not KEY=VALUE; write it as e.g. "
            "--meta stripePriceId=price_123",
        ),
        ("=price_123", "--meta '=price_123' is not KEY=VALUE"),
        ("stripePriceId=", "--meta 'stripePriceId=' has no value after '='"),
    ],
)
def test_bad_meta_exits_2_naming_the_value_and_the_fix(
    cli, db: Database, meta: str, message: str
) -> None:
    result = add(cli, "plan-x", "10", "USD", "--meta", meta)
    assert result.exit_code == 2
    assert message in said(result)
    assert json.loads(cli("plans", "list", "--json").stdout) == []


def test_a_meta_key_given_twice_is_refused(cli, db: Database) -> None:
    result = add(cli, "plan-x", "10", "USD", "--meta", "a=1", "--meta", "a=2")
    assert result.exit_code == 2
    assert "--meta key 'a' is given twice" in said(result)


def test_meta_values_may_contain_equals_signs(cli, db: Database) -> None:
    assert add(cli, "plan-x", "10", "USD", "--meta", "note=a=b").exit_code == 0
    assert show(cli, "plan-x")["metadata"] == {"note": "a=b"}


def test_a_duplicate_code_is_refused(cli, db: Database) -> None:
    assert cli(*GROWTH).exit_code == 0
    result = add(cli, "growth-monthly-usd", "10", "USD")
    assert result.exit_code == 2
    assert "a plan with code 'growth-monthly-usd' already exists" in said(result)
    assert show(cli, "growth-monthly-usd")["amount_minor"] == 4999


def test_list_orders_by_tier_and_prints_a_table(cli, db: Database) -> None:
    assert cli(*GROWTH).exit_code == 0
    assert add(cli, "starter-ngn", "15000", "NGN", "--tier", "1",
               "--meta", "paystackPlanCode=PLN_abc").exit_code == 0  # fmt: skip
    docs = json.loads(cli("plans", "list", "--json").stdout)
    assert [d["code"] for d in docs] == ["starter-ngn", "growth-monthly-usd"]
    assert docs[0]["metadata"] == {"paystackPlanCode": "PLN_abc"}
    table = cli("plans", "list")
    assert table.exit_code == 0 and "PLN_abc" in table.stdout
    assert "2 plans" in said(table)


def test_show_prints_a_record(cli, db: Database) -> None:
    assert cli(*GROWTH).exit_code == 0
    result = cli("plans", "show", "growth-monthly-usd")
    assert result.exit_code == 0
    assert "metadata.stripePriceId" in result.stdout and "price_1PGrowth" in result.stdout
    assert "subscriptions: none" in said(result)


@pytest.mark.parametrize(
    "args",
    [("plans", "show", "nope"), ("plans", "set-meta", "nope", "a=b")],
)
def test_an_unknown_plan_exits_2_naming_the_code(cli, db: Database, args: tuple[str]) -> None:
    result = cli(*args)
    assert result.exit_code == 2
    assert "no plan with code 'nope'" in said(result)


def test_set_meta_sets_and_unsets_keys_keeping_the_others_and_audits(cli, db: Database) -> None:
    assert cli(*GROWTH).exit_code == 0
    result = cli(
        "plans", "set-meta", "growth-monthly-usd", "paystackPlanCode=PLN_growth",
        "stripePriceId=price_2New", "--unset", "stripeProductId", "--json",
    )  # fmt: skip
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["metadata"] == {
        "stripePriceId": "price_2New",
        "paystackPlanCode": "PLN_growth",
    }
    assert "set paystackPlanCode, set stripePriceId, unset stripeProductId" in said(result)
    with db.read_session() as s:
        row = s.scalars(select(AuditLog).where(AuditLog.action == "plan.set_meta")).one()
    assert row.actor.startswith("cli:") and row.entity_type == "subscription_plan"
    assert row.before == {"stripePriceId": "price_1PGrowth", "stripeProductId": "prod_Growth"}
    assert row.after == {"stripePriceId": "price_2New", "paystackPlanCode": "PLN_growth"}


def test_set_meta_with_nothing_new_changes_nothing(cli, db: Database) -> None:
    assert cli(*GROWTH).exit_code == 0
    result = cli("plans", "set-meta", "growth-monthly-usd", "stripePriceId=price_1PGrowth",
                 "--unset", "missingKey")  # fmt: skip
    assert result.exit_code == 0
    assert "missingKey was not set on growth-monthly-usd" in said(result)
    assert "nothing changed" in said(result)
    with db.read_session() as s:
        assert s.scalars(select(AuditLog).where(AuditLog.action == "plan.set_meta")).all() == []


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((), "nothing to change: give key=value pairs to set or keys to unset"),
        (
            ("stripePriceId",),
            "entry 'stripePriceId' is not KEY=VALUE; write it as e.g. stripePriceId=price_123",
        ),
        (("a=1", "--unset", "a"), "a: set and unset at once; choose one"),
        (("--unset", " "), "--unset needs a key name"),
    ],
)
def test_set_meta_refuses_bad_input(cli, db: Database, args: tuple[str, ...], message: str) -> None:
    assert cli(*GROWTH).exit_code == 0
    result = cli("plans", "set-meta", "growth-monthly-usd", *args)
    assert result.exit_code == 2
    assert message in said(result)


def test_add_writes_an_audit_entry(cli, db: Database) -> None:
    assert cli(*GROWTH).exit_code == 0
    with db.read_session() as s:
        row = s.scalars(select(AuditLog).where(AuditLog.action == "plan.add")).one()
    assert row.after is not None and row.after["amount_minor"] == 4999
    assert row.actor.startswith("cli:")
