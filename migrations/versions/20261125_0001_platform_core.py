"""platform core

Revision ID: 0001
Revises:
Create Date: 2026-11-25 18:25:45.075139
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

import faithflow_ops.db

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:

    op.create_table(
        "audit_log",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("tenant_id", sa.Integer(), nullable=True),
        sa.Column("actor", sa.String(length=200), nullable=False),
        sa.Column("action", sa.String(length=100), nullable=False),
        sa.Column("entity_type", sa.String(length=64), nullable=False),
        sa.Column("entity_id", sa.String(length=64), nullable=False),
        sa.Column(
            "before",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=True,
        ),
        sa.Column(
            "after",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=True,
        ),
        sa.Column("at", faithflow_ops.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column(
            "created_at",
            faithflow_ops.db.UTCDateTime(timezone=True),
            server_default=faithflow_ops.db.utc_now_default(),
            nullable=False,
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_log")),
    )
    with op.batch_alter_table("audit_log", schema=None) as batch_op:
        batch_op.create_index("ix_audit_log_entity", ["entity_type", "entity_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_audit_log_tenant_id"), ["tenant_id"], unique=False)

    op.create_table(
        "job_locks",
        sa.Column("job", sa.String(length=64), nullable=False),
        sa.Column("holder", sa.String(length=200), nullable=False),
        sa.Column("run_id", sa.Integer(), nullable=True),
        sa.Column("acquired_at", faithflow_ops.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("expires_at", faithflow_ops.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column(
            "created_at",
            faithflow_ops.db.UTCDateTime(timezone=True),
            server_default=faithflow_ops.db.utc_now_default(),
            nullable=False,
        ),
        sa.PrimaryKeyConstraint("job", name=op.f("pk_job_locks")),
    )
    op.create_table(
        "job_runs",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("job", sa.String(length=64), nullable=False),
        sa.Column("trigger", sa.String(length=16), nullable=False),
        sa.Column("dry_run", sa.Boolean(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("now", faithflow_ops.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("started_at", faithflow_ops.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("finished_at", faithflow_ops.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("holder", sa.String(length=200), nullable=True),
        sa.Column(
            "counts",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("failed_actions", sa.Integer(), server_default="0", nullable=False),
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
        sa.PrimaryKeyConstraint("id", name=op.f("pk_job_runs")),
    )
    with op.batch_alter_table("job_runs", schema=None) as batch_op:
        batch_op.create_index("ix_job_runs_job_started", ["job", "started_at"], unique=False)

    op.create_table(
        "subscription_plans",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("code", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("amount_minor", sa.BigInteger(), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("interval", sa.String(length=8), nullable=False),
        sa.Column("tier_rank", sa.Integer(), server_default="0", nullable=False),
        sa.Column("active", sa.Boolean(), server_default="1", nullable=False),
        sa.Column(
            "metadata",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            server_default="{}",
            nullable=False,
        ),
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
            "interval IN ('month', 'year')", name=op.f("ck_subscription_plans_interval_known")
        ),
        sa.CheckConstraint(
            "amount_minor >= 0", name=op.f("ck_subscription_plans_amount_not_negative")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_subscription_plans")),
        sa.UniqueConstraint("code", name=op.f("uq_subscription_plans_code")),
    )
    op.create_table(
        "tenants",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("slug", sa.String(length=63), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("status", sa.String(length=16), server_default="active", nullable=False),
        sa.Column("suspension_reason", sa.Text(), nullable=True),
        sa.Column("timezone", sa.String(length=64), server_default="UTC", nullable=False),
        sa.Column("country", sa.String(length=2), nullable=True),
        sa.Column("currency", sa.String(length=3), server_default="USD", nullable=False),
        sa.Column("billing_email", sa.String(length=320), nullable=True),
        sa.Column("billing_phone", sa.String(length=32), nullable=True),
        sa.Column("suspended_at", faithflow_ops.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("deleted_at", faithflow_ops.db.UTCDateTime(timezone=True), nullable=True),
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
            "status IN ('active', 'suspended', 'archived')", name=op.f("ck_tenants_status_known")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_tenants")),
        sa.UniqueConstraint("slug", name=op.f("uq_tenants_slug")),
    )
    op.create_table(
        "subscriptions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("tenant_id", sa.Integer(), nullable=False),
        sa.Column("plan_id", sa.Integer(), nullable=False),
        sa.Column("provider", sa.String(length=16), nullable=False),
        sa.Column("provider_subscription_id", sa.String(length=128), nullable=True),
        sa.Column("provider_customer_id", sa.String(length=128), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("trial_end", faithflow_ops.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column(
            "current_period_start", faithflow_ops.db.UTCDateTime(timezone=True), nullable=True
        ),
        sa.Column("current_period_end", faithflow_ops.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("cancel_at_period_end", sa.Boolean(), server_default="0", nullable=False),
        sa.Column("past_due_since", faithflow_ops.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("canceled_at", faithflow_ops.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column(
            "metadata",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            server_default="{}",
            nullable=False,
        ),
        sa.Column("provider_state_at", faithflow_ops.db.UTCDateTime(timezone=True), nullable=True),
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
            "provider IN ('stripe', 'paystack')", name=op.f("ck_subscriptions_provider_known")
        ),
        sa.CheckConstraint(
            "status IN ('trialing', 'active', 'past_due', 'unpaid', 'suspended', 'canceled', 'incomplete')",
            name=op.f("ck_subscriptions_status_known"),
        ),
        sa.ForeignKeyConstraint(
            ["plan_id"],
            ["subscription_plans.id"],
            name=op.f("fk_subscriptions_plan_id_subscription_plans"),
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["tenants.id"], name=op.f("fk_subscriptions_tenant_id_tenants")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_subscriptions")),
        sa.UniqueConstraint(
            "provider",
            "provider_subscription_id",
            name=op.f("uq_subscriptions_provider_provider_subscription_id"),
        ),
    )
    with op.batch_alter_table("subscriptions", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_subscriptions_plan_id"), ["plan_id"], unique=False)
        batch_op.create_index("ix_subscriptions_status", ["status"], unique=False)
        batch_op.create_index(batch_op.f("ix_subscriptions_tenant_id"), ["tenant_id"], unique=False)

    op.create_table(
        "tenant_security_policies",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("tenant_id", sa.Integer(), nullable=False),
        sa.Column("mfa_required", sa.Boolean(), server_default="0", nullable=False),
        sa.Column("sso_required", sa.Boolean(), server_default="0", nullable=False),
        sa.Column("session_timeout_minutes", sa.Integer(), server_default="720", nullable=False),
        sa.Column("data_retention_days", sa.Integer(), nullable=True),
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
            name=op.f("fk_tenant_security_policies_tenant_id_tenants"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_tenant_security_policies")),
        sa.UniqueConstraint("tenant_id", name=op.f("uq_tenant_security_policies_tenant_id")),
    )
    op.create_table(
        "users",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("tenant_id", sa.Integer(), nullable=True),
        sa.Column("email", sa.String(length=320), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("role", sa.String(length=32), server_default="staff", nullable=False),
        sa.Column("mfa_enabled", sa.Boolean(), server_default="0", nullable=False),
        sa.Column("disabled_at", faithflow_ops.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("deleted_at", faithflow_ops.db.UTCDateTime(timezone=True), nullable=True),
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
            ["tenant_id"], ["tenants.id"], name=op.f("fk_users_tenant_id_tenants")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_users")),
        sa.UniqueConstraint("email", name=op.f("uq_users_email")),
    )
    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_users_tenant_id"), ["tenant_id"], unique=False)

    op.create_table(
        "invoices",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("tenant_id", sa.Integer(), nullable=False),
        sa.Column("subscription_id", sa.Integer(), nullable=True),
        sa.Column("provider", sa.String(length=16), nullable=False),
        sa.Column("provider_invoice_id", sa.String(length=128), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("amount_due_minor", sa.BigInteger(), nullable=False),
        sa.Column("amount_paid_minor", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("period_start", faithflow_ops.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("period_end", faithflow_ops.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("due_at", faithflow_ops.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("paid_at", faithflow_ops.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("hosted_invoice_url", sa.String(length=1000), nullable=True),
        sa.Column(
            "metadata",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            server_default="{}",
            nullable=False,
        ),
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
            "status IN ('draft', 'open', 'paid', 'uncollectible', 'void')",
            name=op.f("ck_invoices_status_known"),
        ),
        sa.ForeignKeyConstraint(
            ["subscription_id"],
            ["subscriptions.id"],
            name=op.f("fk_invoices_subscription_id_subscriptions"),
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["tenants.id"], name=op.f("fk_invoices_tenant_id_tenants")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_invoices")),
        sa.UniqueConstraint(
            "provider", "provider_invoice_id", name=op.f("uq_invoices_provider_provider_invoice_id")
        ),
    )
    with op.batch_alter_table("invoices", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_invoices_subscription_id"), ["subscription_id"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_invoices_tenant_id"), ["tenant_id"], unique=False)


def downgrade() -> None:

    with op.batch_alter_table("invoices", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_invoices_tenant_id"))
        batch_op.drop_index(batch_op.f("ix_invoices_subscription_id"))

    op.drop_table("invoices")
    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_users_tenant_id"))

    op.drop_table("users")
    op.drop_table("tenant_security_policies")
    with op.batch_alter_table("subscriptions", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_subscriptions_tenant_id"))
        batch_op.drop_index("ix_subscriptions_status")
        batch_op.drop_index(batch_op.f("ix_subscriptions_plan_id"))

    op.drop_table("subscriptions")
    op.drop_table("tenants")
    op.drop_table("subscription_plans")
    with op.batch_alter_table("job_runs", schema=None) as batch_op:
        batch_op.drop_index("ix_job_runs_job_started")

    op.drop_table("job_runs")
    op.drop_table("job_locks")
    with op.batch_alter_table("audit_log", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_audit_log_tenant_id"))
        batch_op.drop_index("ix_audit_log_entity")

    op.drop_table("audit_log")
