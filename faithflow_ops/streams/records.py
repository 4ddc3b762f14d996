"""The operator's side of live streaming (`faithflow streams channels …`, `streams sessions …`):
add and list channels; schedule, list, show and cancel sessions.

Every function checks its input and raises UserError (one line naming the fix) before writing
anything; the caller's transaction commits the lot.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from faithflow_ops.errors import NotFound, UserError, one_of
from faithflow_ops.models import StreamChannel, StreamEvent, StreamSession, Tenant
from faithflow_ops.models.streams import PROVIDERS, SESSION_STATUSES
from faithflow_ops.streams import lifecycle
from faithflow_ops.tenancy.tenants import get_tenant

MAX_RECONNECT_WINDOW_S = 1800  # Mux allows a reconnect window of up to 1800 s


def get_channel(session: Session, channel_id: int) -> StreamChannel:
    row = session.get(StreamChannel, channel_id)
    if row is None:
        raise NotFound(f"no channel with id {channel_id}; add one with `streams channels add`")
    return row


def get_session(session: Session, session_id: int) -> StreamSession:
    row = session.get(StreamSession, session_id)
    if row is None:
        raise NotFound(
            f"no stream session with id {session_id}; see `faithflow streams sessions list`"
        )
    return row


def add_channel(
    session: Session,
    *,
    tenant: str,
    name: str,
    provider: str,
    stream_id: str | None = None,
    reconnect_window_s: int | None = None,
) -> StreamChannel:
    """A church's channel: a Mux live stream (its id) or a `custom` one nobody syncs."""
    church = get_tenant(session, tenant)
    name = name.strip()
    if not name:
        raise UserError("a channel needs a name (e.g. 'Sunday services')")
    one_of("--provider", provider, PROVIDERS)
    stream_id = (stream_id or "").strip() or None
    if provider == "mux" and stream_id is None:
        raise UserError("--provider mux needs --stream-id (the Mux live stream id)")
    if reconnect_window_s is not None and not 0 <= reconnect_window_s <= MAX_RECONNECT_WINDOW_S:
        raise UserError(
            f"--reconnect-window {reconnect_window_s}: give 0 to {MAX_RECONNECT_WINDOW_S} seconds"
        )
    if session.scalar(
        select(StreamChannel.id).where(
            StreamChannel.tenant_id == church.id, StreamChannel.name == name
        )
    ):
        raise UserError(f"{church.slug} already has a channel named {name!r}")
    if stream_id is not None and session.scalar(
        select(StreamChannel.id).where(
            StreamChannel.provider == provider, StreamChannel.provider_stream_id == stream_id
        )
    ):
        raise UserError(f"{provider} live stream {stream_id} already belongs to a channel")
    channel = StreamChannel(
        tenant_id=church.id,
        name=name,
        provider=provider,
        provider_stream_id=stream_id,
        moderation_policy={},
    )
    if reconnect_window_s is not None:
        channel.reconnect_window_s = reconnect_window_s
    session.add(channel)
    session.flush()
    return channel


def channel_doc(channel: StreamChannel, slug: str) -> dict[str, Any]:
    return {
        "id": channel.id,
        "tenant_id": channel.tenant_id,
        "tenant": slug,
        "name": channel.name,
        "provider": channel.provider,
        "provider_stream_id": channel.provider_stream_id,
        "reconnect_window_s": channel.reconnect_window_s,
        "created_at": channel.created_at,
    }


def list_channels(
    session: Session, *, tenant: str | None = None, limit: int = 50
) -> tuple[list[dict[str, Any]], int]:
    query = select(StreamChannel, Tenant.slug).join(Tenant, Tenant.id == StreamChannel.tenant_id)
    if tenant is not None:
        query = query.where(StreamChannel.tenant_id == get_tenant(session, tenant).id)
    total = session.scalar(select(func.count()).select_from(query.subquery())) or 0
    rows = session.execute(query.order_by(StreamChannel.id).limit(limit)).all()
    return [channel_doc(c, slug) for c, slug in rows], total


