"""`faithflow incidents escalate`: send incidents to the escalation hooks.

- `alert`: an unresolved incident not yet sent to ALERT_WEBHOOK_URL (Slack-style JSON: `text`
  plus the incident's fields, with a stable `id` to deduplicate on) — at the first run after
  it opened (every minute by default). A failed POST is retried on later runs with a doubling
  wait (1 minute, 2, 4 … capped at an hour); the error stays on the incident.
- `page`: an incident still `open` (nobody acknowledged it) FAITHFLOW_INCIDENT_PAGE_DELAY_MINUTES
  (30) after it opened → PagerDuty Events API v2 `trigger` with the stable dedup_key
  `faithflow-incident-<id>`, so a retry never opens a second PagerDuty incident.
- `page_resolve`: a paged incident that has been resolved → `resolve` with the same key.

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

from sqlalchemy import or_, select, update
from sqlalchemy.orm import Session

from faithflow_ops.actions import decode, encode
from faithflow_ops.db import Database, rowcount
from faithflow_ops.incidents.escalation import (
    NO_ROUTE,
    Escalation,
    alert_body,
    dedup_key,
    details,
    escalation,
)
from faithflow_ops.jobs.base import Action, ActionResult, Job, JobContext, StaleAction
from faithflow_ops.models import Incident, Tenant
from faithflow_ops.providers._http import ProviderError

HOOK_BACKOFF = dt.timedelta(minutes=1)
HOOK_BACKOFF_CAP = dt.timedelta(hours=1)


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
        rows = session.execute(
            select(Incident, Tenant.slug)
            .outerjoin(Tenant, Tenant.id == Incident.tenant_id)
            .where(
                or_(
                    Incident.status != "resolved",
                    Incident.paged_at.is_not(None) & Incident.page_resolved_at.is_(None),
                )
            )
            .order_by(Incident.opened_at, Incident.id)
        )
        delay = dt.timedelta(minutes=settings.incident_page_delay_minutes)
        count = 0
        no_route = not settings.alert_webhook_url and not settings.pagerduty_routing_key
        for incident, slug in rows:
            data = encode(escalation(incident, slug))
            unresolved = incident.status != "resolved"
            if no_route:
                if unresolved:
                    yield Action("not_escalated", f"incident:{incident.id}", NO_ROUTE, data)
                    count += 1
                    if ctx.limit and count >= ctx.limit:
                        return
                continue
            if (
                settings.alert_webhook_url
                and unresolved
                and incident.alerted_at is None
                and (incident.next_hook_at is None or incident.next_hook_at <= now)
            ):
                tries = f" (attempt {incident.hook_attempts + 1})" if incident.hook_attempts else ""
                yield Action("alert", f"incident:{incident.id}", f"{incident.title}{tries}", data)
                count += 1
            if settings.pagerduty_routing_key:
                if (
                    incident.status == "open"
                    and incident.paged_at is None
                    and incident.opened_at + delay <= now
                ):
                    minutes = int((now - incident.opened_at).total_seconds() // 60)
                    reason = f"unacknowledged for {minutes} min: {incident.title}"
                    yield Action("page", f"incident:{incident.id}", reason, data)
                    count += 1
                elif not unresolved and incident.paged_at and not incident.page_resolved_at:
                    reason = f"resolved; closing the page: {incident.title}"
                    yield Action("page_resolve", f"incident:{incident.id}", reason, data)
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
                try:
                    self._send(ctx, action)
                except ProviderError as exc:
                    error = str(exc)
                with db.session() as session:
                    self._record(session, ctx, action, error)
                results.append(ActionResult(action, "failed" if error else "applied", error))
            except StaleAction as exc:
                results.append(ActionResult(action, "stale", str(exc) or None))
        return results

    @staticmethod
    def _still_due(session: Session, action: Action) -> None:
        incident = session.get(Incident, decode(Escalation, action.data).id)
        column = {"alert": "alerted_at", "page": "paged_at", "page_resolve": "page_resolved_at"}
        if incident is None or getattr(incident, column[action.kind]) is not None:
            raise StaleAction(f"{action.target} was already sent ({action.kind})")
        if action.kind == "page" and incident.status != "open":
            raise StaleAction(f"{action.target} is {incident.status}; no page needed")

    @staticmethod
    def _send(ctx: JobContext, action: Action) -> None:
        incident = decode(Escalation, action.data)
        if action.kind == "alert":
            from faithflow_ops.providers.alerts import AlertHook

            with AlertHook(ctx.settings) as hook:
                hook.send(alert_body(incident))
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
            else:
                events.resolve(dedup_key(incident.id))

    @staticmethod
    def _record(session: Session, ctx: JobContext, action: Action, error: str | None) -> None:
        incident, now = decode(Escalation, action.data), ctx.now
        where = [Incident.id == incident.id]
        if error is None:
            column = {"alert": Incident.alerted_at, "page": Incident.paged_at}.get(
                action.kind, Incident.page_resolved_at
            )
            where.append(column.is_(None))
            values: dict[str, Any] = {column.key: now, "last_hook_error": None}
        elif action.kind == "alert":
            attempts = incident.hook_attempts + 1
            wait = min(HOOK_BACKOFF * 2 ** (attempts - 1), HOOK_BACKOFF_CAP)
            values = {
                "hook_attempts": Incident.hook_attempts + 1,
                "next_hook_at": now + wait,
                "last_hook_error": f"{action.kind}: {error}",
            }
        else:
            # A page that failed is tried again by the next run (PagerDuty's own dedup_key
            # makes a repeat harmless); it never delays the alert's retries.
            values = {"last_hook_error": f"{action.kind}: {error}"}
        changed = session.execute(
            update(Incident)
            .where(*where)
            .values(**values, updated_at=now)
            .execution_options(synchronize_session=False)
        )
        if error is None and rowcount(changed) != 1:
            raise StaleAction(f"{action.target} was sent by another run meanwhile")


JOB = IncidentsEscalate()
