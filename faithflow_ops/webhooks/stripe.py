"""Stripe event handlers. Platform scope: FaithFlow billing its tenants (checkout, subscriptions,
invoices and their payments, the customer, disputes). Tenant scope: payments a church takes on
its Connect account (`account` on the event), written to `payments` and `disputes`.

Each handler reads the event's object snapshot and returns an `Outcome`; none calls Stripe.

Both Invoice shapes are read. Up to API version 2025-02-24 an invoice names its `charge` and
`payment_intent`; from 2025-03-31.basil it does not, and each payment of an invoice is an
`InvoicePayment` (`invoice_payment.paid`, or `payments` when the invoice is expanded). Either
way the ids land in the invoice's metadata (`stripeChargeId`, `stripePaymentIntentId`), which
is how a platform dispute finds its invoice (`dispute_state`).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from faithflow_ops import audit
from faithflow_ops.billing import lifecycle as fx
from faithflow_ops.billing import live as one_live
from faithflow_ops.billing.dispute_owner import (
    PaymentLinks,
    disputed_payment,
    platform_dispute_owner,
)
from faithflow_ops.billing.dispute_owner import expanded_id as _id
from faithflow_ops.billing.lifecycle import Outcome
from faithflow_ops.models import (
    Dispute,
    Invoice,
    Payment,
    Subscription,
    SubscriptionPlan,
    Tenant,
    WebhookEvent,
)
from faithflow_ops.tenancy.accounts import link_account
from faithflow_ops.webhooks.events import InboundEvent, canonical_customer

Handler = Callable[[Session, InboundEvent], Outcome]


def _slug(session: Session, tenant_id: int) -> str | None:
    """A tenant's slug, for messages (an operator knows churches by slug, not by id)."""
    return session.scalar(select(Tenant.slug).where(Tenant.id == tenant_id))


_STATUS = {
    "incomplete": "incomplete",
    "incomplete_expired": "canceled",
    "trialing": "trialing",
    "active": "active",
    "past_due": "past_due",
    "unpaid": "unpaid",
    "canceled": "canceled",
    "paused": "suspended",
}


def _at(event: InboundEvent) -> dt.datetime:
    assert event.occurred_at is not None  # every Stripe event has `created`
    return event.occurred_at


def _meta(obj: dict[str, Any]) -> dict[str, Any]:
    meta = obj.get("metadata")
    return meta if isinstance(meta, dict) else {}


# ---------------------------------------------------------------------------------------------
# Platform: checkout and subscriptions


def checkout_completed(session: Session, event: InboundEvent) -> Outcome:
    obj = event.object
    ref = obj.get("client_reference_id") or _meta(obj).get("tenant")
    tenant = fx.tenant_by_ref(session, ref)
    if tenant is None:
        named = f"names tenant {ref!r}, which does not exist" if ref else "names no tenant"
        return fx.unmatched(
            f"checkout session {event.object_id} {named} (client_reference_id or "
            "metadata.tenant); add or fix the tenant, then `faithflow webhooks replay`"
        )
    notes = []
    linked = []
    customer = canonical_customer("stripe", _id(obj.get("customer")))
    if customer:
        owner = link_account(session, tenant.id, "stripe", "customer", customer, fx.actor(event))
        if owner != tenant.id:
            return fx.unmatched(
                f"customer {customer} is already linked to tenant {owner}, not {tenant.slug}; "
                "a human must decide which church it belongs to"
            )
        notes.append(f"customer {customer} linked to tenant {tenant.slug}")
        linked.append(customer)
    sub_id = _id(obj.get("subscription"))
    if sub_id:
        sub = fx.subscription_by_provider_id(session, "stripe", sub_id)
        if sub is None:
            plan = None
            plan_ref = _meta(obj).get("plan")
            if isinstance(plan_ref, str):
                plan = session.scalar(
                    select(SubscriptionPlan).where(SubscriptionPlan.code == plan_ref)
                )
            live = fx.adopt_or_refuse(session, tenant.id, "stripe", sub_id)
            if isinstance(live, Outcome):
                return live
            if live is not None:
                notes.append(f"subscription {live.id} is {sub_id}")
            elif plan is not None:
                sub = Subscription(
                    tenant_id=tenant.id,
                    plan_id=plan.id,
                    provider="stripe",
                    provider_subscription_id=sub_id,
                    provider_customer_id=customer,
                    status="incomplete",
                    metadata_={},
                )
                session.add(sub)
                session.flush()
                notes.append(f"subscription {sub.id} recorded for {sub_id} (plan {plan.code})")
            else:
                notes.append(f"{sub_id} will be recorded by its customer.subscription event")
        elif sub.tenant_id != tenant.id:
            return fx.unmatched(
                f"{sub_id} is recorded for tenant {_slug(session, sub.tenant_id)}, not "
                f"{tenant.slug}; "
                "a human must decide which church it belongs to"
            )
        elif customer and not sub.provider_customer_id:
            sub.provider_customer_id = customer
            notes.append(f"subscription {sub.id}: customer {customer}")
    outcome = fx.applied("; ".join(notes) or "nothing to link", tenant.id)
    outcome.linked_customers = linked
    return outcome


