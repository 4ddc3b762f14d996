"""What an operator does to the outbox (`faithflow comms …`): look, retry, cancel, suppress.

Every change is a conditional UPDATE on the status it expects, audited, so a command racing the
dispatcher either wins cleanly or is refused with the status it found.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import delete, func, select, update
from sqlalchemy.orm import Session

from faithflow_ops import audit
from faithflow_ops.clock import iso
from faithflow_ops.comms import contacts
from faithflow_ops.comms.bounces import recipient_bounces
from faithflow_ops.comms.suppression import add_suppression
from faithflow_ops.db import rowcount
from faithflow_ops.errors import NotFound, UserError, one_of
from faithflow_ops.models import OutboundMessage, Suppression, Tenant
from faithflow_ops.models.comms import (
    CHANNELS,
    MESSAGE_STATUSES,
    PENDING_STATUSES,
    SUPPRESSION_REASONS,
)

RETRYABLE = ("failed", "unknown", "canceled")
AUDIT_RETRY = "comms.retry"
AUDIT_CANCEL = "comms.cancel"
AUDIT_SUPPRESS = "comms.suppress"
AUDIT_UNSUPPRESS = "comms.unsuppress"

LIST_FIELDS = (
    "id",
    "tenant",
    "channel",
    "recipient",
    "template",
    "status",
    "priority",
    "attempts",
    "next_attempt_at",
    "sent_at",
    "last_error",
)


def _tenant_id(session: Session, slug: str) -> int:
    found = session.scalar(select(Tenant.id).where(Tenant.slug == slug))
    if found is None:
        raise NotFound(f"no tenant with slug {slug!r}; see `faithflow tenants list`")
    return found


def list_messages(
    session: Session,
    *,
    status: str | None = None,
    channel: str | None = None,
    tenant: str | None = None,
    limit: int = 100,
) -> tuple[list[dict[str, Any]], int]:
    """Messages, newest first, and how many match in all."""
    if status is not None:
        one_of("--status", status, MESSAGE_STATUSES)
    if channel is not None:
        one_of("--channel", channel, CHANNELS)
    where = []
    if status:
        where.append(OutboundMessage.status == status)
    if channel:
        where.append(OutboundMessage.channel == channel)
    if tenant:
        where.append(OutboundMessage.tenant_id == _tenant_id(session, tenant))
    total = session.scalar(select(func.count()).select_from(OutboundMessage).where(*where)) or 0
    rows = session.execute(
        select(OutboundMessage, Tenant.slug)
        .outerjoin(Tenant, Tenant.id == OutboundMessage.tenant_id)
        .where(*where)
        .order_by(OutboundMessage.id.desc())
        .limit(limit)
    ).all()
    out = []
    for msg, slug in rows:
        doc = {name: getattr(msg, name, None) for name in LIST_FIELDS if name != "tenant"}
        doc["tenant"] = slug
        out.append({name: doc[name] for name in LIST_FIELDS})
    return out, total


_MAX_ID = 2**31 - 1  # outbound_messages.id is an INTEGER: a larger id cannot exist


def _message(session: Session, message_id: int) -> OutboundMessage:
    msg = session.get(OutboundMessage, message_id) if 0 < message_id <= _MAX_ID else None
    if msg is None:
        raise NotFound(f"no outbox message {message_id}; see `faithflow comms list`")
    return msg


def message_details(session: Session, message_id: int) -> dict[str, Any]:
    """Every field of one message, its tenant's slug, any suppression of its recipient and
    (e-mail) the recipient's latest bounces."""
    msg = _message(session, message_id)
    doc: dict[str, Any] = {c.key: getattr(msg, c.key) for c in OutboundMessage.__mapper__.columns}
    doc["tenant"] = (
        session.scalar(select(Tenant.slug).where(Tenant.id == msg.tenant_id))
        if msg.tenant_id is not None
        else None
    )
    sup = session.scalar(
        select(Suppression).where(
            Suppression.contact == msg.recipient, Suppression.channel == msg.channel
        )
    )
    doc["suppression"] = (
        {"reason": sup.reason, "until": sup.until, "note": sup.note, "since": sup.created_at}
        if sup
        else None
    )
    # what the mail servers said about this recipient (comms.bounces), newest first
    doc["bounces"] = (
        recipient_bounces(session, channel=msg.channel, recipient=msg.recipient, limit=10)
        if msg.channel == "email"
        else []
    )
    return doc


