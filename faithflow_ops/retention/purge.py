"""`retention run`: the planner and appliers (the job module is glue; docs/retention.md).

Data classes (faithflow_ops.retention.periods says how long each is kept):

- `support_tickets` (`anonymise_tickets`) — tickets closed before the cutoff lose the
  requester's name and e-mail; the text of the ticket and its messages loses e-mail addresses,
  phone numbers and the requester's name (retention/anonymise.py). `anonymised_at` is set.
- `outbound_messages` (`redact_messages`) — messages no longer to be sent (delivered, sent,
  failed, suppressed, canceled, unknown) created before the cutoff lose body, subject and
  template variables; the ledger row (recipient, channel, template, status, times, provider id)
  stays. `redacted_at` is set.
- `webhook_payloads` (`drop_webhook_payloads`) — webhook events received before the cutoff and
  finished (`applied`, `ignored`, `stale`) lose their bodies (`payload`, `raw_body`); the ledger
  row stays. Waiting (`received`, `failed`) and `unmatched` events keep theirs.
- `job_runs` (`delete_job_runs`), `health_checks` (`delete_health_checks`) — platform history
  older than the cutoff is deleted, except each job's / each check's newest row (freshness
  checks and `health status` read it).
- `deleted_tenants` (`purge_tenant_rows`, then `tombstone_tenant`) — a tenant soft-deleted
  before the cutoff loses every row it owns (retention/deleted.py), then its row becomes a
  tombstone.

Batches: an action is one batch of at most `batch_size` rows of one tenant, class and table,
cut as a key range (`first_id`..`last_id`): the plan pages with `id > last`, so it needs no
cursor table, and apply re-checks every condition inside the range (`UPDATE/DELETE … WHERE id
BETWEEN … AND <still due>`), one transaction per batch — no long locks. A run cut short leaves
whole batches done; the next run plans only what is left (resumable), and a rerun finds nothing
(idempotent). A legal hold on a tenant stops every class of its rows — also a hold placed after
the preview: apply re-checks it. Every batch writes one `audit_log` entry (`retention.purge`:
class, table, rows, cutoff, key range), never one per row.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Integer,
    String,
    Text,
    bindparam,
    case,
    cast,
    delete,
    distinct,
    func,
    literal,
    literal_column,
    null,
    or_,
    select,
    update,
)
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.orm import InstrumentedAttribute, Session

from faithflow_ops import audit
from faithflow_ops.actions import Action, StaleAction, decode, encode
from faithflow_ops.db import rowcount
from faithflow_ops.models import (
    HealthCheckResult,
    JobRun,
    OutboundMessage,
    SupportMessage,
    SupportTicket,
    Tenant,
    WebhookEvent,
)
from faithflow_ops.retention import anonymise, deleted
from faithflow_ops.retention.holds import held_tenant_ids
from faithflow_ops.retention.paging import key_pages
from faithflow_ops.retention.periods import Periods

__all__ = ["Periods", "PurgeBatch", "StaleAction", "apply", "due_counts", "plan", "table_rows"]

ACTOR = "job:retention"
DEFAULT_BATCH = 5000
FINISHED_WEBHOOKS = ("applied", "ignored", "stale")
UNSENT_MESSAGES = ("queued", "scheduled", "sending")  # still to be sent: never redacted

KINDS = {
    "support_tickets": "anonymise_tickets",
    "outbound_messages": "redact_messages",
    "webhook_payloads": "drop_webhook_payloads",
    "job_runs": "delete_job_runs",
    "health_checks": "delete_health_checks",
    "deleted_tenants": "purge_tenant_rows",
}
TOMBSTONE = "tombstone_tenant"


@dataclass(frozen=True)
class PurgeBatch:  # every kind: one key range of one class, tenant and table
    data_class: str
    table: str
    tenant_id: int | None
    tenant: str | None
    cutoff: dt.datetime
    at: dt.datetime  # the run's now: stamped on anonymised / redacted rows
    first_id: int
    last_id: int
    rows: int  # as planned; apply counts again


# ---------------------------------------------------------------------------------------------
# What each tenant-owned class touches: its key, tenant and time columns and the condition a
# row must still meet (re-checked by apply inside the batch's key range).


def _sql_text(value: str) -> ColumnElement[str]:
    """A constant written into the SQL, not bound: the partial indexes' predicates
    (`status = 'closed'`) must match it in a prepared statement's generic plan, which psycopg
    uses from a statement's sixth execution on — a bound `status = $1` never matches one."""
    return literal_column("'" + value.replace("'", "''") + "'")


