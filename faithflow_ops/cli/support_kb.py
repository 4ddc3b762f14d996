"""`faithflow support kb …`: the knowledge base and deflection. Mounted by cli/support.py; thin
over faithflow_ops/support/kb.py and deflection.py."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from faithflow_ops.cli import output
from faithflow_ops.cli.common import JsonOpt, actor, database, parse_now, settings
from faithflow_ops.errors import UserError

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from faithflow_ops.support.sla import Rules

kb_app = typer.Typer(
    rich_markup_mode=None,
    help="Knowledge base: articles, suggestions for a ticket, and deflection (send an article, "
    "the requester confirms it solved the problem).",
    no_args_is_help=True,
)

NowOpt = Annotated[
    str | None,
    typer.Option("--now", help="Act as at this time (ISO-8601, e.g. 2026-03-01T09:00:00Z)."),
]
ArticleArg = Annotated[str, typer.Argument(metavar="ARTICLE", help="Article slug (or id).")]
TicketArg = Annotated[int, typer.Argument(metavar="TICKET", help="Ticket id.")]
TagOpt = Annotated[
    list[str] | None,
    typer.Option("--tag", help="A tag (repeat, or separate with commas)."),
]


def sla_rules(session: Session) -> Rules:
    """The SLA rules in force, with the configured warning settings."""
    from faithflow_ops.support.sla import Rules

    return Rules.from_settings(session, settings())


_LIST_COLUMNS = {
    "id": "id",
    "slug": "slug",
    "title": "title",
    "status": "status",
    "tags": "tags",
    "views": "views",
    "suggested": "suggested",
    "sent": "sent",
    "resolved_by": "deflected",
}


def _body(body: str | None, body_file: Path | None, *, required: bool) -> str | None:
    if body is not None and body_file is not None:
        raise UserError("give --body or --body-file, not both")
    if body_file is not None:
        try:
            return body_file.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise UserError(f"cannot read --body-file {str(body_file)!r} ({exc})") from None
    if body is None and required:
        raise UserError("an article needs a body: give --body TEXT or --body-file PATH")
    return body


def _article_out(doc: dict[str, Any], as_json: bool, title: str) -> None:
    if as_json:
        output.print_json(doc)
        return
    fields = {k: v for k, v in doc.items() if k not in ("body", "links")}
    fields["tags"] = ", ".join(doc.get("tags") or []) or None
    output.record(fields, title=title)


@kb_app.command("add")
def add(
    slug: Annotated[str, typer.Argument(metavar="SLUG", help="URL-safe name: reset-password.")],
    title: Annotated[str, typer.Option("--title", help="The article's title.")],
    body: Annotated[str | None, typer.Option("--body", help="The article text.")] = None,
    body_file: Annotated[
        Path | None, typer.Option("--body-file", help="Read the article text from this file.")
    ] = None,
    tags: TagOpt = None,
    publish: Annotated[
        bool, typer.Option("--publish", help="Publish at once (default: a draft).")
    ] = False,
    now: NowOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Add an article (a draft unless --publish). Only published articles are suggested or sent."""
    from faithflow_ops.support import kb

    text = _body(body, body_file, required=True)
    assert text is not None
    when = parse_now(now)
    with database().session() as session:
        article = kb.add_article(
            session,
            slug=slug,
            title=title,
            body=text,
            tags=tags or [],
            publish=publish,
            now=when,
            actor=actor(),
        )
        doc = kb.article_doc(article)
    _article_out(doc, as_json, f"article {doc['slug']}")
    if not as_json:
        output.info(f"added {doc['status']} article {doc['slug']} (id {doc['id']})")


