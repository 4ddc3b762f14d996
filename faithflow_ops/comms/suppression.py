"""The suppression list: recipients the outbox must not write to on a channel (a bounced
address, a STOP reply, an operator's entry), and the SQL test the dispatcher uses to skip them.

Shared by the dispatcher (a bounce or a STOP refused at send time), Twilio's status callbacks
(comms.status: a STOP reported later) and the operator commands (comms.admin).
"""

from __future__ import annotations

import datetime as dt
from typing import Any, cast

from sqlalchemy import Table, and_, delete, or_, select, tuple_
from sqlalchemy.orm import Session

from faithflow_ops.db import rowcount, upsert_insert
from faithflow_ops.models import OutboundMessage, Suppression

MESSAGES = cast(Table, OutboundMessage.__table__)
SUPPRESSIONS = cast(Table, Suppression.__table__)


def in_force(now: dt.datetime) -> Any:
    """SQL: a suppression in force for the outbox row being looked at."""
    return and_(
        SUPPRESSIONS.c.contact == MESSAGES.c.recipient,
        SUPPRESSIONS.c.channel == MESSAGES.c.channel,
        or_(SUPPRESSIONS.c.until.is_(None), SUPPRESSIONS.c.until > now),
    )


def add_suppression(
    session: Session,
    *,
    channel: str,
    contact: str,
    reason: str,
    now: dt.datetime,
    until: dt.datetime | None = None,
    note: str | None = None,
    created_by: str = "comms dispatch",
    extend: bool = False,
) -> bool:
    """Put `contact` on the suppression list for `channel`; False when it already was. An
    entry already there is kept as it is, unless it has expired, or (`extend`) this one lasts
    longer (a soft-bounce entry for some days becomes a STOP or hard-bounce entry for good):
    then this one replaces it."""
    stmt = upsert_insert(session.get_bind().dialect.name, SUPPRESSIONS).values(
        contact=contact,
        channel=channel,
        reason=reason,
        until=until,
        note=note,
        created_by=created_by,
        created_at=now,
        updated_at=now,
    )
    existing = SUPPRESSIONS.c.until
    replaceable = [existing <= now]  # expired
    if extend:
        replaceable += [stmt.excluded.until.is_(None), stmt.excluded.until > existing]
    longer = existing.is_not(None) & or_(*replaceable)
    stmt = stmt.on_conflict_do_update(
        index_elements=["contact", "channel"],
        set_={
            "reason": stmt.excluded.reason,
            "until": stmt.excluded.until,
            "note": stmt.excluded.note,
            "created_by": stmt.excluded.created_by,
            "updated_at": stmt.excluded.updated_at,
        },
        where=longer,
    ).returning(SUPPRESSIONS.c.id)
    return session.execute(stmt).scalar_one_or_none() is not None


def lift_suppression(
    session: Session, *, channel: str, contact: str, reasons: tuple[str, ...]
) -> bool:
    """Take `contact` off the `channel` list when it is there for one of `reasons` (a START
    reply lifts a STOP, never a bounce or an operator's entry); False when it was not."""
    result = session.execute(
        delete(SUPPRESSIONS).where(
            SUPPRESSIONS.c.contact == contact,
            SUPPRESSIONS.c.channel == channel,
            SUPPRESSIONS.c.reason.in_(reasons),
        )
    )
    return rowcount(result) > 0


def suppressions_of(
    session: Session, contacts: list[tuple[str, str]], now: dt.datetime | None
) -> dict[tuple[str, str], dict[str, Any]]:
    """(channel, contact) → the suppression in force at `now` (reason, until, note, since),
    one query per 2,000 contacts; without `now`, only the entries for good."""
    rows: list[Any] = []
    for offset in range(0, len(contacts), 2000):
        chunk = contacts[offset : offset + 2000]
        in_force_now = (
            SUPPRESSIONS.c.until.is_(None)
            if now is None
            else or_(SUPPRESSIONS.c.until.is_(None), SUPPRESSIONS.c.until > now)
        )
        rows += session.execute(
            select(SUPPRESSIONS).where(
                tuple_(SUPPRESSIONS.c.channel, SUPPRESSIONS.c.contact).in_(chunk), in_force_now
            )
        ).all()
    return {
        (r.channel, r.contact): {
            "reason": r.reason,
            "until": r.until,
            "note": r.note,
            "since": r.updated_at,
            "by": r.created_by,
        }
        for r in rows
    }
