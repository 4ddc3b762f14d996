"""The billing state machine: who the tenant is, whether an event is newer than the state
already stored, and the subscription, invoice, payment and dispute changes. The webhook
handlers (webhooks/stripe.py, webhooks/paystack.py) and the jobs that pull from the providers
(`subs automate`, `invoices reconcile`, `disputes monitor`) all write through it.

Order safety: each object stores the time and rank of the event that last set its state
(`provider_state_at`, `provider_state_rank`). An event is applied only when its
(time, rank) is not older; the rank breaks ties inside one second (Stripe times are whole
seconds): a creation ranks lowest, a terminal event (deleted, paid, closed) highest, so
`created` never undoes `deleted` and `finalized` never undoes `paid`.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from faithflow_ops import audit
from faithflow_ops.billing import live as one_live
from faithflow_ops.clock import jsonable
from faithflow_ops.db import utcnow
from faithflow_ops.dunning import cases as dunning_cases
from faithflow_ops.models import (
    Dispute,
    Invoice,
    Payment,
    Subscription,
    SubscriptionPlan,
    Tenant,
)
from faithflow_ops.tenancy.accounts import owner_id
from faithflow_ops.tenancy.tenants import reactivate_tenant

NON_PAYMENT = "non_payment"  # the suspension reason `subs automate` writes
OPEN_INVOICE_STATUSES = ("draft", "open")
# What a payment that settles every open invoice returns to active (`settle_if_paid`).
SETTLEABLE_STATUSES = ("past_due", "unpaid", "suspended", "incomplete")
PAST_DUE_RANK = 1  # a failed payment ranks like an update of the subscription


class InboundEvent(Protocol):
    """What the state machine reads of a provider event (webhooks.events.InboundEvent)."""

    @property
    def provider(self) -> str: ...
    @property
    def scope(self) -> str: ...
    @property
    def key(self) -> str: ...
    @property
    def object_id(self) -> str | None: ...
    @property
    def occurred_at(self) -> dt.datetime | None: ...


@dataclass
class Outcome:
    """What handling an event did; `status` is the inbox status it leaves."""

    status: str  # applied | ignored | unmatched | stale
    detail: str
    tenant_id: int | None = None
    # Customer ids this event linked to a tenant: their unmatched events are handled next.
    linked_customers: list[str] = field(default_factory=list)
    # Stored unmatched events (ids) that waited for what this event recorded: handled next.
    unblocked: list[int] = field(default_factory=list)


def applied(detail: str, tenant_id: int | None = None) -> Outcome:
    return Outcome("applied", detail, tenant_id)


def ignored(detail: str) -> Outcome:
    return Outcome("ignored", detail)


def unmatched(detail: str) -> Outcome:
    return Outcome("unmatched", detail)


def stale(detail: str, tenant_id: int | None = None) -> Outcome:
    return Outcome("stale", detail, tenant_id)


def actor(event: InboundEvent | str) -> str:
    """Who is acting: the webhook event, or a job's own actor (`subs automate` passes one)."""
    if isinstance(event, str):
        return event
    return f"webhook:{event.provider}:{event.key}"[:200]


# ---------------------------------------------------------------------------------------------
# Order


class Ordered(Protocol):
    provider_state_at: dt.datetime | None
    provider_state_rank: int


def is_current(row: Ordered, at: dt.datetime | None, rank: int) -> bool:
    """True when an event at (at, rank) is not older than the state stored on `row`."""
    if row.provider_state_at is None or at is None:
        return True
    return (at, rank) >= (row.provider_state_at, row.provider_state_rank)


def stamp(row: Ordered, at: dt.datetime | None, rank: int) -> None:
    if at is not None:
        row.provider_state_at, row.provider_state_rank = at, rank


def save(session: Session, row: Ordered, new: bool, at: dt.datetime | None, rank: int) -> None:
    """Stamp `row` with the event's order, add it when `new`, and flush."""
    stamp(row, at, rank)
    if new:
        session.add(row)
    session.flush()


# ---------------------------------------------------------------------------------------------
# Who is it about


