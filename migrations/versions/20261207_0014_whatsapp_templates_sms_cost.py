"""WhatsApp templates and opt-in, SMS cost: the columns issue 21 (points 2 and 3) needs

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-07 20:00:00

- `outbound_messages.content_sid`, `content_variables`: a WhatsApp message goes out as an
  approved template (Twilio `ContentSid` + `ContentVariables`, never free `Body`: Twilio 63016
  outside the 24-hour window);
- `outbound_messages.sms_encoding`, `sms_segments`: what an SMS costs, counted at enqueue;
- `outbound_messages.note`: why a message is not what was asked (SMS instead of WhatsApp, more
  than one segment);
- `dunning_preferences.whatsapp_opt_in_at`, `whatsapp_opt_in_source`: the church's WhatsApp
  opt-in, with where it came from and when (the WhatsApp number no longer defaults to the
  phone);
- `tenants.sms_name`: the short GSM-7 name SMS use instead of the folded full name.

All nullable, no data to move: existing rows read as "no template, not counted, no opt-in".
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

import faithflow_ops.db

revision: str = "0014"
down_revision: str | None = "0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("outbound_messages", schema=None) as batch_op:
        batch_op.add_column(sa.Column("content_sid", sa.String(length=34), nullable=True))
        batch_op.add_column(
            sa.Column(
                "content_variables",
                sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
                nullable=True,
            )
        )
        batch_op.add_column(sa.Column("sms_encoding", sa.String(length=8), nullable=True))
        batch_op.add_column(sa.Column("sms_segments", sa.SmallInteger(), nullable=True))
        batch_op.add_column(sa.Column("note", sa.Text(), nullable=True))
    with op.batch_alter_table("dunning_preferences", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("whatsapp_opt_in_at", faithflow_ops.db.UTCDateTime(), nullable=True)
        )
        batch_op.add_column(
            sa.Column("whatsapp_opt_in_source", sa.String(length=200), nullable=True)
        )
    with op.batch_alter_table("tenants", schema=None) as batch_op:
        batch_op.add_column(sa.Column("sms_name", sa.String(length=30), nullable=True))


def downgrade() -> None:
    # Plain DROP COLUMN (SQLite has it since 3.35), not batch mode: a batch rebuilds the table
    # (copy, DROP, rename), and on SQLite dropping `tenants` while rows reference it breaks
    # their foreign keys inside the migration's transaction.
    op.drop_column("tenants", "sms_name")
    op.drop_column("dunning_preferences", "whatsapp_opt_in_source")
    op.drop_column("dunning_preferences", "whatsapp_opt_in_at")
    for column in ("note", "sms_segments", "sms_encoding", "content_variables", "content_sid"):
        op.drop_column("outbound_messages", column)
