"""Live streaming (issue 18): channels (a church's provider live stream), sessions (one
scheduled service on a channel) and stream_events (every lifecycle transition with its source).

Anchors: Mux live streams (`idle|active|disabled`, a reconnect window, recording assets with
`duration` and playback ids). The allowed transitions are in faithflow_ops/streams/lifecycle.py;
docs/streams.md is the runbook.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import CheckConstraint, ForeignKey, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from faithflow_ops.db import JSONType, UTCDateTime
from faithflow_ops.models.base import Base, CreatedAt, Timestamps, in_list, partial_index

PROVIDERS = ("mux", "custom")
SESSION_STATUSES = ("scheduled", "live", "interrupted", "ended", "failed", "canceled")
RECORDING_STATUSES = ("none", "processing", "ready", "failed")
INGEST_HEALTH = ("good", "ok", "bad", "no_signal")
EVENT_FIELDS = ("status", "recording")
EVENT_SOURCES = ("provider_sync", "webhook", "operator")
DEFAULT_RECONNECT_WINDOW_S = 60  # Mux's default `reconnect_window` (seconds)


class StreamChannel(Timestamps, Base):
    __tablename__ = "stream_channels"
    __table_args__ = (
        UniqueConstraint("tenant_id", "name"),
        UniqueConstraint("provider", "provider_stream_id"),
        CheckConstraint(in_list("provider", PROVIDERS), name="provider_known"),
        CheckConstraint(
            "reconnect_window_s >= 0 AND reconnect_window_s <= 1800", name="reconnect_window_range"
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id"), index=True)
    name: Mapped[str] = mapped_column(String(200))
    provider: Mapped[str] = mapped_column(String(16))
    # Mux live stream id; NULL for a `custom` channel nobody syncs
    provider_stream_id: Mapped[str | None] = mapped_column(String(128))
    # seconds a `disconnected` stream may come back before the session is over (Mux default 60)
    reconnect_window_s: Mapped[int] = mapped_column(
        Integer, default=DEFAULT_RECONNECT_WINDOW_S, server_default=str(DEFAULT_RECONNECT_WINDOW_S)
    )
    moderation_policy: Mapped[dict[str, Any]] = mapped_column(
        JSONType, default=dict, server_default="{}"
    )


class StreamSession(Timestamps, Base):
    __tablename__ = "stream_sessions"
    __table_args__ = (
        CheckConstraint(in_list("status", SESSION_STATUSES), name="status_known"),
        CheckConstraint(in_list("recording_status", RECORDING_STATUSES), name="recording_known"),
        CheckConstraint(
            "ingest_health IS NULL OR " + in_list("ingest_health", INGEST_HEALTH),
            name="ingest_health_known",
        ),
        # streams sync: the sessions still moving (status) or waiting for their recording
        partial_index(
            "ix_stream_sessions_sync",
            "channel_id",
            "scheduled_start",
            where="status IN ('scheduled', 'live', 'interrupted') "
            "OR recording_status = 'processing'",
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id"), index=True)
    channel_id: Mapped[int] = mapped_column(ForeignKey("stream_channels.id"), index=True)
    title: Mapped[str] = mapped_column(String(200))
    scheduled_start: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    status: Mapped[str] = mapped_column(String(16), default="scheduled")
    started_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    ended_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    # when the provider last reported the stream disconnected (the reconnect window runs from it)
    interrupted_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    ingest_health: Mapped[str | None] = mapped_column(String(16))
    recording_status: Mapped[str] = mapped_column(String(16), default="none")
    recording_asset_id: Mapped[str | None] = mapped_column(String(128))
    playback_url: Mapped[str | None] = mapped_column(String(500))
    duration_ms: Mapped[int | None] = mapped_column(Integer)
    peak_concurrent_viewers: Mapped[int | None] = mapped_column(Integer)
    # streams sync: the missed-start incident was raised (once per session)
    missed_start_alerted_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())


class StreamEvent(CreatedAt, Base):
    __tablename__ = "stream_events"
    __table_args__ = (
        CheckConstraint(in_list("field", EVENT_FIELDS), name="field_known"),
        CheckConstraint(in_list("source", EVENT_SOURCES), name="source_known"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id"))
    session_id: Mapped[int] = mapped_column(
        ForeignKey("stream_sessions.id", ondelete="CASCADE"), index=True
    )
    field: Mapped[str] = mapped_column(String(16))  # status | recording
    from_state: Mapped[str] = mapped_column(String(16))
    to_state: Mapped[str] = mapped_column(String(16))
    source: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str | None] = mapped_column(Text)
    occurred_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
