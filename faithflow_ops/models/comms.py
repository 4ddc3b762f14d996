"""The communications outbox: every email, SMS and WhatsApp message the platform sends, and the
suppression list no message gets past (docs/comms.md)."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import (
    CheckConstraint,
    ForeignKey,
    Index,
    Integer,
    SmallInteger,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from faithflow_ops.db import JSONType, UTCDateTime
from faithflow_ops.models.base import Base, Timestamps, in_list, partial_index

CHANNELS = ("email", "sms", "whatsapp")
MESSAGE_STATUSES = (
    "queued",  # due now: the next dispatch sends it
    "scheduled",  # due at not_before (quiet hours, a suppression window, a retry backoff)
    "sending",  # claimed by a dispatcher until lease_expires_at
    "sent",  # the provider accepted it
    "delivered",  # the provider confirmed delivery
    "failed",  # permanent failure, or transient failures up to the maximum attempts
    "suppressed",  # the recipient is on the suppression list: never sent
    "canceled",  # by an operator, or because what it was about no longer holds
    "unknown",  # a dispatcher died while sending: maybe sent, never re-sent automatically
)
PENDING_STATUSES = ("queued", "scheduled")
SUPPRESSION_REASONS = ("bounce", "complaint", "unsubscribe", "stop")


class OutboundMessage(Timestamps, Base):
    """One message. Enqueued through `comms.outbox.enqueue` only, rendered at that moment, and
    sent by `comms dispatch` (claim with a lease, send, mark)."""

    __tablename__ = "outbound_messages"
    __table_args__ = (
        CheckConstraint(in_list("channel", CHANNELS), name="channel_known"),
        CheckConstraint(in_list("status", MESSAGE_STATUSES), name="status_known"),
        UniqueConstraint("idempotency_key"),
        # comms dispatch: messages waiting to be sent, soonest first
        partial_index(
            "ix_outbound_messages_dispatch_due",
            "next_attempt_at",
            where="status IN ('queued', 'scheduled')",
        ),
        # comms dispatch: claims whose lease ran out (the dispatcher died) become `unknown`
        partial_index(
            "ix_outbound_messages_dispatch_lease",
            "lease_expires_at",
            where="status = 'sending'",
        ),
        # what a message is about (dunning attempt, ticket…): cancel or show them together
        Index("ix_outbound_messages_about", "about_type", "about_id"),
        # dunning (suppression window): a tenant's latest messages of one kind
        Index("ix_outbound_messages_tenant_category", "tenant_id", "category", "not_before"),
        # comms list --status
        Index("ix_outbound_messages_status", "status", "id"),
        # twilio status callbacks: the message by its sid
        partial_index(
            "ix_outbound_messages_provider_message_id",
            "provider_message_id",
            where="provider_message_id IS NOT NULL",
        ),
        # retention run (redact_messages): a tenant's finished messages not yet redacted
        partial_index(
            "ix_outbound_messages_retention",
            "tenant_id",
            "id",
            where="redacted_at IS NULL AND status NOT IN ('queued', 'scheduled', 'sending')",
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    tenant_id: Mapped[int | None] = mapped_column(ForeignKey("tenants.id"))
    channel: Mapped[str] = mapped_column(String(16))
    # email: lower-case address; sms/whatsapp: E.164 (+2348012345678; the dispatcher adds
    # Twilio's `whatsapp:` prefix).
    recipient: Mapped[str] = mapped_column(String(320))
    template: Mapped[str] = mapped_column(String(100))
    # What the template was rendered with (kept so `comms show` explains the text).
    variables: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    locale: Mapped[str] = mapped_column(String(35), default="en")
    subject: Mapped[str | None] = mapped_column(String(500))  # email only
    body: Mapped[str] = mapped_column(Text)
    # A family of messages (`dunning`, `support`, …): suppression windows count per category.
    category: Mapped[str] = mapped_column(String(32), default="general")
    priority: Mapped[int] = mapped_column(SmallInteger, default=50)  # lower is sent first
    status: Mapped[str] = mapped_column(String(16), default="queued")
    idempotency_key: Mapped[str] = mapped_column(String(255))
    attempts: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    not_before: Mapped[dt.datetime] = mapped_column(UTCDateTime())  # never sent earlier
    next_attempt_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    lease_expires_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    claimed_by: Mapped[str | None] = mapped_column(String(200))
    provider_message_id: Mapped[str | None] = mapped_column(String(255))
    last_error: Mapped[str | None] = mapped_column(Text)
    sent_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    delivered_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    failed_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    canceled_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    # WhatsApp: the approved template it goes out as (Twilio Content SID, HX…) and the values
    # of its {{1}}, {{2}}… (comms/whatsapp.py); `body` is then the text that template reads.
    content_sid: Mapped[str | None] = mapped_column(String(34))
    content_variables: Mapped[dict[str, str] | None] = mapped_column(JSONType)
    # SMS: what it costs, counted at enqueue (comms/sms.py): GSM-7 or UCS-2, and segments.
    sms_encoding: Mapped[str | None] = mapped_column(String(8))
    sms_segments: Mapped[int | None] = mapped_column(SmallInteger)
    # Why the message is not what was asked: "sms instead of whatsapp: no opt-in recorded",
    # "2 GSM-7 segments: …" (shown by `comms show` and the dunning preview).
    note: Mapped[str | None] = mapped_column(Text)
    # The record this message is about: ("dunning_attempt", "12"), ("support_ticket", "7")…
    about_type: Mapped[str | None] = mapped_column(String(64))
    about_id: Mapped[str | None] = mapped_column(String(64))
    # When `retention run` redacted body, subject and variables (docs/retention.md).
    redacted_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())


class Suppression(Timestamps, Base):
    """A contact that must not be sent to on one channel (until `until`, or for good)."""

    __tablename__ = "comms_suppressions"
    __table_args__ = (
        CheckConstraint(in_list("channel", CHANNELS), name="channel_known"),
        CheckConstraint(in_list("reason", SUPPRESSION_REASONS), name="reason_known"),
        UniqueConstraint("contact", "channel"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    contact: Mapped[str] = mapped_column(String(320))  # normalised like a message's recipient
    channel: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str] = mapped_column(String(16))
    until: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())  # NULL = for good
    note: Mapped[str | None] = mapped_column(Text)
    created_by: Mapped[str | None] = mapped_column(String(200))


BOUNCE_KINDS = (
    "hard",  # the address does not exist (X.1.x): suppressed
    "soft",  # mailbox full, a temporary refusal (X.2.2, 4.X.X): suppressed after repeats
    "policy",  # our sending was refused (X.7.x relay denied, blocklisted): an incident, never
    # the recipient's fault
    "message",  # this message cannot be delivered as it is (too large, bad content)
)
BOUNCE_SOURCES = ("smtp", "dsn")  # refused at RCPT/DATA, or a delivery status notification


class Bounce(Timestamps, Base):
    """One e-mail a server refused or bounced, classified by its RFC 3463 status
    (comms.bounces): what decides a recipient's suppression, and a run's bounce-burst incident."""

    __tablename__ = "comms_bounces"
    __table_args__ = (
        CheckConstraint(in_list("kind", BOUNCE_KINDS), name="kind_known"),
        CheckConstraint(in_list("source", BOUNCE_SOURCES), name="source_known"),
        # comms dispatch: a recipient's soft bounces within the counting window
        Index("ix_comms_bounces_recipient", "channel", "recipient", "occurred_at"),
        # comms dispatch: a run's bounces not yet settled (suppression or incident)
        partial_index(
            "ix_comms_bounces_unsettled",
            "run",
            where="settled_at IS NULL",
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    message_id: Mapped[int | None] = mapped_column(ForeignKey("outbound_messages.id"))
    channel: Mapped[str] = mapped_column(String(16))
    recipient: Mapped[str] = mapped_column(String(320))
    kind: Mapped[str] = mapped_column(String(16))
    smtp_code: Mapped[int | None] = mapped_column(Integer)  # 550
    status: Mapped[str | None] = mapped_column(String(16))  # RFC 3463: 5.1.1
    diagnostic: Mapped[str | None] = mapped_column(Text)  # the server's words
    source: Mapped[str] = mapped_column(String(16))
    run: Mapped[str | None] = mapped_column(String(200))  # the dispatch that met it (smtp)
    occurred_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    settled_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    outcome: Mapped[str | None] = mapped_column(String(200))  # what settling it did


class EarlyStatus(Timestamps, Base):
    """A Twilio status callback that came before the dispatcher recorded its message's sid
    (comms.status): kept, and applied when the sid lands."""

    __tablename__ = "comms_early_statuses"
    __table_args__ = (
        UniqueConstraint("sid", "twilio_status"),
        # comms dispatch: the callbacks waiting for a message whose sid was just recorded
        partial_index(
            "ix_comms_early_statuses_waiting",
            "sid",
            where="applied_at IS NULL",
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    message_id: Mapped[int | None] = mapped_column(Integer)  # from the callback URL's ?m=
    sid: Mapped[str] = mapped_column(String(64))
    twilio_status: Mapped[str] = mapped_column(String(32))
    error_code: Mapped[int | None] = mapped_column(Integer)
    received_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    applied_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    result: Mapped[str | None] = mapped_column(String(16))