def schedule_session(
    session: Session, *, channel_id: int, title: str, start: dt.datetime, now: dt.datetime
) -> StreamSession:
    """A service to stream on `channel_id` at `start` (in the future)."""
    channel = get_channel(session, channel_id)
    title = title.strip()
    if not title:
        raise UserError("a session needs a title (e.g. 'Sunday 9am Service')")
    if start <= now:
        raise UserError(f"--start {start.isoformat()} is not in the future; give a later time")
    row = StreamSession(
        tenant_id=channel.tenant_id,
        channel_id=channel.id,
        title=title,
        scheduled_start=start,
        status="scheduled",
        recording_status="none",
    )
    session.add(row)
    session.flush()
    return row


def session_doc(row: StreamSession, slug: str, channel: str) -> dict[str, Any]:
    return {
        "id": row.id,
        "tenant_id": row.tenant_id,
        "tenant": slug,
        "channel_id": row.channel_id,
        "channel": channel,
        "title": row.title,
        "scheduled_start": row.scheduled_start,
        "status": row.status,
        "started_at": row.started_at,
        "ended_at": row.ended_at,
        "interrupted_at": row.interrupted_at,
        "ingest_health": row.ingest_health,
        "recording_status": row.recording_status,
        "recording_asset_id": row.recording_asset_id,
        "playback_url": row.playback_url,
        "duration_ms": row.duration_ms,
        "peak_concurrent_viewers": row.peak_concurrent_viewers,
    }


def _session_query() -> Any:
    return (
        select(StreamSession, Tenant.slug, StreamChannel.name)
        .join(StreamChannel, StreamChannel.id == StreamSession.channel_id)
        .join(Tenant, Tenant.id == StreamSession.tenant_id)
    )


def list_sessions(
    session: Session,
    *,
    tenant: str | None = None,
    channel_id: int | None = None,
    status: str | None = None,
    limit: int = 50,
) -> tuple[list[dict[str, Any]], int]:
    query = _session_query()
    if tenant is not None:
        query = query.where(StreamSession.tenant_id == get_tenant(session, tenant).id)
    if channel_id is not None:
        query = query.where(StreamSession.channel_id == get_channel(session, channel_id).id)
    if status is not None:
        query = query.where(StreamSession.status == one_of("--status", status, SESSION_STATUSES))
    total = session.scalar(select(func.count()).select_from(query.subquery())) or 0
    rows = session.execute(
        query.order_by(StreamSession.scheduled_start.desc(), StreamSession.id).limit(limit)
    ).all()
    return [session_doc(r, slug, name) for r, slug, name in rows], total


def event_doc(event: StreamEvent) -> dict[str, Any]:
    return {
        "id": event.id,
        "field": event.field,
        "from": event.from_state,
        "to": event.to_state,
        "source": event.source,
        "reason": event.reason,
        "occurred_at": event.occurred_at,
    }


def show_session(session: Session, session_id: int) -> dict[str, Any]:
    """A session with its transitions, oldest first."""
    get_session(session, session_id)
    row, slug, name = session.execute(_session_query().where(StreamSession.id == session_id)).one()
    events = session.scalars(
        select(StreamEvent)
        .where(StreamEvent.session_id == session_id)
        .order_by(StreamEvent.occurred_at, StreamEvent.id)
    ).all()
    doc = session_doc(row, slug, name)
    doc["events"] = [event_doc(e) for e in events]
    return doc


def cancel_session(
    session: Session, session_id: int, *, now: dt.datetime, by: str, reason: str | None = None
) -> StreamSession:
    """An operator cancels a session that has not started (`scheduled` → `canceled`)."""
    row = get_session(session, session_id)
    why = f"canceled by {by}" + (f": {reason}" if reason else "")
    lifecycle.move(session, row, "canceled", source="operator", now=now, reason=why)
    return row
