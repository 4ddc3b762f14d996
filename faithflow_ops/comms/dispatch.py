"""Sending the outbox: what is due (plan), and claim → send → mark (apply). docs/comms.md.

plan (read-only), in this order:

- `mark_unknown`: a message still `sending` after its lease ran out. Its dispatcher died between
  the provider call and recording the outcome: it may have been sent. It becomes `unknown` and
  is never sent again automatically (`comms retry ID` is the operator's decision).
- `suppress`: a due message whose recipient has been put on the suppression list since it was
  enqueued: it becomes `suppressed`, never sent.
- `send`: a due message (`queued`/`scheduled`, `next_attempt_at <= now`), lowest priority
  number first, then the longest waiting.

apply (`send_batch`), per batch of send actions:

1. claim, committed before anything is sent: one `UPDATE … SET status='sending',
   lease_expires_at = now + FAITHFLOW_COMMS_LEASE_SECONDS, claimed_by = <this batch>,
   attempts = attempts + 1 WHERE id IN (…) AND status IN ('queued','scheduled') AND
   next_attempt_at <= now AND <no suppression in force> RETURNING …`. A message another
   dispatcher claimed (or that changed) is not returned: that action is `stale`, never sent.
2. send the claimed messages at most FAITHFLOW_COMMS_CONCURRENCY at once: SMS/WhatsApp through
   one Twilio connection pool, e-mail through one SMTP connection per sending thread, kept for
   the batch.
3. mark each, in one transaction, only while this batch still holds its claim
   (`status='sending' AND claimed_by = <this batch>`): `sent` (provider id, sent_at);
   `unknown` when Twilio got the request but its answer never came (it may have sent it);
   a transient failure goes back to `scheduled` after an exponential backoff
   (FAITHFLOW_COMMS_RETRY_BACKOFF × 2^(attempts-1), capped at
   FAITHFLOW_COMMS_RETRY_MAX_BACKOFF, never before the provider's Retry-After), or `failed` when
   it has had FAITHFLOW_COMMS_MAX_ATTEMPTS attempts; a permanent failure is `failed` at once, and
   a bounced address or a STOP reply adds the recipient to the suppression list.

A crash between 2 and 3 leaves the message `sending`: the next dispatch after the lease makes it
`unknown` — at most once, by construction.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import threading
import uuid
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

from sqlalchemy import Table, and_, bindparam, exists, or_, select, update
from sqlalchemy.orm import Session

from faithflow_ops.actions import Action, ActionResult, StaleAction
from faithflow_ops.db import Database, lock_holder_id, rowcount, upsert_insert
from faithflow_ops.errors import ConfigError, UserError
from faithflow_ops.models import OutboundMessage, Suppression
from faithflow_ops.models.comms import PENDING_STATUSES

if TYPE_CHECKING:
    from faithflow_ops.config import Settings
    from faithflow_ops.providers.smtp import Mailer
    from faithflow_ops.providers.twilio import TwilioClient

MESSAGES = cast(Table, OutboundMessage.__table__)
SUPPRESSIONS = cast(Table, Suppression.__table__)

SEND, SUPPRESS, MARK_UNKNOWN = "send", "suppress", "mark_unknown"
KINDS = (MARK_UNKNOWN, SUPPRESS, SEND)
ACTOR = "comms dispatch"


# --- helpers shared with the CLI ---------------------------------------------------------------


def mask(channel: str, recipient: str) -> str:
    """A recipient as previews and logs show it: `t***@church.org`, `+234*****5678`."""
    if channel == "email":
        local, _, domain = recipient.partition("@")
        return f"{local[:1]}***@{domain}"
    if len(recipient) <= 6:
        return "*" * len(recipient)
    return recipient[:4] + "*" * (len(recipient) - 8) + recipient[-4:]


def in_force(now: dt.datetime) -> Any:
    """SQL: a suppression in force for the outbox row being looked at."""
    return and_(
        SUPPRESSIONS.c.contact == MESSAGES.c.recipient,
        SUPPRESSIONS.c.channel == MESSAGES.c.channel,
        or_(SUPPRESSIONS.c.until.is_(None), SUPPRESSIONS.c.until > now),
    )


def retry_delay(settings: Settings, attempts: int, retry_after: float | None = None) -> float:
    """Seconds before attempt `attempts + 1`: backoff × 2^(attempts-1), capped; never sooner
    than the provider's Retry-After."""
    delay = min(
        settings.comms_retry_backoff * 2.0 ** max(attempts - 1, 0),
        float(settings.comms_retry_max_backoff),
    )
    if retry_after is not None:
        delay = max(delay, retry_after)
    return delay


def email_message_id(message_id: int, idempotency_key: str, email_from: str) -> str:
    """The `Message-ID` of outbox message `message_id`: the same on every attempt."""
    from faithflow_ops.providers.smtp import make_message_id

    digest = hashlib.sha256(idempotency_key.encode("utf-8")).hexdigest()[:12]
    return make_message_id(f"outbox.{message_id}.{digest}", email_from)


