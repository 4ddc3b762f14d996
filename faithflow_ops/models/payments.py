"""Money a church takes (giving, event fees) on its own provider account, and disputes on
either scope: a church's payment (`tenant`) or FaithFlow's invoice to a church (`platform`)."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    ForeignKey,
    SmallInteger,
    String,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from faithflow_ops.db import JSONType, UTCDateTime
from faithflow_ops.models.base import Base, Timestamps

PAYMENT_STATUSES = ("pending", "succeeded", "failed", "refunded", "partially_refunded", "canceled")
DISPUTE_SCOPES = ("platform", "tenant")
# The provider's words for a dispute that is over (`disputes.status` holds the provider's own).
STRIPE_DISPUTE_CLOSED = frozenset({"won", "lost", "warning_closed", "prevented"})
PAYSTACK_DISPUTE_CLOSED = frozenset({"resolved", "archived"})
DISPUTE_CLOSED = STRIPE_DISPUTE_CLOSED | PAYSTACK_DISPUTE_CLOSED


class Payment(Timestamps, Base):
    __tablename__ = "payments"
    __table_args__ = (
        UniqueConstraint("provider", "provider_payment_id"),
        CheckConstraint(
            "status IN ('pending', 'succeeded', 'failed', 'refunded', 'partially_refunded', "
            "'canceled')",
            name="status_known",
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id"), index=True)
    provider: Mapped[str] = mapped_column(String(16))
    # Stripe PaymentIntent id (pi_…) or Paystack transaction reference.
    provider_payment_id: Mapped[str] = mapped_column(String(128))
    # Stripe charge id (ch_…): disputes and refunds name the charge. Paystack: the transaction id.
    provider_charge_id: Mapped[str | None] = mapped_column(String(128), index=True)
    status: Mapped[str] = mapped_column(String(24))
    amount_minor: Mapped[int] = mapped_column(BigInteger)
    amount_refunded_minor: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    currency: Mapped[str] = mapped_column(String(3))
    purpose: Mapped[str | None] = mapped_column(String(64))  # metadata.purpose: giving, event_fee…
    payer_email: Mapped[str | None] = mapped_column(String(320))
    paid_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    failure_reason: Mapped[str | None] = mapped_column(String(500))
    metadata_: Mapped[dict[str, Any]] = mapped_column(
        "metadata", JSONType, default=dict, server_default="{}"
    )
    provider_state_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    provider_state_rank: Mapped[int] = mapped_column(SmallInteger, default=0, server_default="0")


class Dispute(Timestamps, Base):
    __tablename__ = "disputes"
    __table_args__ = (
        UniqueConstraint("provider", "provider_dispute_id"),
        CheckConstraint("scope IN ('platform', 'tenant')", name="scope_known"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id"), index=True)
    scope: Mapped[str] = mapped_column(String(16))
    provider: Mapped[str] = mapped_column(String(16))
    provider_dispute_id: Mapped[str] = mapped_column(String(128))
    # The disputed charge (Stripe ch_…, Paystack transaction reference).
    charge_ref: Mapped[str | None] = mapped_column(String(128))
    payment_id: Mapped[int | None] = mapped_column(ForeignKey("payments.id"), index=True)
    invoice_id: Mapped[int | None] = mapped_column(ForeignKey("invoices.id"), index=True)
    amount_minor: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3))
    reason: Mapped[str | None] = mapped_column(String(100))
    status: Mapped[str] = mapped_column(String(64))  # the provider's own status words
    evidence_due_by: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    closed_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    metadata_: Mapped[dict[str, Any]] = mapped_column(
        "metadata", JSONType, default=dict, server_default="{}"
    )
    provider_state_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    provider_state_rank: Mapped[int] = mapped_column(SmallInteger, default=0, server_default="0")
