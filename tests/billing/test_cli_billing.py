"""`faithflow billing checkout|portal` through the CLI, on SQLite and Postgres, against loopback
stand-ins for Stripe and Paystack (the real SDK / httpx code runs)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from fakes.providers import FakeAPI, Reply, paystack_error, paystack_fake, stripe_error, stripe_fake
from helpers import said

from faithflow_ops.db import Database

pytestmark = pytest.mark.filterwarnings("ignore:Use 'content=:DeprecationWarning")  # stripe SDK

PORTAL_RECOVERY = (
    "`faithflow subs backfill` may recover it from subscription metadata, or a webhook replay "
    "(`faithflow webhooks replay --unmatched`) from a stored event"
)


@pytest.fixture
def stripe(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeAPI]:
    with stripe_fake().serve() as fake:
        monkeypatch.setenv("STRIPE_SECRET_KEY", "sk_test_cli")
        monkeypatch.setenv("STRIPE_API_BASE", fake.url)
        yield fake


@pytest.fixture
def paystack(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeAPI]:
    with paystack_fake().serve() as fake:
        monkeypatch.setenv("PAYSTACK_SECRET_KEY", "sk_test_ps")
        monkeypatch.setenv("PAYSTACK_API_BASE", fake.url)
        yield fake


@pytest.fixture(autouse=True)
def _fast_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAITHFLOW_PROVIDER_TIMEOUT", "0.3")
    monkeypatch.setenv("FAITHFLOW_PROVIDER_BACKOFF", "0.01")
    monkeypatch.setenv("FAITHFLOW_PROVIDER_MAX_ATTEMPTS", "3")
    monkeypatch.setenv("FAITHFLOW_BILLING_SUCCESS_URL", "https://app.example/{tenant}/billing/ok")


def ok(result: Any) -> Any:
    assert result.exit_code == 0, result.stderr
    return result


@pytest.fixture
def platform(cli: Any, db: Database) -> Database:
    """A tenant with a billing email, one without, and plans with one, both or no provider ids."""
    for args in (
        ("tenants", "add", "grace-lagos", "--name", "Grace", "--currency", "NGN",
         "--email", "treasurer@grace.example"),
        ("tenants", "add", "cornerstone", "--name", "Cornerstone"),
        ("plans", "add", "growth-ngn", "--name", "Growth", "--amount", "45000",
         "--currency", "NGN", "--interval", "month", "--meta", "paystackPlanCode=PLN_growth"),
        ("plans", "add", "growth-usd", "--name", "Growth", "--amount", "79",
         "--currency", "USD", "--interval", "month", "--meta", "stripePriceId=price_1Growth"),
        ("plans", "add", "growth-both", "--name", "Growth", "--amount", "79",
         "--currency", "USD", "--interval", "month", "--meta", "stripePriceId=price_1Both",
         "--meta", "paystackPlanCode=PLN_both"),
        ("plans", "add", "bare", "--name", "Bare", "--amount", "1", "--currency", "USD",
         "--interval", "month"),
    ):  # fmt: skip
        ok(cli(*args, "--json"))  # the rows, not a Rich record per add
    return db


# --- checkout: Stripe ------------------------------------------------------------------------


def test_stripe_checkout_prints_the_url_and_sends_the_plan_price(
    cli: Any, platform: Database, stripe: FakeAPI
) -> None:
    result = ok(cli("billing", "checkout", "--tenant", "grace-lagos", "--plan", "growth-usd"))
    assert result.stdout == "https://checkout.stripe.com/c/pay/cs_test_1\n"
    assert "stripe checkout link for grace-lagos (cs_test_1)" in said(result)
    [req] = stripe.requests
    form = req.form()
    assert form["line_items[0][price]"] == "price_1Growth"
    assert form["mode"] == "subscription"
    assert form["client_reference_id"] == "grace-lagos"
    assert form["metadata[tenant]"] == "grace-lagos" and form["metadata[plan]"] == "growth-usd"
    assert form["success_url"] == "https://app.example/grace-lagos/billing/ok"
    assert form["customer_email"] == "treasurer@grace.example"  # no customer yet
    assert "customer" not in form
    assert req.headers["idempotency-key"].startswith("ff-checkout-session-")
    assert req.headers["authorization"] == "Bearer sk_test_cli"


def test_stripe_checkout_reuses_the_linked_customer(
    cli: Any, platform: Database, stripe: FakeAPI
) -> None:
    ok(cli("tenants", "link", "grace-lagos", "cus_Linked1"))
    result = ok(
        cli(
            "billing", "checkout", "--tenant", "grace-lagos", "--plan", "growth-usd",
            "--success-url", "https://x.example/done?s={CHECKOUT_SESSION_ID}",
            "--cancel-url", "https://x.example/{tenant}/back", "--json",
        )
    )  # fmt: skip
    doc = json.loads(result.stdout)
    assert doc == {
        "url": "https://checkout.stripe.com/c/pay/cs_test_1",
        "provider": "stripe",
        "kind": "checkout",
        "tenant": "grace-lagos",
        "plan": "growth-usd",
        "session_id": "cs_test_1",
        "customer": "cus_Linked1",
    }
    form = stripe.requests[0].form()
    assert form["customer"] == "cus_Linked1" and "customer_email" not in form
    assert form["success_url"] == "https://x.example/done?s={CHECKOUT_SESSION_ID}"
    assert form["cancel_url"] == "https://x.example/grace-lagos/back"


def test_stripe_checkout_reuses_a_subscriptions_customer_and_warns_of_a_second_one(
    cli: Any, platform: Database, stripe: FakeAPI
) -> None:
    ok(
        cli(
            "subs", "add", "--tenant", "grace-lagos", "--plan", "growth-usd",
            "--provider", "stripe", "--provider-subscription-id", "sub_Old1",
            "--customer-id", "cus_FromSub",
        )
    )  # fmt: skip
    result = ok(cli("billing", "checkout", "--tenant", "grace-lagos", "--plan", "growth-both",
                    "--provider", "stripe"))  # fmt: skip
    assert stripe.requests[0].form()["customer"] == "cus_FromSub"
    assert stripe.requests[0].form()["line_items[0][price]"] == "price_1Both"
    assert (
        "warning: grace-lagos already has subscription 1 (stripe, plan growth-usd, active); "
        "completing this checkout starts a second one"
    ) in said(result)
    assert "`faithflow billing portal --tenant grace-lagos`" in said(result)


def test_stripe_checkout_429_with_retry_after_then_success(
    cli: Any, platform: Database, stripe: FakeAPI
) -> None:
    reply = stripe_error(429, "Too many requests", type_="rate_limit_error")
    reply.headers["Retry-After"] = "0.2"
    stripe.queue("POST", "/v1/checkout/sessions", reply)
    result = ok(cli("billing", "checkout", "--tenant", "grace-lagos", "--plan", "growth-usd"))
    assert result.stdout.startswith("https://checkout.stripe.com/")
    first, second = stripe.requests
    assert second.at - first.at >= 0.2
    assert first.headers["idempotency-key"] == second.headers["idempotency-key"]


def test_stripe_checkout_500_then_success(cli: Any, platform: Database, stripe: FakeAPI) -> None:
    stripe.queue("POST", "/v1/checkout/sessions", stripe_error(500, "oops", type_="api_error"))
    ok(cli("billing", "checkout", "--tenant", "grace-lagos", "--plan", "growth-usd"))
    assert len(stripe.requests) == 2


def test_stripe_checkout_timeouts_exit_1_after_the_attempts(
    cli: Any, platform: Database, stripe: FakeAPI
) -> None:
    for _ in range(3):
        stripe.queue("POST", "/v1/checkout/sessions", Reply(200, {}, delay=1.0))
    result = cli("billing", "checkout", "--tenant", "grace-lagos", "--plan", "growth-usd")
    assert result.exit_code == 1
    assert result.stdout == ""
    assert (
        "error: stripe did not answer checkout session in time after 3 attempts: the request "
        "timed out; try again later"
    ) in said(result)
    assert len(stripe.requests) == 3


def test_stripe_refusal_exits_2_with_stripes_message_and_no_retry(
    cli: Any, platform: Database, stripe: FakeAPI
) -> None:
    stripe.queue(
        "POST",
        "/v1/checkout/sessions",
        stripe_error(400, "No such price: 'price_1Growth'", code="resource_missing"),
    )
    result = cli("billing", "checkout", "--tenant", "grace-lagos", "--plan", "growth-usd")
    assert result.exit_code == 2
    assert (
        "error: stripe refused checkout session (HTTP 400): No such price: 'price_1Growth' "
        "(resource_missing)"
    ) in said(result)
    assert len(stripe.requests) == 1
    assert "Traceback" not in result.stderr


# --- checkout: Paystack ----------------------------------------------------------------------


def test_paystack_checkout_sends_the_plan_code_and_metadata(
    cli: Any, platform: Database, paystack: FakeAPI
) -> None:
    result = ok(
        cli("billing", "checkout", "--tenant", "grace-lagos", "--plan", "growth-ngn", "--json")
    )
    doc = json.loads(result.stdout)
    [req] = paystack.requests
    body = req.json()
    assert doc == {
        "url": "https://checkout.paystack.com/0peioxfhpn",
        "provider": "paystack",
        "kind": "checkout",
        "tenant": "grace-lagos",
        "plan": "growth-ngn",
        "reference": body["reference"],
    }
    assert req.headers["authorization"] == "Bearer sk_test_ps"
    assert body["plan"] == "PLN_growth"
    assert body["email"] == "treasurer@grace.example"
    assert body["amount"] == "4500000" and body["currency"] == "NGN"
    assert body["metadata"] == {"tenant": "grace-lagos", "plan": "growth-ngn"}
    assert body["callback_url"] == "https://app.example/grace-lagos/billing/ok"


def test_paystack_checkout_500_then_success(
    cli: Any, platform: Database, paystack: FakeAPI
) -> None:
    paystack.queue("POST", "/transaction/initialize", paystack_error(500, "Server error"))
    ok(cli("billing", "checkout", "--tenant", "grace-lagos", "--plan", "growth-ngn"))
    assert len(paystack.requests) == 2
    assert len({r.json()["reference"] for r in paystack.requests}) == 1


def test_paystack_bad_key_exits_2(cli: Any, platform: Database, paystack: FakeAPI) -> None:
    paystack.queue("POST", "/transaction/initialize", paystack_error(401, "Invalid key"))
    result = cli("billing", "checkout", "--tenant", "grace-lagos", "--plan", "growth-ngn")
    assert result.exit_code == 2
    assert "paystack refused transaction initialize (HTTP 401): Invalid key" in said(result)
    assert len(paystack.requests) == 1


def test_paystack_checkout_needs_a_billing_email_and_names_the_command(
    cli: Any, platform: Database, paystack: FakeAPI
) -> None:
    result = cli("billing", "checkout", "--tenant", "cornerstone", "--plan", "growth-ngn")
    assert result.exit_code == 2
    assert (
        "tenant cornerstone has no billing email, which Paystack needs to start a subscription; "
        "set it with `faithflow tenants set cornerstone --email treasurer@church.example`"
    ) in said(result)
    assert paystack.requests == []
    ok(cli("tenants", "set", "cornerstone", "--email", "pay@cornerstone.example"))
    ok(cli("billing", "checkout", "--tenant", "cornerstone", "--plan", "growth-ngn"))
    assert paystack.requests[0].json()["email"] == "pay@cornerstone.example"


# --- checkout refusals -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ("--plan", "growth-usd", "--provider", "paystack"),
            "plan growth-usd has no paystackPlanCode in its metadata; set it with "
            "`faithflow plans set-meta growth-usd paystackPlanCode=PLN_…`",
        ),
        (
            ("--plan", "growth-ngn", "--provider", "stripe"),
            "plan growth-ngn has no stripePriceId in its metadata; set it with "
            "`faithflow plans set-meta growth-ngn stripePriceId=price_…`",
        ),
        (
            (
                "--plan",
                "growth-both",
            ),
            "plan growth-both has both stripePriceId and paystackPlanCode; choose one with "
            "--provider stripe or --provider paystack",
        ),
        (
            (
                "--plan",
                "bare",
            ),
            "plan bare has neither stripePriceId nor paystackPlanCode in its metadata; set one "
            "with `faithflow plans set-meta bare stripePriceId=price_…`",
        ),
        (("--plan", "growth-usd", "--provider", "paypal"), "--provider 'paypal' is not one of"),
        (
            (
                "--plan",
                "nope",
            ),
            "no plan with code 'nope'; see `faithflow plans list`",
        ),
        (
            ("--plan", "growth-usd", "--success-url", "/relative"),
            "--success-url '/relative' is not an absolute http(s) URL",
        ),
    ],
)
def test_checkout_refusals_exit_2(
    cli: Any, platform: Database, stripe: FakeAPI, paystack: FakeAPI, args: tuple[str, ...],
    message: str,
) -> None:  # fmt: skip
    result = cli("billing", "checkout", "--tenant", "grace-lagos", *args)
    assert result.exit_code == 2, result.stdout
    assert message in said(result)
    assert stripe.requests == [] and paystack.requests == []
    assert "Traceback" not in result.stderr


def test_checkout_unknown_tenant(cli: Any, platform: Database, stripe: FakeAPI) -> None:
    result = cli("billing", "checkout", "--tenant", "nobody", "--plan", "growth-usd")
    assert result.exit_code == 2
    assert "no tenant with slug 'nobody'" in said(result)


@pytest.mark.parametrize(
    ("plan", "variable"),
    [("growth-usd", "STRIPE_SECRET_KEY"), ("growth-ngn", "PAYSTACK_SECRET_KEY")],
)
def test_checkout_without_the_secret_key_names_the_variable(
    cli: Any, platform: Database, plan: str, variable: str
) -> None:
    result = cli("billing", "checkout", "--tenant", "grace-lagos", "--plan", plan)
    assert result.exit_code == 2
    assert f"{variable} is not set; export {variable}=… and run again" in said(result)


def test_stripe_checkout_without_a_success_url(
    cli: Any, platform: Database, stripe: FakeAPI, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("FAITHFLOW_BILLING_SUCCESS_URL")
    result = cli("billing", "checkout", "--tenant", "grace-lagos", "--plan", "growth-usd")
    assert result.exit_code == 2
    assert (
        "Stripe Checkout needs a success URL; pass --success-url https://… or set "
        "FAITHFLOW_BILLING_SUCCESS_URL"
    ) in said(result)


# --- portal ----------------------------------------------------------------------------------


def test_stripe_portal_for_the_subscriptions_customer(
    cli: Any, platform: Database, stripe: FakeAPI, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FAITHFLOW_BILLING_RETURN_URL", "https://app.example/{tenant}/billing")
    ok(
        cli(
            "subs", "add", "--tenant", "grace-lagos", "--plan", "growth-usd",
            "--provider", "stripe", "--customer-id", "cus_Portal1",
        )
    )  # fmt: skip
    result = ok(cli("billing", "portal", "--tenant", "grace-lagos", "--json"))
    assert json.loads(result.stdout) == {
        "url": "https://billing.stripe.com/p/session/test_1",
        "provider": "stripe",
        "kind": "portal",
        "tenant": "grace-lagos",
        "session_id": "bps_test_1",
        "customer": "cus_Portal1",
    }
    [req] = stripe.requests
    assert req.path == "/v1/billing_portal/sessions"
    assert req.form() == {
        "customer": "cus_Portal1",
        "return_url": "https://app.example/grace-lagos/billing",
    }
    assert req.headers["idempotency-key"].startswith("ff-billing-portal-session-")


def test_stripe_portal_for_a_linked_customer_without_subscription(
    cli: Any, platform: Database, stripe: FakeAPI
) -> None:
    ok(cli("tenants", "link", "cornerstone", "cus_OnlyLinked"))
    result = ok(
        cli("billing", "portal", "--tenant", "cornerstone", "--return-url", "https://r.example/")
    )
    assert result.stdout == "https://billing.stripe.com/p/session/test_1\n"
    assert stripe.requests[0].form() == {
        "customer": "cus_OnlyLinked",
        "return_url": "https://r.example/",
    }


def test_paystack_portal_is_the_manage_link(
    cli: Any, platform: Database, paystack: FakeAPI
) -> None:
    ok(
        cli(
            "subs", "add", "--tenant", "grace-lagos", "--plan", "growth-ngn",
            "--provider", "paystack", "--provider-subscription-id", "SUB_abc123",
        )
    )  # fmt: skip
    result = ok(cli("billing", "portal", "--tenant", "grace-lagos", "--json"))
    assert json.loads(result.stdout) == {
        "url": "https://paystack.com/manage/subscriptions/SUB_abc123?token=t0k",
        "provider": "paystack",
        "kind": "portal",
        "tenant": "grace-lagos",
        "subscription_code": "SUB_abc123",
    }
    [req] = paystack.requests
    assert (req.method, req.path) == ("GET", "/subscription/SUB_abc123/manage/link")


def test_paystack_portal_server_errors_exit_1(
    cli: Any, platform: Database, paystack: FakeAPI
) -> None:
    ok(
        cli(
            "subs", "add", "--tenant", "grace-lagos", "--plan", "growth-ngn",
            "--provider", "paystack", "--provider-subscription-id", "SUB_abc123",
        )
    )  # fmt: skip
    path = "/subscription/SUB_abc123/manage/link"
    paystack.queue("GET", path, *(paystack_error(503, "Service unavailable") for _ in range(3)))
    result = cli("billing", "portal", "--tenant", "grace-lagos")
    assert result.exit_code == 1
    assert (
        "paystack failed subscription manage link (HTTP 503) after 3 attempts: Service "
        "unavailable; try again later"
    ) in said(result)
    assert len(paystack.requests) == 3


def test_portal_without_a_stripe_customer_explains_the_recovery(
    cli: Any, platform: Database, stripe: FakeAPI
) -> None:
    ok(cli("subs", "add", "--tenant", "grace-lagos", "--plan", "growth-usd",
           "--provider", "stripe"))  # fmt: skip
    result = cli("billing", "portal", "--tenant", "grace-lagos")
    assert result.exit_code == 2
    assert (
        "tenant grace-lagos has no Stripe customer id: no linked customer (`faithflow tenants "
        "link grace-lagos cus_…`) and no provider_customer_id on its Stripe subscriptions; "
        + PORTAL_RECOVERY
    ) in said(result)
    assert stripe.requests == []


def test_portal_without_a_paystack_subscription_code_explains_the_recovery(
    cli: Any, platform: Database, paystack: FakeAPI
) -> None:
    ok(cli("subs", "add", "--tenant", "grace-lagos", "--plan", "growth-ngn",
           "--provider", "paystack"))  # fmt: skip
    result = cli("billing", "portal", "--tenant", "grace-lagos")
    assert result.exit_code == 2
    assert (
        "tenant grace-lagos has no Paystack subscription code (SUB_…) on a Paystack "
        "subscription, which Paystack's manage link needs; " + PORTAL_RECOVERY
    ) in said(result)
    assert paystack.requests == []


def test_portal_for_a_tenant_with_nothing_billed(
    cli: Any, platform: Database, stripe: FakeAPI
) -> None:
    result = cli("billing", "portal", "--tenant", "cornerstone")
    assert result.exit_code == 2
    assert "tenant cornerstone has no subscription and no linked customer" in said(result)
    assert PORTAL_RECOVERY in said(result)


def test_portal_without_the_secret_key(cli: Any, platform: Database) -> None:
    ok(cli("tenants", "link", "cornerstone", "cus_OnlyLinked"))
    result = cli("billing", "portal", "--tenant", "cornerstone")
    assert result.exit_code == 2
    assert "STRIPE_SECRET_KEY is not set" in said(result)


def test_billing_help_lists_the_commands(cli: Any) -> None:
    result = ok(cli("billing", "--help"))
    assert "checkout" in result.stdout and "portal" in result.stdout
