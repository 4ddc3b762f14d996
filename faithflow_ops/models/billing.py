"""Plans, subscriptions and invoices: FaithFlow billing its tenants through Stripe and Paystack."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    ForeignKey,
    Index,
    Integer,
    SmallInteger,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from faithflow_ops.db import JSONType, UTCDateTime
from faithflow_ops.models.base import Base, Timestamps, partial_index
from faithflow_ops.models.tenancy import Tenant

PROVIDERS = ("stripe", "paystack")
PLAN_INTERVALS = ("month", "year")
SUBSCRIPTION_STATUSES = (
    "trialing",
    "active",
    "past_due",
    "unpaid",
    "suspended",
    "canceled",
    "incomplete",
)
INVOICE_STATUSES = ("draft", "open", "paid", "uncollectible", "void")
PLAN_CHANGE_KINDS = ("upgrade", "downgrade", "interval_change")
PLAN_CHANGE_STATUSES = ("scheduled", "applied", "rejected", "canceled")
# A live subscription is one that is not canceled; a tenant has at most one (the index below;
# `subs add` refuses a second, the webhooks adopt or hold theirs: billing/lifecycle.py).
LIVE_SUBSCRIPTION = "status <> 'canceled'"
LIVE_SUBSCRIPTION_INDEX = "uq_subscriptions_live_tenant"
# subscriptions.metadata: the Paystack authorization a renewal or a dunning retry charges
AUTHORIZATION_KEY = "paystackAuthorizationCode"


class SubscriptionPlan(Timestamps, Base):
    __tablename__ = "subscription_plans"
    __table_args__ = (
        CheckConstraint("interval IN ('month', 'year')", name="interval_known"),
        CheckConstraint("amount_minor >= 0", name="amount_not_negative"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    code: Mapped[str] = mapped_column(String(64), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    amount_minor: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3))
    interval: Mapped[str] = mapped_column(String(8))
    tier_rank: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    active: Mapped[bool] = mapped_column(Boolean, default=True, server_default="1")
    # Provider ids live here: stripePriceId, stripeProductId, paystackPlanCode, …
    metadata_: Mapped[dict[str, Any]] = mapped_column(
        "metadata", JSONType, default=dict, server_default="{}"
    )


class Subscription(Timestamps, Base):
    __tablename__ = "subscriptions"
    __table_args__ = (
        CheckConstraint("provider IN ('stripe', 'paystack')", name="provider_known"),
        CheckConstraint(
            "status IN ('trialing', 'active', 'past_due', 'unpaid', 'suspended', "
            "'canceled', 'incomplete')",
            name="status_known",
        ),
        UniqueConstraint("provider", "provider_subscription_id"),
        # One live subscription per tenant (issue 16), held by the database too.
        partial_index(LIVE_SUBSCRIPTION_INDEX, "tenant_id", where=LIVE_SUBSCRIPTION, unique=True),
        # subs backfill and subs list filter by status
        Index("ix_subscriptions_status", "status"),
        # subs automate (trial_ending_notice): trials ending in the next days
        partial_index(
            "ix_subscriptions_automate_trial_end",
            "trial_end",
            where="status = 'trialing'",
        ),
        # subs automate (mark_past_due): active Paystack subscriptions whose period has ended
        partial_index(
            "ix_subscriptions_automate_paystack_period_end",
            "current_period_end",
            where="provider = 'paystack' AND status = 'active'",
        ),
        # subs automate (suspend_tenant): how long past-due subscriptions have been past due
        partial_index(
            "ix_subscriptions_automate_past_due_since",
            "past_due_since",
            where="status IN ('past_due', 'unpaid')",
        ),
        # subs automate (cancel_subscription): cancellations waiting for their period end
        partial_index(
            "ix_subscriptions_automate_cancel_at_period_end",
            "current_period_end",
            where="cancel_at_period_end AND status <> 'canceled'",
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id"), index=True)
    plan_id: Mapped[int] = mapped_column(ForeignKey("subscription_plans.id"), index=True)
    provider: Mapped[str] = mapped_column(String(16))
    provider_subscription_id: Mapped[str | None] = mapped_column(String(128))
    # Normalised by `subs backfill`: cus_… (Stripe) or CUS_… (Paystack).
    provider_customer_id: Mapped[str | None] = mapped_column(String(128))
    status: Mapped[str] = mapped_column(String(16), default="incomplete")
    trial_end: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    current_period_start: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    current_period_end: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    cancel_at_period_end: Mapped[bool] = mapped_column(Boolean, default=False, server_default="0")
    past_due_since: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    # The trial_end that `subs automate` last sent a trial-ending notice for (one per trial).
    trial_notice_for: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    canceled_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    metadata_: Mapped[dict[str, Any]] = mapped_column(
        "metadata", JSONType, default=dict, server_default="{}"
    )
    # When the provider last told us this subscription's state, and the rank of that event
    # type at that instant (webhooks apply an event only when (time, rank) is not older).
    provider_state_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    provider_state_rank: Mapped[int] = mapped_column(SmallInteger, default=0, server_default="0")

    tenant: Mapped[Tenant] = relationship()
    plan: Mapped[SubscriptionPlan] = relationship()


class Invoice(Timestamps, Base):
    __tablename__ = "invoices"
    __table_args__ = (
        UniqueConstraint("provider", "provider_invoice_id"),
        CheckConstraint(
            "status IN ('draft', 'open', 'paid', 'uncollectible', 'void')", name="status_known"
        ),
        # subs automate (mark_past_due): is there a paid invoice reaching past the period end?
        partial_index(
            "ix_invoices_automate_paid_period_end",
            "subscription_id",
            "period_end",
            where="status = 'paid'",
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id"), index=True)
    subscription_id: Mapped[int | None] = mapped_column(ForeignKey("subscriptions.id"), index=True)
    provider: Mapped[str] = mapped_column(String(16))
    provider_invoice_id: Mapped[str | None] = mapped_column(String(128))
    status: Mapped[str] = mapped_column(String(16), default="open")
    amount_due_minor: Mapped[int] = mapped_column(BigInteger, default=0)
    amount_paid_minor: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    currency: Mapped[str] = mapped_column(String(3))
    period_start: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    period_end: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    due_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    paid_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    hosted_invoice_url: Mapped[str | None] = mapped_column(String(1000))
    metadata_: Mapped[dict[str, Any]] = mapped_column(
        "metadata", JSONType, default=dict, server_default="{}"
    )
    provider_state_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    provider_state_rank: Mapped[int] = mapped_column(SmallInteger, default=0, server_default="0")


class ProviderAccount(Timestamps, Base):
    """A provider-side id that belongs to a tenant: the platform's customer for that church
    (`cus_…`, `CUS_…`), its Stripe Connect account (`acct_…`) or its Paystack subaccount
    (`ACCT_…`). Webhooks resolve the tenant of an event through these rows."""

    __tablename__ = "provider_accounts"
    __table_args__ = (
        UniqueConstraint("provider", "kind", "external_id"),
        CheckConstraint("kind IN ('customer', 'connect_account', 'subaccount')", name="kind_known"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id"), index=True)
    provider: Mapped[str] = mapped_column(String(16))
    kind: Mapped[str] = mapped_column(String(16))
    external_id: Mapped[str] = mapped_column(String(128))
    source: Mapped[str] = mapped_column(String(100))  # "cli:…", "webhook:evt_…"


class PlanChange(Timestamps, Base):
    """A change of a subscription's plan or billing interval, scheduled for `effective_at`.

    `subs automate` applies a `scheduled` change once its time has come (switching the
    subscription's plan locally); provider-side calls belong to whoever schedules it.
    """

    __tablename__ = "plan_changes"
    __table_args__ = (
        CheckConstraint("kind IN ('upgrade', 'downgrade', 'interval_change')", name="kind_known"),
        CheckConstraint(
            "status IN ('scheduled', 'applied', 'rejected', 'canceled')", name="status_known"
        ),
        # subs automate (apply_plan_change): scheduled changes whose time has come
        partial_index(
            "ix_plan_changes_automate_scheduled",
            "effective_at",
            where="status = 'scheduled'",
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id"), index=True)
    subscription_id: Mapped[int] = mapped_column(ForeignKey("subscriptions.id"), index=True)
    from_plan_id: Mapped[int | None] = mapped_column(ForeignKey("subscription_plans.id"))
    to_plan_id: Mapped[int] = mapped_column(ForeignKey("subscription_plans.id"))
    from_interval: Mapped[str | None] = mapped_column(String(8))
    to_interval: Mapped[str | None] = mapped_column(String(8))
    kind: Mapped[str] = mapped_column(String(16))
    requested_by: Mapped[str | None] = mapped_column(String(200))
    reason: Mapped[str | None] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(16), default="scheduled", server_default="scheduled")
    effective_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    applied_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    canceled_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    provider_refs: Mapped[dict[str, Any]] = mapped_column(
        JSONType, default=dict, server_default="{}"
    )
    error: Mapped[str | None] = mapped_column(Text)
