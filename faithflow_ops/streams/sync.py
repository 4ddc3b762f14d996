"""`streams sync`'s rules: bring each watched session on a Mux channel in line with its live
stream (status and ingest health), take in its recording when Mux has the asset, and alert a
service that has not gone live 10 minutes after its start.

Provider states (Mux live-stream `status` from the API; the webhook's event names in the same
words) map onto a session's status by `decide` — a table, tested as one:

- `active`, `connected`, `recording`: the encoder is sending → `live` (from `scheduled`, or back
  from `interrupted`: a reconnect).
- `disconnected`, or `idle` while the session is live: no signal → `interrupted` (an incident is
  raised); it is not over until the channel's reconnect window (Mux's `reconnect_window`,
  default 60 s) has passed since, then `ended`.
- `disabled`: the stream was switched off → a live or interrupted session `ended`.
- `idle` known to come after the window closed (`window_closed`: Mux's
  `video.live_stream.idle` webhook is sent once the reconnect window has expired) → a live or
  interrupted session `ended` at once.

The same rules serve `POST /webhooks/mux` (faithflow_ops/webhooks/mux.py): `decide`,
`recording_target`, `bound` (which sessions a channel's signal speaks for), `records_asset`
(which session an asset recorded) and the appliers `apply_status` / `apply_recording`, with
source `webhook`.

Recording (Mux asset `status`): `preparing` → `processing`, `ready` → `ready` with the public
playback URL and the duration, `errored` → `failed`; an asset still `is_live` is `preparing`
whatever its status (`asset_state`: Mux calls it ready with the first seconds in it). The
session's asset is the one it already names, else the live stream's active asset while it is
on air, else the newest of its recent assets created between an hour before the session
started and its end.

Each change is an Action with a typed payload; apply claims the session in the state the plan
saw (`lifecycle.move(expect=…)`), so a rerun, or a webhook that got there first, is stale.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sqlalchemy import or_, select, update
from sqlalchemy.orm import Session

from faithflow_ops.actions import Action, StaleAction, decode, encode
from faithflow_ops.db import rowcount
from faithflow_ops.incidents import records as incidents
from faithflow_ops.models import StreamChannel, StreamSession, Tenant
from faithflow_ops.streams import lifecycle

if TYPE_CHECKING:
    from faithflow_ops.config import Settings
    from faithflow_ops.providers.mux import MuxAPI, MuxAsset, MuxLiveStream

MISSED_START_AFTER = dt.timedelta(minutes=10)
# A scheduled session takes a channel's live signal from an hour before its start to 6 h after.
EARLY_START = dt.timedelta(hours=1)
LATE_START = dt.timedelta(hours=6)
ASSET_SLACK = dt.timedelta(hours=1)
RECENT_ASSETS_READ = 3

ON_AIR = frozenset({"active", "connected", "recording"})
NO_SIGNAL = frozenset({"disconnected", "idle"})
PROVIDER_STATES = ON_AIR | NO_SIGNAL | {"disabled"}
ASSET_STATES = {"preparing": "processing", "ready": "ready", "errored": "failed"}


@dataclass(frozen=True)
class StatusChange:  # kinds "session_live", "session_interrupted", "session_ended"
    session_id: int
    expect: str
    to: str
    provider_state: str
    ingest_health: str


@dataclass(frozen=True)
class RecordingChange:  # kinds "recording_processing", "recording_ready", "recording_failed"
    session_id: int
    expect: str
    to: str
    asset_id: str | None  # None: a webhook said it is recording before Mux named the asset
    playback_url: str | None
    duration_ms: int | None


@dataclass(frozen=True)
class MissedStart:  # kind "missed_start"
    session_id: int
    tenant_id: int
    scheduled_start: dt.datetime
    title: str
    channel: str


def decide(
    status: str,
    provider_state: str,
    *,
    interrupted_at: dt.datetime | None,
    window_s: int,
    now: dt.datetime,
    window_closed: bool = False,
) -> tuple[str, str] | None:
    """The status a session in `status` moves to when its stream reports `provider_state`
    (with the reason), or None when it stays. `window_closed`: the provider says the reconnect
    window is over (Mux's `idle` webhook), so no signal means the broadcast ended."""
    if provider_state not in PROVIDER_STATES:
        raise ValueError(f"unknown provider state {provider_state!r}")
    if status in ("scheduled", "interrupted") and provider_state in ON_AIR:
        return "live", f"the stream is {provider_state}"
    if status in ("live", "interrupted") and provider_state == "idle" and window_closed:
        return "ended", "the stream is idle: its reconnect window closed"
    if status == "live" and provider_state in NO_SIGNAL:
        return "interrupted", f"no signal: the stream is {provider_state}"
    if status in ("live", "interrupted") and provider_state == "disabled":
        return "ended", "the live stream was disabled"
    if status == "interrupted" and provider_state in NO_SIGNAL:
        since = interrupted_at or now
        if now - since >= dt.timedelta(seconds=window_s):
            return "ended", f"no signal for the {window_s} s reconnect window"
    return None


def health_of(provider_state: str) -> str:
    return "good" if provider_state in ON_AIR else "no_signal"


def recording_target(current: str, asset_status: str) -> str | None:
    target = ASSET_STATES.get(asset_status)
    if target is None or target == current or not lifecycle.allowed("recording", current, target):
        return None
    return target


def asset_state(asset: MuxAsset) -> str:
    """The asset status a recording follows. Mux makes a live stream's asset `ready` at about
    the time the stream goes active, with some 10 s in it, its duration growing while it
    `is_live`; it is the recording only once the broadcast is over (`is_live` false, the
    `video.asset.live_stream_completed` webhook, full duration) — so until then a ready asset
    is still `preparing` (https://www.mux.com/docs/guides/stream-recordings-of-live-streams)."""
    return "preparing" if asset.status == "ready" and asset.is_live else asset.status


def missed_start_cause(session_id: int) -> str:
    return f"stream:session:{session_id}:missed_start"


def no_signal_cause(session_id: int) -> str:
    return f"stream:session:{session_id}:no_signal"


# --- plan ---------------------------------------------------------------------------------


def _watched(session: Session, now: dt.datetime) -> list[tuple[StreamSession, StreamChannel, str]]:
    """Sessions on Mux channels still moving or waiting for their recording (the partial index
    ix_stream_sessions_sync), with their channel and church."""
    rows = session.execute(
        select(StreamSession, StreamChannel, Tenant.slug)
        .join(StreamChannel, StreamChannel.id == StreamSession.channel_id)
        .join(Tenant, Tenant.id == StreamSession.tenant_id)
        .where(
            or_(
                StreamSession.status.in_(lifecycle.ACTIVE_STATUSES),
                StreamSession.recording_status == "processing",
            ),
            StreamChannel.provider == "mux",
            StreamChannel.provider_stream_id.is_not(None),
            StreamSession.scheduled_start <= now + EARLY_START,
        )
        .order_by(StreamSession.channel_id, StreamSession.scheduled_start, StreamSession.id)
    ).all()
    return [(s, c, slug) for s, c, slug in rows]


def bound(rows: list[StreamSession], now: dt.datetime) -> list[StreamSession]:
    """The sessions of one channel that its live signal speaks for: those on air (live or
    interrupted), else the scheduled one starting nearest to now within its window."""
    on_air = [s for s in rows if s.status in ("live", "interrupted")]
    if on_air:
        return on_air
    candidates = [
        s
        for s in rows
        if s.status == "scheduled" and now - LATE_START <= s.scheduled_start <= now + EARLY_START
    ]
    if not candidates:
        return []
    return [min(candidates, key=lambda s: (abs((s.scheduled_start - now).total_seconds()), s.id))]


def records_asset(row: StreamSession, created_at: dt.datetime | None, now: dt.datetime) -> bool:
    """Whether an asset of the session's live stream created at `created_at` is its recording:
    created between an hour before the session started (or was due) and its end (or `now`)."""
    if created_at is None:
        return False
    start = min(row.started_at or row.scheduled_start, row.scheduled_start) - ASSET_SLACK
    return start <= created_at <= (row.ended_at or now)


def _asset_for(
    api: MuxAPI, row: StreamSession, stream: MuxLiveStream, now: dt.datetime
) -> MuxAsset | None:
    if row.recording_asset_id:
        return api.asset(row.recording_asset_id)
    if row.status in ("live", "interrupted") and stream.active_asset_id:
        return api.asset(stream.active_asset_id)
    for asset_id in list(reversed(stream.recent_asset_ids))[:RECENT_ASSETS_READ]:
        asset = api.asset(asset_id)
        if asset is not None and records_asset(row, asset.created_at, now):
            return asset
    return None


def plan(
    session: Session,
    now: dt.datetime,
    settings: Settings,
    limit: int | None = None,
    api: MuxAPI | None = None,
) -> Iterator[Action]:
    rows = _watched(session, now)
    if not rows:
        return
    from faithflow_ops.providers.mux import MuxAPI

    client = api or MuxAPI(settings)
    try:
        yield from _plan(rows, client, now, limit)
    finally:
        if api is None:
            client.close()


def _plan(
    rows: list[tuple[StreamSession, StreamChannel, str]],
    api: MuxAPI,
    now: dt.datetime,
    limit: int | None,
) -> Iterator[Action]:
    by_channel: dict[int, list[tuple[StreamSession, StreamChannel, str]]] = {}
    for entry in rows:
        by_channel.setdefault(entry[1].id, []).append(entry)
    made = 0
    for group in by_channel.values():
        channel = group[0][1]
        assert channel.provider_stream_id is not None
        stream = api.live_stream(channel.provider_stream_id)
        state = stream.status if stream is not None else None
        speaks_for = {s.id for s in bound([s for s, _, _ in group], now)}
        for one, _, slug in group:
            if limit is not None and made >= limit:
                return
            for action in _session_actions(api, one, channel, slug, stream, state, speaks_for, now):
                made += 1
                yield action


def _session_actions(
    api: MuxAPI,
    row: StreamSession,
    channel: StreamChannel,
    slug: str,
    stream: MuxLiveStream | None,
    state: str | None,
    bound: set[int],
    now: dt.datetime,
) -> Iterator[Action]:
    target = None
    status = row.status
    if row.id in bound and state in PROVIDER_STATES:
        assert state is not None
        decided = decide(
            row.status,
            state,
            interrupted_at=row.interrupted_at,
            window_s=channel.reconnect_window_s,
            now=now,
        )
        if decided is not None:
            target, why = decided
            status = target
            yield Action(
                f"session_{target}",
                f"stream_session:{row.id}",
                f"{slug} · {channel.name} · {row.title}: {row.status} → {target} ({why})",
                encode(StatusChange(row.id, row.status, target, state, health_of(state))),
            )
    if (
        status == "scheduled"
        and row.missed_start_alerted_at is None
        and now >= row.scheduled_start + MISSED_START_AFTER
    ):
        late = int((now - row.scheduled_start).total_seconds() // 60)
        yield Action(
            "missed_start",
            f"stream_session:{row.id}",
            f"{slug} · {channel.name} · {row.title}: not live {late} min after its start "
            f"(Mux stream {state or 'not found'})",
            encode(
                MissedStart(row.id, row.tenant_id, row.scheduled_start, row.title, channel.name)
            ),
        )
    if (
        stream is not None
        and status != "scheduled"
        and row.recording_status
        in (
            "none",
            "processing",
        )
    ):
        asset = _asset_for(api, row, stream, now)
        to = recording_target(row.recording_status, asset_state(asset)) if asset else None
        if asset is not None and to is not None:
            detail = f", {asset.duration_s:.0f} s" if to == "ready" and asset.duration_s else ""
            detail += ", still live" if asset.is_live else ""
            yield Action(
                f"recording_{to}",
                f"stream_session:{row.id}",
                f"{slug} · {channel.name} · {row.title}: recording {row.recording_status} → "
                f"{to} (Mux asset {asset.id} {asset.status}{detail})",
                encode(
                    RecordingChange(
                        row.id,
                        row.recording_status,
                        to,
                        asset.id,
                        asset.playback_url if to == "ready" else None,
                        asset.duration_ms if to == "ready" else None,
                    )
                ),
            )


# --- apply --------------------------------------------------------------------------------


def _row(session: Session, session_id: int) -> StreamSession:
    row = session.get(StreamSession, session_id)
    if row is None:
        raise StaleAction(f"stream session {session_id} no longer exists")
    return row


def apply(
    session: Session, action: Action, now: dt.datetime, *, source: str = "provider_sync"
) -> None:
    if action.kind == "missed_start":
        _apply_missed_start(session, decode(MissedStart, action.data), now)
    elif action.kind.startswith("recording_"):
        apply_recording(
            session, decode(RecordingChange, action.data), now, source=source, reason=action.reason
        )
    else:
        apply_status(
            session, decode(StatusChange, action.data), now, source=source, reason=action.reason
        )


def apply_recording(
    session: Session,
    change: RecordingChange,
    now: dt.datetime,
    *,
    source: str,
    reason: str | None,
) -> None:
    lifecycle.record_recording(
        session,
        _row(session, change.session_id),
        change.to,
        source=source,
        now=now,
        reason=reason,
        asset_id=change.asset_id,
        playback_url=change.playback_url,
        duration_ms=change.duration_ms,
        expect=change.expect,
    )


def apply_status(
    session: Session, change: StatusChange, now: dt.datetime, *, source: str, reason: str | None
) -> None:
    row = _row(session, change.session_id)
    lifecycle.move(
        session, row, change.to, source=source, now=now, reason=reason, expect=change.expect
    )
    row.ingest_health = change.ingest_health
    cause = no_signal_cause(row.id)
    if change.to == "interrupted":
        incidents.raise_incident(
            session,
            cause=cause,
            kind="stream",
            title=f"Stream session {row.id} ({row.title}) lost its signal",
            detail=reason,
            now=now,
            severity="critical",
            tenant_id=row.tenant_id,
        )
    else:
        incidents.clear_incident(session, cause, now=now, by=source)
    if change.to == "live":
        incidents.clear_incident(session, missed_start_cause(row.id), now=now, by=source)
    session.flush()


def _apply_missed_start(session: Session, missed: MissedStart, now: dt.datetime) -> None:
    claimed = session.execute(
        update(StreamSession)
        .where(
            StreamSession.id == missed.session_id,
            StreamSession.status == "scheduled",
            StreamSession.missed_start_alerted_at.is_(None),
        )
        .values(missed_start_alerted_at=now)
        .execution_options(synchronize_session=False)
    )
    if rowcount(claimed) != 1:
        raise StaleAction(f"stream session {missed.session_id} was alerted or went live")
    incidents.raise_incident(
        session,
        cause=missed_start_cause(missed.session_id),
        kind="stream",
        title=f"Stream '{missed.title}' on {missed.channel} is not live",
        detail=f"scheduled for {missed.scheduled_start.isoformat()}; not live 10 minutes later",
        now=now,
        severity="critical",
        tenant_id=missed.tenant_id,
    )


def table_rows(action: Action) -> Iterator[tuple[Any, ...]]:
    data = action.data
    yield (
        action.kind,
        data.get("session_id"),
        data.get("expect", ""),
        data.get("to", ""),
        data.get("provider_state") or data.get("asset_id") or "",
    )
