"""comms: bounces classified by RFC 3463 status, Twilio status callbacks that came early

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-07 19:40:00

`comms_bounces` records every e-mail a server refused (at RCPT/DATA) or bounced later (a DSN),
with its kind (hard, soft, policy, message): a hard bounce suppresses the recipient, soft ones
only after repeats within a window, a policy refusal raises an incident and never suppresses,
and a burst of bounces in one run raises an incident instead of suppressing
(faithflow_ops/comms/bounces.py). `comms_early_statuses` keeps a Twilio status callback that
came before the dispatcher recorded the message's sid, applied when the sid lands
(faithflow_ops/comms/status.py).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import faithflow_ops.db

revision: str = "0013"
down_revision: str | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _timestamps() -> list[sa.Column[object]]:
    return [
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
    ]


def upgrade() -> None:
    op.create_table(
        "comms_bounces",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("message_id", sa.Integer(), nullable=True),
        sa.Column("channel", sa.String(length=16), nullable=False),
        sa.Column("recipient", sa.String(length=320), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("smtp_code", sa.Integer(), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=True),
        sa.Column("diagnostic", sa.Text(), nullable=True),
        sa.Column("source", sa.String(length=16), nullable=False),
        sa.Column("run", sa.String(length=200), nullable=True),
        sa.Column("occurred_at", faithflow_ops.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("settled_at", faithflow_ops.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("outcome", sa.String(length=200), nullable=True),
        *_timestamps(),
        sa.CheckConstraint(
            "kind IN ('hard', 'soft', 'policy', 'message')",
            name=op.f("ck_comms_bounces_kind_known"),
        ),
        sa.CheckConstraint(
            "source IN ('smtp', 'dsn')", name=op.f("ck_comms_bounces_source_known")
        ),
        sa.ForeignKeyConstraint(
            ["message_id"],
            ["outbound_messages.id"],
            name=op.f("fk_comms_bounces_message_id_outbound_messages"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_comms_bounces")),
    )
    # comms dispatch: a recipient's soft bounces within the counting window
    op.create_index(
        "ix_comms_bounces_recipient",
        "comms_bounces",
        ["channel", "recipient", "occurred_at"],
        unique=False,
    )
    # comms dispatch: a run's bounces not yet settled (suppression or incident)
    op.create_index(
        "ix_comms_bounces_unsettled",
        "comms_bounces",
        ["run"],
        unique=False,
        postgresql_where=sa.text("settled_at IS NULL"),
        sqlite_where=sa.text("settled_at IS NULL"),
    )
    op.create_table(
        "comms_early_statuses",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("message_id", sa.Integer(), nullable=True),
        sa.Column("sid", sa.String(length=64), nullable=False),
        sa.Column("twilio_status", sa.String(length=32), nullable=False),
        sa.Column("error_code", sa.Integer(), nullable=True),
        sa.Column("received_at", faithflow_ops.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("applied_at", faithflow_ops.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("result", sa.String(length=16), nullable=True),
        *_timestamps(),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_comms_early_statuses")),
        sa.UniqueConstraint(
            "sid", "twilio_status", name=op.f("uq_comms_early_statuses_sid_twilio_status")
        ),
    )
    # comms dispatch: the callbacks waiting for a message whose sid was just recorded
    op.create_index(
        "ix_comms_early_statuses_waiting",
        "comms_early_statuses",
        ["sid"],
        unique=False,
        postgresql_where=sa.text("applied_at IS NULL"),
        sqlite_where=sa.text("applied_at IS NULL"),
    )


def downgrade() -> None:
    op.drop_index("ix_comms_early_statuses_waiting", table_name="comms_early_statuses")
    op.drop_table("comms_early_statuses")
    op.drop_index("ix_comms_bounces_unsettled", table_name="comms_bounces")
    op.drop_index("ix_comms_bounces_recipient", table_name="comms_bounces")
    op.drop_table("comms_bounces")