def tenant_by_ref(session: Session, ref: object) -> Tenant | None:
    """A tenant named by slug or numeric id (checkout's client_reference_id, metadata.tenant)."""
    if isinstance(ref, int) and not isinstance(ref, bool):
        return session.get(Tenant, ref)
    if not isinstance(ref, str) or not ref.strip():
        return None
    text = ref.strip()
    if text.isdigit():
        found = session.get(Tenant, int(text))
        if found is not None:
            return found
    return session.scalar(select(Tenant).where(Tenant.slug == text))


def tenant_for_external(session: Session, provider: str, kind: str, ref: str | None) -> int | None:
    """The tenant a provider-side id belongs to (provider_accounts, then subscriptions)."""
    if not ref:
        return None
    tenant_id = owner_id(session, provider, kind, ref)
    if tenant_id is None and kind == "customer":
        tenant_id = session.scalar(
            select(Subscription.tenant_id)
            .where(Subscription.provider == provider, Subscription.provider_customer_id == ref)
            .limit(1)
        )
    return tenant_id


def plan_by_meta(session: Session, key: str, value: str | None) -> SubscriptionPlan | None:
    """The plan whose metadata `key` (stripePriceId, paystackPlanCode) equals `value`."""
    if not value:
        return None
    for plan in session.scalars(select(SubscriptionPlan).order_by(SubscriptionPlan.id)):
        if (plan.metadata_ or {}).get(key) == value:
            return plan
    return None


def live_subscription(session: Session, tenant_id: int) -> Subscription | None:
    """The tenant's one live (not canceled) subscription, locked (`uq_subscriptions_live_tenant`
    allows one)."""
    return session.scalar(
        select(Subscription)
        .where(Subscription.tenant_id == tenant_id, Subscription.status != "canceled")
        .order_by(Subscription.id)
        .limit(1)
        .with_for_update()
    )


def adopt_or_refuse(
    session: Session, tenant_id: int, provider: str, ref: str | None
) -> Subscription | Outcome | None:
    """Before a webhook records a new subscription `ref` for a tenant: None when the tenant
    has no live subscription; that subscription when it is one of `provider`'s recorded
    without a provider id (an operator's `subs add`), now given `ref`; else an `unmatched`
    outcome naming the live one (one live subscription per tenant)."""
    live = live_subscription(session, tenant_id)
    if live is None:
        return None
    if live.provider == provider and live.provider_subscription_id is None and ref:
        live.provider_subscription_id = ref
        return live
    slug = session.scalar(select(Tenant.slug).where(Tenant.id == tenant_id))
    return unmatched(
        f"tenant {slug} already has live subscription {live.id} ({live.provider} "
        f"{live.provider_subscription_id or 'without a provider id'}, {live.status}); one live "
        f"subscription per tenant: end it (`faithflow subs cancel --tenant {slug} "
        f"--subscription {live.id}`), "
        "then `faithflow webhooks replay`"
    )


def subscription_by_provider_id(
    session: Session, provider: str, provider_subscription_id: str | None
) -> Subscription | None:
    if not provider_subscription_id:
        return None
    return session.scalar(
        select(Subscription)
        .where(
            Subscription.provider == provider,
            Subscription.provider_subscription_id == provider_subscription_id,
        )
        .with_for_update()
    )


# ---------------------------------------------------------------------------------------------
# Subscription state


_SUB_FIELDS = ("status", "past_due_since", "cancel_at_period_end", "canceled_at", "plan_id")


def _sub_state(sub: Subscription) -> dict[str, Any]:
    return jsonable({name: getattr(sub, name) for name in _SUB_FIELDS})


def _audit_sub(
    session: Session,
    sub: Subscription,
    event: InboundEvent | str,
    audit_action: str,
    before: dict[str, Any],
) -> None:
    """Flush, then audit a subscription's change from `before` to its state now."""
    session.flush()
    audit.record(
        session,
        actor=actor(event),
        action=audit_action,
        entity_type="subscription",
        entity_id=sub.id,
        tenant_id=sub.tenant_id,
        before=before,
        after=_sub_state(sub),
    )


