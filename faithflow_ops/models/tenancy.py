"""Tenants (churches), users (tenant staff and platform agents) and tenant security policies."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import Boolean, CheckConstraint, ForeignKey, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from faithflow_ops.db import UTCDateTime
from faithflow_ops.models.base import Base, Timestamps, partial_index

TENANT_STATUSES = ("active", "suspended", "archived")
USER_ROLES = ("owner", "admin", "staff", "volunteer", "platform_admin", "platform_agent")


class Tenant(Timestamps, Base):
    __tablename__ = "tenants"
    __table_args__ = (
        CheckConstraint("status IN ('active', 'suspended', 'archived')", name="status_known"),
        CheckConstraint(
            "billing_grace_days IS NULL OR billing_grace_days >= 0",
            name="billing_grace_days_not_negative",
        ),
        # subs automate (reactivate_tenant): tenants suspended for non-payment
        partial_index(
            "ix_tenants_automate_suspended_non_payment",
            "id",
            where="status = 'suspended' AND suspension_reason = 'non_payment'",
        ),
        # subs automate (suspend_tenant): the smallest per-tenant grace, read with min()
        partial_index(
            "ix_tenants_automate_billing_grace_days",
            "billing_grace_days",
            where="billing_grace_days IS NOT NULL",
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    slug: Mapped[str] = mapped_column(String(63), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    status: Mapped[str] = mapped_column(String(16), default="active", server_default="active")
    suspension_reason: Mapped[str | None] = mapped_column(Text)
    timezone: Mapped[str] = mapped_column(String(64), default="UTC", server_default="UTC")
    country: Mapped[str | None] = mapped_column(String(2))
    currency: Mapped[str] = mapped_column(String(3), default="USD", server_default="USD")
    # How messages to the church are written: a BCP 47 / CLDR locale (en, en_NG, fr_CI, pt_BR).
    locale: Mapped[str] = mapped_column(String(35), default="en", server_default="en")
    billing_email: Mapped[str | None] = mapped_column(String(320))
    billing_phone: Mapped[str | None] = mapped_column(String(32))
    # The church's name in SMS (GSM-7, at most 30 characters: `tenants set --sms-name`); NULL =
    # `name` folded to GSM-7 (comms/sms.py), so one SMS stays one segment.
    sms_name: Mapped[str | None] = mapped_column(String(30))
    suspended_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    deleted_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    # Days a past-due subscription may stay unpaid before `subs automate` suspends the tenant;
    # NULL = the plan's `graceDays`, else the default (14). Set with `tenants set-grace`.
    billing_grace_days: Mapped[int | None] = mapped_column(Integer)

    security_policy: Mapped[TenantSecurityPolicy | None] = relationship(
        back_populates="tenant", uselist=False
    )


class User(Timestamps, Base):
    __tablename__ = "users"

    id: Mapped[int] = mapped_column(primary_key=True)
    # NULL tenant = a platform agent (FaithFlow staff).
    tenant_id: Mapped[int | None] = mapped_column(ForeignKey("tenants.id"), index=True)
    email: Mapped[str] = mapped_column(String(320), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    role: Mapped[str] = mapped_column(String(32), default="staff", server_default="staff")
    mfa_enabled: Mapped[bool] = mapped_column(Boolean, default=False, server_default="0")
    disabled_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    deleted_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())


class TenantSecurityPolicy(Timestamps, Base):
    """Stored now; enforced by a later job (retention, MFA/SSO drift)."""

    __tablename__ = "tenant_security_policies"

    id: Mapped[int] = mapped_column(primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id"), unique=True)
    mfa_required: Mapped[bool] = mapped_column(Boolean, default=False, server_default="0")
    sso_required: Mapped[bool] = mapped_column(Boolean, default=False, server_default="0")
    session_timeout_minutes: Mapped[int] = mapped_column(Integer, default=720, server_default="720")
    data_retention_days: Mapped[int | None] = mapped_column(Integer)

    tenant: Mapped[Tenant] = relationship(back_populates="security_policy")
