"""outbound_messages: the provider_message_id index that 0005 gained after it landed

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-07 14:30:00

`ix_outbound_messages_provider_message_id` (Twilio status callbacks find their message by its
sid) was added to revision 0005 after that revision had landed, so a database that was already
at 0005 never got it, while one created since has it from 0005. This revision creates it where
it is missing, and leaves it alone where it is there.

Downgrade leaves the index in place: 0009 is valid with or without it, and dropping it here
would make 0005's downgrade (which drops it too) fail on every database created since the
index was added to 0005.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_INDEX = "ix_outbound_messages_provider_message_id"
_WHERE = "provider_message_id IS NOT NULL"


def upgrade() -> None:
    indexes = sa.inspect(op.get_bind()).get_indexes("outbound_messages")
    if any(index["name"] == _INDEX for index in indexes):
        return
    op.create_index(
        _INDEX,
        "outbound_messages",
        ["provider_message_id"],
        unique=False,
        postgresql_where=sa.text(_WHERE),
        sqlite_where=sa.text(_WHERE),
    )


def downgrade() -> None:
    pass  # see the module docstring: the index stays, as 0005 (as it stands) made it