def set_subscription_status(
    session: Session,
    sub: Subscription,
    status: str,
    at: dt.datetime,
    event: InboundEvent | str,
    *,
    audit_action: str = "subscription.webhook_update",
) -> list[str]:
    """Move a subscription to `status` with the rules every provider shares; returns notes.

    past_due: `past_due_since` is set when it starts and kept while it lasts. active/trialing:
    the past-due clock stops and a tenant suspended for non-payment is reactivated at once.
    canceled: `canceled_at` is set once. The subscription's dunning case opens (past due) or
    closes (recovered, canceled, suspended) with it (`dunning.cases`).
    """
    refused = one_live.revival_refusal(session, sub, status)
    if refused is not None:  # one live subscription per tenant (billing/live.py)
        raise one_live.SecondLiveSubscription(refused)
    notes: list[str] = []
    before = _sub_state(sub)
    if status != sub.status:
        notes.append(f"subscription {sub.id}: {sub.status} -> {status}")
    sub.status = status
    if status in ("past_due", "unpaid"):
        if sub.past_due_since is None:
            sub.past_due_since = at
    elif status in ("active", "trialing"):
        sub.past_due_since = None
    if status == "canceled" and sub.canceled_at is None:
        sub.canceled_at = at
    if _sub_state(sub) != before:
        _audit_sub(session, sub, event, audit_action, before)
    # The dunning case follows the status: past due opens one, paid/canceled/suspended close it.
    notes += dunning_cases.on_subscription_status(session, sub, at, actor(event))
    if status in ("active", "trialing"):
        notes += reactivate_if_suspended_for_non_payment(session, sub.tenant_id, event)
    return notes


def set_cancel_at_period_end(
    session: Session,
    sub: Subscription,
    value: bool,
    event: InboundEvent | str,
    *,
    audit_action: str = "subscription.webhook_update",
) -> list[str]:
    """Turn renewal off (or on) without touching the status: a church that stops renewing keeps
    what it paid for, and one that owes money still owes it (audited like a status change).
    A provider's event is a `subscription.webhook_update`; an operator's change (`subs cancel
    --at-period-end`) passes `audit_action="subscription.renewal_change"` and its own actor."""
    if sub.cancel_at_period_end == value:
        return []
    before = _sub_state(sub)
    sub.cancel_at_period_end = value
    _audit_sub(session, sub, event, audit_action, before)
    if value:
        return [f"subscription {sub.id}: ends at the period end (stays {sub.status})"]
    return [f"subscription {sub.id}: renews again"]


def advance_period_end(sub: Subscription, *ends: dt.datetime | None) -> list[str]:
    """Move the paid period's end forward to the latest of `ends`; never back (a late, older
    event must not shorten what the church has paid for)."""
    latest = max((end for end in ends if end is not None), default=None)
    if latest is None or (sub.current_period_end is not None and latest <= sub.current_period_end):
        return []
    sub.current_period_end = latest
    return [f"subscription {sub.id}: paid through {latest.isoformat()}"]


def tenants_by_billing_email(session: Session, email: object) -> list[Tenant]:
    """Live tenants whose billing e-mail is `email` (case and surrounding space ignored)."""
    if not isinstance(email, str) or "@" not in email:
        return []
    return list(
        session.scalars(
            select(Tenant)
            .where(
                func.lower(func.trim(Tenant.billing_email)) == email.strip().lower(),
                Tenant.deleted_at.is_(None),
            )
            .order_by(Tenant.id)
            .limit(2)
        )
    )


def reactivate_if_suspended_for_non_payment(
    session: Session, tenant_id: int, event: InboundEvent | str
) -> list[str]:
    tenant = session.get(Tenant, tenant_id)
    if (
        tenant is None
        or tenant.status != "suspended"
        or tenant.suspension_reason != NON_PAYMENT
        or tenant.deleted_at is not None
    ):
        return []
    reactivate_tenant(session, tenant.slug, actor=actor(event))
    return [f"tenant {tenant.slug} reactivated (was suspended for non-payment)"]