def _price_id(obj: dict[str, Any]) -> str | None:
    items = obj.get("items")
    data = items.get("data") if isinstance(items, dict) else None
    if isinstance(data, list) and data and isinstance(data[0], dict):
        return _id(data[0].get("price")) or _id(data[0].get("plan"))
    return _id(obj.get("plan"))


def _period(obj: dict[str, Any], name: str) -> dt.datetime | None:
    """current_period_* moved from the subscription to its items in 2025 API versions."""
    value = fx.timestamp(obj.get(name))
    if value is None:
        items = obj.get("items")
        data = items.get("data") if isinstance(items, dict) else None
        if isinstance(data, list) and data and isinstance(data[0], dict):
            value = fx.timestamp(data[0].get(name))
    return value


DELETED = "customer.subscription.deleted"


def subscription_event(session: Session, event: InboundEvent) -> Outcome:
    obj = event.object
    at, rank = _at(event), RANKS[event.type]
    sub = fx.subscription_by_provider_id(session, "stripe", event.object_id)
    notes: list[str] = []
    price = _price_id(obj)
    plan = fx.plan_by_meta(session, "stripePriceId", price)
    customer = canonical_customer("stripe", _id(obj.get("customer")))
    if sub is None:
        tenant = fx.tenant_by_ref(session, _meta(obj).get("tenant"))
        tenant_id = (
            tenant.id if tenant else fx.tenant_for_external(session, "stripe", "customer", customer)
        )
        if tenant_id is None:
            return fx.unmatched(
                f"no tenant for {event.object_id}: customer {customer} is not linked and "
                "metadata.tenant is not set; `faithflow tenants link SLUG "
                f"{customer or 'cus_…'}` (or the checkout event) links it"
            )
        if plan is None:
            return fx.unmatched(
                f"no plan has stripePriceId {price!r}; set it with `faithflow plans set-meta "
                f"CODE stripePriceId={price}`, then `faithflow webhooks replay`"
            )
        ended = event.type == DELETED or _STATUS.get(str(obj.get("status"))) == "canceled"
        live = fx.adopt_or_refuse(session, tenant_id, "stripe", event.object_id)
        if isinstance(live, Outcome):
            if not ended:
                return live  # the tenant has another live subscription
            live = None  # one that has ended takes no live place: recorded as history
        if live is not None:
            sub = live
            notes.append(f"subscription {sub.id} is {event.object_id}")
        else:
            sub = Subscription(
                tenant_id=tenant_id,
                plan_id=plan.id,
                provider="stripe",
                provider_subscription_id=event.object_id,
                provider_customer_id=customer,
                status="canceled" if ended else "incomplete",
                metadata_={},
            )
            session.add(sub)
            session.flush()
            notes.append(f"subscription {sub.id} recorded for {event.object_id}")
    elif sub.status == "canceled" and sub.provider_state_rank == RANKS[DELETED]:
        # Stripe never revives a deleted subscription: whatever arrives later is history.
        return fx.stale(f"subscription {sub.id} was deleted at Stripe", sub.tenant_id)
    elif not fx.is_current(sub, at, rank):
        return fx.stale(
            f"subscription {sub.id} already holds state from "
            f"{sub.provider_state_at.isoformat() if sub.provider_state_at else '?'}",
            sub.tenant_id,
        )
    status = (
        "canceled"
        if event.type.endswith(".deleted")
        else _STATUS.get(str(obj.get("status")), sub.status)
    )
    refused = one_live.revival_refusal(session, sub, status)
    if refused is not None:  # checked before anything is written
        return Outcome("unmatched", refused, sub.tenant_id)
    if plan is not None and plan.id != sub.plan_id:
        notes.append(f"subscription {sub.id}: plan {sub.plan_id} -> {plan.id}")
        sub.plan_id = plan.id
    if customer and not sub.provider_customer_id:
        sub.provider_customer_id = customer
    # An event writes only the fields it carries (fx.carried_*).
    sub.trial_end = fx.carried_time(obj, "trial_end", sub.trial_end)
    sub.current_period_start = _period(obj, "current_period_start") or sub.current_period_start
    sub.current_period_end = _period(obj, "current_period_end") or sub.current_period_end
    if "cancel_at_period_end" in obj:
        sub.cancel_at_period_end = bool(obj["cancel_at_period_end"])
    if status == "canceled":
        sub.canceled_at = fx.timestamp(obj.get("canceled_at")) or sub.canceled_at or at
    notes += fx.set_subscription_status(session, sub, status, at, event)
    if event.type.endswith("trial_will_end") and sub.trial_end:
        notes.append(f"trial ends {sub.trial_end.isoformat()}")
    fx.stamp(sub, at, rank)
    return fx.applied("; ".join(notes) or f"subscription {sub.id} up to date", sub.tenant_id)


