"""Plan changes (`faithflow subs change-plan`, `subs changes`, `subs cancel-change`).

A change moves a tenant's live subscription to another plan or billing interval. It is worked
out in three steps, like the billing links (billing/links.py):

1. `prepare` reads the database and settles everything: the subscription, the target plan, the
   kind, when it takes effect, the provider calls. Every refusal an operator can fix happens
   here (exit 2), before any call leaves the machine. `--dry-run` stops after this step.
2. `execute` makes the provider calls, outside any database transaction.
3. `record` writes the `plan_changes` row (and, for a change applied now, the subscription's
   new plan) with its audit entries, in one transaction. A provider refusal is recorded too:
   the row is `rejected` with the provider's message.

Decisions (docs/plan-changes.md explains them for operators):

- Kind: the same tier (`tier_rank`) in another interval is an `interval_change`; otherwise a
  higher tier is an `upgrade` and a lower one a `downgrade`; within a tier and interval the
  price per month decides (higher: upgrade; equal or lower: downgrade, nothing more to charge).
- `--interval`: the target is the `--to` plan when it already bills in that interval, else the
  one active plan of the same tier and currency (and Stripe product, when the plan names one)
  that does. So `--to <current plan> --interval year` is "the same plan, yearly".
- When: on Stripe upgrades now (Stripe prorates), on Paystack at the period end (Paystack does
  not prorate: an upgrade now charges the new plan in full on top of the period already paid);
  downgrades and interval changes at the period end (`current_period_end`, or `trial_end` of a
  trial with no period yet). `--at` overrides; an upgrade at the period end and anything but
  a Stripe upgrade now are not prorated.
- Refused: a subscription past due, unpaid or suspended (settle first); a tenant with no active
  or trialing subscription; a target plan inactive or in another currency; the same plan and
  interval; a change already scheduled for the subscription (`--replace` cancels it first).
- Stripe, now: `GET /v1/subscriptions/{id}` for the item, then `POST /v1/subscriptions/{id}`
  with the item's new price and `proration_behavior`. At the period end: a subscription
  schedule from the subscription, then a second phase on the new price from the current
  phase's end (released once it starts); the schedule's phase end is the effective time.
- Paystack (no in-place change): `POST /subscription/disable` of the old subscription (code +
  email token: it stops renewing) and `POST /subscription` for the customer on the new plan,
  with `start_date` = the period end (or now: Paystack charges the new plan in full at once).
  Both codes go into `provider_refs`. A change applied now also moves the local subscription
  to the new code, so the provider's later events for it land on the same row.
- Paystack, now: the unused part of the period paid on the old plan is refunded
  (`POST /refund`, `transaction` = the reference of the charge that paid the period, `amount`
  = paid × unused seconds / period seconds, rounded down, at most what was paid). The charge:
  the subscription's paid Paystack invoice with a `paystackReference` whose period covers now,
  else the newest one (its period then comes from the subscription). Unknown, or already
  refunded by an earlier change: refused (exit 2) unless `--no-refund` says the church pays
  the overlap twice. A trial with no paid charge has nothing to refund. Order: disable, create,
  then refund — the refund only once the new plan is in place, so a failed create never leaves
  a refund for a period the church keeps; a failed refund leaves the change `applied` with the
  failure on the row (`error`, `provider_refs.refund_error`) and exit 1, for an operator to
  refund by hand (the amount owed and the transaction are named).
- A change scheduled for the period end is applied locally by `faithflow subs automate`
  (`apply_plan_change`) once `effective_at` has passed; a Paystack subscription moves to the
  new code then (`move_to_new_paystack_code`, shared with a change applied now). Until then
  the webhooks hold the new code as pending and keep the old row live (webhooks/paystack.py).
- Cancel: only a `scheduled` change. Stripe: the schedule is released (the subscription keeps
  its current price). Paystack: the new subscription is disabled and the old one enabled again.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, cast

from sqlalchemy import CursorResult, select, update
from sqlalchemy.orm import Session

from faithflow_ops import audit
from faithflow_ops.billing.identifiers import check
from faithflow_ops.billing.plans import get_plan
from faithflow_ops.db import utcnow
from faithflow_ops.errors import NotFound, UserError, one_of
from faithflow_ops.models import Invoice, PlanChange, Subscription, SubscriptionPlan, Tenant
from faithflow_ops.models.billing import PLAN_CHANGE_STATUSES, PLAN_INTERVALS
from faithflow_ops.providers._http import ProviderError
from faithflow_ops.tenancy.tenants import ensure_writable, get_tenant

if TYPE_CHECKING:
    from faithflow_ops.config import Settings
    from faithflow_ops.db import Database
    from faithflow_ops.providers._http import RetryPolicy
    from faithflow_ops.providers.paystack import PaystackAPI

AT_CHOICES = ("now", "period_end")
LIVE = ("active", "trialing")
UNSETTLED = ("past_due", "unpaid", "suspended")
PLAN_KEYS = {"stripe": "stripePriceId", "paystack": "paystackPlanCode"}
_EXAMPLES = {"stripe": "price_…", "paystack": "PLN_…"}
_SECRET = {
    "stripe": ("stripe_secret_key", "STRIPE_SECRET_KEY"),
    "paystack": ("paystack_secret_key", "PAYSTACK_SECRET_KEY"),
}
EMAIL_TOKEN_KEY = "paystackEmailToken"  # noqa: S105 (a metadata key name, not a secret)
_RECOVER = (
    "`faithflow subs backfill` may recover it from subscription metadata, or a webhook replay "
    "(`faithflow webhooks replay --unmatched`) from a stored event"
)


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
            "period_start": _iso(self.period_start),
            "period_end": _iso(self.period_end),
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
        out = _cancel_calls(self.provider, self.replaces.provider_refs) if self.replaces else []
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
        start = "now" if self.at == "now" else f"start_date={_iso(self.effective_at)}"
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
            "effective_at": _iso(self.effective_at),
            "proration_behavior": self.proration_behavior,
            "requested_by": self.requested_by,
            "reason": self.reason,
            "replaces": self.replaces.id if self.replaces else None,
            "refund": self.refund.doc() if self.refund else None,
        }


def _iso(value: dt.datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def _subscription(session: Session, tenant: Tenant, subscription_id: int | None) -> Subscription:
    """The subscription to change: `--subscription`, else the tenant's live one."""
    subs = list(
        session.scalars(
            select(Subscription)
            .where(Subscription.tenant_id == tenant.id)
            .order_by(Subscription.id.desc())
        )
    )
    if subscription_id is not None:
        chosen = [s for s in subs if s.id == subscription_id]
        if not chosen:
            raise NotFound(
                f"tenant {tenant.slug} has no subscription {subscription_id}; see "
                f"`faithflow subs list --tenant {tenant.slug}`"
            )
        sub = chosen[0]
    else:
        live = [s for s in subs if s.status in LIVE]
        if len(live) > 1:
            ids = ", ".join(str(s.id) for s in live)
            raise UserError(
                f"tenant {tenant.slug} has {len(live)} active or trialing subscriptions ({ids}); "
                "name the one to change with --subscription ID"
            )
        unsettled = [s for s in subs if s.status in UNSETTLED]
        if live:
            sub = live[0]
        elif unsettled:
            sub = unsettled[0]
        else:
            raise UserError(
                f"tenant {tenant.slug} has no active or trialing subscription to change; start "
                f"one with `faithflow billing checkout --tenant {tenant.slug} --plan …`"
            )
    if sub.status in UNSETTLED:
        raise UserError(
            f"subscription {sub.id} of {tenant.slug} is {sub.status}: no plan change until it is "
            "settled; collect the overdue payment first (`faithflow billing portal --tenant "
            f"{tenant.slug}` gives the church its payment page), then change the plan"
        )
    if sub.status not in LIVE:
        raise UserError(
            f"subscription {sub.id} of {tenant.slug} is {sub.status}, not active or trialing; "
            "only a live subscription can change plans (start a new one with `faithflow billing "
            f"checkout --tenant {tenant.slug} --plan …`)"
        )
    return sub


