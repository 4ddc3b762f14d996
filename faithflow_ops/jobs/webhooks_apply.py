"""`faithflow webhooks apply`: apply the webhook deliveries the receiver stored.

The receiver's own worker does this as deliveries arrive (faithflow_ops.webhooks.applier);
this job is the same code for deployments that turn that worker off
(`FAITHFLOW_WEBHOOK_WORKER=off`: cron or Render cron runs it every minute) and the catch-up
after a crash. plan: the rows due now — `received`, or `failed` whose retry time has come —
oldest due first (`--limit`). apply: claims them with a lease and handles each in its own
transaction; a row another worker got to first is `stale`. Our own failure is the row's
`failed` status (retried with backoff), not a failed run.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from faithflow_ops.db import Database
from faithflow_ops.jobs.base import Action, ActionResult, Job, JobContext, StaleAction
from faithflow_ops.models import WebhookEvent
from faithflow_ops.webhooks import applier


class WebhooksApply(Job):
    name = "webhooks_apply"
    table_columns = ("kind", "event", "provider", "type", "status", "attempts")

    @classmethod
    def table_rows(cls, action: Action) -> list[tuple[Any, ...]]:
        d = action.data
        return [(action.kind, d["id"], d["provider"], d["type"], d["status"], d["attempts"])]

    def plan(self, session: Session, ctx: JobContext) -> Iterator[Action]:
        query = (
            select(
                WebhookEvent.id,
                WebhookEvent.provider,
                WebhookEvent.scope,
                WebhookEvent.event_type,
                WebhookEvent.status,
                WebhookEvent.attempts,
            )
            .where(applier.due(ctx.now))
            .order_by(WebhookEvent.next_attempt_at, WebhookEvent.id)
        )
        if ctx.limit is not None:
            query = query.limit(ctx.limit)
        for row in session.execute(query):
            retry = f" (attempt {row.attempts + 1})" if row.status == "failed" else ""
            yield Action(
                kind="apply_event",
                target=f"webhook_event:{row.id}",
                reason=f"{row.provider} {row.scope} {row.event_type} is {row.status}{retry}",
                data={
                    "id": row.id,
                    "provider": row.provider,
                    "type": row.event_type,
                    "status": row.status,
                    "attempts": row.attempts,
                },
            )

    def apply(self, session: Session, ctx: JobContext, action: Action) -> None:
        """One event in the runner's transaction (the runner's fallback; `apply_unmanaged`,
        which claims with a lease and commits per event, is what runs). A handler failure is
        recorded on the row, retried with backoff, not raised."""
        if applier.apply_in(session, int(action.data["id"]), ctx.now) is None:
            raise StaleAction("handled by another worker")

    def apply_unmanaged(
        self, db: Database, ctx: JobContext, actions: Sequence[Action]
    ) -> list[ActionResult] | None:
        worker = f"job:{applier.default_worker_name()}"
        ids = [int(a.data["id"]) for a in actions]
        done = {}
        # claim() returns the rows in provider-time order: apply in that order.
        for item in applier.claim(db, worker, ctx.now, len(ids), ids):
            done[item.id] = applier.apply_one(db, item, worker, ctx.now)
        results = []
        for action in actions:
            handled = done.get(int(action.data["id"]))
            if handled is None:
                results.append(ActionResult(action, "stale", "handled by another worker"))
                continue
            received, _ = handled
            # A handler's failure stays on the row (retried with backoff); the run reports it.
            if received.status == "failed":
                results.append(ActionResult(action, "failed", received.detail))
            else:
                results.append(ActionResult(action, "applied"))
        return results


JOB = WebhooksApply()
