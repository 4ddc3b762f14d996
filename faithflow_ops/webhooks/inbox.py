"""Handling stored webhook events: the handlers' outcome written on the row, once.

The receiver stores deliveries (`ingest`) and the applier (`applier`) handles them through
`apply_stored` / `record_failure`; `replay` (operators, `--failed`, `--unmatched`) and the
re-drives after a link (`redrive_customer`, `link_and_handle`) or after an event's object
arrives (`Outcome.unblocked`) run the same `_handle`, isolated by a savepoint.

- A row already `applied`, `ignored` or `stale` is never handled again.
- If the handler raises, its writes are undone and the row is kept `failed` with the error,
  retried with backoff (`backoff`, `MAX_ATTEMPTS`). A database failure propagates.
- When an event links a customer to a tenant (checkout), that customer's `unmatched` events
  are handled right after, in the same transaction: order of arrival does not matter.

`receive` stores a delivery and handles it at once in one transaction: the handler-level
tests and tools use it; the live receiver does not (it acknowledges once stored).
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any, cast

import structlog
from sqlalchemy import Table, bindparam, select, text
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.orm import Session

from faithflow_ops.billing import lifecycle as effects
from faithflow_ops.billing import live as one_live
from faithflow_ops.billing.lifecycle import Outcome
from faithflow_ops.db import Database, JSONType, UTCDateTime, utcnow
from faithflow_ops.errors import NotFound, UserError
from faithflow_ops.models import WebhookEvent
from faithflow_ops.tenancy import accounts
from faithflow_ops.webhooks import events
from faithflow_ops.webhooks.events import InboundEvent

log = structlog.get_logger("faithflow.webhooks")
_EVENTS = cast(Table, WebhookEvent.__table__)

DONE = frozenset({"applied", "ignored", "stale"})  # a redelivery changes nothing
RETRIED = frozenset({"unmatched", "failed"})  # a redelivery or replay handles it again

Handler = Callable[[Session, InboundEvent], Outcome]


def _routes(provider: str) -> dict[str, dict[str, Handler]]:
    if provider == "stripe":
        from faithflow_ops.webhooks.stripe import HANDLERS
    elif provider == "mux":
        from faithflow_ops.webhooks.mux import HANDLERS
    else:
        from faithflow_ops.webhooks.paystack import HANDLERS
    return HANDLERS


def handler_for(event: InboundEvent) -> Handler | None:
    return _routes(event.provider)[event.scope].get(event.type)


def parse_event(provider: str, scope: str, payload: object) -> InboundEvent:
    """`events.parse`, and a Stripe event we act on must name its object: every handler keys
    its row on `data.object.id`, so one without it is malformed (never applied to `None`).
    An id-less object we do not act on (a `balance`) is still an event, stored as ignored."""
    event = events.parse(provider, scope, payload)
    if event.provider == "stripe" and event.object_id is None and handler_for(event):
        raise events.MalformedEvent(
            f"Stripe {event.type} event {event.key}: data.object has no id, so there is "
            "nothing to apply it to"
        )
    return event


def handled_types(provider: str, scope: str) -> list[str]:
    """Event types the `provider` endpoint of `scope` acts on (others are stored as ignored)."""
    return sorted(_routes(provider)[scope])


@dataclass(frozen=True)
class Received:
    """What happened to one delivery (or replay): the JSON the receiver answers with."""

    id: int
    event_key: str
    type: str
    status: str
    duplicate: bool
    delivery_count: int
    detail: str | None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def receive(db: Database, event: InboundEvent, *, now: dt.datetime | None = None) -> Received:
    """Store one verified delivery and handle it unless it is a duplicate."""
    now = now or utcnow()
    try:
        with db.session() as session:
            row_id, status, count = _record(session, event, now)
            if status in DONE:
                return Received(row_id, event.key, event.type, status, True, count, None)
            # No savepoint on this path (two round trips saved per delivery): if the handler
            # fails, the whole transaction rolls back and the failure is recorded below.
            outcome = _outcome(session, event, isolate=False)
            return _finish(session, row_id, event, now, count, outcome)
    except _HandlerFailed as failed:
        with db.session() as session:
            row_id, status, count = _record(session, event, now)
            if status in DONE:  # another delivery of it was applied meanwhile
                return Received(row_id, event.key, event.type, status, True, count, None)
            return _finish(session, row_id, event, now, count, failed)


# Step 1 as one textual statement: SQLAlchemy never caches the compiled form of a dialect's
# `insert().on_conflict_do_update()` (its cache key is None), so building it per delivery
# compiled it per delivery — 14% of the receiver's CPU under load. A `text()` with typed binds
# is compiled once. The same SQL runs on Postgres and SQLite (3.35+: RETURNING).
_RECORD = text(
    "INSERT INTO webhook_events (provider, scope, event_key, event_type, object_id, "
    "customer_ref, account_ref, occurred_at, payload, status, last_error, delivery_count, "
    "first_received_at, last_received_at, created_at, updated_at) "
    "VALUES (:provider, :scope, :event_key, :event_type, :object_id, :customer_ref, "
    ":account_ref, :occurred_at, :payload, 'failed', 'not handled yet', 1, "
    ":now, :now, :now, :now) "
    "ON CONFLICT (provider, scope, event_key) DO UPDATE SET "
    "delivery_count = webhook_events.delivery_count + 1, "
    "last_received_at = :now, updated_at = :now "
    "RETURNING id, status, delivery_count"
).bindparams(
    bindparam("occurred_at", type_=UTCDateTime()),
    bindparam("payload", type_=JSONType),
    bindparam("now", type_=UTCDateTime()),
)


def _record(session: Session, event: InboundEvent, now: dt.datetime) -> tuple[int, str, int]:
    """Insert the delivery as `failed` (replaced before this transaction commits) or count it
    once more; returns (id, status, delivery_count) of the row."""
    row = session.execute(
        _RECORD,
        {
            "provider": event.provider,
            "scope": event.scope,
            "event_key": event.key,
            "event_type": event.type[:100],
            "object_id": (event.object_id or "")[:128] or None,
            "customer_ref": event.customer_ref,
            "account_ref": (event.account_ref or "")[:128] or None,
            "occurred_at": event.occurred_at,
            "payload": event.payload,
            "now": now,
        },
    ).one()
    return int(row.id), str(row.status), int(row.delivery_count)


class _HandlerFailed(Exception):
    """Our handler raised: its writes are to be undone and the event kept as `failed`."""

    def __init__(self, error: str) -> None:
        super().__init__(error)
        self.error = error[:2000]


def _outcome(session: Session, event: InboundEvent, *, isolate: bool) -> Outcome:
    """Run the event's handler. `isolate`: inside a savepoint, so a failure undoes only the
    handler's writes (replay, and events handled inside another event's transaction).
    Raises _HandlerFailed for our errors; database failures propagate (the receiver's 503)."""
    handler = handler_for(event)
    if handler is None:
        return effects.ignored(f"{event.type} is not handled on the {event.scope} endpoint")
    if event.provider == "stripe" and event.occurred_at is None:
        # Stored as received (a verified delivery is never lost), but Stripe orders every
        # change by `created`, and this one's is outside any real time.
        return effects.ignored("its `created` is outside the range of real times; not applied")
    try:
        if not isolate:
            return handler(session, event)
        with session.begin_nested():
            return handler(session, event)
    except (OperationalError, DBAPIError) as exc:
        if isinstance(exc, OperationalError) or exc.connection_invalidated:
            raise  # the database itself: nothing is stored, the receiver answers 503
        if one_live.is_live_conflict(exc):  # a race the handler's check could not see
            raise _HandlerFailed(f"{one_live.RACE}; tried again with backoff") from exc
        first = str(exc.orig).strip().splitlines()[0] if str(exc.orig).strip() else ""
        raise _HandlerFailed(f"{type(exc.orig).__name__}: {first}") from exc
    except one_live.SecondLiveSubscription as exc:  # a refusal in words, not our bug
        raise _HandlerFailed(str(exc)) from exc
    except Exception as exc:  # our bug: keep the delivery and the error for replay
        log.error("webhook handler failed", event_key=event.key, type=event.type, exc_info=exc)
        raise _HandlerFailed(f"{type(exc).__name__}: {exc}") from exc


def _finish(
    session: Session,
    row_id: int,
    event: InboundEvent,
    now: dt.datetime,
    count: int,
    result: Outcome | _HandlerFailed,
    *,
    redrive: bool = True,
) -> Received:
    """Write the event's final status; then handle the unmatched events it unblocked."""
    values: dict[str, Any]
    if isinstance(result, _HandlerFailed):
        # Our own failure: tried again with backoff (1 min doubling to 1 h), then left for a
        # human after MAX_ATTEMPTS (the applier raises the `webhooks:failing` incident).
        values = {
            "status": "failed",
            "last_error": events.storable(result.error),
            "outcome": None,
            "attempts": _EVENTS.c.attempts + 1,
            "next_attempt_at": _retry_at(session, row_id, now),
        }
    else:
        values = {
            "status": result.status,
            # the detail may quote the event (its type, ids): text every database stores
            "outcome": events.storable(result.detail[:2000]),
            "last_error": None,
            "tenant_id": result.tenant_id,
            "next_attempt_at": None,
        }
        if result.status == "applied":
            values["applied_at"] = now
    values.update(updated_at=now, locked_by=None, locked_until=None)
    session.execute(_EVENTS.update().where(_EVENTS.c.id == row_id).values(**values))
    if not isinstance(result, _HandlerFailed) and redrive:
        for customer in result.linked_customers:
            redrive_customer(session, event.provider, customer, now=now)
        for waiting in result.unblocked:
            _redrive_event(session, waiting, now)
    detail = values.get("outcome") or values.get("last_error")
    return Received(row_id, event.key, event.type, values["status"], False, count, detail)


MAX_ATTEMPTS = 10  # our own failures of one event before it waits for a human
BACKOFF_FIRST = dt.timedelta(minutes=1)
BACKOFF_LAST = dt.timedelta(hours=1)


def backoff(attempts: int) -> dt.timedelta:
    """The wait after the `attempts`-th failure: 1 min, 2, 4 … capped at 1 h."""
    wait: dt.timedelta = BACKOFF_FIRST * 2 ** max(attempts - 1, 0)
    return min(wait, BACKOFF_LAST)


def _retry_at(session: Session, row_id: int, now: dt.datetime) -> dt.datetime | None:
    """When a row failing now is tried again (None: it has used up its attempts)."""
    attempts = (session.scalar(select(_EVENTS.c.attempts).where(_EVENTS.c.id == row_id)) or 0) + 1
    return None if attempts >= MAX_ATTEMPTS else now + backoff(attempts)


def _handle(
    session: Session,
    row_id: int,
    event: InboundEvent,
    now: dt.datetime,
    count: int,
    *,
    redrive: bool = True,
) -> Received:
    """Handle a stored event inside the caller's transaction, isolated by a savepoint."""
    result: Outcome | _HandlerFailed
    try:
        result = _outcome(session, event, isolate=True)
    except _HandlerFailed as failed:
        result = failed
    return _finish(session, row_id, event, now, count, result, redrive=redrive)


def handle_row(session: Session, row: WebhookEvent, now: dt.datetime) -> Received:
    """Handle one stored row (locked by the caller) in a savepoint of the caller's
    transaction; a body that no longer parses is kept `failed` with the reason."""
    try:
        event = stored_event(row)
    except events.MalformedEvent as exc:
        return give_up_unparsed(session, row, str(exc), now)
    return _handle(session, row.id, event, now, row.delivery_count)


def give_up_unparsed(session: Session, row: WebhookEvent, error: str, now: dt.datetime) -> Received:
    """A stored body that no longer parses (a parser change): kept, `failed` for good (no
    retry can help; a fixed parser and `webhooks replay` can)."""
    failed = _HandlerFailed(f"stored body does not parse: {error}")
    session.execute(
        _EVENTS.update()
        .where(_EVENTS.c.id == row.id)
        .values(
            status="failed",
            last_error=failed.error,
            attempts=MAX_ATTEMPTS,
            next_attempt_at=None,
            locked_by=None,
            locked_until=None,
            updated_at=now,
        )
    )
    return Received(
        row.id, row.event_key, row.event_type, "failed", False, row.delivery_count, failed.error
    )


HandlerFailed = _HandlerFailed  # what `apply_stored` raises when our handler fails


def apply_stored(
    session: Session, row_id: int, event: InboundEvent, now: dt.datetime, count: int
) -> Received:
    """Handle one stored event as the whole of the caller's transaction (the applier's unit
    of work): no savepoint, so when our handler fails this raises HandlerFailed and the
    caller rolls back, then records the failure with `record_failure`."""
    outcome = _outcome(session, event, isolate=False)
    return _finish(session, row_id, event, now, count, outcome)


def record_failure(
    session: Session,
    row_id: int,
    event: InboundEvent,
    now: dt.datetime,
    count: int,
    failed: _HandlerFailed,
) -> Received:
    """Keep a stored event `failed` with the error, tried again with backoff."""
    return _finish(session, row_id, event, now, count, failed)


def redrive_customer(
    session: Session, provider: str, customer: str, *, now: dt.datetime | None = None
) -> list[Received]:
    """Handle `customer`'s `unmatched` events again, oldest first, in the caller's transaction
    (after a checkout links the customer, `faithflow tenants link`, or the event that records
    the customer's subscription).

    Passes repeat while one of them gets further: an event can wait on another of the same
    customer (Paystack's first `charge.success` waits for its `subscription.create`, which may
    sit behind it in provider time), so the order of arrival never decides the outcome."""
    now = now or utcnow()
    rows = session.scalars(
        select(WebhookEvent)
        .where(
            WebhookEvent.provider == provider,
            WebhookEvent.customer_ref == customer,
            WebhookEvent.status == "unmatched",
        )
        .order_by(WebhookEvent.occurred_at, WebhookEvent.id)
    ).all()
    results: dict[int, Received] = {}
    while rows:
        waiting = []
        for row in rows:
            result = _handle(
                session, row.id, stored_event(row), now, row.delivery_count, redrive=False
            )
            log.info("unmatched event handled after link", id=row.id, status=result.status)
            results[row.id] = result
            if result.status == "unmatched":
                waiting.append(row)
        if len(waiting) == len(rows):
            break
        rows = waiting
    return list(results.values())


def _redrive_event(session: Session, event_id: int, now: dt.datetime) -> Received | None:
    """Handle one unmatched event again (what it waited for was just recorded); None when it
    is no longer unmatched (handled meanwhile)."""
    row = session.scalar(
        select(WebhookEvent)
        .where(WebhookEvent.id == event_id, WebhookEvent.status == "unmatched")
        .with_for_update()
    )
    if row is None:
        return None
    result = _handle(session, row.id, stored_event(row), now, row.delivery_count, redrive=False)
    log.info("unmatched event handled after its object arrived", id=row.id, status=result.status)
    return result


def redrive_events(session: Session, event_ids: Sequence[int], now: dt.datetime) -> list[Received]:
    """Handle these unmatched events again, in the order given, in the caller's transaction
    (each isolated by a savepoint), as `Outcome.unblocked` does: for a change made outside the
    inbox that they waited for (`streams sync` making a stream session live). Rows no longer
    unmatched are skipped, so a rerun handles nothing twice."""
    done = (_redrive_event(session, event_id, now) for event_id in event_ids)
    return [result for result in done if result is not None]


def stored_event(row: WebhookEvent) -> InboundEvent:
    """Rebuild the InboundEvent from a stored row (the same parser as a live delivery); a body
    kept as raw bytes (not storable as JSON) is parsed from them."""
    payload: Any = row.payload
    if payload is None and row.raw_body is not None:
        try:
            payload = json.loads(row.raw_body)
        except (ValueError, RecursionError) as exc:
            raise events.MalformedEvent(f"stored body is not JSON: {type(exc).__name__}") from None
    return parse_event(row.provider, row.scope, payload)


# ---------------------------------------------------------------------------------------------
# Replay


class _DryRun(Exception):
    def __init__(self, outcome: Outcome) -> None:
        self.outcome = outcome


def replay(
    db: Database, event_id: int, *, dry_run: bool = False, now: dt.datetime | None = None
) -> Received:
    """Handle a stored event again through the live path. Events already applied, ignored or
    stale are left alone (a replay never applies anything twice)."""
    now = now or utcnow()
    with db.session() as session:
        row = session.scalar(
            select(WebhookEvent).where(WebhookEvent.id == event_id).with_for_update()
        )
        if row is None:
            raise NotFound(f"no webhook event {event_id}; see `faithflow webhooks list`")
        if row.payload is None and row.raw_body is None:  # docs/retention.md: ledger only
            raise UserError(
                f"webhook event {event_id} has no body: data retention dropped it (the ledger "
                "row stays); it cannot be replayed — ask the provider to resend it if needed"
            )
        if row.status in DONE:
            return Received(
                row.id,
                row.event_key,
                row.event_type,
                row.status,
                True,
                row.delivery_count,
                f"already {row.status}; nothing to replay",
            )
        try:
            event = stored_event(row)
        except events.MalformedEvent as exc:
            raise UserError(f"webhook event {event_id} cannot be parsed: {exc}") from None
        if not dry_run:
            return _handle(session, row.id, event, now, row.delivery_count)
        try:
            with session.begin_nested():
                raise _DryRun(_outcome(session, event, isolate=True))
        except _DryRun as would:
            outcome = would.outcome
        except _HandlerFailed as failed:
            return Received(
                row.id,
                row.event_key,
                row.event_type,
                "failed",
                False,
                row.delivery_count,
                f"would fail: {failed.error}",
            )
        return Received(
            row.id,
            row.event_key,
            row.event_type,
            outcome.status,
            False,
            row.delivery_count,
            f"would be {outcome.status}: {outcome.detail}",
        )


def ids_with_status(db: Database, statuses: Sequence[str], limit: int | None = None) -> list[int]:
    with db.read_session() as session:
        query = (
            select(WebhookEvent.id)
            .where(WebhookEvent.status.in_(statuses))
            .order_by(WebhookEvent.first_received_at, WebhookEvent.id)
        )
        if limit is not None:
            query = query.limit(limit)
        return list(session.scalars(query))


# ---------------------------------------------------------------------------------------------
# Linking a provider id (`faithflow tenants link`): tenancy stores the link, the inbox handles
# the events that waited for it.


def link_and_handle(db: Database, slug: str, raw_id: str, *, actor: str) -> dict[str, Any]:
    """`tenants link`: link the id, then handle its `unmatched` webhook events through the live
    path. A customer's are handled in the linking transaction (as after a checkout); a Connect
    account's or subaccount's are replayed one by one right after it commits."""
    with db.session() as session:
        result = accounts.link(session, slug, raw_id, actor=actor)
        ext = result.external
        if result.changed and ext.kind == "customer":
            handled = redrive_customer(session, ext.provider, ext.value)
            result.handled = [r.to_dict() for r in handled]
        doc = result.doc()
        ids = (
            []
            if ext.kind == "customer" or not result.changed
            else (unmatched_account_events(session, ext))
        )
    for event_id in ids:
        doc["handled"].append(replay(db, event_id).to_dict())
    return doc


def unmatched_account_events(session: Session, ext: accounts.ExternalId) -> list[int]:
    """Unmatched webhook events naming this Connect account or subaccount, oldest first."""
    return list(
        session.scalars(
            select(WebhookEvent.id)
            .where(
                WebhookEvent.provider == ext.provider,
                WebhookEvent.account_ref == ext.value,
                WebhookEvent.status == "unmatched",
            )
            .order_by(WebhookEvent.occurred_at, WebhookEvent.id)
        )
    )
