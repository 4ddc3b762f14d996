"""Paystack event handlers. Platform scope: FaithFlow's subscriptions on Paystack (subscription,
invoice, subscription charge and dispute events). Tenant scope: payments a church takes
through its subaccount (or naming it in `metadata.tenant`), written to `payments` and
`disputes`. Paystack events have no event time: an object's own `updatedAt`/`paid_at`/
`createdAt` orders them (see `events`), except subscription events, which carry only the
subscription's creation time and are ordered by rank (create < not_renew < disable).
Codes a Paystack plan change made are matched through its `provider_refs` first (a scheduled
change's new subscription is pending until `subs automate` moves the row to it).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from faithflow_ops.billing import lifecycle as fx
from faithflow_ops.billing import live as one_live
from faithflow_ops.billing.dispute_owner import platform_dispute_owner
from faithflow_ops.billing.lifecycle import Outcome
from faithflow_ops.billing.plan_change_prepare import scheduled_change
from faithflow_ops.db import utcnow
from faithflow_ops.models import (
    Dispute,
    DunningCase,
    Invoice,
    Payment,
    PlanChange,
    Subscription,
    SubscriptionPlan,
)
from faithflow_ops.models.billing import AUTHORIZATION_KEY
from faithflow_ops.tenancy.accounts import link_account, owner_id
from faithflow_ops.webhooks.events import InboundEvent, json_object, parse_time

Handler = Callable[[Session, InboundEvent], Outcome]

# `non-renewing` is absent on purpose: turning renewal off is not a payment (the status stays).
_SUB_STATUS = {
    "active": "active",
    "attention": "past_due",
    "complete": "canceled",
    "completed": "canceled",
    "cancelled": "canceled",
    "canceled": "canceled",
}


_dict = json_object  # Paystack sends `metadata` as an object or as JSON text


def _text(value: object) -> str | None:
    return value if isinstance(value, str) and value else None


@dataclass
class _Found:
    """The tenant a platform event is about, and the customer code it linked on the way."""

    tenant_id: int
    linked: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def _customer(data: object) -> dict[str, Any]:
    return _dict(data.get("customer")) if isinstance(data, dict) else {}


def platform_tenant(
    session: Session, event: InboundEvent, *, link: bool = True
) -> _Found | Outcome:
    """The tenant of a platform event, found in this order (docs/webhooks.md):

    1. its customer code, linked (`provider_accounts`, or a recorded subscription's customer);
    2. `metadata.tenant` on the charge — what `billing checkout` put on the transaction;
    3. `customer.metadata.tenant`;
    4. the tenant's billing e-mail, only when exactly one live tenant has it.

    2 and 3 name the church outright, so (with `link`) the customer code is linked to it then,
    as Stripe's `checkout.session.completed` does, and the inbox re-handles that customer's
    waiting events. An e-mail is a guess: it finds the tenant but links nothing. A code
    already linked to another church is never moved (unmatched: a human decides).
    `link=False` is read-only (`disputes monitor` reads pulled disputes through it)."""
    code = event.customer_ref
    linked = owner_id(session, "paystack", "customer", code)
    if linked is not None:
        return _Found(linked)
    # Not linked, but a recorded subscription may carry the code (found by e-mail, say).
    recorded = fx.tenant_for_external(session, "paystack", "customer", code)
    data = event.object if isinstance(event.object, dict) else {}
    customer = _customer(data)
    for where, meta in (
        ("metadata.tenant", _metadata(data)),
        ("customer.metadata.tenant", _metadata(customer)),
    ):
        ref = meta.get("tenant")
        tenant = fx.tenant_by_ref(session, ref)
        if tenant is None:
            continue
        if recorded is not None and recorded != tenant.id:
            # The recorded subscription's church wins; a conflicting name links nothing.
            return _Found(recorded, notes=[f"{where} names {tenant.slug}; kept tenant {recorded}"])
        found = _Found(tenant.id)
        if code and link:
            owner = link_account(session, tenant.id, "paystack", "customer", code, fx.actor(event))
            if owner != tenant.id:
                return fx.unmatched(
                    f"{where} names {tenant.slug}, but customer {code} is linked to tenant "
                    f"{owner}; a human must decide which church it belongs to"
                )
            found.linked.append(code)
            found.notes.append(f"customer {code} linked to tenant {tenant.slug} ({where})")
        return found
    if recorded is not None:
        return _Found(recorded)
    email = customer.get("email")
    holders = fx.tenants_by_billing_email(session, email)
    if len(holders) == 1:
        return _Found(holders[0].id, notes=[f"tenant {holders[0].slug} found by billing e-mail"])
    shared = f"; {email} is the billing e-mail of several tenants" if len(holders) > 1 else ""
    return fx.unmatched(
        f"customer {code!r} is not linked to a tenant and neither metadata.tenant, "
        f"customer.metadata.tenant nor a billing e-mail names one{shared}; `faithflow tenants "
        f"link SLUG {code or 'CUS_…'}` links it (its waiting events are handled then)"
    )


# The card authorization dunning charges on a retry: AUTHORIZATION_KEY (models/billing.py).


def _remember_authorization(sub: Subscription, data: dict[str, Any]) -> list[str]:
    """Keep the reusable card authorization a payload carries (`authorization.authorization_code`
    on subscription, invoice and charge events) so a dunning retry can charge it."""
    auth = _dict(data.get("authorization"))
    code = _text(auth.get("authorization_code"))
    if not code or auth.get("reusable") is False:
        return []
    meta = dict(sub.metadata_ or {})
    if meta.get(AUTHORIZATION_KEY) == code:
        return []
    meta[AUTHORIZATION_KEY] = code
    sub.metadata_ = meta
    return ["card authorization kept for payment retries"]


def _metadata(data: dict[str, Any]) -> dict[str, Any]:
    """A charge's (or customer's) `metadata`: an object, or JSON text of one."""
    return json_object(data.get("metadata"))


# ---------------------------------------------------------------------------------------------
# Platform: subscriptions


def subscription_event(session: Session, event: InboundEvent) -> Outcome:
    data = event.object
    at, rank = event.occurred_at, RANKS[event.type]
    code = _text(data.get("subscription_code"))
    sub = fx.subscription_by_provider_id(session, "paystack", code)
    plan_code = _text(_dict(data.get("plan")).get("plan_code"))
    notes: list[str] = []
    redrive: list[str] = []
    if sub is None:
        pending = _plan_change_subscription(session, code)
        if pending is not None:
            return pending
        found = platform_tenant(session, event)
        if isinstance(found, Outcome):
            return found
        plan = fx.plan_by_meta(session, "paystackPlanCode", plan_code)
        if plan is None:
            outcome = fx.unmatched(
                f"no plan has paystackPlanCode {plan_code!r}; set it with `faithflow plans "
                f"set-meta CODE paystackPlanCode={plan_code}`, then `faithflow webhooks replay`"
            )
            outcome.linked_customers = found.linked
            return outcome
        ended = event.type == "subscription.disable" or (
            _SUB_STATUS.get(str(data.get("status") or "")) == "canceled"
        )
        live = fx.adopt_or_refuse(session, found.tenant_id, "paystack", code)
        if isinstance(live, Outcome) and not ended:  # the tenant has another live one
            live.linked_customers = found.linked
            return live
        if isinstance(live, Outcome):
            live = None  # one that has ended takes no live place: recorded as history
        if live is not None:
            sub = live
            notes += found.notes
            notes.append(f"subscription {sub.id} is {code}")
        else:
            sub = Subscription(
                tenant_id=found.tenant_id,
                plan_id=plan.id,
                provider="paystack",
                provider_subscription_id=code,
                provider_customer_id=event.customer_ref,
                status="canceled" if ended else "incomplete",
                metadata_={},
            )
            session.add(sub)
            session.flush()
            notes += found.notes
            notes.append(f"subscription {sub.id} recorded for {code}")
        # The customer's charges that waited for this subscription (the first payment's
        # charge.success usually arrives first) are handled next.
        redrive = [event.customer_ref] if event.customer_ref else []
    else:
        kept = _disabled_by_plan_change(session, event, sub, code)
        if kept is not None:
            return kept
        if rank < sub.provider_state_rank:
            return fx.stale(f"subscription {sub.id} already holds newer state", sub.tenant_id)
    raw_status = str(data.get("status") or "")
    stopping = event.type == "subscription.not_renew" or raw_status == "non-renewing"
    # `non-renewing` keeps the current status (a new row starts active: it was paid for).
    fallback = "active" if sub.status == "incomplete" else sub.status
    status = _SUB_STATUS.get(raw_status, fallback) if not stopping else fallback
    if event.type not in ("subscription.disable", "subscription.not_renew"):
        refused = one_live.revival_refusal(session, sub, status)
        if refused is not None:  # checked before anything is written
            return Outcome("unmatched", refused, sub.tenant_id)
    if event.customer_ref and not sub.provider_customer_id:
        sub.provider_customer_id = event.customer_ref
    meta = dict(sub.metadata_ or {})
    token = _text(data.get("email_token"))
    if token and "paystackEmailToken" not in meta:
        meta["paystackEmailToken"] = token  # the manage-subscription link needs it
        sub.metadata_ = meta
    notes += _remember_authorization(sub, data)
    # Paystack's next charge date is the end of what has been paid for; only ever forward.
    notes += fx.advance_period_end(sub, parse_time(data.get("next_payment_date")))
    if sub.current_period_start is None and at is not None:
        sub.current_period_start = at  # the first period starts with the subscription
    if event.type == "subscription.disable":
        notes += fx.set_subscription_status(session, sub, "canceled", _ended_at(sub), event)
    elif event.type == "subscription.not_renew":
        # Not a payment: the status (past due, a suspension for non-payment) stays as it is.
        notes += fx.set_cancel_at_period_end(session, sub, True, event)
    else:
        notes += fx.set_subscription_status(session, sub, status, at or utcnow(), event)
        notes += fx.set_cancel_at_period_end(session, sub, stopping, event)
    # Subscription events carry only the subscription's creation time, never a change time,
    # so among themselves they are ordered by rank alone (create < not_renew < disable).
    sub.provider_state_rank = rank
    outcome = fx.applied("; ".join(notes) or f"subscription {sub.id} up to date", sub.tenant_id)
    outcome.linked_customers = redrive
    return outcome


def _ended_at(sub: Subscription) -> dt.datetime:
    """When a disabled subscription ended. Paystack's subscription events carry only the
    subscription's creation time: one that was not renewing completes at its period end;
    otherwise it was disabled now (the event is applied as it arrives)."""
    if sub.cancel_at_period_end and sub.current_period_end is not None:
        return min(sub.current_period_end, utcnow())
    return utcnow()


def _plan_change_subscription(session: Session, code: str | None) -> Outcome | None:
    """An unknown code a plan change made (`subs change-plan`, Paystack): the new subscription
    of a scheduled change is pending (the tenant's row moves to it when `subs automate` applies
    the change), that of a canceled or rejected one is dropped, and the old one of an applied
    change was replaced. None: not a plan change's code."""
    if code is None:
        return None
    for key in ("paystack_new_subscription", "paystack_old_subscription"):
        change = session.scalar(
            select(PlanChange)
            .where(PlanChange.provider_refs[key].as_string() == code)
            .order_by(PlanChange.id.desc())
            .limit(1)
        )
        if change is None:
            continue
        if key == "paystack_new_subscription" and change.status == "scheduled":
            return fx.applied(
                f"{code} is the pending subscription of plan change {change.id} (takes over at "
                f"{change.effective_at.isoformat()}); nothing recorded",
                change.tenant_id,
            )
        if key == "paystack_new_subscription" and change.status in ("canceled", "rejected"):
            return fx.ignored(
                f"{code} is the subscription of {change.status} plan change {change.id}"
            )
        if key == "paystack_old_subscription" and change.status == "applied":
            new = (change.provider_refs or {}).get("paystack_new_subscription")
            return fx.ignored(f"{code} was replaced by {new} in plan change {change.id}")
    return None


