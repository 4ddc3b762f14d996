"""Subscriptions as operators see them: list, show, and record one by hand — each change audited."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Select, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, joinedload

from faithflow_ops import audit
from faithflow_ops.billing import identifiers
from faithflow_ops.billing.identifiers import Kind
from faithflow_ops.billing.live import RACE, is_live_conflict
from faithflow_ops.billing.plans import format_amount, get_plan
from faithflow_ops.clock import jsonable
from faithflow_ops.db import utcnow
from faithflow_ops.errors import NotFound, UserError, one_of
from faithflow_ops.models import Invoice, Subscription
from faithflow_ops.models.billing import PROVIDERS, SUBSCRIPTION_STATUSES
from faithflow_ops.tenancy.records import column_values
from faithflow_ops.tenancy.tenants import ensure_writable, get_tenant

# Statuses that mean "payment is overdue": recording one starts the dunning clock now, unless
# the caller says when it really started.
_OVERDUE = ("past_due", "unpaid", "suspended")


@dataclass(frozen=True)
class Page:
    subscriptions: list[Subscription]
    total: int  # matching rows, however many were returned


def subscription_doc(sub: Subscription) -> dict[str, Any]:
    """Columns by name, plus `tenant` (slug) and `plan` (code)."""
    doc = column_values(sub)
    doc["tenant"] = sub.tenant.slug
    doc["plan"] = sub.plan.code
    return doc


def _with_refs(query: Select[tuple[Subscription]]) -> Select[tuple[Subscription]]:
    return query.options(joinedload(Subscription.tenant), joinedload(Subscription.plan))


def list_subscriptions(
    session: Session,
    *,
    status: str | None = None,
    tenant: str | None = None,
    provider: str | None = None,
    limit: int = 100,
) -> Page:
    """Subscriptions oldest first, filtered; `total` counts all that match."""
    if limit < 1:
        raise UserError(f"limit {limit} must be 1 or more")
    conditions = []
    if status is not None:
        conditions.append(Subscription.status == one_of("status", status, SUBSCRIPTION_STATUSES))
    if provider is not None:
        conditions.append(Subscription.provider == one_of("provider", provider, PROVIDERS))
    if tenant is not None:
        conditions.append(Subscription.tenant_id == get_tenant(session, tenant).id)
    total = session.scalar(select(func.count()).select_from(Subscription).where(*conditions)) or 0
    query = _with_refs(select(Subscription).where(*conditions).order_by(Subscription.id))
    return Page(list(session.scalars(query.limit(limit))), total)


def get_subscription(session: Session, subscription_id: int) -> Subscription:
    sub = session.scalar(_with_refs(select(Subscription).where(Subscription.id == subscription_id)))
    if sub is None:
        raise NotFound(f"no subscription with id {subscription_id}; see `faithflow subs list`")
    return sub


def subscription_details(session: Session, sub: Subscription) -> dict[str, Any]:
    """`subs show`: the subscription and its invoices, newest first."""
    doc = subscription_doc(sub)
    invoices = session.scalars(
        select(Invoice)
        .where(Invoice.subscription_id == sub.id)
        .order_by(Invoice.created_at.desc(), Invoice.id.desc())
    )
    doc["invoices"] = [
        {
            "id": inv.id,
            "provider_invoice_id": inv.provider_invoice_id,
            "status": inv.status,
            "amount_due": format_amount(inv.amount_due_minor, inv.currency, inv.provider),
            "amount_paid": format_amount(inv.amount_paid_minor, inv.currency, inv.provider),
            "currency": inv.currency,
            "due_at": inv.due_at,
            "paid_at": inv.paid_at,
        }
        for inv in invoices
    ]
    return doc


def _provider_id(provider: str, kind: Kind, value: str | None) -> str | None:
    """A provider id typed by an operator, checked by the provider's format."""
    if value is None:
        return None
    checked = identifiers.check(provider, kind, value)
    if checked.value is None:
        label = identifiers.FORMATS[(provider, kind)].label
        raise UserError(f"{label} {value!r} is not valid: {checked.problem}")
    return checked.value


