"""`faithflow volunteers remind` (preview: `volunteers preview-remind` = `remind --dry-run`;
POST /tasks/volunteers/reminders; CRON_VOLUNTEER_REMINDERS): remind pending and confirmed
volunteers before their events, one condensed message per person and local day, at 10:00 in the
event's time zone, through the communications outbox. Blocked-out people get nothing; their
team leaders are told instead.

Action kinds (faithflow_ops/volunteers/reminders.py has the rules; docs/volunteers.md the
runbook): `send_reminder` (one per person and day, listing each assignment, pending ones as an
accept/decline prompt) and `flag_blockout` (one per assignment whose person is blocked out on
the event's day). apply claims every assignment (`reminded_for_start` = the event's start), so
a rerun sends nothing and a moved event is reminded again.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from sqlalchemy.orm import Session

from faithflow_ops.jobs.base import Action, Job, JobContext
from faithflow_ops.volunteers import reminders


class VolunteerReminders(Job):
    name = "volunteer_reminders"
    table_columns = ("kind", "volunteer", "channel", "event", "starts (local)", "position", "state")

    @classmethod
    def table_rows(cls, action: Action) -> list[tuple[Any, ...]]:
        return list(reminders.table_rows(action))

    def plan(self, session: Session, ctx: JobContext) -> Iterator[Action]:
        return reminders.plan(session, ctx.now, ctx.limit)

    def apply(self, session: Session, ctx: JobContext, action: Action) -> None:
        reminders.apply(session, action, ctx.now, ctx.settings)


JOB = VolunteerReminders()
