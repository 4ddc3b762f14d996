"""What `faithflow invoices reconcile` reads at the providers, in our terms (the planner:
billing/reconcile_plan.py; the job: jobs/invoices_reconcile.py; the runbook: docs/invoices.md).

Read-only, through the shared retry policy (faithflow_ops.providers), page by page:

- Stripe: `GET /v1/invoices?created[gte]=…` (every platform invoice created in the window) and
  `GET /v1/subscriptions?status=all` (each subscription's state).
- Paystack: `GET /transaction?from=…&to=…` — a subscription charge is a transaction with a plan
  (one-off payments churches take through their subaccounts carry none and are not ours to
  reconcile); `success` is a paid invoice, `failed` an unpaid one, anything else (abandoned,
  ongoing) no invoice at all. It maps to our invoice through its reference (the
  `paystackReference` the invoice webhooks record, or the provider_invoice_id of an invoice
  this job imported). And `GET /subscription` for each subscription's state. Paystack
  documents no list of subscription invoices (`INV_…` codes reach us only by webhook), so an
  open Paystack invoice with no reference yet is not checked for `missing_at_provider`.

The normalisers (`stripe_invoice`, `paystack_transaction`) are pure functions over the
provider's JSON. Where the webhook handlers already decide something about these objects (a
subscription status in ours, a Paystack time, the rank of the paid event), the job hands their
rules in as a `WebhookRules`: the webhooks import billing, so billing does not import them.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, cast

from faithflow_ops.billing import lifecycle as fx
from faithflow_ops.billing import reconcile_allocation as alloc
from faithflow_ops.billing.identifiers import check

if TYPE_CHECKING:
    from faithflow_ops.config import Settings

PAGE_SIZE = 100  # objects per list request (Stripe's maximum)


class WebhookRules(Protocol):
    """The webhook handlers' reading of provider objects, as reconciling uses it (the job
    passes it in)."""

    def subscription_status(self, provider: str, status: str) -> str | None:
        """A provider subscription status in ours; None when it does not map (incomplete…)."""
        ...

    def parse_time(self, value: object) -> dt.datetime | None:
        """A Paystack time (`2026-03-01T09:00:00.000Z`) as aware UTC; None if absent or bad."""
        ...

    def paid_rank(self, provider: str) -> int:
        """The order-check rank of the event that marks an invoice paid."""
        ...


@dataclass(frozen=True)
class Remote:
    """One provider invoice (Stripe) or subscription charge (Paystack), in our columns."""

    provider: str
    ref: str  # in_… (Stripe) or the transaction reference (Paystack)
    customer: str | None  # canonical form, or None when missing or malformed
    raw_customer: str | None
    subscription_ref: str | None  # sub_… (Stripe); Paystack transactions name none
    plan_code: str | None  # PLN_… (Paystack)
    status: str  # one of INVOICE_STATUSES
    amount_due: int
    amount_paid: int
    currency: str
    created: dt.datetime
    period_start: dt.datetime | None = None
    period_end: dt.datetime | None = None
    due_at: dt.datetime | None = None
    paid_at: dt.datetime | None = None
    hosted_url: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class RemoteSub:
    ref: str
    raw_status: str
    status: str | None  # ours, None when it does not map (incomplete…)


@dataclass
class Fetched:
    invoices: list[Remote]
    subscriptions: dict[str, RemoteSub]
    signals: alloc.PaystackSignals = field(default_factory=alloc.PaystackSignals)


def text(value: object) -> str | None:
    """A non-blank string, else None."""
    return value if isinstance(value, str) and value.strip() else None


def _id(value: object) -> str | None:
    if isinstance(value, dict):
        value = value.get("id")
    return text(value)


def _customer(provider: str, raw: str | None) -> str | None:
    """A customer id as `subs backfill` writes it (trimmed, validated), or None."""
    return check(provider, "customer", raw).value if raw is not None else None


def stripe_invoice(obj: Mapping[str, Any]) -> Remote | None:
    ref = _id(obj)
    created = fx.timestamp(obj.get("created"))
    if ref is None or created is None:
        return None
    raw_customer = _id(obj.get("customer"))
    sub_ref = _id(obj.get("subscription"))
    parent = obj.get("parent")
    details = parent.get("subscription_details") if isinstance(parent, dict) else None
    if sub_ref is None and isinstance(details, dict):
        sub_ref = _id(details.get("subscription"))
    status = str(obj.get("status") or "open")
    if status not in ("draft", "open", "paid", "uncollectible", "void"):
        status = "open"
    transitions = obj.get("status_transitions")
    paid_at = fx.timestamp(transitions.get("paid_at")) if isinstance(transitions, dict) else None
    meta: dict[str, Any] = {}
    for key, name in (("stripeChargeId", "charge"), ("stripePaymentIntentId", "payment_intent")):
        if _id(obj.get(name)):
            meta[key] = _id(obj.get(name))
    return Remote(
        provider="stripe",
        ref=ref,
        customer=_customer("stripe", raw_customer),
        raw_customer=raw_customer,
        subscription_ref=sub_ref,
        plan_code=None,
        status=status,
        amount_due=fx.minor(obj.get("amount_due")),
        amount_paid=fx.minor(obj.get("amount_paid")),
        currency=fx.currency(obj.get("currency")),
        created=created,
        period_start=fx.timestamp(obj.get("period_start")),
        period_end=fx.timestamp(obj.get("period_end")),
        due_at=fx.timestamp(obj.get("due_date")),
        paid_at=paid_at if status == "paid" else None,
        hosted_url=text(obj.get("hosted_invoice_url")),
        metadata=meta,
    )


def _paystack_plan_code(obj: Mapping[str, Any]) -> str | None:
    for name in ("plan", "plan_object"):
        value = obj.get(name)
        if isinstance(value, dict):
            value = value.get("plan_code")
        if text(value):
            return cast(str, value).strip()
    return None


def paystack_transaction(obj: Mapping[str, Any], rules: WebhookRules) -> Remote | None:
    """A subscription charge as an invoice; None for anything else."""
    parse_time = rules.parse_time
    ref = text(obj.get("reference"))
    plan_code = _paystack_plan_code(obj)
    status = {"success": "paid", "failed": "open"}.get(str(obj.get("status")))
    created = parse_time(obj.get("createdAt") or obj.get("created_at"))
    if ref is None or plan_code is None or status is None or created is None:
        return None
    customer = obj.get("customer")
    raw_customer = text(customer.get("customer_code")) if isinstance(customer, dict) else None
    amount = fx.minor(obj.get("amount"))
    paid_at = parse_time(obj.get("paid_at") or obj.get("paidAt")) if status == "paid" else None
    return Remote(
        provider="paystack",
        ref=ref,
        customer=_customer("paystack", raw_customer),
        raw_customer=raw_customer,
        subscription_ref=None,
        plan_code=plan_code,
        status=status,
        amount_due=amount,
        amount_paid=amount if status == "paid" else 0,
        currency=fx.currency(obj.get("currency"), "NGN"),
        created=created,
        paid_at=paid_at or (created if status == "paid" else None),
        metadata={"paystackReference": ref},
    )


def fetch(
    provider: str,
    settings: Settings,
    start: dt.datetime,
    end: dt.datetime,
    rules: WebhookRules,
) -> Fetched:
    """Every provider invoice created in [start, end] and every provider subscription."""

    def sub(ref: str, raw_status: object) -> RemoteSub:
        return RemoteSub(ref, str(raw_status), rules.subscription_status(provider, str(raw_status)))

    if provider == "stripe":
        from faithflow_ops.providers.stripe import StripeAPI

        with StripeAPI(settings) as stripe:
            found = [
                stripe_invoice(o)
                for o in stripe.list_invoices(created_gte=start, page_size=PAGE_SIZE)
            ]
            subs = {
                ref: sub(ref, o.get("status"))
                for o in stripe.list_subscriptions(page_size=PAGE_SIZE)
                if (ref := _id(o))
            }
        invoices = [r for r in found if r is not None and r.created <= end]
        return Fetched(invoices, subs)
    from faithflow_ops.providers.paystack import PaystackAPI

    with PaystackAPI(settings) as paystack:
        raw = list(paystack.list_transactions(start=start, end=end, page_size=PAGE_SIZE))
        raw_subs = list(paystack.list_subscriptions(page_size=PAGE_SIZE))
    pairs = [(o, paystack_transaction(o, rules)) for o in raw]
    subs = {
        ref: sub(ref, o.get("status"))
        for o in raw_subs
        if (ref := text(o.get("subscription_code")))
    }
    # Charges without a plan are no invoice of ours, but a dunning retry among them may have
    # paid one (`reopen_invoice` then leaves it alone).
    signals = alloc.paystack_signals(raw_subs, [o for o, r in pairs if r is None])
    return Fetched([r for _, r in pairs if r is not None], subs, signals)
