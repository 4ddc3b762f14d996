"""incidents: resolved_by_hand — a human's resolution is final

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-07 19:30:00

Issue 22 (point 2). A job's resolution now settles for FAITHFLOW_INCIDENT_FLAP_MINUTES: the
cause failing again within it reopens the incident (a flap) and the "resolved" post and
PagerDuty's `resolve` wait until then. A human's `incidents resolve` must not wait or be
reopened: this flag tells the two apart (false for every existing row: they settle as a job's).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0015"
down_revision: str | None = "0014"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("incidents") as batch:
        batch.add_column(
            sa.Column("resolved_by_hand", sa.Boolean(), nullable=False, server_default="0")
        )


def downgrade() -> None:
    with op.batch_alter_table("incidents") as batch:
        batch.drop_column("resolved_by_hand")
