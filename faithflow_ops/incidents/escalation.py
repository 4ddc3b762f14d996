"""What `incidents escalate` sends: the incident as its action carries it, the alert webhook's
JSON, PagerDuty's dedup key and custom details (the job, faithflow_ops/jobs/incidents_escalate,
plans and sends; docs/incidents.md)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from faithflow_ops.models import Incident


@dataclass(frozen=True)
class Escalation:
    """The payload of `alert`, `alert_resolved`, `page`, `page_ack` and `page_resolve` (one
    shape for every hook), and of `not_escalated` (report-only: neither hook is configured,
    NO_ROUTE): the incident as the plan saw it."""

    id: int
    cause: str
    kind: str
    tenant: str | None  # the tenant's slug
    title: str
    severity: str
    status: str
    detail: str | None
    occurrences: int
    opened_at: dt.datetime
    hook_attempts: int
    flaps: int = 0
    page_attempts: int = 0
    resolved_at: dt.datetime | None = None
    resolved_by: str | None = None


NO_ROUTE = (
    "not escalated: no alert route configured — set ALERT_WEBHOOK_URL (chat webhook) and/or "
    "PAGERDUTY_ROUTING_KEY (PagerDuty) so incidents reach a human"
)


def escalation(incident: Incident, slug: str | None) -> Escalation:
    return Escalation(
        id=incident.id,
        cause=incident.cause,
        kind=incident.kind,
        tenant=slug,
        title=incident.title,
        severity=incident.severity,
        status=incident.status,
        detail=incident.detail,
        occurrences=incident.occurrences,
        opened_at=incident.opened_at,
        hook_attempts=incident.hook_attempts,
        flaps=incident.flaps,
        page_attempts=incident.page_attempts,
        resolved_at=incident.resolved_at,
        resolved_by=incident.resolved_by,
    )


def dedup_key(incident_id: int) -> str:
    """PagerDuty's key for an incident: a retried trigger never opens a second one."""
    return f"faithflow-incident-{incident_id}"


def details(incident: Escalation) -> dict[str, Any]:
    """The incident's fields a hook receives (those that are set)."""
    fields: dict[str, Any] = {
        "cause": incident.cause,
        "kind": incident.kind,
        "tenant": incident.tenant,
        "severity": incident.severity,
        "occurrences": incident.occurrences,
        "flaps": incident.flaps or None,
        "opened_at": incident.opened_at.isoformat(),
        "resolved_at": incident.resolved_at.isoformat() if incident.resolved_at else None,
        "resolved_by": incident.resolved_by,
        "detail": incident.detail,
    }
    return {key: value for key, value in fields.items() if value is not None}


def alert_body(incident: Escalation) -> dict[str, Any]:
    """Slack-style JSON: `text` for chat hooks, the fields for anything else."""
    icon = {"critical": ":rotating_light:", "warning": ":warning:"}.get(incident.severity, "")
    tenant = f" [{incident.tenant}]" if incident.tenant else ""
    return {
        "id": f"incident-{incident.id}",
        "type": "incident.opened",
        "text": f"{icon} FaithFlow incident #{incident.id}{tenant}: {incident.title}".strip(),
        "incident": details(incident) | {"id": incident.id, "title": incident.title},
    }


def _lasted(incident: Escalation) -> str:
    if incident.resolved_at is None:
        return ""
    minutes = int((incident.resolved_at - incident.opened_at).total_seconds() // 60)
    lasted = f"{minutes} min" if minutes < 120 else f"{minutes // 60} h {minutes % 60} min"
    flaps = f", {incident.flaps} flap{'s' if incident.flaps != 1 else ''}" if incident.flaps else ""
    return f" after {lasted}{flaps}"


def resolved_body(incident: Escalation) -> dict[str, Any]:
    """The chat post that closes an alerted incident (same `incident` fields, its own `id`)."""
    tenant = f" [{incident.tenant}]" if incident.tenant else ""
    return {
        "id": f"incident-{incident.id}-resolved",
        "type": "incident.resolved",
        "text": (
            f":white_check_mark: FaithFlow incident #{incident.id}{tenant} resolved"
            f"{_lasted(incident)}: {incident.title}"
        ),
        "incident": details(incident) | {"id": incident.id, "title": incident.title},
    }
