"""Applying a dispatch plan (faithflow_ops.comms.dispatch): the single-row kinds, and the
sending of a batch of `send` actions.

`mark_unknown` and `suppress` are one conditional UPDATE each, in the caller's transaction.
`send_batch`, per batch of send actions:

1. claim, committed before anything is sent: one `UPDATE … SET status='sending',
   lease_expires_at = now + FAITHFLOW_COMMS_LEASE_SECONDS, claimed_by = <this batch>,
   attempts = attempts + 1 WHERE id IN (…) AND status IN ('queued','scheduled') AND
   next_attempt_at <= now AND <no suppression in force> RETURNING …`. A message another
   dispatcher claimed (or that changed) is not returned: that action is `stale`, never sent.
2. send the claimed messages at most FAITHFLOW_COMMS_CONCURRENCY at once: SMS/WhatsApp through
   one Twilio connection pool, e-mail through one SMTP connection per sending thread, kept for
   the batch. What each provider answer means is `comms.outcomes`.
3. mark each, in one transaction, only while this batch still holds its claim
   (`status='sending' AND claimed_by = <this batch>`): `sent` (provider id, sent_at),
   `unknown`, `scheduled` (retry at) or `failed`; a bounce or a STOP reply adds the recipient
   to the suppression list.

A crash between 2 and 3 leaves the message `sending`: the next dispatch after the lease makes it
`unknown` — at most once, by construction.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import threading
import uuid
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from sqlalchemy import and_, bindparam, exists, select, update
from sqlalchemy.orm import Session

from faithflow_ops.actions import Action, ActionResult, StaleAction, decode
from faithflow_ops.clock import iso
from faithflow_ops.comms.dispatch import MarkUnknown, Send, Suppress
from faithflow_ops.comms.outcomes import Claimed, Outcome, from_error
from faithflow_ops.comms.status import callback_url
from faithflow_ops.comms.suppression import MESSAGES, add_suppression, in_force
from faithflow_ops.db import Database, lock_holder_id, rowcount
from faithflow_ops.errors import ConfigError
from faithflow_ops.models.comms import PENDING_STATUSES

if TYPE_CHECKING:
    from faithflow_ops.config import Settings
    from faithflow_ops.providers.smtp import Mailer
    from faithflow_ops.providers.twilio import TwilioClient


# --- the single-row kinds ----------------------------------------------------------------------


def apply_mark_unknown(session: Session, now: dt.datetime, action: Action) -> None:
    """`mark_unknown`: the message whose claim ran out becomes `unknown`."""
    p = decode(MarkUnknown, action.data)
    message_id = p.message
    result = session.execute(
        update(MESSAGES)
        .where(
            MESSAGES.c.id == message_id,
            MESSAGES.c.status == "sending",
            MESSAGES.c.lease_expires_at < now,
        )
        .values(
            status="unknown",
            last_error=(
                "outcome unknown: the dispatcher that claimed it stopped before recording "
                "whether the provider accepted it (lease ended "
                f"{iso(p.lease_expired_at)}); check with the provider, then "
                f"`faithflow comms retry {message_id}` to send it again"
            ),
            updated_at=now,
        )
    )
    if rowcount(result) != 1:
        raise StaleAction(f"message {message_id} is no longer sending past its lease")


def apply_suppress(session: Session, now: dt.datetime, action: Action) -> None:
    """`suppress`: the due message to a suppressed recipient becomes `suppressed`."""
    p = decode(Suppress, action.data)
    message_id, reason = p.message, p.suppression
    result = session.execute(
        update(MESSAGES)
        .where(
            MESSAGES.c.id == message_id,
            MESSAGES.c.status.in_(PENDING_STATUSES),
            exists().where(in_force(now)),
        )
        .values(status="suppressed", last_error=f"suppressed: {reason}", updated_at=now)
    )
    if rowcount(result) != 1:
        raise StaleAction(f"message {message_id} is no longer pending and suppressed")


# --- send ----------------------------------------------------------------------------------------


def claim(
    db: Database, settings: Settings, now: dt.datetime, ids: Sequence[int], holder: str
) -> list[Claimed]:
    """Claim the still-due, unsuppressed messages among `ids` for `holder`; committed."""
    if not ids:
        return []
    lease = now + dt.timedelta(seconds=settings.comms_lease_seconds)
    stmt = (
        update(MESSAGES)
        .where(
            MESSAGES.c.id.in_(list(ids)),
            MESSAGES.c.status.in_(PENDING_STATUSES),
            MESSAGES.c.next_attempt_at <= now,
            ~exists().where(in_force(now)),
        )
        .values(
            status="sending",
            lease_expires_at=lease,
            claimed_by=holder,
            attempts=MESSAGES.c.attempts + 1,
            updated_at=now,
        )
        .returning(
            MESSAGES.c.id,
            MESSAGES.c.channel,
            MESSAGES.c.recipient,
            MESSAGES.c.subject,
            MESSAGES.c.body,
            MESSAGES.c.attempts,
            MESSAGES.c.idempotency_key,
        )
    )
    with db.session() as session:
        rows = session.execute(stmt).all()
    return [Claimed(*row) for row in rows]


class Senders:
    """The provider clients of one batch: a Twilio pool shared by the threads, an SMTP
    connection per thread. Close when the batch is sent."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._twilio: TwilioClient | None = None
        self._local = threading.local()
        self._mailers: list[Mailer] = []
        self._lock = threading.Lock()

    def twilio(self) -> TwilioClient:
        with self._lock:
            if self._twilio is None:
                from faithflow_ops.providers.twilio import TwilioClient

                self._twilio = TwilioClient(
                    self.settings, max_connections=self.settings.comms_concurrency
                )
            return self._twilio

    def mailer(self) -> Mailer:
        mailer: Mailer | None = getattr(self._local, "mailer", None)
        if mailer is None:
            from faithflow_ops.providers.smtp import Mailer

            mailer = self._local.mailer = Mailer(self.settings)
            with self._lock:
                self._mailers.append(mailer)
        return mailer

    def close(self) -> None:
        for mailer in self._mailers:
            mailer.close()
        if self._twilio is not None:
            self._twilio.close()


