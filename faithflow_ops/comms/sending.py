"""Applying a dispatch plan (faithflow_ops.comms.dispatch): the single-row kinds, and the
sending of a batch of `send` actions.

`mark_unknown` and `suppress` are one conditional UPDATE each, in the caller's transaction.
`send_batch` sends a batch of send actions with at most FAITHFLOW_COMMS_CONCURRENCY messages
claimed at any time (`_SendLoop`):

1. claim, committed just before the message is handed to a sending thread (one statement for
   the slots free at that moment): `UPDATE … SET status='sending', lease_expires_at = now +
   FAITHFLOW_COMMS_LEASE_SECONDS, claimed_by = <this loop>, attempts = attempts + 1 WHERE id
   IN (…) AND status IN ('queued','scheduled') AND next_attempt_at <= now AND <no suppression
   in force> RETURNING …`. A message another dispatcher claimed (or that changed) is not
   returned: that action is `stale`, never sent.
2. send: SMS/WhatsApp through one Twilio connection pool, e-mail through one SMTP connection
   per sending thread, kept for the batch. What each provider answer means is `comms.outcomes`.
3. mark the outcomes as they come (those finished together in one transaction), only while
   this loop still holds each claim (`status='sending' AND claimed_by = <this loop>`): `sent`
   (provider id, sent_at), `unknown`, `scheduled` (retry at) or `failed`; a bounce or a STOP
   reply adds the recipient to the suppression list. Then the free slots claim the next ones.

Claims and marks are retried through a database outage of up to about 30 s
(`WRITE_RETRY_DELAYS`); a longer one fails the run (`BookkeepingError`, exit 1) naming the
outcomes it could not record.

SIGTERM / SIGINT (`stop_on_signals`): nothing more is claimed, the sends in flight finish and
are marked, the messages not yet claimed stay `queued`; then the runner records the run.

A crash (`kill -9`) between 2 and 3 leaves at most FAITHFLOW_COMMS_CONCURRENCY messages
`sending`: the next dispatch after their lease makes them `unknown` — at most once, by
construction.
"""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import queue
import signal
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

import structlog
from sqlalchemy import and_, bindparam, exists, select, update
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.orm import Session

from faithflow_ops.actions import Action, ActionResult, StaleAction, decode
from faithflow_ops.clock import iso
from faithflow_ops.comms.bounces import record as record_bounce
from faithflow_ops.comms.bounces import settle as settle_bounces
from faithflow_ops.comms.dispatch import Defer, MarkUnknown, Send, Suppress
from faithflow_ops.comms.outbox import control_character
from faithflow_ops.comms.outcomes import Claimed, Outcome, from_error
from faithflow_ops.comms.status import apply_early, callback_url
from faithflow_ops.comms.suppression import MESSAGES, add_suppression, in_force
from faithflow_ops.comms.whatsapp import encode_variables
from faithflow_ops.db import Database, lock_holder_id, rowcount
from faithflow_ops.errors import ConfigError
from faithflow_ops.models.comms import PENDING_STATUSES

if TYPE_CHECKING:
    from faithflow_ops.config import Settings
    from faithflow_ops.providers.smtp import Mailer
    from faithflow_ops.providers.twilio import TwilioClient

log = structlog.get_logger("faithflow.comms")


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


def apply_defer(session: Session, now: dt.datetime, action: Action) -> None:
    """`defer`: the due message waits for the end of its tenant's quiet hours (attempts kept)."""
    p = decode(Defer, action.data)
    result = session.execute(
        update(MESSAGES)
        .where(
            MESSAGES.c.id == p.message,
            MESSAGES.c.status.in_(PENDING_STATUSES),
            MESSAGES.c.next_attempt_at <= now,
        )
        .values(status="scheduled", next_attempt_at=p.until, updated_at=now)
    )
    if rowcount(result) != 1:
        raise StaleAction(f"message {p.message} is no longer due")


# --- send ----------------------------------------------------------------------------------------


_CLAIMED_COLUMNS = (
    MESSAGES.c.id,
    MESSAGES.c.channel,
    MESSAGES.c.recipient,
    MESSAGES.c.subject,
    MESSAGES.c.body,
    MESSAGES.c.attempts,
    MESSAGES.c.idempotency_key,
    MESSAGES.c.content_sid,
    MESSAGES.c.content_variables,
)


