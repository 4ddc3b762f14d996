"""Subscription plans: exact prices in minor units, provider ids in metadata; changes audited."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from faithflow_ops import audit, money
from faithflow_ops.billing import identifiers
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
    exponent = validation.currency_exponent(code)
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


def format_amount(minor: int, currency: str, provider: str | None = None) -> str:
    """Minor units back to a major-unit string, the `amount` of `--json` documents:
    4999 USD → "49.99", 7900 JPY → "7900" (`provider`: an amount as that provider counts it,
    see `faithflow_ops.money`). Shown to people: `faithflow_ops.money.format_money`."""
    if currency.strip().upper() not in money.ISO_EXPONENTS:
        return str(Decimal(minor).scaleb(-2).quantize(Decimal("0.01")))
    return str(money.major(minor, currency, provider))


def plan_code(value: str) -> str:
    raw = value.strip()
    if not _CODE.match(raw):
        raise UserError(
            f"plan code {value!r} is not valid: use 2-64 lowercase letters, digits, '.', '_' "
            "or '-', starting with a letter or digit (e.g. growth-monthly-ngn)"
        )
    return raw


def _billable(minor: int, text: str) -> int:
    """A plan's price is charged through a provider: zero is refused (a free tenant needs no
    plan and no subscription)."""
    if minor == 0:
        raise UserError(
            f"amount {text!r} is zero: free plans are not billed through a provider, so they "
            "are not plans here; give the price the plan is sold at, e.g. --amount 49.99"
        )
    return minor


def check_plan_ids(metadata: Mapping[str, Any]) -> None:
    """Refuse provider ids in plan metadata that are not ids (`stripePriceId=bogus`): checkout
    and plan changes would send them to the provider."""
    problems = identifiers.plan_id_problems(metadata)
    if problems:
        raise UserError("; ".join(problems))


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
    amount_minor = _billable(parse_amount(amount, currency), amount)
    check_plan_ids(metadata or {})
    plan = SubscriptionPlan(
        code=code,
        name=validation.name(name),
        amount_minor=amount_minor,
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
    check_plan_ids({key: values[key] for key in set_keys})
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


# ---------------------------------------------------------------------------------------------
# Retiring a plan and changing a price: a plan's price never changes under its subscribers


def deactivate_plan(session: Session, code: str, *, actor: str) -> tuple[SubscriptionPlan, bool]:
    """Stop selling a plan: checkout, plan changes and `subs add` refuse it from now on; its
    subscriptions are untouched (they renew as before). Returns (plan, whether it changed)."""
    plan = get_plan(session, code)
    if not plan.active:
        return plan, False
    plan.active = False
    session.flush()
    audit.record(
        session,
        actor=actor,
        action="plan.deactivate",
        entity_type="subscription_plan",
        entity_id=plan.id,
        before={"active": True},
        after={"active": False},
    )
    return plan, True


_VERSION = re.compile(r"^(?P<base>.+)-v(?P<n>[0-9]+)$")


def next_version_code(session: Session, code: str) -> str:
    """`growth` → `growth-v2`, `growth-v2` → `growth-v3`: the first free version number."""
    match = _VERSION.match(code)
    base, n = (match["base"], int(match["n"])) if match else (code, 1)
    taken = set(session.scalars(select(SubscriptionPlan.code)))
    n += 1
    while f"{base}-v{n}" in taken:
        n += 1
    return plan_code(f"{base}-v{n}")


@dataclass(frozen=True)
class Reprice:
    old: SubscriptionPlan
    new: SubscriptionPlan
    subscribers: int  # subscriptions left on the old plan (and its old price)
    missing_ids: list[str]  # provider-id keys the new version lacks (old ones name the old price)


def reprice_plan(
    session: Session,
    code: str,
    *,
    amount: str,
    actor: str,
    new_code: str | None = None,
    metadata: Mapping[str, Any] | None = None,
) -> Reprice:
    """A price change as a new plan version: a copy of the plan (name, currency, interval,
    tier, metadata other than the provider ids) at the new price, under `new_code` (default:
    the next `-vN`), active; the old plan is deactivated. Subscribers stay on the old plan at
    the old price until they change plan. The provider ids of the old price are not copied:
    a new price is a new Stripe price / Paystack plan, given in `metadata` or set later."""
    old = get_plan(session, code)
    if not old.active:
        raise UserError(
            f"plan {old.code} is not active; reprice the plan that is sold now "
            "(`faithflow plans list`)"
        )
    minor = _billable(parse_amount(amount, old.currency), amount)
    if minor == old.amount_minor:
        raise UserError(
            f"plan {old.code} already costs {money.format_money(minor, old.currency)}; "
            "nothing to change"
        )
    code_new = plan_code(new_code) if new_code else next_version_code(session, old.code)
    given = dict(metadata or {})
    check_plan_ids(given)
    carried = {
        k: v for k, v in (old.metadata_ or {}).items() if k not in identifiers.PLAN_ID_FORMATS
    }
    new = add_plan(
        session,
        code=code_new,
        name=old.name,
        amount=format_amount(minor, old.currency),
        currency=old.currency,
        interval=old.interval,
        tier_rank=old.tier_rank,
        metadata={**carried, **given, "previousVersion": old.code},
        actor=actor,
    )
    deactivate_plan(session, old.code, actor=actor)
    audit.record(
        session,
        actor=actor,
        action="plan.reprice",
        entity_type="subscription_plan",
        entity_id=old.id,
        before={"code": old.code, "amount_minor": old.amount_minor},
        after={"code": new.code, "amount_minor": new.amount_minor},
    )
    subscribers = (
        session.scalar(
            select(func.count())
            .select_from(Subscription)
            .where(Subscription.plan_id == old.id, Subscription.status != "canceled")
        )
        or 0
    )
    missing = [
        key
        for key in identifiers.PLAN_ID_FORMATS
        if key in (old.metadata_ or {}) and key not in given
    ]
    return Reprice(old, new, subscribers, missing)