def mark_past_due(
    session: Session, sub: Subscription, at: dt.datetime | None, event: InboundEvent
) -> list[str]:
    """A failed payment: the subscription goes past due (its clock kept if already running),
    unless it already holds newer state or has ended."""
    if sub.status == "canceled":
        return [f"subscription {sub.id} has ended; left canceled"]
    if not is_current(sub, at, PAST_DUE_RANK):
        return [f"subscription {sub.id} holds newer state; left {sub.status}"]
    notes = set_subscription_status(session, sub, "past_due", at or utcnow(), event)
    stamp(sub, at, PAST_DUE_RANK)
    return notes


def open_invoice_count(session: Session, sub: Subscription) -> int:
    return (
        session.scalar(
            select(func.count())
            .select_from(Invoice)
            .where(Invoice.subscription_id == sub.id, Invoice.status.in_(OPEN_INVOICE_STATUSES))
        )
        or 0
    )


def settle_if_paid(
    session: Session,
    sub: Subscription,
    at: dt.datetime,
    event: InboundEvent | str,
    *,
    audit_action: str = "subscription.webhook_update",
) -> list[str]:
    """A payment that settles every open invoice returns an overdue subscription to active."""
    if sub.status not in SETTLEABLE_STATUSES:
        return []
    remaining = open_invoice_count(session, sub)
    if remaining:
        return [f"subscription {sub.id} still has {remaining} open invoice(s)"]
    return set_subscription_status(session, sub, "active", at, event, audit_action=audit_action)


# ---------------------------------------------------------------------------------------------
# Invoices, payments, disputes


def get_or_new(session: Session, model: Any, **key: Any) -> tuple[Any, bool]:
    """The row with this natural key, locked for the transaction, or a new unsaved one."""
    conditions = [getattr(model, name) == value for name, value in key.items()]
    row = session.scalar(select(model).where(*conditions).with_for_update())
    if row is not None:
        return row, False
    return model(**key), True


def invoice_for(session: Session, provider: str, invoice_id: str) -> tuple[Invoice, bool]:
    row, new = get_or_new(session, Invoice, provider=provider, provider_invoice_id=invoice_id)
    return row, new


def payment_for(session: Session, provider: str, payment_id: str) -> tuple[Payment, bool]:
    row, new = get_or_new(session, Payment, provider=provider, provider_payment_id=payment_id)
    return row, new


def dispute_for(session: Session, provider: str, dispute_id: str) -> tuple[Dispute, bool]:
    row, new = get_or_new(session, Dispute, provider=provider, provider_dispute_id=dispute_id)
    return row, new


@dataclass(frozen=True)
class DisputeState:
    """What a dispute event says, in our columns (each provider's handler reads its shape)."""

    tenant_id: int
    charge_ref: str | None
    payment_id: int | None
    invoice_id: int | None
    # None: the event does not say (the stored value is kept; a new row gets the default)
    amount_minor: int | None
    currency: str | None
    reason: str | None
    status: str | None
    evidence_due_by: dt.datetime | None
    closed_at: dt.datetime | None  # set by the event that closes it
    extra: dict[str, Any] = field(default_factory=dict)  # merged into metadata
    default_currency: str = "USD"
    default_status: str = "needs_response"


_T = TypeVar("_T")


def _kept(sent: _T | None, stored: _T | None, default: _T) -> _T:
    if sent is not None:
        return sent
    return stored if stored is not None else default


