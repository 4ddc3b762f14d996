"""streams: views derived from view events at import

Revision ID: 0024
Revises: 0023
Create Date: 2026-12-07 23:00:00

Issue 18 (analytics): stream_views holds each session's views (a viewer's join or first
heartbeat after a silence, to its leave or the heartbeat timeout), rebuilt by
`streams ingest-views` for every session a file imports into. `streams analytics` reads them
(ix_stream_views_session_id) instead of walking every heartbeat: the window pass over a
1,000,000-event session costs seconds, so it runs once per import, not once per report.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0024"
down_revision: str | None = "0023"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "stream_views",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("session_id", sa.Integer(), nullable=False),
        sa.Column("viewer_id", sa.String(length=128), nullable=False),
        sa.Column("start_ms", sa.BigInteger(), nullable=False),
        sa.Column("end_ms", sa.BigInteger(), nullable=False),
        sa.Column("source", sa.String(length=16), nullable=False),
        sa.Column("referrer", sa.String(length=255), nullable=True),
        sa.ForeignKeyConstraint(
            ["session_id"],
            ["stream_sessions.id"],
            name=op.f("fk_stream_views_session_id_stream_sessions"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_stream_views")),
    )
    with op.batch_alter_table("stream_views", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_stream_views_session_id"), ["session_id"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("stream_views", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_stream_views_session_id"))
    op.drop_table("stream_views")
