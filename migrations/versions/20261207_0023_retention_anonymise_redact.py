"""retention: anonymised tickets, redacted messages

Revision ID: 0023
Revises: 0022
Create Date: 2026-12-07 23:00:00

Issue 19: `retention run` anonymises closed support tickets and redacts finished outbox
messages. `anonymised_at` / `redacted_at` say when (and that it was done: a rerun skips them);
the partial indexes ix_support_tickets_retention and ix_outbound_messages_retention serve the
run's keyset pages per tenant and shrink as rows are done.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import faithflow_ops.db

revision: str = "0023"
down_revision: str | None = "0022"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_TICKETS_WHERE = "status = 'closed' AND anonymised_at IS NULL"
_MESSAGES_WHERE = "redacted_at IS NULL AND status NOT IN ('queued', 'scheduled', 'sending')"


def upgrade() -> None:
    with op.batch_alter_table("support_tickets", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("anonymised_at", faithflow_ops.db.UTCDateTime(timezone=True), nullable=True)
        )
        batch_op.create_index(
            "ix_support_tickets_retention",
            ["tenant_id", "id"],
            unique=False,
            postgresql_where=sa.text(_TICKETS_WHERE),
            sqlite_where=sa.text(_TICKETS_WHERE),
        )
    with op.batch_alter_table("outbound_messages", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("redacted_at", faithflow_ops.db.UTCDateTime(timezone=True), nullable=True)
        )
        batch_op.create_index(
            "ix_outbound_messages_retention",
            ["tenant_id", "id"],
            unique=False,
            postgresql_where=sa.text(_MESSAGES_WHERE),
            sqlite_where=sa.text(_MESSAGES_WHERE),
        )


def downgrade() -> None:
    with op.batch_alter_table("outbound_messages", schema=None) as batch_op:
        batch_op.drop_index(
            "ix_outbound_messages_retention",
            postgresql_where=sa.text(_MESSAGES_WHERE),
            sqlite_where=sa.text(_MESSAGES_WHERE),
        )
        batch_op.drop_column("redacted_at")
    with op.batch_alter_table("support_tickets", schema=None) as batch_op:
        batch_op.drop_index(
            "ix_support_tickets_retention",
            postgresql_where=sa.text(_TICKETS_WHERE),
            sqlite_where=sa.text(_TICKETS_WHERE),
        )
        batch_op.drop_column("anonymised_at")
