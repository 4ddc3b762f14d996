"""subs automate: trial notices, billing grace, plan changes, sweep indexes

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-25 21:42:10.892219

Every index named *_automate_* is made for one query of `subs automate`
(faithflow_ops/jobs/subscriptions_automate.py); the job's runbook lists which.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

import faithflow_ops.db

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "plan_changes",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("tenant_id", sa.Integer(), nullable=False),
        sa.Column("subscription_id", sa.Integer(), nullable=False),
        sa.Column("from_plan_id", sa.Integer(), nullable=True),
        sa.Column("to_plan_id", sa.Integer(), nullable=False),
        sa.Column("from_interval", sa.String(length=8), nullable=True),
        sa.Column("to_interval", sa.String(length=8), nullable=True),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("requested_by", sa.String(length=200), nullable=True),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("status", sa.String(length=16), server_default="scheduled", nullable=False),
        sa.Column("effective_at", faithflow_ops.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("applied_at", faithflow_ops.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("canceled_at", faithflow_ops.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column(
            "provider_refs",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            server_default="{}",
            nullable=False,
        ),
        sa.Column("error", sa.Text(), nullable=True),
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
        sa.CheckConstraint(
            "kind IN ('upgrade', 'downgrade', 'interval_change')",
            name=op.f("ck_plan_changes_kind_known"),
        ),
        sa.CheckConstraint(
            "status IN ('scheduled', 'applied', 'rejected', 'canceled')",
            name=op.f("ck_plan_changes_status_known"),
        ),
        sa.ForeignKeyConstraint(
            ["from_plan_id"],
            ["subscription_plans.id"],
            name=op.f("fk_plan_changes_from_plan_id_subscription_plans"),
        ),
        sa.ForeignKeyConstraint(
            ["subscription_id"],
            ["subscriptions.id"],
            name=op.f("fk_plan_changes_subscription_id_subscriptions"),
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["tenants.id"], name=op.f("fk_plan_changes_tenant_id_tenants")
        ),
        sa.ForeignKeyConstraint(
            ["to_plan_id"],
            ["subscription_plans.id"],
            name=op.f("fk_plan_changes_to_plan_id_subscription_plans"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_plan_changes")),
    )
    with op.batch_alter_table("plan_changes", schema=None) as batch_op:
        batch_op.create_index(
            "ix_plan_changes_automate_scheduled",
            ["effective_at"],
            unique=False,
            postgresql_where=sa.text("status = 'scheduled'"),
            sqlite_where=sa.text("status = 'scheduled'"),
        )
        batch_op.create_index(
            batch_op.f("ix_plan_changes_subscription_id"), ["subscription_id"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_plan_changes_tenant_id"), ["tenant_id"], unique=False)

    with op.batch_alter_table("invoices", schema=None) as batch_op:
        batch_op.create_index(
            "ix_invoices_automate_paid_period_end",
            ["subscription_id", "period_end"],
            unique=False,
            postgresql_where=sa.text("status = 'paid'"),
            sqlite_where=sa.text("status = 'paid'"),
        )

    with op.batch_alter_table("subscriptions", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column(
                "trial_notice_for", faithflow_ops.db.UTCDateTime(timezone=True), nullable=True
            )
        )
        batch_op.create_index(
            "ix_subscriptions_automate_cancel_at_period_end",
            ["current_period_end"],
            unique=False,
            postgresql_where=sa.text("cancel_at_period_end AND status <> 'canceled'"),
            sqlite_where=sa.text("cancel_at_period_end AND status <> 'canceled'"),
        )
        batch_op.create_index(
            "ix_subscriptions_automate_past_due_since",
            ["past_due_since"],
            unique=False,
            postgresql_where=sa.text("status IN ('past_due', 'unpaid')"),
            sqlite_where=sa.text("status IN ('past_due', 'unpaid')"),
        )
        batch_op.create_index(
            "ix_subscriptions_automate_paystack_period_end",
            ["current_period_end"],
            unique=False,
            postgresql_where=sa.text("provider = 'paystack' AND status = 'active'"),
            sqlite_where=sa.text("provider = 'paystack' AND status = 'active'"),
        )
        batch_op.create_index(
            "ix_subscriptions_automate_trial_end",
            ["trial_end"],
            unique=False,
            postgresql_where=sa.text("status = 'trialing'"),
            sqlite_where=sa.text("status = 'trialing'"),
        )

    with op.batch_alter_table("tenants", schema=None) as batch_op:
        batch_op.add_column(sa.Column("billing_grace_days", sa.Integer(), nullable=True))
        batch_op.create_check_constraint(
            op.f("ck_tenants_billing_grace_days_not_negative"),
            "billing_grace_days IS NULL OR billing_grace_days >= 0",
        )
        batch_op.create_index(
            "ix_tenants_automate_billing_grace_days",
            ["billing_grace_days"],
            unique=False,
            postgresql_where=sa.text("billing_grace_days IS NOT NULL"),
            sqlite_where=sa.text("billing_grace_days IS NOT NULL"),
        )
        batch_op.create_index(
            "ix_tenants_automate_suspended_non_payment",
            ["id"],
            unique=False,
            postgresql_where=sa.text("status = 'suspended' AND suspension_reason = 'non_payment'"),
            sqlite_where=sa.text("status = 'suspended' AND suspension_reason = 'non_payment'"),
        )


def downgrade() -> None:
    with op.batch_alter_table("tenants", schema=None) as batch_op:
        batch_op.drop_index(
            "ix_tenants_automate_suspended_non_payment",
            postgresql_where=sa.text("status = 'suspended' AND suspension_reason = 'non_payment'"),
            sqlite_where=sa.text("status = 'suspended' AND suspension_reason = 'non_payment'"),
        )
        batch_op.drop_index(
            "ix_tenants_automate_billing_grace_days",
            postgresql_where=sa.text("billing_grace_days IS NOT NULL"),
            sqlite_where=sa.text("billing_grace_days IS NOT NULL"),
        )
        batch_op.drop_constraint(op.f("ck_tenants_billing_grace_days_not_negative"), type_="check")
        batch_op.drop_column("billing_grace_days")

    with op.batch_alter_table("subscriptions", schema=None) as batch_op:
        batch_op.drop_index(
            "ix_subscriptions_automate_trial_end",
            postgresql_where=sa.text("status = 'trialing'"),
            sqlite_where=sa.text("status = 'trialing'"),
        )
        batch_op.drop_index(
            "ix_subscriptions_automate_paystack_period_end",
            postgresql_where=sa.text("provider = 'paystack' AND status = 'active'"),
            sqlite_where=sa.text("provider = 'paystack' AND status = 'active'"),
        )
        batch_op.drop_index(
            "ix_subscriptions_automate_past_due_since",
            postgresql_where=sa.text("status IN ('past_due', 'unpaid')"),
            sqlite_where=sa.text("status IN ('past_due', 'unpaid')"),
        )
        batch_op.drop_index(
            "ix_subscriptions_automate_cancel_at_period_end",
            postgresql_where=sa.text("cancel_at_period_end AND status <> 'canceled'"),
            sqlite_where=sa.text("cancel_at_period_end AND status <> 'canceled'"),
        )
        batch_op.drop_column("trial_notice_for")

    with op.batch_alter_table("invoices", schema=None) as batch_op:
        batch_op.drop_index(
            "ix_invoices_automate_paid_period_end",
            postgresql_where=sa.text("status = 'paid'"),
            sqlite_where=sa.text("status = 'paid'"),
        )

    with op.batch_alter_table("plan_changes", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_plan_changes_tenant_id"))
        batch_op.drop_index(batch_op.f("ix_plan_changes_subscription_id"))
        batch_op.drop_index(
            "ix_plan_changes_automate_scheduled",
            postgresql_where=sa.text("status = 'scheduled'"),
            sqlite_where=sa.text("status = 'scheduled'"),
        )

    op.drop_table("plan_changes")
