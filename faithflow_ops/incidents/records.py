"""Open, refresh, acknowledge and resolve incidents — one unresolved incident per cause.

A cause is a stable string naming what is broken: `domain:www.grace.org:dns`,
`domain:www.grace.org:certificate`, `health:database`, `job:dunning`. `raise_incident` is an
insert that, when an unresolved incident with that cause exists, counts one more occurrence
instead (`ON CONFLICT` on the partial unique index over unresolved causes), so two jobs raising
the same cause at once still make one incident. `clear_incident` resolves it when the cause is
healthy again. Both run in the caller's transaction; the escalation hooks (alert webhook,
PagerDuty) are sent afterwards by `incidents escalate` (jobs/incidents_escalate.py), so a
failing hook never fails the job that raised the incident.

Flapping (issue 22): a cause that fails again within `reopen_within` (FAITHFLOW_INCIDENT_FLAP_
MINUTES, 30) of a job resolving its incident reopens that incident — same id, same `opened_at`,
so the page clock keeps running — and counts a flap, instead of opening a new one each cycle.
`incidents escalate` holds back the "resolved" post and PagerDuty's `resolve` for that window
too, so a flap never closes a page it would have to reopen. A human's `incidents resolve` is
final: never reopened, notified at once.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any, cast

from sqlalchemy import Table, case, func, select, text, update
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


REOPEN_WITHIN = dt.timedelta(minutes=30)  # FAITHFLOW_INCIDENT_FLAP_MINUTES' default


@dataclass(frozen=True)
class Raised:
    id: int
    new: bool  # False: an unresolved incident with this cause already existed (or was reopened)
    reopened: bool = False  # a recently resolved incident of the cause came back (a flap)


@dataclass(frozen=True)
class Cause:
    """One incident to raise (`raise_incidents`)."""

    cause: str
    kind: str
    title: str
    severity: str = "warning"
    detail: str | None = None
    tenant_id: int | None = None
    flap: bool = False  # the cause was seen passing since it last failed: count a flap


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
    flap: bool = False,
    reopen_within: dt.timedelta = REOPEN_WITHIN,
) -> Raised:
    """Open an incident for `cause`, or count one more occurrence of the unresolved one (or
    reopen the one a job resolved less than `reopen_within` ago)."""
    (raised,) = raise_incidents(
        session,
        [Cause(cause, kind, title, severity, detail, tenant_id, flap)],
        now=now,
        reopen_within=reopen_within,
    )
    return raised


def raise_incidents(
    session: Session,
    causes: list[Cause],
    *,
    now: dt.datetime,
    reopen_within: dt.timedelta = REOPEN_WITHIN,
) -> list[Raised]:
    """`raise_incident` for a batch: the reopens first (one UPDATE each, only for causes with
    a recent resolution), then one `INSERT … ON CONFLICT DO UPDATE` and one audit insert; one
    `Raised` per cause, in order. Causes must be distinct."""
    if not causes:
        return []
    for c in causes:
        if c.severity not in SEVERITIES:
            raise ValueError(f"severity {c.severity!r}")
    if len({c.cause for c in causes}) != len(causes):
        raise ValueError("raise_incidents: a cause appears twice in one batch")
    reopened = _reopen(session, causes, now=now, within=reopen_within)
    rest = [c for c in causes if c.cause not in reopened]
    fresh = _upsert(session, rest, now=now)
    return [
        Raised(reopened[c.cause], new=False, reopened=True)
        if c.cause in reopened
        else fresh[c.cause]
        for c in causes
    ]


def _reopen(
    session: Session, causes: list[Cause], *, now: dt.datetime, within: dt.timedelta
) -> dict[str, int]:
    """Reopen, per cause with no unresolved incident, its newest incident a job resolved less
    than `within` ago: same id and opened_at (the page clock runs on), one more flap. A chat
    post or page already closed for it is sent again (alerted_at / paged_at cleared)."""
    if within <= dt.timedelta(0):
        return {}
    dialect = session.get_bind().dialect.name
    recent = session.execute(
        select(Incident.id, Incident.cause)
        .where(
            among(Incident.cause, [c.cause for c in causes], dialect),
            Incident.status == "resolved",
            Incident.resolved_by_hand.is_(False),
            Incident.resolved_at >= now - within,
        )
        .order_by(Incident.resolved_at.desc(), Incident.id.desc())
    ).all()
    newest: dict[str, int] = {}
    for incident_id, cause in recent:
        newest.setdefault(cause, int(incident_id))
    if not newest:
        return {}
    by_cause = {c.cause: c for c in causes}
    live = set(open_causes_among(session, list(newest)))
    reopened: dict[str, int] = {}
    for cause, incident_id in newest.items():
        if cause in live:
            continue
        c = by_cause[cause]
        changed = session.execute(
            update(Incident)
            .where(Incident.id == incident_id, Incident.status == "resolved")
            .values(
                status=case((Incident.acknowledged_at.is_not(None), "acknowledged"), else_="open"),
                resolved_at=None,
                resolved_by=None,
                flaps=Incident.flaps + 1,
                occurrences=Incident.occurrences + 1,
                last_seen_at=now,
                title=c.title,
                detail=c.detail,
                alerted_at=case(
                    (Incident.resolve_alerted_at.is_not(None), None), else_=Incident.alerted_at
                ),
                resolve_alerted_at=None,
                paged_at=case(
                    (Incident.page_resolved_at.is_not(None), None), else_=Incident.paged_at
                ),
                page_acknowledged_at=case(
                    (Incident.page_resolved_at.is_not(None), None),
                    else_=Incident.page_acknowledged_at,
                ),
                page_resolved_at=None,
                updated_at=now,
            )
            .execution_options(synchronize_session=False)
        )
        if rowcount(changed) == 1:
            reopened[cause] = incident_id
    audit.record_many(
        session,
        [
            audit.audit_row(
                actor=f"incident:{by_cause[cause].kind}",
                action="incident.reopen",
                entity_type="incident",
                entity_id=incident_id,
                tenant_id=by_cause[cause].tenant_id,
                after={"cause": cause, "title": by_cause[cause].title, "flap": True},
            )
            for cause, incident_id in reopened.items()
        ],
    )
    return reopened


def open_causes_among(session: Session, causes: list[str]) -> list[str]:
    """Which of `causes` have an unresolved incident."""
    if not causes:
        return []
    dialect = session.get_bind().dialect.name
    return list(
        session.scalars(
            select(Incident.cause).where(
                among(Incident.cause, causes, dialect), Incident.status != "resolved"
            )
        )
    )


def _upsert(session: Session, causes: list[Cause], *, now: dt.datetime) -> dict[str, Raised]:
    if not causes:
        return {}
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
            "flaps": 1 if c.flap else 0,
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
            "flaps": Incident.flaps + excluded.flaps,
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
    return {c.cause: r for c, r in zip(causes, raised, strict=True)}


def clear_incident(
    session: Session, cause: str, *, now: dt.datetime, by: str, by_hand: bool = False
) -> int | None:
    """Resolve the unresolved incident for `cause` (the cause is healthy again); its id, or None
    when there was none. `by_hand`: a human's resolution, final (see the module docstring)."""
    cleared = clear_incidents(session, [cause], now=now, by=by, by_hand=by_hand)
    return cleared[0] if cleared else None


