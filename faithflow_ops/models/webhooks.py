"""The webhook inbox: every verified delivery, one row per event (DESIGN §4)."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import (
    CheckConstraint,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from faithflow_ops.db import JSONType, UTCDateTime
from faithflow_ops.models.base import Base, Timestamps, partial_index

WEBHOOK_SCOPES = ("platform", "tenant")
# The receiver stores a verified delivery as `received` and answers; the applier (in the
# receiver process, or `faithflow webhooks apply`) moves it to a final status. `failed` rows
# keep the error and are retried with backoff (`next_attempt_at`), by redelivery or by
# `faithflow webhooks replay`.
WEBHOOK_STATUSES = ("received", "applied", "ignored", "unmatched", "stale", "failed")
# Rows the applier still has to handle.
WEBHOOK_WAITING = ("received", "failed")


class WebhookEvent(Timestamps, Base):
    __tablename__ = "webhook_events"
    __table_args__ = (
        # The idempotency key: one row per event however often it is delivered.
        UniqueConstraint("provider", "scope", "event_key"),
        CheckConstraint("scope IN ('platform', 'tenant')", name="scope_known"),
        CheckConstraint(
            "status IN ('received', 'applied', 'ignored', 'unmatched', 'stale', 'failed')",
            name="status_known",
        ),
        # webhooks list (newest first) and webhooks replay --failed / --unmatched
        Index("ix_webhook_events_status_received", "status", "first_received_at"),
        Index("ix_webhook_events_first_received_at", "first_received_at"),
        # linking a customer re-drives that customer's unmatched events (webhooks.service)
        partial_index(
            "ix_webhook_events_unmatched_customer",
            "provider",
            "customer_ref",
            where="status = 'unmatched'",
        ),
        # the applier's claim: waiting rows, due first (webhooks.applier, webhooks apply)
        partial_index(
            "ix_webhook_events_waiting",
            "next_attempt_at",
            "id",
            where="status IN ('received', 'failed')",
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    provider: Mapped[str] = mapped_column(String(16))
    scope: Mapped[str] = mapped_column(String(16))
    event_key: Mapped[str] = mapped_column(String(255))
    event_type: Mapped[str] = mapped_column(String(100))
    object_id: Mapped[str | None] = mapped_column(String(128))
    customer_ref: Mapped[str | None] = mapped_column(String(128))
    account_ref: Mapped[str | None] = mapped_column(String(128))
    tenant_id: Mapped[int | None] = mapped_column(Integer)
    occurred_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    # The parsed body. NULL when the body cannot be stored as JSON on every database (a
    # `\u0000` or a lone surrogate, which Postgres JSONB refuses): `raw_body` keeps it then.
    payload: Mapped[dict[str, Any] | None] = mapped_column(JSONType, nullable=True)
    raw_body: Mapped[bytes | None] = mapped_column(LargeBinary)
    status: Mapped[str] = mapped_column(String(16))
    delivery_count: Mapped[int] = mapped_column(Integer, default=1, server_default="1")
    first_received_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    last_received_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    applied_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    # What handling did ("subscription 12: active -> past_due"), for `webhooks show`.
    outcome: Mapped[str | None] = mapped_column(Text)
    last_error: Mapped[str | None] = mapped_column(Text)
    # The applier: how often handling failed, when to try again, and who holds the row now.
    attempts: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    next_attempt_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    locked_by: Mapped[str | None] = mapped_column(String(64))
    locked_until: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