# ---------------------------------------------------------------------------------------------
# Platform: invoices


def _invoice_subscription_id(obj: dict[str, Any]) -> str | None:
    found = _id(obj.get("subscription"))
    if found:
        return found
    parent = obj.get("parent")  # 2025 API versions
    details = parent.get("subscription_details") if isinstance(parent, dict) else None
    return _id(details.get("subscription")) if isinstance(details, dict) else None


def _payment_refs(payment: object) -> dict[str, str]:
    """An InvoicePayment's `payment` (`{"type": "payment_intent", "payment_intent": "pi_…"}`
    or `{"type": "charge", "charge": "ch_…"}`) as invoice metadata: only what it names."""
    refs: dict[str, str] = {}
    if not isinstance(payment, dict):
        return refs
    intent = _id(payment.get("payment_intent"))
    charge = _id(payment.get("charge"))
    if intent:
        refs["stripePaymentIntentId"] = intent
    if charge:
        refs["stripeChargeId"] = charge
    return refs


def _invoice_payment_refs(obj: dict[str, Any]) -> dict[str, str]:
    """The payment ids an invoice object names, as metadata: `charge` / `payment_intent`
    (API versions before 2025-03-31.basil), else its expanded `payments` (basil and later:
    the latest paid one, else the latest)."""
    refs: dict[str, str] = {}
    for key, name in (("stripeChargeId", "charge"), ("stripePaymentIntentId", "payment_intent")):
        found = _id(obj.get(name))
        if found:
            refs[key] = found
    if refs:
        return refs
    payments = obj.get("payments")
    data = payments.get("data") if isinstance(payments, dict) else None
    entries = [e for e in data if isinstance(e, dict)] if isinstance(data, list) else []
    entries = [e for e in entries if _payment_refs(e.get("payment"))]
    if not entries:
        return refs
    latest = max(
        entries,
        key=lambda e: (e.get("status") == "paid", fx.minor(e.get("created")), str(e.get("id"))),
    )
    refs.update(_payment_refs(latest.get("payment")))
    if _id(latest.get("id")):
        refs["stripeInvoicePaymentId"] = str(latest["id"])
    return refs


_PAST_DUE_EVENTS = ("invoice.payment_failed", "invoice.payment_action_required")
_SETTLING_EVENTS = ("invoice.paid", "invoice.payment_succeeded", "invoice.voided")


