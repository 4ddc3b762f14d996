"""The Mux events that waited for a session `streams sync` just made live (issue 18).

`POST /webhooks/mux` keeps an `idle`, `disconnected` or asset event that arrives while its
session is still `scheduled` as `unmatched`, and the webhook that makes the session live
handles them again in the same transaction (faithflow_ops/webhooks/mux.py,
`Outcome.unblocked`). When `streams sync` makes the session live first — it read Mux's API
before the webhook came, or that webhook is still being retried — the sync job
(faithflow_ops/jobs/streams_sync.py) calls these two around its `session_live` action, so the
waiting events do not sit until an operator runs `webhooks replay --unmatched`:

- `hold` takes the lock the webhook applier takes for the live stream (Postgres; SQLite has
  one writer) before the session moves: an event being handled now either finishes first (and
  is found waiting) or runs after the commit (and sees the session live).
- `handle_waiting` handles, in Mux's order (`created_at`, then arrival) and in the sync's
  transaction, each of the live stream's `unmatched` events created since the session's
  window opened (an hour before its start, as `streams sync` binds a signal to a session) —
  the same handlers, savepoints and `unmatched`-only claim as the webhook path, so a rerun
  handles nothing twice. The sync's change is stamped with the sync's clock, not Mux's: an
  event created before it is `stale` with the reason (as a late delivery would be), one
  created after it applies (`idle` ends the service).
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import select
from sqlalchemy.orm import Session

from faithflow_ops.models import StreamChannel, StreamSession
from faithflow_ops.streams import sync
from faithflow_ops.webhooks import applier, inbox
from faithflow_ops.webhooks.mux import waiting_events


def _stream_of(session: Session, session_id: int) -> tuple[str, dt.datetime] | None:
    """The session's Mux live stream and the time its window opens (None: not on Mux)."""
    found = session.execute(
        select(StreamChannel.provider_stream_id, StreamSession.scheduled_start)
        .join(StreamChannel, StreamChannel.id == StreamSession.channel_id)
        .where(
            StreamSession.id == session_id,
            StreamChannel.provider == "mux",
            StreamChannel.provider_stream_id.is_not(None),
        )
    ).first()
    if found is None or found[0] is None:
        return None
    return found[0], found[1] - sync.EARLY_START


def hold(session: Session, session_id: int) -> None:
    """Lock the session's Mux live stream against the webhook applier until commit."""
    stream = _stream_of(session, session_id)
    if stream is not None:
        applier.lock_object(session, "mux", stream[0])


def handle_waiting(session: Session, session_id: int, now: dt.datetime) -> list[inbox.Received]:
    """Handle the Mux events that waited for this session to go live, oldest first."""
    stream = _stream_of(session, session_id)
    if stream is None:
        return []
    stream_id, opened = stream
    return inbox.redrive_events(
        session, waiting_events(session, stream_id, opened, inclusive=True), now
    )