def _disabled_by_plan_change(
    session: Session, event: InboundEvent, sub: Subscription, code: str | None
) -> Outcome | None:
    """`not_renew`/`disable` of the old code of the subscription's scheduled plan change: the
    change disabled it on purpose and the church has paid through the period end, so the row
    stays live until `subs automate` moves it to the new code. None: not such an event."""
    if event.type not in ("subscription.not_renew", "subscription.disable"):
        return None
    change = scheduled_change(session, sub.id)
    if change is None or (change.provider_refs or {}).get("paystack_old_subscription") != code:
        return None
    new = (change.provider_refs or {}).get("paystack_new_subscription")
    return fx.applied(
        f"{code} was disabled on purpose by plan change {change.id}; subscription {sub.id} stays "
        f"{sub.status} and moves to {new} at {change.effective_at.isoformat()}",
        sub.tenant_id,
    )


def expiring_cards(session: Session, event: InboundEvent) -> Outcome:
    """Record each listed subscription's card expiry (`paystackCardExpiry`) for dunning."""
    notes = []
    tenant_id = None
    for entry in event.object if isinstance(event.object, list) else []:
        if not isinstance(entry, dict):
            continue
        code = _text(_dict(entry.get("subscription")).get("subscription_code"))
        sub = fx.subscription_by_provider_id(session, "paystack", code)
        expiry = _text(entry.get("expiry_date"))
        if sub is None or expiry is None:
            notes.append(f"{code}: not recorded here")
            continue
        tenant_id = sub.tenant_id
        sub.metadata_ = {**(sub.metadata_ or {}), "paystackCardExpiry": expiry}
        notes.append(f"subscription {sub.id}: card expires {expiry}")
    if tenant_id is None:
        return fx.unmatched("none of the listed subscriptions is recorded: " + "; ".join(notes))
    return fx.applied("; ".join(notes), tenant_id)


