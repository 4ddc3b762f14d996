"""Suspending a tenant: the tenant's status (tenancy) and its open dunning cases, which close
as `suspended` (their pending messages are canceled). One use case over two packages, so it
lives above both: `subs automate` and `faithflow tenants suspend` call it. And when
`subs automate` may suspend: not before the dunning ladder is done (`suspension_holds`)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import NamedTuple

from sqlalchemy import select
from sqlalchemy.orm import Session

from faithflow_ops.clock import iso
from faithflow_ops.dunning.cases import ATTEMPTS, CASES, SKIPPED_PREFIX, close_cases
from faithflow_ops.dunning.planner import MESSAGES
from faithflow_ops.dunning.policy import current_policy, suspend_at
from faithflow_ops.dunning.prefs import preferences_for
from faithflow_ops.tenancy.tenants import Transition, mark_suspended


def suspend_tenant(
    session: Session, slug: str, *, reason: str, actor: str, now: dt.datetime | None = None
) -> Transition:
    """Suspend an active tenant; suspending a suspended one changes nothing. The tenant's open
    dunning cases close as `suspended` (their pending messages are canceled)."""
    result = mark_suspended(session, slug, reason=reason, actor=actor, now=now)
    if result.changed:
        tenant = result.tenant
        assert tenant.suspended_at is not None
        close_cases(
            session, tenant_id=tenant.id, status="suspended", at=tenant.suspended_at, actor=actor
        )
    return result


# Twilio reports an SMS/WhatsApp message's fate by callback; when none has come this long after
# it was sent, the final notice is taken as delivered (the carrier has had its chance).
CALLBACK_PATIENCE = dt.timedelta(hours=48)
# The final notice reached the church (e-mail has no delivery feedback: sent is delivered) …
_DELIVERED = frozenset({"delivered"})
# … or will never reach it.
_FAILED_FOR_GOOD = frozenset({"failed", "suppressed", "canceled", "unknown"})


class Candidate(NamedTuple):
    subscription_id: int
    tenant_id: int
    past_due_since: dt.datetime
    grace_days: int
    # marked past due in the same run: its dunning case opens when that action applies
    case_opens: bool = False


def suspension_holds(
    session: Session, candidates: Sequence[Candidate], now: dt.datetime
) -> dict[int, str]:
    """Why each past-grace subscription may not be suspended yet (subscription id -> reason);
    those left out may be. The ladder comes first:

    - a dunning pause holds it, and extends the grace (`policy.suspend_at`);
    - when the ladder has a final notice (its last step that sends) and the subscription has
      an open dunning case, no suspension before that notice was delivered — e-mail sent, SMS
      or WhatsApp delivered (or sent CALLBACK_PATIENCE ago with no callback) — or definitively
      failed (failed, suppressed, canceled, unknown, or recorded skipped: nothing to send to).
      That holds too when the ladder never took a step on the case (the dunning job has not
      run): the reason then says to run `faithflow dunning run`, which catches up by taking
      the latest overdue step that sends, the final notice.

    With no open case (dunning not in use for the subscription) the grace alone decides, and
    a ladder without a final notice holds nothing but a pause."""
    if not candidates:
        return {}
    policy = current_policy(session)
    final = policy.final_notice
    prefs = preferences_for(session, {c.tenant_id for c in candidates})
    holds: dict[int, str] = {}
    for c in candidates:
        p = prefs.get(c.tenant_id)
        if p is not None and p.paused(now):
            note = f" ({p.pause_note})" if p.pause_note else ""
            holds[c.subscription_id] = (
                f"dunning paused until {iso(p.paused_until)}{note}; the pause extends the grace"
            )
            continue
        at = suspend_at(
            c.past_due_since, c.grace_days, p.paused_until if p is not None else None, final
        )
        if at > now:
            holds[c.subscription_id] = f"a dunning pause extended the grace to {iso(at)}"
    if final is None:
        return holds
    waiting = [c for c in candidates if c.subscription_id not in holds]
    holds.update(_final_notice_holds(session, waiting, final.key, now))
    return holds


def _final_notice_holds(
    session: Session, candidates: Sequence[Candidate], final: str, now: dt.datetime
) -> dict[int, str]:
    if not candidates:
        return {}
    subscription_ids = [c.subscription_id for c in candidates]
    cases = dict(
        session.execute(
            select(CASES.c.id, CASES.c.subscription_id).where(
                CASES.c.subscription_id.in_(list(subscription_ids)), CASES.c.status == "open"
            )
        )
        .tuples()
        .all()
    )
    holds: dict[int, str] = {}
    for c in candidates:
        if c.case_opens and c.subscription_id not in cases.values():
            holds[c.subscription_id] = (
                f"its dunning case opens as it is marked past due in this run, and the final "
                f"notice ({final}) has not gone out yet: run `faithflow dunning run` (its cron), "
                "which sends it, then suspension may follow"
            )
    if not cases:
        return holds
    started: set[int] = set()
    notice: dict[int, list[tuple[str, str | None, str | None, dt.datetime | None]]] = {}
    for case_id, step, channel, detail, status, sent_at in session.execute(
        select(
            ATTEMPTS.c.case_id,
            ATTEMPTS.c.step,
            ATTEMPTS.c.channel,
            ATTEMPTS.c.detail,
            MESSAGES.c.status,
            MESSAGES.c.sent_at,
        )
        .outerjoin(MESSAGES, MESSAGES.c.id == ATTEMPTS.c.message_id)
        .where(ATTEMPTS.c.case_id.in_(list(cases)))
    ).tuples():
        started.add(case_id)
        if step == final:
            skipped = (detail or "").startswith(SKIPPED_PREFIX)
            notice.setdefault(case_id, []).append(
                (channel, "skipped" if skipped else status, detail, sent_at)
            )
    for case_id, sub_id in cases.items():
        if case_id not in started:
            holds[sub_id] = (
                f"the final notice ({final}) has not gone out yet: the dunning ladder has not "
                f"run on case {case_id}; run `faithflow dunning run` (its cron), which sends "
                "it, then suspension may follow once it is delivered or has failed for good"
            )
            continue
        rows = notice.get(case_id)
        if not rows:
            holds[sub_id] = (
                f"the final notice ({final}) has not gone out yet: run `faithflow dunning run` "
                "(its cron), which sends it, then suspension may follow"
            )
            continue
        if any(_reached(ch, st, at, now) for ch, st, _, at in rows):
            continue
        if all(st == "skipped" or st in _FAILED_FOR_GOOD for _, st, _, _ in rows):
            continue
        states = ", ".join(f"{ch}: {st or 'no message'}" for ch, st, _, _ in rows)
        holds[sub_id] = (
            f"the final notice ({final}) is not delivered yet ({states}); suspension waits "
            "until it is delivered or has failed for good"
        )
    return holds


def _reached(
    channel: str, status: str | None, sent_at: dt.datetime | None, now: dt.datetime
) -> bool:
    if status in _DELIVERED:
        return True
    if status != "sent":
        return False
    if channel == "email":
        return True
    return sent_at is not None and sent_at + CALLBACK_PATIENCE <= now
