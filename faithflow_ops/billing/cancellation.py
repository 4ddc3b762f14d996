"""Cancel a tenant's subscription (`faithflow subs cancel`): at the provider first, then
recorded here through the state machine's audited setters (billing/lifecycle.py).

Decisions an operator should know:

- Which subscription: the tenant's live one (any status but `canceled`); `--subscription ID`
  when it has more than one.
- Stripe: now is `DELETE /v1/subscriptions/{id}` (it ends at once); `--at-period-end` is
  `POST /v1/subscriptions/{id}` with `cancel_at_period_end=true` (it runs to the end of the paid
  period; the webhook that ends it marks it canceled then).
- Paystack has one call, `POST /subscription/disable` (code and email token): the subscription
  stops renewing. Now records it canceled here; `--at-period-end` records "ends at the period
  end" and leaves the status alone. Paystack refunds nothing either way.
- A subscription with no provider id (recorded by hand) is canceled here only, with a note.
- Audit: one `subscription.cancel` row per command (mode, provider calls, reason, status
  before and after) besides the state change the setters record.
- The provider is called before anything is written: a provider failure leaves our record as
  it was (exit with the provider's code), and the command can simply be run again.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from faithflow_ops import audit
from faithflow_ops.billing import lifecycle
from faithflow_ops.billing.plan_change_rules import (
    RECOVER_ID,
    SECRET_SETTINGS,
    paystack_email_token,
)
from faithflow_ops.billing.subscriptions import subscription_doc
from faithflow_ops.clock import jsonable
from faithflow_ops.errors import NotFound, UserError
from faithflow_ops.models import Subscription
from faithflow_ops.providers.ids import check
from faithflow_ops.tenancy.tenants import get_tenant

if TYPE_CHECKING:
    from faithflow_ops.config import Settings
    from faithflow_ops.db import Database

_RECOVER = RECOVER_ID


@dataclass(frozen=True)
class CancelPlan:
    """What a cancellation will do, settled before any call leaves the machine."""

    subscription_id: int
    tenant: str
    provider: str
    provider_subscription_id: str | None
    email_token: str | None
    at_period_end: bool
    calls: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class CancelResult:
    doc: dict[str, Any]  # the subscription after (or, on a dry run, as it is)
    calls: list[str]  # provider calls made (or that would be made)
    notes: list[str]


def _live_subscription(
    session: Session, tenant_id: int, slug: str, subscription_id: int | None
) -> Subscription:
    subs = list(
        session.scalars(
            select(Subscription)
            .where(Subscription.tenant_id == tenant_id, Subscription.status != "canceled")
            .order_by(Subscription.id)
        )
    )
    if subscription_id is not None:
        chosen = [s for s in subs if s.id == subscription_id]
        if not chosen:
            raise NotFound(
                f"tenant {slug} has no live subscription {subscription_id}; see "
                f"`faithflow subs list --tenant {slug}`"
            )
        return chosen[0]
    if not subs:
        raise NotFound(
            f"tenant {slug} has no live subscription to cancel; see "
            f"`faithflow subs list --tenant {slug}`"
        )
    if len(subs) > 1:
        ids = ", ".join(str(s.id) for s in subs)
        raise UserError(
            f"tenant {slug} has {len(subs)} live subscriptions ({ids}); choose one with "
            "--subscription ID"
        )
    return subs[0]


def prepare(
    session: Session,
    settings: Settings,
    *,
    tenant: str,
    at_period_end: bool,
    subscription_id: int | None = None,
) -> CancelPlan:
    """Every check, no call and no write: what `cancel` would do, or the UserError to fix."""
    owner = get_tenant(session, tenant)
    sub = _live_subscription(session, owner.id, owner.slug, subscription_id)
    if at_period_end and sub.cancel_at_period_end:
        raise UserError(
            f"subscription {sub.id} of {owner.slug} already ends at the period end; to end it "
            "now, run again without --at-period-end"
        )
    code = check(sub.provider, "subscription", sub.provider_subscription_id).value
    calls: list[str] = []
    notes: list[str] = []
    token = None
    if code is None:
        notes.append(
            f"subscription {sub.id} has no {sub.provider} subscription id: canceled here only "
            f"(if {sub.provider} bills it, cancel it there too; {_RECOVER})"
        )
    elif sub.provider == "stripe":
        calls.append(
            f"POST /v1/subscriptions/{code} cancel_at_period_end=true"
            if at_period_end
            else f"DELETE /v1/subscriptions/{code}"
        )
    else:
        token = paystack_email_token(sub, code)
        calls.append(f"POST /subscription/disable code={code}")
        notes.append("Paystack refunds nothing on a disable; the paid period is not returned")
    if code is not None:
        settings.require(*SECRET_SETTINGS[sub.provider])
    return CancelPlan(
        subscription_id=sub.id,
        tenant=owner.slug,
        provider=sub.provider,
        provider_subscription_id=code,
        email_token=token,
        at_period_end=at_period_end,
        calls=calls,
        notes=notes,
    )


def _call_provider(settings: Settings, plan: CancelPlan, now: dt.datetime) -> None:
    code = plan.provider_subscription_id
    if code is None:
        return
    if plan.provider == "stripe":
        from faithflow_ops.providers.stripe import StripeAPI

        with StripeAPI(settings) as stripe_api:
            if plan.at_period_end:
                stripe_api.cancel_at_period_end(code, now=now)
            else:
                stripe_api.cancel_subscription(code)
    else:
        from faithflow_ops.providers.paystack import PaystackAPI

        assert plan.email_token is not None
        with PaystackAPI(settings) as paystack_api:
            paystack_api.disable_subscription(code, plan.email_token)


def cancel(
    db: Database,
    settings: Settings,
    *,
    tenant: str,
    actor: str,
    now: dt.datetime,
    at_period_end: bool = False,
    dry_run: bool = False,
    subscription_id: int | None = None,
    reason: str | None = None,
) -> CancelResult:
    """Cancel the tenant's subscription at the provider, then record it (see the module)."""
    with db.read_session() as session:
        plan = prepare(
            session,
            settings,
            tenant=tenant,
            at_period_end=at_period_end,
            subscription_id=subscription_id,
        )
        if dry_run:
            doc = subscription_doc(_get(session, plan.subscription_id))
            return CancelResult(doc, plan.calls, plan.notes)
    _call_provider(settings, plan, now)  # a ProviderError leaves our record untouched
    notes = list(plan.notes)
    with db.session() as session:
        sub = session.scalar(
            select(Subscription).where(Subscription.id == plan.subscription_id).with_for_update()
        )
        assert sub is not None
        before = jsonable(subscription_doc(sub))
        if at_period_end:
            notes += lifecycle.set_cancel_at_period_end(
                session, sub, True, actor, audit_action="subscription.renewal_change"
            )
        else:
            notes += lifecycle.set_subscription_status(
                session, sub, "canceled", now, actor, audit_action="subscription.status_change"
            )
        session.flush()
        after = jsonable(subscription_doc(sub))
        audit.record(
            session,
            actor=actor,
            action="subscription.cancel",
            entity_type="subscription",
            entity_id=sub.id,
            tenant_id=sub.tenant_id,
            before={key: before[key] for key in ("status", "cancel_at_period_end")},
            after={
                "status": after["status"],
                "cancel_at_period_end": after["cancel_at_period_end"],
                "at_period_end": at_period_end,
                "provider_calls": plan.calls,
                "reason": reason,
            },
        )
        doc = subscription_doc(sub)
    return CancelResult(doc, plan.calls, notes)


def _get(session: Session, subscription_id: int) -> Subscription:
    sub = session.get(Subscription, subscription_id)
    assert sub is not None
    return sub