# ---------------------------------------------------------------------------------------------
# Platform: invoices and subscription charges


def invoice_event(session: Session, event: InboundEvent) -> Outcome:
    data = event.object
    at, rank = event.occurred_at, RANKS[event.type]
    code = _text(data.get("invoice_code"))
    sub_code = _text(_dict(data.get("subscription")).get("subscription_code"))
    sub = fx.subscription_by_provider_id(session, "paystack", sub_code)
    if sub is None or code is None:
        return fx.unmatched(f"invoice {code}: subscription {sub_code!r} is not recorded yet")
    invoice, new = fx.invoice_for(session, "paystack", code)
    transaction = _dict(data.get("transaction"))
    reference = _text(transaction.get("reference"))
    # The row its charge recorded before this invoice was known (`charge.success` first, or
    # `invoices reconcile` importing the charge): adopted, so one payment is one invoice.
    charged = _charge_row(session, sub, reference, besides=None if new else invoice.id)
    if new and charged is not None:
        invoice, new, charged = charged, False, None
        invoice.provider_invoice_id = code
    if not new and not fx.is_current(invoice, at, rank):
        return fx.stale(f"invoice {invoice.id} already holds newer state", sub.tenant_id)
    paid = data.get("paid") is True or data.get("status") == "success"
    if charged is not None and charged.status == "paid":
        paid = True  # its own charge succeeded: an older invoice state does not undo that
    before = None if new else invoice.status
    plan = session.get(SubscriptionPlan, sub.plan_id)
    invoice.tenant_id = sub.tenant_id
    invoice.subscription_id = sub.id
    invoice.status = "paid" if paid else "open"
    invoice.amount_due_minor = fx.minor(data.get("amount")) or invoice.amount_due_minor or 0
    invoice.amount_paid_minor = invoice.amount_due_minor if paid else 0
    invoice.currency = (
        fx.sent_currency(transaction.get("currency"))
        or fx.sent_currency(data.get("currency"))
        or invoice.currency
        or (plan.currency if plan else "NGN")
    )
    # An event writes only what it carries.
    invoice.period_start = parse_time(data.get("period_start")) or invoice.period_start
    invoice.period_end = parse_time(data.get("period_end")) or invoice.period_end
    if paid:
        invoice.paid_at = (
            parse_time(data.get("paid_at"))
            or (charged.paid_at if charged is not None else None)
            or invoice.paid_at
            or at
        )
    else:
        invoice.paid_at = None
    if reference:
        invoice.metadata_ = {**(invoice.metadata_ or {}), "paystackReference": reference}
    fx.save(session, invoice, new, at, rank)
    notes = [
        f"invoice {invoice.id} recorded as {invoice.status}"
        if before is None
        else f"invoice {invoice.id}: {before} -> {invoice.status}"
    ]
    if charged is not None:
        notes += _fold_charge_row(session, charged, invoice)
    notes += _remember_authorization(sub, data)
    if event.type == "invoice.payment_failed" and not paid:
        notes += fx.mark_past_due(session, sub, at, event)
    elif paid:
        next_payment = parse_time(_dict(data.get("subscription")).get("next_payment_date"))
        notes += fx.advance_period_end(sub, invoice.period_end, next_payment)
        notes += fx.settle_if_paid(session, sub, at or utcnow(), event)
    return fx.applied("; ".join(notes), sub.tenant_id)


