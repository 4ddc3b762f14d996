"""Deflection: answer a ticket with a knowledge-base article and let the requester confirm it
solved the problem (docs/support.md, "Knowledge base and deflection").

- `deflect(ticket, article)`: the article goes to the requester by email through the outbox
  (template `kb_article`, idempotency key `kb-deflect:<ticket>:<article>`, in the same
  transaction), a `sent` link is recorded (one made by hand before, with `kb link`, takes the
  deflection's time), the sending is recorded on the ticket as a public agent reply (it answers
  the requester, so it stops the first/next response clocks like any reply) and the ticket goes
  `pending`, awaiting confirmation — which pauses the resolution clock under the default
  policies. Only that outbox message makes a repeated deflection a no-op: a `sent` link made by
  hand queued nothing.
- `confirm(ticket)`: the requester said it worked: the ticket is solved with resolution
  `deflected` and the article gets a `resolved_by` link (what analytics count as a deflection).
- A requester reply instead goes through `support tickets reply --as requester`, which moves a
  pending ticket back to open (support/tickets.py): the normal flow resumes, and `confirm`
  then refuses (the ticket is no longer awaiting confirmation).

Every status change goes through support/tickets.py (one implementation of the status rules and
SLA clocks).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from faithflow_ops import audit
from faithflow_ops.comms import outbox
from faithflow_ops.errors import UserError
from faithflow_ops.models import KbArticle, OutboundMessage, Tenant, TicketKbLink
from faithflow_ops.models.support import SupportTicket
from faithflow_ops.support import kb, tickets
from faithflow_ops.support.sla import Rules

TEMPLATE = "kb_article"
ABOUT = "support_ticket"


def idempotency_key(ticket_id: int, article_id: int) -> str:
    return f"kb-deflect:{ticket_id}:{article_id}"


def _deflection_message(session: Session, key: str) -> OutboundMessage | None:
    """The message an earlier deflection of this article for this ticket queued, if any."""
    return session.scalars(
        select(OutboundMessage).where(OutboundMessage.idempotency_key == key)
    ).one_or_none()


def deflect(
    session: Session,
    ticket_id: int,
    article_ref: str | int,
    *,
    now: dt.datetime,
    actor: str,
    rules: Rules | None = None,
) -> dict[str, Any]:
    """Send a published article to the ticket's requester and set the ticket pending awaiting
    their confirmation. Deflecting the same article for the same ticket again changes nothing
    and answers the first deflection's message (`created` False); a `sent` link recorded by hand
    does not count as a deflection.
    `rules`: the SLA rules in force (the CLI passes the configured warning settings)."""
    ticket = tickets.get_ticket(session, ticket_id, lock=True)
    article = kb.get_article(session, article_ref)
    if article.status != "published":
        raise UserError(
            f"article {article.slug!r} is {article.status}; only a published article can be "
            f"sent (publish it with `faithflow support kb publish {article.slug}`)"
        )
    if ticket.status in ("solved", "closed"):
        raise UserError(
            f"ticket {ticket.id} is {ticket.status}; deflection answers an open ticket "
            f"(reopen it first with `faithflow support tickets reopen {ticket.id}`)"
        )
    key = idempotency_key(ticket.id, article.id)
    # Only an earlier deflection (its outbox message) makes this a no-op: a `sent` link made by
    # hand (`kb link --kind sent`) queued nothing, so the article is queued now.
    previous = _deflection_message(session, key)
    if previous is not None:
        return _doc(ticket, article, previous, created=False)

    tenant = session.get(Tenant, ticket.tenant_id)
    enqueued = outbox.enqueue(
        session,
        channel="email",
        recipient=ticket.requester_email,
        template=TEMPLATE,
        variables={
            "ticket_id": ticket.id,
            "ticket_subject": ticket.subject,
            "requester_name": ticket.requester_name or "there",
            "article_slug": article.slug,
            "article_title": article.title,
            "article_body": article.body,
        },
        idempotency_key=key,
        now=now,
        tenant=tenant,
        priority=30,  # a person is waiting on it
        category="support",
        about=(ABOUT, ticket.id),
    )
    message = session.get_one(OutboundMessage, enqueued.id)
    if not enqueued.created:  # another deflection queued it in the meantime
        return _doc(ticket, article, message, created=False)
    kb.stamp_sent(session, ticket_id=ticket.id, article_id=article.id, now=now, actor=actor)
    kb.count_view(session, article.id, now=now)
    rules = rules or Rules.load(session)
    tickets.reply(
        session,
        rules,
        ticket.id,
        author="agent",
        body=(
            f"Sent the help article “{article.title}” ({article.slug}) by email; awaiting the "
            "requester's confirmation that it solves the problem."
        ),
        now=now,
    )
    if ticket.status != "pending":
        tickets.set_status(session, rules, ticket.id, "pending", now=now)
    audit.record(
        session,
        actor=actor,
        action="kb.deflect",
        entity_type=ABOUT,
        entity_id=ticket.id,
        tenant_id=ticket.tenant_id,
        after={"article": article.slug, "message_id": enqueued.id, "status": ticket.status},
    )
    return _doc(ticket, article, message, created=True)


def _doc(
    ticket: SupportTicket, article: KbArticle, message: OutboundMessage, *, created: bool
) -> dict[str, Any]:
    return {
        "ticket_id": ticket.id,
        "ticket_status": ticket.status,
        "article": article.slug,
        "article_id": article.id,
        "recipient": ticket.requester_email,
        "message_id": message.id,
        "message_status": message.status,
        "created": created,
    }


def confirm(
    session: Session,
    ticket_id: int,
    *,
    article: str | int | None = None,
    now: dt.datetime,
    actor: str,
    rules: Rules | None = None,
) -> dict[str, Any]:
    """The requester confirmed the article solved it: solve the ticket (resolution
    `deflected`) and credit the article (`resolved_by`). The ticket must be pending with an
    article sent since it became pending (nothing the requester said has reopened it)."""
    ticket = tickets.get_ticket(session, ticket_id, lock=True)
    sent_query = (
        select(TicketKbLink, KbArticle)
        .join(KbArticle, KbArticle.id == TicketKbLink.article_id)
        .where(TicketKbLink.ticket_id == ticket.id, TicketKbLink.kind == "sent")
        .order_by(TicketKbLink.at.desc(), TicketKbLink.id.desc())
    )
    if article is not None:
        wanted = kb.get_article(session, article)
        sent_query = sent_query.where(TicketKbLink.article_id == wanted.id)
    sent = session.execute(sent_query.limit(1)).tuples().first()
    if sent is None:
        which = f"article {kb.get_article(session, article).slug!r}" if article else "no article"
        raise UserError(
            f"ticket {ticket.id}: {which} was sent to the requester; send one first with "
            f"`faithflow support kb deflect {ticket.id} ARTICLE`"
        )
    link, credited = sent
    if ticket.status != "pending" or link.at < ticket.status_changed_at:
        raise UserError(
            f"ticket {ticket.id} is {ticket.status}, not awaiting confirmation of a sent article "
            "(the requester replied or the status changed since); solve it with "
            f"`faithflow support tickets status {ticket.id} solved` if the article did help"
        )
    rules = rules or Rules.load(session)
    tickets.set_status(session, rules, ticket.id, "solved", now=now, resolution="deflected")
    kb.add_link(
        session,
        ticket_id=ticket.id,
        article_id=credited.id,
        kind="resolved_by",
        now=now,
        actor=actor,
    )
    audit.record(
        session,
        actor=actor,
        action="kb.confirm",
        entity_type=ABOUT,
        entity_id=ticket.id,
        tenant_id=ticket.tenant_id,
        after={"article": credited.slug, "status": "solved", "resolution": "deflected"},
    )
    return {
        "ticket_id": ticket.id,
        "ticket_status": ticket.status,
        "resolution": ticket.resolution,
        "article": credited.slug,
        "article_id": credited.id,
    }
