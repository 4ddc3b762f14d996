"""The one way any module sends a message: `enqueue`, in the same transaction as its decision.

The message is rendered at enqueue time (what is stored is what is sent), keyed by the caller's
idempotency key (`UNIQUE`: enqueueing the same key again returns the first message and changes
nothing), and checked against the suppression list (a suppressed recipient gets a row with
status `suppressed`, so the decision is visible, and is never sent). `not_before` in the future
makes it `scheduled`; `comms dispatch` sends it at that minute or later, never earlier.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import or_, select, update
from sqlalchemy.orm import Session

from faithflow_ops.comms import contacts, templates
from faithflow_ops.db import rowcount, upsert_insert
from faithflow_ops.models import OutboundMessage, Suppression, Tenant
from faithflow_ops.models.comms import PENDING_STATUSES


@dataclass(frozen=True)
class Enqueued:
    id: int
    status: str
    created: bool  # False: the idempotency key was already used; nothing changed


def suppression_for(
    session: Session, channel: str, recipient: str, now: dt.datetime
) -> Suppression | None:
    """The suppression in force for this (normalised) recipient on `channel`, if any."""
    return session.scalars(
        select(Suppression).where(
            Suppression.contact == recipient,
            Suppression.channel == channel,
            or_(Suppression.until.is_(None), Suppression.until > now),
        )
    ).first()


def enqueue(
    session: Session,
    *,
    channel: str,
    recipient: str,
    template: str,
    variables: dict[str, Any],
    idempotency_key: str,
    now: dt.datetime,
    tenant: Tenant | None = None,
    not_before: dt.datetime | None = None,
    priority: int = 50,
    category: str = "general",
    about: tuple[str, int | str] | None = None,
) -> Enqueued:
    """Add one message to the outbox (see the module docstring). UserError: a bad recipient,
    an unknown template or a variable the template needs and did not get."""
    to = contacts.normalize(channel, recipient)
    locale = tenant.locale if tenant is not None else "en"
    timezone = tenant.timezone if tenant is not None else "UTC"
    if tenant is not None:
        variables = {"tenant_name": tenant.name, "tenant_slug": tenant.slug, **variables}
    rendered = templates.render(template, channel, variables, locale=locale, timezone=timezone)
    due = max(not_before or now, now)
    suppressed = suppression_for(session, channel, to, now)
    status = "suppressed" if suppressed else ("scheduled" if due > now else "queued")
    row = {
        "tenant_id": tenant.id if tenant is not None else None,
        "channel": channel,
        "recipient": to,
        "template": template,
        "variables": variables,
        "locale": locale,
        "subject": rendered.subject,
        "body": rendered.body,
        "category": category,
        "priority": priority,
        "status": status,
        "idempotency_key": idempotency_key,
        "attempts": 0,
        "not_before": due,
        "next_attempt_at": due,
        "last_error": f"suppressed: {suppressed.reason}" if suppressed else None,
        "about_type": about[0] if about else None,
        "about_id": str(about[1]) if about else None,
        "created_at": now,
        "updated_at": now,
    }
    dialect = session.get_bind().dialect.name
    stmt = (
        upsert_insert(dialect, OutboundMessage)
        .values(**row)
        .on_conflict_do_nothing(index_elements=["idempotency_key"])
        .returning(OutboundMessage.id)
    )
    new_id = session.execute(stmt).scalar_one_or_none()
    if new_id is not None:
        return Enqueued(new_id, status, True)
    existing = session.execute(
        select(OutboundMessage.id, OutboundMessage.status).where(
            OutboundMessage.idempotency_key == idempotency_key
        )
    ).one()
    return Enqueued(existing.id, existing.status, False)


def cancel_pending(
    session: Session,
    about: Iterable[tuple[str, int | str]],
    *,
    now: dt.datetime,
    reason: str,
) -> int:
    """Cancel the queued/scheduled messages about these records (what they were about no longer
    holds: a paid invoice, a solved ticket). Messages already sending or sent are left alone."""
    count = 0
    for about_type, about_id in about:
        result = session.execute(
            update(OutboundMessage)
            .where(
                OutboundMessage.about_type == about_type,
                OutboundMessage.about_id == str(about_id),
                OutboundMessage.status.in_(PENDING_STATUSES),
            )
            .values(status="canceled", canceled_at=now, last_error=reason, updated_at=now)
            .execution_options(synchronize_session=False)
        )
        count += rowcount(result)
    return count
