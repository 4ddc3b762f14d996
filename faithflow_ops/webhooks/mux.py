"""Mux webhook handlers (issue 18): what a stored `POST /webhooks/mux` delivery does to the
stream session of the channel whose Mux live stream it names, applied by the webhook worker
(`faithflow webhooks apply`, or the receiver's own) with the rules of `streams sync` — one
state machine (faithflow_ops/streams/sync.py: `decide`, `recording_target`, `bound`,
`records_asset`, `apply_status`, `apply_recording`), recorded in `stream_events` with source
`webhook` and the event's own time (Mux's `created_at`).

Events, as Mux documents them (https://www.mux.com/docs/guides/handle-live-stream-disconnects,
https://www.mux.com/blog/is-it-recording-yet-new-live-stream-webhook-events, the webhook
reference https://www.mux.com/webhook-spec.json): a broadcast sends `video.live_stream.connected`
(the encoder connected), `.recording` (Mux records it), `.active` (playable), then
`.disconnected` (the encoder went away; Mux waits `reconnect_window` seconds) and `.idle` (the
window expired: the broadcast is over); the recording is an asset of the live stream
(`data.live_stream_id`): `video.asset.ready` at about the time the stream goes active (with
`is_live` true and only the first seconds in it), then `video.asset.live_stream_completed`
when the broadcast is over and the recording is final (full duration), or
`video.asset.errored` (https://www.mux.com/docs/guides/stream-recordings-of-live-streams).

- Live-stream events (`data.id` is the live stream): connected/recording/active → `live`;
  disconnected → `interrupted` (the no-signal incident; back to `live` on a reconnect, `ended`
  when the reconnect window passes); idle → `ended` (the window closed); disabled → `ended`.
  `recording` (and `active` naming its `active_asset_id`) starts the recording: `processing`.
- Asset events (`data.live_stream_id`): the session that names the asset, else the session
  whose broadcast created it → recording `processing` (`ready` while still `is_live`), `ready`
  (`live_stream_completed`, or `ready` once not live: playback URL, duration) or `failed`.

Order: Mux retries for a day and does not promise order, so an event older than the session's
last change of that kind is `stale` (an `active` delivered after `idle` does not reopen an
ended service), and one for a broadcast that is already over is `stale` too. An event that
cannot apply yet — `idle`/`disconnected` or an asset while the session is still `scheduled`
— is `unmatched` and handled again, in Mux's order, right after the event that makes the
session live. A live stream no channel uses, or an asset of no live stream, is `ignored` with
the reason.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass, field

from sqlalchemy import and_, func, or_, select
from sqlalchemy.orm import Session

from faithflow_ops.actions import StaleAction
from faithflow_ops.billing import lifecycle as effects
from faithflow_ops.billing.lifecycle import Outcome
from faithflow_ops.models import StreamChannel, StreamEvent, StreamSession, WebhookEvent
from faithflow_ops.providers.mux import MuxAsset, MuxLiveStream
from faithflow_ops.streams import sync
from faithflow_ops.streams.lifecycle import IllegalTransition
from faithflow_ops.webhooks.events import InboundEvent

SOURCE = "webhook"
LIVE_STREAM_STATES = {
    "video.live_stream.connected": "connected",
    "video.live_stream.recording": "recording",
    "video.live_stream.active": "active",
    "video.live_stream.disconnected": "disconnected",
    "video.live_stream.idle": "idle",
    "video.live_stream.disabled": "disabled",
}
# The asset status each event means (`live_stream_completed`: the one the asset reports).
ASSET_EVENTS: dict[str, str | None] = {
    "video.asset.ready": "ready",
    "video.asset.errored": "errored",
    "video.asset.live_stream_completed": None,
}
RECORDING_STATES = ("recording", "active")  # a live-stream event that starts the recording


@dataclass
class _Result:
    """What one event did to the sessions it names: changes made, stale parts, waits."""

    changed: list[str] = field(default_factory=list)
    stale: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    waiting: list[str] = field(default_factory=list)
    went_live: bool = False

    def outcome(self, tenant_id: int, unblocked: list[int]) -> Outcome:
        if self.changed:
            detail = "; ".join(self.changed + self.stale + self.unchanged)
            return Outcome("applied", detail, tenant_id, unblocked=unblocked)
        if self.waiting:
            return Outcome("unmatched", "; ".join(self.waiting), tenant_id)
        if self.stale:
            return effects.stale("; ".join(self.stale + self.unchanged), tenant_id)
        return effects.applied("; ".join(self.unchanged) or "nothing to change", tenant_id)


def _channel(session: Session, stream_id: str) -> StreamChannel | None:
    return session.scalar(
        select(StreamChannel).where(
            StreamChannel.provider == "mux", StreamChannel.provider_stream_id == stream_id
        )
    )


def _unknown_stream(stream_id: str) -> Outcome:
    return effects.ignored(
        f"no channel streams from Mux live stream {stream_id}; add one with `faithflow streams "
        "channels add --provider mux --stream-id …` and replay the event if it matters"
    )


def _when(event: InboundEvent) -> dt.datetime:
    assert event.occurred_at is not None  # events.parse refuses a Mux event without one
    return event.occurred_at


def _label(row: StreamSession) -> str:
    return f"session {row.id} ({row.title})"


def _last_change(session: Session, row: StreamSession, kind: str) -> dt.datetime | None:
    """When the session's status (or recording) last changed, by any source."""
    return session.scalar(
        select(func.max(StreamEvent.occurred_at)).where(
            StreamEvent.session_id == row.id, StreamEvent.field == kind
        )
    )


