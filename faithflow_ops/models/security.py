"""Security enforcement (issue 19): the platform's sign-in sessions, the MFA notices
`security enforce` keeps for staff who have not enrolled, and stored compliance audits."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import Boolean, CheckConstraint, ForeignKey, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from faithflow_ops.db import JSONType, UTCDateTime
from faithflow_ops.models.base import Base, CreatedAt, Timestamps, in_list, partial_index

AUTH_METHODS = ("password", "sso")
REVOKE_REASONS = ("idle_timeout", "expired", "sso_required", "mfa_required", "user_disabled")


class UserSession(Timestamps, Base):
    """One sign-in of a user: written by the main application, revoked by `security enforce`."""

    __tablename__ = "user_sessions"
    __table_args__ = (
        CheckConstraint(in_list("auth_method", AUTH_METHODS), name="auth_method_known"),
        CheckConstraint(
            "revoked_reason IS NULL OR " + in_list("revoked_reason", REVOKE_REASONS),
            name="revoked_reason_known",
        ),
        # security enforce / security audit: the live sessions, oldest activity first
        partial_index("ix_user_sessions_live", "last_seen_at", where="revoked_at IS NULL"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    # The tenant the session works in; NULL = a platform agent's session on the platform.
    tenant_id: Mapped[int | None] = mapped_column(ForeignKey("tenants.id"), index=True)
    auth_method: Mapped[str] = mapped_column(String(16))
    mfa_passed: Mapped[bool] = mapped_column(Boolean, default=False, server_default="0")
    last_seen_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    expires_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    revoked_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    revoked_reason: Mapped[str | None] = mapped_column(String(32))


class MfaNotice(Timestamps, Base):
    """A staff member (or platform agent) told to enrol in MFA: warned, disabled after the
    grace period if still not enrolled, restored (resolved) once they enrol or MFA is no
    longer required. One row per user, re-armed if they fall out of compliance again."""

    __tablename__ = "security_mfa_notices"

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), unique=True)
    tenant_id: Mapped[int | None] = mapped_column(ForeignKey("tenants.id"), index=True)
    warned_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    disable_after: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    # Set when `security enforce` disabled the user (it only restores users it disabled).
    disabled_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    resolved_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    resolution: Mapped[str | None] = mapped_column(Text)


class SecurityAudit(CreatedAt, Base):
    """One `security audit` run, stored so drift shows over time (`security audit --diff`)."""

    __tablename__ = "security_audits"

    id: Mapped[int] = mapped_column(primary_key=True)
    audited_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), index=True)
    # NULL = every tenant and the platform; else the one tenant audited.
    tenant_id: Mapped[int | None] = mapped_column(ForeignKey("tenants.id"), index=True)
    high: Mapped[int] = mapped_column(Integer, default=0)
    medium: Mapped[int] = mapped_column(Integer, default=0)
    low: Mapped[int] = mapped_column(Integer, default=0)
    findings: Mapped[list[dict[str, Any]]] = mapped_column(JSONType, default=list)
    policies: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
