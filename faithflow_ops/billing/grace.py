"""How long a subscription may stay past due before `subs automate` suspends the tenant for
non-payment: the tenant's `billing_grace_days`, else the plan's `graceDays` metadata, else the
default. `dunning` reads the plan's grace too, to time its notices."""

from __future__ import annotations

from collections.abc import Mapping
from typing import NamedTuple

DEFAULT_GRACE_DAYS = 14
GRACE_KEY = "graceDays"  # plan metadata


def plan_grace(metadata: object) -> int | None:
    """A plan's `graceDays`: a whole number of days, 0 or more (anything else is ignored)."""
    if not isinstance(metadata, Mapping):
        return None
    value = metadata.get(GRACE_KEY)
    if isinstance(value, bool):
        return None
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value.strip())
    if isinstance(value, int) and 0 <= value <= 3650:
        return value
    return None


class PlanGrace(NamedTuple):
    """A plan's code and its `graceDays` (None when unset or not a whole number of days)."""

    code: str
    grace_days: int | None


class Grace(NamedTuple):
    """The grace a past-due subscription gets, and where it comes from."""

    days: int
    source: str  # tenant | plan | default

    def describe(self) -> str:
        return f"{self.days} days ({self.source})"


def resolve_grace(tenant_days: int | None, plan: PlanGrace | None) -> Grace:
    """The tenant's override, else the plan's `graceDays`, else the default."""
    if tenant_days is not None:
        return Grace(tenant_days, "tenant")
    if plan is not None and plan.grace_days is not None:
        return Grace(plan.grace_days, "plan")
    return Grace(DEFAULT_GRACE_DAYS, "default")
