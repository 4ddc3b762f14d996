"""What the dunning ladder achieved (`faithflow dunning analytics`).

Every figure is about one cohort: the cases OPENED in [since, until), as they stand now —
how many recovered, at which step, how fast, how many were suspended or canceled, what the
ladder sent for them and what became of each message. `currently_open` is the whole book of
open cases now, whenever they opened. All of it is SQL aggregates (GROUP BY, and the median
read with ORDER BY … LIMIT/OFFSET), so 50,000 cases cost a handful of indexed queries.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from typing import Any

from sqlalchemy import ColumnElement, Float, and_, case, cast, func, or_, select
from sqlalchemy.orm import Session

from faithflow_ops.dunning.cases import SKIPPED_PREFIX
from faithflow_ops.errors import UserError
from faithflow_ops.models import DunningAttempt, DunningCase, OutboundMessage
from faithflow_ops.models.comms import MESSAGE_STATUSES

BEFORE_ANY_STEP = "(before any step)"  # recovered before the ladder took a step
MESSAGE_CHANNELS = ("email", "sms", "whatsapp")


def _seconds(session: Session, start: Any, end: Any) -> ColumnElement[float]:
    """`end - start` in seconds, per dialect."""
    if session.get_bind().dialect.name == "postgresql":
        return cast(func.extract("epoch", end - start), Float)
    # SQLite keeps UTC as text: julianday() reads it.
    return cast((func.julianday(end) - func.julianday(start)) * 86400.0, Float)


def _median(session: Session, expr: ColumnElement[float], where: Any, count: int) -> float | None:
    if count == 0:
        return None
    middle = session.scalars(
        select(expr).where(where).order_by(expr).offset((count - 1) // 2).limit(2 - count % 2)
    ).all()
    return sum(float(v) for v in middle) / len(middle)


def _by_currency(session: Session, key: Any, where: Any) -> Any:
    """Cases matching `where` grouped by `key` and currency: (key, currency, count, amount)."""
    return session.execute(
        select(
            key,
            DunningCase.currency,
            func.count(),
            func.coalesce(func.sum(DunningCase.amount_minor), 0),
        )
        .where(where)
        .group_by(key, DunningCase.currency)
    )


def _rate(part: int, whole: int) -> float | None:
    return round(part / whole, 4) if whole else None


def compute(
    session: Session,
    *,
    since: dt.datetime,
    until: dt.datetime,
    step_order: tuple[str, ...] = (),
) -> dict[str, Any]:
    """The analytics document for cases opened in [since, until); `step_order` (the policy's
    step keys) orders the per-step rows, unknown keys (an older ladder) after them."""
    if since.tzinfo is None or until.tzinfo is None:
        raise ValueError("since and until must be timezone-aware")
    if since >= until:
        raise UserError(
            f"--since {since.isoformat()} is not before --until {until.isoformat()}; "
            "give a window that starts before it ends"
        )
    cohort = and_(DunningCase.opened_at >= since, DunningCase.opened_at < until)

    # cases by outcome and currency: one GROUP BY
    outcome: dict[str, int] = defaultdict(int)
    amounts: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for status, currency, count, amount in _by_currency(session, DunningCase.status, cohort):
        outcome[status] += count
        amounts[status][currency] += int(amount)
    opened = sum(outcome.values())
    recovered = outcome["recovered"]
    resolved = recovered + outcome["suspended"] + outcome["canceled"]

    # recovery by step
    by_step: dict[str, dict[str, Any]] = {}
    recovered_cases = and_(cohort, DunningCase.status == "recovered")
    for step, currency, count, amount in _by_currency(
        session, DunningCase.recovered_after_step, recovered_cases
    ):
        key = step or BEFORE_ANY_STEP
        row = by_step.setdefault(key, {"step": key, "count": 0, "amount_minor": {}})
        row["count"] += count
        row["amount_minor"][currency] = row["amount_minor"].get(currency, 0) + int(amount)

    def order(key: str) -> tuple[int, int, str]:
        if key == BEFORE_ANY_STEP:
            return (0, 0, key)
        if key in step_order:
            return (1, step_order.index(key), key)
        return (2, 0, key)

    recovery_rows = [
        row | {"share": _rate(row["count"], recovered)}
        for row in sorted(by_step.values(), key=lambda r: order(r["step"]))
    ]

    recover_time = _seconds(session, DunningCase.past_due_since, DunningCase.closed_at)
    median = _median(
        session,
        recover_time,
        and_(cohort, DunningCase.status == "recovered", DunningCase.closed_at.is_not(None)),
        session.scalar(
            select(func.count()).where(
                cohort, DunningCase.status == "recovered", DunningCase.closed_at.is_not(None)
            )
        )
        or 0,
    )

    # attempts per step and channel, and what became of their messages: one GROUP BY.
    # "attempts" counts what was handed to a provider; skipped steps, messages canceled or
    # suppressed before a send, the handover and retries with nothing to charge are not.
    handed = case(
        (
            DunningAttempt.channel.in_(MESSAGE_CHANNELS),
            or_(
                OutboundMessage.attempts > 0,
                OutboundMessage.status.in_(("sending", "sent", "delivered", "unknown")),
            ),
        ),
        (
            DunningAttempt.channel == "payment_retry",
            or_(
                DunningAttempt.retry_outcome.in_(("succeeded", "failed", "error")),
                and_(
                    DunningAttempt.retry_outcome.is_(None),
                    func.coalesce(DunningAttempt.detail, "").like("in progress%"),
                ),
            ),
        ),
        else_=False,
    )
    skipped = func.coalesce(DunningAttempt.detail, "").like(SKIPPED_PREFIX + "%")
    attempts: dict[tuple[str, str], dict[str, Any]] = {}
    retries: dict[str, int] = defaultdict(int)
    keys = (
        DunningAttempt.step,
        DunningAttempt.channel,
        DunningAttempt.retry_outcome,
        OutboundMessage.status,
        handed,
        skipped,
    )
    for step, channel, outcome_text, status, was_handed, was_skipped, count in session.execute(
        select(*keys, func.count())
        .join(DunningCase, DunningCase.id == DunningAttempt.case_id)
        .outerjoin(OutboundMessage, OutboundMessage.id == DunningAttempt.message_id)
        .where(cohort)
        .group_by(*keys)
    ):
        row = attempts.setdefault(
            (step, channel),
            {"step": step, "channel": channel, "attempts": 0, "recorded": 0, "skipped": 0},
        )
        row["recorded"] += count
        if was_handed:
            row["attempts"] += count
        if was_skipped:
            row["skipped"] += count
            continue
        if channel in MESSAGE_CHANNELS:
            messages = row.setdefault("messages", dict.fromkeys(MESSAGE_STATUSES, 0))
            messages[status or "no_message"] = messages.get(status or "no_message", 0) + count
        elif channel == "payment_retry":
            outcomes = row.setdefault("retry_outcomes", {})
            label = outcome_text or "pending"
            outcomes[label] = outcomes.get(label, 0) + count
            retries[label] += count
    attempt_rows = sorted(
        attempts.values(), key=lambda r: (order(r["step"]), _channel_rank(r["channel"]))
    )
    per_channel: dict[str, dict[str, int]] = {}
    for row in attempt_rows:
        if row["channel"] not in MESSAGE_CHANNELS:
            continue
        total = per_channel.setdefault(
            row["channel"], dict.fromkeys(("attempts", *MESSAGE_STATUSES), 0)
        )
        total["attempts"] += row["attempts"]
        for status, count in row.get("messages", {}).items():
            total[status] = total.get(status, 0) + count

    # the whole open book now
    open_count = 0
    open_amount: dict[str, int] = {}
    for currency, count, amount in session.execute(
        select(
            DunningCase.currency,
            func.count(),
            func.coalesce(func.sum(DunningCase.amount_minor), 0),
        )
        .where(DunningCase.status == "open")
        .group_by(DunningCase.currency)
    ):
        open_count += count
        open_amount[currency] = int(amount)

    return {
        "since": since,
        "until": until,
        "cases": {
            "opened": opened,
            "recovered": recovered,
            "suspended": outcome["suspended"],
            "canceled": outcome["canceled"],
            "open": outcome["open"],
        },
        "opened_amount_minor": _totals(amounts.values()),
        "recovered": {
            "count": recovered,
            "amount_minor": dict(sorted(amounts["recovered"].items())),
            "rate": _rate(recovered, opened),
            "rate_of_closed": _rate(recovered, resolved),
            "median_seconds_to_recover": round(median) if median is not None else None,
            "by_step": recovery_rows,
        },
        "suspended": {
            "count": outcome["suspended"],
            "amount_minor": dict(sorted(amounts["suspended"].items())),
        },
        "canceled": {
            "count": outcome["canceled"],
            "amount_minor": dict(sorted(amounts["canceled"].items())),
        },
        "attempts": {
            "total": sum(r["attempts"] for r in attempt_rows),
            "skipped": sum(r["skipped"] for r in attempt_rows),
            "by_step": attempt_rows,
            "messages_by_channel": dict(
                sorted(per_channel.items(), key=lambda kv: _channel_rank(kv[0]))
            ),
            "payment_retries": dict(sorted(retries.items())),
        },
        "currently_open": {"count": open_count, "amount_minor": dict(sorted(open_amount.items()))},
    }


def _channel_rank(channel: str) -> int:
    order = ("email", "sms", "whatsapp", "payment_retry", "handover")
    return order.index(channel) if channel in order else len(order)


def _totals(groups: Any) -> dict[str, int]:
    total: dict[str, int] = defaultdict(int)
    for group in groups:
        for currency, amount in group.items():
            total[currency] += amount
    return dict(sorted(total.items()))


def duration(seconds: float | None) -> str:
    """`2 d 3 h`, `5 h 20 min`, `—`."""
    if seconds is None:
        return "—"
    minutes = int(seconds // 60)
    days, rest = divmod(minutes, 24 * 60)
    hours, mins = divmod(rest, 60)
    if days:
        return f"{days} d {hours} h"
    if hours:
        return f"{hours} h {mins} min"
    return f"{mins} min"
