"""Payment retries of a dunning step: ask the provider to charge the open amount again.

- Stripe (platform invoices): `POST /v1/invoices/{id}/pay` on the case's open invoice, with the
  Idempotency-Key `dunning:{case}:{step}:payment_retry` (a retried request never charges twice).
- Paystack: `POST /transaction/charge_authorization` on the subscription's saved authorization
  (`metadata.paystackAuthorizationCode`, where `subs backfill` puts it), reference
  `ff-dunning-{case}-{step}` (Paystack refuses a second transaction with one reference).

Outcomes: `succeeded` (the provider took the payment), `failed` (declined or refused: a 4xx, or
Paystack's charge status `failed`), `error` (unreachable, 5xx/429 after the retries, or an
outcome not known yet) and `skipped` (nothing to charge with: no key, no open invoice, no saved
authorization). A success marks nothing paid here: the provider's webhook (`invoice.paid`,
`charge.success`) does that through the one path every payment takes (billing.lifecycle), and
closing the case as recovered follows from it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from faithflow_ops.errors import ConfigError
from faithflow_ops.models.billing import AUTHORIZATION_KEY
from faithflow_ops.providers._http import ProviderError

if TYPE_CHECKING:
    from faithflow_ops.config import Settings

SUCCEEDED, FAILED, ERROR, SKIPPED = "succeeded", "failed", "error", "skipped"
PAYSTACK_DECLINED = frozenset({"failed", "reversed", "abandoned"})


@dataclass(frozen=True)
class Target:
    """What one retry charges, read from the database before the call."""

    provider: str  # stripe | paystack
    case_id: int
    step: str
    tenant: str  # slug
    invoice_ref: str | None  # Stripe in_…; Paystack invoice code (metadata only)
    amount_minor: int
    currency: str
    authorization_code: str | None = None  # Paystack
    email: str | None = None  # Paystack: the customer's email
    plan: str | None = None

    @property
    def idempotency_key(self) -> str:
        return f"dunning:{self.case_id}:{self.step}:payment_retry"

    @property
    def reference(self) -> str:
        # Paystack references allow letters, digits, '-', '.', '='.
        safe = "".join(c if c.isalnum() or c in "-.=" else "-" for c in self.step)
        return f"ff-dunning-{self.case_id}-{safe}"


@dataclass(frozen=True)
class Result:
    outcome: str  # succeeded | failed | error | skipped
    detail: str


def skip_reason(settings: Settings, target: Target) -> str | None:
    """Why this retry cannot be tried at all (recorded as `skipped`), or None."""
    if target.provider == "stripe":
        if not settings.stripe_secret_key:
            return "STRIPE_SECRET_KEY is not set"
        if not target.invoice_ref:
            return "no open Stripe invoice to pay"
    elif target.provider == "paystack":
        if not settings.paystack_secret_key:
            return "PAYSTACK_SECRET_KEY is not set"
        if not target.authorization_code:
            return (
                f"no saved Paystack authorization (subscription metadata.{AUTHORIZATION_KEY}); "
                "the church pays through the link in the reminder"
            )
        if not target.email:
            return "no billing email for the Paystack customer"
        if target.amount_minor <= 0:
            return "nothing to charge (amount 0)"
    else:
        return f"provider {target.provider!r} has no payment retry"
    return None


def _refused(exc: ProviderError) -> bool:
    """A refusal (declined card, invalid request): trying again now will not help."""
    return exc.status is not None and 400 <= exc.status < 500 and not exc.retryable


def attempt(settings: Settings, target: Target) -> Result:
    """Call the provider once (its client retries transient failures); never raises for the
    provider's answer."""
    reason = skip_reason(settings, target)
    if reason is not None:
        return Result(SKIPPED, reason)
    try:
        if target.provider == "stripe":
            return _stripe(settings, target)
        return _paystack(settings, target)
    except ConfigError as exc:
        return Result(SKIPPED, str(exc))
    except ProviderError as exc:
        tries = f" after {exc.attempts} attempts" if exc.attempts > 1 else ""
        status = f" (HTTP {exc.status})" if exc.status else ""
        if _refused(exc):
            return Result(FAILED, f"{exc.message}{status}")
        return Result(ERROR, f"{exc.message}{status}{tries}")


def _stripe(settings: Settings, target: Target) -> Result:
    from faithflow_ops.providers.stripe import StripeAPI

    assert target.invoice_ref is not None
    with StripeAPI(settings) as api:
        doc = api.pay_invoice(target.invoice_ref, target.idempotency_key)
    status = doc.get("status")
    if status == "paid" or doc.get("paid") is True:
        return Result(
            SUCCEEDED,
            f"Stripe paid invoice {target.invoice_ref}; the invoice.paid webhook settles it",
        )
    return Result(ERROR, f"Stripe answered invoice {target.invoice_ref} with status {status!r}")


def _paystack(settings: Settings, target: Target) -> Result:
    from faithflow_ops.providers.paystack import PaystackAPI

    assert target.authorization_code is not None and target.email is not None
    metadata: dict[str, Any] = {"tenant": target.tenant, "dunning_case": target.case_id}
    if target.plan:
        metadata["plan"] = target.plan
    if target.invoice_ref:
        metadata["invoice"] = target.invoice_ref
    with PaystackAPI(settings) as api:
        charge = api.charge_authorization(
            email=target.email,
            amount_minor=target.amount_minor,
            authorization_code=target.authorization_code,
            reference=target.reference,
            currency=target.currency,
            metadata=metadata,
        )
    said = f" ({charge.gateway_response})" if charge.gateway_response else ""
    if charge.status == "success":
        return Result(
            SUCCEEDED,
            f"Paystack charged {target.reference}{said}; the charge.success webhook settles it",
        )
    if charge.status in PAYSTACK_DECLINED:
        return Result(FAILED, f"Paystack charge {target.reference} {charge.status}{said}")
    return Result(
        ERROR,
        f"Paystack charge {target.reference} is {charge.status}{said}; its outcome arrives by "
        "webhook",
    )