@dataclass(frozen=True)
class _TenantClass:
    data_class: str
    table: str
    key: InstrumentedAttribute[int]
    tenant: InstrumentedAttribute[Any]
    time: InstrumentedAttribute[dt.datetime | None]
    due: tuple[ColumnElement[bool], ...]


_TICKETS = _TenantClass(
    "support_tickets", "support_tickets", SupportTicket.id, SupportTicket.tenant_id,
    SupportTicket.closed_at,
    (SupportTicket.status == _sql_text("closed"), SupportTicket.anonymised_at.is_(None)),
)  # fmt: skip
_MESSAGES = _TenantClass(
    "outbound_messages", "outbound_messages", OutboundMessage.id, OutboundMessage.tenant_id,
    OutboundMessage.created_at,
    (OutboundMessage.redacted_at.is_(None),
     OutboundMessage.status.not_in([_sql_text(s) for s in UNSENT_MESSAGES])),
)  # fmt: skip
_WEBHOOKS = _TenantClass(
    "webhook_payloads", "webhook_events", WebhookEvent.id, WebhookEvent.tenant_id,
    WebhookEvent.first_received_at,
    (WebhookEvent.status.in_(FINISHED_WEBHOOKS),
     or_(WebhookEvent.payload.is_not(None), WebhookEvent.raw_body.is_not(None))),
)  # fmt: skip
TENANT_CLASSES = (_TICKETS, _MESSAGES, _WEBHOOKS)
_BY_CLASS = {c.data_class: c for c in TENANT_CLASSES}


def _of_tenant(column: InstrumentedAttribute[Any], tenant_id: int | None) -> ColumnElement[bool]:
    return column.is_(None) if tenant_id is None else column == tenant_id


# ---------------------------------------------------------------------------------------------
# plan


def plan(
    session: Session,
    now: dt.datetime,
    days: Mapping[str, int],
    *,
    batch_size: int = DEFAULT_BATCH,
    limit: int | None = None,
    classes: tuple[str, ...] | None = None,
) -> Iterator[Action]:
    """Every batch due as of `now`: `days` are the platform defaults per class (tenants' own
    periods override them), `classes` restricts the run to some classes."""
    actions = _plan(session, now, Periods.load(session, days), batch_size, classes)
    for count, action in enumerate(actions):
        if limit is not None and count >= limit:
            return
        yield action


def _plan(
    session: Session,
    now: dt.datetime,
    periods: Periods,
    batch: int,
    classes: tuple[str, ...] | None,
) -> Iterator[Action]:
    held = held_tenant_ids(session)
    slugs: dict[int, str] = dict(session.execute(select(Tenant.id, Tenant.slug)).tuples().all())
    wanted = set(classes) if classes else set(KINDS)
    for spec in TENANT_CLASSES:
        if spec.data_class in wanted:
            yield from _plan_tenant_class(session, now, periods, spec, held, slugs, batch)
    for platform in PLATFORM_CLASSES:
        if platform.data_class in wanted:
            cutoff = periods.cutoff(now, platform.data_class, None)
            query = select(platform.model.id).where(*platform.expired(cutoff))
            for first, last, rows in key_pages(session, query, platform.model.id, batch):
                reason = f"{rows} {platform.what} {cutoff:%Y-%m-%d}: delete"
                yield _action(platform.data_class, platform.data_class, None, None, cutoff, now,
                              first, last, rows, reason)  # fmt: skip
    if "deleted_tenants" in wanted:
        yield from _plan_deleted_tenants(session, now, periods, held, batch)