def resolve_target(
    session: Session, to: str, interval: str | None, current: SubscriptionPlan
) -> SubscriptionPlan:
    """The plan `--to` names, in `--interval` when given (see the module's decisions)."""
    named = get_plan(session, to)
    if interval is None or named.interval == interval:
        return named
    product = (named.metadata_ or {}).get("stripeProductId")
    siblings = [
        p
        for p in session.scalars(
            select(SubscriptionPlan)
            .where(
                SubscriptionPlan.tier_rank == named.tier_rank,
                SubscriptionPlan.currency == named.currency,
                SubscriptionPlan.interval == interval,
                SubscriptionPlan.active.is_(True),
            )
            .order_by(SubscriptionPlan.code)
        )
        if not product or (p.metadata_ or {}).get("stripeProductId") == product
    ]
    if len(siblings) == 1:
        return siblings[0]
    if not siblings:
        raise UserError(
            f"plan {named.code} bills per {named.interval} and no active plan of its tier "
            f"({named.tier_rank}) and currency ({named.currency}) bills per {interval}; add one "
            f"with `faithflow plans add … --interval {interval} --tier {named.tier_rank}`, or "
            "name the plan with --to"
        )
    codes = ", ".join(p.code for p in siblings)
    raise UserError(
        f"several active plans of {named.code}'s tier bill per {interval} ({codes}); name the "
        "one you mean with --to"
    )


def _provider_plan(plan: SubscriptionPlan, provider: str) -> str:
    value = (plan.metadata_ or {}).get(PLAN_KEYS[provider])
    if not isinstance(value, str) or not value.strip():
        key = PLAN_KEYS[provider]
        raise UserError(
            f"plan {plan.code} has no {key} in its metadata, so {provider} cannot bill it; set "
            f"it with `faithflow plans set-meta {plan.code} {key}={_EXAMPLES[provider]}`"
        )
    return value.strip()


def scheduled_change(session: Session, subscription_id: int) -> PlanChange | None:
    return session.scalar(
        select(PlanChange)
        .where(PlanChange.subscription_id == subscription_id, PlanChange.status == "scheduled")
        .order_by(PlanChange.id.desc())
    )


