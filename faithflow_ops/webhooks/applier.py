"""The applier: the receiver stores a verified delivery (`received`) and answers; this module
handles stored events with the webhook handlers, each event in its own transaction, so
exactly-once, order safety (`stale`), `unmatched` re-handling on link and replay keep their
meaning (`inbox.handle_stored`).

Who runs it: the `Worker` inside the receiver process (started and stopped with the app,
woken by each delivery it stores and, on Postgres, by `NOTIFY faithflow_webhooks` from other
replicas, with a short poll as the backstop), and the `webhooks apply` job for deployments that
turn the worker off (`FAITHFLOW_WEBHOOK_WORKER=off`) and as a catch-up after a crash.

Several of them may run at once (receiver replicas, cron):

- **Claim** a batch with one `UPDATE … SET locked_by, locked_until … WHERE id IN (SELECT …
  FOR UPDATE SKIP LOCKED) RETURNING` (SQLite: its single writer). The lease (60 s) is the
  crash guard: a killed worker's rows are claimable again once it has passed.
- **Apply** each claimed row in its own transaction, re-checking that it is still waiting and
  still ours (`FOR UPDATE`), so no event is applied twice. On Postgres the transaction first
  takes `pg_advisory_xact_lock` on the event's provider object, so two events for one object
  never run side by side on two workers (no create-create race on a new payment; the later one
  sees the earlier one's row). A batch is applied in provider-time order.
- **Our failure** keeps the row `failed` with the error; it is tried again after 1 min,
  doubling to 1 h, and after `MAX_ATTEMPTS` it stops and raises the `webhooks:failing`
  incident. `faithflow webhooks replay` works on any row.
"""

from __future__ import annotations

import datetime as dt
import os
import socket
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import structlog
from sqlalchemy import and_, func, or_, select, text, update
from sqlalchemy.orm import Session

from faithflow_ops.db import Database, utcnow
from faithflow_ops.incidents.records import raise_incident
from faithflow_ops.models import WebhookEvent
from faithflow_ops.webhooks import events, inbox
from faithflow_ops.webhooks.inbox import MAX_ATTEMPTS, Received

log = structlog.get_logger("faithflow.webhooks.applier")

LEASE = dt.timedelta(seconds=60)
CHANNEL = "faithflow_webhooks"  # NOTIFY channel the receiver's ingest signals
INCIDENT_CAUSE = "webhooks:failing"
BATCH = 100


def due(now: dt.datetime) -> Any:
    """Rows still to handle at `now`: stored and not applied yet, or failed and due again
    (a failed row with no `next_attempt_at` has used up its attempts)."""
    return or_(
        WebhookEvent.status == "received",
        and_(WebhookEvent.status == "failed", WebhookEvent.next_attempt_at <= now),
    )


def _free(now: dt.datetime) -> Any:
    return or_(WebhookEvent.locked_until.is_(None), WebhookEvent.locked_until < now)


@dataclass(frozen=True)
class Claimed:
    id: int
    provider: str
    object_id: str | None
    occurred_at: dt.datetime | None


@dataclass
class ApplyStats:
    """What one `apply_waiting` did: statuses the events ended in, and for the live worker the
    seconds from acknowledgement to applied."""

    claimed: int = 0
    statuses: Counter[str] = field(default_factory=Counter)
    latencies: list[float] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"claimed": self.claimed, "statuses": dict(self.statuses)}


def claim(
    db: Database, worker: str, now: dt.datetime, limit: int, ids: list[int] | None = None
) -> list[Claimed]:
    """Lease up to `limit` due rows (or just `ids`) to `worker`, oldest due first."""
    with db.session() as session:
        pick = select(WebhookEvent.id).where(due(now), _free(now))
        if ids is not None:
            pick = pick.where(WebhookEvent.id.in_(ids))
        pick = pick.order_by(WebhookEvent.next_attempt_at, WebhookEvent.id).limit(limit)
        if db.dialect == "postgresql":
            pick = pick.with_for_update(skip_locked=True)
        rows = session.execute(
            update(WebhookEvent)
            .where(WebhookEvent.id.in_(pick.scalar_subquery()))
            .values(locked_by=worker[:64], locked_until=now + LEASE)
            .returning(
                WebhookEvent.id,
                WebhookEvent.provider,
                WebhookEvent.object_id,
                WebhookEvent.occurred_at,
            )
            .execution_options(synchronize_session=False)
        ).all()
    claimed = [Claimed(r.id, r.provider, r.object_id, r.occurred_at) for r in rows]
    # Provider-time order within the batch (events without a time keep arrival order).
    floor = dt.datetime.min.replace(tzinfo=dt.UTC)
    return sorted(claimed, key=lambda c: (c.occurred_at or floor, c.id))