def _plan_tenant_class(
    session: Session,
    now: dt.datetime,
    periods: Periods,
    spec: _TenantClass,
    held: set[int],
    slugs: dict[int, str],
    batch: int,
) -> Iterator[Action]:
    # the tenants with a candidate: one scan up to the latest cutoff any tenant has
    latest = periods.latest_cutoff(now, spec.data_class)
    tenants = session.scalars(
        select(distinct(spec.tenant)).where(*spec.due, spec.time < latest)
    ).all()
    for tenant_id in sorted(tenants, key=lambda t: (t is not None, t or 0)):
        if tenant_id is not None and tenant_id in held:
            continue
        cutoff = periods.cutoff(now, spec.data_class, tenant_id)
        query = select(spec.key).where(
            _of_tenant(spec.tenant, tenant_id), *spec.due, spec.time < cutoff
        )
        slug = slugs.get(tenant_id) if tenant_id is not None else None
        for first, last, rows in key_pages(session, query, spec.key, batch):
            reason = _REASONS[spec.data_class].format(rows=rows, cutoff=cutoff)
            yield _action(
                spec.data_class, spec.table, tenant_id, slug, cutoff, now, first, last, rows, reason
            )


_REASONS = {
    "support_tickets": "{rows} ticket(s) closed before {cutoff:%Y-%m-%d}: anonymise the requester",
    "outbound_messages": "{rows} finished message(s) created before {cutoff:%Y-%m-%d}: redact "
    "bodies, keep the ledger",
    "webhook_payloads": "{rows} webhook event(s) received before {cutoff:%Y-%m-%d}: drop bodies, "
    "keep the ledger",
}


def _plan_deleted_tenants(
    session: Session, now: dt.datetime, periods: Periods, held: set[int], batch: int
) -> Iterator[Action]:
    latest = periods.latest_cutoff(now, "deleted_tenants")
    gone = session.scalars(
        select(Tenant).where(Tenant.deleted_at.is_not(None), Tenant.deleted_at < latest)
    ).all()
    for tenant in sorted(gone, key=lambda t: t.id):
        cutoff = periods.cutoff(now, "deleted_tenants", tenant.id)
        assert tenant.deleted_at is not None
        if tenant.id in held or tenant.deleted_at >= cutoff:
            continue
        for owned in deleted.owned_tables():
            for first, last, rows in deleted.pages(session, owned, tenant.id, batch):
                yield _action("deleted_tenants", owned.table.name, tenant.id, tenant.slug, cutoff,
                              now, first, last, rows,
                              f"tenant deleted {tenant.deleted_at:%Y-%m-%d}: purge {rows} "
                              f"{owned.table.name} row(s)")  # fmt: skip
        if not deleted.is_tombstone(tenant):
            batch_doc = PurgeBatch("deleted_tenants", "tenants", tenant.id, tenant.slug, cutoff,
                                   now, tenant.id, tenant.id, 1)  # fmt: skip
            yield Action(
                TOMBSTONE,
                f"tenant:{tenant.slug}",
                f"tenant deleted {tenant.deleted_at:%Y-%m-%d}: keep a tombstone (id, dates); "
                "name, slug and contacts removed",
                encode(batch_doc),
            )


def _action(
    data_class: str,
    table: str,
    tenant_id: int | None,
    slug: str | None,
    cutoff: dt.datetime,
    now: dt.datetime,
    first: int,
    last: int,
    rows: int,
    reason: str,
) -> Action:
    batch = PurgeBatch(data_class, table, tenant_id, slug, cutoff, now, first, last, rows)
    target = "platform" if tenant_id is None else f"tenant:{slug or tenant_id}"
    return Action(KINDS[data_class], target, reason, encode(batch))


@dataclass(frozen=True)
class _PlatformClass:
    """A platform-wide class: rows of `model` from before the cutoff (by `when`) are deleted,
    except the newest of each `group` (the last job run of each job, the last result of each
    check: what freshness and status read)."""

    data_class: str
    model: Any
    when: InstrumentedAttribute[Any]
    group: InstrumentedAttribute[Any]
    what: str  # in the reason: "<rows> <what> <cutoff>: delete"

    def expired(self, cutoff: dt.datetime) -> tuple[Any, ...]:
        newest = select(func.max(self.model.id)).group_by(self.group).scalar_subquery()
        return self.when < cutoff, self.model.id.not_in(newest)


PLATFORM_CLASSES = (
    _PlatformClass("job_runs", JobRun, JobRun.started_at, JobRun.job, "job run(s) started before"),
    _PlatformClass("health_checks", HealthCheckResult, HealthCheckResult.checked_at,
                   HealthCheckResult.check_name, "health check result(s) before"),
)  # fmt: skip
_PLATFORM_BY_KIND = {KINDS[platform.data_class]: platform for platform in PLATFORM_CLASSES}