# The metadata key naming the charge (transaction reference) that paid, or is to pay, an invoice.
REFERENCE_KEY = "paystackReference"


def _charge_row(
    session: Session, sub: Subscription, reference: str | None, *, besides: int | None
) -> Invoice | None:
    """The subscription's invoice row keyed by a charge reference (recorded from a
    `charge.success` that came before its invoice, or imported by `invoices reconcile`)."""
    if reference is None:
        return None
    query = select(Invoice).where(
        Invoice.provider == "paystack",
        Invoice.subscription_id == sub.id,
        Invoice.provider_invoice_id == reference,
    )
    if besides is not None:
        query = query.where(Invoice.id != besides)
    return session.scalar(query.with_for_update())


def _fold_charge_row(session: Session, charged: Invoice, invoice: Invoice) -> list[str]:
    """Merge the row a charge recorded into the invoice it turned out to pay: what points at
    it (disputes, dunning cases) moves over, and the row goes."""
    for model in (Dispute, DunningCase):
        session.execute(
            update(model).where(model.invoice_id == charged.id).values(invoice_id=invoice.id)
        )
    session.delete(charged)
    session.flush()
    return [f"charge row {charged.id} merged into invoice {invoice.id}"]


def _subscription_for_charge(
    session: Session, tenant_id: int, plan_code: str
) -> Subscription | None:
    for sub in session.scalars(
        select(Subscription)
        .where(Subscription.tenant_id == tenant_id, Subscription.provider == "paystack")
        .order_by(Subscription.id.desc())
        .with_for_update()
    ):
        plan = session.get(SubscriptionPlan, sub.plan_id)
        if plan is not None and (plan.metadata_ or {}).get("paystackPlanCode") == plan_code:
            return sub
    return None


