"""One live subscription per tenant (issue 16).

A subscription is live until it is canceled; a tenant has at most one. The database holds the
rule (`uq_subscriptions_live_tenant`, migration 0011); the code says it first, in words, on
every path that could make a second one:

- `subs add` refuses (billing/subscriptions.py);
- a webhook that would record a new subscription adopts the tenant's hand-recorded one or
  waits `unmatched` naming the live one (`lifecycle.adopt_or_refuse`);
- a webhook that would bring a canceled subscription back to life while its tenant has
  another live one waits `unmatched` (`revival_refusal`), and every other status change
  meets the same check in `lifecycle.set_subscription_status` (`SecondLiveSubscription`);
- two writers racing past those checks meet the index: `is_live_conflict` tells its
  IntegrityError from any other, so it is reported in words too.
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from faithflow_ops.errors import UserError
from faithflow_ops.models import Subscription, Tenant
from faithflow_ops.models.billing import LIVE_SUBSCRIPTION_INDEX


class SecondLiveSubscription(UserError):
    """A change that would give a tenant a second live subscription."""


def other_live(session: Session, sub: Subscription) -> Subscription | None:
    """The tenant's live subscription other than `sub`, if any."""
    return session.scalar(
        select(Subscription)
        .where(
            Subscription.tenant_id == sub.tenant_id,
            Subscription.id != sub.id,
            Subscription.status != "canceled",
        )
        .order_by(Subscription.id)
        .limit(1)
    )


def describe(sub: Subscription) -> str:
    """`12 (stripe sub_…, active)`: a subscription as a message names it."""
    ref = sub.provider_subscription_id or "without a provider id"
    return f"{sub.id} ({sub.provider} {ref}, {sub.status})"


def revival_refusal(session: Session, sub: Subscription, status: str) -> str | None:
    """Why `sub` cannot move to `status`: it is canceled, `status` is live, and its tenant
    already has another live subscription. None when the change keeps one live at most."""
    if sub.status != "canceled" or status == "canceled" or sub.id is None:
        return None
    other = other_live(session, sub)
    if other is None:
        return None
    slug = session.scalar(select(Tenant.slug).where(Tenant.id == sub.tenant_id))
    return (
        f"subscription {describe(sub)} would become {status}, but tenant {slug} already has "
        f"live subscription {describe(other)}; a tenant has one live subscription. If "
        f"{sub.id} is the one that counts, end {other.id} (`faithflow subs cancel --tenant "
        f"{slug} --subscription {other.id}`), then `faithflow webhooks replay`"
    )


def is_live_conflict(exc: BaseException) -> bool:
    """Whether a database error is the one-live-subscription index refusing a row (Postgres
    names the index; SQLite names the column, and tenant_id is unique nowhere else)."""
    text = str(getattr(exc, "orig", None) or exc)
    return LIVE_SUBSCRIPTION_INDEX in text or "subscriptions.tenant_id" in text


RACE = (
    "another live subscription for this tenant was recorded at the same moment "
    f"({LIVE_SUBSCRIPTION_INDEX}: one live subscription per tenant)"
)
