"""Tenant custom domains: ownership verification, the edge, the certificate, failover
(`domains automate`, docs/domains.md)."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import (
    Boolean,
    CheckConstraint,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
)
from sqlalchemy.orm import Mapped, mapped_column

from faithflow_ops.db import JSONType, UTCDateTime
from faithflow_ops.models.base import Base, CreatedAt, Timestamps, in_list, partial_index

DOMAIN_STATUSES = (
    "pending_dns",  # waiting for the church's TXT (and CNAME/A) records
    "issuing_cert",  # verified; the edge is asked to serve it and issue a certificate
    "active",
    "expiring",  # the certificate is in its renewal window
    "degraded",  # broken for N checks: the tenant is served at the fallback hostname
    "failed",  # needs a human (never verified in 7 days, or the edge refused it)
    "removed",
)
CERTIFICATE_STATUSES = ("none", "pending", "active", "expiring", "expired", "invalid")
DNS_RESULTS = ("ok", "nxdomain", "no_answer", "wrong_target", "timeout", "servfail")
RUNBOOK_STATES = ("investigating", "waiting_on_customer", "escalated", "resolved")


class TenantDomain(Timestamps, Base):
    __tablename__ = "tenant_domains"
    __table_args__ = (
        CheckConstraint(in_list("status", DOMAIN_STATUSES), name="status_known"),
        CheckConstraint(in_list("certificate_status", CERTIFICATE_STATUSES), name="cert_known"),
        # One live record per hostname (a removed one may be added again, by anyone).
        partial_index(
            "uq_tenant_domains_live_hostname",
            "hostname",
            unique=True,
            where="status <> 'removed'",
        ),
        # domains automate: the domains whose next check is due
        partial_index(
            "ix_tenant_domains_automate_next_check",
            "next_check_at",
            where="status NOT IN ('removed', 'failed')",
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id"), index=True)
    hostname: Mapped[str] = mapped_column(String(253))  # lower-case, no trailing dot
    apex: Mapped[bool] = mapped_column(Boolean, default=False)
    verification_token: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(16), default="pending_dns")
    certificate_status: Mapped[str] = mapped_column(String(16), default="none")
    # Last results (history in domain_checks).
    txt_result: Mapped[str | None] = mapped_column(String(16))
    dns_result: Mapped[str | None] = mapped_column(String(16))  # the CNAME / A records
    dns_detail: Mapped[str | None] = mapped_column(Text)
    tls_detail: Mapped[str | None] = mapped_column(Text)
    cert_not_before: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    cert_not_after: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    cert_issuer: Mapped[str | None] = mapped_column(String(500))
    cert_names: Mapped[list[str] | None] = mapped_column(JSONType)
    # Expiry warnings already sent for the certificate ending at cert_not_after: [14, 7, …].
    cert_warnings_sent: Mapped[list[int]] = mapped_column(JSONType, default=list)
    edge_status: Mapped[str | None] = mapped_column(String(32))  # the edge's own word
    edge_id: Mapped[str | None] = mapped_column(String(128))
    consecutive_failures: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    # Passing checks in a row while degraded: failover ends after
    # FAITHFLOW_DOMAIN_RECOVERY_THRESHOLD of them (a flapping edge stays failed over).
    consecutive_passes: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    failover_active: Mapped[bool] = mapped_column(Boolean, default=False, server_default="0")
    last_checked_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    last_ok_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    next_check_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    # Start of the verification window (FAITHFLOW_DOMAIN_PENDING_DAYS): when it was added, or
    # when `domains verify` revived a failed domain.
    pending_since: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    verified_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    active_since: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    failed_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    failure_reason: Mapped[str | None] = mapped_column(Text)
    removed_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    added_by: Mapped[str] = mapped_column(String(200))


class DomainCheck(CreatedAt, Base):
    """One probe of one domain (history: `domains show`)."""

    __tablename__ = "domain_checks"
    __table_args__ = (Index("ix_domain_checks_domain_checked", "domain_id", "checked_at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    domain_id: Mapped[int] = mapped_column(ForeignKey("tenant_domains.id", ondelete="CASCADE"))
    checked_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    kind: Mapped[str] = mapped_column(String(16))  # txt | dns | tls | edge
    result: Mapped[str] = mapped_column(String(32))
    detail: Mapped[str | None] = mapped_column(Text)
    latency_ms: Mapped[float | None] = mapped_column(Float)
    data: Mapped[dict[str, Any] | None] = mapped_column(JSONType)


class DomainRunbookNote(CreatedAt, Base):
    """The human side of a domain problem (`domains runbook`)."""

    __tablename__ = "domain_runbook_notes"
    __table_args__ = (
        CheckConstraint(in_list("state", RUNBOOK_STATES), name="state_known"),
        Index("ix_domain_runbook_notes_domain", "domain_id", "at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    domain_id: Mapped[int] = mapped_column(ForeignKey("tenant_domains.id", ondelete="CASCADE"))
    state: Mapped[str] = mapped_column(String(32))
    note: Mapped[str] = mapped_column(Text)
    actor: Mapped[str] = mapped_column(String(200))
    at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
