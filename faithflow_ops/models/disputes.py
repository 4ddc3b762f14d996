"""What `disputes monitor` remembers: which evidence-due alerts went out (one per dispute per
threshold), and the index its sweep of open disputes reads."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import ForeignKey, SmallInteger, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from faithflow_ops.db import UTCDateTime
from faithflow_ops.models.base import Base, CreatedAt, partial_index
from faithflow_ops.models.payments import Dispute


class DisputeAlert(CreatedAt, Base):
    """One evidence-due alert: claimed (inserted) in the transaction that sends it, so a failed
    send rolls the claim back and the next run tries again."""

    __tablename__ = "dispute_alerts"
    __table_args__ = (UniqueConstraint("dispute_id", "threshold_days"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    dispute_id: Mapped[int] = mapped_column(ForeignKey("disputes.id", ondelete="CASCADE"))
    threshold_days: Mapped[int] = mapped_column(SmallInteger)
    sent_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    # Where it went: `webhook`, `email` (recorded only, see docs/disputes.md), comma-separated.
    channel: Mapped[str] = mapped_column(String(64))


# disputes monitor: open disputes with an evidence deadline, by deadline.
partial_index(
    "ix_disputes_monitor_evidence_due_by",
    Dispute.evidence_due_by,
    where="closed_at IS NULL AND evidence_due_by IS NOT NULL",
)
