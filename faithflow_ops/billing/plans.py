"""Subscription plans: exact prices in minor units, provider ids in metadata; changes audited."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from faithflow_ops import audit
from faithflow_ops.clock import jsonable
from faithflow_ops.errors import NotFound, UserError, one_of
from faithflow_ops.models import Subscription, SubscriptionPlan
from faithflow_ops.models.billing import PLAN_INTERVALS
from faithflow_ops.tenancy import validation
from faithflow_ops.tenancy.records import column_values

_CODE = re.compile(r"^[a-z0-9][a-z0-9._-]{1,63}$")
_AMOUNT = re.compile(r"^[0-9]+(?:\.[0-9]+)?$")
MAX_AMOUNT_MINOR = 10**15  # far above any plan price, far below BIGINT


@dataclass(frozen=True)
class MetadataChange:
    plan: SubscriptionPlan
    set_keys: list[str]
    unset_keys: list[str]
    missing_keys: list[str]  # asked to unset but were not there

    @property
    def changed(self) -> bool:
        return bool(self.set_keys or self.unset_keys)


def parse_amount(text: str, currency: str) -> int:
    """A price in major units (`49.99`) as exact integer minor units (`4999`).

    The currency decides the minor unit: 2 digits for NGN, GHS, KES, USD, GBP; none for JPY;
    more decimals than the currency has are refused, never rounded.
    """
    code = validation.currency(currency)
    exponent = validation.CURRENCY_EXPONENTS[code]
    raw = text.strip()
    if not _AMOUNT.match(raw):
        raise UserError(
            f"amount {text!r} is not a price; write it in major units with a dot, e.g. 49.99"
        )
    amount = Decimal(raw)
    decimals = len(raw.partition(".")[2].rstrip("0"))
    if decimals > exponent:
        allowed = "no decimals" if exponent == 0 else f"at most {exponent} decimals"
        raise UserError(f"amount {text!r} has too many decimals: {code} takes {allowed}")
    minor = int(amount.scaleb(exponent))
    if minor >= MAX_AMOUNT_MINOR:
        raise UserError(f"amount {text!r} {code} is implausibly large; check the price")
    return minor


def format_amount(minor: int, currency: str) -> str:
    """Minor units back to a major-unit string: 4999 USD → "49.99"."""
    exponent = validation.CURRENCY_EXPONENTS.get(currency, 2)
    return str(Decimal(minor).scaleb(-exponent).quantize(Decimal(1).scaleb(-exponent)))


def plan_code(value: str) -> str:
    raw = value.strip()
    if not _CODE.match(raw):
        raise UserError(
            f"plan code {value!r} is not valid: use 2-64 lowercase letters, digits, '.', '_' "
            "or '-', starting with a letter or digit (e.g. growth-monthly-ngn)"
        )
    return raw


def plan_doc(plan: SubscriptionPlan) -> dict[str, Any]:
    doc = column_values(plan)
    doc["amount"] = format_amount(plan.amount_minor, plan.currency)
    return doc


def get_plan(session: Session, code: str) -> SubscriptionPlan:
    plan = session.scalar(select(SubscriptionPlan).where(SubscriptionPlan.code == code.strip()))
    if plan is None:
        raise NotFound(f"no plan with code {code!r}; see `faithflow plans list`")
    return plan


def list_plans(session: Session) -> list[SubscriptionPlan]:
    query = select(SubscriptionPlan).order_by(
        SubscriptionPlan.tier_rank, SubscriptionPlan.currency, SubscriptionPlan.code
    )
    return list(session.scalars(query))


def plan_details(session: Session, plan: SubscriptionPlan) -> dict[str, Any]:
    """`plans show`: the plan's columns and its subscriptions counted by status."""
    doc = plan_doc(plan)
    rows = session.execute(
        select(Subscription.status, func.count())
        .where(Subscription.plan_id == plan.id)
        .group_by(Subscription.status)
        .order_by(Subscription.status)
    )
    doc["subscriptions"] = {status: count for status, count in rows}
    return doc


def add_plan(
    session: Session,
    *,
    code: str,
    name: str,
    amount: str,
    currency: str,
    interval: str,
    actor: str,
    tier_rank: int = 0,
    metadata: Mapping[str, Any] | None = None,
) -> SubscriptionPlan:
    """Create an active plan; `amount` is in major units (see `parse_amount`)."""
    if tier_rank < 0:
        raise UserError(f"tier {tier_rank} must be 0 or more")
    code = plan_code(code)
    plan = SubscriptionPlan(
        code=code,
        name=validation.name(name),
        amount_minor=parse_amount(amount, currency),
        currency=validation.currency(currency),
        interval=one_of("interval", interval, PLAN_INTERVALS),
        tier_rank=tier_rank,
        active=True,
        metadata_=dict(metadata or {}),
    )
    if session.scalar(select(SubscriptionPlan.id).where(SubscriptionPlan.code == code)):
        raise UserError(f"a plan with code {code!r} already exists; choose another code")
    session.add(plan)
    session.flush()
    audit.record(
        session,
        actor=actor,
        action="plan.add",
        entity_type="subscription_plan",
        entity_id=plan.id,
        after=jsonable(plan_doc(plan)),
    )
    return plan


def set_plan_metadata(
    session: Session,
    code: str,
    *,
    actor: str,
    values: Mapping[str, Any],
    unset: Sequence[str] = (),
) -> MetadataChange:
    """Set and remove metadata keys; keys already holding the value are left alone."""
    if not values and not unset:
        raise UserError("nothing to change: give key=value pairs to set or keys to unset")
    both = sorted(set(values) & set(unset))
    if both:
        raise UserError(f"{', '.join(both)}: set and unset at once; choose one")
    plan = get_plan(session, code)
    before = dict(plan.metadata_ or {})
    after = dict(before)
    set_keys = [key for key, value in values.items() if before.get(key, object()) != value]
    for key in set_keys:
        after[key] = values[key]
    unset_keys = [key for key in unset if key in before]
    missing = [key for key in unset if key not in before]
    for key in unset_keys:
        del after[key]
    change = MetadataChange(plan, set_keys, unset_keys, missing)
    if change.changed:
        plan.metadata_ = after
        session.flush()
        touched = set_keys + unset_keys
        audit.record(
            session,
            actor=actor,
            action="plan.set_meta",
            entity_type="subscription_plan",
            entity_id=plan.id,
            before={key: before[key] for key in touched if key in before},
            after={key: after[key] for key in touched if key in after},
        )
    return change
