"""subscriptions: one live (not canceled) subscription per tenant

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-07 19:30:00

Issue 16: `subs add` accepted a second and third live subscription for one tenant, and later
commands then refused to choose. `subs add` and the webhooks now refuse or adopt; this
revision makes the database hold the rule too: `uq_subscriptions_live_tenant`, a unique index
on `tenant_id` over the rows whose status is not `canceled` (what `subs add`, `subs cancel`
and the webhooks' adoption call live; SQLite and Postgres both have partial unique indexes).

A database that already holds two live subscriptions for one tenant cannot take the index.
Rather than fail on Postgres's or SQLite's raw IntegrityError, the upgrade stops before any
change, naming each such tenant with its live subscriptions and the command that ends the
extra ones; it can be run again once they are gone.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from faithflow_ops.errors import UserError

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_INDEX = "uq_subscriptions_live_tenant"
_WHERE = "status <> 'canceled'"


def _duplicates() -> str | None:
    """One line per tenant holding more than one live subscription, or None."""
    rows = (
        op.get_bind()
        .execute(
            sa.text(
                "SELECT t.slug, s.tenant_id, s.id, s.provider, s.status FROM subscriptions s "
                "JOIN tenants t ON t.id = s.tenant_id "
                f"WHERE s.{_WHERE} AND s.tenant_id IN (SELECT tenant_id FROM subscriptions "
                f"WHERE {_WHERE} GROUP BY tenant_id HAVING COUNT(*) > 1) "
                "ORDER BY t.slug, s.id"
            )
        )
        .all()
    )
    if not rows:
        return None
    tenants: dict[str, list[str]] = {}
    for slug, _tenant_id, sub_id, provider, status in rows:
        tenants.setdefault(slug, []).append(f"{sub_id} ({provider}, {status})")
    named = "; ".join(f"{slug}: subscriptions {', '.join(subs)}" for slug, subs in tenants.items())
    slug, subs = next(iter(tenants.items()))
    example = subs[0].split(" ", 1)[0]
    return (
        f"cannot apply revision {revision}: one live subscription per tenant "
        f"({_INDEX}), but {len(tenants)} tenant(s) have more than one that is not canceled — "
        f"{named}. Keep one per tenant and end the others, e.g. `faithflow subs cancel "
        f"--tenant {slug} --subscription {example}` (it ends it at the provider too; add "
        "--dry-run to see how), then run `faithflow db upgrade` again; nothing was changed"
    )


def upgrade() -> None:
    problem = _duplicates()
    if problem is not None:
        raise UserError(problem)
    op.create_index(
        _INDEX,
        "subscriptions",
        ["tenant_id"],
        unique=True,
        postgresql_where=sa.text(_WHERE),
        sqlite_where=sa.text(_WHERE),
    )


def downgrade() -> None:
    op.drop_index(_INDEX, table_name="subscriptions")
