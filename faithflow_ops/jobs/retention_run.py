"""`faithflow retention run` (preview: `retention preview` = `run --dry-run`;
POST /tasks/retention/run; CRON_RETENTION): apply data retention in batches — drop the bodies
of old finished webhook events (the ledger stays) and delete old job runs — respecting legal
holds, one `audit_log` entry per batch.

Action kinds (faithflow_ops/retention/purge.py has the rules; docs/retention.md the runbook):
`drop_webhook_payloads` and `delete_job_runs`, each a batch of at most 1,000 rows.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from sqlalchemy.orm import Session

from faithflow_ops.jobs.base import Action, Job, JobContext
from faithflow_ops.jobs.options import RetentionOptions
from faithflow_ops.retention import purge


class RetentionRun(Job):
    name = "retention"
    table_columns = ("kind", "tenant", "class", "rows", "cutoff")

    @classmethod
    def table_rows(cls, action: Action) -> list[tuple[Any, ...]]:
        return purge.table_rows(action)

    def plan(self, session: Session, ctx: JobContext) -> Iterator[Action]:
        opts = self.options(ctx, RetentionOptions)
        return purge.plan(
            session,
            ctx.now,
            webhook_days=opts.webhook_days,
            job_run_days=opts.job_run_days,
            limit=ctx.limit,
        )

    def apply(self, session: Session, ctx: JobContext, action: Action) -> None:
        purge.apply(session, action)


JOB = RetentionRun()
