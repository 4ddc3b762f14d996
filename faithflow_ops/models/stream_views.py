"""Post-stream analytics (issue 18): `stream_view_events`, the player beacons of a session —
a viewer joined, sent a heartbeat, or left, from which source (`web|app|embed|social|other`)
and referring site. Imported by `faithflow streams ingest-views`; read by `streams analytics`
(faithflow_ops/streams/views.py, faithflow_ops/streams/analytics.py; docs/streams.md defines
a view and watch time).
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import BigInteger, CheckConstraint, ForeignKey, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from faithflow_ops.db import UTCDateTime
from faithflow_ops.models.base import Base, in_list

VIEW_KINDS = ("heartbeat", "join", "leave")
VIEW_SOURCES = ("web", "app", "embed", "social", "other")


class StreamViewEvent(Base):
    __tablename__ = "stream_view_events"
    __table_args__ = (
        # The dedupe key (re-importing a file adds nothing) and the index `streams analytics`
        # reads: one session's events per viewer in time order, the order its window functions
        # walk (`kind` last: at one instant a heartbeat sorts before a join, a join before a
        # leave, as docs/streams.md needs).
        UniqueConstraint("session_id", "viewer_id", "at", "kind"),
        CheckConstraint(in_list("kind", VIEW_KINDS), name="kind_known"),
        CheckConstraint(in_list("source", VIEW_SOURCES), name="source_known"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    session_id: Mapped[int] = mapped_column(ForeignKey("stream_sessions.id", ondelete="CASCADE"))
    viewer_id: Mapped[str] = mapped_column(String(128))
    kind: Mapped[str] = mapped_column(String(16))  # join | heartbeat | leave
    at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    source: Mapped[str] = mapped_column(String(16))
    # the referring site's host (`facebook.com`): paths and queries are dropped at import
    referrer: Mapped[str | None] = mapped_column(String(255))


class StreamView(Base):
    """One view (docs/streams.md: a join or a heartbeat after a silence, to its leave or the
    heartbeat timeout), derived from a session's view events. `streams ingest-views` rebuilds a
    session's views after each import into it, so `streams analytics` reads a few rows per
    viewer instead of walking every heartbeat. Times are epoch milliseconds, unclipped (the
    report clips them to the session's span)."""

    __tablename__ = "stream_views"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    # streams analytics: one session's views
    session_id: Mapped[int] = mapped_column(
        ForeignKey("stream_sessions.id", ondelete="CASCADE"), index=True
    )
    viewer_id: Mapped[str] = mapped_column(String(128))
    start_ms: Mapped[int] = mapped_column(BigInteger)
    end_ms: Mapped[int] = mapped_column(BigInteger)
    source: Mapped[str] = mapped_column(String(16))  # the view's first event's
    referrer: Mapped[str | None] = mapped_column(String(255))
