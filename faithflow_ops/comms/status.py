"""Delivery status from Twilio: what a status callback does to an outbox message (docs/comms.md,
"Delivery status from Twilio").

When `FAITHFLOW_PUBLIC_URL` is set, the dispatcher sends every SMS/WhatsApp message with
`StatusCallback = {FAITHFLOW_PUBLIC_URL}/webhooks/twilio/status` (`callback_url`), and Twilio
POSTs each later status change of the message there. The receiver verifies the request
(receiver/twilio.py) and calls `record`, which finds the message by `provider_message_id`
(the `SM…` sid the dispatcher stored when Twilio accepted it) and moves it forward only:

- `delivered`, `read`: `sent` → `delivered`, `delivered_at` set (`applied`);
- `undelivered`, `failed`: `sent` → `failed`, `failed_at` set, `last_error` naming the
  `ErrorCode` (`applied`);
- the same final status again: unchanged (`duplicate`);
- a verdict or an in-flight status once the message is final (a late `sent` after
  `delivered`, a `failed` after `delivered`…): unchanged (`stale`);
- `queued`, `accepted`, `scheduled`, `sending`, `sent` while the message is `sent`, and any
  other value (`receiving`, `partially_delivered`, `canceled`, new ones): unchanged
  (`ignored`);
- a sid no outbox message has yet, for the outbox id the URL carries (`?m=ID`: the
  dispatcher's mark of `sent` with the sid has not landed — Twilio can call back before its
  own answer to the send arrives): kept in `comms_early_statuses` (`early`) and applied, by
  the same rules, in the transaction that records the sid (`apply_early`);
- a sid no outbox message has, and no `m`: nothing (`unmatched`).

`delivered` and `failed` are both final: the first one recorded stays (Twilio reports one of
them per message; a contradicting late report is `stale` and logged by the receiver). Each
change is one conditional `UPDATE … WHERE id = :id AND status = 'sent'`, so duplicates and
concurrent deliveries of one callback change the row once. An `undelivered`/`failed` with
error 21610 (the recipient replied STOP) also puts the recipient on the suppression list
(`stop`), exactly as the dispatcher does when Twilio refuses a send with 21610.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

from sqlalchemy import Table, select, update
from sqlalchemy.orm import Session

from faithflow_ops.comms.suppression import MESSAGES, add_suppression
from faithflow_ops.db import rowcount, upsert_insert
from faithflow_ops.models import EarlyStatus

if TYPE_CHECKING:
    from faithflow_ops.config import Settings

STATUS_PATH = "/webhooks/twilio/status"
EARLY = cast(Table, EarlyStatus.__table__)
ACTOR = "twilio status callback"

DELIVERED = frozenset({"delivered", "read"})
FAILED = frozenset({"undelivered", "failed"})
# Twilio's statuses before the carrier's verdict: nothing the outbox does not know already.
IN_FLIGHT = frozenset({"queued", "accepted", "scheduled", "sending", "sent"})
FINAL = ("delivered", "failed")


def callback_url(settings: Settings, message_id: int | None = None) -> str | None:
    """The StatusCallback the dispatcher sends for outbox message `message_id` (`…?m=ID`), or
    None when FAITHFLOW_PUBLIC_URL is unset. Twilio signs the whole URL, query included, so
    the `m` a verified callback carries is the one we gave: it finds the message even before
    its sid is recorded."""
    if not settings.public_url:
        return None
    url = f"{settings.public_url}{STATUS_PATH}"
    return f"{url}?m={message_id}" if message_id is not None else url


@dataclass(frozen=True)
class StatusResult:
    """What one callback did: `result` is applied, duplicate, stale, ignored or unmatched."""

    result: str
    message_id: int | None
    status: str | None  # the message's status afterwards
    note: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "result": self.result,
            "message": self.message_id,
            "status": self.status,
            "note": self.note,
        }


def error_text(twilio_status: str, error_code: int | None) -> str:
    """`last_error` for a message Twilio could not deliver."""
    from faithflow_ops.providers.twilio import RECIPIENT_CODES

    if error_code is None:
        return f"twilio reported {twilio_status} (no error code)"
    meaning = RECIPIENT_CODES.get(error_code)
    more = f": {meaning}" if meaning else f"; see https://www.twilio.com/docs/errors/{error_code}"
    return f"twilio reported {twilio_status} [Twilio {error_code}]{more}"


_ROW = (
    MESSAGES.c.id,
    MESSAGES.c.status,
    MESSAGES.c.channel,
    MESSAGES.c.recipient,
    MESSAGES.c.provider_message_id,
)


def record(
    session: Session,
    *,
    sid: str,
    twilio_status: str,
    error_code: int | None,
    now: dt.datetime,
    message_ref: int | None = None,
) -> StatusResult:
    """Apply one status callback for the message Twilio knows as `sid` (see the module
    docstring). Idempotent; never moves a message backwards. `message_ref`: the outbox id the
    callback URL carried (`?m=`): a callback that comes before the dispatcher recorded the sid
    is kept (`early`) and applied when the sid lands (`apply_early`)."""
    twilio_status = twilio_status.strip().lower()
    row = session.execute(
        select(*_ROW)
        .where(
            MESSAGES.c.provider_message_id == sid,
            MESSAGES.c.channel.in_(("sms", "whatsapp")),
        )
        .order_by(MESSAGES.c.id.desc())
        .limit(1)
    ).first()
    if row is None and message_ref is not None:
        # Lock the message: the dispatcher's mark (sent + sid) waits for this transaction, or
        # this one for the mark; either way an early callback is never missed.
        row = session.execute(
            select(*_ROW)
            .where(MESSAGES.c.id == message_ref, MESSAGES.c.channel.in_(("sms", "whatsapp")))
            .with_for_update()
        ).first()
        if row is not None and row.provider_message_id != sid:
            if row.provider_message_id is None and row.status in ("sending", "unknown"):
                return _keep_early(session, row.id, sid, twilio_status, error_code, now)
            return StatusResult(
                "stale",
                row.id,
                row.status,
                f"twilio says {twilio_status} for {sid}, but message {row.id} is "
                f"{row.status} as {row.provider_message_id or 'no sid'}: nothing changed",
            )
    if row is None:
        return StatusResult(
            "unmatched",
            None,
            None,
            f"no outbox message was sent as {sid}; nothing changed (sent by another system, "
            "or the callback came before the dispatcher recorded the sid)",
        )
    return _apply(session, row, twilio_status, error_code, now)


def _keep_early(
    session: Session,
    message_id: int,
    sid: str,
    twilio_status: str,
    error_code: int | None,
    now: dt.datetime,
) -> StatusResult:
    stmt = (
        upsert_insert(session.get_bind().dialect.name, EARLY)
        .values(
            message_id=message_id,
            sid=sid,
            twilio_status=twilio_status,
            error_code=error_code,
            received_at=now,
            created_at=now,
            updated_at=now,
        )
        .on_conflict_do_nothing(index_elements=["sid", "twilio_status"])
        .returning(EARLY.c.id)
    )
    new = session.execute(stmt).scalar_one_or_none() is not None
    return StatusResult(
        "early",
        message_id,
        "sending",
        f"twilio says {twilio_status} for message {message_id} before the dispatcher "
        f"recorded its sid {sid}: {'kept' if new else 'already kept'}, applied when it lands",
    )


def apply_early(
    session: Session, sent: list[tuple[int, str]], now: dt.datetime
) -> list[StatusResult]:
    """Apply the callbacks kept for these just-sent (message id, sid) pairs, in the caller's
    transaction (the dispatcher's mark, after the message became `sent`), oldest first."""
    if not sent:
        return []
    sids = {sid: message_id for message_id, sid in sent}
    waiting = session.execute(
        select(EARLY.c.id, EARLY.c.sid, EARLY.c.twilio_status, EARLY.c.error_code)
        .where(EARLY.c.sid.in_(list(sids)), EARLY.c.applied_at.is_(None))
        .order_by(EARLY.c.id)
    ).all()
    results = []
    for early in waiting:
        row = session.execute(select(*_ROW).where(MESSAGES.c.id == sids[early.sid])).first()
        if row is None or row.provider_message_id != early.sid:
            continue
        result = _apply(session, row, early.twilio_status, early.error_code, now)
        session.execute(
            update(EARLY)
            .where(EARLY.c.id == early.id, EARLY.c.applied_at.is_(None))
            .values(applied_at=now, result=result.result, updated_at=now)
        )
        results.append(result)
    return results


def _apply(
    session: Session, row: Any, twilio_status: str, error_code: int | None, now: dt.datetime
) -> StatusResult:
    """Move message `row` (id, status, channel, recipient) for one callback's status."""
    from faithflow_ops.providers.twilio import SUPPRESS_CODES

    if twilio_status in DELIVERED:
        target = "delivered"
        values: dict[str, Any] = {"status": "delivered", "delivered_at": now, "updated_at": now}
    elif twilio_status in FAILED:
        target = "failed"
        error = error_text(twilio_status, error_code)
        values = {"status": "failed", "failed_at": now, "last_error": error, "updated_at": now}
    elif twilio_status in IN_FLIGHT and row.status not in FINAL:
        return StatusResult(
            "ignored",
            row.id,
            row.status,
            f"twilio says {twilio_status}; the message is {row.status}: nothing new",
        )
    elif twilio_status in IN_FLIGHT:
        return _stale(row.id, row.status, twilio_status)
    else:
        return StatusResult(
            "ignored",
            row.id,
            row.status,
            f"twilio status {twilio_status!r} is not one the outbox records "
            "(delivered, read, undelivered, failed)",
        )
    changed = session.execute(
        update(MESSAGES)
        .where(MESSAGES.c.id == row.id, MESSAGES.c.status == "sent")
        .values(**values)
    )
    if rowcount(changed) == 1:
        note = f"twilio says {twilio_status}: message {row.id} is {target}"
        reason = SUPPRESS_CODES.get(error_code) if target == "failed" and error_code else None
        if reason is not None:
            added = add_suppression(
                session,
                channel=row.channel,
                contact=row.recipient,
                reason=reason,
                now=now,
                note=f"message {row.id}: {values['last_error']}",
                created_by=ACTOR,
            )
            note += f"; recipient {'added to' if added else 'already on'} the suppression list"
        return StatusResult("applied", row.id, target, note)
    # Not `sent` any more: someone (a duplicate, a concurrent delivery) got there first.
    current = session.scalar(select(MESSAGES.c.status).where(MESSAGES.c.id == row.id))
    if current == target:
        return StatusResult("duplicate", row.id, current, f"message {row.id} is {target} already")
    return _stale(row.id, current, twilio_status)


def _stale(message_id: int, current: str | None, twilio_status: str) -> StatusResult:
    return StatusResult(
        "stale",
        message_id,
        current,
        f"twilio says {twilio_status}; message {message_id} is {current}, and a message "
        "moves only forward (sent → delivered or failed): nothing changed",
    )