def _dunning_retry(
    session: Session, tenant_id: int, case_ref: object, invoice_ref: object
) -> tuple[Subscription, Invoice | None] | None:
    """The subscription of the dunning case a retry charge names (`metadata.dunning_case`, set
    by dunning/retry.py) when it is the paying tenant's, and the invoice the retry was for:
    `metadata.invoice` (the Paystack invoice code), else the case's own invoice."""
    try:
        case_id = int(str(case_ref))
    except ValueError:
        return None
    case = session.get(DunningCase, case_id)
    if case is None or case.tenant_id != tenant_id:
        return None
    sub = session.scalar(
        select(Subscription)
        .where(Subscription.id == case.subscription_id, Subscription.provider == "paystack")
        .with_for_update()
    )
    if sub is None:
        return None
    invoice = None
    if isinstance(invoice_ref, str) and invoice_ref:
        invoice = session.scalar(
            select(Invoice)
            .where(
                Invoice.provider == "paystack",
                Invoice.subscription_id == sub.id,
                Invoice.provider_invoice_id == invoice_ref,
            )
            .with_for_update()
        )
    if invoice is None and case.invoice_id is not None:
        invoice = session.get(Invoice, case.invoice_id, with_for_update=True)
    return sub, invoice


def platform_charge(session: Session, event: InboundEvent) -> Outcome:
    """`charge.success` for a subscription: with a plan (the subscription's own charge: its
    first payment, or a renewal), or naming a dunning case in its metadata (a dunning retry
    charged the saved authorization). A charge pays only its own invoice — the one whose
    transaction reference it is, or the one a retry names — never the oldest open one."""
    data = event.object
    meta = _metadata(data)
    plan_code = _text(_dict(data.get("plan")).get("plan_code"))
    case_ref = meta.get("dunning_case")
    if not plan_code and case_ref is None:
        return fx.ignored("a charge without a plan is not a subscription payment")
    reference = _text(data.get("reference"))
    if reference is None:
        return fx.ignored("a charge without a reference cannot be allocated to an invoice")
    found = platform_tenant(session, event)
    if isinstance(found, Outcome):
        return found
    target: Invoice | None = None
    if case_ref is not None:
        retry = _dunning_retry(session, found.tenant_id, case_ref, meta.get("invoice"))
        sub = retry[0] if retry else None
        target = retry[1] if retry else None
        wanted = f"for dunning case {case_ref}"
    else:
        sub = _subscription_for_charge(session, found.tenant_id, str(plan_code))
        wanted = (
            f"on plan {plan_code} yet; the charge is handled when its subscription.create arrives"
        )
    if sub is None:
        outcome = fx.unmatched(f"the tenant has no Paystack subscription {wanted}")
        outcome.linked_customers = found.linked
        return outcome
    at = event.occurred_at or utcnow()
    notes = [*found.notes, *_book_charge(session, sub, data, reference, target, at)]
    notes += _remember_authorization(sub, data)
    notes += fx.settle_if_paid(session, sub, at, event)
    outcome = fx.applied("; ".join(notes), sub.tenant_id)
    outcome.linked_customers = found.linked
    return outcome


