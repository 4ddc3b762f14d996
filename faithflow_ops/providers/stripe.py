"""Stripe: webhook signatures, checked by the official SDK's verifier.

`stripe` is imported inside the functions: `faithflow --help` must not pay for it.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

from faithflow_ops.providers import SignatureError


def verify_webhook(body: bytes, header: str | None, secrets: Sequence[str], tolerance: int) -> None:
    """Raise SignatureError unless `Stripe-Signature` proves `body` came from Stripe recently.

    Any `v1` signature in the header may match any of `secrets` (rotation). A signature that
    matches but whose timestamp is older than `tolerance` seconds (0: no limit) is refused as
    expired, not as forged, so the log says which.
    """
    from stripe import SignatureVerificationError, WebhookSignature

    if not header:
        raise SignatureError("missing Stripe-Signature header")
    try:
        payload = body.decode("utf-8")
    except UnicodeDecodeError:
        raise SignatureError("body is not UTF-8 text, so it cannot be a Stripe event") from None
    last = "no webhook secret configured"
    for secret in secrets:
        try:
            WebhookSignature.verify_header(payload, header, secret, tolerance=None)
        except SignatureVerificationError as exc:
            last = str(exc.user_message or exc)
            continue
        if tolerance:
            try:
                WebhookSignature.verify_header(payload, header, secret, tolerance=tolerance)
            except SignatureVerificationError:
                raise SignatureError(
                    f"timestamp is older than the {tolerance} s tolerance (a replay, or a "
                    "clock far off); the provider's retry will carry a fresh timestamp"
                ) from None
        return
    raise SignatureError(f"signature does not verify: {last}")


def signature_header(body: bytes, secret: str, timestamp: int | None = None) -> str:
    """The `Stripe-Signature` header Stripe would send for `body` (for `webhooks sign`)."""
    from stripe import WebhookSignature

    when = int(time.time()) if timestamp is None else timestamp
    header: str = WebhookSignature.generate_signature_header(
        body.decode("utf-8"), secret, timestamp=when
    )
    return header