def invoice_event(session: Session, event: InboundEvent) -> Outcome:
    obj = event.object
    at, rank = _at(event), RANKS[event.type]
    sub = fx.subscription_by_provider_id(session, "stripe", _invoice_subscription_id(obj))
    tenant_id = (
        sub.tenant_id
        if sub
        else fx.tenant_for_external(session, "stripe", "customer", event.customer_ref)
    )
    if tenant_id is None or event.object_id is None:
        return fx.unmatched(
            f"invoice {event.object_id}: no recorded subscription and customer "
            f"{event.customer_ref} is not linked to a tenant"
        )
    invoice, new = fx.invoice_for(session, "stripe", event.object_id)
    notes = []
    if not new and not fx.is_current(invoice, at, rank):
        return fx.stale(f"invoice {invoice.id} already holds newer state", tenant_id)
    status = str(obj.get("status") or "open")
    if event.type in ("invoice.paid", "invoice.payment_succeeded"):
        status = "paid"
    elif event.type == "invoice.voided":
        status = "void"
    elif event.type == "invoice.marked_uncollectible":
        status = "uncollectible"
    if status not in ("draft", "open", "paid", "uncollectible", "void"):
        status = "open"
    before = None if new else invoice.status
    invoice.tenant_id = tenant_id
    invoice.subscription_id = sub.id if sub else invoice.subscription_id
    invoice.status = status
    # An event writes only the fields it carries (a signed `invoice.paid` without
    # `period_end` keeps the stored period end).
    invoice.amount_due_minor = fx.carried_minor(obj, "amount_due", invoice.amount_due_minor)
    invoice.amount_paid_minor = fx.carried_minor(obj, "amount_paid", invoice.amount_paid_minor)
    invoice.currency = fx.carried_currency(obj, "currency", invoice.currency, "USD")
    invoice.period_start = fx.carried_time(obj, "period_start", invoice.period_start)
    invoice.period_end = fx.carried_time(obj, "period_end", invoice.period_end)
    invoice.due_at = fx.carried_time(obj, "due_date", invoice.due_at)
    transitions = obj.get("status_transitions")
    if isinstance(transitions, dict):
        invoice.paid_at = fx.timestamp(transitions.get("paid_at")) or invoice.paid_at
    if status == "paid" and invoice.paid_at is None:
        invoice.paid_at = at
    if isinstance(obj.get("hosted_invoice_url"), str):
        invoice.hosted_invoice_url = obj["hosted_invoice_url"][:1000]
    invoice.metadata_ = {**(invoice.metadata_ or {}), **_invoice_payment_refs(obj)}
    fx.save(session, invoice, new, at, rank)
    notes.append(
        f"invoice {invoice.id} recorded as {status}"
        if before is None
        else f"invoice {invoice.id}: {before} -> {status}"
    )
    if sub is not None:
        if event.type in _PAST_DUE_EVENTS:
            notes += fx.mark_past_due(session, sub, at, event)
        elif event.type in _SETTLING_EVENTS:
            notes += fx.settle_if_paid(session, sub, at, event)
    outcome = fx.applied("; ".join(notes), tenant_id)
    if new:
        # Stripe sends invoice_payment.paid beside invoice.paid, in no set order: the ones that
        # came first waited (unmatched) for this invoice and are handled next.
        outcome.unblocked = _waiting_payments(session, event.object_id)
    return outcome


def _waiting_payments(session: Session, invoice_ref: str) -> list[int]:
    """Unmatched `invoice_payment.paid` events naming the invoice `invoice_ref` (rare: only
    those that beat their invoice; read through the partial unmatched index)."""
    rows = session.execute(
        select(WebhookEvent.id, WebhookEvent.payload, WebhookEvent.raw_body).where(
            WebhookEvent.provider == "stripe",
            WebhookEvent.status == "unmatched",
            WebhookEvent.event_type == "invoice_payment.paid",
        )
    ).all()
    found = []
    for row in rows:
        data = (row.payload or {}).get("data") if isinstance(row.payload, dict) else None
        obj = data.get("object") if isinstance(data, dict) else None
        if isinstance(obj, dict) and _id(obj.get("invoice")) == invoice_ref:
            found.append(int(row.id))
    return found