# ---------------------------------------------------------------------------------------------
# apply


def apply(session: Session, action: Action) -> None:
    batch = decode(PurgeBatch, action.data)
    if batch.tenant_id is not None and batch.tenant_id in held_tenant_ids(session):
        raise StaleAction(f"{action.target} is on legal hold: nothing purged")
    if action.kind == TOMBSTONE:
        _tombstone(session, batch)
        return
    if action.kind == "anonymise_tickets":
        done = _anonymise_tickets(session, batch)
    elif action.kind in ("redact_messages", "drop_webhook_payloads"):
        spec = _BY_CLASS[batch.data_class]
        in_batch = (
            spec.key.between(batch.first_id, batch.last_id),
            _of_tenant(spec.tenant, batch.tenant_id),
            *spec.due,
            spec.time < batch.cutoff,
        )
        if action.kind == "redact_messages":
            values: dict[str, Any] = {
                "body": anonymise.REDACTED,
                "subject": None,
                "variables": {},
                "content_variables": null(),
                "redacted_at": batch.at,
            }
            target: Any = OutboundMessage
        else:
            values = {"payload": null(), "raw_body": None}  # SQL NULL, not JSON null
            target = WebhookEvent
        done = rowcount(
            session.execute(
                update(target)
                .where(*in_batch)
                .values(**values)
                .execution_options(synchronize_session=False)
            )
        )
    elif (platform := _PLATFORM_BY_KIND.get(action.kind)) is not None:
        done = rowcount(
            session.execute(
                delete(platform.model)
                .where(
                    platform.model.id.between(batch.first_id, batch.last_id),
                    *platform.expired(batch.cutoff),
                )
                .execution_options(synchronize_session=False)
            )
        )
    elif action.kind == "purge_tenant_rows":
        done = _purge_rows(session, batch)
    else:
        raise ValueError(f"unknown action kind {action.kind!r}")
    if done == 0:
        raise StaleAction(f"{action.target}: the batch was already done")
    _audit(session, batch, done)


def _audit(session: Session, batch: PurgeBatch, done: int, **extra: Any) -> None:
    audit.record(
        session,
        actor=ACTOR,
        action="retention.purge",
        entity_type=batch.data_class,
        entity_id=f"{batch.table}:{batch.first_id}-{batch.last_id}"[:64],
        tenant_id=batch.tenant_id,
        after={
            "data_class": batch.data_class,
            "table": batch.table,
            "rows": done,
            "planned": batch.rows,
            "cutoff": batch.cutoff.isoformat(),
            "first_id": batch.first_id,
            "last_id": batch.last_id,
            **extra,
        },
    )


def _anonymise_tickets(session: Session, batch: PurgeBatch) -> int:
    """Anonymise the batch's tickets still due and their messages (texts rewritten in Python:
    the scrubbing rules are regular expressions both databases would spell differently)."""
    assert batch.tenant_id is not None
    tickets = session.execute(
        select(
            SupportTicket.id,
            SupportTicket.requester_name,
            SupportTicket.subject,
        )
        .where(
            SupportTicket.id.between(batch.first_id, batch.last_id),
            SupportTicket.tenant_id == batch.tenant_id,
            SupportTicket.status == _sql_text("closed"),
            SupportTicket.anonymised_at.is_(None),
            SupportTicket.closed_at < batch.cutoff,
        )
        .with_for_update()
    ).all()
    if not tickets:
        return 0
    scrub = {ticket_id: anonymise.scrubber(name) for ticket_id, name, _ in tickets}
    subjects = [(ticket_id, scrub[ticket_id](subject)) for ticket_id, _, subject in tickets]
    bodies = [
        (message_id, scrub[ticket_id](body))
        for message_id, ticket_id, body in session.execute(
            select(SupportMessage.id, SupportMessage.ticket_id, SupportMessage.body).where(
                SupportMessage.ticket_id.in_(list(scrub))
            )
        ).tuples()
    ]
    tickets_table, messages_table = SupportTicket.__table__, SupportMessage.__table__
    _set_texts(session, tickets_table, "subject", subjects, {
        "requester_email": literal(anonymise.PLACEHOLDER_PREFIX)
        + cast(tickets_table.c.id, String) + literal(anonymise.PLACEHOLDER_SUFFIX),
        "requester_name": null(),
        "anonymised_at": batch.at,
        "updated_at": batch.at,
    })  # fmt: skip
    _set_texts(session, messages_table, "body", bodies, {
        "author_email": case(
            (messages_table.c.author_kind == "requester", null()),
            else_=messages_table.c.author_email,
        ),
    })  # fmt: skip
    return len(subjects)


