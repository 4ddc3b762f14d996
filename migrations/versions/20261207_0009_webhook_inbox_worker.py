"""webhook inbox: received status, raw body, applier attempts and claims

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-07 13:40:00

The receiver now acknowledges a verified delivery once it is stored (`received`) and a worker
applies it (issue "Webhook inbox"):

- `status` may be `received` (stored, not applied yet);
- `payload` may be NULL: a body JSONB cannot hold (`\\u0000`, a lone surrogate) is kept
  losslessly in `raw_body` instead, on both databases alike;
- `attempts`, `next_attempt_at`: our own failures are retried with backoff;
- `locked_by`, `locked_until`: the applier's lease on the rows it claimed (a crashed worker's
  claims expire);
- `ix_webhook_events_waiting`: the applier's claim query (rows still to handle).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import faithflow_ops.db

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_OLD = "status IN ('applied', 'ignored', 'unmatched', 'stale', 'failed')"
_NEW = "status IN ('received', 'applied', 'ignored', 'unmatched', 'stale', 'failed')"
_WAITING = "status IN ('received', 'failed')"


def upgrade() -> None:
    with op.batch_alter_table("webhook_events", schema=None) as batch_op:
        batch_op.add_column(sa.Column("raw_body", sa.LargeBinary(), nullable=True))
        batch_op.add_column(sa.Column("attempts", sa.Integer(), server_default="0", nullable=False))
        batch_op.add_column(
            sa.Column("next_attempt_at", faithflow_ops.db.UTCDateTime(), nullable=True)
        )
        batch_op.add_column(sa.Column("locked_by", sa.String(length=64), nullable=True))
        batch_op.add_column(
            sa.Column("locked_until", faithflow_ops.db.UTCDateTime(), nullable=True)
        )
        batch_op.alter_column("payload", existing_type=faithflow_ops.db.JSONType, nullable=True)
        batch_op.drop_constraint(op.f("ck_webhook_events_status_known"), type_="check")
        batch_op.create_check_constraint("status_known", _NEW)
        batch_op.create_index(
            "ix_webhook_events_waiting",
            ["next_attempt_at", "id"],
            unique=False,
            postgresql_where=sa.text(_WAITING),
            sqlite_where=sa.text(_WAITING),
        )


def downgrade() -> None:
    with op.batch_alter_table("webhook_events", schema=None) as batch_op:
        batch_op.drop_index(
            "ix_webhook_events_waiting",
            postgresql_where=sa.text(_WAITING),
            sqlite_where=sa.text(_WAITING),
        )
        batch_op.drop_constraint(op.f("ck_webhook_events_status_known"), type_="check")
        batch_op.create_check_constraint("status_known", _OLD)
        batch_op.alter_column("payload", existing_type=faithflow_ops.db.JSONType, nullable=False)
        batch_op.drop_column("locked_until")
        batch_op.drop_column("locked_by")
        batch_op.drop_column("next_attempt_at")
        batch_op.drop_column("attempts")
        batch_op.drop_column("raw_body")
