"""slo: request tallies

Revision ID: 0022
Revises: 0021
Create Date: 2026-12-07 23:00:00

Issue 20: `faithflow slo report` measures webhook ingest and task endpoint availability and
latency from the database alone. The receiver counts its answers in memory and adds them here
once a minute (faithflow_ops/slo/tallies.py), one row per hour, route template, status class
and latency bucket; the unique constraint is the flush's upsert key and serves the report's
and the prune's range reads on `hour`.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import faithflow_ops.db

revision: str = "0022"
down_revision: str | None = "0021"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "request_tallies",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("hour", faithflow_ops.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("route", sa.String(length=200), nullable=False),
        sa.Column("status_class", sa.String(length=8), nullable=False),
        sa.Column("le", sa.String(length=16), nullable=False),
        sa.Column("count", sa.Integer(), nullable=False),
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
        sa.PrimaryKeyConstraint("id", name=op.f("pk_request_tallies")),
        sa.UniqueConstraint(
            "hour",
            "route",
            "status_class",
            "le",
            name=op.f("uq_request_tallies_hour_route_status_class_le"),
        ),
    )


def downgrade() -> None:
    op.drop_table("request_tallies")
