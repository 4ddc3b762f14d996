"""`faithflow subs automate`: the subscription lifecycle the providers do not drive for us.

Glue over the billing domain: the rules and their plan are in billing/automation_plan.py (one
action kind each: `trial_ending_notice`, `mark_past_due`, `suspend_tenant`,
`cancel_subscription`, `apply_plan_change`, `reject_plan_change`, `reactivate_tenant`), the
claims that apply them in billing/automation_apply.py; the runbook is docs/subs-automate.md.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

from sqlalchemy.orm import Session

from faithflow_ops.billing import automation_apply, automation_plan
from faithflow_ops.billing.automation_plan import KINDS
from faithflow_ops.jobs.base import Action, Job, JobContext, Outcome, StaleAction

__all__ = ["JOB", "KINDS", "SubscriptionsAutomate"]


class SubscriptionsAutomate(Job):
    name = "subscriptions_automate"
    report_only = automation_plan.REPORT_ONLY
    batch_size = 200  # actions per transaction (a stale one sends its batch one by one)
    table_columns = ("kind", "tenant", "target", "reason")

    @classmethod
    def table_rows(cls, action: Action) -> list[tuple[Any, ...]]:
        return [(action.kind, action.data.get("tenant"), action.target, action.reason)]

    def plan(self, session: Session, ctx: JobContext) -> Iterator[Action]:
        # Every rule reads before anything is yielded (see billing/automation_plan.py).
        actions = automation_plan.plan(session, ctx.now)
        if ctx.progress is not None:
            ctx.progress.start(len(actions))
        yield from actions

    def apply(self, session: Session, ctx: JobContext, action: Action) -> None:
        automation_apply.apply(session, action, now=ctx.now, actor=ctx.actor)

    def apply_batch(
        self, session: Session, ctx: JobContext, actions: Sequence[Action]
    ) -> list[Outcome] | None:
        try:
            for action in actions:
                self.apply(session, ctx, action)
        except StaleAction:
            return None  # the runner rolls the batch back and applies it one by one
        return ["applied"] * len(actions)


JOB = SubscriptionsAutomate()
