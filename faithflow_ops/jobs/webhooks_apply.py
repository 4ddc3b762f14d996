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

from sqlalchemy.orm import Session

from faithflow_ops.actions import decode, encode
from faithflow_ops.db import Database
from faithflow_ops.jobs.base import Action, ActionResult, Job, JobContext, StaleAction
from faithflow_ops.webhooks import applier
from faithflow_ops.webhooks.queries import ApplyEvent, due_events


class WebhooksApply(Job):
    name = "webhooks_apply"
    table_columns = ("kind", "event", "provider", "type", "status", "attempts")

    @classmethod
    def table_rows(cls, action: Action) -> list[tuple[Any, ...]]:
        d = decode(ApplyEvent, action.data)
        return [(action.kind, d.id, d.provider, d.type, d.status, d.attempts)]

    def plan(self, session: Session, ctx: JobContext) -> Iterator[Action]:
        for event, reason in due_events(session, ctx.now, ctx.limit):
            yield Action("apply_event", f"webhook_event:{event.id}", reason, encode(event))

    def apply(self, session: Session, ctx: JobContext, action: Action) -> None:
        """One event in the runner's transaction (the runner's fallback; `apply_unmanaged`,
        which claims with a lease and commits per event, is what runs). A handler failure is
        recorded on the row, retried with backoff, not raised."""
        if applier.apply_in(session, decode(ApplyEvent, action.data).id, ctx.now) is None:
            raise StaleAction("handled by another worker")

    def apply_unmanaged(
        self, db: Database, ctx: JobContext, actions: Sequence[Action]
    ) -> list[ActionResult] | None:
        worker = f"job:{applier.default_worker_name()}"
        ids = [decode(ApplyEvent, a.data).id for a in actions]
        done = {}
        # claim() returns the rows in provider-time order: apply in that order.
        for item in applier.claim(db, worker, ctx.now, len(ids), ids):
            done[item.id] = applier.apply_one(db, item, worker, ctx.now)
        results = []
        for action, event_id in zip(actions, ids, strict=True):
            handled = done.get(event_id)
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