def retry(session: Session, message_id: int, *, now: dt.datetime, actor: str) -> str:
    """Queue a failed, unknown or canceled message to be sent at the next dispatch, with a
    fresh count of attempts — but never before its `not_before` (quiet hours, a suppression
    window: it is `scheduled` until then). A dunning reminder whose case is no longer open
    (the church paid, was suspended or canceled) is refused: what it says is no longer true.
    Returns the status it had."""
    msg = _message(session, message_id)
    before = msg.status
    if before not in RETRYABLE:
        hint = {
            "sent": "it was sent already; enqueue a new message to send it again",
            "delivered": "it was delivered already; enqueue a new message to send it again",
            "sending": "a dispatcher is sending it now; if that dispatcher died, it becomes "
            "unknown after its lease and can be retried then",
            "suppressed": "its recipient is suppressed; `faithflow comms suppress remove` "
            "first, then enqueue it again",
            "queued": "it is already waiting for the next dispatch",
            "scheduled": "it is already waiting for its scheduled time",
        }.get(before, "")
        raise UserError(
            f"message {message_id} is {before}; only {', '.join(RETRYABLE)} messages can be "
            f"retried ({hint})"
        )
    _check_still_true(session, msg)
    due = max(msg.not_before, now)
    result = session.execute(
        update(OutboundMessage)
        .where(OutboundMessage.id == message_id, OutboundMessage.status == before)
        .values(
            status="scheduled" if due > now else "queued",
            attempts=0,
            next_attempt_at=due,
            lease_expires_at=None,
            claimed_by=None,
            failed_at=None,
            canceled_at=None,
            last_error=f"retried by {actor} (was {before}: {msg.last_error or 'no error'})"[:2000],
            updated_at=now,
        )
        .execution_options(synchronize_session=False)
    )
    if rowcount(result) != 1:
        raise UserError(f"message {message_id} changed while retrying it; look again and rerun")
    audit.record(
        session,
        actor=actor,
        action=AUDIT_RETRY,
        entity_type="outbound_message",
        entity_id=message_id,
        tenant_id=msg.tenant_id,
        before={"status": before},
        after={
            "status": "scheduled" if due > now else "queued",
            "next_attempt_at": due.isoformat(),
        },
    )
    return before


def maybe_delivered(msg: OutboundMessage) -> str:
    """Whether a message to be requeued might already have reached its recipient, and why —
    what an operator checks before sending it again."""
    if msg.provider_message_id:
        return (
            f"likely: the provider accepted it (id {msg.provider_message_id}); check its "
            "delivery before resending"
        )
    if msg.status == "unknown":
        return (
            "maybe: no provider answer was recorded (check the Twilio console or the mail log "
            "by Message-ID)"
        )
    if msg.status == "canceled" or msg.attempts == 0:
        return "no: never sent"
    return "no: the provider refused it"


def retry_candidates(
    session: Session, *, status: str, since: dt.datetime | None
) -> list[OutboundMessage]:
    """The messages `comms retry --status` would requeue: `status` (failed, unknown or
    canceled) and last changed (their last attempt) at `since` or later, oldest first."""
    one_of("--status", status, RETRYABLE)
    query = select(OutboundMessage).where(OutboundMessage.status == status)
    if since is not None:
        query = query.where(OutboundMessage.updated_at >= since)
    return list(session.scalars(query.order_by(OutboundMessage.updated_at, OutboundMessage.id)))


def candidate_doc(session: Session, msg: OutboundMessage) -> dict[str, Any]:
    """One message of a bulk retry as the CLI shows it."""
    slug = (
        session.scalar(select(Tenant.slug).where(Tenant.id == msg.tenant_id))
        if msg.tenant_id is not None
        else None
    )
    return {
        "id": msg.id,
        "tenant": slug,
        "channel": msg.channel,
        "recipient": msg.recipient,
        "template": msg.template,
        "status": msg.status,
        "attempts": msg.attempts,
        "last_attempt": iso(msg.updated_at),
        "provider_message_id": msg.provider_message_id,
        "last_error": msg.last_error,
        "maybe_delivered": maybe_delivered(msg),
    }


def retry_many(
    session: Session, ids: list[int], *, now: dt.datetime, actor: str
) -> dict[int, str | None]:
    """`retry` each message; id → None when requeued, or why it was not (it changed since it
    was listed, or it is a dunning reminder of a closed case). One refusal never stops the
    others."""
    outcome: dict[int, str | None] = {}
    for message_id in ids:
        try:
            with session.begin_nested():
                retry(session, message_id, now=now, actor=actor)
            outcome[message_id] = None
        except UserError as exc:
            outcome[message_id] = str(exc)
    return outcome


