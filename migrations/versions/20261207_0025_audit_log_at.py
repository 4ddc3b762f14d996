"""audit_log: an index on (at, id)

Revision ID: 0025
Revises: 0024
Create Date: 2026-12-07 23:40:00

`audit_log` is never purged (retention keeps it), yet its listing had no index on time:
`faithflow audit list` (faithflow_ops.audit.list_entries) sorts by `at DESC, id DESC` with a
LIMIT, and `--since` filters on `at >= :since` — both scanned and sorted the whole log.
ix_audit_log_at serves them as a backward index walk that stops at the limit. The other
readers of audit_log by time were checked: security/policy.mfa_required_since narrows by
tenant_id first (ix_audit_log_tenant_id); `security audit`, `slo report` and retention do not
query audit_log by time.
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0025"
down_revision: str | None = "0024"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("audit_log", schema=None) as batch_op:
        batch_op.create_index("ix_audit_log_at", ["at", "id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("audit_log", schema=None) as batch_op:
        batch_op.drop_index("ix_audit_log_at")