def _book_charge(
    session: Session,
    sub: Subscription,
    data: dict[str, Any],
    reference: str,
    target: Invoice | None,
    at: dt.datetime,
) -> list[str]:
    """Record what one successful charge paid. Its invoice is `target` (a retry's), else the
    subscription's invoice carrying its reference; with none known yet, the charge is kept as
    a paid row under its reference, which the invoice event naming it adopts."""
    amount = fx.minor(data.get("amount"))
    paid_at = parse_time(data.get("paid_at")) or at
    invoice = target
    if invoice is None:
        invoice = session.scalar(
            select(Invoice)
            .where(
                Invoice.provider == "paystack",
                Invoice.subscription_id == sub.id,
                (Invoice.metadata_[REFERENCE_KEY].as_string() == reference)
                | (Invoice.provider_invoice_id == reference),
            )
            .order_by(Invoice.id)
            .limit(1)
            .with_for_update()
        )
    if invoice is None:
        plan = session.get(SubscriptionPlan, sub.plan_id)
        row = Invoice(
            tenant_id=sub.tenant_id,
            subscription_id=sub.id,
            provider="paystack",
            provider_invoice_id=reference,
            status="paid",
            amount_due_minor=amount,
            amount_paid_minor=amount,
            currency=fx.currency(data.get("currency"), plan.currency if plan else "NGN"),
            period_start=paid_at,
            # The first payment pays up to the subscription's next charge date
            # (`subscription.create`'s next_payment_date); a renewal's invoice event brings its
            # own period when it adopts this row.
            period_end=(
                sub.current_period_end
                if sub.current_period_end is not None and sub.current_period_end > paid_at
                else None
            ),
            paid_at=paid_at,
            metadata_={REFERENCE_KEY: reference},
        )
        session.add(row)
        session.flush()
        return [f"charge {reference} recorded as paid invoice {row.id}"]
    if invoice.status == "paid":
        return [f"invoice {invoice.id} is already paid"]
    if invoice.status not in fx.OPEN_INVOICE_STATUSES:
        return [f"invoice {invoice.id} is {invoice.status}; charge {reference} left unallocated"]
    if amount < invoice.amount_due_minor:
        return [
            f"charge {reference} ({amount}) is less than invoice {invoice.id} owes "
            f"({invoice.amount_due_minor}); left open"
        ]
    invoice.status, invoice.amount_paid_minor = "paid", invoice.amount_due_minor
    invoice.paid_at = paid_at
    invoice.metadata_ = {**(invoice.metadata_ or {}), REFERENCE_KEY: reference}
    session.flush()
    return [f"invoice {invoice.id}: open -> paid by {reference}"]


