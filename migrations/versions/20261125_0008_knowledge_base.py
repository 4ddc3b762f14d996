"""knowledge base articles, ticket-article links, full-text search

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-25 23:28:12.289023

`kb_articles` (slug, title, body, tags, draft|published|archived, views) and `ticket_kb_links`
(an article suggested for, sent to, or resolving a ticket; UNIQUE per ticket, article and kind).

Full-text search, written by hand (autogenerate cannot express it; `migrate.include_object`
keeps these objects out of the models-vs-migrations comparison):

- SQLite: the FTS5 table `kb_articles_fts` (title, tags, body; porter stemming) with
  `kb_articles` as its external content, kept in sync by three triggers. A later revision that
  rebuilds `kb_articles` in batch mode (copy-and-move) drops the triggers with the old table:
  it must create them again (`_sqlite_search_up`) and `INSERT INTO kb_articles_fts
  (kb_articles_fts) VALUES ('rebuild')`.
- Postgres: the GIN index `ix_kb_articles_search` on `models.kb.SEARCH_VECTOR_SQL`, the
  expression `support.kb.search` queries.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

import faithflow_ops.db

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Frozen copies (a migration never changes after it lands; models.kb may move on).
SEARCH_VECTOR_SQL = (
    "setweight(to_tsvector('english'::regconfig, coalesce(title, '')), 'A') || "
    "setweight(to_tsvector('english'::regconfig, coalesce(tags::text, '')), 'B') || "
    "setweight(to_tsvector('english'::regconfig, coalesce(body, '')), 'C')"
)
_FTS_COLUMNS = "rowid, title, tags, body"
_SQLITE_SEARCH = (
    "CREATE VIRTUAL TABLE kb_articles_fts USING fts5("
    "title, tags, body, content='kb_articles', content_rowid='id', "
    "tokenize='porter unicode61')",
    "CREATE TRIGGER kb_articles_fts_insert AFTER INSERT ON kb_articles BEGIN "
    f"INSERT INTO kb_articles_fts({_FTS_COLUMNS}) "
    "VALUES (new.id, new.title, new.tags, new.body); END",
    "CREATE TRIGGER kb_articles_fts_delete AFTER DELETE ON kb_articles BEGIN "
    f"INSERT INTO kb_articles_fts(kb_articles_fts, {_FTS_COLUMNS}) "
    "VALUES ('delete', old.id, old.title, old.tags, old.body); END",
    "CREATE TRIGGER kb_articles_fts_update AFTER UPDATE OF title, tags, body ON kb_articles "
    f"BEGIN INSERT INTO kb_articles_fts(kb_articles_fts, {_FTS_COLUMNS}) "
    "VALUES ('delete', old.id, old.title, old.tags, old.body); "
    f"INSERT INTO kb_articles_fts({_FTS_COLUMNS}) "
    "VALUES (new.id, new.title, new.tags, new.body); END",
    # rows that existed before the table (none on a fresh database; cheap either way)
    "INSERT INTO kb_articles_fts(kb_articles_fts) VALUES ('rebuild')",
)


def _sqlite_search_up() -> None:
    for statement in _SQLITE_SEARCH:
        op.execute(statement)


def upgrade() -> None:
    op.create_table(
        "kb_articles",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("slug", sa.String(length=120), nullable=False),
        sa.Column("title", sa.String(length=300), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column(
            "tags",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("status", sa.String(length=16), server_default="draft", nullable=False),
        sa.Column("views", sa.Integer(), server_default="0", nullable=False),
        sa.Column("published_at", faithflow_ops.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("archived_at", faithflow_ops.db.UTCDateTime(timezone=True), nullable=True),
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
            "status IN ('draft', 'published', 'archived')",
            name=op.f("ck_kb_articles_status_known"),
        ),
        sa.CheckConstraint("views >= 0", name=op.f("ck_kb_articles_views_not_negative")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_kb_articles")),
        sa.UniqueConstraint("slug", name=op.f("uq_kb_articles_slug")),
    )
    with op.batch_alter_table("kb_articles", schema=None) as batch_op:
        batch_op.create_index("ix_kb_articles_status", ["status", "id"], unique=False)

    op.create_table(
        "ticket_kb_links",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("ticket_id", sa.Integer(), nullable=False),
        sa.Column("article_id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("at", faithflow_ops.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("actor", sa.String(length=200), nullable=True),
        sa.Column("score", sa.Float(), nullable=True),
        sa.Column(
            "created_at",
            faithflow_ops.db.UTCDateTime(timezone=True),
            server_default=faithflow_ops.db.utc_now_default(),
            nullable=False,
        ),
        sa.CheckConstraint(
            "kind IN ('suggested', 'sent', 'resolved_by')",
            name=op.f("ck_ticket_kb_links_kind_known"),
        ),
        sa.ForeignKeyConstraint(
            ["article_id"],
            ["kb_articles.id"],
            name=op.f("fk_ticket_kb_links_article_id_kb_articles"),
        ),
        sa.ForeignKeyConstraint(
            ["ticket_id"],
            ["support_tickets.id"],
            name=op.f("fk_ticket_kb_links_ticket_id_support_tickets"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_ticket_kb_links")),
        sa.UniqueConstraint(
            "ticket_id",
            "article_id",
            "kind",
            name=op.f("uq_ticket_kb_links_ticket_id_article_id_kind"),
        ),
    )
    with op.batch_alter_table("ticket_kb_links", schema=None) as batch_op:
        batch_op.create_index(
            "ix_ticket_kb_links_article_kind", ["article_id", "kind", "at"], unique=False
        )
        batch_op.create_index("ix_ticket_kb_links_kind_at", ["kind", "at"], unique=False)

    dialect = op.get_bind().dialect.name
    if dialect == "sqlite":
        _sqlite_search_up()
    elif dialect == "postgresql":
        op.execute(
            f"CREATE INDEX ix_kb_articles_search ON kb_articles USING gin (({SEARCH_VECTOR_SQL}))"
        )


def downgrade() -> None:
    dialect = op.get_bind().dialect.name
    if dialect == "sqlite":
        for trigger in ("insert", "delete", "update"):
            op.execute(f"DROP TRIGGER IF EXISTS kb_articles_fts_{trigger}")
        op.execute("DROP TABLE IF EXISTS kb_articles_fts")
    elif dialect == "postgresql":
        op.execute("DROP INDEX IF EXISTS ix_kb_articles_search")

    with op.batch_alter_table("ticket_kb_links", schema=None) as batch_op:
        batch_op.drop_index("ix_ticket_kb_links_kind_at")
        batch_op.drop_index("ix_ticket_kb_links_article_kind")

    op.drop_table("ticket_kb_links")
    with op.batch_alter_table("kb_articles", schema=None) as batch_op:
        batch_op.drop_index("ix_kb_articles_status")

    op.drop_table("kb_articles")
