"""Data retention (issue 19): legal holds that stop every purge of a tenant's data."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import ForeignKey, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from faithflow_ops.db import UTCDateTime
from faithflow_ops.models.base import Base, Timestamps, partial_index


class LegalHold(Timestamps, Base):
    __tablename__ = "retention_legal_holds"
    __table_args__ = (
        # retention run: the tenants on hold; at most one active hold per tenant
        partial_index(
            "ix_retention_legal_holds_active",
            "tenant_id",
            where="released_at IS NULL",
            unique=True,
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id"))
    reason: Mapped[str] = mapped_column(Text)
    placed_by: Mapped[str] = mapped_column(String(200))
    placed_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    released_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    released_by: Mapped[str | None] = mapped_column(String(200))
