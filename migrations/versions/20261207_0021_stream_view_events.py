"""streams: view events for post-stream analytics

Revision ID: 0021
Revises: 0020
Create Date: 2026-12-07 22:40:00

Issue 18 (analytics): stream_view_events holds a session's player beacons (join, heartbeat,
leave; source and referring host), imported by `streams ingest-views`. Its unique key
(session_id, viewer_id, at, kind) is both the dedupe key (re-importing a file adds nothing) and
the index `streams analytics` walks: one session's events per viewer in time order, the order of
its window functions, so Postgres reads them from the index instead of sorting.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import faithflow_ops.db

revision: str = "0021"
down_revision: str | None = "0020"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "stream_view_events",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("session_id", sa.Integer(), nullable=False),
        sa.Column("viewer_id", sa.String(length=128), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("at", faithflow_ops.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("source", sa.String(length=16), nullable=False),
        sa.Column("referrer", sa.String(length=255), nullable=True),
        sa.CheckConstraint(
            "kind IN ('heartbeat', 'join', 'leave')", name=op.f("ck_stream_view_events_kind_known")
        ),
        sa.CheckConstraint(
            "source IN ('web', 'app', 'embed', 'social', 'other')",
            name=op.f("ck_stream_view_events_source_known"),
        ),
        sa.ForeignKeyConstraint(
            ["session_id"],
            ["stream_sessions.id"],
            name=op.f("fk_stream_view_events_session_id_stream_sessions"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_stream_view_events")),
        sa.UniqueConstraint(
            "session_id",
            "viewer_id",
            "at",
            "kind",
            name=op.f("uq_stream_view_events_session_id_viewer_id_at_kind"),
        ),
    )


def downgrade() -> None:
    op.drop_table("stream_view_events")