def _period_end(sub: Subscription, now: dt.datetime) -> dt.datetime:
    end = sub.current_period_end
    if end is None and sub.status == "trialing":
        end = sub.trial_end
    if end is None:
        raise UserError(
            f"subscription {sub.id} has no current period end recorded, so a change at the "
            "period end cannot be timed; use --at now, or let the provider's next webhook "
            "(or `faithflow webhooks replay`) record the period"
        )
    if end <= now:
        raise UserError(
            f"subscription {sub.id}'s recorded period ended {end.isoformat()} (its renewal has "
            "not been recorded yet); use --at now, or wait for the renewal webhook"
        )
    return end


def prepare(
    session: Session,
    settings: Settings,
    *,
    tenant: str,
    to: str,
    actor: str,
    interval: str | None = None,
    at: str | None = None,
    replace_scheduled: bool = False,
    reason: str | None = None,
    subscription_id: int | None = None,
    no_refund: bool = False,
    now: dt.datetime | None = None,
) -> ChangeRequest:
    """Everything the change needs, or the UserError that says why not and what to do."""
    now = now or utcnow()
    if interval is not None:
        interval = one_of("--interval", interval.strip().lower(), PLAN_INTERVALS)
    if at is not None:
        at = one_of("--at", at.strip().lower().replace("-", "_"), AT_CHOICES)
    reason = reason.strip() if reason and reason.strip() else None
    tenant_row = get_tenant(session, tenant)
    ensure_writable(tenant_row, "changed")
    slug = tenant_row.slug
    sub = _subscription(session, tenant_row, subscription_id)
    current = session.get(SubscriptionPlan, sub.plan_id)
    assert current is not None
    target = resolve_target(session, to, interval, current)
    if not target.active:
        raise UserError(
            f"plan {target.code} is not active, so no subscription can move to it; choose an "
            "active plan (`faithflow plans list`)"
        )
    if target.currency != current.currency:
        raise UserError(
            f"plan {target.code} is billed in {target.currency} but subscription {sub.id} in "
            f"{current.currency}; a plan change keeps the currency — choose a {current.currency} "
            "plan, or start a new subscription with `faithflow billing checkout`"
        )
    if target.id == current.id:
        raise UserError(
            f"subscription {sub.id} of {slug} is already on {current.code} per "
            f"{current.interval}; nothing to change (for another interval pass --interval "
            f"{'year' if current.interval == 'month' else 'month'})"
        )
    pending = scheduled_change(session, sub.id)
    replaces = None
    if pending is not None:
        pending_to = session.get(SubscriptionPlan, pending.to_plan_id)
        what = (
            f"change {pending.id} ({pending.kind} to {pending_to.code if pending_to else '?'}, "
            f"effective {pending.effective_at.isoformat()})"
        )
        if not replace_scheduled:
            raise UserError(
                f"subscription {sub.id} already has scheduled {what}; pass --replace to cancel "
                f"it and schedule this one, or `faithflow subs cancel-change {pending.id}`"
            )
        replaces = Replaced(pending.id, dict(pending.provider_refs or {}))
    kind = classify(current, target)
    provider = sub.provider
    when = at or default_at(kind, provider)
    if no_refund and not (provider == "paystack" and when == "now"):
        what = (
            "takes effect at the period end"
            if when == "period_end"
            else "is applied now with Stripe's proration"
        )
        raise UserError(
            f"--no-refund applies only to a Paystack change --at now; this {provider} change "
            f"{what} and refunds nothing, so drop --no-refund"
        )
    effective = now if when == "now" else _period_end(sub, now)
    proration = None
    if provider == "stripe":
        proration = "create_prorations" if kind == "upgrade" and when == "now" else "none"
    to_provider_plan = _provider_plan(target, provider)
    code = check(provider, "subscription", sub.provider_subscription_id).value
    warnings: list[str] = []
    customer = token = None
    refund = None
    if code is None:
        label = (
            "Stripe subscription id (sub_…)"
            if provider == "stripe"
            else ("Paystack subscription code (SUB_…)")
        )
        raise UserError(
            f"subscription {sub.id} has no {label}, so {provider} cannot be told of the change; "
            f"{_RECOVER}"
        )
    if provider == "paystack":
        token = check("paystack", "email_token", (sub.metadata_ or {}).get(EMAIL_TOKEN_KEY)).value
        if token is None:
            raise UserError(
                f"subscription {sub.id} has no {EMAIL_TOKEN_KEY} in its metadata, which Paystack "
                f"needs to disable {code}; {_RECOVER}"
            )
        customer = check("paystack", "customer", sub.provider_customer_id).value
        customer = customer or tenant_row.billing_email
        if not customer:
            raise UserError(
                f"subscription {sub.id} has no Paystack customer code (CUS_…) and {slug} no "
                f"billing email, so the new subscription has no customer; set one with "
                f"`faithflow tenants set {slug} --email treasurer@church.example`"
            )
        if when == "now":
            refund = _refund_plan(session, sub, current, now, no_refund=no_refund)
            if no_refund:
                warnings.append(
                    "Paystack does not prorate and --no-refund was given: the new plan is charged "
                    "in full now and the unused part of the old period is not refunded — the "
                    "church pays the overlap twice"
                )
    settings.require(*_SECRET[provider])
    return ChangeRequest(
        tenant=slug,
        tenant_id=tenant_row.id,
        subscription_id=sub.id,
        provider=provider,
        provider_subscription_id=code,
        from_plan_id=current.id,
        from_plan=current.code,
        from_interval=current.interval,
        to_plan_id=target.id,
        to_plan=target.code,
        to_interval=target.interval,
        kind=kind,
        at=when,
        effective_at=effective,
        proration_behavior=proration,
        to_provider_plan=to_provider_plan,
        customer=customer,
        email_token=token,
        requested_by=actor,
        reason=reason,
        replaces=replaces,
        warnings=warnings,
        refund=refund,
    )