def _around(session: Session, channel: StreamChannel, at: dt.datetime) -> list[StreamSession]:
    """The channel's sessions a signal at `at` may speak for: those on air, those scheduled
    within `streams sync`'s window of it, and those whose broadcast was over only after it."""
    return list(
        session.scalars(
            select(StreamSession)
            .where(
                StreamSession.channel_id == channel.id,
                or_(
                    StreamSession.status.in_(("live", "interrupted")),
                    StreamSession.scheduled_start.between(
                        at - sync.LATE_START, at + sync.EARLY_START
                    ),
                    and_(
                        StreamSession.status.in_(("ended", "failed")),
                        StreamSession.ended_at >= at,
                    ),
                ),
            )
            .order_by(StreamSession.scheduled_start, StreamSession.id)
        )
    )


def _over_before(rows: list[StreamSession], at: dt.datetime) -> StreamSession | None:
    """A session whose broadcast had begun by `at` and is over since (an event from it that
    arrives now is stale)."""
    for row in rows:
        if row.status not in ("ended", "failed") or row.ended_at is None or row.ended_at < at:
            continue
        opened = min(row.started_at or row.scheduled_start, row.scheduled_start)
        if opened - sync.EARLY_START <= at:
            return row
    return None


def waiting_events(
    session: Session, stream_id: str, after: dt.datetime, *, inclusive: bool = False
) -> list[int]:
    """This live stream's `unmatched` Mux events newer than `after` (or at it, `inclusive`),
    in Mux's order."""
    newer = WebhookEvent.occurred_at >= after if inclusive else WebhookEvent.occurred_at > after
    return list(
        session.scalars(
            select(WebhookEvent.id)
            .where(
                WebhookEvent.provider == "mux",
                WebhookEvent.object_id == stream_id,
                WebhookEvent.status == "unmatched",
                newer,
            )
            .order_by(WebhookEvent.occurred_at, WebhookEvent.id)
        )
    )


# --- live-stream events -------------------------------------------------------------------


def live_stream_event(session: Session, event: InboundEvent) -> Outcome:
    state = LIVE_STREAM_STATES[event.type]
    stream = MuxLiveStream.from_api(event.object)  # events.parse: data.id is a string
    channel = _channel(session, stream.id)
    if channel is None:
        return _unknown_stream(stream.id)
    at = _when(event)
    rows = _around(session, channel, at)
    targets = sync.bound(rows, at)
    over = _over_before(rows, at)
    if over is not None and not any(r.status in ("live", "interrupted") for r in targets):
        return effects.stale(
            f"{_label(over)} was {over.status} at {over.ended_at:%Y-%m-%d %H:%M:%S}Z, after this "
            f"{state} event of {at:%Y-%m-%d %H:%M:%S}Z",
            channel.tenant_id,
        )
    if not targets:
        return effects.ignored(
            f"no session of channel {channel.name} is on air or scheduled near "
            f"{at:%Y-%m-%d %H:%M}Z (Mux live stream {stream.id} {state})"
        )
    result = _Result()
    for row in targets:
        _status_part(session, event, channel, row, state, at, result)
        if state in RECORDING_STATES and (state == "recording" or stream.active_asset_id):
            _recording_part(session, event, row, "preparing", stream.active_asset_id, at, result)
    unblocked = waiting_events(session, stream.id, at) if result.went_live else []
    return result.outcome(channel.tenant_id, unblocked)


def _status_part(
    session: Session,
    event: InboundEvent,
    channel: StreamChannel,
    row: StreamSession,
    state: str,
    at: dt.datetime,
    result: _Result,
) -> None:
    last = _last_change(session, row, "status")
    if last is not None and at < last:
        result.stale.append(
            f"{_label(row)} is {row.status} since {last:%H:%M:%S}Z, after this {state} event "
            f"of {at:%H:%M:%S}Z"
        )
        return
    decided = sync.decide(
        row.status,
        state,
        interrupted_at=row.interrupted_at,
        window_s=channel.reconnect_window_s,
        now=at,
        window_closed=state == "idle",
    )
    if decided is None:
        if row.status == "scheduled" and state in sync.NO_SIGNAL:
            result.waiting.append(
                f"{_label(row)} is still scheduled: this {state} event waits for the stream to "
                "go live (handled again right after it does)"
            )
        else:
            result.unchanged.append(f"{_label(row)} stays {row.status} ({state})")
        return
    target, why = decided
    before = row.status
    change = sync.StatusChange(row.id, before, target, state, sync.health_of(state))
    try:
        sync.apply_status(session, change, at, source=SOURCE, reason=f"Mux {event.type}: {why}")
    except (StaleAction, IllegalTransition) as exc:
        result.stale.append(f"{_label(row)}: {exc}")
        return
    result.changed.append(f"{_label(row)}: {before} → {target} ({why})")
    result.went_live = result.went_live or (before == "scheduled" and target == "live")


