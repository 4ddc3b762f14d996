"""Platform support agents: add, list, disable and enable (docs/support.md "Agents").

An agent is a `users` row with no tenant (FaithFlow staff) that is neither disabled nor deleted
— exactly what `tickets.find_agent` accepts for `assign`, `reply --agent` and `note --agent`.
A disabled agent cannot be given tickets (find_agent refuses them); the tickets they already
hold stay assigned until someone reassigns them (`disable` lists them). Every change is audited.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import case, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from faithflow_ops import audit
from faithflow_ops.clock import iso
from faithflow_ops.comms import contacts
from faithflow_ops.db import rowcount
from faithflow_ops.errors import UserError
from faithflow_ops.models import SupportTicket, Tenant, User
from faithflow_ops.models.support import OPEN_STATUSES
from faithflow_ops.support.tickets import MAX_NAME, platform_user

ROLE = "platform_agent"  # the role the demo gives platform staff; find_agent ignores roles


def _who(user: User, session: Session) -> str:
    """What an existing user with this e-mail is, for the duplicate message."""
    if user.tenant_id is not None:
        tenant = session.get(Tenant, user.tenant_id)
        slug = tenant.slug if tenant else f"id {user.tenant_id}"
        return f"a user of tenant {slug}, not platform staff; an agent needs its own address"
    if user.deleted_at is not None:
        return "a deleted user; the address stays taken, so add the agent with another address"
    if user.disabled_at is not None:
        return (
            f"a disabled agent (since {user.disabled_at.isoformat()}); enable them with "
            f"`faithflow support agents enable {user.email}`"
        )
    return "already a platform agent; see `faithflow support agents list`"


def _by_email(session: Session, email: str) -> User | None:
    return session.scalars(select(User).where(func.lower(User.email) == email.lower())).first()


def add_agent(session: Session, *, email: str, name: str, actor: str) -> User:
    """A new platform agent; an e-mail any user already has (any case) is refused."""
    address = contacts.normalize("email", email)
    cleaned = " ".join(name.split())
    if not cleaned:
        raise UserError("--name is empty; give the agent's name")
    if len(cleaned) > MAX_NAME:
        raise UserError(f"--name is {len(cleaned)} characters; keep it to {MAX_NAME}")
    existing = _by_email(session, address)
    if existing is not None:
        raise UserError(f"{existing.email} is {_who(existing, session)}")
    user = User(tenant_id=None, email=address, name=cleaned, role=ROLE)
    session.add(user)
    try:
        session.flush()
    except IntegrityError:  # added by someone else since the check: the unique e-mail says no
        raise UserError(
            f"{address} was added by someone else just now; see `faithflow support agents list`"
        ) from None
    audit.record(
        session,
        actor=actor,
        action="agent.add",
        entity_type="user",
        entity_id=user.id,
        after={"email": user.email, "name": user.name, "role": user.role},
    )
    return user


def _set_disabled(session: Session, who: str, *, at: dt.datetime | None, actor: str) -> User:
    user = platform_user(session, who)
    before = user.disabled_at
    if at is not None and before is not None:
        raise UserError(f"agent {user.email} is already disabled (since {before.isoformat()})")
    if at is None and before is None:
        raise UserError(f"agent {user.email} is not disabled; nothing to enable")
    # claim the change: a concurrent disable/enable of the same agent changes nothing twice
    still = User.disabled_at.is_(None) if at is not None else User.disabled_at.is_not(None)
    claimed = session.execute(update(User).where(User.id == user.id, still).values(disabled_at=at))
    if rowcount(claimed) != 1:
        raise UserError(f"agent {user.email} was changed by someone else just now; try again")
    session.refresh(user)
    audit.record(
        session,
        actor=actor,
        action="agent.disable" if at is not None else "agent.enable",
        entity_type="user",
        entity_id=user.id,
        before={"disabled_at": iso(before)},
        after={"disabled_at": iso(at)},
    )
    return user


def disable_agent(session: Session, who: str, *, now: dt.datetime, actor: str) -> User:
    """Disable an agent at `now`: find_agent refuses them from then on (see agent_details for
    the open tickets they still hold)."""
    return _set_disabled(session, who, at=now, actor=actor)


def enable_agent(session: Session, who: str, *, actor: str) -> User:
    """Undo `disable_agent`: the agent can be assigned tickets again."""
    return _set_disabled(session, who, at=None, actor=actor)


def _doc(user: User, open_tickets: int, urgent_open: int) -> dict[str, Any]:
    return {
        "id": user.id,
        "email": user.email,
        "name": user.name,
        "role": user.role,
        "disabled_at": user.disabled_at,
        "created_at": user.created_at,
        "open_tickets": open_tickets,
        "urgent_open": urgent_open,
    }


def agent_details(session: Session, user: User) -> dict[str, Any]:
    """One agent as `list` shows them, plus the ids of the open tickets they hold."""
    held = session.execute(
        select(SupportTicket.id, SupportTicket.priority)
        .where(SupportTicket.assignee_id == user.id, SupportTicket.status.in_(OPEN_STATUSES))
        .order_by(SupportTicket.id)
    ).all()
    urgent = sum(1 for _, priority in held if priority == "urgent")
    return _doc(user, len(held), urgent) | {"open_ticket_ids": [tid for tid, _ in held]}


def list_agents(session: Session) -> list[dict[str, Any]]:
    """Every platform user not deleted (disabled ones too, marked: they may still hold
    tickets), by e-mail, with their open tickets and how many of those are urgent."""
    is_open = SupportTicket.status.in_(OPEN_STATUSES)
    rows = session.execute(
        select(
            User,
            func.count(SupportTicket.id),
            func.sum(case((SupportTicket.priority == "urgent", 1), else_=0)),
        )
        .outerjoin(SupportTicket, (SupportTicket.assignee_id == User.id) & is_open)
        .where(User.tenant_id.is_(None), User.deleted_at.is_(None))
        .group_by(User.id)
        .order_by(User.email)
    ).all()
    return [_doc(user, int(count), int(urgent or 0)) for user, count, urgent in rows]
