"""`faithflow streams moderate` (preview: `streams preview-moderate` = `moderate --dry-run`;
POST /tasks/streams/moderate; CRON_STREAMS_MODERATE): apply each session's chat policy to the
messages nobody has looked at yet.

Action kinds (faithflow_ops/streams/moderation.py has the rules; docs/streams.md the runbook):
`hide`, `hold`, `flag`, `allow` (one per message, with the rule that hit), and the report-only
`session_summary` (a session's counts) and `policy_invalid` (a stored policy that does not
parse: that session's messages wait). apply claims each message while it is still unmoderated,
so a rerun changes nothing.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

from sqlalchemy.orm import Session

from faithflow_ops.jobs.base import Action, Job, JobContext, Outcome, StaleAction
from faithflow_ops.streams import moderation


class StreamsModerate(Job):
    name = "streams_moderate"
    report_only = frozenset({"session_summary", "policy_invalid"})
    batch_size = 500
    table_columns = ("kind", "session", "message", "viewer", "rule", "detail")

    @classmethod
    def table_rows(cls, action: Action) -> list[tuple[Any, ...]]:
        return list(moderation.table_rows(action))

    def plan(self, session: Session, ctx: JobContext) -> Iterator[Action]:
        return moderation.plan(session, ctx.now, ctx.limit)

    def apply(self, session: Session, ctx: JobContext, action: Action) -> None:
        moderation.apply(session, action, ctx.now)

    def apply_batch(
        self, session: Session, ctx: JobContext, actions: Sequence[Action]
    ) -> list[Outcome] | None:
        try:
            moderation.apply_many(session, actions, ctx.now)
        except StaleAction:
            return None  # the runner rolls back and applies them one by one
        return ["applied"] * len(actions)


JOB = StreamsModerate()
