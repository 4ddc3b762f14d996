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
    """The payload of `alert`, `page` and `page_resolve` (one shape for the three hooks), and of
    `not_escalated` (report-only: neither hook is configured, NO_ROUTE): the incident as the
    plan saw it."""

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
        "opened_at": incident.opened_at.isoformat(),
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
