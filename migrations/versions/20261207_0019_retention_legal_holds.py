"""retention: legal holds

Revision ID: 0019
Revises: 0018
Create Date: 2026-12-07 20:50:00

Issue 19: `retention run` purges nothing of a tenant with an active legal hold. The partial
unique index ix_retention_legal_holds_active serves that look-up and allows one active hold per
tenant (released holds stay as history).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import faithflow_ops.db

revision: str = "0019"
down_revision: str | None = "0018"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "retention_legal_holds",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("tenant_id", sa.Integer(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("placed_by", sa.String(length=200), nullable=False),
        sa.Column("placed_at", faithflow_ops.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("released_at", faithflow_ops.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("released_by", sa.String(length=200), nullable=True),
        sa.Column(
            "updated_at",
            faithflow_ops.db.UTCDateTime(timezone=True),
            server_default=faithflow_ops.db.utc_now_default(),
            nullable=False,
        ),
        sa.Column(
            "created_at",
            faithflow_ops.db.UTCDateTime(timezone=True),
            server_default=faithflow_ops.db.utc_now_default(),
            nullable=False,
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id"],
            ["tenants.id"],
            name=op.f("fk_retention_legal_holds_tenant_id_tenants"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_retention_legal_holds")),
    )
    with op.batch_alter_table("retention_legal_holds", schema=None) as batch_op:
        batch_op.create_index(
            "ix_retention_legal_holds_active",
            ["tenant_id"],
            unique=True,
            postgresql_where=sa.text("released_at IS NULL"),
            sqlite_where=sa.text("released_at IS NULL"),
        )


def downgrade() -> None:
    with op.batch_alter_table("retention_legal_holds", schema=None) as batch_op:
        batch_op.drop_index(
            "ix_retention_legal_holds_active",
            postgresql_where=sa.text("released_at IS NULL"),
            sqlite_where=sa.text("released_at IS NULL"),
        )
    op.drop_table("retention_legal_holds")