def check_channel(settings: Settings, channel: str) -> None:
    """ConfigError naming the variable when `channel` cannot be sent with these settings."""
    if channel == "email":
        from faithflow_ops.config import parse_smtp_url

        parse_smtp_url(settings.require("smtp_url", "SMTP_URL"))
        settings.require("email_from", "EMAIL_FROM")
    else:
        from faithflow_ops.providers import twilio

        twilio.check(settings, channel)


def email_message_id(message_id: int, idempotency_key: str, email_from: str) -> str:
    """The `Message-ID` of outbox message `message_id`: the same on every attempt."""
    from faithflow_ops.providers.smtp import make_message_id

    digest = hashlib.sha256(idempotency_key.encode("utf-8")).hexdigest()[:12]
    return make_message_id(f"outbox.{message_id}.{digest}", email_from)


def send_one(senders: Senders, settings: Settings, now: dt.datetime, msg: Claimed) -> Outcome:
    """One provider call for one claimed message, and what it means for the message."""
    try:
        if msg.channel == "email":
            email_from = settings.require("email_from", "EMAIL_FROM")
            senders.mailer().send(
                msg.recipient,
                msg.subject or "",
                msg.body,
                message_id=email_message_id(msg.id, msg.idempotency_key, email_from),
                headers={"Auto-Submitted": "auto-generated", "X-FaithFlow-Message": str(msg.id)},
            )
            return Outcome("sent")
        sent = senders.twilio().send(
            msg.channel, msg.recipient, msg.body, status_callback=callback_url(settings)
        )
        return Outcome("sent", provider_message_id=sent.sid or None)
    except Exception as exc:  # every failure becomes an outcome: the message is kept safe
        return from_error(settings, now, msg, exc)


def mark(
    db: Database,
    now: dt.datetime,
    holder: str,
    done: Sequence[tuple[Claimed, Outcome]],
) -> set[int]:
    """Record the outcomes, while `holder` still holds each claim; returns the ids whose claim
    was lost (declared `unknown` by a later dispatch in the meantime). One statement per kind
    of outcome, executed for many rows at once (a batch of 500 marks in one round of the
    driver's executemany)."""
    claimed_by_us = and_(
        MESSAGES.c.id == bindparam("m_id"),
        MESSAGES.c.status == "sending",
        MESSAGES.c.claimed_by == holder,
    )
    common = {"lease_expires_at": None, "updated_at": now}
    statements = {
        "sent": update(MESSAGES)
        .where(claimed_by_us)
        .values(
            status="sent",
            provider_message_id=bindparam("m_provider_id"),
            sent_at=now,
            last_error=None,
            **common,
        ),
        "failed": update(MESSAGES)
        .where(claimed_by_us)
        .values(status="failed", failed_at=now, last_error=bindparam("m_error"), **common),
        "unknown": update(MESSAGES)
        .where(claimed_by_us)
        .values(status="unknown", last_error=bindparam("m_error"), **common),
        "scheduled": update(MESSAGES)
        .where(claimed_by_us)
        .values(
            status="scheduled",
            next_attempt_at=bindparam("m_retry_at"),
            last_error=bindparam("m_error"),
            **common,
        ),
    }
    params: dict[str, list[dict[str, Any]]] = {key: [] for key in statements}
    for msg, outcome in done:
        params[outcome.status].append(
            {
                "m_id": msg.id,
                "m_provider_id": outcome.provider_message_id,
                "m_error": outcome.error,
                "m_retry_at": outcome.retry_at,
            }
        )
    marked = 0
    with db.session() as session:
        conn = session.connection()
        for key, stmt in statements.items():
            if params[key]:
                marked += rowcount(conn.execute(stmt, params[key]))
        for msg, outcome in done:
            if outcome.suppress:
                add_suppression(
                    session,
                    channel=msg.channel,
                    contact=msg.recipient,
                    reason=outcome.suppress,
                    now=now,
                    note=f"message {msg.id}: {outcome.error}",
                )
        if marked == len(done):
            return set()
        # Some claim was lost: find which (rows this holder no longer has in a final state).
        ids = [msg.id for msg, _ in done]
        still_ours = session.scalars(
            select(MESSAGES.c.id).where(
                MESSAGES.c.id.in_(ids),
                MESSAGES.c.claimed_by == holder,
                MESSAGES.c.status.in_(("sent", "failed", "scheduled", "unknown")),
            )
        ).all()
        return set(ids) - set(still_ours)


