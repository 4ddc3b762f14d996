"""Open, refresh, acknowledge and resolve incidents — one unresolved incident per cause.

A cause is a stable string naming what is broken: `domain:www.grace.org:dns`,
`domain:www.grace.org:certificate`, `health:database`, `job:dunning`. `raise_incident` is an
insert that, when an unresolved incident with that cause exists, counts one more occurrence
instead (`ON CONFLICT` on the partial unique index over unresolved causes), so two jobs raising
the same cause at once still make one incident. `clear_incident` resolves it when the cause is
healthy again. Both run in the caller's transaction; the escalation hooks (alert webhook,
PagerDuty) are sent afterwards by `incidents escalate` (jobs/incidents_escalate.py), so a
failing hook never fails the job that raised the incident.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select, text, update
from sqlalchemy.orm import Session

from faithflow_ops import audit
from faithflow_ops.db import rowcount, upsert_insert
from faithflow_ops.errors import NotFound, UserError
from faithflow_ops.models import Incident, Tenant

SEVERITIES = ("info", "warning", "critical")
STATUSES = ("open", "acknowledged", "resolved")
KINDS = ("domain", "health", "job")  # who raises them: domains automate, health sweep (+ jobs)


@dataclass(frozen=True)
class Raised:
    id: int
    new: bool  # False: an unresolved incident with this cause already existed


def raise_incident(
    session: Session,
    *,
    cause: str,
    kind: str,
    title: str,
    now: dt.datetime,
    severity: str = "warning",
    detail: str | None = None,
    tenant_id: int | None = None,
) -> Raised:
    """Open an incident for `cause`, or count one more occurrence of the unresolved one."""
    if severity not in SEVERITIES:
        raise ValueError(f"severity {severity!r}")
    dialect = session.get_bind().dialect.name
    stmt = upsert_insert(dialect, Incident).values(
        cause=cause,
        kind=kind,
        tenant_id=tenant_id,
        title=title,
        severity=severity,
        status="open",
        detail=detail,
        occurrences=1,
        opened_at=now,
        last_seen_at=now,
        hook_attempts=0,
        next_hook_at=now,
        created_at=now,
        updated_at=now,
    )
    excluded = stmt.excluded
    stmt = stmt.on_conflict_do_update(
        index_elements=["cause"],
        index_where=text("status <> 'resolved'"),
        set_={
            "occurrences": Incident.occurrences + 1,
            "last_seen_at": excluded.last_seen_at,
            "detail": excluded.detail,
            "title": excluded.title,
            "updated_at": excluded.updated_at,
        },
    ).returning(Incident.id, Incident.occurrences)
    row = session.execute(stmt).one()
    new = row.occurrences == 1
    if new:
        audit.record(
            session,
            actor=f"incident:{kind}",
            action="incident.open",
            entity_type="incident",
            entity_id=row.id,
            tenant_id=tenant_id,
            after={"cause": cause, "title": title, "severity": severity},
        )
    return Raised(row.id, new)


def clear_incident(session: Session, cause: str, *, now: dt.datetime, by: str) -> int | None:
    """Resolve the unresolved incident for `cause` (the cause is healthy again); its id, or None
    when there was none."""
    row = session.execute(
        update(Incident)
        .where(Incident.cause == cause, Incident.status != "resolved")
        .values(status="resolved", resolved_at=now, resolved_by=by, updated_at=now)
        .returning(Incident.id, Incident.tenant_id)
        .execution_options(synchronize_session=False)
    ).first()
    if row is None:
        return None
    audit.record(
        session,
        actor=by,
        action="incident.resolve",
        entity_type="incident",
        entity_id=row.id,
        tenant_id=row.tenant_id,
        after={"cause": cause, "resolved_at": now.isoformat()},
    )
    return int(row.id)


def open_causes(session: Session, prefix: str) -> set[str]:
    """Causes with an unresolved incident that start with `prefix` (a job's own causes)."""
    return set(
        session.scalars(
            select(Incident.cause).where(
                Incident.status != "resolved", Incident.cause.startswith(prefix)
            )
        )
    )


def get_incident(session: Session, incident_id: int) -> Incident:
    incident = session.get(Incident, incident_id)
    if incident is None:
        raise NotFound(f"no incident {incident_id}; see `faithflow incidents list`")
    return incident


def acknowledge(session: Session, incident_id: int, *, by: str, now: dt.datetime) -> Incident:
    """A human has it: no page goes out for it any more (a page already sent stays)."""
    incident = get_incident(session, incident_id)
    if incident.status != "open":
        raise UserError(
            f"incident {incident_id} is {incident.status}; only an open incident can be "
            "acknowledged"
        )
    changed = rowcount(
        session.execute(
            update(Incident)
            .where(Incident.id == incident_id, Incident.status == "open")
            .values(status="acknowledged", acknowledged_at=now, acknowledged_by=by, updated_at=now)
            .execution_options(synchronize_session=False)
        )
    )
    if not changed:
        raise UserError(f"incident {incident_id} changed meanwhile; look at it again")
    audit.record(
        session,
        actor=by,
        action="incident.acknowledge",
        entity_type="incident",
        entity_id=incident_id,
        tenant_id=incident.tenant_id,
    )
    session.refresh(incident)
    return incident


def resolve(session: Session, incident_id: int, *, by: str, now: dt.datetime) -> Incident:
    """Resolve by hand (the next failure of the same cause opens a new incident)."""
    incident = get_incident(session, incident_id)
    if incident.status == "resolved":
        raise UserError(f"incident {incident_id} is already resolved")
    clear_incident(session, incident.cause, now=now, by=by)
    session.refresh(incident)
    return incident


def incident_doc(incident: Incident, tenant_slug: str | None = None) -> dict[str, Any]:
    return {
        "id": incident.id,
        "cause": incident.cause,
        "kind": incident.kind,
        "tenant": tenant_slug,
        "title": incident.title,
        "severity": incident.severity,
        "status": incident.status,
        "occurrences": incident.occurrences,
        "opened_at": incident.opened_at,
        "last_seen_at": incident.last_seen_at,
        "acknowledged_at": incident.acknowledged_at,
        "acknowledged_by": incident.acknowledged_by,
        "resolved_at": incident.resolved_at,
        "resolved_by": incident.resolved_by,
        "alerted_at": incident.alerted_at,
        "paged_at": incident.paged_at,
        "page_resolved_at": incident.page_resolved_at,
        "hook_attempts": incident.hook_attempts,
        "last_hook_error": incident.last_hook_error,
        "detail": incident.detail,
    }


def list_incidents(
    session: Session, *, status: str | None = None, kind: str | None = None, limit: int = 100
) -> tuple[list[dict[str, Any]], int]:
    """Incidents, newest first (`--status open` also takes `unresolved`), and the total."""
    query = select(Incident, Tenant.slug).outerjoin(Tenant, Tenant.id == Incident.tenant_id)
    count = select(func.count()).select_from(Incident)
    if status:
        if status == "unresolved":
            cond = Incident.status != "resolved"
        elif status in STATUSES:
            cond = Incident.status == status
        else:
            raise UserError(f"status {status!r} is not one of: {', '.join(STATUSES)}, unresolved")
        query, count = query.where(cond), count.where(cond)
    if kind:
        if kind not in KINDS:
            raise UserError(f"kind {kind!r} is not one of: {', '.join(KINDS)}")
        query, count = query.where(Incident.kind == kind), count.where(Incident.kind == kind)
    rows = session.execute(
        query.order_by(Incident.opened_at.desc(), Incident.id.desc()).limit(limit)
    )
    total = session.scalar(count) or 0
    return [incident_doc(i, slug) for i, slug in rows], total
