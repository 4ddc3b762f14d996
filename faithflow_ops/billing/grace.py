"""How long a subscription may stay past due before `subs automate` suspends the tenant for
non-payment: the tenant's `billing_grace_days`, else the plan's `graceDays` metadata, else the
default. `dunning` reads the plan's grace too, to time its notices."""

from __future__ import annotations

from collections.abc import Mapping

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
