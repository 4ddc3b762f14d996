"""`faithflow retention run` (preview: `retention preview` = `run --dry-run`;
POST /tasks/retention/run; CRON_RETENTION): apply data retention in batches — anonymise closed
support tickets, redact finished outbox messages, drop old webhook bodies, delete old job runs
and health history, purge soft-deleted tenants — respecting legal holds, one `audit_log` entry
per batch.

Action kinds (faithflow_ops/retention/purge.py has the rules; docs/retention.md the runbook):
`anonymise_tickets`, `redact_messages`, `drop_webhook_payloads`, `delete_job_runs`,
`delete_health_checks`, `purge_tenant_rows`, `tombstone_tenant`; each a key range of at most
`--batch-size` rows (default 5,000), applied in a transaction of its own.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from sqlalchemy.orm import Session

from faithflow_ops.jobs.base import Action, Job, JobContext
from faithflow_ops.jobs.options import RetentionOptions
from faithflow_ops.retention import purge

_DAYS_OPTIONS = {
    "support_tickets": "ticket_days",
    "outbound_messages": "message_days",
    "webhook_payloads": "webhook_days",
    "job_runs": "job_run_days",
    "health_checks": "health_days",
    "deleted_tenants": "deleted_tenant_days",
}


class RetentionRun(Job):
    name = "retention"
    table_columns = ("kind", "tenant", "class", "table", "rows", "cutoff")

    @classmethod
    def table_rows(cls, action: Action) -> list[tuple[Any, ...]]:
        return purge.table_rows(action)

    def plan(self, session: Session, ctx: JobContext) -> Iterator[Action]:
        opts = self.options(ctx, RetentionOptions)
        days = dict(ctx.settings.retention_days)
        for data_class, field in _DAYS_OPTIONS.items():
            value = getattr(opts, field)
            if value is not None:
                days[data_class] = value
        return purge.plan(
            session,
            ctx.now,
            days,
            batch_size=opts.batch_size or ctx.settings.retention_batch_size,
            limit=ctx.limit,
            classes=(opts.data_class,) if opts.data_class else None,
        )

    def apply(self, session: Session, ctx: JobContext, action: Action) -> None:
        purge.apply(session, action)


JOB = RetentionRun()
