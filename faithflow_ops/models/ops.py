"""Operational tables: the audit log, job runs and job locks."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import Boolean, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from faithflow_ops.db import JSONType, UTCDateTime, utcnow
from faithflow_ops.models.base import Base, CreatedAt, Timestamps


class AuditLog(CreatedAt, Base):
    __tablename__ = "audit_log"
    __table_args__ = (Index("ix_audit_log_entity", "entity_type", "entity_id"),)

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
    status: Mapped[str] = mapped_column(String(16))  # running|succeeded|partial|failed|skipped
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
