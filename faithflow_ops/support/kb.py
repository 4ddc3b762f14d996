"""The knowledge base (`faithflow support kb …`): articles, their full-text search, and the
links between articles and tickets (docs/support.md, "Knowledge base and deflection").

Search ranks published articles only, over title (weighted most), tags, then body:

- Postgres: `ts_rank` of the `english` text-search vector `models.kb.SEARCH_VECTOR_SQL` (the
  expression the GIN index `ix_kb_articles_search` is built on) against an OR query of the terms;
- SQLite: FTS5 `bm25` over `kb_articles_fts` (porter stemming; kept in sync with `kb_articles` by
  triggers), against an OR query of the same terms.

The terms are the words of the text (lower-cased, de-duplicated, common English words dropped);
they contain letters and digits only, so nothing in a ticket can change the query's syntax.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select, text, update
from sqlalchemy.orm import Session

from faithflow_ops import audit
from faithflow_ops.db import rowcount, upsert_insert
from faithflow_ops.errors import NotFound, UserError, one_of
from faithflow_ops.models.kb import (
    ARTICLE_STATUSES,
    LINK_KINDS,
    SEARCH_TABLE,
    SEARCH_VECTOR_SQL,
    KbArticle,
    TicketKbLink,
)
from faithflow_ops.models.support import SupportMessage
from faithflow_ops.support import tickets
from faithflow_ops.tenancy.records import column_values, jsonable

_SLUG = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,118}[a-z0-9])?$")
_WORD = re.compile(r"[^\W_]+")
MAX_TERMS = 40  # words of a query kept (the first ones: a ticket's subject comes first)
MAX_TAGS = 20
MAX_TITLE = 300
# Words too common to say anything about a problem (both dialects drop them, so the two agree).
_STOPWORD_TEXT = """
a about after again all am an and any are as at be been before being but by can cannot could did
do does doing don down for from further had has have having he her here hers him his how i if in
into is it its itself just me more most my myself no nor not now of off on once only or other our
ours out over own please same she should so some such than thank thanks that the their them then
there these they this those through to too under until up us very was we were what when where
which while who whom why will with would you your yours hi hello
"""
STOPWORDS = frozenset(_STOPWORD_TEXT.split())


@dataclass(frozen=True)
class Match:
    article: KbArticle
    score: float  # higher is better; comparable within one search only


# ---------------------------------------------------------------- articles


def validate_slug(value: str) -> str:
    raw = value.strip()
    if _SLUG.match(raw) and "--" not in raw:
        return raw
    hint = re.sub(r"[^a-z0-9]+", "-", raw.lower()).strip("-")[:120].strip("-")
    suggestion = f" (e.g. {hint!r})" if hint and _SLUG.match(hint) else ""
    raise UserError(
        f"article slug {value!r} is not valid: use 1-120 lowercase letters, digits and single "
        f"hyphens, starting and ending with a letter or digit{suggestion}"
    )


def _title(value: str) -> str:
    title = " ".join(value.split())
    if not title:
        raise UserError("the article title is empty; give --title 'How to …'")
    if len(title) > MAX_TITLE:
        raise UserError(f"the article title is {len(title)} characters; keep it to {MAX_TITLE}")
    return title


def _body(value: str) -> str:
    body = value.strip()
    if not body:
        raise UserError("the article body is empty; give --body TEXT or --body-file PATH")
    return body


def normalize_tags(values: list[str] | tuple[str, ...]) -> list[str]:
    """Tags as given (`billing`, `Stripe Connect` or `a,b`): lower-case, single spaces, unique."""
    tags: list[str] = []
    for value in values:
        for part in value.split(","):
            tag = " ".join(part.lower().split())
            if tag and tag not in tags:
                if len(tag) > 50:
                    raise UserError(f"tag {tag!r} is longer than 50 characters; shorten it")
                tags.append(tag)
    if len(tags) > MAX_TAGS:
        raise UserError(f"{len(tags)} tags given; an article takes at most {MAX_TAGS}")
    return tags


def article_doc(article: KbArticle) -> dict[str, Any]:
    return column_values(article)


def get_article(session: Session, ref: str | int) -> KbArticle:
    """The article with this slug (or numeric id), or NotFound."""
    key = str(ref).strip()
    query = select(KbArticle)
    if key.isdigit():
        article = (
            session.scalar(query.where(KbArticle.id == int(key))) if tickets.is_id(key) else None
        )
    else:
        article = session.scalar(query.where(KbArticle.slug == key))
    if article is None:
        raise NotFound(f"no knowledge-base article {key!r}; see `faithflow support kb list`")
    return article


def add_article(
    session: Session,
    *,
    slug: str,
    title: str,
    body: str,
    tags: list[str] | tuple[str, ...] = (),
    publish: bool = False,
    now: dt.datetime,
    actor: str,
) -> KbArticle:
    """A new article, `draft` unless `publish`. UserError on a taken slug or empty fields."""
    article = KbArticle(
        slug=validate_slug(slug),
        title=_title(title),
        body=_body(body),
        tags=normalize_tags(tags),
        status="published" if publish else "draft",
        views=0,
        published_at=now if publish else None,
        created_at=now,
        updated_at=now,
    )
    if session.scalar(select(KbArticle.id).where(KbArticle.slug == article.slug)) is not None:
        raise UserError(
            f"an article with slug {article.slug!r} already exists; choose another slug or "
            f"change it with `faithflow support kb update {article.slug}`"
        )
    session.add(article)
    session.flush()
    audit.record(
        session,
        actor=actor,
        action="kb.add",
        entity_type="kb_article",
        entity_id=article.id,
        after=jsonable(article_doc(article)),
    )
    return article


def update_article(
    session: Session,
    ref: str | int,
    *,
    title: str | None = None,
    body: str | None = None,
    tags: list[str] | None = None,
    now: dt.datetime,
    actor: str,
) -> KbArticle:
    """Change an article's title, body and/or tags (the search index follows)."""
    if title is None and body is None and tags is None:
        raise UserError("nothing to change: give --title, --body/--body-file and/or --tag")
    article = get_article(session, ref)
    before = jsonable(article_doc(article))
    if title is not None:
        article.title = _title(title)
    if body is not None:
        article.body = _body(body)
    if tags is not None:
        article.tags = normalize_tags(tags)
    article.updated_at = now
    session.flush()
    audit.record(
        session,
        actor=actor,
        action="kb.update",
        entity_type="kb_article",
        entity_id=article.id,
        before=before,
        after=jsonable(article_doc(article)),
    )
    return article