def invoice_payment_paid(session: Session, event: InboundEvent) -> Outcome:
    """`invoice_payment.paid` (API 2025-03-31.basil and later): which payment intent or charge
    paid the invoice, kept in its metadata so a dispute on that payment finds the invoice.
    Adds what the event names and nulls nothing; the invoice's own state is untouched (its
    invoice.* events order that), so the event needs no order check: it only adds ids."""
    obj = event.object
    refs = _payment_refs(obj.get("payment"))
    invoice_ref = _id(obj.get("invoice"))
    if invoice_ref is None:
        return fx.unmatched(f"invoice payment {event.object_id} names no invoice")
    if not refs:
        kind = obj.get("payment", {}).get("type") if isinstance(obj.get("payment"), dict) else None
        return fx.ignored(
            f"invoice payment {event.object_id} of {invoice_ref} names no payment intent or "
            f"charge (payment type {kind!r}): nothing a dispute could match"
        )
    invoice = session.scalar(
        select(Invoice)
        .where(Invoice.provider == "stripe", Invoice.provider_invoice_id == invoice_ref)
        .with_for_update()
    )
    if invoice is None:
        return fx.unmatched(_invoice_missing(session, str(event.object_id), invoice_ref))
    if event.object_id:
        refs["stripeInvoicePaymentId"] = event.object_id
    meta = dict(invoice.metadata_ or {})
    changed = sorted(key for key, value in refs.items() if meta.get(key) != value)
    if not changed:
        return fx.applied(f"invoice {invoice.id}: payment ids already recorded", invoice.tenant_id)
    invoice.metadata_ = {**meta, **refs}
    session.flush()
    named = ("stripePaymentIntentId", "stripeChargeId")
    paid_by = " and ".join(refs[key] for key in named if key in refs)
    return fx.applied(
        f"invoice {invoice.id}: payment {event.object_id} by {paid_by} recorded", invoice.tenant_id
    )


def _invoice_missing(session: Session, payment_ref: str, invoice_ref: str) -> str:
    """Why an invoice payment cannot be recorded yet, naming the fix when we know it."""
    # The invoice's own event may be stored unmatched: its customer says what to link.
    customer = session.scalar(
        select(WebhookEvent.customer_ref)
        .where(
            WebhookEvent.provider == "stripe",
            WebhookEvent.status == "unmatched",
            WebhookEvent.scope == "platform",
            WebhookEvent.object_id == invoice_ref,
            WebhookEvent.customer_ref.is_not(None),
        )
        .limit(1)
    )
    if customer:
        return (
            f"invoice payment {payment_ref}: invoice {invoice_ref} is not recorded because its "
            f"customer {customer} is not linked to a tenant; `faithflow tenants link SLUG "
            f"{customer}`, then `faithflow webhooks replay --unmatched`"
        )
    return (
        f"invoice payment {payment_ref}: invoice {invoice_ref} is not recorded yet (its "
        "invoice.* event has not arrived); `faithflow webhooks replay --unmatched` handles "
        "this event again once it has"
    )


def customer_updated(session: Session, event: InboundEvent) -> Outcome:
    obj = event.object
    tenant_id = fx.tenant_for_external(session, "stripe", "customer", event.customer_ref)
    if tenant_id is None:
        return fx.unmatched(f"customer {event.customer_ref} is not linked to a tenant")
    tenant = session.get(Tenant, tenant_id)
    assert tenant is not None
    email = obj.get("email")
    if isinstance(email, str) and email.strip() and email.strip() != tenant.billing_email:
        before = {"billing_email": tenant.billing_email}
        tenant.billing_email = email.strip()[:320]
        audit.record(
            session,
            actor=fx.actor(event),
            action="tenant.billing_email",
            entity_type="tenant",
            entity_id=tenant.id,
            tenant_id=tenant.id,
            before=before,
            after={"billing_email": tenant.billing_email},
        )
        return fx.applied(f"tenant {tenant.slug}: billing email updated", tenant.id)
    return fx.applied(f"tenant {tenant.slug}: nothing changed", tenant.id)


# ---------------------------------------------------------------------------------------------
# Disputes (both scopes) and tenant-scope payments


def _connect_tenant(session: Session, event: InboundEvent) -> int | None:
    tenant_id = fx.tenant_for_external(session, "stripe", "connect_account", event.account_ref)
    if tenant_id is None:
        tenant = fx.tenant_by_ref(session, _meta(event.object).get("tenant"))
        tenant_id = tenant.id if tenant else None
    return tenant_id


def _no_connect_tenant(event: InboundEvent) -> Outcome:
    return fx.unmatched(
        f"Connect account {event.account_ref!r} is not linked to a tenant; "
        f"`faithflow tenants link SLUG {event.account_ref or 'acct_…'}` links it"
    )


def dispute_event(
    session: Session, event: InboundEvent, links: PaymentLinks | None = None
) -> Outcome:
    state = dispute_state(session, event, links)
    return fx.record_dispute(session, event, state, RANKS[event.type])


