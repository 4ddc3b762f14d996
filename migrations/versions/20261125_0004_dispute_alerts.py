"""disputes monitor: the dispute_alerts table and the open-disputes sweep index

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-25 21:54:39.390558

`dispute_alerts` records each evidence-due alert `disputes monitor` sent, one per dispute per
threshold (UNIQUE(dispute_id, threshold_days) is the claim). `ix_disputes_monitor_evidence_due_by`
is made for the job's sweep of open disputes by deadline
(faithflow_ops/jobs/disputes_monitor.py).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import faithflow_ops.db

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_OPEN_WITH_DEADLINE = "closed_at IS NULL AND evidence_due_by IS NOT NULL"


def upgrade() -> None:
    op.create_table(
        "dispute_alerts",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("dispute_id", sa.Integer(), nullable=False),
        sa.Column("threshold_days", sa.SmallInteger(), nullable=False),
        sa.Column("sent_at", faithflow_ops.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("channel", sa.String(length=64), nullable=False),
        sa.Column(
            "created_at",
            faithflow_ops.db.UTCDateTime(timezone=True),
            server_default=faithflow_ops.db.utc_now_default(),
            nullable=False,
        ),
        sa.ForeignKeyConstraint(
            ["dispute_id"],
            ["disputes.id"],
            name=op.f("fk_dispute_alerts_dispute_id_disputes"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_dispute_alerts")),
        sa.UniqueConstraint(
            "dispute_id",
            "threshold_days",
            name=op.f("uq_dispute_alerts_dispute_id_threshold_days"),
        ),
    )
    with op.batch_alter_table("disputes", schema=None) as batch_op:
        batch_op.create_index(
            "ix_disputes_monitor_evidence_due_by",
            ["evidence_due_by"],
            unique=False,
            postgresql_where=sa.text(_OPEN_WITH_DEADLINE),
            sqlite_where=sa.text(_OPEN_WITH_DEADLINE),
        )


def downgrade() -> None:
    with op.batch_alter_table("disputes", schema=None) as batch_op:
        batch_op.drop_index(
            "ix_disputes_monitor_evidence_due_by",
            postgresql_where=sa.text(_OPEN_WITH_DEADLINE),
            sqlite_where=sa.text(_OPEN_WITH_DEADLINE),
        )
    op.drop_table("dispute_alerts")