def _check_still_true(session: Session, msg: OutboundMessage) -> None:
    """UserError when `msg` is a dunning reminder of a case that is no longer open."""
    from faithflow_ops.models.dunning import DunningAttempt, DunningCase

    if msg.about_type != "dunning_attempt" or msg.about_id is None:  # dunning.cases.ABOUT
        return
    try:
        attempt_id = int(msg.about_id)
    except ValueError:
        return
    found = session.execute(
        select(DunningCase.id, DunningCase.status)
        .join(DunningAttempt, DunningAttempt.case_id == DunningCase.id)
        .where(DunningAttempt.id == attempt_id)
    ).first()
    if found is not None and found.status != "open":
        raise UserError(
            f"message {msg.id} is a dunning reminder and dunning case {found.id} is "
            f"{found.status}: it no longer applies; send a new message with `faithflow comms "
            "send` if the church must hear from you"
        )


def cancel(session: Session, message_id: int, *, now: dt.datetime, actor: str) -> str:
    """Cancel a queued or scheduled message. Returns the status it had."""
    msg = _message(session, message_id)
    before = msg.status
    result = session.execute(
        update(OutboundMessage)
        .where(
            OutboundMessage.id == message_id,
            OutboundMessage.status.in_(PENDING_STATUSES),
        )
        .values(
            status="canceled", canceled_at=now, last_error=f"canceled by {actor}", updated_at=now
        )
        .execution_options(synchronize_session=False)
    )
    if rowcount(result) != 1:
        raise UserError(
            f"message {message_id} is {before}; only queued or scheduled messages can be canceled"
        )
    audit.record(
        session,
        actor=actor,
        action=AUDIT_CANCEL,
        entity_type="outbound_message",
        entity_id=message_id,
        tenant_id=msg.tenant_id,
        before={"status": before},
        after={"status": "canceled"},
    )
    return before


def suppress(
    session: Session,
    *,
    channel: str,
    contact: str,
    reason: str,
    now: dt.datetime,
    actor: str,
    until: dt.datetime | None = None,
    note: str | None = None,
) -> tuple[str, bool]:
    """Add a contact to the suppression list. Returns (normalised contact, added); a contact
    already there keeps its entry (remove it first to change it)."""
    one_of("--channel", channel, CHANNELS)
    one_of("--reason", reason, SUPPRESSION_REASONS)
    to = contacts.normalize(channel, contact)
    if until is not None and until <= now:
        raise UserError(f"--until {until.isoformat()} is in the past; give a later date or none")
    added = add_suppression(
        session,
        channel=channel,
        contact=to,
        reason=reason,
        now=now,
        until=until,
        note=note,
        created_by=actor,
    )
    if added:
        audit.record(
            session,
            actor=actor,
            action=AUDIT_SUPPRESS,
            entity_type="comms_suppression",
            entity_id=f"{channel}:{to}",
            after={"reason": reason, "until": iso(until), "note": note},
        )
    return to, added


def unsuppress(
    session: Session, *, channel: str, contact: str, now: dt.datetime, actor: str
) -> str:
    """Take a contact off the suppression list; NotFound when it was not on it."""
    one_of("--channel", channel, CHANNELS)
    to = contacts.normalize(channel, contact)
    sup = session.scalar(
        select(Suppression).where(Suppression.contact == to, Suppression.channel == channel)
    )
    if sup is None:
        raise NotFound(f"{to} is not on the {channel} suppression list")
    session.execute(delete(Suppression).where(Suppression.id == sup.id))
    audit.record(
        session,
        actor=actor,
        action=AUDIT_UNSUPPRESS,
        entity_type="comms_suppression",
        entity_id=f"{channel}:{to}",
        before={"reason": sup.reason, "until": iso(sup.until)},
    )
    return to


def suppressions(session: Session, *, channel: str | None = None) -> list[dict[str, Any]]:
    if channel is not None:
        one_of("--channel", channel, CHANNELS)
    query = select(Suppression).order_by(Suppression.channel, Suppression.contact)
    if channel:
        query = query.where(Suppression.channel == channel)
    return [
        {
            "id": s.id,
            "channel": s.channel,
            "contact": s.contact,
            "reason": s.reason,
            "until": s.until,
            "note": s.note,
            "created_by": s.created_by,
            "created_at": s.created_at,
        }
        for s in session.scalars(query)
    ]