def _platform_owner(
    session: Session, event: InboundEvent, links: PaymentLinks | None
) -> tuple[int | None, int] | str:
    """(invoice id, tenant id) of a platform dispute, or what is missing. In this order, first
    our invoices (`billing.dispute_owner.platform_dispute_owner`): the invoice paid by the
    disputed charge, then by its payment intent (both from the invoice's metadata:
    `invoice.*` on old API versions, `invoice_payment.paid` on basil and later), the invoice
    Stripe says the payment intent paid (`links`, monitor only); then the dispute as already
    recorded; `metadata.tenant`; the charge's customer (`links`, monitor only)."""
    obj = event.object
    charge, intent = disputed_payment(obj)
    payments = [("stripeChargeId", charge), ("stripePaymentIntentId", intent)]
    found = platform_dispute_owner(session, "stripe", payments, links.invoice if links else None)
    if found is not None:
        return found
    recorded = session.execute(
        select(Dispute.invoice_id, Dispute.tenant_id).where(
            Dispute.provider == "stripe", Dispute.provider_dispute_id == event.object_id
        )
    ).first()
    if recorded is not None:
        return recorded[0], recorded[1]
    tenant = fx.tenant_by_ref(session, _meta(obj).get("tenant"))
    if tenant is not None:
        return None, tenant.id
    customer = canonical_customer("stripe", links.customer) if links else None
    tenant_id = fx.tenant_for_external(session, "stripe", "customer", customer)
    if tenant_id is not None:
        return None, tenant_id
    paid_by = " or ".join(
        f"{name} {ref}" for name, ref in (("charge", charge), ("payment intent", intent)) if ref
    )
    missing = [f"no invoice paid by {paid_by or 'its payment'} is recorded"]
    if links is not None and links.invoice:
        missing.append(f"Stripe says it paid {links.invoice}, which is not recorded")
    if customer:
        missing.append(
            f"the charge's customer {customer} is not linked to a tenant "
            f"(`faithflow tenants link SLUG {customer}`)"
        )
    elif links is None:
        missing.append(
            "on API versions from 2025-03-31.basil its invoice_payment.paid event records the "
            "payment; `faithflow webhooks replay --unmatched` once it is"
        )
    return f"dispute {event.object_id}: " + "; ".join(missing)


def dispute_state(
    session: Session, event: InboundEvent, links: PaymentLinks | None = None
) -> fx.DisputeState | Outcome:
    """What a dispute event says, in our columns, or why its tenant is unknown (read-only:
    `disputes monitor` reads pulled disputes through it too, with the `links` it looked up)."""
    obj = event.object
    at = _at(event)
    charge = _id(obj.get("charge"))
    payment_id = invoice_id = None
    if event.scope == "tenant":
        tenant_id = _connect_tenant(session, event)
        if tenant_id is None:
            return _no_connect_tenant(event)
        payment_id = session.scalar(
            select(Payment.id).where(
                Payment.provider == "stripe", Payment.provider_charge_id == charge
            )
        )
    else:
        owner = _platform_owner(session, event, links)
        if isinstance(owner, str):
            return fx.unmatched(owner)
        invoice_id, tenant_id = owner
    details = obj.get("evidence_details")
    return fx.DisputeState(
        tenant_id=tenant_id,
        charge_ref=charge,
        payment_id=payment_id,
        invoice_id=invoice_id,
        # None where the event does not say: the stored value is kept
        amount_minor=fx.sent_minor(obj.get("amount")),
        currency=fx.sent_currency(obj.get("currency")),
        reason=str(obj.get("reason") or "")[:100] or None,
        status=str(obj["status"]) if obj.get("status") else None,
        evidence_due_by=fx.timestamp(details.get("due_by")) if isinstance(details, dict) else None,
        closed_at=at if event.type == "charge.dispute.closed" else None,
    )


_PAYMENT_STATUS = {
    "payment_intent.processing": "pending",
    "payment_intent.succeeded": "succeeded",
    "payment_intent.payment_failed": "failed",
    "payment_intent.canceled": "canceled",
}