def _set_texts(
    session: Session,
    table: Any,
    column: str,
    rows: list[tuple[int, str]],
    also: Mapping[str, Any],
) -> None:
    """Set one text column row by row (and `also`, SQL expressions of the row) in one
    statement: on Postgres an UPDATE … FROM unnest(keys, texts) (two array parameters, one
    round trip); on SQLite (a local file, no round trips) one executemany."""
    if not rows:
        return
    keys, texts = [key for key, _ in rows], [text for _, text in rows]
    if session.get_bind().dialect.name == "postgresql":
        source = (
            func.unnest(
                bindparam("keys", keys, type_=ARRAY(Integer)),
                bindparam("texts", texts, type_=ARRAY(Text)),
            )
            .table_valued("key", "text")
            .render_derived(name="texts")
        )
        session.execute(
            update(table).where(table.c.id == source.c.key).values({column: source.c.text, **also})
        )
        return
    session.execute(
        update(table)
        .where(table.c.id == bindparam("key"))
        .values({column: bindparam("text"), **also}),
        [{"key": key, "text": text} for key, text in rows],
    )


def _purge_rows(session: Session, batch: PurgeBatch) -> int:
    assert batch.tenant_id is not None
    tenant = session.get(Tenant, batch.tenant_id)
    if tenant is None or tenant.deleted_at is None or tenant.deleted_at >= batch.cutoff:
        raise StaleAction(f"tenant {batch.tenant}: no longer deleted before the cutoff")
    owned = deleted.by_name(batch.table)
    in_batch = deleted.in_range(owned, batch.tenant_id, batch.first_id, batch.last_id)
    for ref in owned.detach:
        session.execute(
            update(ref.table)
            .where(ref.column.in_(select(owned.key).where(in_batch)))
            .values({ref.column.name: None})
        )
    return rowcount(session.execute(delete(owned.table).where(in_batch)))


def _tombstone(session: Session, batch: PurgeBatch) -> None:
    assert batch.tenant_id is not None
    tenant = session.get(Tenant, batch.tenant_id)
    if tenant is None or tenant.deleted_at is None or tenant.deleted_at >= batch.cutoff:
        raise StaleAction(f"tenant {batch.tenant}: no longer deleted before the cutoff")
    if deleted.is_tombstone(tenant):
        raise StaleAction(f"tenant {batch.tenant}: already a tombstone")
    tenant.slug = deleted.tombstone_slug(tenant.id)
    tenant.name = deleted.TOMBSTONE_NAME
    tenant.billing_email = tenant.billing_phone = tenant.sms_name = None
    tenant.suspension_reason = None
    tenant.status = "archived"
    session.flush()
    _audit(session, batch, 1, was=batch.tenant)


# ---------------------------------------------------------------------------------------------
# counts


def due_counts(
    session: Session, now: dt.datetime, days: Mapping[str, int], *, batch_size: int = 100_000
) -> dict[str | None, dict[str, int]]:
    """Rows due per tenant (slug; None = platform) and class as of `now`: the preview's totals
    and the security audit's `retention_overdue`."""
    counts: dict[str | None, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for action in plan(session, now, days, batch_size=batch_size):
        batch = decode(PurgeBatch, action.data)
        if action.kind != TOMBSTONE:
            counts[batch.tenant][batch.data_class] += batch.rows
    return {tenant: dict(rows) for tenant, rows in counts.items()}


def table_rows(action: Action) -> list[tuple[Any, ...]]:
    data = action.data
    return [(action.kind, action.target, data.get("data_class"), data.get("table"),
             data.get("rows"), str(data.get("cutoff", ""))[:10])]  # fmt: skip
