"""Operational tables: the audit log, job runs and job locks, incidents, health check results,
the receiver's request tallies."""

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
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from faithflow_ops.db import JSONType, UTCDateTime, utcnow
from faithflow_ops.models.base import Base, CreatedAt, Timestamps, partial_index


class AuditLog(CreatedAt, Base):
    __tablename__ = "audit_log"
    __table_args__ = (
        Index("ix_audit_log_entity", "entity_type", "entity_id"),
        # audit list: newest first (at, id) and --since (migration 0025)
        Index("ix_audit_log_at", "at", "id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    tenant_id: Mapped[int | None] = mapped_column(Integer, index=True)
    actor: Mapped[str] = mapped_column(String(200))  # "cli:root@host", "job:…", "webhook:stripe"
    action: Mapped[str] = mapped_column(String(100))
    entity_type: Mapped[str] = mapped_column(String(64))
    entity_id: Mapped[str] = mapped_column(String(64))
    before: Mapped[dict[str, Any] | None] = mapped_column(JSONType)
    after: Mapped[dict[str, Any] | None] = mapped_column(JSONType)
    at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)


class JobRun(Timestamps, Base):
    __tablename__ = "job_runs"
    __table_args__ = (
        # jobs runs --job NAME: newest first
        Index("ix_job_runs_job_started", "job", "started_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    job: Mapped[str] = mapped_column(String(64))
    trigger: Mapped[str] = mapped_column(String(16))  # cli | http | scheduler
    dry_run: Mapped[bool] = mapped_column(Boolean)
    # running | succeeded | partial | failed | skipped | abandoned
    status: Mapped[str] = mapped_column(String(16))
    now: Mapped[dt.datetime] = mapped_column(UTCDateTime())  # the job's clock (--now)
    started_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    finished_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    holder: Mapped[str | None] = mapped_column(String(200))
    counts: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    failed_actions: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    error: Mapped[str | None] = mapped_column(Text)


class JobLock(CreatedAt, Base):
    """A lease: one row per job; taken with a conditional upsert (see jobs.locks)."""

    __tablename__ = "job_locks"

    job: Mapped[str] = mapped_column(String(64), primary_key=True)
    holder: Mapped[str] = mapped_column(String(200))
    run_id: Mapped[int | None] = mapped_column(Integer)
    acquired_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    expires_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())


INCIDENT_STATUSES = ("open", "acknowledged", "resolved")


class Incident(Timestamps, Base):
    """Something broken that a human should know about; opened and resolved by the jobs that
    see it (domain failures, health checks, failed job runs), one open incident per cause."""

    __tablename__ = "incidents"
    __table_args__ = (
        CheckConstraint("status IN ('open', 'acknowledged', 'resolved')", name="status_known"),
        CheckConstraint("severity IN ('info', 'warning', 'critical')", name="severity_known"),
        # One unresolved incident per cause: raising it again counts an occurrence.
        partial_index(
            "uq_incidents_unresolved_cause",
            "cause",
            unique=True,
            where="status <> 'resolved'",
        ),
        # incidents escalate: unacknowledged incidents not yet paged
        partial_index(
            "ix_incidents_escalation_due",
            "opened_at",
            where="status = 'open' AND paged_at IS NULL",
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    cause: Mapped[str] = mapped_column(String(200))  # "domain:www.grace.org:tls", "job:dunning"
    kind: Mapped[str] = mapped_column(String(32))  # domain | health | job
    tenant_id: Mapped[int | None] = mapped_column(ForeignKey("tenants.id"))
    title: Mapped[str] = mapped_column(String(500))
    severity: Mapped[str] = mapped_column(String(16), default="warning")
    status: Mapped[str] = mapped_column(String(16), default="open")
    detail: Mapped[str | None] = mapped_column(Text)
    occurrences: Mapped[int] = mapped_column(Integer, default=1, server_default="1")
    opened_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    last_seen_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    acknowledged_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    acknowledged_by: Mapped[str | None] = mapped_column(String(200))
    resolved_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    resolved_by: Mapped[str | None] = mapped_column(String(200))
    # Resolved by a human (`incidents resolve`): final — never reopened, its page and chat
    # post close at once. A job's resolution settles for FAITHFLOW_INCIDENT_FLAP_MINUTES first.
    resolved_by_hand: Mapped[bool] = mapped_column(Boolean, default=False, server_default="0")
    # Escalation hooks: when each went out (NULL = not yet / not configured).
    alerted_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    paged_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    page_resolved_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    # The alert webhook is retried with backoff: attempts so far and when to try again.
    hook_attempts: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    next_hook_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    last_hook_error: Mapped[str | None] = mapped_column(Text)  # the alert webhook's
    # Times the cause came back after passing (a resolved incident reopened within
    # FAITHFLOW_INCIDENT_FLAP_MINUTES, or a degraded domain failing again mid-recovery).
    flaps: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    # PagerDuty: failed trigger attempts, when to try again (doubling, capped), its own last
    # error, and when it stopped for good (a 4xx other than 429: the event can never succeed).
    page_attempts: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    next_page_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    last_page_error: Mapped[str | None] = mapped_column(Text)
    page_stopped_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    # `acknowledge` sent to PagerDuty for a paged incident acknowledged here.
    page_acknowledged_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    # The alert webhook's "resolved" post for an alerted incident.
    resolve_alerted_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())


class HealthCheckResult(CreatedAt, Base):
    """One result of one health check (`health sweep`); history for `health status` uptime."""

    __tablename__ = "health_checks"
    __table_args__ = (
        CheckConstraint("status IN ('ok', 'warn', 'fail', 'skipped')", name="status_known"),
        # health status: latest result per check and uptime windows
        Index("ix_health_checks_check_at", "check_name", "checked_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    check_name: Mapped[str] = mapped_column(String(100))
    status: Mapped[str] = mapped_column(String(16))
    latency_ms: Mapped[float | None] = mapped_column(Float)
    detail: Mapped[str | None] = mapped_column(Text)
    checked_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    data: Mapped[dict[str, Any] | None] = mapped_column(JSONType)
    incident_id: Mapped[int | None] = mapped_column(ForeignKey("incidents.id"))


class RequestTally(Timestamps, Base):
    """What the receiver answered, counted per hour, route template, status class and latency
    bucket (`le`, the smallest bound of the HTTP histogram the answer fits in, as Prometheus
    writes it: "0.25", "+Inf"). Kept in memory and added here once a minute (slo.tallies), so
    answers given while the database was down are written when it is back: the
    database-only source of `slo report`'s availability and latency objectives."""

    __tablename__ = "request_tallies"
    __table_args__ = (
        # the flush's upsert; `slo report` and the prune read its leading column (hour)
        UniqueConstraint("hour", "route", "status_class", "le"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    hour: Mapped[dt.datetime] = mapped_column(UTCDateTime())  # start of the hour (UTC)
    route: Mapped[str] = mapped_column(String(200))  # the route template, never the path
    status_class: Mapped[str] = mapped_column(String(8))  # 2xx, 3xx, 4xx, 5xx
    le: Mapped[str] = mapped_column(String(16))
    count: Mapped[int] = mapped_column(Integer)
