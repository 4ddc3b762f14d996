"""Dunning: a case per past-due episode of a subscription, the steps taken on it, the ladder
(policy) and each tenant's preferences (docs/dunning.md)."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    ForeignKey,
    Index,
    SmallInteger,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from faithflow_ops.db import JSONType, UTCDateTime
from faithflow_ops.models.base import Base, CreatedAt, Timestamps, partial_index

CASE_STATUSES = ("open", "recovered", "suspended", "canceled")
ATTEMPT_CHANNELS = ("email", "sms", "whatsapp", "payment_retry", "handover")
RETRY_OUTCOMES = ("succeeded", "failed", "error", "skipped")


class DunningCase(Timestamps, Base):
    """One past-due episode: opens when the subscription goes past due, closes once."""

    __tablename__ = "dunning_cases"
    __table_args__ = (
        CheckConstraint(
            "status IN ('open', 'recovered', 'suspended', 'canceled')", name="status_known"
        ),
        # One open case per subscription; a later episode opens a new case.
        partial_index(
            "uq_dunning_cases_open_subscription",
            "subscription_id",
            unique=True,
            where="status = 'open'",
        ),
        # dunning analytics: cases by the time they opened and closed
        Index("ix_dunning_cases_opened_at", "opened_at"),
        Index("ix_dunning_cases_closed_at", "closed_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id"), index=True)
    subscription_id: Mapped[int] = mapped_column(ForeignKey("subscriptions.id"))
    status: Mapped[str] = mapped_column(String(16), default="open", server_default="open")
    opened_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    # The ladder's clock: the subscription's past_due_since when the case opened.
    past_due_since: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    invoice_id: Mapped[int | None] = mapped_column(ForeignKey("invoices.id"))
    provider_invoice_id: Mapped[str | None] = mapped_column(String(128))
    amount_minor: Mapped[int] = mapped_column(BigInteger, default=0)
    currency: Mapped[str] = mapped_column(String(3))
    opened_by: Mapped[str] = mapped_column(String(200))  # "webhook:stripe", "job:…"
    closed_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    closed_by: Mapped[str | None] = mapped_column(String(200))
    # The last ladder step taken before the case was recovered (analytics: recovery by step).
    recovered_after_step: Mapped[str | None] = mapped_column(String(64))
    handed_over_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())


class DunningAttempt(CreatedAt, Base):
    """One thing a ladder step did on a case: a message on one channel, a payment retry, or the
    hand-over to suspension. UNIQUE(case, step, channel): a step is never taken twice."""

    __tablename__ = "dunning_attempts"
    __table_args__ = (
        CheckConstraint(
            "channel IN ('email', 'sms', 'whatsapp', 'payment_retry', 'handover')",
            name="channel_known",
        ),
        UniqueConstraint("case_id", "step", "channel"),
        # dunning (suppression window) and analytics: a tenant's attempts by time
        Index("ix_dunning_attempts_tenant_scheduled", "tenant_id", "scheduled_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    case_id: Mapped[int] = mapped_column(ForeignKey("dunning_cases.id", ondelete="CASCADE"))
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id"))
    step: Mapped[str] = mapped_column(String(64))
    step_index: Mapped[int] = mapped_column(SmallInteger)
    channel: Mapped[str] = mapped_column(String(16))
    scheduled_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    message_id: Mapped[int | None] = mapped_column(ForeignKey("outbound_messages.id"))
    retry_outcome: Mapped[str | None] = mapped_column(String(16))
    detail: Mapped[str | None] = mapped_column(Text)


class DunningPolicy(Timestamps, Base):
    """The ladder in force (one row, name `default`); no row = the built-in default ladder."""

    __tablename__ = "dunning_policies"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    steps: Mapped[list[dict[str, Any]]] = mapped_column(JSONType)
    source: Mapped[str | None] = mapped_column(Text)  # the TOML it was set from
    updated_by: Mapped[str | None] = mapped_column(String(200))


class DunningPreference(Timestamps, Base):
    """A tenant's dunning preferences; no row (or a NULL field) = the defaults."""

    __tablename__ = "dunning_preferences"

    id: Mapped[int] = mapped_column(primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id"), unique=True)
    channels: Mapped[list[str] | None] = mapped_column(JSONType)  # allowed; NULL = all
    email: Mapped[str | None] = mapped_column(String(320))  # overrides tenants.billing_email
    phone: Mapped[str | None] = mapped_column(String(32))  # overrides tenants.billing_phone
    # The WhatsApp number: never defaulted to the phone — WhatsApp needs the church's opt-in
    # for that number, recorded with where it came from and when (`dunning prefs set
    # --whatsapp-consent`); without it dunning WhatsApp messages go by SMS.
    whatsapp: Mapped[str | None] = mapped_column(String(32))
    whatsapp_opt_in_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    whatsapp_opt_in_source: Mapped[str | None] = mapped_column(String(200))
    # [{"days": [0..6] (Monday = 0), "start": "21:00", "end": "08:00"}, …]; NULL = defaults
    quiet_hours: Mapped[list[dict[str, Any]] | None] = mapped_column(JSONType)
    sms_opt_out: Mapped[bool] = mapped_column(Boolean, default=False, server_default="0")
    whatsapp_opt_out: Mapped[bool] = mapped_column(Boolean, default=False, server_default="0")
    paused_until: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    pause_note: Mapped[str | None] = mapped_column(Text)
    updated_by: Mapped[str | None] = mapped_column(String(200))