# ---------------------------------------------------------------------------------------------
# Tenant scope: payments; both scopes: disputes


def _subaccount_tenant(session: Session, event: InboundEvent) -> int | None:
    tenant_id = fx.tenant_for_external(session, "paystack", "subaccount", event.account_ref)
    if tenant_id is None:
        data = event.object if isinstance(event.object, dict) else {}
        meta = _dict(data.get("metadata")) or _dict(_dict(data.get("transaction")).get("metadata"))
        tenant = fx.tenant_by_ref(session, meta.get("tenant"))
        tenant_id = tenant.id if tenant else None
    return tenant_id


def _no_subaccount(event: InboundEvent) -> Outcome:
    return fx.unmatched(
        f"subaccount {event.account_ref!r} is not linked to a tenant and metadata.tenant is "
        f"not set; `faithflow tenants link SLUG {event.account_ref or 'ACCT_…'}` links it"
    )


def tenant_charge(session: Session, event: InboundEvent) -> Outcome:
    data = event.object
    at, rank = event.occurred_at, RANKS[event.type]
    tenant_id = _subaccount_tenant(session, event)
    if tenant_id is None:
        return _no_subaccount(event)
    reference = _text(data.get("reference"))
    if reference is None:
        return fx.ignored("charge without a reference")
    payment, new = fx.payment_for(session, "paystack", reference)
    if not new and not fx.is_current(payment, at, rank):
        return fx.stale(f"payment {payment.id} already holds newer state", tenant_id)
    meta = _dict(data.get("metadata"))
    customer = _dict(data.get("customer"))
    payment.tenant_id = tenant_id
    payment.status = "succeeded" if data.get("status") == "success" else "failed"
    # An event writes only the fields it carries.
    if data.get("id") is not None:
        payment.provider_charge_id = str(data["id"])
    payment.amount_minor = fx.carried_minor(data, "amount", payment.amount_minor)
    payment.currency = fx.carried_currency(data, "currency", payment.currency, "NGN")
    payment.purpose = str(meta["purpose"])[:64] if meta.get("purpose") else payment.purpose
    email = customer.get("email")
    payment.payer_email = email[:320] if isinstance(email, str) else payment.payer_email
    if payment.status != "succeeded":
        payment.paid_at = None
    else:
        sent = parse_time(data.get("paid_at")) or parse_time(data.get("paidAt"))
        payment.paid_at = sent or payment.paid_at or at
    if "metadata" in data or new:
        payment.metadata_ = meta
    fx.save(session, payment, new, at, rank)
    return fx.applied(f"payment {payment.id}: {payment.status}", tenant_id)


