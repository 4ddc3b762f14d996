"""`retention run`: the planner and appliers (the job module is glue).

Data classes, each with a platform default period (a job option) that a tenant's
`data_retention_days` overrides for its own rows:

- `webhook_payloads` — webhook events received before the cutoff and finished (`applied`,
  `ignored`, `stale`) lose their bodies (`payload`, `raw_body`); the ledger row (provider,
  type, ids, status, times) stays. Waiting (`received`, `failed`) and `unmatched` events (a
  later customer link re-drives them) keep theirs. Platform-scope events follow the default.
- `job_runs` — runs started before the cutoff are deleted, except each job's newest run (the
  health sweep's freshness check reads it). Platform data: no tenant, no hold.

Work is planned in batches of at most `BATCH` rows (one action each, one transaction each:
no long locks); a run that is interrupted leaves whole batches done, and the next run plans
only what is left (resumable). A legal hold on a tenant stops every purge of its rows — also
one placed after the preview: apply re-checks the hold and the conditions on each row. Every
batch writes one `audit_log` entry (`retention.purge`: class, rows, cutoff, id range).
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from sqlalchemy import delete, func, null, select, update
from sqlalchemy.orm import Session

from faithflow_ops import audit
from faithflow_ops.actions import Action, StaleAction, decode, encode
from faithflow_ops.db import rowcount
from faithflow_ops.models import JobRun, Tenant, TenantSecurityPolicy, WebhookEvent
from faithflow_ops.retention.holds import held_tenant_ids

ACTOR = "job:retention"
BATCH = 1000
DEFAULT_DAYS = 90  # the options' defaults (jobs/options.py RetentionOptions), for the audit
FINISHED_WEBHOOKS = ("applied", "ignored", "stale")


@dataclass(frozen=True)
class PurgeBatch:  # kinds "drop_webhook_payloads", "delete_job_runs"
    data_class: str
    tenant_id: int | None
    tenant: str | None
    cutoff: dt.datetime
    ids: list[int]


def _batches(ids: list[int]) -> Iterator[list[int]]:
    for start in range(0, len(ids), BATCH):
        yield ids[start : start + BATCH]


def plan(
    session: Session,
    now: dt.datetime,
    *,
    webhook_days: int,
    job_run_days: int,
    limit: int | None = None,
) -> Iterator[Action]:
    for count, action in enumerate(_plan(session, now, webhook_days, job_run_days)):
        if limit is not None and count >= limit:
            return
        yield action


def _plan(
    session: Session, now: dt.datetime, webhook_days: int, job_run_days: int
) -> Iterator[Action]:
    held = held_tenant_ids(session)
    slugs = dict(session.execute(select(Tenant.id, Tenant.slug)).tuples().all())
    own_days: dict[int, int] = {
        tenant_id: days
        for tenant_id, days in session.execute(
            select(TenantSecurityPolicy.tenant_id, TenantSecurityPolicy.data_retention_days)
        ).tuples()
        if days is not None
    }
    default_cutoff = now - dt.timedelta(days=webhook_days)
    # the latest cutoff any tenant has (the shortest period), so one indexed range scan on
    # first_received_at finds every candidate; each row is then held to its tenant's cutoff
    shortest = min([webhook_days, *own_days.values()])
    candidates = session.execute(
        select(WebhookEvent.id, WebhookEvent.tenant_id, WebhookEvent.first_received_at)
        .where(
            WebhookEvent.first_received_at < now - dt.timedelta(days=shortest),
            WebhookEvent.status.in_(FINISHED_WEBHOOKS),
            (WebhookEvent.payload.is_not(None)) | (WebhookEvent.raw_body.is_not(None)),
        )
        .order_by(WebhookEvent.id)
    )
    by_tenant: dict[int | None, list[int]] = defaultdict(list)
    cutoffs: dict[int | None, dt.datetime] = {None: default_cutoff}
    for event_id, tenant_id, received in candidates:
        if tenant_id is not None and tenant_id in held:
            continue
        if tenant_id not in cutoffs:
            days = own_days.get(tenant_id, webhook_days) if tenant_id is not None else webhook_days
            cutoffs[tenant_id] = now - dt.timedelta(days=days)
        if received < cutoffs[tenant_id]:
            by_tenant[tenant_id].append(event_id)
    for tenant_id in sorted(by_tenant, key=lambda t: (t is not None, t or 0)):
        slug = slugs.get(tenant_id) if tenant_id is not None else None
        for ids in _batches(by_tenant[tenant_id]):
            batch = PurgeBatch("webhook_payloads", tenant_id, slug, cutoffs[tenant_id], ids)
            yield Action(
                "drop_webhook_payloads",
                f"tenant:{slug}" if slug else "platform",
                f"{len(ids)} webhook event(s) received before {batch.cutoff:%Y-%m-%d}: drop "
                "bodies, keep the ledger",
                encode(batch),
            )

    run_cutoff = now - dt.timedelta(days=job_run_days)
    newest = select(func.max(JobRun.id)).group_by(JobRun.job).scalar_subquery()
    jobs = session.scalars(select(JobRun.job).distinct().order_by(JobRun.job)).all()
    old: list[int] = []
    for job in jobs:  # per job: the (job, started_at) index serves each range
        old.extend(
            session.scalars(
                select(JobRun.id)
                .where(JobRun.job == job, JobRun.started_at < run_cutoff, JobRun.id.not_in(newest))
                .order_by(JobRun.id)
            )
        )
    for ids in _batches(sorted(old)):
        yield Action(
            "delete_job_runs",
            "platform",
            f"{len(ids)} job run(s) started before {run_cutoff:%Y-%m-%d}: delete",
            encode(PurgeBatch("job_runs", None, None, run_cutoff, ids)),
        )


def apply(session: Session, action: Action) -> None:
    batch = decode(PurgeBatch, action.data)
    if batch.tenant_id is not None and batch.tenant_id in held_tenant_ids(session):
        raise StaleAction(f"{action.target} is on legal hold: nothing purged")
    if action.kind == "drop_webhook_payloads":
        done = rowcount(
            session.execute(
                update(WebhookEvent)
                .where(
                    WebhookEvent.id.in_(batch.ids),
                    WebhookEvent.first_received_at < batch.cutoff,
                    WebhookEvent.status.in_(FINISHED_WEBHOOKS),
                    (WebhookEvent.payload.is_not(None)) | (WebhookEvent.raw_body.is_not(None)),
                )
                .values(payload=null(), raw_body=None)  # SQL NULL, not JSON null
                .execution_options(synchronize_session=False)
            )
        )
    elif action.kind == "delete_job_runs":
        newest = select(func.max(JobRun.id)).group_by(JobRun.job).scalar_subquery()
        done = rowcount(
            session.execute(
                delete(JobRun)
                .where(
                    JobRun.id.in_(batch.ids),
                    JobRun.started_at < batch.cutoff,
                    JobRun.id.not_in(newest),
                )
                .execution_options(synchronize_session=False)
            )
        )
    else:
        raise ValueError(f"unknown action kind {action.kind!r}")
    if done == 0:
        raise StaleAction(f"{action.target}: the batch was already purged")
    audit.record(
        session,
        actor=ACTOR,
        action="retention.purge",
        entity_type=batch.data_class,
        entity_id=f"{min(batch.ids)}-{max(batch.ids)}",
        tenant_id=batch.tenant_id,
        after={
            "data_class": batch.data_class,
            "rows": done,
            "planned": len(batch.ids),
            "cutoff": batch.cutoff.isoformat(),
            "first_id": min(batch.ids),
            "last_id": max(batch.ids),
        },
    )


def table_rows(action: Action) -> list[tuple[Any, ...]]:
    data = action.data
    return [(action.kind, action.target, data.get("data_class"), len(data.get("ids", [])),
             str(data.get("cutoff", ""))[:10])]  # fmt: skip
