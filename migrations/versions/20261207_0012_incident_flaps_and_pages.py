"""incidents: flap count, PagerDuty retry state and its own error; domains: passes in a row

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-07 20:00:00

Issue 22 (points 2, 7, 8). An edge down 75% of the time recovered at every passing check and
opened a new incident each cycle, so the 30-minute page clock never ran out; a failed page was
resent every minute forever, even for a 400, and its error overwrote the alert's.

- `incidents.flaps`: times the cause came back after passing (a recently resolved incident
  is reopened instead of a new one being opened);
- `incidents.page_attempts`, `next_page_at`, `last_page_error`, `page_stopped_at`: PagerDuty
  triggers back off (doubling, capped) and stop on a 4xx other than 429, with their own error
  beside the alert webhook's `last_hook_error`;
- `incidents.page_acknowledged_at`: the `acknowledge` event sent for a local ack;
- `incidents.resolve_alerted_at`: the "resolved" post to the alert webhook;
- `tenant_domains.consecutive_passes`: a degraded domain recovers after
  FAITHFLOW_DOMAIN_RECOVERY_THRESHOLD passing checks in a row, not the first.

Only nullable or defaulted columns: existing rows need no backfill.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from faithflow_ops.db import UTCDateTime

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_TIMES = ("next_page_at", "page_stopped_at", "page_acknowledged_at", "resolve_alerted_at")


def upgrade() -> None:
    with op.batch_alter_table("incidents") as batch:
        batch.add_column(sa.Column("flaps", sa.Integer(), nullable=False, server_default="0"))
        batch.add_column(
            sa.Column("page_attempts", sa.Integer(), nullable=False, server_default="0")
        )
        batch.add_column(sa.Column("last_page_error", sa.Text(), nullable=True))
        for name in _TIMES:
            batch.add_column(sa.Column(name, UTCDateTime(timezone=True), nullable=True))
    with op.batch_alter_table("tenant_domains") as batch:
        batch.add_column(
            sa.Column("consecutive_passes", sa.Integer(), nullable=False, server_default="0")
        )


def downgrade() -> None:
    with op.batch_alter_table("tenant_domains") as batch:
        batch.drop_column("consecutive_passes")
    with op.batch_alter_table("incidents") as batch:
        for name in reversed(_TIMES):
            batch.drop_column(name)
        batch.drop_column("last_page_error")
        batch.drop_column("page_attempts")
        batch.drop_column("flaps")
