"""Plan changes, the rules (no database, no provider): what kind a change is, when it takes
effect by default, and the plain data a change is settled into before any call leaves the
machine (`ChangeRequest`) and what the provider calls made of it (`Outcome`).

The decisions are explained in billing/plan_changes.py (the commands) and docs/plan-changes.md.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

from faithflow_ops.clock import iso
from faithflow_ops.errors import UserError
from faithflow_ops.models import Subscription, SubscriptionPlan
from faithflow_ops.providers._http import ProviderError
from faithflow_ops.providers.ids import check

AT_CHOICES = ("now", "period_end")
LIVE = ("active", "trialing")
UNSETTLED = ("past_due", "unpaid", "suspended")
PLAN_KEYS = {"stripe": "stripePriceId", "paystack": "paystackPlanCode"}
# The setting each provider's calls need (attribute, environment variable).
SECRET_SETTINGS = {
    "stripe": ("stripe_secret_key", "STRIPE_SECRET_KEY"),
    "paystack": ("paystack_secret_key", "PAYSTACK_SECRET_KEY"),
}
EMAIL_TOKEN_KEY = "paystackEmailToken"  # noqa: S105 (a metadata key name, not a secret)
# How an operator recovers a provider id the subscription row lacks.
RECOVER_ID = (
    "`faithflow subs backfill` may recover it from subscription metadata, or a webhook replay "
    "(`faithflow webhooks replay --unmatched`) from a stored event"
)


def paystack_email_token(sub: Subscription, code: str) -> str:
    """The email token Paystack needs to disable subscription `code`, from the row's metadata;
    UserError (with how to recover it) when it is missing or malformed."""
    token = check("paystack", "email_token", (sub.metadata_ or {}).get(EMAIL_TOKEN_KEY)).value
    if token is None:
        raise UserError(
            f"subscription {sub.id} has no {EMAIL_TOKEN_KEY} in its metadata, which Paystack "
            f"needs to disable {code}; {RECOVER_ID}"
        )
    return token


# ---------------------------------------------------------------------------------------------
# classification


def per_year(plan: SubscriptionPlan) -> int:
    """The plan's price over a year, in minor units (exact: compares prices per month)."""
    return plan.amount_minor * (12 if plan.interval == "month" else 1)


def classify(current: SubscriptionPlan, target: SubscriptionPlan) -> str:
    """`upgrade`, `downgrade` or `interval_change` (see the module's decisions)."""
    if current.tier_rank == target.tier_rank and current.interval != target.interval:
        return "interval_change"
    if current.tier_rank != target.tier_rank:
        return "upgrade" if target.tier_rank > current.tier_rank else "downgrade"
    return "upgrade" if per_year(target) > per_year(current) else "downgrade"


def default_at(kind: str, provider: str) -> str:
    """Stripe upgrades now (prorated); everything else, and every Paystack change, at the
    period end — Paystack does not prorate, so an upgrade now would bill the overlap twice."""
    return "now" if kind == "upgrade" and provider == "stripe" else "period_end"


# ---------------------------------------------------------------------------------------------
# the request


@dataclass(frozen=True)
class Replaced:
    """The scheduled change `--replace` cancels first."""

    id: int
    provider_refs: dict[str, Any]


@dataclass(frozen=True)
class RefundPlan:
    """Paystack, a change now: what of the old plan's paid period goes back to the church.

    `amount_minor` 0 means no refund call: `note` says why (`--no-refund`, nothing paid)."""

    amount_minor: int
    currency: str
    note: str
    transaction: str | None = None  # the paystackReference of the charge that paid the period
    invoice_id: int | None = None
    paid_minor: int = 0
    period_start: dt.datetime | None = None
    period_end: dt.datetime | None = None
    unused_seconds: int = 0
    period_seconds: int = 0

    def call(self) -> str | None:
        if self.amount_minor <= 0 or self.transaction is None:
            return None
        return f"POST /refund transaction={self.transaction} amount={self.amount_minor}"

    def doc(self) -> dict[str, Any]:
        return {
            "amount_minor": self.amount_minor,
            "currency": self.currency,
            "transaction": self.transaction,
            "invoice_id": self.invoice_id,
            "paid_minor": self.paid_minor,
            "period_start": iso(self.period_start),
            "period_end": iso(self.period_end),
            "unused_seconds": self.unused_seconds,
            "period_seconds": self.period_seconds,
            "note": self.note,
        }


