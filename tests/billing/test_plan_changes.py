"""`faithflow subs change-plan`, `subs changes`, `subs cancel-change` through the CLI, on SQLite
and Postgres, against loopback stand-ins for Stripe and Paystack (the real SDK / httpx code runs).
The plan-change routes of the stand-ins live here (documented answer shapes)."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator
from typing import Any

import pytest
from fakes.providers import FakeAPI, Recorded, Reply, paystack_error, stripe_error
from helpers import said
from sqlalchemy import select, update

from faithflow_ops.billing.plan_change_rules import classify
from faithflow_ops.db import Database
from faithflow_ops.models import AuditLog, PlanChange, Subscription, SubscriptionPlan

pytestmark = pytest.mark.filterwarnings("ignore:Use 'content=:DeprecationWarning")  # stripe SDK

NOW = dt.datetime.now(dt.UTC).replace(microsecond=0)
PERIOD_START = (NOW - dt.timedelta(days=20)).replace(minute=0, second=0)
PERIOD_END = (NOW + dt.timedelta(days=10)).replace(minute=0, second=0)
SCHEDULE = "sub_sched_1Test"


# --- stand-ins -------------------------------------------------------------------------------


def _subscription(sub_id: str, price: str, schedule: str | None = None) -> dict[str, Any]:
    return {
        "id": sub_id,
        "object": "subscription",
        "status": "active",
        "schedule": schedule,
        "items": {
            "object": "list",
            "data": [
                {
                    "id": "si_Item1",
                    "object": "subscription_item",
                    "price": {"id": price, "object": "price"},
                    "quantity": 1,
                    "current_period_end": int(PERIOD_END.timestamp()),
                }
            ],
            "has_more": False,
            "url": f"/v1/subscription_items?subscription={sub_id}",
        },
    }


def _schedule(sub_id: str, status: str = "active") -> dict[str, Any]:
    return {
        "id": SCHEDULE,
        "object": "subscription_schedule",
        "subscription": sub_id,
        "status": status,
        "end_behavior": "release",
        "phases": [
            {
                "start_date": int(PERIOD_START.timestamp()),
                "end_date": int(PERIOD_END.timestamp()),
                "items": [{"price": "price_Growth", "quantity": 1}],
            }
        ],
    }


def _stripe(fake: FakeAPI, req: Recorded) -> Reply:
    parts = req.path.strip("/").split("/")
    if parts[:2] == ["v1", "subscriptions"] and len(parts) == 3:
        price = "price_Growth"
        if req.method == "POST":
            price = req.form().get("items[0][price]", price)
        return Reply(200, _subscription(parts[2], price))
    if req.method == "POST" and parts[:2] == ["v1", "subscription_schedules"]:
        if len(parts) == 2:
            return Reply(200, _schedule(req.form()["from_subscription"]))
        if len(parts) == 3:
            return Reply(200, _schedule("sub_Growth1"))
        if len(parts) == 4 and parts[3] == "release":
            return Reply(200, _schedule("sub_Growth1", status="released"))
    return stripe_error(404, f"Unrecognized request URL ({req.method}: {req.path}).")


def _paystack(fake: FakeAPI, req: Recorded) -> Reply:
    if req.method == "POST" and req.path == "/subscription/disable":
        return Reply(200, {"status": True, "message": "Subscription disabled successfully"})
    if req.method == "POST" and req.path == "/subscription/enable":
        return Reply(200, {"status": True, "message": "Subscription enabled successfully"})
    if req.method == "POST" and req.path == "/subscription":
        n = sum(1 for r in fake.requests if r.path == req.path)
        return Reply(
            200,
            {
                "status": True,
                "message": "Subscription successfully created",
                "data": {
                    "customer": 1173,
                    "plan": 28,
                    "integration": 100032,
                    "domain": "test",
                    "start": 1459296064,
                    "status": "active",
                    "quantity": 1,
                    "amount": 9000000,
                    "subscription_code": f"SUB_new{n}",
                    "email_token": f"tokNew{n}",
                    "id": 9,
                },
            },
        )
    return paystack_error(404, "Not found")


@pytest.fixture
def stripe(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeAPI]:
    with FakeAPI(_stripe).serve() as fake:
        monkeypatch.setenv("STRIPE_SECRET_KEY", "sk_test_cli")
        monkeypatch.setenv("STRIPE_API_BASE", fake.url)
        yield fake


@pytest.fixture
def paystack(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeAPI]:
    with FakeAPI(_paystack).serve() as fake:
        monkeypatch.setenv("PAYSTACK_SECRET_KEY", "sk_test_ps")
        monkeypatch.setenv("PAYSTACK_API_BASE", fake.url)
        yield fake


@pytest.fixture(autouse=True)
def _fast_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAITHFLOW_PROVIDER_TIMEOUT", "0.5")
    monkeypatch.setenv("FAITHFLOW_PROVIDER_BACKOFF", "0.01")
    monkeypatch.setenv("FAITHFLOW_PROVIDER_MAX_ATTEMPTS", "3")


def ok(result: Any) -> Any:
    assert result.exit_code == 0, result.stderr
    return result


def refused(result: Any, code: int = 2) -> str:
    assert result.exit_code == code, (result.exit_code, result.stdout, result.stderr)
    return said(result)


# --- data --------------------------------------------------------------------------------------


@pytest.fixture
def platform(cli: Any, db: Database) -> Database:
    """Plans in USD (Stripe) and NGN (Paystack) across tiers and intervals, and two tenants."""
    for args in (
        ("tenants", "add", "grace", "--name", "Grace", "--email", "treasurer@grace.example"),
        ("tenants", "add", "lagos", "--name", "Lagos", "--currency", "NGN",
         "--email", "treasurer@lagos.example"),
        ("plans", "add", "starter-usd", "--name", "Starter", "--amount", "29",
         "--currency", "USD", "--interval", "month", "--tier", "1",
         "--meta", "stripePriceId=price_Starter", "--meta", "stripeProductId=prod_S"),
        ("plans", "add", "growth-usd", "--name", "Growth", "--amount", "79",
         "--currency", "USD", "--interval", "month", "--tier", "2",
         "--meta", "stripePriceId=price_Growth", "--meta", "stripeProductId=prod_G"),
        ("plans", "add", "growth-usd-yearly", "--name", "Growth (yearly)", "--amount", "790",
         "--currency", "USD", "--interval", "year", "--tier", "2",
         "--meta", "stripePriceId=price_GrowthY", "--meta", "stripeProductId=prod_G"),
        ("plans", "add", "pro-usd", "--name", "Pro", "--amount", "199",
         "--currency", "USD", "--interval", "month", "--tier", "3",
         "--meta", "stripePriceId=price_Pro"),
        ("plans", "add", "growth-plus-usd", "--name", "Growth+", "--amount", "99",
         "--currency", "USD", "--interval", "month", "--tier", "2",
         "--meta", "stripePriceId=price_GrowthPlus"),
        ("plans", "add", "legacy-usd", "--name", "Legacy", "--amount", "500",
         "--currency", "USD", "--interval", "month", "--tier", "4",
         "--meta", "stripePriceId=price_Legacy"),
        ("plans", "add", "growth-ngn", "--name", "Growth", "--amount", "45000",
         "--currency", "NGN", "--interval", "month", "--tier", "2",
         "--meta", "paystackPlanCode=PLN_growth"),
        ("plans", "add", "pro-ngn", "--name", "Pro", "--amount", "90000",
         "--currency", "NGN", "--interval", "month", "--tier", "3",
         "--meta", "paystackPlanCode=PLN_pro"),
        ("plans", "add", "starter-ngn", "--name", "Starter", "--amount", "15000",
         "--currency", "NGN", "--interval", "month", "--tier", "1",
         "--meta", "paystackPlanCode=PLN_starter"),
    ):  # fmt: skip
        ok(cli(*args, "--json"))  # the rows, not a Rich record per add
    with db.session() as session:
        session.execute(
            update(SubscriptionPlan)
            .where(SubscriptionPlan.code == "legacy-usd")
            .values(active=False)
        )
    return db


def _stripe_sub(cli: Any, *, status: str = "active", plan: str = "growth-usd") -> None:
    ok(
        cli(
            "subs", "add", "--tenant", "grace", "--plan", plan, "--provider", "stripe",
            "--status", status, "--provider-subscription-id", "sub_Growth1",
            "--customer-id", "cus_Grace1", "--current-period-end", PERIOD_END.isoformat(),
        )
    )  # fmt: skip


def _paystack_sub(cli: Any) -> None:
    ok(
        cli(
            "subs", "add", "--tenant", "lagos", "--plan", "growth-ngn", "--provider", "paystack",
            "--provider-subscription-id", "SUB_old1", "--customer-id", "CUS_lagos1",
            "--current-period-end", PERIOD_END.isoformat(), "--meta", "paystackEmailToken=tokOld1",
        )
    )  # fmt: skip


@pytest.fixture
def stripe_sub(cli: Any, platform: Database, stripe: FakeAPI) -> Database:
    _stripe_sub(cli)
    return platform


@pytest.fixture
def paystack_sub(cli: Any, platform: Database, paystack: FakeAPI) -> Database:
    _paystack_sub(cli)
    return platform


def _changes(db: Database) -> list[PlanChange]:
    with db.read_session() as session:
        return list(session.scalars(select(PlanChange).order_by(PlanChange.id)))


def _sub(db: Database) -> Subscription:
    with db.read_session() as session:
        sub = session.scalar(select(Subscription).order_by(Subscription.id))
        assert sub is not None
        return sub


def _plan_code(db: Database, plan_id: int) -> str:
    with db.read_session() as session:
        plan = session.get(SubscriptionPlan, plan_id)
        assert plan is not None
        return plan.code


def _audit(db: Database, prefix: str) -> list[str]:
    with db.read_session() as session:
        return list(
            session.scalars(
                select(AuditLog.action)
                .where(AuditLog.action.like(f"{prefix}%"))
                .order_by(AuditLog.id)
            )
        )


def _change(cli: Any, *args: str) -> Any:
    return cli("subs", "change-plan", *args)


# --- classification ----------------------------------------------------------------------------


def _plan(code: str, amount: int, interval: str, tier: int) -> SubscriptionPlan:
    return SubscriptionPlan(
        code=code, amount_minor=amount, interval=interval, tier_rank=tier, currency="USD"
    )


def test_classification_by_tier_then_price_per_month_and_interval() -> None:
    growth = _plan("growth", 7900, "month", 2)
    assert classify(growth, _plan("pro", 19900, "month", 3)) == "upgrade"
    assert classify(growth, _plan("starter", 2900, "month", 1)) == "downgrade"
    # a higher tier is an upgrade even when it costs less per month
    assert classify(growth, _plan("pro-promo", 100, "year", 3)) == "upgrade"
    # same tier, another interval: an interval change, whatever the price
    assert classify(growth, _plan("growth-y", 79000, "year", 2)) == "interval_change"
    # same tier and interval: the price per month decides
    assert classify(growth, _plan("growth-plus", 9900, "month", 2)) == "upgrade"
    assert classify(growth, _plan("growth-lite", 5900, "month", 2)) == "downgrade"


@pytest.mark.parametrize(
    ("to", "extra", "kind", "at"),
    [
        ("pro-usd", (), "upgrade", "now"),
        ("growth-plus-usd", (), "upgrade", "now"),
        ("starter-usd", (), "downgrade", "period_end"),
        ("growth-usd-yearly", (), "interval_change", "period_end"),
        ("growth-usd", ("--interval", "year"), "interval_change", "period_end"),
    ],
)
def test_dry_run_classifies_defaults_the_timing_and_calls_nothing(
    cli: Any, stripe_sub: Database, stripe: FakeAPI, to: str, extra: tuple[str, ...], kind: str,
    at: str,
) -> None:  # fmt: skip
    result = ok(_change(cli, "--tenant", "grace", "--to", to, *extra, "--dry-run", "--json"))
    doc = json.loads(result.stdout)
    assert (doc["kind"], doc["at"], doc["dry_run"], doc["id"]) == (kind, at, True, None)
    assert doc["would_be"] == ("applied" if at == "now" else "scheduled")
    if to == "growth-usd":
        assert doc["to_plan"] == "growth-usd-yearly" and doc["to_interval"] == "year"
    if at == "now":
        assert doc["effective_at"] >= NOW.isoformat()
        assert any("proration_behavior=create_prorations" in c for c in doc["provider_calls"])
    else:
        assert doc["effective_at"] == PERIOD_END.isoformat()
        assert any("subscription_schedules" in c for c in doc["provider_calls"])
    assert stripe.requests == []
    assert _changes(stripe_sub) == []
    assert _audit(stripe_sub, "plan_change") == []
    assert "nothing was sent or written" in said(result)


def test_dry_run_table_lists_the_provider_calls(
    cli: Any, paystack_sub: Database, paystack: FakeAPI
) -> None:
    result = ok(_change(cli, "--tenant", "lagos", "--to", "starter-ngn", "--dry-run"))
    text = said(result)
    assert "would call: POST /subscription/disable code=SUB_old1" in text
    assert (
        f"would call: POST /subscription customer=CUS_lagos1 plan=PLN_starter "
        f"start_date={PERIOD_END.isoformat()}"
    ) in text
    assert paystack.requests == [] and _changes(paystack_sub) == []


def test_at_overrides_the_default(cli: Any, stripe_sub: Database, stripe: FakeAPI) -> None:
    up = json.loads(
        ok(_change(cli, "--tenant", "grace", "--to", "pro-usd", "--at", "period_end",
                   "--dry-run", "--json")).stdout
    )  # fmt: skip
    assert (up["at"], up["proration_behavior"]) == ("period_end", "none")
    down = json.loads(
        ok(_change(cli, "--tenant", "grace", "--to", "starter-usd", "--at", "now",
                   "--dry-run", "--json")).stdout
    )  # fmt: skip
    assert (down["at"], down["proration_behavior"]) == ("now", "none")
    assert stripe.requests == []


# --- refusals ----------------------------------------------------------------------------------


@pytest.mark.parametrize("status", ["past_due", "unpaid", "suspended"])
def test_no_change_while_payment_is_overdue(
    cli: Any, platform: Database, stripe: FakeAPI, status: str
) -> None:
    _stripe_sub(cli, status=status)
    text = refused(_change(cli, "--tenant", "grace", "--to", "pro-usd"))
    assert f"subscription 1 of grace is {status}: no plan change until it is settled" in text
    assert "collect the overdue payment first" in text
    assert stripe.requests == [] and _changes(platform) == []


def test_refuses_a_tenant_without_a_live_subscription(
    cli: Any, platform: Database, stripe: FakeAPI
) -> None:
    text = refused(_change(cli, "--tenant", "grace", "--to", "pro-usd"))
    assert "tenant grace has no active or trialing subscription to change" in text
    assert "faithflow billing checkout --tenant grace" in text
    _stripe_sub(cli, status="canceled")
    text = refused(_change(cli, "--tenant", "grace", "--to", "pro-usd"))
    assert "no active or trialing subscription" in text


def test_refuses_an_inactive_plan(cli: Any, stripe_sub: Database, stripe: FakeAPI) -> None:
    text = refused(_change(cli, "--tenant", "grace", "--to", "legacy-usd"))
    assert "plan legacy-usd is not active" in text and "faithflow plans list" in text
    assert stripe.requests == []


def test_refuses_a_plan_in_another_currency(
    cli: Any, stripe_sub: Database, stripe: FakeAPI
) -> None:
    text = refused(_change(cli, "--tenant", "grace", "--to", "pro-ngn"))
    assert "plan pro-ngn is billed in NGN but subscription 1 in USD" in text
    assert "choose a USD plan" in text


def test_refuses_the_same_plan_and_interval(
    cli: Any, stripe_sub: Database, stripe: FakeAPI
) -> None:
    text = refused(_change(cli, "--tenant", "grace", "--to", "growth-usd"))
    assert "already on growth-usd per month; nothing to change" in text
    assert "--interval year" in text
    text = refused(_change(cli, "--tenant", "grace", "--to", "growth-usd", "--interval", "month"))
    assert "nothing to change" in text


def test_refuses_an_interval_with_no_plan(cli: Any, stripe_sub: Database, stripe: FakeAPI) -> None:
    text = refused(_change(cli, "--tenant", "grace", "--to", "pro-usd", "--interval", "year"))
    assert "no active plan of its tier (3) and currency (USD) bills per year" in text
    text = refused(_change(cli, "--tenant", "grace", "--to", "pro-usd", "--interval", "week"))
    assert "--interval 'week' is not one of: month, year" in text
    text = refused(_change(cli, "--tenant", "grace", "--to", "pro-usd", "--at", "tomorrow"))
    assert "--at 'tomorrow' is not one of: now, period_end" in text
    assert stripe.requests == []


def test_refuses_a_second_scheduled_change_unless_replace(
    cli: Any, stripe_sub: Database, stripe: FakeAPI
) -> None:
    ok(_change(cli, "--tenant", "grace", "--to", "starter-usd"))
    before = len(stripe.requests)
    text = refused(_change(cli, "--tenant", "grace", "--to", "growth-usd-yearly"))
    assert "subscription 1 already has scheduled change 1 (downgrade to starter-usd" in text
    assert "pass --replace" in text and "faithflow subs cancel-change 1" in text
    assert len(stripe.requests) == before


def test_refuses_missing_provider_ids_and_keys(
    cli: Any, platform: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    _paystack_sub(cli)
    text = refused(_change(cli, "--tenant", "lagos", "--to", "pro-ngn"))
    assert "PAYSTACK_SECRET_KEY" in text
    monkeypatch.setenv("PAYSTACK_SECRET_KEY", "sk_test_ps")
    ok(cli("plans", "set-meta", "pro-ngn", "--unset", "paystackPlanCode"))
    text = refused(_change(cli, "--tenant", "lagos", "--to", "pro-ngn"))
    assert "plan pro-ngn has no paystackPlanCode" in text
    assert "faithflow plans set-meta pro-ngn paystackPlanCode=PLN_…" in text
    with platform.session() as session:
        session.execute(update(Subscription).values(metadata_={}))
    text = refused(_change(cli, "--tenant", "lagos", "--to", "starter-ngn"))
    assert "no paystackEmailToken in its metadata" in text


def test_refuses_a_period_end_change_without_a_period_end(
    cli: Any, stripe_sub: Database, stripe: FakeAPI
) -> None:
    with stripe_sub.session() as session:
        session.execute(update(Subscription).values(current_period_end=None))
    text = refused(_change(cli, "--tenant", "grace", "--to", "starter-usd"))
    assert "has no current period end recorded" in text and "use --at now" in text


# --- Stripe ------------------------------------------------------------------------------------


def test_stripe_upgrade_now_updates_the_price_with_proration(
    cli: Any, stripe_sub: Database, stripe: FakeAPI
) -> None:
    result = ok(
        _change(cli, "--tenant", "grace", "--to", "pro-usd", "--reason", "more campuses", "--json")
    )
    doc = json.loads(result.stdout)
    assert (doc["status"], doc["kind"], doc["to_plan"]) == ("applied", "upgrade", "pro-usd")
    get, post = stripe.requests
    assert (get.method, get.path) == ("GET", "/v1/subscriptions/sub_Growth1")
    assert (post.method, post.path) == ("POST", "/v1/subscriptions/sub_Growth1")
    assert post.form() == {
        "items[0][id]": "si_Item1",
        "items[0][price]": "price_Pro",
        "items[0][quantity]": "1",
        "proration_behavior": "create_prorations",
    }
    assert post.headers["idempotency-key"].startswith("ff-subscription-update-")
    assert "idempotency-key" not in get.headers
    [change] = _changes(stripe_sub)
    assert change.status == "applied" and change.applied_at is not None
    assert change.reason == "more campuses" and change.requested_by.startswith("cli:")
    assert (change.from_interval, change.to_interval) == ("month", "month")
    assert change.provider_refs["stripe_item"] == "si_Item1"
    assert change.provider_refs["proration_behavior"] == "create_prorations"
    assert _plan_code(stripe_sub, _sub(stripe_sub).plan_id) == "pro-usd"
    assert _audit(stripe_sub, "plan_change") == ["plan_change.apply"]
    assert _audit(stripe_sub, "subscription.plan_change") == ["subscription.plan_change"]


def test_stripe_downgrade_at_period_end_makes_a_schedule(
    cli: Any, stripe_sub: Database, stripe: FakeAPI
) -> None:
    doc = json.loads(ok(_change(cli, "--tenant", "grace", "--to", "starter-usd", "--json")).stdout)
    assert (doc["status"], doc["kind"]) == ("scheduled", "downgrade")
    assert doc["effective_at"] == PERIOD_END.isoformat()
    get, create, phases = stripe.requests
    assert get.method == "GET"
    assert (create.path, create.form()) == (
        "/v1/subscription_schedules",
        {"from_subscription": "sub_Growth1"},
    )
    assert phases.path == f"/v1/subscription_schedules/{SCHEDULE}"
    assert phases.form() == {
        "end_behavior": "release",
        "phases[0][items][0][price]": "price_Growth",
        "phases[0][items][0][quantity]": "1",
        "phases[0][start_date]": str(int(PERIOD_START.timestamp())),
        "phases[0][end_date]": str(int(PERIOD_END.timestamp())),
        "phases[1][items][0][price]": "price_Starter",
        "phases[1][items][0][quantity]": "1",
        "phases[1][proration_behavior]": "none",
    }
    for req in (create, phases):
        assert req.headers["idempotency-key"].startswith("ff-subscription-schedule-")
    [change] = _changes(stripe_sub)
    assert change.status == "scheduled" and change.provider_refs["stripe_schedule"] == SCHEDULE
    assert change.effective_at == PERIOD_END
    assert _plan_code(stripe_sub, _sub(stripe_sub).plan_id) == "growth-usd"  # not yet
    assert _audit(stripe_sub, "plan_change") == ["plan_change.schedule"]


def test_stripe_refusal_rejects_the_change(cli: Any, stripe_sub: Database, stripe: FakeAPI) -> None:
    stripe.queue(
        "POST",
        "/v1/subscriptions/sub_Growth1",
        stripe_error(400, "No such price: 'price_Pro'", code="resource_missing"),
    )
    result = _change(cli, "--tenant", "grace", "--to", "pro-usd", "--json")
    text = refused(result, 2)
    assert (
        "plan change 1 rejected: stripe refused subscription update (HTTP 400): "
        "No such price: 'price_Pro' (resource_missing)"
    ) in text
    assert json.loads(result.stdout)["status"] == "rejected"
    assert len(stripe.requests) == 2  # not retried
    [change] = _changes(stripe_sub)
    assert change.status == "rejected" and "No such price" in (change.error or "")
    assert _plan_code(stripe_sub, _sub(stripe_sub).plan_id) == "growth-usd"
    assert _audit(stripe_sub, "plan_change") == ["plan_change.reject"]


def test_stripe_5xx_is_retried_then_succeeds_with_the_same_key(
    cli: Any, stripe_sub: Database, stripe: FakeAPI
) -> None:
    stripe.queue(
        "POST", "/v1/subscriptions/sub_Growth1", stripe_error(500, "oops", type_="api_error")
    )
    ok(_change(cli, "--tenant", "grace", "--to", "pro-usd"))
    posts = [r for r in stripe.requests if r.method == "POST"]
    assert len(posts) == 2
    assert posts[0].headers["idempotency-key"] == posts[1].headers["idempotency-key"]
    assert _changes(stripe_sub)[0].status == "applied"


def test_stripe_outage_rejects_with_exit_1(cli: Any, stripe_sub: Database, stripe: FakeAPI) -> None:
    for _ in range(3):
        stripe.queue("GET", "/v1/subscriptions/sub_Growth1", stripe_error(503, "down", "api_error"))
    text = refused(_change(cli, "--tenant", "grace", "--to", "pro-usd"), 1)
    assert "after 3 attempts" in text and "try again later" in text
    assert _changes(stripe_sub)[0].status == "rejected"


def test_replace_releases_the_stripe_schedule_and_schedules_anew(
    cli: Any, stripe_sub: Database, stripe: FakeAPI
) -> None:
    ok(_change(cli, "--tenant", "grace", "--to", "starter-usd"))
    stripe.requests.clear()
    result = ok(_change(cli, "--tenant", "grace", "--to", "growth-usd-yearly", "--replace"))
    assert "canceled change 1 (replaced)" in said(result)
    assert [(r.method, r.path) for r in stripe.requests] == [
        ("POST", f"/v1/subscription_schedules/{SCHEDULE}/release"),
        ("GET", "/v1/subscriptions/sub_Growth1"),
        ("POST", "/v1/subscription_schedules"),
        ("POST", f"/v1/subscription_schedules/{SCHEDULE}"),
    ]
    first, second = _changes(stripe_sub)
    assert (first.status, second.status) == ("canceled", "scheduled")
    assert second.kind == "interval_change" and second.to_interval == "year"


def test_cancel_change_releases_the_schedule(
    cli: Any, stripe_sub: Database, stripe: FakeAPI
) -> None:
    ok(_change(cli, "--tenant", "grace", "--to", "starter-usd"))
    stripe.requests.clear()
    result = ok(cli("subs", "cancel-change", "1", "--reason", "changed their mind", "--json"))
    doc = json.loads(result.stdout)
    assert doc["status"] == "canceled" and doc["canceled_at"]
    assert f"released Stripe schedule {SCHEDULE}" in said(result)
    [req] = stripe.requests
    assert req.path == f"/v1/subscription_schedules/{SCHEDULE}/release"
    assert _audit(stripe_sub, "plan_change") == ["plan_change.schedule", "plan_change.cancel"]
    # now nothing is scheduled: a new change goes through without --replace
    ok(_change(cli, "--tenant", "grace", "--to", "starter-usd", "--dry-run"))


def test_cancel_change_refuses_what_is_not_scheduled(
    cli: Any, stripe_sub: Database, stripe: FakeAPI
) -> None:
    ok(_change(cli, "--tenant", "grace", "--to", "pro-usd"))  # applied
    text = refused(cli("subs", "cancel-change", "1"))
    assert "plan change 1 was applied at" in text and "faithflow subs change-plan" in text
    stripe.queue("GET", "/v1/subscriptions/sub_Growth1", stripe_error(400, "No such subscription"))
    refused(_change(cli, "--tenant", "grace", "--to", "growth-usd"))  # rejected
    text = refused(cli("subs", "cancel-change", "2"))
    assert "plan change 2 was rejected" in text and "nothing to cancel" in text
    ok(_change(cli, "--tenant", "grace", "--to", "growth-usd"))  # a downgrade: scheduled
    ok(cli("subs", "cancel-change", "3"))
    text = refused(cli("subs", "cancel-change", "3"))
    assert "plan change 3 is already canceled" in text
    text = refused(cli("subs", "cancel-change", "99"))
    assert "no plan change with id 99" in text


def test_cancel_change_provider_failure_keeps_it_scheduled(
    cli: Any, stripe_sub: Database, stripe: FakeAPI
) -> None:
    ok(_change(cli, "--tenant", "grace", "--to", "starter-usd"))
    stripe.queue(
        "POST",
        f"/v1/subscription_schedules/{SCHEDULE}/release",
        stripe_error(400, "You cannot release a schedule that is canceled"),
    )
    text = refused(cli("subs", "cancel-change", "1"))
    assert "plan change 1 is still scheduled: stripe refused subscription schedule release" in text
    assert _changes(stripe_sub)[0].status == "scheduled"


# --- Paystack ----------------------------------------------------------------------------------


def test_paystack_downgrade_disables_the_old_and_creates_the_new_at_period_end(
    cli: Any, paystack_sub: Database, paystack: FakeAPI
) -> None:
    doc = json.loads(ok(_change(cli, "--tenant", "lagos", "--to", "starter-ngn", "--json")).stdout)
    assert (doc["status"], doc["kind"]) == ("scheduled", "downgrade")
    disable, create = paystack.requests
    assert (disable.path, disable.json()) == (
        "/subscription/disable",
        {"code": "SUB_old1", "token": "tokOld1"},
    )
    assert (create.path, create.json()) == (
        "/subscription",
        {"customer": "CUS_lagos1", "plan": "PLN_starter", "start_date": PERIOD_END.isoformat()},
    )
    assert create.headers["authorization"] == "Bearer sk_test_ps"
    [change] = _changes(paystack_sub)
    refs = change.provider_refs
    assert refs["paystack_old_subscription"] == "SUB_old1"
    assert refs["paystack_new_subscription"] == "SUB_new1"
    assert change.status == "scheduled" and change.effective_at == PERIOD_END
    # the --json document and `subs changes` never show the email tokens
    assert doc["provider_refs"]["paystack_new_subscription"] == "SUB_new1"
    assert not any("token" in key for key in doc["provider_refs"])


def test_paystack_upgrade_defaults_to_the_period_end(
    cli: Any, paystack_sub: Database, paystack: FakeAPI
) -> None:
    """Paystack does not prorate: an upgrade now would charge the new plan in full on top of
    the period already paid (issue 13, defect 7). The refund of `--at now` is covered in
    test_plan_changes_paystack_refund.py."""
    doc = json.loads(ok(_change(cli, "--tenant", "lagos", "--to", "pro-ngn", "--json")).stdout)
    assert (doc["kind"], doc["at"], doc["status"]) == ("upgrade", "period_end", "scheduled")
    assert doc["effective_at"] == PERIOD_END.isoformat()
    _disable, create = paystack.requests
    assert create.json()["start_date"] == PERIOD_END.isoformat()
    assert _plan_code(paystack_sub, _sub(paystack_sub).plan_id) == "growth-ngn"


def test_paystack_upgrade_now_moves_the_subscription_to_the_new_code(
    cli: Any, paystack_sub: Database, paystack: FakeAPI
) -> None:
    result = ok(_change(cli, "--tenant", "lagos", "--to", "pro-ngn", "--at", "now", "--no-refund"))
    assert "the church pays the overlap twice" in said(result)
    _disable, create = paystack.requests
    assert "start_date" not in create.json()
    sub = _sub(paystack_sub)
    assert _plan_code(paystack_sub, sub.plan_id) == "pro-ngn"
    assert sub.provider_subscription_id == "SUB_new1"
    assert sub.metadata_["paystackEmailToken"] == "tokNew1"
    assert _changes(paystack_sub)[0].status == "applied"


def test_paystack_refused_create_enables_the_old_again_and_rejects(
    cli: Any, paystack_sub: Database, paystack: FakeAPI
) -> None:
    paystack.queue("POST", "/subscription", paystack_error(400, "Plan not found"))
    text = refused(_change(cli, "--tenant", "lagos", "--to", "starter-ngn"))
    assert "paystack refused subscription create (HTTP 400): Plan not found" in text
    assert "SUB_old1 was enabled again" in text
    assert [r.path for r in paystack.requests] == [
        "/subscription/disable",
        "/subscription",
        "/subscription/enable",
    ]
    [change] = _changes(paystack_sub)
    assert change.status == "rejected" and "Plan not found" in (change.error or "")


def test_paystack_5xx_is_retried_then_succeeds(
    cli: Any, paystack_sub: Database, paystack: FakeAPI
) -> None:
    paystack.queue("POST", "/subscription/disable", paystack_error(502, "Bad gateway"))
    ok(_change(cli, "--tenant", "lagos", "--to", "starter-ngn"))
    assert [r.path for r in paystack.requests] == [
        "/subscription/disable",
        "/subscription/disable",
        "/subscription",
    ]
    assert _changes(paystack_sub)[0].status == "scheduled"


def test_paystack_cancel_change_disables_the_new_and_enables_the_old(
    cli: Any, paystack_sub: Database, paystack: FakeAPI
) -> None:
    ok(_change(cli, "--tenant", "lagos", "--to", "starter-ngn"))
    paystack.requests.clear()
    result = ok(cli("subs", "cancel-change", "1"))
    disable, enable = paystack.requests
    assert (disable.path, disable.json()) == (
        "/subscription/disable",
        {"code": "SUB_new1", "token": "tokNew1"},
    )
    assert (enable.path, enable.json()) == (
        "/subscription/enable",
        {"code": "SUB_old1", "token": "tokOld1"},
    )
    assert "disabled Paystack subscription SUB_new1" in said(result)
    assert _changes(paystack_sub)[0].status == "canceled"


# --- listing -----------------------------------------------------------------------------------


def test_changes_lists_newest_first_with_filters_and_json(
    cli: Any, stripe_sub: Database, paystack_sub: Database, stripe: FakeAPI, paystack: FakeAPI
) -> None:
    ok(_change(cli, "--tenant", "grace", "--to", "pro-usd"))
    ok(_change(cli, "--tenant", "lagos", "--to", "starter-ngn", "--reason", "smaller church"))
    docs = json.loads(ok(cli("subs", "changes", "--json")).stdout)
    assert [d["id"] for d in docs] == [2, 1]
    assert set(docs[0]) == {
        "id", "tenant", "subscription_id", "kind", "from_plan", "to_plan", "from_interval",
        "to_interval", "status", "effective_at", "applied_at", "canceled_at", "requested_by",
        "reason", "provider_refs", "error", "created_at",
    }  # fmt: skip
    assert docs[0]["tenant"] == "lagos" and docs[0]["reason"] == "smaller church"
    assert (docs[0]["from_plan"], docs[0]["to_plan"]) == ("growth-ngn", "starter-ngn")
    only = json.loads(ok(cli("subs", "changes", "--tenant", "grace", "--json")).stdout)
    assert [d["id"] for d in only] == [1]
    scheduled = json.loads(ok(cli("subs", "changes", "--status", "scheduled", "--json")).stdout)
    assert [d["id"] for d in scheduled] == [2]
    table = ok(cli("subs", "changes"))
    assert "starter-ngn" in table.stdout and "2 plan changes" in said(table)
    text = refused(cli("subs", "changes", "--status", "pending"))
    assert "--status 'pending' is not one of: scheduled, applied, rejected, canceled" in text


# --- the job -----------------------------------------------------------------------------------


def test_subs_automate_applies_the_scheduled_change_when_due(
    cli: Any, stripe_sub: Database, stripe: FakeAPI
) -> None:
    ok(_change(cli, "--tenant", "grace", "--to", "starter-usd"))
    before = (PERIOD_END - dt.timedelta(hours=1)).isoformat()
    early = json.loads(ok(cli("subs", "automate", "--now", before, "--json")).stdout)
    assert "apply_plan_change" not in early["counts"]
    after = (PERIOD_END + dt.timedelta(minutes=5)).isoformat()
    run = json.loads(ok(cli("subs", "automate", "--now", after, "--json")).stdout)
    assert run["counts"]["apply_plan_change"] == 1
    [change] = _changes(stripe_sub)
    assert change.status == "applied" and change.applied_at is not None
    assert _plan_code(stripe_sub, _sub(stripe_sub).plan_id) == "starter-usd"


# --- Paystack's webhooks around a change at the period end -------------------------------------


def _sub_event(kind: str, code: str, plan_code: str, status: str = "active") -> dict[str, Any]:
    """A recorded `subscription.<kind>` payload for the Lagos customer, with these codes."""
    from webhook_support import payload

    doc = payload("paystack", f"platform.subscription.{kind}")
    doc["data"].update(subscription_code=code, email_token=f"tok{code}", status=status)
    doc["data"]["plan"]["plan_code"] = plan_code
    doc["data"]["customer"]["customer_code"] = "CUS_lagos1"
    return doc


def _deliver(db: Database, doc: dict[str, Any]) -> Any:
    from faithflow_ops.webhooks import inbox
    from faithflow_ops.webhooks.events import parse

    return inbox.receive(db, parse("paystack", "platform", doc))


def _subs(db: Database) -> list[Subscription]:
    with db.read_session() as session:
        return list(session.scalars(select(Subscription).order_by(Subscription.id)))


def test_paystack_period_end_change_webhooks_wait_for_subs_automate(
    cli: Any, paystack_sub: Database, paystack: FakeAPI
) -> None:
    db = paystack_sub
    ok(_change(cli, "--tenant", "lagos", "--to", "starter-ngn"))  # SUB_old1 -> SUB_new1
    # Paystack reports both right away: the new subscription made, the old one disabled.
    created = _deliver(db, _sub_event("create", "SUB_new1", "PLN_starter"))
    assert created.status == "applied"
    assert created.detail.startswith(
        f"SUB_new1 is the pending subscription of plan change 1 (takes over at "
        f"{PERIOD_END.isoformat()})"
    )
    not_renew = _deliver(db, _sub_event("not_renew", "SUB_old1", "PLN_growth", "non-renewing"))
    disabled = _deliver(db, _sub_event("disable", "SUB_old1", "PLN_growth", "complete"))
    for outcome in (not_renew, disabled):
        assert outcome.status == "applied"
        assert "SUB_old1 was disabled on purpose by plan change 1" in outcome.detail
        assert "moves to SUB_new1" in outcome.detail
    [sub] = _subs(db)
    assert (sub.status, sub.provider_subscription_id) == ("active", "SUB_old1")
    assert _plan_code(db, sub.plan_id) == "growth-ngn" and not sub.cancel_at_period_end
    assert sub.metadata_["paystackEmailToken"] == "tokOld1"

    after = (PERIOD_END + dt.timedelta(minutes=5)).isoformat()
    run = json.loads(ok(cli("subs", "automate", "--now", after, "--json")).stdout)
    assert run["counts"]["apply_plan_change"] == 1 and "reject_plan_change" not in run["counts"]
    [change] = _changes(db)
    assert change.status == "applied"
    [sub] = _subs(db)
    assert _plan_code(db, sub.plan_id) == "starter-ngn"
    assert sub.provider_subscription_id == "SUB_new1"
    assert sub.metadata_["paystackEmailToken"] == "tokNew1"
    with db.read_session() as session:
        entry = session.scalar(select(AuditLog).where(AuditLog.action == "plan_change.apply"))
        assert entry is not None
        assert entry.before["provider_subscription_id"] == "SUB_old1"
        assert entry.after["provider_subscription_id"] == "SUB_new1"

    # Later events for the new code land on the same row; the old code's are history.
    later = _deliver(db, _sub_event("not_renew", "SUB_new1", "PLN_starter", "non-renewing"))
    assert later.status == "applied"
    [sub] = _subs(db)
    assert sub.provider_subscription_id == "SUB_new1" and sub.cancel_at_period_end
    old = _deliver(db, _sub_event("disable", "SUB_old1", "PLN_growth", "cancelled"))
    assert old.status == "ignored"
    assert old.detail == "SUB_old1 was replaced by SUB_new1 in plan change 1"
    assert len(_subs(db)) == 1


def test_paystack_webhook_for_a_canceled_change_creates_nothing(
    cli: Any, paystack_sub: Database, paystack: FakeAPI
) -> None:
    ok(_change(cli, "--tenant", "lagos", "--to", "starter-ngn"))
    ok(cli("subs", "cancel-change", "1"))
    received = _deliver(paystack_sub, _sub_event("create", "SUB_new1", "PLN_starter"))
    assert received.status == "ignored"
    assert received.detail == "SUB_new1 is the subscription of canceled plan change 1"
    [sub] = _subs(paystack_sub)
    assert (sub.status, sub.provider_subscription_id) == ("active", "SUB_old1")
    assert _plan_code(paystack_sub, sub.plan_id) == "growth-ngn"


def test_paystack_change_now_ignores_the_old_codes_disable(
    cli: Any, paystack_sub: Database, paystack: FakeAPI
) -> None:
    # applied now: the row is on SUB_new1
    ok(_change(cli, "--tenant", "lagos", "--to", "pro-ngn", "--at", "now", "--no-refund"))
    received = _deliver(paystack_sub, _sub_event("disable", "SUB_old1", "PLN_growth", "complete"))
    assert received.status == "ignored"
    [sub] = _subs(paystack_sub)
    assert (sub.status, sub.provider_subscription_id) == ("active", "SUB_new1")