def set_status(
    session: Session, ref: str | int, status: str, *, now: dt.datetime, actor: str
) -> tuple[KbArticle, bool]:
    """Publish or archive (or back to draft); (article, changed). Publishing again is a no-op."""
    one_of("article status", status, ARTICLE_STATUSES)
    article = get_article(session, ref)
    if article.status == status:
        return article, False
    before = article.status
    values: dict[str, Any] = {"status": status, "updated_at": now}
    if status == "published":
        values["published_at"] = now
        values["archived_at"] = None
    elif status == "archived":
        values["archived_at"] = now
    # conditional on the status read: two operators racing change it once
    result = session.execute(
        update(KbArticle)
        .where(KbArticle.id == article.id, KbArticle.status == before)
        .values(**values)
        .execution_options(synchronize_session=False)
    )
    session.refresh(article)
    if rowcount(result) == 0:
        return article, False
    audit.record(
        session,
        actor=actor,
        action=f"kb.{status}",
        entity_type="kb_article",
        entity_id=article.id,
        before={"status": before},
        after={"status": status},
    )
    return article, True


def list_articles(
    session: Session,
    *,
    status: str | None = None,
    tag: str | None = None,
    query: str | None = None,
    limit: int = 100,
) -> list[dict[str, Any]]:
    """Articles, newest first (or best match first with `query`; published ones only then),
    with how often each was suggested, sent and credited with resolving a ticket."""
    if limit < 1:
        raise UserError(f"limit {limit} must be 1 or more")
    if query is not None:
        if status not in (None, "published"):
            raise UserError("a search (--search) covers published articles only; drop --status")
        matches = search(session, query, limit=limit, tag=tag)
        articles = [m.article for m in matches]
        scores = {m.article.id: m.score for m in matches}
    else:
        stmt = select(KbArticle).order_by(KbArticle.id.desc())
        if status is not None:
            stmt = stmt.where(KbArticle.status == one_of("status", status, ARTICLE_STATUSES))
        if tag is not None:
            # tags are few per article: filter in Python, portable across JSON and JSONB
            wanted = normalize_tags([tag])
            articles = [a for a in session.scalars(stmt) if set(wanted) <= set(a.tags or [])]
            articles = articles[:limit]
        else:
            articles = list(session.scalars(stmt.limit(limit)))
        scores = {}
    counts = link_counts(session, [a.id for a in articles])
    docs = []
    for article in articles:
        doc = article_doc(article)
        doc.update(counts.get(article.id, dict.fromkeys(LINK_KINDS, 0)))
        if query is not None:
            doc["score"] = round(scores[article.id], 6)
        docs.append(doc)
    return docs


