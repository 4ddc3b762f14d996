"""The suppression list: recipients the outbox must not write to on a channel (a bounced
address, a STOP reply, an operator's entry), and the SQL test the dispatcher uses to skip them.

Shared by the dispatcher (a bounce or a STOP refused at send time), Twilio's status callbacks
(comms.status: a STOP reported later) and the operator commands (comms.admin).
"""

from __future__ import annotations

import datetime as dt
from typing import Any, cast

from sqlalchemy import Table, and_, or_
from sqlalchemy.orm import Session

from faithflow_ops.db import upsert_insert
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
) -> bool:
    """Put `contact` on the suppression list for `channel`; False when it already was (the
    existing entry is kept as it is)."""
    stmt = (
        upsert_insert(session.get_bind().dialect.name, SUPPRESSIONS)
        .values(
            contact=contact,
            channel=channel,
            reason=reason,
            until=until,
            note=note,
            created_by=created_by,
            created_at=now,
            updated_at=now,
        )
        .on_conflict_do_nothing(index_elements=["contact", "channel"])
        .returning(SUPPRESSIONS.c.id)
    )
    return session.execute(stmt).scalar_one_or_none() is not None