def payment_intent_event(session: Session, event: InboundEvent) -> Outcome:
    obj = event.object
    at, rank = _at(event), RANKS[event.type]
    tenant_id = _connect_tenant(session, event)
    if tenant_id is None:
        return _no_connect_tenant(event)
    payment, new = fx.payment_for(session, "stripe", str(event.object_id))
    if not new and not fx.is_current(payment, at, rank):
        return fx.stale(f"payment {payment.id} already holds newer state", tenant_id)
    meta = _meta(obj)
    payment.tenant_id = tenant_id
    payment.status = _PAYMENT_STATUS[event.type]
    payment.provider_charge_id = _id(obj.get("latest_charge")) or payment.provider_charge_id
    # An event writes only the fields it carries.
    payment.amount_minor = fx.minor(obj.get("amount_received")) or fx.carried_minor(
        obj, "amount", payment.amount_minor
    )
    payment.currency = fx.carried_currency(obj, "currency", payment.currency, "USD")
    payment.purpose = str(meta.get("purpose"))[:64] if meta.get("purpose") else payment.purpose
    email = obj.get("receipt_email")
    payment.payer_email = email[:320] if isinstance(email, str) else payment.payer_email
    if payment.status == "succeeded":
        payment.paid_at = payment.paid_at or at
    error = obj.get("last_payment_error")
    if isinstance(error, dict) and error.get("message"):
        payment.failure_reason = str(error["message"])[:500]
    if "metadata" in obj or new:
        payment.metadata_ = meta
    fx.save(session, payment, new, at, rank)
    return fx.applied(f"payment {payment.id}: {payment.status}", tenant_id)


def charge_refunded(session: Session, event: InboundEvent) -> Outcome:
    obj = event.object
    at, rank = _at(event), RANKS[event.type]
    tenant_id = _connect_tenant(session, event)
    if tenant_id is None:
        return _no_connect_tenant(event)
    payment = session.scalar(
        select(Payment)
        .where(
            Payment.provider == "stripe",
            (Payment.provider_charge_id == event.object_id)
            | (Payment.provider_payment_id == _id(obj.get("payment_intent"))),
        )
        .with_for_update()
    )
    if payment is None:
        return fx.unmatched(f"charge {event.object_id}: its payment is not recorded yet")
    if not fx.is_current(payment, at, rank):
        return fx.stale(f"payment {payment.id} already holds newer state", tenant_id)
    refunded = fx.carried_minor(obj, "amount_refunded", payment.amount_refunded_minor)
    payment.amount_refunded_minor = refunded
    payment.status = "refunded" if refunded >= payment.amount_minor else "partially_refunded"
    fx.stamp(payment, at, rank)
    return fx.applied(f"payment {payment.id}: {payment.status} ({refunded})", tenant_id)


# ---------------------------------------------------------------------------------------------
# Routing: (handler, rank) per event type and scope


RANKS: dict[str, int] = {
    "checkout.session.completed": 1,
    "customer.subscription.created": 0,
    "customer.subscription.updated": 1,
    "customer.subscription.trial_will_end": 1,
    "customer.subscription.deleted": 2,
    "invoice.created": 0,
    "invoice.finalized": 1,
    "invoice.payment_failed": 1,
    "invoice.payment_action_required": 1,
    "invoice.paid": 2,
    "invoice.payment_succeeded": 2,
    "invoice.voided": 3,
    "invoice.marked_uncollectible": 3,
    "customer.updated": 1,
    "charge.dispute.created": 0,
    "charge.dispute.updated": 1,
    "charge.dispute.closed": 2,
    "payment_intent.processing": 0,
    "payment_intent.payment_failed": 1,
    "payment_intent.succeeded": 2,
    "payment_intent.canceled": 2,
    "charge.refunded": 3,
    # Adds payment ids to the invoice's metadata without an order check (it sets no state).
    "invoice_payment.paid": 2,
}

PLATFORM: dict[str, Handler] = {
    "checkout.session.completed": checkout_completed,
    **{
        f"customer.subscription.{verb}": subscription_event
        for verb in ("created", "updated", "deleted", "trial_will_end")
    },
    **{
        f"invoice.{verb}": invoice_event
        for verb in (
            "created",
            "finalized",
            "paid",
            "payment_succeeded",
            "payment_failed",
            "payment_action_required",
            "voided",
            "marked_uncollectible",
        )
    },
    "invoice_payment.paid": invoice_payment_paid,
    "customer.updated": customer_updated,
    **{f"charge.dispute.{verb}": dispute_event for verb in ("created", "updated", "closed")},
}

TENANT: dict[str, Handler] = {
    **{name: payment_intent_event for name in _PAYMENT_STATUS},
    "charge.refunded": charge_refunded,
    **{f"charge.dispute.{verb}": dispute_event for verb in ("created", "updated", "closed")},
}

HANDLERS = {"platform": PLATFORM, "tenant": TENANT}