def apply_one(
    db: Database, claimed: Claimed, worker: str, now: dt.datetime | None = None
) -> tuple[Received, dt.datetime] | None:
    """Handle one claimed row in its own transaction: what became of it and when it was first
    received. None when it is no longer ours to handle (applied elsewhere, or our lease ran
    out and another worker took it).

    The transaction commits without waiting for the disk (`synchronous_commit = off`): the
    delivery itself was made durable when it was acknowledged, and the status and the effects
    commit together, so a database crash can only lose both — the row is `received` again and
    is applied again. Our handler failing rolls the transaction back; the failure is recorded
    in a second one."""
    at = now or utcnow()
    try:
        with db.session() as session:
            row = _take(db, session, claimed, worker)
            if row is None:
                return None
            received_at = row.first_received_at
            try:
                event = inbox.stored_event(row)
            except events.MalformedEvent as exc:
                gave_up = inbox.give_up_unparsed(session, row, str(exc), at)
                _raise_failing(session, row, gave_up, at)
                return gave_up, received_at
            return inbox.apply_stored(session, row.id, event, at, row.delivery_count), received_at
    except inbox.HandlerFailed as failed:
        with db.session() as session:
            row = _take(db, session, claimed, worker)
            if row is None:
                return None
            event = inbox.stored_event(row)
            result = inbox.record_failure(session, row.id, event, at, row.delivery_count, failed)
            if row.attempts + 1 >= MAX_ATTEMPTS:
                _raise_failing(session, row, result, at)
            return result, row.first_received_at


def apply_in(session: Session, event_id: int, now: dt.datetime) -> Received | None:
    """Handle one due event inside the caller's transaction (isolated by a savepoint: a handler
    failure is recorded on the row, with backoff and, at the last attempt, the incident);
    None when it is no longer due (handled meanwhile)."""
    row = session.scalar(
        select(WebhookEvent).where(WebhookEvent.id == event_id, due(now)).with_for_update()
    )
    if row is None:
        return None
    result = inbox.handle_row(session, row, now)
    attempts = session.scalar(select(WebhookEvent.attempts).where(WebhookEvent.id == event_id))
    if result.status == "failed" and (attempts or 0) >= MAX_ATTEMPTS:
        _raise_failing(session, row, result, now)
    return result


def _take(db: Database, session: Session, claimed: Claimed, worker: str) -> WebhookEvent | None:
    """Open the event's transaction: lock its provider object (Postgres), then the row, if it
    is still waiting and still ours."""
    if db.dialect == "postgresql":
        session.execute(text("SET LOCAL synchronous_commit = off"))
        if claimed.object_id:
            lock_object(session, claimed.provider, claimed.object_id)
    return session.scalar(
        select(WebhookEvent)
        .where(
            WebhookEvent.id == claimed.id,
            WebhookEvent.locked_by == worker[:64],
            WebhookEvent.status.in_(("received", "failed")),
        )
        .with_for_update()
    )


def lock_object(session: Session, provider: str, object_id: str) -> None:
    """Hold the provider object's lock until the transaction ends (Postgres; SQLite has one
    writer): the applier takes it before handling an event of the object, and other writers
    whose change an event of it waits for (`streams sync` making a session live) take it too,
    so the event either sees their change or is seen by them."""
    if session.get_bind().dialect.name == "postgresql":
        key = f"{provider}:{object_id}"
        session.execute(select(func.pg_advisory_xact_lock(func.hashtext(key))))


def _raise_failing(session: Session, row: WebhookEvent, result: Received, at: dt.datetime) -> None:
    raise_incident(
        session,
        cause=INCIDENT_CAUSE,
        kind="webhooks",
        title="webhook events fail to apply and are no longer retried",
        now=at,
        severity="critical",
        detail=(
            f"webhook event {row.id} ({row.provider} {row.event_type}) failed "
            f"{MAX_ATTEMPTS} times: {result.detail or ''}"[:1000]
            + "; fix the cause, then `faithflow webhooks replay --failed`"
        ),
    )
    log.error("webhook event gave up", id=row.id, type=row.event_type, attempts=MAX_ATTEMPTS)


def apply_waiting(
    db: Database,
    *,
    now: dt.datetime | None = None,
    limit: int | None = None,
    worker: str | None = None,
    batch: int = BATCH,
    stop: threading.Event | None = None,
    pace: Callable[[], None] | None = None,
) -> ApplyStats:
    """Claim and apply due rows until none is left (or `limit` were claimed, or `stop`).
    `pace` runs after each event (the receiver's worker gives way to deliveries there)."""
    worker = worker or default_worker_name()
    stats = ApplyStats()
    while limit is None or stats.claimed < limit:
        size = batch if limit is None else min(batch, limit - stats.claimed)
        claimed = claim(db, worker, now or utcnow(), size)
        stats.claimed += len(claimed)
        for item in claimed:
            done = apply_one(db, item, worker, now)
            if done is None:
                continue
            result, received_at = done
            stats.statuses[result.status] += 1
            if now is None and result.status != "failed":
                stats.latencies.append(max((utcnow() - received_at).total_seconds(), 0.0))
            if pace is not None:
                pace()
        if len(claimed) < size or (stop is not None and stop.is_set()):
            break
    return stats