def dispute_values(dispute: Dispute, scope: str, state: DisputeState) -> dict[str, Any]:
    """The columns writing `state` sets on `dispute` (a new, unsaved one or a stored one)."""
    values: dict[str, Any] = {
        "tenant_id": state.tenant_id,
        "scope": scope,
        "charge_ref": state.charge_ref,
        "payment_id": state.payment_id or dispute.payment_id,
        "invoice_id": state.invoice_id or dispute.invoice_id,
        # What the event leaves out (None) keeps the stored value; a new row gets a default.
        "amount_minor": _kept(state.amount_minor, dispute.amount_minor, 0),
        "currency": _kept(state.currency, dispute.currency, state.default_currency),
        "reason": state.reason or dispute.reason,
        "status": _kept(state.status, dispute.status, state.default_status)[:64],
        "evidence_due_by": state.evidence_due_by or dispute.evidence_due_by,
    }
    if state.closed_at is not None:
        values["closed_at"] = dispute.closed_at or state.closed_at
    if state.extra:
        values["metadata_"] = {**(dispute.metadata_ or {}), **state.extra}
    return values


def dispute_changes(stored: Dispute, scope: str, state: DisputeState) -> list[str]:
    """The columns writing `state` would change on a stored dispute (read-only: for the
    `disputes monitor` pull, which writes only what changed)."""
    values = dispute_values(stored, scope, state)
    return sorted(name for name, value in values.items() if getattr(stored, name) != value)


def record_dispute(
    session: Session, event: InboundEvent, state: DisputeState | Outcome, rank: int
) -> Outcome:
    """A dispute event of either provider: its state written, or why it could not be (the
    `Outcome` its handler's `dispute_state` returned, e.g. unmatched)."""
    if isinstance(state, Outcome):
        return state
    return write_dispute(session, event, event.occurred_at, rank, state)


def write_dispute(
    session: Session, event: InboundEvent, at: dt.datetime | None, rank: int, state: DisputeState
) -> Outcome:
    """Record a dispute's state (either scope) unless newer state is already stored."""
    dispute, new = dispute_for(session, event.provider, str(event.object_id))
    if not new and not is_current(dispute, at, rank):
        return stale(f"dispute {dispute.id} already holds newer state", state.tenant_id)
    before = None if new else dispute.status
    for name, value in dispute_values(dispute, event.scope, state).items():
        setattr(dispute, name, value)
    stamp(dispute, at, rank)
    if new:
        session.add(dispute)
    session.flush()
    change = "opened" if before is None else f"{before} -> {dispute.status}"
    return applied(f"dispute {dispute.id} ({event.scope}): {change}", state.tenant_id)


def timestamp(value: object) -> dt.datetime | None:
    """Stripe's epoch seconds → aware UTC."""
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        return dt.datetime.fromtimestamp(value, dt.UTC)
    return None


# An event writes only the fields it carries (issue 16): a field it leaves out keeps the
# stored value (a signed `invoice.paid` without `period_end` must not null the period end);
# one it sends as null writes NULL where the column allows it (`trial_end: null`: no trial);
# one we cannot read (a string where a number belongs) is treated as left out.


def carried_time(
    obj: Mapping[str, Any],
    name: str,
    stored: dt.datetime | None,
    read: Callable[[object], dt.datetime | None] = timestamp,
) -> dt.datetime | None:
    """A nullable time field: `stored` when absent or unreadable, None when sent as null."""
    if name not in obj:
        return stored
    value = obj[name]
    if value is None:
        return None
    return read(value) or stored


def sent_minor(value: object) -> int | None:
    """An amount the event sends (an integer), or None when it sends none."""
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def sent_currency(value: object) -> str | None:
    """A currency code the event sends, or None when it sends none."""
    return value.upper() if isinstance(value, str) and len(value) == 3 else None


def carried_minor(obj: Mapping[str, Any], name: str, stored: int | None) -> int:
    """An amount in minor units: `stored` (0 for a new row) unless the event sends an integer."""
    sent = sent_minor(obj.get(name))
    return sent if sent is not None else stored or 0


def carried_currency(obj: Mapping[str, Any], name: str, stored: str | None, default: str) -> str:
    """A currency code: `stored` (`default` for a new row) unless the event sends one."""
    return sent_currency(obj.get(name)) or stored or default


def minor(value: object) -> int:
    """An amount in minor units as sent (integers); anything else counts as 0."""
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def currency(value: object, default: str = "USD") -> str:
    return value.upper()[:3] if isinstance(value, str) and len(value) == 3 else default
