"""Whose a platform dispute is: the platform invoice the disputed payment paid, as our billing
records say (`platform_dispute_owner`, one look-up for both providers' dispute handlers), what
a Stripe dispute object says of the payment it disputes, and what `disputes monitor` learned
at Stripe about it (`PaymentLinks`). Read by the dispute handlers (webhooks/stripe.py,
webhooks/paystack.py) and by the monitor's pull (billing/dispute_pulls.py)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from faithflow_ops.models import Invoice


def platform_dispute_owner(
    session: Session,
    provider: str,
    paid_by: Sequence[tuple[str, str | None]],
    provider_invoice: str | None = None,
) -> tuple[int, int] | None:
    """(invoice id, tenant id) of the `provider` invoice a disputed platform payment paid: the
    first `(metadata key, value)` of `paid_by` a recorded invoice holds (the oldest, if the
    payment paid several), else the invoice the provider itself named (`provider_invoice`,
    its provider id). None: no recorded invoice places the dispute."""
    for key, value in paid_by:
        if not value:
            continue
        row = session.execute(
            select(Invoice.id, Invoice.tenant_id)
            .where(Invoice.provider == provider, Invoice.metadata_[key].as_string() == value)
            .order_by(Invoice.id)
            .limit(1)
        ).first()
        if row is not None:
            return row[0], row[1]
    if provider_invoice:
        row = session.execute(
            select(Invoice.id, Invoice.tenant_id).where(
                Invoice.provider == provider, Invoice.provider_invoice_id == provider_invoice
            )
        ).first()
        if row is not None:
            return row[0], row[1]
    return None


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