def _refuse_second_live(session: Session, tenant_id: int, slug: str) -> None:
    """One live (not canceled) subscription per tenant (`uq_subscriptions_live_tenant`)."""
    live = session.scalar(
        select(Subscription)
        .where(Subscription.tenant_id == tenant_id, Subscription.status != "canceled")
        .order_by(Subscription.id)
        .limit(1)
    )
    if live is None:
        return
    ref = f" {live.provider_subscription_id}" if live.provider_subscription_id else ""
    raise UserError(
        f"tenant {slug!r} already has live subscription {live.id} ({live.provider}{ref}, "
        f"{live.status}); a tenant has one live subscription: change its plan with "
        f"`faithflow subs change-plan`, or end it first with `faithflow subs cancel --tenant "
        f"{slug}` and then add the new one"
    )


def add_subscription(
    session: Session,
    *,
    tenant: str,
    plan: str,
    provider: str,
    actor: str,
    status: str = "active",
    provider_subscription_id: str | None = None,
    provider_customer_id: str | None = None,
    trial_end: dt.datetime | None = None,
    current_period_end: dt.datetime | None = None,
    past_due_since: dt.datetime | None = None,
    metadata: Mapping[str, Any] | None = None,
    now: dt.datetime | None = None,
) -> Subscription:
    """Record a subscription the provider already has (or a manual one) for a tenant."""
    now = now or utcnow()
    status = one_of("status", status, SUBSCRIPTION_STATUSES)
    provider = one_of("provider", provider, PROVIDERS)
    provider_subscription_id = _provider_id(provider, "subscription", provider_subscription_id)
    provider_customer_id = _provider_id(provider, "customer", provider_customer_id)
    if past_due_since is not None and status not in _OVERDUE:
        raise UserError(
            f"a past-due time only fits an overdue status ({', '.join(_OVERDUE)}), not {status}"
        )
    if status == "trialing" and trial_end is None:
        raise UserError("a trialing subscription needs its trial end (--trial-end)")
    owner = get_tenant(session, tenant)
    ensure_writable(owner, "given a subscription")
    chosen = get_plan(session, plan)
    if not chosen.active:
        raise UserError(
            f"plan {chosen.code} is not active (retired), so no new subscription can be "
            "recorded on it; choose an active plan (`faithflow plans list`)"
        )
    if provider_subscription_id is not None:
        taken = session.scalar(
            select(Subscription.id).where(
                Subscription.provider == provider,
                Subscription.provider_subscription_id == provider_subscription_id,
            )
        )
        if taken is not None:
            raise UserError(
                f"{provider} subscription {provider_subscription_id!r} is already recorded "
                f"as subscription {taken}; see `faithflow subs show {taken}`"
            )
    if status != "canceled":
        _refuse_second_live(session, owner.id, owner.slug)
    sub = Subscription(
        tenant=owner,
        plan=chosen,
        provider=provider,
        provider_subscription_id=provider_subscription_id,
        provider_customer_id=provider_customer_id,
        status=status,
        trial_end=trial_end,
        current_period_start=None,
        current_period_end=current_period_end,
        cancel_at_period_end=False,
        past_due_since=past_due_since or (now if status in _OVERDUE else None),
        canceled_at=now if status == "canceled" else None,
        metadata_=dict(metadata or {}),
    )
    session.add(sub)
    slug = owner.slug  # read now: a failed flush expires every loaded row
    try:
        session.flush()
    except IntegrityError as exc:  # another writer recorded one since the check above
        if not is_live_conflict(exc):
            raise
        raise UserError(
            f"tenant {slug!r}: {RACE}; see `faithflow subs list --tenant {slug}`"
        ) from None
    audit.record(
        session,
        actor=actor,
        action="subscription.add",
        entity_type="subscription",
        entity_id=sub.id,
        tenant_id=owner.id,
        after=jsonable(subscription_doc(sub)),
    )
    return sub
