"""Reading the webhook inbox back: `faithflow webhooks list` and `webhooks show`, and the
deliveries `webhooks apply` plans to apply (with its action payload, `ApplyEvent`).

Read-only. A document names the event type `type`, as the receiver's answers do.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from faithflow_ops.errors import NotFound, one_of
from faithflow_ops.models import WebhookEvent
from faithflow_ops.models.webhooks import WEBHOOK_SCOPES, WEBHOOK_STATUSES
from faithflow_ops.tenancy.records import row_with_slug, rows_with_slug
from faithflow_ops.webhooks import applier
from faithflow_ops.webhooks.endpoints import PROVIDERS

# column → document field
_FIELDS = {
    "id": "id",
    "provider": "provider",
    "scope": "scope",
    "event_key": "event_key",
    "event_type": "type",
    "status": "status",
    "delivery_count": "delivery_count",
    "first_received_at": "first_received_at",
    "last_received_at": "last_received_at",
    "applied_at": "applied_at",
    "tenant_id": "tenant_id",
    "object_id": "object_id",
    "outcome": "outcome",
    "last_error": "last_error",
}
# `webhooks show` adds what the event names (what `tenants link` needs) and the payload.
_SHOW_FIELDS = {
    "customer_ref": "customer_ref",
    "account_ref": "account_ref",
    "occurred_at": "occurred_at",
}


def event_doc(row: WebhookEvent, tenant: str | None, *, full: bool = False) -> dict[str, Any]:
    """One stored event as a document, naming its tenant by slug (`tenant`, beside
    `tenant_id`); `full` adds the references and the payload."""
    fields = {**_FIELDS, **_SHOW_FIELDS} if full else _FIELDS
    doc: dict[str, Any] = {}
    for column, name in fields.items():
        doc[name] = getattr(row, column)
        if column == "tenant_id":
            doc["tenant"] = tenant
    if full:
        doc["payload"] = row.payload
    return doc


def list_events(
    session: Session,
    *,
    provider: str | None = None,
    scope: str | None = None,
    status: str | None = None,
    event_type: str | None = None,
    since: dt.datetime | None = None,
    limit: int = 50,
) -> tuple[list[dict[str, Any]], int]:
    """Stored events, newest first (at most `limit`), and how many match. A filter that names
    no provider, scope or status is refused, listing the known ones."""
    conditions: list[Any] = []
    if provider is not None:
        conditions.append(WebhookEvent.provider == one_of("--provider", provider, PROVIDERS))
    if scope is not None:
        conditions.append(WebhookEvent.scope == one_of("--scope", scope, WEBHOOK_SCOPES))
    if status is not None:
        conditions.append(WebhookEvent.status == one_of("--status", status, WEBHOOK_STATUSES))
    if event_type is not None:
        conditions.append(WebhookEvent.event_type == event_type.strip())
    if since is not None:
        conditions.append(WebhookEvent.first_received_at >= since)
    order = [WebhookEvent.first_received_at.desc(), WebhookEvent.id.desc()]
    found, total = rows_with_slug(session, WebhookEvent, conditions, order, limit, outer=True)
    return [event_doc(row, slug) for row, slug in found], total


def event_details(session: Session, event_id: int) -> dict[str, Any]:
    """One stored event with every field and its payload; NotFound when there is none."""
    found = row_with_slug(session, WebhookEvent, event_id, outer=True)
    if found is None:
        raise NotFound(f"no webhook event {event_id}; see `faithflow webhooks list`")
    return event_doc(found[0], found[1], full=True)


def event_status(session: Session, event_id: int) -> str | None:
    """The event's status now (None: no such event)."""
    return session.scalar(select(WebhookEvent.status).where(WebhookEvent.id == event_id))


@dataclass(frozen=True)
class ApplyEvent:
    """The payload of `webhooks apply`'s `apply_event`: a stored delivery due to be applied.
    Applying needs only `id` (the row is claimed and re-read); the rest is what the preview
    shows, so an action made by hand may carry the id alone."""

    id: int
    provider: str | None = None
    type: str | None = None  # the event type
    status: str | None = None  # received | failed (when planned)
    attempts: int | None = None


def due_events(
    session: Session, now: dt.datetime, limit: int | None = None
) -> list[tuple[ApplyEvent, str]]:
    """The deliveries to apply at `now` (`received`, or `failed` whose retry time has come),
    oldest due first, each with the reason an operator reads."""
    query = (
        select(
            WebhookEvent.id,
            WebhookEvent.provider,
            WebhookEvent.scope,
            WebhookEvent.event_type,
            WebhookEvent.status,
            WebhookEvent.attempts,
        )
        .where(applier.due(now))
        .order_by(WebhookEvent.next_attempt_at, WebhookEvent.id)
    )
    if limit is not None:
        query = query.limit(limit)
    found = []
    for row in session.execute(query):
        retry = f" (attempt {row.attempts + 1})" if row.status == "failed" else ""
        reason = f"{row.provider} {row.scope} {row.event_type} is {row.status}{retry}"
        found.append(
            (ApplyEvent(row.id, row.provider, row.event_type, row.status, row.attempts), reason)
        )
    return found
