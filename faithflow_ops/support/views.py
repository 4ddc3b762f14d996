"""Read-only views: `sla breaches` and `support queue` (queue health)."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import and_, case, func, or_, select
from sqlalchemy.orm import Session

from faithflow_ops.errors import UserError, one_of
from faithflow_ops.models import SlaEvent, SupportTicket, Tenant, User
from faithflow_ops.models.support import METRICS, OPEN_STATUSES, PRIORITIES


def breaches(
    session: Session,
    *,
    open_only: bool = False,
    since: dt.datetime | None = None,
    priority: str | None = None,
    limit: int = 500,
) -> list[dict[str, Any]]:
    """Breach events, newest first: ticket, metric, episode, due and breached times.
    `open_only`: the ticket is still open and that episode's clock not fulfilled yet."""
    if priority is not None:
        one_of("--priority", priority, PRIORITIES)
    query = (
        select(SlaEvent, SupportTicket, Tenant.slug)
        .join(SupportTicket, SupportTicket.id == SlaEvent.ticket_id)
        .join(Tenant, Tenant.id == SlaEvent.tenant_id)
        .where(SlaEvent.kind == "breach")
    )
    if since is not None:
        query = query.where(SlaEvent.occurred_at >= since)
    if priority is not None:
        query = query.where(SupportTicket.priority == priority)
    if open_only:
        # in SQL, so LIMIT reads only the rows shown (not every breach ever recorded): the
        # ticket is open and the event's episode is the clock's current one, not fulfilled
        query = query.where(
            SupportTicket.status.in_(OPEN_STATUSES),
            or_(
                *(
                    and_(
                        SlaEvent.metric == metric,
                        getattr(SupportTicket, f"{metric}_episode") == SlaEvent.episode,
                        getattr(SupportTicket, f"{metric}_fulfilled_at").is_(None),
                    )
                    for metric in METRICS
                )
            ),
        )
    rows = []
    for event, ticket, slug in session.execute(
        query.order_by(SlaEvent.occurred_at.desc(), SlaEvent.id.desc()).limit(limit)
    ):
        current = getattr(ticket, f"{event.metric}_episode") == event.episode
        fulfilled = getattr(ticket, f"{event.metric}_fulfilled_at") if current else True
        rows.append(
            {
                "ticket_id": ticket.id,
                "tenant": slug,
                "subject": ticket.subject,
                "priority": ticket.priority,
                "status": ticket.status,
                "metric": event.metric,
                "episode": event.episode,
                "due_at": event.due_at,
                "breached_at": event.occurred_at,
                "recorded_at": event.created_at,
                "assignee_id": ticket.assignee_id,
                "open": not fulfilled,
            }
        )
    return rows


def check_queue_time(session: Session, now: dt.datetime) -> None:
    """`support queue --now`: the queue is always the tickets' current state; `now` only sets
    the moment waiting and due times are measured to. A `now` before the newest ticket's
    opening would pass the current state off as a past one: refused."""
    newest = session.execute(
        select(SupportTicket.id, SupportTicket.opened_at)
        .order_by(SupportTicket.opened_at.desc(), SupportTicket.id.desc())
        .limit(1)
    ).first()
    if newest is not None and now < newest.opened_at:
        raise UserError(
            f"--now {now.isoformat()} is before ticket {newest.id} was opened "
            f"({newest.opened_at.isoformat()}): the queue shows the tickets as they are now and "
            "cannot show a past moment; give a --now from then on, or leave out --now"
        )


def queue(session: Session, now: dt.datetime) -> dict[str, Any]:
    """Queue health at `now`: open tickets by status and priority, unassigned, the oldest
    waiting requester, clocks breaching now and due within the hour, load per agent."""
    is_open = SupportTicket.status.not_in(("solved", "closed"))
    by_status = dict(
        session.execute(
            select(SupportTicket.status, func.count()).where(is_open).group_by(SupportTicket.status)
        )
        .tuples()
        .all()
    )
    by_priority = dict(
        session.execute(
            select(SupportTicket.priority, func.count())
            .where(is_open)
            .group_by(SupportTicket.priority)
        )
        .tuples()
        .all()
    )
    unassigned = session.scalar(
        select(func.count()).where(is_open, SupportTicket.assignee_id.is_(None))
    )
    oldest = session.execute(
        select(SupportTicket.id, SupportTicket.waiting_since, SupportTicket.priority)
        .where(is_open, SupportTicket.waiting_since.is_not(None))
        .order_by(SupportTicket.waiting_since, SupportTicket.id)
        .limit(5)
    ).all()
    hour = now + dt.timedelta(hours=1)
    breaching: list[dict[str, Any]] = []
    due_soon: list[dict[str, Any]] = []
    for metric in METRICS:
        due = getattr(SupportTicket, f"{metric}_due_at")
        breached = getattr(SupportTicket, f"{metric}_breached_at")
        fulfilled = getattr(SupportTicket, f"{metric}_fulfilled_at")
        running = getattr(SupportTicket, f"{metric}_running_since")
        # breaching now: overdue and not fulfilled (marked by the sweep or not yet)
        for tid, when, prio in session.execute(
            select(SupportTicket.id, due, SupportTicket.priority).where(
                is_open,
                fulfilled.is_(None),
                due <= now,
                or_(running.is_not(None), breached.is_not(None)),
            )
        ):
            breaching.append(
                {
                    "ticket_id": tid,
                    "metric": metric,
                    "priority": prio,
                    "due_at": when,
                    "minutes_left": int((when - now).total_seconds() // 60),
                }
            )
        for tid, when, prio in session.execute(
            select(SupportTicket.id, due, SupportTicket.priority).where(
                is_open, breached.is_(None), due > now, due <= hour
            )
        ):
            due_soon.append(
                {
                    "ticket_id": tid,
                    "metric": metric,
                    "priority": prio,
                    "due_at": when,
                    "minutes_left": int((when - now).total_seconds() // 60),
                }
            )
    agents = []
    for email, name, count, urgent in session.execute(
        select(
            User.email,
            User.name,
            func.count(SupportTicket.id),
            func.sum(case((SupportTicket.priority == "urgent", 1), else_=0)),
        )
        .join(SupportTicket, SupportTicket.assignee_id == User.id)
        .where(is_open)
        .group_by(User.email, User.name)
        .order_by(func.count(SupportTicket.id).desc(), User.email)
    ):
        agents.append({"agent": email, "name": name, "open": count, "urgent": int(urgent or 0)})
    return {
        "now": now,
        "open": sum(by_status.values()),
        "by_status": {s: by_status.get(s, 0) for s in OPEN_STATUSES},
        "by_priority": {p: by_priority.get(p, 0) for p in reversed(PRIORITIES)},
        "unassigned": int(unassigned or 0),
        "oldest_waiting": [
            {
                "ticket_id": tid,
                "priority": prio,
                "waiting_since": since,
                "waiting_minutes": int((now - since).total_seconds() // 60),
            }
            for tid, since, prio in oldest
        ],
        "breaching_now": sorted(breaching, key=lambda r: r["due_at"]),
        "due_within_hour": sorted(due_soon, key=lambda r: r["due_at"]),
        "agents": agents,
    }