def new_holder() -> str:
    return f"{lock_holder_id()}:{uuid.uuid4().hex[:8]}"


def send_batch(
    db: Database, settings: Settings, now: dt.datetime, actions: Sequence[Action]
) -> list[ActionResult]:
    """Claim, send and mark the `send` actions given (see the module docstring)."""
    results: dict[int, ActionResult] = {}
    ready: list[Action] = []
    checked: dict[str, str | None] = {}
    for action in actions:
        channel = decode(Send, action.data).channel
        if channel not in checked:
            try:
                check_channel(settings, channel)
                checked[channel] = None
            except ConfigError as exc:
                checked[channel] = str(exc)
        problem = checked[channel]
        if problem is not None:  # not claimed: it stays due for a run with the setting
            results[id(action)] = ActionResult(action, "failed", f"ConfigError: {problem}")
        else:
            ready.append(action)
    if ready:
        # One set of connections and sending threads for the whole batch; claims are taken a
        # chunk at a time, so a message is `sending` only for as long as its own chunk takes.
        senders = Senders(settings)
        workers = max(1, min(settings.comms_concurrency, len(ready)))
        chunk = max(settings.comms_concurrency * 16, 64)
        try:
            with ThreadPoolExecutor(workers, thread_name_prefix="comms-send") as pool:
                for start in range(0, len(ready), chunk):
                    part = ready[start : start + chunk]
                    results.update(_claim_send_mark(db, settings, now, part, senders, pool))
        finally:
            senders.close()
    return [results[id(a)] for a in actions]


def _claim_send_mark(
    db: Database,
    settings: Settings,
    now: dt.datetime,
    actions: Sequence[Action],
    senders: Senders,
    pool: ThreadPoolExecutor,
) -> dict[int, ActionResult]:
    results: dict[int, ActionResult] = {}
    holder = new_holder()
    by_id = {decode(Send, a.data).message: a for a in actions}
    claimed = claim(db, settings, now, list(by_id), holder)
    taken = {msg.id for msg in claimed}
    for message_id, action in by_id.items():
        if message_id not in taken:
            results[id(action)] = ActionResult(
                action,
                "stale",
                f"message {message_id} is no longer due (sent, claimed by another "
                "dispatcher, canceled or suppressed since the plan)",
            )
    if not claimed:
        return results
    outcomes = list(pool.map(lambda m: send_one(senders, settings, now, m), claimed))
    done = list(zip(claimed, outcomes, strict=True))
    lost = mark(db, now, holder, done)
    for msg, outcome in done:
        action = by_id[msg.id]
        if msg.id in lost:
            results[id(action)] = ActionResult(
                action,
                "failed",
                f"{outcome.status} but the claim had been lost (lease ended; the message "
                "is now unknown): raise FAITHFLOW_COMMS_LEASE_SECONDS",
            )
        elif outcome.status == "sent":
            results[id(action)] = ActionResult(action, "applied")
        elif outcome.status == "scheduled":
            assert outcome.retry_at is not None
            results[id(action)] = ActionResult(
                action,
                "failed",
                f"{outcome.error}; retry {msg.attempts + 1} of {settings.comms_max_attempts} "
                f"at {outcome.retry_at.isoformat()}",
            )
        else:
            results[id(action)] = ActionResult(action, "failed", outcome.error)
    return results
