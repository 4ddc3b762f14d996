"""The provider API clients (providers/stripe.py, providers/paystack.py) and their shared retry
policy (providers/_http.py), against loopback stand-ins for Stripe and Paystack: the real SDK
and httpx code runs."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator

import pytest
from fakes.providers import (
    FakeAPI,
    Reply,
    paystack_error,
    paystack_fake,
    stripe_error,
    stripe_fake,
)

from faithflow_ops.config import Settings
from faithflow_ops.errors import ConfigError
from faithflow_ops.providers._http import ProviderError, RetryPolicy, call, parse_retry_after
from faithflow_ops.providers.paystack import PaystackAPI
from faithflow_ops.providers.stripe import StripeAPI, idempotency_key

pytestmark = pytest.mark.filterwarnings("ignore:Use 'content=:DeprecationWarning")  # stripe SDK

NOW = dt.datetime(2026, 3, 1, 9, 0, 12, tzinfo=dt.UTC)


class Sleeps(list[float]):
    def __call__(self, seconds: float) -> None:
        self.append(seconds)


@pytest.fixture
def sleeps() -> Sleeps:
    return Sleeps()


@pytest.fixture
def policy(sleeps: Sleeps) -> RetryPolicy:
    return RetryPolicy(attempts=4, timeout=2.0, backoff=0.01, max_wait=5.0, sleep=sleeps)


@pytest.fixture
def stripe() -> Iterator[FakeAPI]:
    with stripe_fake().serve() as fake:
        yield fake


@pytest.fixture
def paystack() -> Iterator[FakeAPI]:
    with paystack_fake().serve() as fake:
        yield fake


def _stripe_settings(fake: FakeAPI) -> Settings:
    return Settings(
        database_url="sqlite://", stripe_secret_key="sk_test_1", stripe_api_base=fake.url
    )


def _paystack_settings(fake: FakeAPI) -> Settings:
    return Settings(
        database_url="sqlite://", paystack_secret_keys=("sk_test_ps",), paystack_api_base=fake.url
    )


# --- the retry helper ------------------------------------------------------------------------


def test_retry_after_reads_seconds_and_http_dates() -> None:
    assert parse_retry_after("2") == 2.0
    assert parse_retry_after("0.25") == 0.25
    assert parse_retry_after("-3") == 0.0
    now = dt.datetime(2026, 3, 1, 9, 0, 0, tzinfo=dt.UTC)
    assert parse_retry_after("Sun, 01 Mar 2026 09:00:07 GMT", now) == 7.0
    assert parse_retry_after(None) is None
    assert parse_retry_after("soon") is None
    assert parse_retry_after("nan") is None


def _flaky(errors: list[ProviderError], result: str = "ok"):
    calls = []

    def fn() -> str:
        calls.append(1)
        if errors:
            raise errors.pop(0)
        return result

    return fn, calls


def test_retryable_errors_are_retried_and_retry_after_is_the_wait(
    policy: RetryPolicy, sleeps: Sleeps
) -> None:
    fn, calls = _flaky(
        [
            ProviderError("stripe", "op", "slow down", status=429, retryable=True, retry_after=1.5),
            ProviderError("stripe", "op", "boom", status=500, retryable=True),
        ]
    )
    assert call(fn, policy, provider="stripe", operation="op") == "ok"
    assert len(calls) == 3
    assert sleeps[0] == 1.5  # Retry-After, exactly
    assert 0 < sleeps[1] <= 0.03  # backoff from 0.01 (with jitter up to 0.01)


def test_retry_after_is_capped(policy: RetryPolicy, sleeps: Sleeps) -> None:
    fn, _ = _flaky([ProviderError("x", "op", "wait", status=429, retryable=True, retry_after=900)])
    call(fn, policy, provider="x", operation="op")
    assert sleeps == [5.0]


def test_attempts_run_out_and_the_last_error_says_how_many(
    policy: RetryPolicy, sleeps: Sleeps
) -> None:
    errors = [ProviderError("x", "op", "down", status=503, retryable=True) for _ in range(9)]
    fn, calls = _flaky(errors)
    with pytest.raises(ProviderError) as info:
        call(fn, policy, provider="x", operation="op")
    assert len(calls) == 4 and len(sleeps) == 3
    assert info.value.attempts == 4
    assert info.value.exit_code == 1
    assert str(info.value) == "x failed op (HTTP 503) after 4 attempts: down; try again later"


def test_refusals_are_not_retried(policy: RetryPolicy, sleeps: Sleeps) -> None:
    fn, calls = _flaky([ProviderError("x", "op", "No such price", status=400)])
    with pytest.raises(ProviderError) as info:
        call(fn, policy, provider="x", operation="op")
    assert len(calls) == 1 and sleeps == []
    assert info.value.exit_code == 2
    assert str(info.value) == "x refused op (HTTP 400): No such price"


def test_retry_policy_comes_from_settings() -> None:
    s = Settings.from_env(
        {
            "FAITHFLOW_PROVIDER_TIMEOUT": "2.5",
            "FAITHFLOW_PROVIDER_MAX_ATTEMPTS": "2",
            "FAITHFLOW_PROVIDER_BACKOFF": "0",
            "FAITHFLOW_PROVIDER_MAX_WAIT": "1",
        }
    )
    p = RetryPolicy.from_settings(s)
    assert (p.timeout, p.attempts, p.backoff, p.max_wait) == (2.5, 2, 0.0, 1.0)


# --- Stripe ----------------------------------------------------------------------------------


def _checkout(api: StripeAPI, **kw):
    args = dict(
        price_id="price_growth",
        tenant="grace-lagos",
        plan="growth-monthly",
        success_url="https://app.example/ok",
        now=NOW,
    )
    args.update(kw)
    return api.create_checkout_session(**args)


def test_stripe_checkout_session_request(stripe: FakeAPI, policy: RetryPolicy) -> None:
    with StripeAPI(_stripe_settings(stripe), policy) as api:
        made = _checkout(api, customer="cus_123", cancel_url="https://app.example/back")
    assert made.id == "cs_test_1"
    assert made.url == "https://checkout.stripe.com/c/pay/cs_test_1"
    [req] = stripe.requests
    assert (req.method, req.path) == ("POST", "/v1/checkout/sessions")
    assert req.headers["authorization"] == "Bearer sk_test_1"
    assert req.headers["idempotency-key"].startswith("ff-checkout-session-")
    assert req.form() == {
        "mode": "subscription",
        "line_items[0][price]": "price_growth",
        "line_items[0][quantity]": "1",
        "client_reference_id": "grace-lagos",
        "metadata[tenant]": "grace-lagos",
        "metadata[plan]": "growth-monthly",
        "subscription_data[metadata][tenant]": "grace-lagos",
        "subscription_data[metadata][plan]": "growth-monthly",
        "success_url": "https://app.example/ok",
        "cancel_url": "https://app.example/back",
        "customer": "cus_123",
    }


def test_stripe_checkout_without_customer_prefills_the_email(
    stripe: FakeAPI, policy: RetryPolicy
) -> None:
    with StripeAPI(_stripe_settings(stripe), policy) as api:
        _checkout(api, customer_email="treasurer@grace.example")
    form = stripe.requests[0].form()
    assert form["customer_email"] == "treasurer@grace.example"
    assert "customer" not in form and "cancel_url" not in form


def test_idempotency_key_is_stable_within_a_minute_and_follows_the_parameters() -> None:
    params = {"customer": "cus_1"}
    key = idempotency_key("checkout session", params, NOW)
    assert key == idempotency_key("checkout session", params, NOW.replace(second=59))
    assert key != idempotency_key("checkout session", params, NOW + dt.timedelta(minutes=1))
    assert key != idempotency_key("checkout session", {"customer": "cus_2"}, NOW)
    assert key != idempotency_key("billing portal session", params, NOW)


def test_stripe_429_with_retry_after_then_success_reuses_the_idempotency_key(
    stripe: FakeAPI,
) -> None:
    reply = stripe_error(429, "Too many requests", type_="rate_limit_error")
    reply.headers["Retry-After"] = "0.2"
    stripe.queue("POST", "/v1/checkout/sessions", reply)
    policy = RetryPolicy(attempts=4, timeout=2.0, backoff=0.01, max_wait=5.0)  # real sleep
    with StripeAPI(_stripe_settings(stripe), policy) as api:
        made = _checkout(api)
    assert made.url.startswith("https://checkout.stripe.com/")
    first, second = stripe.requests
    assert second.at - first.at >= 0.2  # Retry-After honoured
    assert first.headers["idempotency-key"] == second.headers["idempotency-key"]


def test_stripe_500_then_success(stripe: FakeAPI, policy: RetryPolicy, sleeps: Sleeps) -> None:
    stripe.queue("POST", "/v1/checkout/sessions", stripe_error(500, "oops", type_="api_error"))
    with StripeAPI(_stripe_settings(stripe), policy) as api:
        made = _checkout(api)
    assert made.id == "cs_test_2"
    assert len(stripe.requests) == 2 and len(sleeps) == 1


def test_stripe_4xx_is_not_retried_and_carries_stripes_message(
    stripe: FakeAPI, policy: RetryPolicy, sleeps: Sleeps
) -> None:
    stripe.queue(
        "POST",
        "/v1/checkout/sessions",
        stripe_error(400, "No such price: 'price_growth'", code="resource_missing"),
    )
    with StripeAPI(_stripe_settings(stripe), policy) as api, pytest.raises(ProviderError) as info:
        _checkout(api)
    assert len(stripe.requests) == 1 and sleeps == []
    assert info.value.exit_code == 2 and info.value.status == 400
    assert str(info.value) == (
        "stripe refused checkout session (HTTP 400): "
        "No such price: 'price_growth' (resource_missing)"
    )


def test_stripe_should_retry_false_stops_a_5xx_retry(stripe: FakeAPI, policy: RetryPolicy) -> None:
    reply = stripe_error(500, "do not retry this", type_="api_error")
    reply.headers["Stripe-Should-Retry"] = "false"
    stripe.queue("POST", "/v1/checkout/sessions", reply)
    with StripeAPI(_stripe_settings(stripe), policy) as api, pytest.raises(ProviderError):
        _checkout(api)
    assert len(stripe.requests) == 1


def test_stripe_timeouts_give_up_after_the_attempts(stripe: FakeAPI, sleeps: Sleeps) -> None:
    for _ in range(3):
        stripe.queue("POST", "/v1/checkout/sessions", Reply(200, {}, delay=1.0))
    policy = RetryPolicy(attempts=3, timeout=0.2, backoff=0.01, max_wait=1.0, sleep=sleeps)
    with StripeAPI(_stripe_settings(stripe), policy) as api, pytest.raises(ProviderError) as info:
        _checkout(api)
    assert len(stripe.requests) == 3
    assert info.value.timed_out and info.value.exit_code == 1
    assert str(info.value) == (
        "stripe did not answer checkout session in time after 3 attempts: the request timed "
        "out; try again later"
    )


def test_stripe_unreachable_is_a_connection_error(policy: RetryPolicy) -> None:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    settings = Settings(
        database_url="sqlite://",
        stripe_secret_key="sk_test_1",
        stripe_api_base=f"http://127.0.0.1:{port}",
    )
    with StripeAPI(settings, policy) as api, pytest.raises(ProviderError) as info:
        _checkout(api)
    assert info.value.attempts == 4 and info.value.exit_code == 1
    assert str(info.value).startswith("could not reach stripe for checkout session after 4")


def test_stripe_portal_session(stripe: FakeAPI, policy: RetryPolicy) -> None:
    with StripeAPI(_stripe_settings(stripe), policy) as api:
        made = api.create_portal_session(customer="cus_9", return_url="https://app.example/b")
    assert made.url == "https://billing.stripe.com/p/session/test_1"
    [req] = stripe.requests
    assert req.path == "/v1/billing_portal/sessions"
    assert req.form() == {"customer": "cus_9", "return_url": "https://app.example/b"}
    assert req.headers["idempotency-key"].startswith("ff-billing-portal-session-")


def test_stripe_needs_its_secret_key() -> None:
    with pytest.raises(ConfigError, match="STRIPE_SECRET_KEY is not set"):
        StripeAPI(Settings(database_url="sqlite://"))


# --- Paystack --------------------------------------------------------------------------------


def _initialize(api: PaystackAPI, **kw):
    args = dict(
        email="treasurer@grace.example",
        amount_minor=2500000,
        currency="NGN",
        plan_code="PLN_growth",
        tenant="grace-lagos",
        plan="growth-monthly-ngn",
        callback_url="https://app.example/paid",
    )
    args.update(kw)
    return api.initialize_transaction(**args)


def test_paystack_initialize_request(paystack: FakeAPI, policy: RetryPolicy) -> None:
    with PaystackAPI(_paystack_settings(paystack), policy) as api:
        made = _initialize(api)
    assert made.url == "https://checkout.paystack.com/0peioxfhpn"
    [req] = paystack.requests
    assert (req.method, req.path) == ("POST", "/transaction/initialize")
    assert req.headers["authorization"] == "Bearer sk_test_ps"
    body = req.json()
    assert body["reference"].startswith("ff-") and made.reference == body["reference"]
    assert body == {
        "email": "treasurer@grace.example",
        "amount": "2500000",
        "currency": "NGN",
        "plan": "PLN_growth",
        "reference": body["reference"],
        "metadata": {"tenant": "grace-lagos", "plan": "growth-monthly-ngn"},
        "callback_url": "https://app.example/paid",
    }


def test_paystack_429_then_500_then_success_keeps_the_reference(paystack: FakeAPI) -> None:
    limited = paystack_error(429, "Too many requests")
    limited.headers["Retry-After"] = "0.2"
    paystack.queue("POST", "/transaction/initialize", limited, paystack_error(502, "Bad gateway"))
    policy = RetryPolicy(attempts=4, timeout=2.0, backoff=0.01, max_wait=5.0)
    with PaystackAPI(_paystack_settings(paystack), policy) as api:
        made = _initialize(api)
    first, second, _third = paystack.requests
    assert second.at - first.at >= 0.2
    refs = {r.json()["reference"] for r in paystack.requests}
    assert refs == {made.reference}


def test_paystack_refusal_is_not_retried(
    paystack: FakeAPI, policy: RetryPolicy, sleeps: Sleeps
) -> None:
    paystack.queue("POST", "/transaction/initialize", paystack_error(400, "Plan not found"))
    with (
        PaystackAPI(_paystack_settings(paystack), policy) as api,
        pytest.raises(ProviderError) as info,
    ):
        _initialize(api)
    assert len(paystack.requests) == 1 and sleeps == []
    assert str(info.value) == "paystack refused transaction initialize (HTTP 400): Plan not found"
    assert info.value.exit_code == 2


def test_paystack_status_false_on_200_is_an_error(paystack: FakeAPI, policy: RetryPolicy) -> None:
    paystack.queue("POST", "/transaction/initialize", paystack_error(200, "Invalid plan"))
    with (
        PaystackAPI(_paystack_settings(paystack), policy) as api,
        pytest.raises(ProviderError, match="Invalid plan"),
    ):
        _initialize(api)


def test_paystack_timeouts_give_up(paystack: FakeAPI, sleeps: Sleeps) -> None:
    path = "/subscription/SUB_abc/manage/link"
    paystack.queue("GET", path, Reply(200, {}, delay=1.0), Reply(200, {}, delay=1.0))
    policy = RetryPolicy(attempts=2, timeout=0.2, backoff=0.01, max_wait=1.0, sleep=sleeps)
    with (
        PaystackAPI(_paystack_settings(paystack), policy) as api,
        pytest.raises(ProviderError) as info,
    ):
        api.manage_link("SUB_abc")
    assert len(paystack.requests) == 2
    assert info.value.exit_code == 1
    assert "did not answer subscription manage link in time after 2 attempts" in str(info.value)


def test_paystack_manage_link(paystack: FakeAPI, policy: RetryPolicy) -> None:
    with PaystackAPI(_paystack_settings(paystack), policy) as api:
        link = api.manage_link("SUB_abc")
    assert link == "https://paystack.com/manage/subscriptions/SUB_abc?token=t0k"
    [req] = paystack.requests
    assert (req.method, req.path) == ("GET", "/subscription/SUB_abc/manage/link")
    assert req.headers["authorization"] == "Bearer sk_test_ps"


def test_paystack_needs_its_secret_key() -> None:
    with pytest.raises(ConfigError, match="PAYSTACK_SECRET_KEY is not set"):
        PaystackAPI(Settings(database_url="sqlite://"))