@kb_app.command("update")
def update(
    article: ArticleArg,
    title: Annotated[str | None, typer.Option("--title", help="New title.")] = None,
    body: Annotated[str | None, typer.Option("--body", help="New text.")] = None,
    body_file: Annotated[
        Path | None, typer.Option("--body-file", help="Read the new text from this file.")
    ] = None,
    tags: Annotated[
        list[str] | None,
        typer.Option("--tag", help="Replace the tags (repeat, or separate with commas)."),
    ] = None,
    now: NowOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Change an article's title, text or tags (search follows at once)."""
    from faithflow_ops.support import kb

    text = _body(body, body_file, required=False)
    when = parse_now(now)
    with database().session() as session:
        row = kb.update_article(
            session, article, title=title, body=text, tags=tags, now=when, actor=actor()
        )
        doc = kb.article_doc(row)
    _article_out(doc, as_json, f"article {doc['slug']}")


def _set_status(article: str, status: str, now: str | None, as_json: bool) -> None:
    from faithflow_ops.support import kb

    when = parse_now(now)
    with database().session() as session:
        row, changed = kb.set_status(session, article, status, now=when, actor=actor())
        doc = kb.article_doc(row)
    if as_json:
        output.print_json({**doc, "changed": changed})
    elif changed:
        output.info(f"article {doc['slug']} is now {status}")
    else:
        output.info(f"article {doc['slug']} was already {status}; nothing changed")


@kb_app.command("publish")
def publish(article: ArticleArg, now: NowOpt = None, as_json: JsonOpt = False) -> None:
    """Publish an article: it can be suggested for tickets and sent to requesters."""
    _set_status(article, "published", now, as_json)


@kb_app.command("archive")
def archive(article: ArticleArg, now: NowOpt = None, as_json: JsonOpt = False) -> None:
    """Archive an article: no longer suggested or sent (its links and counts are kept)."""
    _set_status(article, "archived", now, as_json)


@kb_app.command("list")
def list_(
    status: Annotated[
        str | None, typer.Option("--status", help="draft, published or archived.")
    ] = None,
    tag: Annotated[str | None, typer.Option("--tag", help="Only articles with this tag.")] = None,
    search: Annotated[
        str | None,
        typer.Option("--search", help="Full-text search of published articles, best first."),
    ] = None,
    limit: Annotated[int, typer.Option("--limit", min=1, help="Show at most this many.")] = 100,
    as_json: JsonOpt = False,
) -> None:
    """Articles (newest first, or best match first with --search), with how often each was
    suggested, sent, and credited with solving a ticket."""
    from faithflow_ops.support import kb

    with database().read_session() as session:
        docs = kb.list_articles(session, status=status, tag=tag, query=search, limit=limit)
    if output.empty(docs, "article", as_json=as_json):
        return
    if as_json:
        output.print_json(docs)
        return
    columns = dict(_LIST_COLUMNS)
    if search is not None:
        columns["score"] = "score"
    output.table(
        list(columns.values()),
        [[", ".join(d[k]) if k == "tags" else d[k] for k in columns] for d in docs],
    )
    output.list_footer(len(docs), len(docs), "article")


@kb_app.command("show")
def show(article: ArticleArg, as_json: JsonOpt = False) -> None:
    """One article: its fields, text, counts and latest ticket links."""
    from faithflow_ops.support import kb

    with database().read_session() as session:
        doc = kb.article_details(session, article)
    if as_json:
        output.print_json(doc)
        return
    _article_out(doc, False, f"article {doc['slug']}")
    output.stdout_console().print(doc["body"], markup=False, highlight=False)
    if doc["links"]:
        output.table(
            ["ticket", "kind", "at", "actor"],
            [[lk["ticket_id"], lk["kind"], lk["at"], lk["actor"]] for lk in doc["links"]],
            title="latest ticket links",
        )


@kb_app.command("suggest")
def suggest(
    ticket: TicketArg,
    limit: Annotated[int, typer.Option("--limit", min=1, max=50, help="How many.")] = 5,
    record: Annotated[
        bool,
        typer.Option("--record/--no-record", help="Record the suggestions on the ticket."),
    ] = True,
    now: NowOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Rank published articles for a ticket (its subject and first requester message), best
    first; records them as `suggested` links unless --no-record."""
    from faithflow_ops.support import kb

    when = parse_now(now)
    with database().session() as session:
        doc = kb.suggest(session, ticket, limit=limit, record=record, now=when, actor=actor())
    if as_json:
        output.print_json(doc)
        return
    output.table(
        ["rank", "article", "title", "score", "tags"],
        [
            [i + 1, s["slug"], s["title"], round(s["score"], 4), ", ".join(s["tags"])]
            for i, s in enumerate(doc["suggestions"])
        ],
        title=f"ticket {ticket}: {doc['subject']}",
    )
    if not doc["suggestions"]:
        output.info(f"no published article matches ({' '.join(doc['terms']) or 'no terms'})")
    else:
        output.info(f"send one with `faithflow support kb deflect {ticket} ARTICLE`")


@kb_app.command("link")
def link(
    ticket: TicketArg,
    article: ArticleArg,
    kind: Annotated[
        str,
        typer.Option("--kind", help="suggested, sent or resolved_by (credit an article by hand)."),
    ] = "suggested",
    now: NowOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Link an article to a ticket by hand (does not message anyone or change the ticket)."""
    from faithflow_ops.support import kb

    when = parse_now(now)
    with database().session() as session:
        doc = kb.link(session, ticket, article, kind=kind, now=when, actor=actor())
    if as_json:
        output.print_json(doc)
    elif doc["created"]:
        output.info(f"linked article {doc['article']} to ticket {ticket} ({kind})")
    else:
        output.info(f"article {doc['article']} was already linked to ticket {ticket} ({kind})")


@kb_app.command("deflect")
def deflect(
    ticket: TicketArg,
    article: ArticleArg,
    now: NowOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Send a published article to the ticket's requester (email, through the outbox) and set
    the ticket pending, awaiting their confirmation that it solved the problem."""
    from faithflow_ops.support import deflection

    when = parse_now(now)
    with database().session() as session:
        doc = deflection.deflect(
            session, ticket, article, now=when, actor=actor(), rules=sla_rules(session)
        )
    if as_json:
        output.print_json(doc)
        return
    if doc["created"]:
        output.info(
            f"sent article {doc['article']} to {doc['recipient']} (message {doc['message_id']}, "
            f"{doc['message_status']}); ticket {ticket} is pending until "
            f"`faithflow support kb confirm {ticket}` or a reply"
        )
    else:
        output.info(
            f"article {doc['article']} was already sent for ticket {ticket} "
            f"(message {doc['message_id']}); nothing sent again"
        )


@kb_app.command("confirm")
def confirm(
    ticket: TicketArg,
    article: Annotated[
        str | None,
        typer.Option("--article", help="The article that solved it (default: the last sent)."),
    ] = None,
    now: NowOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """The requester confirmed the article solved the problem: solve the ticket with
    resolution `deflected`, crediting the article."""
    from faithflow_ops.support import deflection

    when = parse_now(now)
    with database().session() as session:
        doc = deflection.confirm(
            session, ticket, article=article, now=when, actor=actor(), rules=sla_rules(session)
        )
    if as_json:
        output.print_json(doc)
    else:
        output.info(f"ticket {ticket} solved (deflected by article {doc['article']})")
