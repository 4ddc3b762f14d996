"""Whose a platform dispute is: what a Stripe dispute object says of the payment it disputes,
and what `disputes monitor` learned at Stripe about it (`PaymentLinks`). Read by the Stripe
dispute handler (webhooks/stripe.py) and by the monitor's pull (billing/dispute_pulls.py)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


def expanded_id(value: object) -> str | None:
    """A Stripe id field that may be expanded into its object."""
    if isinstance(value, dict):
        value = value.get("id")
    return value if isinstance(value, str) and value else None


def disputed_payment(obj: Mapping[str, Any]) -> tuple[str | None, str | None]:
    """A Stripe dispute object's (charge, payment intent) ids."""
    return expanded_id(obj.get("charge")), expanded_id(obj.get("payment_intent"))


@dataclass(frozen=True)
class PaymentLinks:
    """What `disputes monitor` learned at Stripe about a platform dispute's payment, for
    `dispute_state` to map through (a webhook handler never calls Stripe, so it passes none).

    `invoice`: the invoice the disputed payment intent paid (`GET /v1/invoice_payments`);
    `customer`: the disputed charge's customer (`GET /v1/charges/{id}`)."""

    invoice: str | None = None
    customer: str | None = None

    def to_dict(self) -> dict[str, str | None]:
        return {"invoice": self.invoice, "customer": self.customer}

    @classmethod
    def from_dict(cls, doc: Mapping[str, Any] | None) -> PaymentLinks | None:
        if not doc:
            return None
        return cls(
            invoice=expanded_id(doc.get("invoice")), customer=expanded_id(doc.get("customer"))
        )