def link_counts(session: Session, article_ids: list[int]) -> dict[int, dict[str, int]]:
    """{article id: {kind: distinct tickets}} for these articles (one GROUP BY)."""
    if not article_ids:
        return {}
    out: dict[int, dict[str, int]] = {}
    rows = session.execute(
        select(TicketKbLink.article_id, TicketKbLink.kind, func.count())
        .where(TicketKbLink.article_id.in_(article_ids))
        .group_by(TicketKbLink.article_id, TicketKbLink.kind)
    ).tuples()
    for article_id, kind, count in rows:
        out.setdefault(article_id, dict.fromkeys(LINK_KINDS, 0))[kind] = count
    return out


def article_details(session: Session, ref: str | int, *, links: int = 20) -> dict[str, Any]:
    """`kb show`: the article, its link counts and its latest ticket links."""
    article = get_article(session, ref)
    doc = article_doc(article)
    doc.update(link_counts(session, [article.id]).get(article.id, dict.fromkeys(LINK_KINDS, 0)))
    doc["links"] = [
        column_values(link)
        for link in session.scalars(
            select(TicketKbLink)
            .where(TicketKbLink.article_id == article.id)
            .order_by(TicketKbLink.at.desc(), TicketKbLink.id.desc())
            .limit(links)
        )
    ]
    return doc


def count_view(session: Session, article_id: int, *, now: dt.datetime) -> None:
    """One more view (an article was read, or sent to a requester to read)."""
    session.execute(
        update(KbArticle)
        .where(KbArticle.id == article_id)
        .values(views=KbArticle.views + 1)
        .execution_options(synchronize_session=False)
    )


# ---------------------------------------------------------------- search


def terms(*texts: str | None) -> list[str]:
    """The search terms of some text: its words, lower-cased, de-duplicated, in order,
    without common English words; at most MAX_TERMS."""
    out: list[str] = []
    for value in texts:
        for word in _WORD.findall((value or "").lower()):
            if len(word) >= 2 and word not in STOPWORDS and word not in out:
                out.append(word)
                if len(out) == MAX_TERMS:
                    return out
    return out


def search(session: Session, query: str, *, limit: int = 5, tag: str | None = None) -> list[Match]:
    """Published articles matching any term of `query`, best first (see the module docstring).
    Ties (equal scores) go to the older article, so results are stable."""
    words = terms(query)
    if not words:
        return []
    dialect = session.get_bind().dialect.name
    fetch = limit if tag is None else max(limit * 5, 50)
    if dialect == "postgresql":
        rows = session.execute(
            text(
                f"SELECT a.id, ts_rank({SEARCH_VECTOR_SQL}, q.query) AS score "
                "FROM kb_articles AS a, to_tsquery('english'::regconfig, :q) AS q(query) "
                f"WHERE a.status = 'published' AND ({SEARCH_VECTOR_SQL}) @@ q.query "
                "ORDER BY score DESC, a.id LIMIT :n"
            ),
            {"q": " | ".join(words), "n": fetch},
        ).all()
        ranked = [(int(r.id), float(r.score)) for r in rows]
    elif dialect == "sqlite":
        # bm25 weights per FTS5 column (title, tags, body); bm25 is lower-is-better
        rows = session.execute(
            text(
                f"SELECT a.id, bm25({SEARCH_TABLE}, 10.0, 4.0, 1.0) AS rank "
                f"FROM {SEARCH_TABLE} JOIN kb_articles AS a ON a.id = {SEARCH_TABLE}.rowid "
                f"WHERE {SEARCH_TABLE} MATCH :q AND a.status = 'published' "
                "ORDER BY rank, a.id LIMIT :n"
            ),
            {"q": " OR ".join(f'"{w}"' for w in words), "n": fetch},
        ).all()
        ranked = [(int(r.id), -float(r.rank)) for r in rows]
    else:
        raise UserError(f"knowledge-base search needs SQLite or Postgres, not {dialect}")
    if not ranked:
        return []
    by_id = {
        a.id: a
        for a in session.scalars(select(KbArticle).where(KbArticle.id.in_([i for i, _ in ranked])))
    }
    matches = [Match(by_id[i], score) for i, score in ranked]
    if tag is not None:
        wanted = set(normalize_tags([tag]))
        matches = [m for m in matches if wanted <= set(m.article.tags or [])]
    return matches[:limit]


# ---------------------------------------------------------------- tickets


