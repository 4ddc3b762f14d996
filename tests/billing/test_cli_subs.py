"""`faithflow subs list|show|add` through the CLI, on SQLite and Postgres."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import pytest
from helpers import said
from sqlalchemy import func, select, update

from faithflow_ops.db import Database
from faithflow_ops.models import AuditLog, Invoice, Tenant

SUB_FIELDS = {
    "id", "tenant", "plan", "provider", "status", "provider_subscription_id",
    "provider_customer_id", "past_due_since", "current_period_end", "trial_end",
    "current_period_start", "cancel_at_period_end", "canceled_at", "metadata",
    "provider_state_at", "provider_state_rank", "trial_notice_for", "tenant_id", "plan_id",
    "created_at",
    "updated_at",
}  # fmt: skip


@pytest.fixture
def platform(cli: Any, db: Database) -> Database:
    """Two tenants and a plan on each provider."""
    for args in (
        ("tenants", "add", "grace-lagos", "--name", "Grace", "--currency", "NGN"),
        ("tenants", "add", "cornerstone", "--name", "Cornerstone"),
        ("plans", "add", "growth-ngn", "--name", "Growth", "--amount", "45000",
         "--currency", "NGN", "--interval", "month", "--meta", "paystackPlanCode=PLN_growth"),
        ("plans", "add", "growth-usd", "--name", "Growth", "--amount", "79",
         "--currency", "USD", "--interval", "month", "--meta", "stripePriceId=price_1Growth"),
    ):  # fmt: skip
        result = cli(*args, "--json")  # the rows, not a Rich record per add
        assert result.exit_code == 0, result.stderr
    return db


def add_sub(cli: Any, *args: str) -> dict[str, Any]:
    result = cli("subs", "add", *args, "--json")
    assert result.exit_code == 0, result.stderr
    doc: dict[str, Any] = json.loads(result.stdout)
    return doc


def test_add_records_a_subscription_whose_json_uses_column_names(cli, platform: Database) -> None:
    doc = add_sub(
        cli, "--tenant", "cornerstone", "--plan", "growth-usd", "--provider", "stripe",
        "--provider-subscription-id", "sub_1MowQVLkdIwHu7ix", "--customer-id", "cus_NffrFeUfNV2Hib",
        "--current-period-end", "2026-04-01T00:00:00Z", "--meta", "source=manual",
    )  # fmt: skip
    assert set(doc) == SUB_FIELDS
    assert doc["tenant"] == "cornerstone" and doc["plan"] == "growth-usd"
    assert doc["provider"] == "stripe" and doc["status"] == "active"
    assert doc["provider_subscription_id"] == "sub_1MowQVLkdIwHu7ix"
    assert doc["provider_customer_id"] == "cus_NffrFeUfNV2Hib"
    assert doc["current_period_end"] == "2026-04-01T00:00:00+00:00"
    assert doc["past_due_since"] is None and doc["metadata"] == {"source": "manual"}
    with platform.read_session() as s:
        row = s.scalars(select(AuditLog).where(AuditLog.action == "subscription.add")).one()
    assert row.actor.startswith("cli:") and row.entity_id == str(doc["id"])
    assert row.after is not None and row.after["tenant"] == "cornerstone"


def test_an_overdue_subscription_starts_its_past_due_clock(cli, platform: Database) -> None:
    now = dt.datetime.now(dt.UTC)
    doc = add_sub(cli, "--tenant", "grace-lagos", "--plan", "growth-ngn", "--provider",
                  "paystack", "--status", "past_due")  # fmt: skip
    since = dt.datetime.fromisoformat(doc["past_due_since"])
    assert abs((since - now).total_seconds()) < 60
    given = add_sub(cli, "--tenant", "cornerstone", "--plan", "growth-ngn", "--provider",
                    "paystack", "--status", "unpaid", "--past-due-since", "2026-02-01")  # fmt: skip
    assert given["past_due_since"] == "2026-02-01T00:00:00+00:00"


def test_a_trialing_subscription_keeps_its_trial_end(cli, platform: Database) -> None:
    doc = add_sub(cli, "--tenant", "grace-lagos", "--plan", "growth-ngn", "--provider",
                  "paystack", "--status", "trialing", "--trial-end",
                  "2026-03-15T12:00:00+01:00")  # fmt: skip
    assert doc["trial_end"] == "2026-03-15T11:00:00+00:00"


def test_list_json_has_tenant_plan_and_provider_ids_and_filters(cli, platform: Database) -> None:
    add_sub(cli, "--tenant", "grace-lagos", "--plan", "growth-ngn", "--provider", "paystack",
            "--provider-subscription-id", "SUB_vsyqdmlzble3uii", "--customer-id",
            "CUS_xnxdt6s1zg1f4nx")  # fmt: skip
    add_sub(cli, "--tenant", "cornerstone", "--plan", "growth-usd", "--provider", "stripe",
            "--status", "past_due")  # fmt: skip
    result = cli("subs", "list", "--json")
    assert result.exit_code == 0, result.stderr
    docs = json.loads(result.stdout)
    assert [d["tenant"] for d in docs] == ["grace-lagos", "cornerstone"]
    assert set(docs[0]) == SUB_FIELDS
    assert docs[0]["plan"] == "growth-ngn"
    assert docs[0]["provider_subscription_id"] == "SUB_vsyqdmlzble3uii"
    assert docs[0]["provider_customer_id"] == "CUS_xnxdt6s1zg1f4nx"

    def slugs(*args: str) -> list[str]:
        out = cli("subs", "list", *args, "--json")
        assert out.exit_code == 0, out.stderr
        return [d["tenant"] for d in json.loads(out.stdout)]

    assert slugs("--status", "past_due") == ["cornerstone"]
    assert slugs("--tenant", "grace-lagos") == ["grace-lagos"]
    assert slugs("--provider", "stripe") == ["cornerstone"]
    assert slugs("--status", "canceled") == []


def test_list_says_when_the_limit_hides_rows(cli, platform: Database) -> None:
    for status in ("canceled", "canceled", "active"):  # one live subscription per tenant
        add_sub(cli, "--tenant", "cornerstone", "--plan", "growth-usd", "--provider", "stripe",
                "--status", status)  # fmt: skip
    result = cli("subs", "list", "--limit", "2", "--json")
    assert len(json.loads(result.stdout)) == 2
    assert "showing 2 of 3; raise --limit to see more" in said(result)
    table = cli("subs", "list")
    assert table.exit_code == 0 and "growth" in table.stdout
    assert "3 subscriptions" in said(table)


def test_show_json_has_the_subscription_and_its_invoices(cli, platform: Database) -> None:
    doc = add_sub(cli, "--tenant", "cornerstone", "--plan", "growth-usd", "--provider", "stripe")
    with platform.session() as s:
        tenant_id = s.scalars(select(Tenant.id).where(Tenant.slug == "cornerstone")).one()
        s.add(
            Invoice(
                tenant_id=tenant_id, subscription_id=doc["id"], provider="stripe",
                provider_invoice_id="in_1MtHbE", status="open", amount_due_minor=7900,
                currency="USD", due_at=dt.datetime(2026, 3, 1, tzinfo=dt.UTC),
            )
        )  # fmt: skip
    result = cli("subs", "show", str(doc["id"]), "--json")
    assert result.exit_code == 0, result.stderr
    shown = json.loads(result.stdout)
    assert shown["id"] == doc["id"] and shown["tenant"] == "cornerstone"
    assert shown["invoices"][0]["provider_invoice_id"] == "in_1MtHbE"
    assert shown["invoices"][0]["amount_due"] == "79.00"
    table = cli("subs", "show", str(doc["id"]))
    assert table.exit_code == 0 and "in_1MtHbE" in table.stdout


@pytest.mark.parametrize(
    ("currency", "amount_due"),
    [("MGA", "500"), ("ISK", "5.00"), ("JPY", "500"), ("UGX", "500")],
)
def test_show_reads_stripe_invoice_amounts_in_stripe_s_units(
    cli, platform: Database, currency: str, amount_due: str
) -> None:
    """A Stripe invoice's amount is stored as Stripe sent it: MGA is zero-decimal at Stripe
    (ISO says 2) and ISK two-decimal (ISO says 0), https://docs.stripe.com/currencies#zero-decimal
    and #special-cases. `subs show` must read it as `invoices show` does."""
    doc = add_sub(cli, "--tenant", "cornerstone", "--plan", "growth-usd", "--provider", "stripe")
    with platform.session() as s:
        tenant_id = s.scalars(select(Tenant.id).where(Tenant.slug == "cornerstone")).one()
        s.add(
            Invoice(
                tenant_id=tenant_id, subscription_id=doc["id"], provider="stripe",
                provider_invoice_id="in_1Zero", status="paid", amount_due_minor=500,
                amount_paid_minor=500, currency=currency,
            )
        )  # fmt: skip
    result = cli("subs", "show", str(doc["id"]), "--json")
    assert result.exit_code == 0, result.stderr
    [invoice] = json.loads(result.stdout)["invoices"]
    assert (invoice["amount_due"], invoice["amount_paid"]) == (amount_due, amount_due)


