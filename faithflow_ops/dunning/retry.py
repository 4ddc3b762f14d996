"""Payment retries of a dunning step: ask the provider to charge the open amount again.

- Stripe (platform invoices): `POST /v1/invoices/{id}/pay` on the case's open invoice, with the
  Idempotency-Key `dunning:{case}:{step}:payment_retry` (a retried request never charges twice).
- Paystack: `POST /transaction/charge_authorization` on the subscription's saved authorization
  (`metadata.paystackAuthorizationCode`, where `subs backfill` puts it), reference
  `ff-dunning-{case}-{step}` (Paystack refuses a second transaction with one reference).

Before a Paystack charge, Paystack is asked (`GET /transaction/verify/:reference`) about the
references this invoice may already have been paid under — the invoice's own charge reference
and the case's earlier retries: the church may have paid another way while the webhook is in
flight. A successful one is recorded as the retry's success and nothing is charged.

A hard decline (Stripe's `decline_code` stolen_card, lost_card, do_not_honor…; a Paystack
gateway response such as "Stolen Card") is `failed` with the detail starting `hard decline`:
the case's later retries are skipped (dunning.planner), since charging that card again cannot
work and looks like card testing to the issuer.

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
HARD_DECLINE = "hard decline"  # how dunning_attempts.detail of a hard decline starts
# Stripe decline codes after which the card must not be charged again
# (https://docs.stripe.com/declines/codes: "the customer needs to contact their card issuer"
# or use another card).
STRIPE_HARD_DECLINES = frozenset(
    {
        "do_not_honor",
        "fraudulent",
        "incorrect_number",
        "invalid_account",
        "invalid_number",
        "lost_card",
        "merchant_blacklist",
        "pickup_card",
        "restricted_card",
        "revocation_of_all_authorizations",
        "revocation_of_authorization",
        "security_violation",
        "stolen_card",
        "stop_payment_order",
        "transaction_not_allowed",
    }
)
# Paystack passes the issuer's answer on as `gateway_response` text.
PAYSTACK_HARD_DECLINES = (
    "stolen",
    "lost card",
    "pick up",
    "pickup",
    "restricted card",
    "do not honor",
    "do not honour",
    "fraud",
    "invalid card",
    "invalid account",
    "not permitted",
    "blocked",
)


def paystack_hard(gateway_response: str | None) -> bool:
    text = (gateway_response or "").lower()
    return any(word in text for word in PAYSTACK_HARD_DECLINES)


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
    # Paystack: references the invoice may already be paid under (checked before charging)
    paid_references: tuple[str, ...] = ()

    @property
    def idempotency_key(self) -> str:
        return f"dunning:{self.case_id}:{self.step}:payment_retry"

    @property
    def reference(self) -> str:
        return reference_for(self.case_id, self.step)


def reference_for(case_id: int, step: str) -> str:
    """The Paystack reference of a case's retry at `step`."""
    # Paystack references allow letters, digits, '-', '.', '='.
    safe = "".join(c if c.isalnum() or c in "-.=" else "-" for c in step)
    return f"ff-dunning-{case_id}-{safe}"


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
        if exc.decline_code in STRIPE_HARD_DECLINES:
            why = f"{HARD_DECLINE} ({exc.decline_code}): {exc.message}{status}"
            return Result(FAILED, f"{why}; no more retries")
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
        for reference in target.paid_references:
            earlier = api.verify_transaction(reference)
            if earlier is not None and earlier.status == "success":
                return Result(
                    SUCCEEDED,
                    f"Paystack already has a successful charge {reference} for this invoice; "
                    "not charged again (its charge.success webhook settles it)",
                )
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
    if charge.status in PAYSTACK_DECLINED and paystack_hard(charge.gateway_response):
        return Result(
            FAILED,
            f"{HARD_DECLINE} ({charge.gateway_response}): Paystack charge {target.reference} "
            f"{charge.status}; no more retries",
        )
    if charge.status in PAYSTACK_DECLINED:
        return Result(FAILED, f"Paystack charge {target.reference} {charge.status}{said}")
    return Result(
        ERROR,
        f"Paystack charge {target.reference} is {charge.status}{said}; its outcome arrives by "
        "webhook",
    )
