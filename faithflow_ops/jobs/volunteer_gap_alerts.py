"""`faithflow volunteers gaps` (preview: `volunteers preview-gaps` = `gaps --dry-run`;
POST /tasks/volunteers/gap-alerts; CRON_VOLUNTEER_GAP_ALERTS): alert team leaders about
positions still short of confirmed people, for events within the horizon (`--horizon-days`,
default 14), at 7, 3 and 1 days before the event and whenever the gap grows.

Action kinds (faithflow_ops/volunteers/gaps.py has the rules; docs/volunteers.md the runbook):
`gap_alert` (one per need: messages every leader of the position's team) and `gap_closed` (a
filled gap with an alert on record: closed silently, so a gap opening again alerts again).
apply claims the need's alert state, so a rerun at the same gap and threshold sends nothing.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from sqlalchemy.orm import Session

from faithflow_ops.jobs.base import Action, Job, JobContext
from faithflow_ops.jobs.options import VolunteerGapOptions
from faithflow_ops.volunteers import gaps


class VolunteerGapAlerts(Job):
    name = "volunteer_gap_alerts"
    table_columns = (
        "kind", "event", "starts (local)", "position", "confirmed", "tentative", "gap", "threshold"
    )  # fmt: skip

    @classmethod
    def table_rows(cls, action: Action) -> list[tuple[Any, ...]]:
        return list(gaps.table_rows(action))

    def plan(self, session: Session, ctx: JobContext) -> Iterator[Action]:
        options = self.options(ctx, VolunteerGapOptions)
        return gaps.plan(session, ctx.now, options.horizon_days, ctx.limit)

    def apply(self, session: Session, ctx: JobContext, action: Action) -> None:
        gaps.apply(session, action, ctx.now, ctx.settings)


JOB = VolunteerGapAlerts()
