"""`faithflow subs cancel` through the CLI, on SQLite and Postgres, against the loopback
stand-ins for Stripe and Paystack (the real SDK / httpx code runs).

Answer shapes: Stripe "Cancel a subscription" (DELETE /v1/subscriptions/{id} answers the
subscription, status canceled) and "Update a subscription" (cancel_at_period_end); Paystack
"Disable Subscription" (POST /subscription/disable, {"status": true, "message": ...})."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from fakes.providers import FakeAPI, Reply, paystack_fake, stripe_error, stripe_fake
from helpers import said
from sqlalchemy import select

from faithflow_ops.cli import output
from faithflow_ops.db import Database
from faithflow_ops.models import AuditLog, Subscription

pytestmark = pytest.mark.filterwarnings("ignore:Use 'content=:DeprecationWarning")  # stripe SDK

NOW = "2026-03-01T09:00:00Z"
STRIPE_SUB = "sub_1CancelMe"
PAYSTACK_SUB = "SUB_cancelme"


@pytest.fixture(autouse=True)
def _fast_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAITHFLOW_PROVIDER_TIMEOUT", "0.3")
    monkeypatch.setenv("FAITHFLOW_PROVIDER_BACKOFF", "0.01")
    monkeypatch.setenv("FAITHFLOW_PROVIDER_MAX_ATTEMPTS", "2")


@pytest.fixture
def stripe(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeAPI]:
    with stripe_fake().serve() as fake:
        monkeypatch.setenv("STRIPE_SECRET_KEY", "sk_test_cancel")
        monkeypatch.setenv("STRIPE_API_BASE", fake.url)
        yield fake


@pytest.fixture
def paystack(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeAPI]:
    with paystack_fake().serve() as fake:
        monkeypatch.setenv("PAYSTACK_SECRET_KEY", "sk_test_ps")
        monkeypatch.setenv("PAYSTACK_API_BASE", fake.url)
        yield fake


def ok(result: Any) -> Any:
    assert result.exit_code == 0, result.stderr
    return result


@pytest.fixture
def platform(cli: Any, db: Database) -> Database:
    for args in (
        ("tenants", "add", "grace-lagos", "--name", "Grace", "--currency", "NGN"),
        ("tenants", "add", "cornerstone", "--name", "Cornerstone"),
        ("tenants", "add", "bethel", "--name", "Bethel"),
        ("plans", "add", "growth-ngn", "--name", "Growth", "--amount", "45000",
         "--currency", "NGN", "--interval", "month", "--meta", "paystackPlanCode=PLN_growth"),
        ("plans", "add", "growth-usd", "--name", "Growth", "--amount", "79",
         "--currency", "USD", "--interval", "month", "--meta", "stripePriceId=price_1Growth"),
        ("subs", "add", "--tenant", "cornerstone", "--plan", "growth-usd", "--provider", "stripe",
         "--provider-subscription-id", STRIPE_SUB, "--customer-id", "cus_Cancel1"),
        ("subs", "add", "--tenant", "grace-lagos", "--plan", "growth-ngn", "--provider",
         "paystack", "--provider-subscription-id", PAYSTACK_SUB, "--customer-id", "CUS_grace",
         "--meta", "paystackEmailToken=tok3n"),
        ("subs", "add", "--tenant", "bethel", "--plan", "growth-usd", "--provider", "stripe"),
    ):  # fmt: skip
        ok(cli(*args, "--json"))  # the rows, not a Rich record per add
    return db


def _sub(db: Database, slug_id: str) -> Subscription:
    with db.read_session() as session:
        sub = session.scalar(
            select(Subscription).where(Subscription.provider_subscription_id == slug_id)
        )
        assert sub is not None
        session.expunge(sub)
        return sub


def _cancel_actions(db: Database) -> list[AuditLog]:
    with db.read_session() as session:
        rows = list(
            session.scalars(
                select(AuditLog)
                .where(AuditLog.action == "subscription.cancel")
                .order_by(AuditLog.id)
            )
        )
        for row in rows:
            session.expunge(row)
        return rows


def test_stripe_cancel_now_deletes_at_stripe_and_records_canceled(
    cli: Any, platform: Database, stripe: FakeAPI
) -> None:
    path = f"/v1/subscriptions/{STRIPE_SUB}"
    body = {"id": STRIPE_SUB, "object": "subscription", "status": "canceled"}
    stripe.queue("DELETE", path, Reply(200, body))
    result = ok(cli("subs", "cancel", "--tenant", "cornerstone", "--yes", "--now", NOW, "--json"))
    doc = json.loads(result.stdout)
    assert doc["status"] == "canceled" and doc["canceled_at"].startswith("2026-03-01T09:00:00")
    assert doc["provider_calls"] == [f"DELETE {path}"]
    assert [(r.method, r.path) for r in stripe.requests] == [("DELETE", path)]
    assert _sub(platform, STRIPE_SUB).status == "canceled"
    [row] = _cancel_actions(platform)
    assert row.after is not None and row.after["status"] == "canceled"
    assert row.before == {"status": "active", "cancel_at_period_end": False}


def test_stripe_cancel_at_period_end_updates_and_keeps_the_status(
    cli: Any, platform: Database, stripe: FakeAPI
) -> None:
    path = f"/v1/subscriptions/{STRIPE_SUB}"
    body = {"id": STRIPE_SUB, "object": "subscription", "status": "active"}
    stripe.queue("POST", path, Reply(200, {**body, "cancel_at_period_end": True}))
    ok(cli("subs", "cancel", "--tenant", "cornerstone", "--at-period-end", "--yes"))
    [req] = stripe.requests
    assert (req.method, req.path) == ("POST", path)
    assert req.form() == {"cancel_at_period_end": "true"}
    assert "idempotency-key" in req.headers
    sub = _sub(platform, STRIPE_SUB)
    assert sub.status == "active" and sub.cancel_at_period_end is True
    again = cli("subs", "cancel", "--tenant", "cornerstone", "--at-period-end", "--yes")
    assert again.exit_code == 2
    assert "already ends at the period end" in said(again)


def test_an_operator_cancel_at_period_end_is_audited_as_the_operator_s_change(
    cli: Any, platform: Database, stripe: FakeAPI
) -> None:
    path = f"/v1/subscriptions/{STRIPE_SUB}"
    body = {"id": STRIPE_SUB, "object": "subscription", "status": "active"}
    stripe.queue("POST", path, Reply(200, {**body, "cancel_at_period_end": True}))
    ok(cli("subs", "cancel", "--tenant", "cornerstone", "--at-period-end", "--yes"))
    sub_id = str(_sub(platform, STRIPE_SUB).id)
    with platform.read_session() as session:
        rows = session.execute(
            select(AuditLog.action, AuditLog.actor, AuditLog.before, AuditLog.after)
            .where(AuditLog.entity_type == "subscription", AuditLog.entity_id == sub_id)
            .where(AuditLog.action != "subscription.add")
            .order_by(AuditLog.id)
        ).all()
    assert [row.action for row in rows] == ["subscription.renewal_change", "subscription.cancel"]
    assert all(row.actor.startswith("cli:") for row in rows)
    change = rows[0]
    assert change.before is not None and change.before["cancel_at_period_end"] is False
    assert change.after is not None and change.after["cancel_at_period_end"] is True


def test_paystack_cancel_disables_with_the_email_token(
    cli: Any, platform: Database, paystack: FakeAPI
) -> None:
    paystack.queue(
        "POST",
        "/subscription/disable",
        Reply(200, {"status": True, "message": "Subscription disabled successfully"}),
    )
    result = ok(cli("subs", "cancel", "--tenant", "grace-lagos", "--yes", "--now", NOW))
    [req] = paystack.requests
    assert (req.method, req.path) == ("POST", "/subscription/disable")
    assert req.json() == {"code": PAYSTACK_SUB, "token": "tok3n"}
    assert _sub(platform, PAYSTACK_SUB).status == "canceled"
    assert "Paystack refunds nothing" in said(result)


def test_dry_run_calls_and_writes_nothing(cli: Any, platform: Database, stripe: FakeAPI) -> None:
    result = ok(cli("subs", "cancel", "--tenant", "cornerstone", "--dry-run"))
    assert stripe.requests == []
    assert f"would call: DELETE /v1/subscriptions/{STRIPE_SUB}" in said(result)
    assert "nothing was sent or written" in said(result)
    assert _sub(platform, STRIPE_SUB).status == "active"
    assert _cancel_actions(platform) == []


def test_without_a_terminal_and_without_yes_it_refuses(
    cli: Any, platform: Database, stripe: FakeAPI
) -> None:
    result = cli("subs", "cancel", "--tenant", "cornerstone")
    assert result.exit_code == 2
    assert "not confirmed (no terminal to ask on); pass --yes" in said(result)
    assert stripe.requests == [] and _sub(platform, STRIPE_SUB).status == "active"


def test_on_a_terminal_it_asks_and_no_changes_nothing(
    cli: Any, platform: Database, stripe: FakeAPI, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(output, "stdin_is_terminal", lambda: True)
    result = cli("subs", "cancel", "--tenant", "cornerstone", input="n\n")
    assert result.exit_code == 1
    assert "cancel subscription" in result.stderr and "nothing changed" in said(result)
    assert stripe.requests == [] and _sub(platform, STRIPE_SUB).status == "active"


def test_a_provider_failure_records_nothing(cli: Any, platform: Database, stripe: FakeAPI) -> None:
    path = f"/v1/subscriptions/{STRIPE_SUB}"
    stripe.queue("DELETE", path, stripe_error(404, f"No such subscription: '{STRIPE_SUB}'"))
    result = cli("subs", "cancel", "--tenant", "cornerstone", "--yes")
    assert result.exit_code == 2 and "Traceback" not in result.stderr  # Stripe refused: 4xx
    assert "not canceled, nothing recorded" in said(result)
    assert _sub(platform, STRIPE_SUB).status == "active"
    assert _cancel_actions(platform) == []


def test_without_a_provider_id_it_cancels_here_only(cli: Any, platform: Database) -> None:
    result = ok(cli("subs", "cancel", "--tenant", "bethel", "--yes", "--json"))
    assert json.loads(result.stdout)["status"] == "canceled"
    assert "canceled here only" in said(result)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--tenant", "nobody"), "no tenant"),
        (("--tenant", "cornerstone", "--subscription", "999"), "no live subscription 999"),
    ],
)
def test_bad_input_is_refused(cli: Any, platform: Database, args: Any, message: str) -> None:
    result = cli("subs", "cancel", *args, "--yes")
    assert result.exit_code == 2, result.stderr
    assert message in said(result)


def test_a_tenant_with_nothing_live_is_refused(
    cli: Any, platform: Database, stripe: FakeAPI
) -> None:
    ok(cli("subs", "cancel", "--tenant", "bethel", "--yes"))
    result = cli("subs", "cancel", "--tenant", "bethel", "--yes")
    assert result.exit_code == 2
    assert "tenant bethel has no live subscription to cancel" in said(result)


def test_paystack_without_email_token_names_the_fix(
    cli: Any, platform: Database, paystack: FakeAPI
) -> None:
    ok(cli("tenants", "add", "zion", "--name", "Zion", "--currency", "NGN"))
    ok(cli("subs", "add", "--tenant", "zion", "--plan", "growth-ngn", "--provider", "paystack",
           "--provider-subscription-id", "SUB_zion"))  # fmt: skip
    result = cli("subs", "cancel", "--tenant", "zion", "--yes")
    assert result.exit_code == 2
    assert "no paystackEmailToken in its metadata" in said(result)
    assert paystack.requests == []
