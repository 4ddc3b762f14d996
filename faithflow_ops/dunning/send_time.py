"""When a dunning contact may happen, checked at the moment it would: the comms dispatcher asks
before every attempt of a dunning message (a transient failure retried at 21:00 in Lagos waits
for 08:00), as the payment retry does before charging (dunning.steps)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Collection

from sqlalchemy.orm import Session

from faithflow_ops.dunning.prefs import preferences_for
from faithflow_ops.dunning.quiet import first_allowed, is_quiet


def quiet_holds(
    session: Session, now: dt.datetime, tenant_ids: Collection[int]
) -> dict[int, tuple[dt.datetime, str]]:
    """For each of these tenants in its quiet hours at `now`: (the first minute after them,
    why) — dunning pauses are left to dunning.prefs.hold_pending, which reschedules."""
    out: dict[int, tuple[dt.datetime, str]] = {}
    for tenant_id, prefs in preferences_for(session, tenant_ids).items():
        if is_quiet(now, prefs.timezone, prefs.quiet_hours):
            until = first_allowed(now, prefs.timezone, prefs.quiet_hours)
            out[tenant_id] = (until, f"quiet hours ({prefs.timezone})")
    return out
