"""Urgent tickets' SLA marks as incidents (docs/support.md "The sweep").

When an escalation hook is configured (ALERT_WEBHOOK_URL or PAGERDUTY_ROUTING_KEY), a warning
or a breach of an **urgent** ticket's clock opens an incident with the cause
`sla:<ticket>:<metric>:<episode>:<warning|breach>` (kind `support`; a breach is `critical`, a
warning `warning`), in the transaction that records the mark. `incidents escalate` then posts it
to ALERT_WEBHOOK_URL (retrying a failing hook with backoff) and pages PagerDuty if nobody
acknowledges it — so no hook call ever runs inside the sweep's transaction or slows it down.

A breach supersedes the episode's warning (that incident is resolved), and the clock's end
(the reply or the solve that fulfils it, or the ticket being solved or closed) resolves what
is still open for it: an incident says "act now", and there is nothing left to act on.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from sqlalchemy.orm import Session

from faithflow_ops.incidents.records import Cause, clear_incidents, open_causes, raise_incidents
from faithflow_ops.support.clock import minute

ALERTED = "urgent"  # the priority whose marks become incidents


def enabled(settings: Any) -> bool:
    """Whether urgent marks open incidents: only when `incidents escalate` has somewhere to send
    them. Without a hook an incident would alert nobody, and the breaches are already in `sla
    breaches --open` and `support queue`."""
    return bool(settings.alert_webhook_url or settings.pagerduty_routing_key)


LABELS = {
    "first_response": "first response",
    "next_response": "next response",
    "resolution": "resolution",
}


def cause(ticket_id: int, metric: str, episode: int, event: str) -> str:
    return f"sla:{ticket_id}:{metric}:{episode}:{event}"


@dataclass(frozen=True)
class Mark:
    """A warning or breach to raise as an incident."""

    ticket_id: int
    tenant_id: int
    metric: str
    episode: int
    event: str  # warning | breach
    due_at: dt.datetime
    subject: str
    assignee: str | None  # the agent's e-mail address; None: the queue

    @property
    def cause(self) -> str:
        return cause(self.ticket_id, self.metric, self.episode, self.event)


def raise_marks(session: Session, marks: list[Mark], *, now: dt.datetime) -> dict[str, int]:
    """Open (or count again) an incident per mark, resolving the warnings its breaches
    supersede; cause → incident id. Three statements whatever the number of marks."""
    if not marks:
        return {}
    superseded = [
        cause(m.ticket_id, m.metric, m.episode, "warning") for m in marks if m.event == "breach"
    ]
    clear_incidents(session, superseded, now=now, by="sla sweep: breached")
    causes = [
        Cause(
            cause=m.cause,
            kind="support",
            title=(
                f"SLA {m.event}: urgent ticket #{m.ticket_id}, {LABELS[m.metric]} "
                + ("overdue since" if m.event == "breach" else "due")
                + f" {minute(m.due_at)} UTC"
            ),
            severity="critical" if m.event == "breach" else "warning",
            detail=(
                f'"{m.subject}"; assigned to {m.assignee or "nobody (the queue)"}; '
                f"`faithflow support tickets show {m.ticket_id}`"
            ),
            tenant_id=m.tenant_id,
        )
        for m in marks
    ]
    raised = raise_incidents(session, causes, now=now)
    return {c.cause: r.id for c, r in zip(causes, raised, strict=True)}


def clear_marks(
    session: Session, ticket_id: int, metric: str | None, *, now: dt.datetime, by: str
) -> None:
    """Resolve the open incidents of a ticket's clock (`metric`), or of all its clocks."""
    prefix = f"sla:{ticket_id}:" + (f"{metric}:" if metric else "")
    found = open_causes(session, prefix)
    if found:
        clear_incidents(session, sorted(found), now=now, by=by)