def clear_incidents(
    session: Session, causes: list[str], *, now: dt.datetime, by: str, by_hand: bool = False
) -> list[int]:
    """`clear_incident` for a batch in one statement; the ids of the incidents it resolved."""
    if not causes:
        return []
    rows = session.execute(
        update(Incident)
        .where(among(Incident.cause, causes, session.get_bind().dialect.name))
        .where(Incident.status != "resolved")
        .values(
            status="resolved",
            resolved_at=now,
            resolved_by=by,
            resolved_by_hand=by_hand,
            updated_at=now,
        )
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
    clear_incident(session, incident.cause, now=now, by=by, by_hand=True)
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
        "flaps": incident.flaps,
        "opened_at": incident.opened_at,
        "last_seen_at": incident.last_seen_at,
        "acknowledged_at": incident.acknowledged_at,
        "acknowledged_by": incident.acknowledged_by,
        "resolved_at": incident.resolved_at,
        "resolved_by": incident.resolved_by,
        "alerted_at": incident.alerted_at,
        "paged_at": incident.paged_at,
        "page_acknowledged_at": incident.page_acknowledged_at,
        "page_resolved_at": incident.page_resolved_at,
        "resolve_alerted_at": incident.resolve_alerted_at,
        "hook_attempts": incident.hook_attempts,
        "last_hook_error": incident.last_hook_error,
        "page_attempts": incident.page_attempts,
        "next_page_at": incident.next_page_at,
        "page_stopped_at": incident.page_stopped_at,
        "last_page_error": incident.last_page_error,
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