def _reference(invoice: Invoice) -> str | None:
    value = (invoice.metadata_ or {}).get("paystackReference")
    return value.strip() if isinstance(value, str) and value.strip() else None


def _refund_plan(
    session: Session,
    sub: Subscription,
    plan: SubscriptionPlan,
    now: dt.datetime,
    *,
    no_refund: bool,
) -> RefundPlan:
    """Paystack, a change now: the unused part of the period the church paid on the old plan,
    and the charge to refund it from (see the module's decisions), or the UserError saying why
    it cannot be worked out."""
    if no_refund:
        return RefundPlan(
            0,
            plan.currency,
            "--no-refund: the unused part of the old period is not refunded; the church pays "
            "the overlap twice",
        )
    instead = (
        "use --at period_end (the new plan then starts when the paid period ends and nothing "
        "is billed twice), or --at now --no-refund to charge the overlap twice"
    )
    paid = [
        invoice
        for invoice in session.scalars(
            select(Invoice)
            .where(
                Invoice.subscription_id == sub.id,
                Invoice.provider == "paystack",
                Invoice.status == "paid",
            )
            .order_by(Invoice.id)
        )
        if _reference(invoice) is not None
    ]
    covering = [
        i
        for i in paid
        if i.period_start is not None and i.period_end is not None
        if i.period_start <= now < i.period_end
    ]
    start: dt.datetime | None
    end: dt.datetime | None
    if covering:
        invoice = max(covering, key=lambda i: (i.period_start or now, i.id))
        start, end = invoice.period_start, invoice.period_end
    elif sub.status == "trialing":
        return RefundPlan(
            0, plan.currency, "a trial: no charge paid for the current period, nothing to refund"
        )
    elif paid:
        invoice = max(paid, key=lambda i: (i.paid_at or i.created_at, i.id))
        start, end = sub.current_period_start, sub.current_period_end
        if start is None or end is None or not start <= now < end:
            raise UserError(
                f"the newest paid Paystack charge of subscription {sub.id} "
                f"({_reference(invoice)}, invoice {invoice.id}) has no period covering "
                f"{now.isoformat()} and the subscription's current period is not recorded, so "
                f"the unused part of the period on {plan.code} cannot be worked out for a "
                f"refund; {instead}"
            )
    else:
        raise UserError(
            f"no paid Paystack charge of subscription {sub.id} is recorded (a paid invoice with "
            f"a paystackReference), so the unused part of the period on {plan.code} cannot be "
            f"refunded (Paystack does not prorate: --at now charges the new plan in full); "
            f"{instead}. `faithflow invoices reconcile` may import the charge"
        )
    assert start is not None and end is not None
    reference = _reference(invoice)
    assert reference is not None
    for earlier in session.scalars(
        select(PlanChange).where(PlanChange.subscription_id == sub.id).order_by(PlanChange.id)
    ):
        refs = earlier.provider_refs or {}
        if refs.get("refund_transaction") != reference:
            continue
        done = (
            f"refunded {refs.get('refund_amount')} of it"
            if refs.get("refund_id")
            else f"tried to refund {refs.get('refund_amount')} of it and failed"
        )
        raise UserError(
            f"the charge that paid the current period ({reference}, invoice {invoice.id}) was "
            f"already settled by plan change {earlier.id}, which {done}; the charge for the "
            f"plan that change moved to is not recorded yet (its webhook, or `faithflow "
            f"invoices reconcile`, records it); {instead}"
        )
    period = (end - start) // dt.timedelta(seconds=1)
    if period <= 0:
        raise UserError(
            f"invoice {invoice.id} ({reference}) records a period of {period}s "
            f"({start.isoformat()} to {end.isoformat()}), so the unused part cannot be worked "
            f"out; {instead}"
        )
    unused = max(0, (end - now) // dt.timedelta(seconds=1))
    amount = min(invoice.amount_paid_minor, invoice.amount_paid_minor * unused // period)
    note = (
        f"{amount} of the {invoice.amount_paid_minor} {invoice.currency} (minor units) paid by "
        f"{reference} for {start.isoformat()} to {end.isoformat()}: {unused}s of {period}s unused"
    )
    if amount <= 0:
        note += "; nothing to refund"
    return RefundPlan(
        amount_minor=max(0, amount),
        currency=invoice.currency,
        note=note,
        transaction=reference,
        invoice_id=invoice.id,
        paid_minor=invoice.amount_paid_minor,
        period_start=start,
        period_end=end,
        unused_seconds=unused,
        period_seconds=period,
    )


# ---------------------------------------------------------------------------------------------
# provider calls


@dataclass(frozen=True)
class Outcome:
    """What the provider calls did: the new row's status, its refs, or the error."""

    status: str  # applied | scheduled | rejected
    effective_at: dt.datetime
    provider_refs: dict[str, Any]
    error: ProviderError | None = None
    replaced_canceled: bool = False  # --replace: the old change's provider side was undone
    refund_error: str | None = None  # Paystack, now: the change is applied, its refund failed


def _cancel_calls(provider: str, refs: dict[str, Any]) -> list[str]:
    if provider == "stripe":
        schedule = refs.get("stripe_schedule")
        return [f"POST /v1/subscription_schedules/{schedule}/release"] if schedule else []
    out = []
    if refs.get("paystack_new_subscription"):
        out.append(f"POST /subscription/disable code={refs['paystack_new_subscription']}")
    if refs.get("paystack_old_subscription"):
        out.append(f"POST /subscription/enable code={refs['paystack_old_subscription']}")
    return out


def undo_provider_side(
    settings: Settings,
    provider: str,
    refs: dict[str, Any],
    *,
    policy: RetryPolicy | None = None,
    now: dt.datetime | None = None,
) -> list[str]:
    """Take back what a scheduled change set up at the provider; what was done, as text."""
    done: list[str] = []
    if provider == "stripe":
        from faithflow_ops.providers.stripe import StripeAPI

        schedule = refs.get("stripe_schedule")
        if schedule:
            with StripeAPI(settings, policy) as api:
                api.release_schedule(str(schedule), now=now)
            done.append(f"released Stripe schedule {schedule}")
        return done
    from faithflow_ops.providers.paystack import PaystackAPI

    new, new_token = refs.get("paystack_new_subscription"), refs.get("paystack_new_email_token")
    old, old_token = refs.get("paystack_old_subscription"), refs.get("paystack_old_email_token")
    with PaystackAPI(settings, policy) as paystack:
        if new and new_token:
            paystack.disable_subscription(str(new), str(new_token))
            done.append(f"disabled Paystack subscription {new}")
        elif new:
            raise ProviderError(
                "paystack",
                "subscription disable",
                f"no email token was recorded for {new}; disable it on the Paystack dashboard",
            )
        if old and old_token:
            paystack.enable_subscription(str(old), str(old_token))
            done.append(f"enabled Paystack subscription {old} again")
    return done


def execute(
    settings: Settings,
    request: ChangeRequest,
    *,
    policy: RetryPolicy | None = None,
    now: dt.datetime | None = None,
) -> Outcome:
    """Make the provider calls; a provider failure comes back as a `rejected` outcome."""
    refs: dict[str, Any] = {}
    replaced = False
    try:
        if request.replaces is not None:
            undo_provider_side(
                settings, request.provider, request.replaces.provider_refs, policy=policy, now=now
            )
            replaced = True
        if request.provider == "stripe":
            outcome = _stripe(settings, request, refs, policy, now)
        else:
            outcome = _paystack(settings, request, refs, policy)
    except ProviderError as exc:
        refs.setdefault("failed_operation", exc.operation)
        if request.replaces is not None and not replaced:
            raise  # nothing changed: the old change stays scheduled, no new row
        return Outcome("rejected", request.effective_at, refs, exc, replaced)
    return replace(outcome, replaced_canceled=replaced)


def _stripe(
    settings: Settings,
    request: ChangeRequest,
    refs: dict[str, Any],
    policy: RetryPolicy | None,
    now: dt.datetime | None,
) -> Outcome:
    from faithflow_ops.providers.stripe import StripeAPI

    refs["stripe_subscription"] = request.provider_subscription_id
    refs["to_price"] = request.to_provider_plan
    with StripeAPI(settings, policy) as api:
        item = api.subscription_item(request.provider_subscription_id)
        refs.update(stripe_item=item.item_id, from_price=item.price_id)
        if request.at == "now":
            assert request.proration_behavior is not None
            refs["proration_behavior"] = request.proration_behavior
            api.change_subscription_price(
                item,
                price_id=request.to_provider_plan,
                proration_behavior=request.proration_behavior,
                now=now,
            )
            return Outcome("applied", request.effective_at, refs)
        made = api.schedule_price_change(item, price_id=request.to_provider_plan, now=now)
    refs["stripe_schedule"] = made.schedule_id
    if made.effective_at != request.effective_at:
        refs["recorded_period_end"] = _iso(request.effective_at)
    return Outcome("scheduled", made.effective_at, refs)


def _paystack(
    settings: Settings,
    request: ChangeRequest,
    refs: dict[str, Any],
    policy: RetryPolicy | None,
) -> Outcome:
    from faithflow_ops.providers.paystack import PaystackAPI

    assert request.email_token is not None and request.customer is not None
    old = request.provider_subscription_id
    refs.update(paystack_old_subscription=old, to_plan_code=request.to_provider_plan)
    start = None if request.at == "now" else _iso(request.effective_at)
    with PaystackAPI(settings, policy) as paystack:
        paystack.disable_subscription(old, request.email_token)
        refs["paystack_old_email_token"] = request.email_token
        refs["paystack_old_disabled"] = True
        try:
            made = paystack.create_subscription(
                customer=request.customer, plan_code=request.to_provider_plan, start_date=start
            )
        except ProviderError as exc:
            # Do not leave the church without a subscription: renew the old one again.
            try:
                paystack.enable_subscription(old, request.email_token)
                refs["paystack_old_disabled"] = False
                exc.message += f" ({old} was enabled again)"
            except ProviderError as again:
                exc.message += (
                    f" ({old} is disabled and enabling it again failed: {again.message}; enable "
                    "it on the Paystack dashboard)"
                )
            raise
        refs["paystack_new_subscription"] = made.code
        if made.email_token:
            refs["paystack_new_email_token"] = made.email_token
        if start:
            refs["start_date"] = start
        # Only now that the new plan is in place: a refund before it could leave the church
        # refunded for a period it keeps when the create fails.
        refund_error = _refund(paystack, request, refs)
    status = "applied" if request.at == "now" else "scheduled"
    return Outcome(status, request.effective_at, refs, refund_error=refund_error)


def _refund(paystack: PaystackAPI, request: ChangeRequest, refs: dict[str, Any]) -> str | None:
    """The refund of a Paystack change now (its refs), or the message of its failure: the
    change stands either way (the new subscription exists and has been charged)."""
    plan = request.refund
    if plan is None or plan.call() is None or plan.transaction is None:
        return None
    refs.update(
        refund_transaction=plan.transaction,
        refund_amount=plan.amount_minor,
        refund_currency=plan.currency,
    )
    note = (
        f"faithflow plan change {request.from_plan} -> {request.to_plan}: unused "
        f"{plan.unused_seconds}s of {plan.period_seconds}s"
    )
    try:
        made = paystack.refund(plan.transaction, plan.amount_minor, merchant_note=note)
    except ProviderError as exc:
        status = f" (HTTP {exc.status})" if exc.status is not None else ""
        tries = f" after {exc.attempts} attempts" if exc.attempts > 1 else ""
        message = (
            f"the refund of {plan.amount_minor} {plan.currency} (minor units) of transaction "
            f"{plan.transaction} failed{status}{tries}: {exc.message}; the new plan is in place "
            "and charged, so the church is owed this amount — refund it on the Paystack "
            "dashboard (transaction "
            f"{plan.transaction}, amount {plan.amount_minor})"
        )
        refs["refund_error"] = message
        return message
    refs.update(refund_id=made.id, refund_status=made.status, refund_amount=made.amount)
    return None


# ---------------------------------------------------------------------------------------------
# recording


def change_doc(change: PlanChange, plans: dict[int, str], slug: str) -> dict[str, Any]:
    refs = {k: v for k, v in (change.provider_refs or {}).items() if "email_token" not in k}
    return {
        "id": change.id,
        "tenant": slug,
        "subscription_id": change.subscription_id,
        "kind": change.kind,
        "from_plan": plans.get(change.from_plan_id) if change.from_plan_id else None,
        "to_plan": plans.get(change.to_plan_id),
        "from_interval": change.from_interval,
        "to_interval": change.to_interval,
        "status": change.status,
        "effective_at": _iso(change.effective_at),
        "applied_at": _iso(change.applied_at),
        "canceled_at": _iso(change.canceled_at),
        "requested_by": change.requested_by,
        "reason": change.reason,
        "provider_refs": refs,
        "error": change.error,
        "created_at": _iso(change.created_at),
    }


def _plan_codes(session: Session) -> dict[int, str]:
    return {i: c for i, c in session.execute(select(SubscriptionPlan.id, SubscriptionPlan.code))}


def _rowcount(result: Any) -> int:
    return cast(CursorResult[Any], result).rowcount


def _cancel_row(
    session: Session, change_id: int, *, actor: str, now: dt.datetime, why: str, tenant_id: int
) -> bool:
    """`scheduled` → `canceled` (claimed: False when it is no longer scheduled)."""
    stmt = (
        update(PlanChange)
        .where(PlanChange.id == change_id, PlanChange.status == "scheduled")
        .values(status="canceled", canceled_at=now, updated_at=utcnow())
    )
    if _rowcount(session.execute(stmt)) != 1:
        return False
    audit.record(
        session,
        actor=actor,
        action="plan_change.cancel",
        entity_type="plan_change",
        entity_id=change_id,
        tenant_id=tenant_id,
        before={"status": "scheduled"},
        after={"status": "canceled", "why": why},
    )
    return True


def record(
    session: Session, request: ChangeRequest, outcome: Outcome, *, now: dt.datetime
) -> tuple[PlanChange, list[str]]:
    """Write the change (and for one applied now, the subscription's new plan), audited."""
    notes: list[str] = []
    replaced = request.replaces
    if (
        replaced is not None
        and outcome.replaced_canceled
        and _cancel_row(
            session,
            replaced.id,
            actor=request.requested_by,
            now=now,
            why="replaced by a new change (--replace)",
            tenant_id=request.tenant_id,
        )
    ):
        notes.append(f"canceled change {replaced.id} (replaced)")
    error = str(outcome.error) if outcome.error is not None else outcome.refund_error
    change = PlanChange(
        tenant_id=request.tenant_id,
        subscription_id=request.subscription_id,
        from_plan_id=request.from_plan_id,
        to_plan_id=request.to_plan_id,
        from_interval=request.from_interval,
        to_interval=request.to_interval,
        kind=request.kind,
        requested_by=request.requested_by,
        reason=request.reason,
        status=outcome.status,
        effective_at=outcome.effective_at,
        applied_at=now if outcome.status == "applied" else None,
        provider_refs=outcome.provider_refs,
        error=error,
    )
    session.add(change)
    session.flush()
    after: dict[str, Any] = {
        "status": change.status,
        "kind": change.kind,
        "from_plan": request.from_plan,
        "to_plan": request.to_plan,
        "to_interval": request.to_interval,
        "effective_at": _iso(change.effective_at),
    }
    if error:
        after["error"] = error
    refund = {
        key.removeprefix("refund_"): value
        for key, value in outcome.provider_refs.items()
        if key.startswith("refund_") and key != "refund_error"
    }
    if refund:
        after["refund"] = refund
    action = {"applied": "apply", "scheduled": "schedule", "rejected": "reject"}[change.status]
    audit.record(
        session,
        actor=request.requested_by,
        action=f"plan_change.{action}",
        entity_type="plan_change",
        entity_id=change.id,
        tenant_id=request.tenant_id,
        before={"plan": request.from_plan, "interval": request.from_interval},
        after=after,
    )
    if change.status == "applied":
        notes += _apply_locally(session, request, outcome)
    return change, notes


def move_to_new_paystack_code(
    session: Session, sub: Subscription, refs: Mapping[str, Any]
) -> tuple[dict[str, Any], dict[str, Any], list[str]]:
    """Point `sub` at the Paystack subscription a plan change created (`paystack_new_subscription`
    and its email token in `refs`), so Paystack's later events for it land on this row. Used
    when the change is applied: now (`record`) or at its time (`subs automate`). Returns the
    audit's before/after entries and notes; nothing when the change made no new subscription,
    a note when another row already holds the code (its webhook came first)."""
    new_code = refs.get("paystack_new_subscription")
    if not new_code or new_code == sub.provider_subscription_id:
        return {}, {}, []
    taken = session.scalar(
        select(Subscription.id).where(
            Subscription.provider == "paystack",
            Subscription.provider_subscription_id == new_code,
            Subscription.id != sub.id,
        )
    )
    if taken is not None:
        note = (
            f"{new_code} is already recorded as subscription {taken} (its webhook came first); "
            f"subscription {sub.id} keeps {sub.provider_subscription_id}"
        )
        return {}, {}, [note]
    before = {"provider_subscription_id": sub.provider_subscription_id}
    sub.provider_subscription_id = new_code
    # Another Paystack subscription: its events are ordered among themselves from the start.
    sub.provider_state_at, sub.provider_state_rank = None, 0
    token = refs.get("paystack_new_email_token")
    if token:
        sub.metadata_ = {**(sub.metadata_ or {}), EMAIL_TOKEN_KEY: token}
    return before, {"provider_subscription_id": new_code}, []


def _apply_locally(session: Session, request: ChangeRequest, outcome: Outcome) -> list[str]:
    sub = session.get(Subscription, request.subscription_id, with_for_update=True)
    assert sub is not None
    notes: list[str] = []
    before: dict[str, Any] = {"plan_id": sub.plan_id}
    after: dict[str, Any] = {"plan_id": request.to_plan_id}
    if sub.plan_id != request.from_plan_id:
        notes.append(
            f"subscription {sub.id} was no longer on {request.from_plan} when recorded; it is "
            f"now on {request.to_plan} as the provider is"
        )
    sub.plan_id = request.to_plan_id
    moved_from, moved_to, moved_notes = move_to_new_paystack_code(
        session, sub, outcome.provider_refs
    )
    before.update(moved_from)
    after.update(moved_to)
    notes += moved_notes
    session.flush()
    audit.record(
        session,
        actor=request.requested_by,
        action="subscription.plan_change",
        entity_type="subscription",
        entity_id=sub.id,
        tenant_id=request.tenant_id,
        before=before,
        after=after,
    )
    return notes


# ---------------------------------------------------------------------------------------------
# the commands


@dataclass(frozen=True)
class ChangeResult:
    doc: dict[str, Any]  # the `--json` document
    warnings: list[str]
    notes: list[str]
    error: ProviderError | None  # a provider refusal or outage (the row is rejected)
    refund_error: str | None = None  # the change is applied but its refund failed (exit 1)


def change_plan(
    db: Database,
    settings: Settings,
    *,
    tenant: str,
    to: str,
    actor: str,
    interval: str | None = None,
    at: str | None = None,
    dry_run: bool = False,
    replace_scheduled: bool = False,
    reason: str | None = None,
    subscription_id: int | None = None,
    no_refund: bool = False,
    policy: RetryPolicy | None = None,
    now: dt.datetime | None = None,
) -> ChangeResult:
    """`subs change-plan`: prepare (read), then unless a dry run call the provider and record."""
    now = now or utcnow()
    with db.read_session() as session:
        request = prepare(
            session,
            settings,
            tenant=tenant,
            to=to,
            actor=actor,
            interval=interval,
            at=at,
            replace_scheduled=replace_scheduled,
            reason=reason,
            subscription_id=subscription_id,
            no_refund=no_refund,
            now=now,
        )
    calls = request.calls()
    if dry_run:
        doc = {"id": None, "dry_run": True, "status": "dry_run", **request.doc()}
        doc["would_be"] = "applied" if request.at == "now" else "scheduled"
        doc["provider_calls"] = calls
        doc["provider_refs"] = {}
        doc["error"] = None
        return ChangeResult(doc, request.warnings, [], None)
    outcome = execute(settings, request, policy=policy, now=now)
    with db.session() as session:
        change, notes = record(session, request, outcome, now=now)
        doc = {"dry_run": False, **request.doc()}
        doc.update(change_doc(change, _plan_codes(session), request.tenant))
    refs = outcome.provider_refs
    if doc["refund"] is not None:  # what was planned, and what came of it
        refund = {
            **doc["refund"],
            "id": refs.get("refund_id"),
            "status": refs.get("refund_status"),
            "error": refs.get("refund_error"),
        }
        if "refund_transaction" in refs:
            refund["amount_minor"] = refs.get("refund_amount")
        elif refund["amount_minor"]:
            refund["amount_minor"] = 0
            refund["note"] += "; not refunded: the change was not made"
        doc["refund"] = refund
    doc["provider_calls"] = calls
    return ChangeResult(doc, request.warnings, notes, outcome.error, outcome.refund_error)


def list_changes(
    session: Session,
    *,
    tenant: str | None = None,
    status: str | None = None,
    limit: int = 100,
) -> tuple[list[dict[str, Any]], int]:
    """Plan changes, newest first; and how many match in all."""
    from sqlalchemy import func

    if limit < 1:
        raise UserError(f"limit {limit} must be 1 or more")
    conditions = []
    if status is not None:
        conditions.append(PlanChange.status == one_of("--status", status, PLAN_CHANGE_STATUSES))
    if tenant is not None:
        conditions.append(PlanChange.tenant_id == get_tenant(session, tenant).id)
    total = session.scalar(select(func.count()).select_from(PlanChange).where(*conditions)) or 0
    rows = session.execute(
        select(PlanChange, Tenant.slug)
        .join(Tenant, Tenant.id == PlanChange.tenant_id)
        .where(*conditions)
        .order_by(PlanChange.id.desc())
        .limit(limit)
    ).tuples()
    plans = _plan_codes(session)
    return [change_doc(change, plans, slug) for change, slug in rows], total


def _refuse_cancel(change: PlanChange) -> UserError:
    if change.status == "applied":
        when = _iso(change.applied_at) or "?"
        return UserError(
            f"plan change {change.id} was applied at {when}; an applied change cannot be "
            "canceled — change the plan back with `faithflow subs change-plan`"
        )
    if change.status == "canceled":
        return UserError(
            f"plan change {change.id} is already canceled (at {_iso(change.canceled_at)}); "
            "nothing to do"
        )
    return UserError(
        f"plan change {change.id} was rejected ({change.error or 'no error recorded'}); it never "
        "took effect, so there is nothing to cancel"
    )


def cancel_change(
    db: Database,
    settings: Settings,
    change_id: int,
    *,
    actor: str,
    reason: str | None = None,
    policy: RetryPolicy | None = None,
    now: dt.datetime | None = None,
) -> tuple[dict[str, Any], list[str]]:
    """`subs cancel-change`: undo a scheduled change at the provider, then mark it canceled."""
    now = now or utcnow()
    with db.read_session() as session:
        change = session.get(PlanChange, change_id)
        if change is None:
            raise NotFound(f"no plan change with id {change_id}; see `faithflow subs changes`")
        if change.status != "scheduled":
            raise _refuse_cancel(change)
        sub = session.get(Subscription, change.subscription_id)
        assert sub is not None
        provider, refs, tenant_id = sub.provider, dict(change.provider_refs or {}), sub.tenant_id
    if _cancel_calls(provider, refs):
        settings.require(*_SECRET[provider])
    done = undo_provider_side(settings, provider, refs, policy=policy, now=now)
    why = reason.strip() if reason and reason.strip() else "canceled by an operator"
    with db.session() as session:
        if not _cancel_row(session, change_id, actor=actor, now=now, why=why, tenant_id=tenant_id):
            current = session.get(PlanChange, change_id)
            assert current is not None
            raise UserError(
                f"plan change {change_id} became {current.status} while it was being canceled "
                f"(the provider side was undone: {'; '.join(done) or 'nothing to undo'}); check "
                "`faithflow subs changes` and the subscription"
            )
        change = session.get(PlanChange, change_id, populate_existing=True)
        assert change is not None
        slug = session.scalar(select(Tenant.slug).where(Tenant.id == tenant_id)) or ""
        doc = change_doc(change, _plan_codes(session), slug)
    return doc, done