def test_show_an_unknown_subscription_exits_2(cli, db: Database) -> None:
    result = cli("subs", "show", "999")
    assert result.exit_code == 2
    assert "no subscription with id 999" in said(result)


def test_show_a_non_numeric_id_exits_2(cli, db: Database) -> None:
    result = cli("subs", "show", "sub_123")
    assert result.exit_code == 2
    assert "Invalid value for 'ID'" in said(result)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--tenant", "nope"), "no tenant with slug 'nope'"),
        (("--status", "late"), "status 'late' is not one of: trialing, active, past_due"),
        (("--provider", "paypal"), "provider 'paypal' is not one of: stripe, paystack"),
    ],
)
def test_list_refuses_unknown_filters(
    cli, db: Database, args: tuple[str, str], message: str
) -> None:
    result = cli("subs", "list", *args)
    assert result.exit_code == 2
    assert message in said(result)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--tenant", "nope"), "no tenant with slug 'nope'"),
        (("--plan", "nope"), "no plan with code 'nope'"),
        (("--provider", "paypal"), "provider 'paypal' is not one of: stripe, paystack"),
        (("--status", "late"), "status 'late' is not one of"),
        (
            ("--customer-id", "CUS_abc"),
            "Stripe customer id 'CUS_abc' is not valid: does not start with cus_",
        ),
        (
            ("--provider-subscription-id", "sub 123"),
            "Stripe subscription id 'sub 123' is not valid: contains whitespace",
        ),
        (("--status", "trialing"), "a trialing subscription needs its trial end (--trial-end)"),
        (("--past-due-since", "2026-02-01"), "a past-due time only fits an overdue status"),
        (
            ("--trial-end", "next week"),
            "--trial-end 'next week' is not an ISO-8601 time; use "
            "e.g. --trial-end 2026-03-01T09:00:00Z",
        ),
        (("--meta", "customer"), "--meta 'customer' is not KEY=VALUE"),
    ],
)
def test_add_refuses_bad_input_and_records_nothing(
    cli, platform: Database, args: tuple[str, str], message: str
) -> None:
    base = {"--tenant": "cornerstone", "--plan": "growth-usd", "--provider": "stripe"}
    extra = dict(zip(args[::2], args[1::2], strict=True))
    merged = {**base, **extra}
    flat = [part for pair in merged.items() for part in pair]
    result = cli("subs", "add", *flat)
    assert result.exit_code == 2
    assert message in said(result)
    assert json.loads(cli("subs", "list", "--json").stdout) == []