def _recording_part(
    session: Session,
    event: InboundEvent,
    row: StreamSession,
    asset_status: str,
    asset_id: str | None,
    at: dt.datetime,
    result: _Result,
    asset: MuxAsset | None = None,
) -> None:
    session.refresh(row)
    current = row.recording_status
    if row.status == "scheduled":
        result.waiting.append(
            f"{_label(row)} is still scheduled: its recording waits for the stream to go live "
            "(handled again right after it does)"
        )
        return
    wanted = sync.ASSET_STATES.get(asset_status)
    target = sync.recording_target(current, asset_status)
    if target is None:
        if wanted == current:
            result.unchanged.append(f"{_label(row)}'s recording is {current} already")
        else:
            result.stale.append(
                f"{_label(row)}'s recording is {current} already; this event says "
                f"{wanted or asset_status}"
            )
        return
    ready = asset if target == "ready" else None
    change = sync.RecordingChange(
        row.id,
        current,
        target,
        asset_id,  # None (`recording` before Mux names the asset) keeps what the row names
        ready.playback_url if ready is not None else None,
        ready.duration_ms if ready is not None else None,
    )
    try:
        sync.apply_recording(
            session, change, at, source=SOURCE, reason=f"Mux {event.type} ({asset_status})"
        )
    except (StaleAction, IllegalTransition) as exc:
        result.stale.append(f"{_label(row)}'s recording: {exc}")
        return
    named = f" (Mux asset {asset_id})" if asset_id else ""
    result.changed.append(f"{_label(row)}'s recording: {current} → {target}{named}")


# --- asset events -------------------------------------------------------------------------


def asset_event(session: Session, event: InboundEvent) -> Outcome:
    asset = MuxAsset.from_api(event.object)
    status = ASSET_EVENTS[event.type] or asset.status
    if event.type == "video.asset.ready":
        status = sync.asset_state(asset)  # ready while still live: the first seconds only
    if not asset.live_stream_id:
        return effects.ignored(f"Mux asset {asset.id} is not the recording of a live stream")
    channel = _channel(session, asset.live_stream_id)
    if channel is None:
        return _unknown_stream(asset.live_stream_id)
    if status not in sync.ASSET_STATES:
        return effects.ignored(f"Mux asset {asset.id} is {status or 'of no status'}; not acted on")
    at = _when(event)
    row = _recorded_by(session, channel, asset, at)
    if row is None:
        created = asset.created_at or at
        waiting = [
            r for r in sync.bound(_around(session, channel, created), created)
            if r.status == "scheduled"
        ]  # fmt: skip
        if waiting:
            return Outcome(
                "unmatched",
                f"{_label(waiting[0])} is still scheduled: the recording (Mux asset {asset.id} "
                f"{status}) waits for the stream to go live (handled again right after it does)",
                channel.tenant_id,
            )
        return effects.ignored(
            f"no session of channel {channel.name} recorded Mux asset {asset.id} (created "
            f"{created:%Y-%m-%d %H:%M}Z)"
        )
    result = _Result()
    _recording_part(session, event, row, status, asset.id, at, result, asset)
    return result.outcome(channel.tenant_id, [])


def _recorded_by(
    session: Session, channel: StreamChannel, asset: MuxAsset, at: dt.datetime
) -> StreamSession | None:
    """The session that names the asset, else the newest whose broadcast created it (sessions
    naming another asset are not candidates)."""
    named = session.scalar(
        select(StreamSession).where(
            StreamSession.channel_id == channel.id, StreamSession.recording_asset_id == asset.id
        )
    )
    if named is not None:
        return named
    candidates = session.scalars(
        select(StreamSession)
        .where(
            StreamSession.channel_id == channel.id,
            StreamSession.status.in_(("live", "interrupted", "ended", "failed")),
            StreamSession.recording_asset_id.is_(None),
            or_(StreamSession.ended_at.is_(None), StreamSession.ended_at >= asset.created_at)
            if asset.created_at is not None
            else StreamSession.id.is_not(None),
        )
        .order_by(StreamSession.scheduled_start.desc(), StreamSession.id.desc())
        .limit(20)
    )
    for row in candidates:
        if sync.records_asset(row, asset.created_at, at):
            return row
    return None


Handler = Callable[[Session, InboundEvent], Outcome]

HANDLERS: dict[str, dict[str, Handler]] = {
    "platform": {
        **dict.fromkeys(LIVE_STREAM_STATES, live_stream_event),
        **dict.fromkeys(ASSET_EVENTS, asset_event),
    },
}
