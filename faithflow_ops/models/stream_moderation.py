"""Live chat moderation (issue 18): chat messages brought in from a platform's chat provider,
every moderation action with the rule that hit, viewer bans (a channel or one session), and a
session's moderation policy override (it may only tighten its channel's policy, kept in
`stream_channels.moderation_policy`).

faithflow_ops/streams/moderation*.py has the rules; docs/streams.md the runbook.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import CheckConstraint, ForeignKey, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from faithflow_ops.db import JSONType, UTCDateTime
from faithflow_ops.models.base import Base, CreatedAt, Timestamps, in_list, partial_index

# `pending` until `streams moderate` looks at it; then what the policy or an operator decided
MESSAGE_STATUSES = ("pending", "visible", "hidden", "held", "flagged", "approved")
MODERATION_ACTIONS = ("hide", "hold", "flag", "approve", "ban", "unban")
ACTION_SOURCES = ("job", "operator")


class StreamChatMessage(CreatedAt, Base):
    __tablename__ = "stream_chat_messages"
    __table_args__ = (
        # a re-import of the same export skips what it already brought in
        UniqueConstraint("session_id", "external_id"),
        CheckConstraint(in_list("status", MESSAGE_STATUSES), name="status_known"),
        # streams moderate: the messages nobody has looked at yet, oldest first
        partial_index(
            "ix_stream_chat_messages_unmoderated",
            "session_id",
            "sent_at",
            where="moderated_at IS NULL",
        ),
        # streams moderation queue: a session's held messages
        partial_index(
            "ix_stream_chat_messages_held", "session_id", "sent_at", where="status = 'held'"
        ),
        # streams moderate: a viewer's earlier messages in the channel (first-time chatters,
        # slow mode) and in a ban's scope
        partial_index(
            "ix_stream_chat_messages_viewer",
            "channel_id",
            "viewer_id",
            "sent_at",
            where="moderated_at IS NOT NULL",
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id"))
    channel_id: Mapped[int] = mapped_column(ForeignKey("stream_channels.id"))
    # indexed by the unique (session_id, external_id)
    session_id: Mapped[int] = mapped_column(ForeignKey("stream_sessions.id", ondelete="CASCADE"))
    # the chat provider's message id, or a digest of viewer, time and text when it gave none
    external_id: Mapped[str] = mapped_column(String(128))
    viewer_id: Mapped[str] = mapped_column(String(128))
    viewer_name: Mapped[str] = mapped_column(String(200))
    body: Mapped[str] = mapped_column(Text)
    sent_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    status: Mapped[str] = mapped_column(String(16), default="pending")
    rule: Mapped[str | None] = mapped_column(String(32))  # the rule behind the status
    moderated_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())


class StreamModerationAction(CreatedAt, Base):
    __tablename__ = "stream_moderation_actions"
    __table_args__ = (
        CheckConstraint(in_list("action", MODERATION_ACTIONS), name="action_known"),
        CheckConstraint(in_list("source", ACTION_SOURCES), name="source_known"),
        CheckConstraint(
            "message_id IS NOT NULL OR viewer_id IS NOT NULL", name="message_or_viewer"
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id"))
    channel_id: Mapped[int] = mapped_column(ForeignKey("stream_channels.id"), index=True)
    session_id: Mapped[int | None] = mapped_column(
        ForeignKey("stream_sessions.id", ondelete="CASCADE"), index=True
    )
    message_id: Mapped[int | None] = mapped_column(
        ForeignKey("stream_chat_messages.id", ondelete="CASCADE"), index=True
    )
    viewer_id: Mapped[str | None] = mapped_column(String(128))
    action: Mapped[str] = mapped_column(String(16))
    rule: Mapped[str | None] = mapped_column(String(32))
    source: Mapped[str] = mapped_column(String(16))  # job | operator
    actor: Mapped[str] = mapped_column(String(200))
    reason: Mapped[str | None] = mapped_column(Text)
    occurred_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())


class StreamBan(CreatedAt, Base):
    __tablename__ = "stream_bans"
    __table_args__ = (
        # one standing ban per viewer and scope (a channel, or one session)
        partial_index(
            "uq_stream_bans_channel_viewer",
            "channel_id",
            "viewer_id",
            where="lifted_at IS NULL AND session_id IS NULL",
            unique=True,
        ),
        partial_index(
            "uq_stream_bans_session_viewer",
            "session_id",
            "viewer_id",
            where="lifted_at IS NULL AND session_id IS NOT NULL",
            unique=True,
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id"))
    channel_id: Mapped[int] = mapped_column(ForeignKey("stream_channels.id"), index=True)
    # NULL: the whole channel; else this session only
    session_id: Mapped[int | None] = mapped_column(
        ForeignKey("stream_sessions.id", ondelete="CASCADE")
    )
    viewer_id: Mapped[str] = mapped_column(String(128))
    reason: Mapped[str | None] = mapped_column(Text)
    banned_by: Mapped[str] = mapped_column(String(200))
    banned_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    lifted_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    lifted_by: Mapped[str | None] = mapped_column(String(200))


class StreamSessionPolicy(Timestamps, Base):
    """A session's own moderation policy: the keys it tightens over its channel's."""

    __tablename__ = "stream_session_policies"

    session_id: Mapped[int] = mapped_column(
        ForeignKey("stream_sessions.id", ondelete="CASCADE"), primary_key=True
    )
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id"))
    policy: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict, server_default="{}")
    updated_by: Mapped[str] = mapped_column(String(200))
