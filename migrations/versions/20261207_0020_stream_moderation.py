"""streams: chat messages, moderation actions, bans, session policies

Revision ID: 0020
Revises: 0019
Create Date: 2026-12-07 22:27:05

Issue 18 (moderation): stream_chat_messages are brought in from a platform's chat provider
(`streams chat import`) and moderated by `streams moderate`, which sweeps the partial index
ix_stream_chat_messages_unmoderated and reads a viewer's earlier messages through
ix_stream_chat_messages_viewer (first-time chatters, slow mode). `streams moderation queue`
reads ix_stream_chat_messages_held. stream_moderation_actions records every hide/hold/flag,
approve, ban and unban with the rule that hit; stream_bans holds one standing ban per viewer and
scope (a channel, or one session); stream_session_policies is a session's tightening of its
channel's policy.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

import faithflow_ops.db

revision: str = "0020"
down_revision: str | None = "0019"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "stream_bans",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("tenant_id", sa.Integer(), nullable=False),
        sa.Column("channel_id", sa.Integer(), nullable=False),
        sa.Column("session_id", sa.Integer(), nullable=True),
        sa.Column("viewer_id", sa.String(length=128), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("banned_by", sa.String(length=200), nullable=False),
        sa.Column("banned_at", faithflow_ops.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("lifted_at", faithflow_ops.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("lifted_by", sa.String(length=200), nullable=True),
        sa.Column(
            "created_at",
            faithflow_ops.db.UTCDateTime(timezone=True),
            server_default=faithflow_ops.db.utc_now_default(),
            nullable=False,
        ),
        sa.ForeignKeyConstraint(
            ["channel_id"],
            ["stream_channels.id"],
            name=op.f("fk_stream_bans_channel_id_stream_channels"),
        ),
        sa.ForeignKeyConstraint(
            ["session_id"],
            ["stream_sessions.id"],
            name=op.f("fk_stream_bans_session_id_stream_sessions"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["tenants.id"], name=op.f("fk_stream_bans_tenant_id_tenants")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_stream_bans")),
    )
    with op.batch_alter_table("stream_bans", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_stream_bans_channel_id"), ["channel_id"], unique=False)
        batch_op.create_index(
            "uq_stream_bans_channel_viewer",
            ["channel_id", "viewer_id"],
            unique=True,
            postgresql_where=sa.text("lifted_at IS NULL AND session_id IS NULL"),
            sqlite_where=sa.text("lifted_at IS NULL AND session_id IS NULL"),
        )
        batch_op.create_index(
            "uq_stream_bans_session_viewer",
            ["session_id", "viewer_id"],
            unique=True,
            postgresql_where=sa.text("lifted_at IS NULL AND session_id IS NOT NULL"),
            sqlite_where=sa.text("lifted_at IS NULL AND session_id IS NOT NULL"),
        )

    op.create_table(
        "stream_chat_messages",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("tenant_id", sa.Integer(), nullable=False),
        sa.Column("channel_id", sa.Integer(), nullable=False),
        sa.Column("session_id", sa.Integer(), nullable=False),
        sa.Column("external_id", sa.String(length=128), nullable=False),
        sa.Column("viewer_id", sa.String(length=128), nullable=False),
        sa.Column("viewer_name", sa.String(length=200), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("sent_at", faithflow_ops.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("rule", sa.String(length=32), nullable=True),
        sa.Column("moderated_at", faithflow_ops.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column(
            "created_at",
            faithflow_ops.db.UTCDateTime(timezone=True),
            server_default=faithflow_ops.db.utc_now_default(),
            nullable=False,
        ),
        sa.CheckConstraint(
            "status IN ('pending', 'visible', 'hidden', 'held', 'flagged', 'approved')",
            name=op.f("ck_stream_chat_messages_status_known"),
        ),
        sa.ForeignKeyConstraint(
            ["channel_id"],
            ["stream_channels.id"],
            name=op.f("fk_stream_chat_messages_channel_id_stream_channels"),
        ),
        sa.ForeignKeyConstraint(
            ["session_id"],
            ["stream_sessions.id"],
            name=op.f("fk_stream_chat_messages_session_id_stream_sessions"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["tenants.id"], name=op.f("fk_stream_chat_messages_tenant_id_tenants")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_stream_chat_messages")),
        sa.UniqueConstraint(
            "session_id", "external_id", name=op.f("uq_stream_chat_messages_session_id_external_id")
        ),
    )
    with op.batch_alter_table("stream_chat_messages", schema=None) as batch_op:
        batch_op.create_index(
            "ix_stream_chat_messages_held",
            ["session_id", "sent_at"],
            unique=False,
            postgresql_where=sa.text("status = 'held'"),
            sqlite_where=sa.text("status = 'held'"),
        )
        batch_op.create_index(
            "ix_stream_chat_messages_unmoderated",
            ["session_id", "sent_at"],
            unique=False,
            postgresql_where=sa.text("moderated_at IS NULL"),
            sqlite_where=sa.text("moderated_at IS NULL"),
        )
        batch_op.create_index(
            "ix_stream_chat_messages_viewer",
            ["channel_id", "viewer_id", "sent_at"],
            unique=False,
            postgresql_where=sa.text("moderated_at IS NOT NULL"),
            sqlite_where=sa.text("moderated_at IS NOT NULL"),
        )

    op.create_table(
        "stream_session_policies",
        sa.Column("session_id", sa.Integer(), nullable=False),
        sa.Column("tenant_id", sa.Integer(), nullable=False),
        sa.Column(
            "policy",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            server_default="{}",
            nullable=False,
        ),
        sa.Column("updated_by", sa.String(length=200), nullable=False),
        sa.Column(
            "updated_at",
            faithflow_ops.db.UTCDateTime(timezone=True),
            server_default=faithflow_ops.db.utc_now_default(),
            nullable=False,
        ),
        sa.Column(
            "created_at",
            faithflow_ops.db.UTCDateTime(timezone=True),
            server_default=faithflow_ops.db.utc_now_default(),
            nullable=False,
        ),
        sa.ForeignKeyConstraint(
            ["session_id"],
            ["stream_sessions.id"],
            name=op.f("fk_stream_session_policies_session_id_stream_sessions"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["tenants.id"], name=op.f("fk_stream_session_policies_tenant_id_tenants")
        ),
        sa.PrimaryKeyConstraint("session_id", name=op.f("pk_stream_session_policies")),
    )
    op.create_table(
        "stream_moderation_actions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("tenant_id", sa.Integer(), nullable=False),
        sa.Column("channel_id", sa.Integer(), nullable=False),
        sa.Column("session_id", sa.Integer(), nullable=True),
        sa.Column("message_id", sa.Integer(), nullable=True),
        sa.Column("viewer_id", sa.String(length=128), nullable=True),
        sa.Column("action", sa.String(length=16), nullable=False),
        sa.Column("rule", sa.String(length=32), nullable=True),
        sa.Column("source", sa.String(length=16), nullable=False),
        sa.Column("actor", sa.String(length=200), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("occurred_at", faithflow_ops.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column(
            "created_at",
            faithflow_ops.db.UTCDateTime(timezone=True),
            server_default=faithflow_ops.db.utc_now_default(),
            nullable=False,
        ),
        sa.CheckConstraint(
            "action IN ('hide', 'hold', 'flag', 'approve', 'ban', 'unban')",
            name=op.f("ck_stream_moderation_actions_action_known"),
        ),
        sa.CheckConstraint(
            "source IN ('job', 'operator')", name=op.f("ck_stream_moderation_actions_source_known")
        ),
        sa.CheckConstraint(
            "message_id IS NOT NULL OR viewer_id IS NOT NULL",
            name=op.f("ck_stream_moderation_actions_message_or_viewer"),
        ),
        sa.ForeignKeyConstraint(
            ["channel_id"],
            ["stream_channels.id"],
            name=op.f("fk_stream_moderation_actions_channel_id_stream_channels"),
        ),
        sa.ForeignKeyConstraint(
            ["message_id"],
            ["stream_chat_messages.id"],
            name=op.f("fk_stream_moderation_actions_message_id_stream_chat_messages"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["session_id"],
            ["stream_sessions.id"],
            name=op.f("fk_stream_moderation_actions_session_id_stream_sessions"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id"],
            ["tenants.id"],
            name=op.f("fk_stream_moderation_actions_tenant_id_tenants"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_stream_moderation_actions")),
    )
    with op.batch_alter_table("stream_moderation_actions", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_stream_moderation_actions_channel_id"), ["channel_id"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_stream_moderation_actions_message_id"), ["message_id"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_stream_moderation_actions_session_id"), ["session_id"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("stream_moderation_actions", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_stream_moderation_actions_session_id"))
        batch_op.drop_index(batch_op.f("ix_stream_moderation_actions_message_id"))
        batch_op.drop_index(batch_op.f("ix_stream_moderation_actions_channel_id"))

    op.drop_table("stream_moderation_actions")
    op.drop_table("stream_session_policies")
    with op.batch_alter_table("stream_chat_messages", schema=None) as batch_op:
        batch_op.drop_index(
            "ix_stream_chat_messages_viewer",
            postgresql_where=sa.text("moderated_at IS NOT NULL"),
            sqlite_where=sa.text("moderated_at IS NOT NULL"),
        )
        batch_op.drop_index(
            "ix_stream_chat_messages_unmoderated",
            postgresql_where=sa.text("moderated_at IS NULL"),
            sqlite_where=sa.text("moderated_at IS NULL"),
        )
        batch_op.drop_index(
            "ix_stream_chat_messages_held",
            postgresql_where=sa.text("status = 'held'"),
            sqlite_where=sa.text("status = 'held'"),
        )

    op.drop_table("stream_chat_messages")
    with op.batch_alter_table("stream_bans", schema=None) as batch_op:
        batch_op.drop_index(
            "uq_stream_bans_session_viewer",
            postgresql_where=sa.text("lifted_at IS NULL AND session_id IS NOT NULL"),
            sqlite_where=sa.text("lifted_at IS NULL AND session_id IS NOT NULL"),
        )
        batch_op.drop_index(
            "uq_stream_bans_channel_viewer",
            postgresql_where=sa.text("lifted_at IS NULL AND session_id IS NULL"),
            sqlite_where=sa.text("lifted_at IS NULL AND session_id IS NULL"),
        )
        batch_op.drop_index(batch_op.f("ix_stream_bans_channel_id"))

    op.drop_table("stream_bans")