def _claim(
    session: Session,
    settings: Settings,
    now: dt.datetime,
    ids: Sequence[int],
    holder: str,
    *,
    again: bool = False,
) -> list[Claimed]:
    """Claim the still-due, unsuppressed messages among `ids` for `holder`, in the caller's
    transaction (committed before any of them is sent). `again`: a retry after a failed write, which
    first looks for the claim that write may have committed after all (its answer lost)."""
    if not ids:
        return []
    if again:
        rows = session.execute(
            select(*_CLAIMED_COLUMNS).where(
                MESSAGES.c.id.in_(list(ids)),
                MESSAGES.c.status == "sending",
                MESSAGES.c.claimed_by == holder,
            )
        ).all()
        if rows:
            return [Claimed(*row) for row in rows]
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
        .returning(*_CLAIMED_COLUMNS)
    )
    return [Claimed(*row) for row in session.execute(stmt).all()]


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
        problem = control_character(settings.require("email_from", "EMAIL_FROM"))
        if problem:
            raise ConfigError(
                f"EMAIL_FROM contains a control character ({problem}); it goes into the From "
                "header, which is one line: set it to e.g. FaithFlow <billing@example.org>"
            )
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
        # WhatsApp: the approved template and its values, never free text (Twilio 63016).
        variables = msg.content_variables
        sent = senders.twilio().send(
            msg.channel,
            msg.recipient,
            msg.body,
            status_callback=callback_url(settings, msg.id),
            content_sid=msg.content_sid,
            content_variables=encode_variables(variables) if variables is not None else None,
        )
        return Outcome("sent", provider_message_id=sent.sid or None)
    except Exception as exc:  # every failure becomes an outcome: the message is kept safe
        return from_error(settings, now, msg, exc)


def _mark(
    session: Session,
    now: dt.datetime,
    holder: str,
    done: Sequence[tuple[Claimed, Outcome]],
) -> set[int]:
    """Record the outcomes, while `holder` still holds each claim; returns the ids whose claim
    was lost (declared `unknown` by a later dispatch in the meantime). One statement per kind
    of outcome, executed for many rows at once (the driver's executemany). Idempotent: run
    again after a commit that landed, it finds the rows already in their final state and
    reports none lost."""
    if not done:
        return set()
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
    conn = session.connection()
    for key, stmt in statements.items():
        if params[key]:
            marked += rowcount(conn.execute(stmt, params[key]))
    # Twilio status callbacks that came before these sids were recorded (comms.status).
    sent = [(m.id, o.provider_message_id) for m, o in done if o.status == "sent"]
    apply_early(session, [(i, sid) for i, sid in sent if sid], now)
    for msg, outcome in done:
        if outcome.bounce is not None:  # settled once the batch is sent (comms.bounces)
            record_bounce(
                session,
                message_id=msg.id,
                channel=msg.channel,
                recipient=msg.recipient,
                note=outcome.bounce,
                source="smtp",
                now=now,
                run=holder,
            )
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


# --- bookkeeping writes that outlive a short database outage ----------------------------------

# Seconds to wait before each further attempt of a claim or a mark (about 30 s in all): an
# outcome the provider gave is worth waiting for the database; a longer outage fails the run.
WRITE_RETRY_DELAYS: tuple[float, ...] = (0.25, 0.5, 1, 2, 4, 8, 15)

T = TypeVar("T")


class BookkeepingError(RuntimeError):
    """The database refused a claim or a mark for longer than the retry window: the run
    fails (exit 1, like any error of ours); the message says which outcomes were lost."""


def _transient_db_error(exc: BaseException) -> bool:
    """A database error worth another attempt: the connection or the server went away, a
    lock or a timeout — not a bad statement."""
    if isinstance(exc, OperationalError | InterfaceError):
        return True
    return isinstance(exc, DBAPIError) and exc.connection_invalidated


def with_retry(what: str, write: Callable[[int], T]) -> T:
    """`write(attempt)` (its own transaction), again after each of WRITE_RETRY_DELAYS while
    the database is unreachable; BookkeepingError when it still is."""
    for attempt, delay in enumerate((*WRITE_RETRY_DELAYS, None)):
        try:
            return write(attempt)
        except Exception as exc:
            if not _transient_db_error(exc):
                raise
            if delay is None:
                waited = sum(WRITE_RETRY_DELAYS)
                raise BookkeepingError(
                    f"the database refused {what} for {waited:g} s "
                    f"({attempt + 1} attempts; last: {type(exc).__name__}: "
                    f"{str(exc).splitlines()[0][:200]})"
                ) from exc
            log.warning(
                "comms bookkeeping write failed; retrying",
                what=what,
                attempt=attempt + 1,
                retry_in=delay,
                error=type(exc).__name__,
            )
            time.sleep(delay)
    raise AssertionError("unreachable")