def first_requester_message(session: Session, ticket_id: int) -> str | None:
    return session.scalars(
        select(SupportMessage.body)
        .where(
            SupportMessage.ticket_id == ticket_id,
            SupportMessage.author_kind == "requester",
            SupportMessage.public.is_(True),
        )
        .order_by(SupportMessage.created_at, SupportMessage.id)
        .limit(1)
    ).first()


def add_link(
    session: Session,
    *,
    ticket_id: int,
    article_id: int,
    kind: str,
    now: dt.datetime,
    actor: str,
    score: float | None = None,
) -> bool:
    """Record a ticket–article link; False when this (ticket, article, kind) already exists
    (the UNIQUE constraint decides: the first link and its time are kept)."""
    one_of("link kind", kind, LINK_KINDS)
    dialect = session.get_bind().dialect.name
    result = session.execute(
        upsert_insert(dialect, TicketKbLink)
        .values(
            ticket_id=ticket_id,
            article_id=article_id,
            kind=kind,
            at=now,
            actor=actor,
            score=score,
            created_at=now,
        )
        .on_conflict_do_nothing(index_elements=["ticket_id", "article_id", "kind"])
        .returning(TicketKbLink.id)
    )
    # RETURNING, not rowcount: the ORM's INSERT path reports rowcount -1 on psycopg
    return result.scalar_one_or_none() is not None


def stamp_sent(
    session: Session, *, ticket_id: int, article_id: int, now: dt.datetime, actor: str
) -> None:
    """The `sent` link of a deflection (support/deflection.py). A `sent` link recorded by hand
    before (`kb link --kind sent`: the article went out some other way) takes the deflection's
    time and actor: the article really went out now, and `confirm` asks for an article sent
    since the ticket became pending."""
    dialect = session.get_bind().dialect.name
    session.execute(
        upsert_insert(dialect, TicketKbLink)
        .values(
            ticket_id=ticket_id,
            article_id=article_id,
            kind="sent",
            at=now,
            actor=actor,
            created_at=now,
        )
        .on_conflict_do_update(
            index_elements=["ticket_id", "article_id", "kind"],
            set_={"at": now, "actor": actor},
        )
    )


def suggest(
    session: Session,
    ticket_id: int,
    *,
    limit: int = 5,
    record: bool = True,
    now: dt.datetime,
    actor: str,
) -> dict[str, Any]:
    """Published articles ranked for a ticket: the query is its subject and first requester
    message. With `record`, each suggestion becomes a `suggested` link (once per article)."""
    ticket = tickets.get_ticket(session, ticket_id)
    message = first_requester_message(session, ticket.id)
    words = terms(ticket.subject, message)
    matches = search(session, " ".join(words), limit=limit)
    suggestions = []
    for match in matches:
        recorded = False
        if record:
            recorded = add_link(
                session,
                ticket_id=ticket.id,
                article_id=match.article.id,
                kind="suggested",
                now=now,
                actor=actor,
                score=match.score,
            )
        suggestions.append(
            {
                "article_id": match.article.id,
                "slug": match.article.slug,
                "title": match.article.title,
                "tags": list(match.article.tags or []),
                "score": round(match.score, 6),
                "recorded": recorded,
            }
        )
    return {
        "ticket_id": ticket.id,
        "subject": ticket.subject,
        "terms": words,
        "suggestions": suggestions,
    }


def link(
    session: Session,
    ticket_id: int,
    article_ref: str | int,
    *,
    kind: str = "suggested",
    now: dt.datetime,
    actor: str,
) -> dict[str, Any]:
    """`kb link`: record a link by hand (no message, no ticket change). Sending and crediting
    need a published article; a `suggested` link may name a draft (an agent's note to self).
    A `sent` link made here queued nothing, so it does not stop a later `deflection.deflect`."""
    one_of("link kind", kind, LINK_KINDS)
    ticket = tickets.get_ticket(session, ticket_id)
    article = get_article(session, article_ref)
    if kind != "suggested" and article.status != "published":
        raise UserError(
            f"article {article.slug!r} is {article.status}; only a published article can be "
            f"linked as {kind} (publish it with `faithflow support kb publish {article.slug}`)"
        )
    created = add_link(
        session, ticket_id=ticket.id, article_id=article.id, kind=kind, now=now, actor=actor
    )
    if created:
        audit.record(
            session,
            actor=actor,
            action="kb.link",
            entity_type="support_ticket",
            entity_id=ticket.id,
            tenant_id=ticket.tenant_id,
            after={"article": article.slug, "kind": kind},
        )
    return {"ticket_id": ticket.id, "article": article.slug, "kind": kind, "created": created}
