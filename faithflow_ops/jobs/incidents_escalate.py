"""`faithflow incidents escalate`: send incidents to the escalation hooks (docs/incidents.md).

- `alert`: an unresolved incident not yet sent to ALERT_WEBHOOK_URL (Slack-style JSON: `text`
  plus the incident's fields, with a stable `id` to deduplicate on) — at the first run after
  it opened (every minute by default). A failed POST is retried on later runs with a doubling
  wait (1 minute, 2, 4 … capped at an hour); the error stays on the incident
  (`last_hook_error`).
- `alert_resolved`: an alerted incident that resolved → one "resolved" post (`id`
  `incident-<id>-resolved`), with the same backoff; only within a day of the resolution (an
  incident resolved before this version, or a hook down for a day, gets no stale post).
- `page`: an incident still `open` (nobody acknowledged it) FAITHFLOW_INCIDENT_PAGE_DELAY_MINUTES
  (30) after it opened → PagerDuty Events API v2 `trigger` with the stable dedup_key
  `faithflow-incident-<id>`, so a retry never opens a second PagerDuty incident.
- `page_ack`: a paged incident acknowledged here (`incidents ack`) → `acknowledge` with the same
  key, so PagerDuty stops escalating it.
- `page_resolve`: a paged incident that has been resolved → `resolve` with the same key.

PagerDuty's answers decide what follows a failed event (developer.pagerduty.com, Events API
v2 "Send an Alert Event": 202 accepted, 400 invalid event, 429 too many, 5xx): a 429, a 5xx or
no answer is retried by later runs with a doubling wait (1 minute … capped at an hour,
`page_attempts`/`next_page_at`); any other 4xx can never succeed as sent, so the incident stops
paging (`page_stopped_at`, an `incident.page_stopped` audit note naming the error) instead of
resending it every minute. Its error is `last_page_error`, beside the alert's own.

A job's resolution settles first (FAITHFLOW_INCIDENT_FLAP_MINUTES, incidents/records.py): the
"resolved" post and the `resolve` event wait until the cause has stayed healthy that long, so a
flapping cause (reopened within the window) keeps one PagerDuty incident and says "resolved"
once. A human's `incidents resolve` is final and goes out at the next run.

A hook that is not configured plans nothing for it. With neither configured, every unresolved
incident is reported as `not_escalated` (report-only; the reason names ALERT_WEBHOOK_URL and
PAGERDUTY_ROUTING_KEY) so a run never says "nothing to do" while incidents wait unseen; the
health sweep's `alert_route` check warns about the same. The hook calls run outside any database
transaction (`apply_unmanaged`): the incident row is claimed and updated in short transactions
around them, so a slow hook never holds a lock, and a failing hook never fails the job that
raised the incident (that job only wrote the row).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator, Sequence
from typing import Any

from sqlalchemy import and_, or_, select, update
from sqlalchemy.orm import Session

from faithflow_ops import audit
from faithflow_ops.actions import decode, encode
from faithflow_ops.db import Database, rowcount
from faithflow_ops.incidents.escalation import (
    NO_ROUTE,
    Escalation,
    alert_body,
    dedup_key,
    details,
    escalation,
    resolved_body,
)
from faithflow_ops.jobs.base import Action, ActionResult, Job, JobContext, StaleAction
from faithflow_ops.models import Incident, Tenant
from faithflow_ops.providers._http import ProviderError

HOOK_BACKOFF = dt.timedelta(minutes=1)
HOOK_BACKOFF_CAP = dt.timedelta(hours=1)
# A "resolved" post is news for a day; older ones (incidents resolved before this version
# posted resolutions, a hook down for a day) are not sent.
RESOLVED_POST_WITHIN = dt.timedelta(days=1)


class IncidentsEscalate(Job):
    name = "incidents_escalate"
    table_columns = ("kind", "target", "severity", "reason")
    report_only = frozenset({"not_escalated"})

    @classmethod
    def table_rows(cls, action: Action) -> list[tuple[Any, ...]]:
        severity = decode(Escalation, action.data).severity
        return [(action.kind, action.target, severity, action.reason)]

    def plan(self, session: Session, ctx: JobContext) -> Iterator[Action]:
        settings, now = ctx.settings, ctx.now
        resolved = Incident.status == "resolved"
        rows = session.execute(
            select(Incident, Tenant.slug)
            .outerjoin(Tenant, Tenant.id == Incident.tenant_id)
            .where(
                or_(
                    ~resolved,
                    and_(
                        Incident.alerted_at.is_not(None),
                        Incident.resolve_alerted_at.is_(None),
                        Incident.resolved_at >= now - RESOLVED_POST_WITHIN,
                    ),
                    and_(
                        Incident.paged_at.is_not(None),
                        Incident.page_resolved_at.is_(None),
                        Incident.page_stopped_at.is_(None),
                    ),
                )
            )
            .order_by(Incident.opened_at, Incident.id)
        )
        delay = dt.timedelta(minutes=settings.incident_page_delay_minutes)
        settle = dt.timedelta(minutes=settings.incident_flap_minutes)
        count = 0
        no_route = not settings.alert_webhook_url and not settings.pagerduty_routing_key
        for incident, slug in rows:
            data = encode(escalation(incident, slug))
            target = f"incident:{incident.id}"
            unresolved = incident.status != "resolved"
            if no_route:
                if unresolved:
                    yield Action("not_escalated", target, NO_ROUTE, data)
                    count += 1
                    if ctx.limit and count >= ctx.limit:
                        return
                continue
            # A job's resolution settles before it is announced (a flap reopens it meanwhile).
            settled = not unresolved and (
                incident.resolved_by_hand
                or (incident.resolved_at is not None and incident.resolved_at + settle <= now)
            )
            hook_due = incident.next_hook_at is None or incident.next_hook_at <= now
            page_due = incident.page_stopped_at is None and (
                incident.next_page_at is None or incident.next_page_at <= now
            )
            if settings.alert_webhook_url and hook_due:
                tries = f" (attempt {incident.hook_attempts + 1})" if incident.hook_attempts else ""
                if unresolved and incident.alerted_at is None:
                    yield Action("alert", target, f"{incident.title}{tries}", data)
                    count += 1
                elif (
                    settled
                    and incident.alerted_at
                    and not incident.resolve_alerted_at
                    and incident.resolved_at is not None
                    and incident.resolved_at >= now - RESOLVED_POST_WITHIN
                ):
                    reason = f"resolved{tries}: {incident.title}"
                    yield Action("alert_resolved", target, reason, data)
                    count += 1
            if settings.pagerduty_routing_key and page_due:
                tries = f" (attempt {incident.page_attempts + 1})" if incident.page_attempts else ""
                if (
                    incident.status == "open"
                    and incident.paged_at is None
                    and incident.opened_at + delay <= now
                ):
                    minutes = int((now - incident.opened_at).total_seconds() // 60)
                    flaps = f", {incident.flaps} flaps" if incident.flaps else ""
                    reason = f"unacknowledged for {minutes} min{flaps}{tries}: {incident.title}"
                    yield Action("page", target, reason, data)
                    count += 1
                elif (
                    incident.status == "acknowledged"
                    and incident.paged_at
                    and not incident.page_acknowledged_at
                ):
                    who = incident.acknowledged_by or "someone"
                    reason = f"acknowledged by {who}{tries}: {incident.title}"
                    yield Action("page_ack", target, reason, data)
                    count += 1
                elif settled and incident.paged_at and not incident.page_resolved_at:
                    reason = f"resolved; closing the page{tries}: {incident.title}"
                    yield Action("page_resolve", target, reason, data)
                    count += 1
            if ctx.limit and count >= ctx.limit:
                return

    def apply(self, session: Session, ctx: JobContext, action: Action) -> None:
        """One action in one transaction (the runner's fallback; `apply_unmanaged` is used)."""
        self._send(ctx, action)
        self._record(session, ctx, action, None)

    def apply_unmanaged(
        self, db: Database, ctx: JobContext, actions: Sequence[Action]
    ) -> list[ActionResult] | None:
        results = []
        for action in actions:
            try:
                with db.read_session() as session:
                    self._still_due(session, action)
                error: str | None = None
                final = False
                try:
                    self._send(ctx, action)
                except ProviderError as exc:
                    error = str(exc)
                    # a 4xx other than 429: the event can never succeed as sent
                    final = exc.status is not None and 400 <= exc.status < 500 and not exc.retryable
                with db.session() as session:
                    self._record(session, ctx, action, error, final=final)
                results.append(ActionResult(action, "failed" if error else "applied", error))
            except StaleAction as exc:
                results.append(ActionResult(action, "stale", str(exc) or None))
        return results

    @staticmethod
    def _still_due(session: Session, action: Action) -> None:
        incident = session.get(Incident, decode(Escalation, action.data).id)
        if incident is None or getattr(incident, SENT[action.kind]) is not None:
            raise StaleAction(f"{action.target} was already sent ({action.kind})")
        wanted = {"page": "open", "page_ack": "acknowledged"}.get(action.kind)
        if action.kind in ("alert_resolved", "page_resolve"):
            wanted = "resolved"
        if wanted is not None and incident.status != wanted:
            raise StaleAction(f"{action.target} is {incident.status}; no {action.kind} needed")
        if action.kind.startswith("page") and incident.page_stopped_at is not None:
            raise StaleAction(f"{action.target} stopped paging (see its last_page_error)")

    @staticmethod
    def _send(ctx: JobContext, action: Action) -> None:
        incident = decode(Escalation, action.data)
        if action.kind in ("alert", "alert_resolved"):
            from faithflow_ops.providers.alerts import AlertHook

            body = alert_body(incident) if action.kind == "alert" else resolved_body(incident)
            with AlertHook(ctx.settings) as hook:
                hook.send(body)
            return
        from faithflow_ops.providers.pagerduty import PagerDutyEvents

        with PagerDutyEvents(ctx.settings) as events:
            if action.kind == "page":
                events.trigger(
                    dedup_key(incident.id),
                    summary=incident.title,
                    source=incident.cause,
                    severity="critical" if incident.severity == "critical" else "warning",
                    component=incident.kind,
                    custom_details=details(incident),
                )
            elif action.kind == "page_ack":
                events.acknowledge(dedup_key(incident.id))
            else:
                events.resolve(dedup_key(incident.id))

    @staticmethod
    def _record(
        session: Session, ctx: JobContext, action: Action, error: str | None, *, final: bool = False
    ) -> None:
        incident, now = decode(Escalation, action.data), ctx.now
        where = [Incident.id == incident.id]
        alerting = action.kind in ("alert", "alert_resolved")
        values: dict[str, Any]
        if error is None:
            column = getattr(Incident, SENT[action.kind])
            where.append(column.is_(None))
            values = {column.key: now}
            if alerting:
                values.update(hook_attempts=0, next_hook_at=None, last_hook_error=None)
            else:
                values.update(page_attempts=0, next_page_at=None, last_page_error=None)
        elif alerting:
            attempts = incident.hook_attempts + 1
            values = {
                "hook_attempts": Incident.hook_attempts + 1,
                "next_hook_at": now + backoff(attempts),
                "last_hook_error": f"{action.kind}: {error}",
            }
        elif final:
            values = {
                "page_attempts": Incident.page_attempts + 1,
                "page_stopped_at": now,
                "last_page_error": f"{action.kind}: {error} (not retried: PagerDuty refused it)",
            }
        else:
            # 429, 5xx, no answer: later runs retry, waiting longer each time; the alert's
            # retries and error are its own.
            attempts = incident.page_attempts + 1
            values = {
                "page_attempts": Incident.page_attempts + 1,
                "next_page_at": now + backoff(attempts),
                "last_page_error": f"{action.kind}: {error}",
            }
        changed = session.execute(
            update(Incident)
            .where(*where)
            .values(**values, updated_at=now)
            .execution_options(synchronize_session=False)
        )
        if error is None and rowcount(changed) != 1:
            raise StaleAction(f"{action.target} was sent by another run meanwhile")
        if error is not None and final:
            audit.record(
                session,
                actor=ctx.actor,
                action="incident.page_stopped",
                entity_type="incident",
                entity_id=incident.id,
                after={
                    "event": action.kind,
                    "error": error,
                    "note": "PagerDuty refused the event (a 4xx other than 429): it is not "
                    "sent again; fix PAGERDUTY_ROUTING_KEY or the integration, then page by hand",
                },
            )


# What each kind records as sent.
SENT = {
    "alert": "alerted_at",
    "alert_resolved": "resolve_alerted_at",
    "page": "paged_at",
    "page_ack": "page_acknowledged_at",
    "page_resolve": "page_resolved_at",
}


def backoff(attempts: int) -> dt.timedelta:
    """The wait after the `attempts`-th failure: 1 minute, doubling, capped at an hour."""
    wait: dt.timedelta = HOOK_BACKOFF * (2 ** min(attempts - 1, 20))
    return min(wait, HOOK_BACKOFF_CAP)


JOB = IncidentsEscalate()