def step(
    db: Database,
    settings: Settings,
    now: dt.datetime,
    holder: str,
    done: Sequence[tuple[Claimed, Outcome]],
    take: Sequence[int],
) -> tuple[set[int], list[Claimed]]:
    """One transaction of the send loop, retried through a database outage: record the
    outcomes `done` (`_mark`) and claim the messages `take` for the slots they freed (`_claim`).
    Returns (ids whose claim was lost, messages claimed). BookkeepingError names the outcomes
    it could not record."""

    def write(attempt: int) -> tuple[set[int], list[Claimed]]:
        with db.session() as session:
            lost = _mark(session, now, holder, done) if done else set()
            return lost, _claim(session, settings, now, take, holder, again=attempt > 0)

    what = " and ".join(
        part
        for part in (
            f"recording {len(done)} outcome(s)" if done else "",
            f"claiming {len(take)} message(s)" if take else "",
        )
        if part
    )
    try:
        return with_retry(what, write)
    except BookkeepingError as exc:
        if not done:
            raise
        outcomes = ", ".join(f"{msg.id} {outcome.status}" for msg, outcome in done[:20])
        more = f" and {len(done) - 20} more" if len(done) > 20 else ""
        raise BookkeepingError(
            f"{exc}; not recorded: message {outcomes}{more} (they stay sending and become "
            "unknown after FAITHFLOW_COMMS_LEASE_SECONDS; see `faithflow comms retry --status "
            "unknown --dry-run`)"
        ) from exc


# --- stopping on SIGTERM / SIGINT --------------------------------------------------------------


@dataclass(frozen=True)
class _Stop:
    signum: int


# The event queues of the send loops running now: a stop is put into each. Touched by the
# signal handler (main thread) without a lock: adding to and copying a set are atomic.
_LOOPS: set[queue.SimpleQueue[Any]] = set()
_stopped: int | None = None  # the signal that asked this process to stop, if one did


def request_stop(signum: int) -> None:
    """Ask every send loop to claim nothing more: the sends in flight finish and are recorded,
    the messages not yet claimed stay queued. Safe to call from a signal handler."""
    global _stopped
    _stopped = signum
    for events in list(_LOOPS):
        events.put(_Stop(signum))


def stop_on_signals() -> None:
    """On the main thread, before a dispatch run: make SIGTERM and SIGINT call `request_stop`
    first, then whatever handler was installed (the runner's, which records the run as
    terminated once the batch in flight has landed). A handler that was the default one ends
    the process the same way, by SystemExit(128 + signal) after the batch. Off the main thread
    (the receiver) this does nothing: there the process is stopped by its server."""
    global _stopped
    if threading.current_thread() is not threading.main_thread():
        return
    _stopped = None
    for signum in (signal.SIGTERM, signal.SIGINT):
        previous = signal.getsignal(signum)
        if isinstance(previous, _Chained) or previous == signal.SIG_IGN:
            continue
        signal.signal(signum, _Chained(previous))


class _Chained:
    """A signal handler: `request_stop`, then the handler it replaced."""

    def __init__(self, previous: Any) -> None:
        self.previous = previous

    def __call__(self, signum: int, frame: Any) -> None:
        request_stop(signum)
        if callable(self.previous):
            self.previous(signum, frame)
        else:  # SIG_DFL (or a handler not installed from Python): stop after the batch
            raise SystemExit(128 + signum)


# --- the send loop -----------------------------------------------------------------------------


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
        senders = Senders(settings)
        loop = _SendLoop(db, settings, now, ready, senders)
        try:
            results.update(loop.run())
        finally:
            senders.close()
        if loop.emails:
            _settle(db, settings, now, loop.holder, loop.emails, loop.emails_sent)
    return [results[id(a)] for a in actions]


def _settle(
    db: Database, settings: Settings, now: dt.datetime, holder: str, emails: int, sent: int
) -> None:
    """Settle the batch's e-mail bounces (comms.bounces): suppressions, or an incident. A
    failure is logged, not raised: the outcomes are recorded, and the bounces stay unsettled
    for the next dispatch to settle."""

    def write(_: int) -> None:
        with db.session() as session:
            settled = settle_bounces(
                session, settings, now, run=holder, emails=emails, accepted=sent
            )
        if settled.suppressed or settled.incidents:
            log.info("comms bounces settled", run=holder, emails=emails, **settled.to_dict())

    try:
        with_retry("settling the batch's bounces", write)
    except Exception as exc:
        log.error("comms bounces not settled", run=holder, error=f"{type(exc).__name__}: {exc}")


