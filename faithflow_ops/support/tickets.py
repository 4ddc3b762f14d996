"""Ticket operations: open, reply, note, assign (and unassign), priority, status, reopen — each
at a given `now`, each followed by `sla.refresh` so the stored clocks match the new state
(docs/support.md).

Status rules (Zendesk's, where the issue is silent):
- new → open on the first agent reply or assignment; a requester reply moves pending/on_hold
  back to open, and reopens a solved ticket (reopen_count + 1; the resolution clock resumes
  with the time it had used, in a new episode);
- `status` sets open, pending, on_hold, solved (with a resolution kind) or closed; closed only
  from solved, and a closed ticket is final (a follow-up is a new ticket);
- solving fulfils every active clock (a solve answers the requester too).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import false, func, select
from sqlalchemy.orm import Session

from faithflow_ops.comms import contacts
from faithflow_ops.errors import NotFound, UserError, one_of
from faithflow_ops.models import SlaEvent, SupportMessage, SupportTicket, Tenant, User
from faithflow_ops.models.support import METRICS, OPEN_STATUSES, PRIORITIES, RESOLUTIONS, STATUSES
from faithflow_ops.support import alerts, sla
from faithflow_ops.support.sla import Rules

SET_STATUSES = ("open", "pending", "on_hold", "solved", "closed")
MAX_ID = 2**31 - 1  # ids are INTEGER columns: a larger number names no row (and overflows)
# column lengths (models/support.py), checked before the INSERT so Postgres never refuses it
MAX_SUBJECT, MAX_NAME, MAX_CATEGORY = 500, 200, 64


def is_id(text: str) -> bool:
    """A reference that is a row id (digits within the INTEGER range), not a slug or e-mail."""
    return text.isdigit() and int(text) <= MAX_ID


def get_ticket(session: Session, ticket_id: int, *, lock: bool = False) -> SupportTicket:
    if not 1 <= ticket_id <= MAX_ID:
        raise NotFound(f"no ticket {ticket_id}; see `faithflow support tickets list`")
    query = select(SupportTicket).where(SupportTicket.id == ticket_id)
    if lock:
        query = query.with_for_update()
    ticket = session.scalars(query).one_or_none()
    if ticket is None:
        raise NotFound(f"no ticket {ticket_id}; see `faithflow support tickets list`")
    return ticket


def platform_user(session: Session, who: str) -> User:
    """A platform user (no tenant; disabled or not, not deleted) by id or e-mail."""
    who = who.strip()
    query = select(User).where(User.deleted_at.is_(None))
    if who.isdigit():
        query = query.where(User.id == int(who) if is_id(who) else false())
    else:
        query = query.where(func.lower(User.email) == who.lower())
    user = session.scalars(query).first()
    if user is None:
        raise NotFound(
            f"no agent {who!r}; give a platform agent's id or e-mail "
            "(`faithflow support agents list`)"
        )
    if user.tenant_id is not None:
        raise UserError(
            f"{user.email} belongs to a tenant, not the support team; give a platform agent "
            "(`faithflow support agents list`)"
        )
    return user


def find_agent(session: Session, who: str) -> User:
    """A platform agent who can take tickets: `platform_user`, not disabled."""
    user = platform_user(session, who)
    if user.disabled_at is not None:
        raise UserError(f"agent {user.email} is disabled; assign someone else")
    return user


def _tenant(session: Session, ref: str) -> Tenant:
    ref = ref.strip()
    query = select(Tenant).where(
        (Tenant.id == int(ref) if is_id(ref) else false())
        if ref.isdigit()
        else Tenant.slug == ref.lower()
    )
    tenant = session.scalars(query).one_or_none()
    if tenant is None or tenant.deleted_at is not None:
        raise NotFound(f"no tenant {ref!r}; see `faithflow tenants list`")
    return tenant


def _message(
    session: Session,
    ticket: SupportTicket,
    kind: str,
    body: str,
    now: dt.datetime,
    *,
    public: bool = True,
    user: User | None = None,
    email: str | None = None,
) -> SupportMessage:
    if not body.strip():
        raise UserError("--body is empty; write the message text")
    message = SupportMessage(
        ticket_id=ticket.id,
        tenant_id=ticket.tenant_id,
        author_kind=kind,
        author_user_id=user.id if user else None,
        author_email=user.email if user else email,
        public=public,
        body=body,
        created_at=now,
    )
    session.add(message)
    return message


def _set_status(ticket: SupportTicket, status: str, now: dt.datetime) -> None:
    if ticket.status != status:
        ticket.status = status
        ticket.status_changed_at = now


def _changed(
    session: Session, rules: Rules, ticket: SupportTicket, now: dt.datetime, by: str
) -> SupportTicket:
    """Every command's last step: the clocks brought in line with the new state, the ticket
    stamped and flushed."""
    sla.refresh(session, ticket, rules, now, by)
    ticket.updated_at = now
    session.flush()
    return ticket


def _last_change(session: Session, ticket: SupportTicket) -> dt.datetime:
    """The latest moment a ticket command changed the ticket or its clocks (not the sweep's
    marks: a breach is dated at its due time, a warning at the sweep's clock). Assignments,
    priority changes and notes leave no time on the ticket: their message carries it."""
    times = [
        session.scalar(
            select(func.max(SupportMessage.created_at)).where(SupportMessage.ticket_id == ticket.id)
        ),
        ticket.opened_at,
        ticket.status_changed_at,
        ticket.last_agent_reply_at,
        ticket.last_requester_message_at,
        ticket.solved_at,
        ticket.closed_at,
    ]
    for metric in METRICS:
        for field in ("started_at", "running_since", "fulfilled_at"):
            times.append(getattr(ticket, f"{metric}_{field}"))
    return max(t for t in times if t is not None)


def _in_order(session: Session, ticket: SupportTicket, now: dt.datetime) -> None:
    """History is replayed forward: a command dated before the ticket's last change would stop
    a clock before it started (negative times in the events and the analytics), or apply a
    priority before it was set."""
    last = _last_change(session, ticket)
    if now < last:
        raise UserError(
            f"--now {now.isoformat()} is before ticket {ticket.id}'s last change "
            f"({last.isoformat()}); replay a ticket's history in order, or leave out --now"
        )


def _open_check(ticket: SupportTicket, verb: str) -> None:
    if ticket.status == "closed":
        raise UserError(
            f"ticket {ticket.id} is closed and cannot be {verb}; open a new ticket for a follow-up"
        )


def open_ticket(
    session: Session,
    rules: Rules,
    *,
    tenant: str,
    subject: str,
    priority: str,
    now: dt.datetime,
    body: str | None = None,
    requester: str | None = None,
    requester_name: str | None = None,
    category: str | None = None,
    assignee: str | None = None,
) -> SupportTicket:
    one_of("--priority", priority, PRIORITIES)
    if body is not None and not body.strip():
        raise UserError("--body is empty; write the requester's message, or leave out --body")
    if not subject.strip():
        raise UserError("--subject is empty; give the ticket a subject")
    for option, value, most in (
        ("--subject", subject.strip(), MAX_SUBJECT),
        ("--requester-name", requester_name, MAX_NAME),
        ("--category", category, MAX_CATEGORY),
    ):
        if value is not None and len(value) > most:
            raise UserError(f"{option} is {len(value)} characters; keep it to {most}")
    owner = _tenant(session, tenant)
    email = requester or owner.billing_email
    if not email:
        raise UserError(
            f"tenant {owner.slug} has no billing e-mail; pass --requester EMAIL (who asked)"
        )
    email = contacts.normalize("email", email)
    agent = find_agent(session, assignee) if assignee else None
    ticket = SupportTicket(
        tenant_id=owner.id,
        requester_email=email,
        requester_name=requester_name,
        subject=subject.strip(),
        priority=priority,
        status="open" if agent else "new",
        assignee_id=agent.id if agent else None,
        category=category,
        reopen_count=0,
        opened_at=now,
        status_changed_at=now,
        waiting_since=now,
        last_requester_message_at=now if body else None,
        created_at=now,
        updated_at=now,
    )
    session.add(ticket)
    session.flush()
    if body:
        _message(session, ticket, "requester", body, now, email=email)
    sla.start(ticket, "first_response", rules, now)
    sla.start(ticket, "resolution", rules, now)
    return _changed(session, rules, ticket, now, "open")


def _reopen(session: Session, ticket: SupportTicket, rules: Rules, now: dt.datetime) -> None:
    ticket.reopen_count += 1
    ticket.resolution = None
    ticket.solved_at = None
    _set_status(ticket, "open", now)
    # Zendesk: a reopened ticket's resolution clock resumes, it does not restart
    sla.resume(ticket, "resolution", rules, now)


def reply(
    session: Session,
    rules: Rules,
    ticket_id: int,
    *,
    author: str,
    body: str,
    now: dt.datetime,
    agent: str | None = None,
) -> SupportTicket:
    one_of("--as", author, ("agent", "requester"))
    ticket = get_ticket(session, ticket_id, lock=True)
    _open_check(ticket, "replied to")
    _in_order(session, ticket, now)
    if author == "requester":
        if agent:
            raise UserError("--agent goes with --as agent; a requester reply has no agent")
        _message(session, ticket, "requester", body, now, email=ticket.requester_email)
        if ticket.status == "solved":
            _reopen(session, ticket, rules, now)
        elif ticket.status in ("pending", "on_hold"):
            _set_status(ticket, "open", now)
        if not sla.active(ticket, "first_response") and not sla.active(ticket, "next_response"):
            sla.start(ticket, "next_response", rules, now)
        ticket.waiting_since = ticket.waiting_since or now
        ticket.last_requester_message_at = now
    else:
        user = find_agent(session, agent) if agent else None
        if user is None and ticket.assignee_id is not None:
            user = session.get(User, ticket.assignee_id)
        if user is not None and ticket.assignee_id is None:
            ticket.assignee_id = user.id  # the agent who answers takes the ticket
        _message(session, ticket, "agent", body, now, user=user)
        if ticket.status == "new":
            _set_status(ticket, "open", now)
        sla.fulfil(session, ticket, "first_response", rules, now, "reply")
        sla.fulfil(session, ticket, "next_response", rules, now, "reply")
        ticket.first_responded_at = ticket.first_responded_at or now
        ticket.last_agent_reply_at = now
        ticket.waiting_since = None
    return _changed(session, rules, ticket, now, "reply")


def note(
    session: Session,
    rules: Rules,
    ticket_id: int,
    *,
    body: str,
    now: dt.datetime,
    agent: str | None = None,
) -> SupportTicket:
    """An internal note: for agents only, stops no clock."""
    ticket = get_ticket(session, ticket_id, lock=True)
    _open_check(ticket, "annotated")  # a solved ticket still takes notes; closed is final
    _in_order(session, ticket, now)
    user = find_agent(session, agent) if agent else None
    _message(session, ticket, "agent", body, now, public=False, user=user)
    return _changed(session, rules, ticket, now, "note")


UNASSIGN = "none"  # `assign --to none`, like `tickets list --assignee none`


def assign(
    session: Session, rules: Rules, ticket_id: int, *, to: str, now: dt.datetime
) -> SupportTicket:
    """Assign to a platform agent, or with `to="none"` return the ticket to the queue."""
    ticket = get_ticket(session, ticket_id, lock=True)
    _open_check(ticket, "assigned")
    _in_order(session, ticket, now)
    if to.strip().lower() == UNASSIGN:
        return _unassign(session, rules, ticket, now)
    user = find_agent(session, to)
    if ticket.assignee_id == user.id:
        raise UserError(f"ticket {ticket.id} is already assigned to {user.email}")
    ticket.assignee_id = user.id
    if ticket.status == "new":
        _set_status(ticket, "open", now)
    _message(session, ticket, "system", f"assigned to {user.email}", now, public=False)
    return _changed(session, rules, ticket, now, "assign")


def _unassign(
    session: Session, rules: Rules, ticket: SupportTicket, now: dt.datetime
) -> SupportTicket:
    """Back to the queue: no assignee; the status stays (an open ticket does not become new
    again) and so do the clocks, recomputed like any other change."""
    if ticket.assignee_id is None:
        raise UserError(f"ticket {ticket.id} is not assigned; nothing to unassign")
    was = session.get(User, ticket.assignee_id)
    who = was.email if was is not None else f"user {ticket.assignee_id}"
    ticket.assignee_id = None
    _message(session, ticket, "system", f"unassigned (was {who})", now, public=False)
    return _changed(session, rules, ticket, now, "unassign")


def set_priority(
    session: Session, rules: Rules, ticket_id: int, priority: str, *, now: dt.datetime
) -> SupportTicket:
    """Change the priority: the running clocks take the new policy's targets, counted from
    their start with the time already used kept, but never due before the change (a target
    the clock has already used up is due, and breached, at the change: the ticket was in time
    under the priority it had); a breached clock stays breached (its due time frozen), a
    fulfilled one stays fulfilled, a paused one takes the new target when it resumes."""
    one_of("priority", priority, PRIORITIES)
    ticket = get_ticket(session, ticket_id, lock=True)
    _open_check(ticket, "changed")
    if ticket.status == "solved":
        raise UserError(
            f"ticket {ticket.id} is solved; reopen it first (`faithflow support tickets reopen "
            f"{ticket.id}`) to change its priority"
        )
    _in_order(session, ticket, now)
    old = ticket.priority
    if old == priority:
        raise UserError(f"ticket {ticket.id} is already {priority} priority")
    for metric in METRICS:
        # a clock already past its due time breached under the old priority: record it so now,
        # at its due time, before the new targets apply (the event keeps the priority it
        # breached under; refresh would otherwise record it with the new one)
        sla.catch_breach(session, ticket, metric, rules, now, "priority")
    ticket.priority = priority
    if old == alerts.ALERTED:  # no longer urgent: its SLA incidents have nothing left to page
        alerts.clear_marks(
            session, ticket.id, None, now=now, by=f"sla: priority {old} → {priority}"
        )
    _message(session, ticket, "system", f"priority {old} → {priority}", now, public=False)
    return _changed(session, rules, ticket, now, "priority")


def set_status(
    session: Session,
    rules: Rules,
    ticket_id: int,
    status: str,
    *,
    now: dt.datetime,
    resolution: str | None = None,
) -> SupportTicket:
    one_of("status", status, SET_STATUSES)
    if resolution is not None:
        one_of("--resolution", resolution, RESOLUTIONS)
        if status != "solved":
            raise UserError("--resolution goes with status solved")
    ticket = get_ticket(session, ticket_id, lock=True)
    old = ticket.status
    _open_check(ticket, "changed")
    _in_order(session, ticket, now)
    if old == status:
        raise UserError(f"ticket {ticket.id} is already {status}")
    if status == "closed" and old != "solved":
        raise UserError(f"ticket {ticket.id} is {old}; solve it before closing it")
    if old == "solved" and status != "closed":
        raise UserError(
            f"ticket {ticket.id} is solved; use `support tickets reopen {ticket.id}` to reopen it"
        )
    _set_status(ticket, status, now)
    if status == "solved":
        ticket.resolution = resolution or "solved"
        ticket.solved_at = now
        ticket.waiting_since = None
        for metric in METRICS:
            sla.fulfil(session, ticket, metric, rules, now, "solve")
    elif status == "closed":
        ticket.closed_at = now
    _message(session, ticket, "system", f"status {old} → {status}", now, public=False)
    return _changed(session, rules, ticket, now, f"status {status}")


def reopen(session: Session, rules: Rules, ticket_id: int, *, now: dt.datetime) -> SupportTicket:
    ticket = get_ticket(session, ticket_id, lock=True)
    _open_check(ticket, "reopened")
    _in_order(session, ticket, now)
    if ticket.status != "solved":
        raise UserError(f"ticket {ticket.id} is {ticket.status}, not solved; nothing to reopen")
    _reopen(session, ticket, rules, now)
    _message(session, ticket, "system", "reopened", now, public=False)
    return _changed(session, rules, ticket, now, "reopen")


# views


def ticket_doc(
    session: Session, ticket: SupportTicket, rules: Rules, now: dt.datetime
) -> dict[str, Any]:
    tenant = session.get(Tenant, ticket.tenant_id)
    agent = session.get(User, ticket.assignee_id) if ticket.assignee_id else None
    return {
        "id": ticket.id,
        "tenant": tenant.slug if tenant else None,
        "tenant_id": ticket.tenant_id,
        "subject": ticket.subject,
        "priority": ticket.priority,
        "status": ticket.status,
        "requester_email": ticket.requester_email,
        "requester_name": ticket.requester_name,
        "assignee_id": ticket.assignee_id,
        "assignee": agent.email if agent else None,
        "category": ticket.category,
        "resolution": ticket.resolution,
        "reopen_count": ticket.reopen_count,
        "opened_at": ticket.opened_at,
        "waiting_since": ticket.waiting_since,
        "first_responded_at": ticket.first_responded_at,
        "solved_at": ticket.solved_at,
        "closed_at": ticket.closed_at,
        "clocks": {m: sla.clock_doc(ticket, m, rules, now) for m in METRICS},
    }


def ticket_details(
    session: Session, ticket_id: int, rules: Rules, now: dt.datetime
) -> dict[str, Any]:
    ticket = get_ticket(session, ticket_id)
    doc = ticket_doc(session, ticket, rules, now)
    doc["messages"] = [
        {
            "id": m.id,
            "author_kind": m.author_kind,
            "author": m.author_email,
            "public": m.public,
            "body": m.body,
            "created_at": m.created_at,
        }
        for m in session.scalars(
            select(SupportMessage)
            .where(SupportMessage.ticket_id == ticket.id)
            .order_by(SupportMessage.created_at, SupportMessage.id)
        )
    ]
    doc["sla_events"] = [
        {
            "metric": e.metric,
            "episode": e.episode,
            "kind": e.kind,
            "occurred_at": e.occurred_at,
            "due_at": e.due_at,
            "within_target": e.within_target,
            "data": e.data,
        }
        for e in session.scalars(
            select(SlaEvent)
            .where(SlaEvent.ticket_id == ticket.id)
            .order_by(SlaEvent.occurred_at, SlaEvent.id)
        )
    ]
    return doc


def list_tickets(
    session: Session,
    *,
    status: str | None = None,
    priority: str | None = None,
    tenant: str | None = None,
    assignee: str | None = None,
    open_only: bool = False,
    limit: int = 100,
) -> tuple[list[SupportTicket], int]:
    query = select(SupportTicket)
    if status is not None:
        one_of("--status", status, STATUSES)
        query = query.where(SupportTicket.status == status)
    if open_only:
        query = query.where(SupportTicket.status.in_(OPEN_STATUSES))
    if priority is not None:
        one_of("--priority", priority, PRIORITIES)
        query = query.where(SupportTicket.priority == priority)
    if tenant is not None:
        query = query.where(SupportTicket.tenant_id == _tenant(session, tenant).id)
    if assignee is not None:
        if assignee == "none":
            query = query.where(SupportTicket.assignee_id.is_(None))
        else:
            query = query.where(SupportTicket.assignee_id == find_agent(session, assignee).id)
    total = session.scalar(select(func.count()).select_from(query.subquery())) or 0
    rows = session.scalars(
        query.order_by(SupportTicket.opened_at.desc(), SupportTicket.id.desc()).limit(limit)
    ).all()
    return list(rows), total