def test_a_provider_subscription_id_is_recorded_once(cli, platform: Database) -> None:
    first = add_sub(cli, "--tenant", "cornerstone", "--plan", "growth-usd", "--provider",
                    "stripe", "--provider-subscription-id", "sub_1Once")  # fmt: skip
    result = cli("subs", "add", "--tenant", "grace-lagos", "--plan", "growth-usd", "--provider",
                 "stripe", "--provider-subscription-id", "sub_1Once")  # fmt: skip
    assert result.exit_code == 2
    assert (
        f"stripe subscription 'sub_1Once' is already recorded as subscription {first['id']}"
        in said(result)
    )


def test_an_archived_tenant_gets_no_new_subscription(cli, platform: Database) -> None:
    with platform.session() as s:
        s.execute(update(Tenant).where(Tenant.slug == "cornerstone").values(status="archived"))
    result = cli("subs", "add", "--tenant", "cornerstone", "--plan", "growth-usd",
                 "--provider", "stripe")  # fmt: skip
    assert result.exit_code == 2
    assert "tenant 'cornerstone' is archived" in said(result)


@pytest.mark.parametrize("status", ["active", "trialing", "past_due", "incomplete", "suspended"])
def test_a_second_live_subscription_for_a_tenant_is_refused(
    cli, platform: Database, status: str
) -> None:
    first = add_sub(cli, "--tenant", "cornerstone", "--plan", "growth-usd", "--provider",
                    "stripe", "--status", status,
                    "--trial-end", "2026-04-01T00:00:00Z")  # fmt: skip
    for provider in ("stripe", "paystack"):  # paystack: a provider the plan has no id for
        result = cli("subs", "add", "--tenant", "cornerstone", "--plan", "growth-usd",
                     "--provider", provider)  # fmt: skip
        assert result.exit_code == 2
        message = said(result)
        assert f"tenant 'cornerstone' already has live subscription {first['id']}" in message
        assert "faithflow subs cancel --tenant cornerstone" in message
        assert "faithflow subs change-plan" in message
    subs = json.loads(cli("subs", "list", "--json").stdout)
    assert [s["id"] for s in subs] == [first["id"]]


def test_a_canceled_subscription_leaves_room_for_a_new_one(cli, platform: Database) -> None:
    old = add_sub(cli, "--tenant", "cornerstone", "--plan", "growth-usd", "--provider", "stripe",
                  "--status", "canceled")  # fmt: skip
    new = add_sub(cli, "--tenant", "cornerstone", "--plan", "growth-usd", "--provider", "stripe")
    also = add_sub(cli, "--tenant", "grace-lagos", "--plan", "growth-ngn", "--provider",
                   "paystack")  # fmt: skip
    assert len({old["id"], new["id"], also["id"]}) == 3


def test_add_refuses_a_retired_plan_and_records_nothing(cli, platform: Database) -> None:
    assert cli("plans", "deactivate", "growth-usd").exit_code == 0
    with platform.read_session() as s:
        audited = s.scalar(select(func.count()).select_from(AuditLog))
    result = cli("subs", "add", "--tenant", "cornerstone", "--plan", "growth-usd",
                 "--provider", "stripe")  # fmt: skip
    assert result.exit_code == 2
    assert said(result) == (
        "error: plan growth-usd is not active (retired), so no new subscription can be "
        "recorded on it; choose an active plan (`faithflow plans list`)"
    )
    assert json.loads(cli("subs", "list", "--json").stdout) == []
    with platform.read_session() as s:
        assert s.scalar(select(func.count()).select_from(AuditLog)) == audited
