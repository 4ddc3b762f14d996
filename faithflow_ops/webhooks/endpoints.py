"""The webhook endpoints: path and signing secret per (provider, scope). Shared by the
receiver and `faithflow webhooks sign`; imports nothing heavy, so the CLI stays fast."""

from __future__ import annotations

from typing import NamedTuple


class Endpoint(NamedTuple):
    path: str
    secrets_setting: str  # the Settings attribute holding the secrets (a tuple)
    variable: str  # the environment variable an operator sets


ENDPOINTS: dict[tuple[str, str], Endpoint] = {
    ("stripe", "tenant"): Endpoint(
        "/webhooks/stripe", "stripe_webhook_secrets", "STRIPE_WEBHOOK_SECRET"
    ),
    ("stripe", "platform"): Endpoint(
        "/webhooks/stripe/platform",
        "stripe_platform_webhook_secrets",
        "STRIPE_PLATFORM_WEBHOOK_SECRET",
    ),
    ("paystack", "tenant"): Endpoint(
        "/webhooks/paystack", "paystack_secret_keys", "PAYSTACK_SECRET_KEY"
    ),
    ("paystack", "platform"): Endpoint(
        "/webhooks/paystack/platform", "paystack_secret_keys", "PAYSTACK_SECRET_KEY"
    ),
    # Mux (issue 18): FaithFlow's own Mux environment, which hosts every church's live streams,
    # posts to one URL with one signing secret — platform scope.
    ("mux", "platform"): Endpoint("/webhooks/mux", "mux_webhook_secrets", "MUX_WEBHOOK_SECRET"),
}

# Every provider with a webhook endpoint, in the order above (`webhooks list --provider`).
PROVIDERS: tuple[str, ...] = tuple(dict.fromkeys(provider for provider, _ in ENDPOINTS))