class _SendLoop:
    """At most FAITHFLOW_COMMS_CONCURRENCY messages claimed at a time, each claimed just
    before it is handed to a sending thread; outcomes recorded as they come (those that came
    together in one transaction), and a free slot claims the next message."""

    def __init__(
        self,
        db: Database,
        settings: Settings,
        now: dt.datetime,
        actions: Sequence[Action],
        senders: Senders,
    ) -> None:
        self.db, self.settings, self.now, self.senders = db, settings, now, senders
        self.by_id = {decode(Send, a.data).message: a for a in actions}
        self.waiting = deque(self.by_id)
        self.slots = max(1, min(settings.comms_concurrency, len(self.by_id)))
        self.holder = new_holder()
        self.events: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self.inflight: dict[int, Claimed] = {}
        self.results: dict[int, ActionResult] = {}
        self.stop: int | None = None
        self.emails = 0  # e-mails claimed (the bounce-burst rule's denominator)
        self.emails_sent = 0  # ... and accepted by the server

    def run(self) -> dict[int, ActionResult]:
        _LOOPS.add(self.events)
        finished: list[tuple[Claimed, Outcome]] = []
        try:
            with ThreadPoolExecutor(self.slots, thread_name_prefix="comms-send") as pool:
                while True:
                    if self.stop is None and _stopped is not None:
                        self._stopping(_stopped)
                    take: list[int] = []
                    if self.stop is None:
                        free = min(self.slots - len(self.inflight), len(self.waiting))
                        take = [self.waiting.popleft() for _ in range(free)]
                    if finished or take:
                        claimed = self._step(finished, take)
                        finished = []
                        for msg in claimed:
                            self.inflight[msg.id] = msg
                            future = pool.submit(
                                send_one, self.senders, self.settings, self.now, msg
                            )
                            future.add_done_callback(functools.partial(self._finished, msg))
                        if len(claimed) < len(take) and self.waiting:
                            continue  # some were no longer due: fill the slots they left
                    if not self.inflight:
                        break
                    finished = self._next_finished()
        finally:
            _LOOPS.discard(self.events)
        for message_id in self.waiting:  # only left when stopped: never claimed
            assert self.stop is not None
            name = signal.Signals(self.stop).name
            self.results[id(self.by_id[message_id])] = ActionResult(
                self.by_id[message_id],
                "failed",
                f"not sent: the dispatch was stopped by {name} before claiming it; still "
                "queued for the next dispatch",
            )
        return self.results

    def _step(self, finished: list[tuple[Claimed, Outcome]], take: list[int]) -> list[Claimed]:
        """Record `finished`, claim `take` (one transaction); the claimed messages."""
        lost, claimed = step(self.db, self.settings, self.now, self.holder, finished, take)
        for msg, outcome in finished:
            action = self.by_id[msg.id]
            self.emails_sent += msg.channel == "email" and outcome.status == "sent"
            self.results[id(action)] = _result(self.settings, action, msg, outcome, msg.id in lost)
        taken = {msg.id for msg in claimed}
        self.emails += sum(1 for msg in claimed if msg.channel == "email")
        for message_id in take:
            if message_id not in taken:
                action = self.by_id[message_id]
                self.results[id(action)] = ActionResult(
                    action,
                    "stale",
                    f"message {message_id} is no longer due (sent, claimed by another "
                    "dispatcher, canceled or suppressed since the plan)",
                )
        return claimed

    def _finished(self, msg: Claimed, future: Future[Outcome]) -> None:
        self.events.put((msg, future))

    def _next_finished(self) -> list[tuple[Claimed, Outcome]]:
        """Wait for the next finished send (or a stop), then take every one already finished;
        they leave `inflight`."""
        items = [self.events.get()]
        while True:
            try:
                items.append(self.events.get_nowait())
            except queue.Empty:
                break
        finished = []
        for item in items:
            if isinstance(item, _Stop):
                if self.stop is None:
                    self._stopping(item.signum)
            else:
                msg, future = item
                del self.inflight[msg.id]
                finished.append((msg, future.result()))
        return finished

    def _stopping(self, signum: int) -> None:
        self.stop = signum
        log.warning(
            f"comms dispatch stopping ({signal.Signals(signum).name}): finishing "
            f"{len(self.inflight)} send(s) in flight; {len(self.waiting)} message(s) not "
            "claimed stay queued",
            in_flight=len(self.inflight),
            left_queued=len(self.waiting),
        )


def _result(
    settings: Settings, action: Action, msg: Claimed, outcome: Outcome, lost: bool
) -> ActionResult:
    if lost:
        return ActionResult(
            action,
            "failed",
            f"{outcome.status} but the claim had been lost (lease ended; the message "
            "is now unknown): raise FAITHFLOW_COMMS_LEASE_SECONDS",
        )
    if outcome.status == "sent":
        return ActionResult(action, "applied")
    if outcome.status == "scheduled":
        assert outcome.retry_at is not None
        return ActionResult(
            action,
            "failed",
            f"{outcome.error}; retry {msg.attempts + 1} of {settings.comms_max_attempts} "
            f"at {outcome.retry_at.isoformat()}",
        )
    return ActionResult(action, "failed", outcome.error)