def dispute_event(session: Session, event: InboundEvent) -> Outcome:
    return fx.record_dispute(session, event, dispute_state(session, event), RANKS[event.type])


def dispute_state(session: Session, event: InboundEvent) -> fx.DisputeState | Outcome:
    """What a dispute event says, in our columns, or why its tenant is unknown (read-only:
    `disputes monitor` reads pulled disputes through it too)."""
    data = event.object
    at = event.occurred_at
    transaction = _dict(data.get("transaction"))
    reference = _text(transaction.get("reference"))
    payment_id = invoice_id = None
    if event.scope == "tenant":
        tenant_id = _subaccount_tenant(session, event)
        if tenant_id is None:
            return _no_subaccount(event)
        payment_id = session.scalar(
            select(Payment.id).where(
                Payment.provider == "paystack", Payment.provider_payment_id == reference
            )
        )
    else:
        owner = platform_dispute_owner(session, "paystack", [(REFERENCE_KEY, reference)])
        if owner is not None:
            invoice_id, tenant_id = owner
        else:
            found = platform_tenant(session, event, link=False)
            if isinstance(found, Outcome):
                return found
            tenant_id = found.tenant_id
    resolved = event.type == "charge.dispute.resolve"
    return fx.DisputeState(
        tenant_id=tenant_id,
        charge_ref=reference,
        payment_id=payment_id,
        invoice_id=invoice_id,
        # None where the event does not say: the stored value is kept
        amount_minor=fx.sent_minor(data.get("refund_amount"))
        or fx.sent_minor(transaction.get("amount")),
        currency=fx.sent_currency(data.get("currency"))
        or fx.sent_currency(transaction.get("currency")),
        reason=_text(data.get("category")),
        status=str(data["status"]) if data.get("status") else None,
        default_currency="NGN",
        default_status="awaiting-merchant-feedback",
        evidence_due_by=parse_time(data.get("dueAt")),
        closed_at=(parse_time(data.get("resolvedAt")) or at or utcnow()) if resolved else None,
        extra={"resolution": data["resolution"]} if resolved and data.get("resolution") else {},
    )


# ---------------------------------------------------------------------------------------------
# Routing


RANKS: dict[str, int] = {
    "subscription.create": 0,
    "subscription.not_renew": 1,
    "subscription.expiring_cards": 1,
    "subscription.disable": 2,
    "invoice.create": 0,
    "invoice.update": 1,
    "invoice.payment_failed": 1,
    "charge.success": 2,
    "charge.dispute.create": 0,
    "charge.dispute.remind": 1,
    "charge.dispute.resolve": 2,
}

PLATFORM: dict[str, Handler] = {
    "subscription.create": subscription_event,
    "subscription.not_renew": subscription_event,
    "subscription.disable": subscription_event,
    "subscription.expiring_cards": expiring_cards,
    "invoice.create": invoice_event,
    "invoice.update": invoice_event,
    "invoice.payment_failed": invoice_event,
    "charge.success": platform_charge,
    **{f"charge.dispute.{verb}": dispute_event for verb in ("create", "remind", "resolve")},
}

TENANT: dict[str, Handler] = {
    "charge.success": tenant_charge,
    **{f"charge.dispute.{verb}": dispute_event for verb in ("create", "remind", "resolve")},
}

HANDLERS = {"platform": PLATFORM, "tenant": TENANT}
