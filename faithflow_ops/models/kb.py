"""The knowledge base: articles agents send to requesters, and which tickets they were
suggested for, sent to, or resolved (deflection). Docs: docs/support.md.

Full-text search over title + body + tags is not expressed here: it lives in migration 0008 as
objects autogenerate cannot describe — on SQLite the FTS5 table `kb_articles_fts` (external
content, kept in sync by triggers), on Postgres the GIN index `ix_kb_articles_search` on
`SEARCH_VECTOR_SQL`. `faithflow_ops.migrate.include_object` keeps them out of the
models-vs-migrations comparison.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import CheckConstraint, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from faithflow_ops.db import JSONType, UTCDateTime, utcnow
from faithflow_ops.models.base import Base, CreatedAt, Timestamps, in_list

ARTICLE_STATUSES = ("draft", "published", "archived")
LINK_KINDS = ("suggested", "sent", "resolved_by")

# The Postgres search document. The GIN index (migration 0008) is on this exact expression and
# `support.kb.suggest` queries it verbatim, so the planner can use the index. Title weighs most
# (A), then tags (B), then the body (C).
SEARCH_VECTOR_SQL = (
    "setweight(to_tsvector('english'::regconfig, coalesce(title, '')), 'A') || "
    "setweight(to_tsvector('english'::regconfig, coalesce(tags::text, '')), 'B') || "
    "setweight(to_tsvector('english'::regconfig, coalesce(body, '')), 'C')"
)
SEARCH_INDEX = "ix_kb_articles_search"  # Postgres GIN index (hand-written in 0008)
SEARCH_TABLE = "kb_articles_fts"  # SQLite FTS5 table; FTS5 adds kb_articles_fts_* shadow tables


class KbArticle(Timestamps, Base):
    """One help article. Only `published` articles are suggested or sent."""

    __tablename__ = "kb_articles"
    __table_args__ = (
        CheckConstraint(in_list("status", ARTICLE_STATUSES), name="status_known"),
        CheckConstraint("views >= 0", name="views_not_negative"),
        # kb list --status
        Index("ix_kb_articles_status", "status", "id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    slug: Mapped[str] = mapped_column(String(120), unique=True)
    title: Mapped[str] = mapped_column(String(300))
    body: Mapped[str] = mapped_column(Text)
    tags: Mapped[list[Any]] = mapped_column(JSONType, default=list)
    status: Mapped[str] = mapped_column(String(16), default="draft", server_default="draft")
    # times the article was shown (`kb show --count-view`) or sent to a requester (`kb deflect`)
    views: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    published_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    archived_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())


class TicketKbLink(CreatedAt, Base):
    """An article's part in a ticket: `suggested` (by `kb suggest`), `sent` (to the requester by
    `kb deflect` or `kb link --kind sent`), `resolved_by` (the requester confirmed it solved the
    problem: a deflection). One row per ticket, article and kind."""

    __tablename__ = "ticket_kb_links"
    __table_args__ = (
        CheckConstraint(in_list("kind", LINK_KINDS), name="kind_known"),
        UniqueConstraint("ticket_id", "article_id", "kind"),
        # support analytics: deflections per article (top deflecting articles), links of an article
        Index("ix_ticket_kb_links_article_kind", "article_id", "kind", "at"),
        # support analytics: deflection rate over a period
        Index("ix_ticket_kb_links_kind_at", "kind", "at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    ticket_id: Mapped[int] = mapped_column(ForeignKey("support_tickets.id", ondelete="CASCADE"))
    article_id: Mapped[int] = mapped_column(ForeignKey("kb_articles.id"))
    kind: Mapped[str] = mapped_column(String(16))
    at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)
    actor: Mapped[str | None] = mapped_column(String(200))
    # `suggested`: the search score at the time (higher = better match); else NULL
    score: Mapped[float | None] = mapped_column()