def add_suppression(
    session: Session,
    *,
    channel: str,
    contact: str,
    reason: str,
    now: dt.datetime,
    until: dt.datetime | None = None,
    note: str | None = None,
    created_by: str = ACTOR,
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


# --- plan ---------------------------------------------------------------------------------------


def plan(session: Session, now: dt.datetime, limit: int | None = None) -> Iterator[Action]:
    """What a dispatch at `now` would do (see the module docstring); read-only."""
    expired = session.execute(
        select(
            MESSAGES.c.id,
            MESSAGES.c.channel,
            MESSAGES.c.recipient,
            MESSAGES.c.template,
            MESSAGES.c.attempts,
            MESSAGES.c.claimed_by,
            MESSAGES.c.lease_expires_at,
        )
        .where(MESSAGES.c.status == "sending", MESSAGES.c.lease_expires_at < now)
        .order_by(MESSAGES.c.lease_expires_at, MESSAGES.c.id)
    ).all()
    for row in expired:
        yield Action(
            MARK_UNKNOWN,
            f"message:{row.id}",
            f"claimed by {row.claimed_by} and not recorded before its lease ended "
            f"({row.lease_expires_at.isoformat()}): it may have been sent; never re-sent "
            "automatically (comms retry ID)",
            {
                "message": row.id,
                "channel": row.channel,
                "to": mask(row.channel, row.recipient),
                "template": row.template,
                "attempts": row.attempts,
                "lease_expired_at": row.lease_expires_at.isoformat(),
            },
        )
    query = (
        select(
            MESSAGES.c.id,
            MESSAGES.c.tenant_id,
            MESSAGES.c.channel,
            MESSAGES.c.recipient,
            MESSAGES.c.template,
            MESSAGES.c.priority,
            MESSAGES.c.status,
            MESSAGES.c.attempts,
            MESSAGES.c.next_attempt_at,
            SUPPRESSIONS.c.reason.label("suppressed"),
        )
        .select_from(MESSAGES.outerjoin(SUPPRESSIONS, in_force(now)))
        .where(MESSAGES.c.status.in_(PENDING_STATUSES), MESSAGES.c.next_attempt_at <= now)
        .order_by(MESSAGES.c.priority, MESSAGES.c.next_attempt_at, MESSAGES.c.id)
    )
    if limit is not None:  # clamped: a huge --limit is "no limit", not a driver overflow
        query = query.limit(min(max(limit - len(expired), 0), 2**31 - 1))
    for row in session.execute(query):
        data = {
            "message": row.id,
            "tenant_id": row.tenant_id,
            "channel": row.channel,
            "to": mask(row.channel, row.recipient),
            "template": row.template,
            "priority": row.priority,
            "attempts": row.attempts,
            "scheduled_at": row.next_attempt_at.isoformat(),
        }
        if row.suppressed:
            yield Action(
                SUPPRESS,
                f"message:{row.id}",
                f"the recipient is on the {row.channel} suppression list ({row.suppressed})",
                {**data, "suppression": row.suppressed},
            )
        else:
            attempt = f"attempt {row.attempts + 1}" if row.attempts else "first attempt"
            yield Action(
                SEND,
                f"message:{row.id}",
                f"{row.status} and due since {row.next_attempt_at.isoformat()} ({attempt})",
                data,
            )


# --- apply: the single-row kinds ---------------------------------------------------------------


def apply_mark_unknown(session: Session, now: dt.datetime, action: Action) -> None:
    message_id = int(action.data["message"])
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
                f"{action.data.get('lease_expired_at')}); check with the provider, then "
                f"`faithflow comms retry {message_id}` to send it again"
            ),
            updated_at=now,
        )
    )
    if rowcount(result) != 1:
        raise StaleAction(f"message {message_id} is no longer sending past its lease")


def apply_suppress(session: Session, now: dt.datetime, action: Action) -> None:
    message_id = int(action.data["message"])
    reason = action.data.get("suppression")
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


# --- apply: send ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Claimed:
    id: int
    channel: str
    recipient: str
    subject: str | None
    body: str
    attempts: int
    idempotency_key: str


@dataclass
class Outcome:
    """What happened to one claimed message."""

    status: str  # sent | scheduled | failed | unknown (the provider may have sent it)
    provider_message_id: str | None = None
    error: str | None = None
    retry_at: dt.datetime | None = None
    suppress: str | None = None  # add the recipient to the suppression list for this reason


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


def send_one(senders: Senders, settings: Settings, now: dt.datetime, msg: Claimed) -> Outcome:
    """One provider call for one claimed message, and what it means for the message."""
    from faithflow_ops.comms.status import callback_url
    from faithflow_ops.providers.smtp import SmtpError
    from faithflow_ops.providers.twilio import TwilioError

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
    except SmtpError as exc:
        if exc.permanent and not exc.config:
            return Outcome("failed", error=str(exc), suppress="bounce" if exc.bounced else None)
        return _transient(settings, now, msg, str(exc), None)
    except TwilioError as exc:
        if exc.ambiguous:  # maybe sent: never sent again automatically
            return Outcome(
                "unknown",
                error=f"outcome unknown: {exc}; check with the provider, then "
                f"`faithflow comms retry {msg.id}` to send it again",
            )
        if exc.permanent:
            return Outcome("failed", error=str(exc), suppress=exc.suppress)
        return _transient(settings, now, msg, str(exc), exc.retry_after)
    except UserError as exc:  # a setting went missing between the check and the send
        return _transient(settings, now, msg, str(exc), None)
    except Exception as exc:  # a bug or an unexpected library error: keep the message safe
        return _transient(settings, now, msg, f"{type(exc).__name__}: {exc}", None)


def _transient(
    settings: Settings, now: dt.datetime, msg: Claimed, error: str, retry_after: float | None
) -> Outcome:
    if msg.attempts >= settings.comms_max_attempts:
        return Outcome("failed", error=f"{error} (gave up after {msg.attempts} attempts)")
    at = now + dt.timedelta(seconds=retry_delay(settings, msg.attempts, retry_after))
    return Outcome("scheduled", error=error, retry_at=at)


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
        channel = str(action.data["channel"])
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
    by_id = {int(a.data["message"]): a for a in actions}
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
