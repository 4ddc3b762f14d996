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
from typing import Any, cast

from sqlalchemy import Table, func, select, text, update
from sqlalchemy.orm import Session

from faithflow_ops import audit
from faithflow_ops.bulk import insert_rows
from faithflow_ops.db import among, rowcount
from faithflow_ops.errors import NotFound, UserError
from faithflow_ops.models import Incident, Tenant

_INCIDENTS = cast(Table, Incident.__table__)
SEVERITIES = ("info", "warning", "critical")
STATUSES = ("open", "acknowledged", "resolved")
KINDS = ("domain", "health", "job", "support", "comms")  # + comms dispatch (bounces)


@dataclass(frozen=True)
class Raised:
    id: int
    new: bool  # False: an unresolved incident with this cause already existed


@dataclass(frozen=True)
class Cause:
    """One incident to raise (`raise_incidents`)."""

    cause: str
    kind: str
    title: str
    severity: str = "warning"
    detail: str | None = None
    tenant_id: int | None = None


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
    (raised,) = raise_incidents(
        session, [Cause(cause, kind, title, severity, detail, tenant_id)], now=now
    )
    return raised


def raise_incidents(session: Session, causes: list[Cause], *, now: dt.datetime) -> list[Raised]:
    """`raise_incident` for a batch in one statement (one `INSERT … ON CONFLICT DO UPDATE`, one
    audit insert for the new ones); one `Raised` per cause, in order. Causes must be distinct."""
    if not causes:
        return []
    for c in causes:
        if c.severity not in SEVERITIES:
            raise ValueError(f"severity {c.severity!r}")
    if len({c.cause for c in causes}) != len(causes):
        raise ValueError("raise_incidents: a cause appears twice in one batch")
    rows = [
        {
            "cause": c.cause,
            "kind": c.kind,
            "tenant_id": c.tenant_id,
            "title": c.title,
            "severity": c.severity,
            "status": "open",
            "detail": c.detail,
            "occurrences": 1,
            "opened_at": now,
            "last_seen_at": now,
            "hook_attempts": 0,
            "next_hook_at": now,
            "created_at": now,
            "updated_at": now,
        }
        for c in causes
    ]
    # one statement whatever the batch (bulk.insert_rows: a JSON recordset on Postgres, whose
    # text, unlike a VALUES list of 125 rows x 14 columns, is compiled once and cached)
    returned = insert_rows(
        session,
        _INCIDENTS,
        rows,
        conflict=["cause"],
        conflict_where=text("status <> 'resolved'"),
        update=lambda excluded: {
            "occurrences": Incident.occurrences + 1,
            "last_seen_at": excluded.last_seen_at,
            "detail": excluded.detail,
            "title": excluded.title,
            "updated_at": excluded.updated_at,
        },
        returning=[_INCIDENTS.c.cause, _INCIDENTS.c.id, _INCIDENTS.c.occurrences],
    )
    found = {cause: (i, n) for cause, i, n in returned}
    raised = [Raised(found[c.cause][0], found[c.cause][1] == 1) for c in causes]
    audit.record_many(
        session,
        [
            audit.audit_row(
                actor=f"incident:{c.kind}",
                action="incident.open",
                entity_type="incident",
                entity_id=r.id,
                tenant_id=c.tenant_id,
                after={"cause": c.cause, "title": c.title, "severity": c.severity},
            )
            for c, r in zip(causes, raised, strict=True)
            if r.new
        ],
    )
    return raised


def clear_incident(session: Session, cause: str, *, now: dt.datetime, by: str) -> int | None:
    """Resolve the unresolved incident for `cause` (the cause is healthy again); its id, or None
    when there was none."""
    cleared = clear_incidents(session, [cause], now=now, by=by)
    return cleared[0] if cleared else None


def clear_incidents(session: Session, causes: list[str], *, now: dt.datetime, by: str) -> list[int]:
    """`clear_incident` for a batch in one statement; the ids of the incidents it resolved."""
    if not causes:
        return []
    rows = session.execute(
        update(Incident)
        .where(among(Incident.cause, causes, session.get_bind().dialect.name))
        .where(Incident.status != "resolved")
        .values(status="resolved", resolved_at=now, resolved_by=by, updated_at=now)
        .returning(Incident.id, Incident.tenant_id, Incident.cause)
        .execution_options(synchronize_session=False)
    ).all()
    audit.record_many(
        session,
        [
            audit.audit_row(
                actor=by,
                action="incident.resolve",
                entity_type="incident",
                entity_id=row.id,
                tenant_id=row.tenant_id,
                after={"cause": row.cause, "resolved_at": now.isoformat()},
            )
            for row in rows
        ],
    )
    return [int(row.id) for row in rows]


def open_causes(session: Session, prefix: str) -> set[str]:
    """Causes with an unresolved incident that start with `prefix` (a job's own causes)."""
    return set(
        session.scalars(
            select(Incident.cause).where(
                Incident.status != "resolved", Incident.cause.startswith(prefix, autoescape=True)
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


def incident_details(session: Session, incident_id: int) -> dict[str, Any]:
    """One incident as `incidents show` prints it, with its tenant's slug (NotFound: none)."""
    incident = get_incident(session, incident_id)
    slug = session.scalar(select(Tenant.slug).where(Tenant.id == incident.tenant_id))
    return incident_doc(incident, slug)


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
