"""Plan changes, step 1 (`prepare`): read the database and settle everything a change needs —
the subscription, the target plan, the kind, when it takes effect, the provider calls and, for
a Paystack change now, the refund. Every refusal an operator can fix is raised here (a
UserError, exit 2), before any call leaves the machine; `--dry-run` stops after this step.
The decisions: billing/plan_changes.py."""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING

from sqlalchemy import select
from sqlalchemy.orm import Session

from faithflow_ops.billing.identifiers import check
from faithflow_ops.billing.plan_change_rules import (
    AT_CHOICES,
    LIVE,
    PLAN_KEYS,
    RECOVER_ID,
    SECRET_SETTINGS,
    UNSETTLED,
    ChangeRequest,
    RefundPlan,
    Replaced,
    classify,
    default_at,
    paystack_email_token,
)
from faithflow_ops.billing.plans import get_plan
from faithflow_ops.db import utcnow
from faithflow_ops.errors import NotFound, UserError, one_of
from faithflow_ops.models import Invoice, PlanChange, Subscription, SubscriptionPlan, Tenant
from faithflow_ops.models.billing import PLAN_INTERVALS
from faithflow_ops.money import format_money
from faithflow_ops.tenancy.tenants import ensure_writable, get_tenant

if TYPE_CHECKING:
    from faithflow_ops.config import Settings

_EXAMPLES = {"stripe": "price_…", "paystack": "PLN_…"}
_RECOVER = RECOVER_ID


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
        token = paystack_email_token(sub, code)
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
    settings.require(*SECRET_SETTINGS[provider])
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
        owed = _shown(refs.get("refund_amount"), refs.get("refund_currency") or invoice.currency)
        done = (
            f"refunded {owed} of it"
            if refs.get("refund_id")
            else f"tried to refund {owed} of it and failed"
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
        f"{_shown(max(0, amount), invoice.currency)} of the "
        f"{_shown(invoice.amount_paid_minor, invoice.currency)} paid by {reference} for "
        f"{start.isoformat()} to {end.isoformat()}: {unused}s of {period}s unused"
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


def _shown(minor: object, currency: str) -> str:
    """A Paystack amount as people read it (`NGN 14,249.98`); a missing one as `?`."""
    if not isinstance(minor, int):
        return f"{minor if minor is not None else '?'} {currency}"
    return format_money(minor, currency, provider="paystack")
