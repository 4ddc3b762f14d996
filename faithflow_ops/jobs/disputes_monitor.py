"""`faithflow disputes monitor`: pull disputes from both providers (a missed webhook cannot
hide one) and alert the platform ops contact before evidence is due.

Glue over the billing domain: the pull, its comparison with what we hold and its plan are in
billing/dispute_pulls.py (`dispute_pulled`, `unmapped_dispute`, `pull_skipped`,
`pull_failed`), the evidence-due alerts in billing/dispute_alerts.py (`evidence_due_alert`);
the runbook is docs/disputes.md. This module hands the pull the webhooks' dispute handlers
(`_WebhookReader`), through which a pulled dispute is read and written exactly as a webhook.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, ClassVar

from sqlalchemy.orm import Session

from faithflow_ops.billing import dispute_alerts, dispute_pulls
from faithflow_ops.billing import lifecycle as fx
from faithflow_ops.billing.dispute_owner import PaymentLinks
from faithflow_ops.billing.dispute_pulls import KINDS, DisputeEvent
from faithflow_ops.jobs.base import Action, Job, JobContext
from faithflow_ops.webhooks import paystack as paystack_hooks
from faithflow_ops.webhooks import stripe as stripe_hooks
from faithflow_ops.webhooks.events import InboundEvent, parse

__all__ = ["JOB", "KINDS", "DisputesMonitor"]


class _WebhookReader:
    """`dispute_pulls.DisputeReader` over the webhooks' own parsing and dispute handlers."""

    def event(self, provider: str, scope: str, payload: dict[str, Any]) -> InboundEvent:
        return parse(provider, scope, payload)

    def state(
        self, session: Session, event: DisputeEvent, links: PaymentLinks | None = None
    ) -> fx.DisputeState | fx.Outcome:
        assert isinstance(event, InboundEvent)
        if event.provider == "stripe":
            return stripe_hooks.dispute_state(session, event, links)
        return paystack_hooks.dispute_state(session, event)

    def rank(self, event: DisputeEvent) -> int:
        ranks = stripe_hooks.RANKS if event.provider == "stripe" else paystack_hooks.RANKS
        return ranks[event.type]

    def record(
        self, session: Session, event: DisputeEvent, links: PaymentLinks | None = None
    ) -> fx.Outcome:
        assert isinstance(event, InboundEvent)
        if event.provider == "stripe":
            return stripe_hooks.dispute_event(session, event, links)
        return paystack_hooks.dispute_event(session, event)


_READER = _WebhookReader()


class DisputesMonitor(Job):
    name = "disputes_monitor"
    report_only = frozenset({"unmapped_dispute", "pull_skipped"})
    # A pull that failed leaves the plan blind to that provider: a run applying it fails that
    # action (partial), and a preview holding one is partial too (exit 1), never "done".
    failure_kinds: ClassVar[frozenset[str]] = frozenset({"pull_failed"})
    table_columns = ("kind", "tenant", "target", "reason")

    @classmethod
    def table_rows(cls, action: Action) -> list[tuple[Any, ...]]:
        return [(action.kind, action.data.get("tenant"), action.target, action.reason)]

    def plan(self, session: Session, ctx: JobContext) -> Iterator[Action]:
        actions = dispute_pulls.plan(session, ctx.settings, ctx.now, _READER)
        if ctx.progress is not None:
            ctx.progress.start(len(actions))
        yield from actions

    def apply(self, session: Session, ctx: JobContext, action: Action) -> None:
        if action.kind == "dispute_pulled":
            dispute_pulls.apply_pulled(session, ctx.actor, action, _READER)
        elif action.kind == "evidence_due_alert":
            dispute_alerts.apply_alert(session, ctx.settings, ctx.now, ctx.actor, action)
        elif action.kind == "pull_failed":
            raise RuntimeError(action.reason)
        else:
            raise ValueError(f"disputes monitor has no action kind {action.kind!r}")


JOB = DisputesMonitor()