@dataclass(frozen=True)
class ChangeRequest:
    """Everything a change needs, settled before any provider call."""

    tenant: str
    tenant_id: int
    subscription_id: int
    provider: str
    provider_subscription_id: str
    from_plan_id: int
    from_plan: str
    from_interval: str
    to_plan_id: int
    to_plan: str
    to_interval: str
    kind: str
    at: str  # now | period_end
    effective_at: dt.datetime
    proration_behavior: str | None  # Stripe
    to_provider_plan: str  # stripePriceId or paystackPlanCode of the target
    customer: str | None  # Paystack: CUS_… or the billing email
    email_token: str | None  # Paystack: the old subscription's token
    requested_by: str
    reason: str | None
    replaces: Replaced | None = None
    warnings: list[str] = field(default_factory=list)
    refund: RefundPlan | None = None  # Paystack, now

    def calls(self) -> list[str]:
        """The provider calls a run makes, in order (what `--dry-run` prints)."""
        out = cancel_calls(self.provider, self.replaces.provider_refs) if self.replaces else []
        sub = self.provider_subscription_id
        if self.provider == "stripe":
            out.append(f"GET /v1/subscriptions/{sub} (its item id and price)")
            if self.at == "now":
                out.append(
                    f"POST /v1/subscriptions/{sub} items[0][price]={self.to_provider_plan} "
                    f"proration_behavior={self.proration_behavior}"
                )
            else:
                out.append(f"POST /v1/subscription_schedules from_subscription={sub}")
                out.append(
                    "POST /v1/subscription_schedules/{schedule} phases: the current price until "
                    f"the period end, then {self.to_provider_plan} (proration_behavior=none, "
                    "end_behavior=release)"
                )
            return out
        out.append(f"POST /subscription/disable code={sub}")
        start = "now" if self.at == "now" else f"start_date={iso(self.effective_at)}"
        out.append(
            f"POST /subscription customer={self.customer} plan={self.to_provider_plan} {start}"
        )
        refund = self.refund.call() if self.refund else None
        if refund:
            out.append(refund)
        return out

    def doc(self) -> dict[str, Any]:
        return {
            "tenant": self.tenant,
            "subscription_id": self.subscription_id,
            "provider": self.provider,
            "kind": self.kind,
            "from_plan": self.from_plan,
            "to_plan": self.to_plan,
            "from_interval": self.from_interval,
            "to_interval": self.to_interval,
            "at": self.at,
            "effective_at": iso(self.effective_at),
            "proration_behavior": self.proration_behavior,
            "requested_by": self.requested_by,
            "reason": self.reason,
            "replaces": self.replaces.id if self.replaces else None,
            "refund": self.refund.doc() if self.refund else None,
        }


# ---------------------------------------------------------------------------------------------
# what the provider calls made of it


@dataclass(frozen=True)
class Outcome:
    """What the provider calls did: the new row's status, its refs, or the error."""

    status: str  # applied | scheduled | rejected
    effective_at: dt.datetime
    provider_refs: dict[str, Any]
    error: ProviderError | None = None
    replaced_canceled: bool = False  # --replace: the old change's provider side was undone
    refund_error: str | None = None  # Paystack, now: the change is applied, its refund failed


def cancel_calls(provider: str, refs: dict[str, Any]) -> list[str]:
    """The calls that take back a scheduled change's provider side (what a preview prints)."""
    if provider == "stripe":
        schedule = refs.get("stripe_schedule")
        return [f"POST /v1/subscription_schedules/{schedule}/release"] if schedule else []
    out = []
    if refs.get("paystack_new_subscription"):
        out.append(f"POST /subscription/disable code={refs['paystack_new_subscription']}")
    if refs.get("paystack_old_subscription"):
        out.append(f"POST /subscription/enable code={refs['paystack_old_subscription']}")
    return out
