"""`faithflow subs backfill`: normalise provider customer/subscription ids found in historical
metadata into the canonical columns and metadata keys.

Glue over the billing domain: the rules are `billing.identifiers`, the keyset-paged plan is
billing/metadata_backfill.py (`normalize` actions; `conflict` and `invalid` findings are
report-only, for a human), the optimistic claims that apply it billing/metadata_backfill_apply.py.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

from sqlalchemy.orm import Session

from faithflow_ops.actions import decode
from faithflow_ops.billing import metadata_backfill, metadata_backfill_apply
from faithflow_ops.billing.identifiers import show
from faithflow_ops.billing.metadata_backfill import Normalize
from faithflow_ops.jobs.base import Action, Job, JobContext, Outcome, StaleAction


class SubscriptionMetadataBackfill(Job):
    name = "subscription_metadata_backfill"
    report_only = frozenset({"conflict", "invalid"})
    # Actions per transaction: 2000 ran ~15% faster than 500 on Postgres (fewer commits); the
    # price is that one stale row sends its whole batch through the one-by-one path.
    batch_size = 2000
    page_size = 2000  # subscriptions read per keyset page

    table_columns = ("kind", "target", "field", "old", "new", "found at / why")

    @classmethod
    def table_rows(cls, action: Action) -> list[tuple[Any, ...]]:
        """A preview row per change (field, old → new, where it was found); findings as one."""
        if action.kind == "normalize":
            changes = decode(Normalize, action.data).changes
            return [
                (action.kind, action.target, c.field, show(c.old), c.new, c.source) for c in changes
            ]
        return [(action.kind, action.target, action.data.get("field"), "", "", action.reason)]

    def plan(self, session: Session, ctx: JobContext) -> Iterator[Action]:
        progress = ctx.progress
        if progress is not None:
            progress.start(metadata_backfill.count(session))
        yield from metadata_backfill.plan(
            session, self.page_size, progress.advance if progress is not None else None
        )

    def apply(self, session: Session, ctx: JobContext, action: Action) -> None:
        if metadata_backfill_apply.claim_all(session, [action], ctx.actor) != 1:
            raise StaleAction(metadata_backfill_apply.why_stale(session, action))

    def apply_batch(
        self, session: Session, ctx: JobContext, actions: Sequence[Action]
    ) -> list[Outcome] | None:
        if metadata_backfill_apply.claim_all(session, actions, ctx.actor) != len(actions):
            return None  # some row changed since the plan: the runner rolls back, goes one by one
        return ["applied"] * len(actions)


JOB = SubscriptionMetadataBackfill()
