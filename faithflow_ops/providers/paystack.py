"""Paystack: webhook signatures (`x-paystack-signature`, hex HMAC-SHA512 of the raw body keyed
with the secret key). Paystack sends no timestamp: replays are stopped by the inbox's
deduplication, and optionally by the source-IP allowlist the receiver applies."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Sequence

from faithflow_ops.providers import SignatureError

# Where Paystack says its webhooks come from (documented; PAYSTACK_ALLOWED_IPS to enforce).
PUBLISHED_WEBHOOK_IPS = ("52.31.139.75", "52.49.173.169", "52.214.14.220")


def signature(body: bytes, secret_key: str) -> str:
    return hmac.new(secret_key.encode("utf-8"), body, hashlib.sha512).hexdigest()


def verify_webhook(body: bytes, header: str | None, secret_keys: Sequence[str]) -> None:
    """Raise SignatureError unless `header` is the HMAC of `body` under one of the keys."""
    if not header:
        raise SignatureError("missing x-paystack-signature header")
    given = header.strip().lower()
    for key in secret_keys:
        if hmac.compare_digest(signature(body, key), given):
            return
    raise SignatureError("x-paystack-signature does not match the body under PAYSTACK_SECRET_KEY")