def default_worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{threading.get_ident()}"


def backlog(session: Session, now: dt.datetime) -> tuple[int, float]:
    """Rows waiting to be applied (received, or failed and due) and the age in seconds of the
    oldest of them (0 with none) — the receiver's gauges and the health check."""
    count, oldest = session.execute(
        select(func.count(), func.min(WebhookEvent.first_received_at)).where(due(now))
    ).one()
    age = max((now - oldest).total_seconds(), 0.0) if oldest is not None else 0.0
    return int(count or 0), age


class Worker:
    """Applies stored deliveries in a background thread of the receiver process.

    `wake()` (called by the ingest path after each commit) runs a pass at once; on Postgres a
    second thread LISTENs on `faithflow_webhooks` so deliveries stored by other replicas wake
    it too; `poll` seconds is the backstop (and when failed rows come due)."""

    # While deliveries are arriving (one in the last BUSY_WINDOW seconds), the worker waits
    # GIVE_WAY seconds after each event: acknowledging comes first (the provider is waiting,
    # and it shares this process's interpreter lock); the backlog drains once the burst ends.
    BUSY_WINDOW = 0.05
    GIVE_WAY = 0.1

    def __init__(
        self,
        db: Database,
        *,
        poll: float = 2.0,
        on_pass: Callable[[ApplyStats], None] | None = None,
        name: str | None = None,
    ) -> None:
        self.db = db
        self.poll = poll
        self.last_delivery = 0.0  # time.monotonic() of the last wake() by a delivery
        self.on_pass = on_pass
        self.name = name or default_worker_name()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        # The listener waits on its connection's socket and on this pipe at once: `stop()`
        # writes to it, so stopping the receiver (a deploy, every test's app) never waits out
        # a poll. (A 0.2 s tick made each Postgres receiver's stop take 0.11 s.)
        self._interrupt: tuple[int, int] | None = None
        self.passes = 0

    def start(self) -> None:
        runner = threading.Thread(target=self._run, name="webhook-applier", daemon=True)
        self._threads = [runner]
        if self.db.dialect == "postgresql":
            self._interrupt = os.pipe()
            listener = threading.Thread(target=self._listen, name="webhook-listen", daemon=True)
            self._threads.append(listener)
        for thread in self._threads:
            thread.start()

    def wake(self) -> None:
        """A delivery was stored: apply it soon."""
        self.last_delivery = time.monotonic()
        self._wake.set()

    def _give_way(self) -> None:
        if time.monotonic() - self.last_delivery < self.BUSY_WINDOW:
            self._stop.wait(self.GIVE_WAY)

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        self._wake.set()
        if self._interrupt is not None:
            os.write(self._interrupt[1], b"x")
        for thread in self._threads:
            thread.join(timeout)
        if self._interrupt is not None and not any(t.is_alive() for t in self._threads):
            for fd in self._interrupt:
                os.close(fd)
            self._interrupt = None

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.clear()
            try:
                stats = apply_waiting(
                    self.db, worker=self.name, stop=self._stop, pace=self._give_way
                )
                self.passes += 1
                if self.on_pass is not None:
                    self.on_pass(stats)
            except Exception as exc:  # the database went away: keep the thread, try later
                log.warning("webhook applier pass failed", error=type(exc).__name__)
                self._stop.wait(self.poll)
                continue
            if stats.claimed:
                continue  # more may have arrived while applying
            self._wake.wait(self.poll)

    def _listen(self) -> None:
        import select

        import psycopg

        assert self._interrupt is not None  # made by start()
        interrupt = self._interrupt[0]
        url = self.db.engine.url.set(drivername="postgresql")
        conninfo = url.render_as_string(hide_password=False)
        while not self._stop.is_set():
            try:
                with psycopg.connect(conninfo, autocommit=True, connect_timeout=5) as conn:
                    conn.execute(f"LISTEN {CHANNEL}")
                    while not self._stop.is_set():
                        ready, _, _ = select.select([conn.fileno(), interrupt], [], [])
                        if interrupt in ready:
                            return  # stop() was called
                        # what arrived (a lost connection raises here, and reconnects)
                        if any(True for _ in conn.notifies(timeout=0)):
                            self.wake()
            except Exception as exc:
                log.warning("webhook listener reconnecting", error=type(exc).__name__)
                self._stop.wait(self.poll)
