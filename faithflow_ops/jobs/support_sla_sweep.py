"""`faithflow sla sweep` (POST /tasks/support/sla, CRON_SUPPORT_SLA_SWEEP, default */5): mark SLA
breaches when they happened, warn before them, notify (docs/support.md "The sweep").

plan (read-only; one UNION ALL of a query per metric and kind, each over open tickets only
through the partial indexes `ix_support_tickets_sla_<metric>_due` / `_warn`, so its cost
follows the open tickets):
- `sla_breach`: a running clock whose due time has passed and is not marked;
- `sla_warning`: a clock whose warning time has passed, not warned, not breached, still due in
  the future (a clock found already overdue gets its breach, not a late warning).
Each action shows the ticket, metric, due time and minutes left (negative: overdue).

apply (claims with one conditional UPDATE per metric and kind for a batch, RETURNING the rows
still due with what the rest needs — a row someone changed since the plan is `stale`):
- breach: `<m>_breached_at = <m>_due_at` (the moment it happened, never the sweep's time);
- warning: `<m>_warned_at = now`;
then, in the same transaction, one `sla_events` row per claim (UNIQUE ticket, metric, episode,
kind; the batch in one multi-row INSERT), an e-mail through the outbox to the assignee or,
unassigned, FAITHFLOW_SUPPORT_QUEUE_EMAIL (idempotency key `sla:<ticket>:<metric>:<episode>:
<kind>`; the batch's e-mails in one `outbox.enqueue_many`), and for urgent tickets a POST to
ALERT_WEBHOOK_URL. A malformed address (or a message the outbox refuses) is kept in the
event's `data.notify.error` and the breach is recorded all the same. A failing hook does not
fail the sweep: its error is kept in the event's `data.alert` (and logged); the e-mail still
goes out. A second sweep at the same `now` plans nothing.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, cast

import structlog
from sqlalchemy import ColumnElement, Table, and_, literal, or_, select, union_all, update
from sqlalchemy.orm import Session

from faithflow_ops.bulk import insert_rows
from faithflow_ops.comms import contacts, outbox
from faithflow_ops.errors import UserError
from faithflow_ops.jobs.base import Action, Job, JobContext, Outcome, StaleAction
from faithflow_ops.models import SlaEvent, SupportTicket, Tenant, User
from faithflow_ops.models.support import METRICS
from faithflow_ops.providers._http import ProviderError

log = structlog.get_logger("faithflow.sla")

KINDS = ("sla_breach", "sla_warning")
LABELS = {
    "first_response": "first response",
    "next_response": "next response",
    "resolution": "resolution",
}
_T = cast(Table, SupportTicket.__table__)
_EVENTS = cast(Table, SlaEvent.__table__)


def _col(metric: str, field: str) -> Any:
    return _T.c[f"{metric}_{field}"]


def _open() -> ColumnElement[bool]:
    # the exact predicate of the partial indexes (status NOT IN ('solved', 'closed'))
    return _T.c.status.not_in(("solved", "closed"))


def _breach_due(metric: str, now: dt.datetime) -> ColumnElement[bool]:
    return and_(
        _col(metric, "breached_at").is_(None),
        _open(),
        _col(metric, "due_at") <= now,
    )


def _warning_due(metric: str, now: dt.datetime) -> ColumnElement[bool]:
    return and_(
        _col(metric, "warned_at").is_(None),
        _col(metric, "breached_at").is_(None),
        _open(),
        _col(metric, "warn_at") <= now,
        _col(metric, "due_at") > now,
    )


def _minutes(delta: dt.timedelta) -> int:
    """Whole minutes left (floor): -1 as soon as a due time has passed."""
    return int(delta.total_seconds() // 60)


class SupportSlaSweep(Job):
    name = "support_sla_sweep"
    batch_size = 500
    table_columns = ("kind", "ticket", "metric", "priority", "due (UTC)", "minutes left")

    @classmethod
    def table_rows(cls, action: Action) -> list[tuple[Any, ...]]:
        d = action.data
        return [
            (
                action.kind,
                d["ticket_id"],
                d["metric"],
                d["priority"],
                d["due_at"],
                d["minutes_left"],
            )
        ]

    def plan(self, session: Session, ctx: JobContext) -> Iterator[Action]:
        now = ctx.now
        # one statement: a UNION ALL of the six (metric, kind) queries, each on its own index
        branches = [
            (kind, metric, where)
            for metric in METRICS
            for kind, where in (
                ("sla_breach", _breach_due(metric, now)),
                ("sla_warning", _warning_due(metric, now)),
            )
        ]
        query = union_all(
            *(
                select(
                    literal(n).label("branch"),
                    _T.c.id,
                    _T.c.priority,
                    _T.c.assignee_id,
                    _col(metric, "episode").label("episode"),
                    _col(metric, "due_at").label("due_at"),
                ).where(where)
                for n, (kind, metric, where) in enumerate(branches)
            )
        )
        found: list[Action] = []
        for branch, ticket_id, priority, assignee_id, episode, due in session.execute(query):
            kind, metric, _ = branches[branch]
            left = _minutes(due - now)
            what = "overdue" if kind == "sla_breach" else "due"
            found.append(
                Action(
                    kind,
                    f"ticket:{ticket_id}",
                    f"{LABELS[metric]} {what} {due.isoformat()} ({left:+d} min)",
                    {
                        "ticket_id": ticket_id,
                        "metric": metric,
                        "episode": episode,
                        "priority": priority,
                        "assignee_id": assignee_id,
                        "due_at": due.isoformat(),
                        "minutes_left": left,
                    },
                )
            )
        found.sort(key=lambda a: (a.data["due_at"], a.data["ticket_id"], a.data["metric"]))
        if ctx.progress is not None:
            ctx.progress.start(len(found))
        yield from found

    def apply(self, session: Session, ctx: JobContext, action: Action) -> None:
        (outcome,) = apply_many(session, ctx, [action])
        if outcome == "stale":
            raise StaleAction(
                f"{action.target} {action.data['metric']} changed since the plan "
                "(answered, paused, solved or already marked)"
            )

    def apply_batch(
        self, session: Session, ctx: JobContext, actions: Sequence[Action]
    ) -> list[Outcome] | None:
        return apply_many(session, ctx, actions)


JOB = SupportSlaSweep()


def apply_many(session: Session, ctx: JobContext, actions: Sequence[Action]) -> list[Outcome]:
    """Claim, record and notify a batch; 'applied' per claimed action, 'stale' otherwise.

    Statements for any batch size: one claiming UPDATE … RETURNING per metric and kind (the
    rows it returns are all the rest needs), the assignees' and tenants' names, the outbox
    batch (`enqueue_many`: one suppression query, one multi-row INSERT), one multi-row INSERT
    of sla_events."""
    now = ctx.now
    groups: dict[tuple[str, str], list[Action]] = defaultdict(list)
    for action in actions:
        if action.kind not in KINDS:
            raise ValueError(f"sla sweep has no action kind {action.kind!r}")
        groups[action.kind, action.data["metric"]].append(action)
    claims: dict[tuple[str, str, int], _Claim] = {}
    for (kind, metric), group in groups.items():
        by_episode: dict[int, list[int]] = defaultdict(list)
        for a in group:
            by_episode[int(a.data["episode"])].append(int(a.data["ticket_id"]))
        planned = or_(
            *(
                and_(_col(metric, "episode") == episode, _T.c.id.in_(ids))
                for episode, ids in sorted(by_episode.items())
            )
        )
        if kind == "sla_breach":
            where, values = (
                _breach_due(metric, now),
                {f"{metric}_breached_at": _col(metric, "due_at")},
            )
        else:
            where, values = _warning_due(metric, now), {f"{metric}_warned_at": now}
        result = session.execute(
            update(_T)
            .where(planned, where)
            .values(updated_at=now, **values)
            .returning(
                _T.c.id,
                _T.c.tenant_id,
                _T.c.priority,
                _T.c.subject,
                _T.c.assignee_id,
                _col(metric, "episode"),
                _col(metric, "started_at"),
                _col(metric, "due_at"),
                _col(metric, "warn_at"),
            )
        )
        for row in result.tuples():
            claims[kind, metric, row[0]] = _Claim(kind, metric, *row)
    if claims:
        _record_and_notify(session, ctx, sorted(claims.values(), key=_Claim.order))
    return [
        "applied" if (a.kind, a.data["metric"], int(a.data["ticket_id"])) in claims else "stale"
        for a in actions
    ]


@dataclass(frozen=True)
class _Claim:
    """A clock this sweep marked, as the claiming UPDATE returned it."""

    kind: str  # sla_breach | sla_warning
    metric: str
    ticket_id: int
    tenant_id: int
    priority: str
    subject: str
    assignee_id: int | None
    episode: int
    started_at: dt.datetime | None
    due_at: dt.datetime
    warn_at: dt.datetime | None

    @property
    def event(self) -> str:
        return "breach" if self.kind == "sla_breach" else "warning"

    def order(self) -> tuple[int, str, str]:
        return (self.ticket_id, self.metric, self.kind)


def _record_and_notify(session: Session, ctx: JobContext, claims: list[_Claim]) -> None:
    now, settings = ctx.now, ctx.settings
    assignees = {c.assignee_id for c in claims if c.assignee_id is not None}
    agents: dict[int, str] = {}
    if assignees:
        agents = dict(
            session.execute(select(User.id, User.email).where(User.id.in_(assignees)))
            .tuples()
            .all()
        )
    slugs = dict(
        session.execute(
            select(Tenant.id, Tenant.slug).where(Tenant.id.in_({c.tenant_id for c in claims}))
        )
        .tuples()
        .all()
    )
    docs = [_document(c, now, slugs, agents) for c in claims]
    notices = _notify_all(session, settings, claims, docs, now)
    unsent = sum(1 for n in notices if "skipped" in n)
    if unsent:
        log.warning(
            "sla notifications without a recipient: set FAITHFLOW_SUPPORT_QUEUE_EMAIL",
            events=unsent,
        )
    urgent = any(c.priority == "urgent" for c in claims)
    hook = _hook(settings) if urgent else None
    events: list[dict[str, Any]] = []
    try:
        for claim, doc, notice in zip(claims, docs, notices, strict=True):
            data: dict[str, Any] = {"notify": notice}
            if claim.priority == "urgent":
                data["alert"] = _alert(hook, settings, doc)
            events.append(
                {
                    "ticket_id": claim.ticket_id,
                    "tenant_id": claim.tenant_id,
                    "metric": claim.metric,
                    "episode": claim.episode,
                    "kind": claim.event,
                    "priority": claim.priority,
                    # a breach happened at its due time; a warning when it became due
                    "occurred_at": claim.due_at
                    if claim.event == "breach"
                    else (claim.warn_at or now),
                    "started_at": claim.started_at,
                    "due_at": claim.due_at,
                    "assignee_id": claim.assignee_id,
                    "data": data,
                    "created_at": now,
                }
            )
    finally:
        if hook is not None:
            hook.close()
    insert_rows(session, _EVENTS, events, conflict=["ticket_id", "metric", "episode", "kind"])


def _document(
    claim: _Claim, now: dt.datetime, slugs: dict[int, str], agents: dict[int, str]
) -> dict[str, Any]:
    left = _minutes(claim.due_at - now)
    due = claim.due_at.isoformat()
    event = claim.event
    return {
        "id": f"sla:{claim.ticket_id}:{claim.metric}:{claim.episode}:{event}",
        "type": f"support.sla_{event}",
        "text": (
            f"ticket #{claim.ticket_id} ({claim.priority}, {slugs.get(claim.tenant_id)}): "
            f"{LABELS[claim.metric]} "
            + (f"breached at {due}" if event == "breach" else f"due {due}")
            + f" ({left:+d} min). `faithflow support tickets show {claim.ticket_id}`"
        ),
        "ticket_id": claim.ticket_id,
        "tenant": slugs.get(claim.tenant_id),
        "subject": claim.subject,
        "priority": claim.priority,
        "metric": claim.metric,
        "episode": claim.episode,
        "due_at": due,
        "minutes_left": left,
        "assignee": agents.get(claim.assignee_id) if claim.assignee_id else None,
    }


def _notify_all(
    session: Session,
    settings: Any,
    claims: Sequence[_Claim],
    docs: Sequence[dict[str, Any]],
    now: dt.datetime,
) -> list[dict[str, Any]]:
    """The e-mails of a batch through the outbox at once; per claim what happened (`to` and
    `message_id`/`status`, or `error` for a malformed address, or `skipped`). A bad address
    never stops the others: the breach is recorded all the same."""
    notices: list[dict[str, Any]] = [{} for _ in claims]
    messages: list[outbox.Message] = []
    where: list[int] = []
    for n, (claim, doc) in enumerate(zip(claims, docs, strict=True)):
        to = doc["assignee"] or settings.support_queue_email
        if not to:  # logged once per batch by _record_and_notify
            notices[n] = {"skipped": "unassigned and FAITHFLOW_SUPPORT_QUEUE_EMAIL is not set"}
            continue
        try:
            contacts.normalize("email", to)
        except UserError as exc:
            notices[n] = {"to": to, "error": str(exc)}
            continue
        notices[n] = {"to": to}
        messages.append(_message(claim, doc, to))
        where.append(n)
    queued: list[outbox.Enqueued | None]
    try:
        queued = list(outbox.enqueue_many(session, messages, now=now))
    except UserError:
        # a message the outbox refuses (nothing of the batch was written): find it, keep the rest
        queued = []
        for message, n in zip(messages, where, strict=True):
            try:
                queued.append(outbox.enqueue_many(session, [message], now=now)[0])
            except UserError as exc:
                notices[n]["error"] = str(exc)
                queued.append(None)
    for result, n in zip(queued, where, strict=True):
        if result is not None:
            notices[n].update(message_id=result.id, status=result.status)
    return notices


def _message(claim: _Claim, doc: dict[str, Any], to: str) -> outbox.Message:
    left = int(doc["minutes_left"])
    return outbox.Message(
        channel="email",
        recipient=to,
        template=f"sla_{claim.event}",
        variables={
            "ticket_id": claim.ticket_id,
            "ticket_subject": claim.subject,
            "tenant_slug": doc["tenant"] or "",
            "priority": claim.priority,
            "metric_label": LABELS[claim.metric],
            "due": claim.due_at.strftime("%Y-%m-%d %H:%M"),
            "minutes_left": max(left, 0),
            "minutes_overdue": max(-left, 0),
            "assignee": doc["assignee"] or "nobody (the queue)",
            "target": _target_text(claim),
        },
        idempotency_key=doc["id"],
        priority=10 if claim.priority == "urgent" else 30,
        category="support",
        about=("support_ticket", claim.ticket_id),
    )


def _target_text(claim: _Claim) -> str:
    started = claim.started_at
    when = f"{started:%Y-%m-%d %H:%M} UTC" if started is not None else "not started"
    return f"episode {claim.episode}, started {when}"


def _hook(settings: Any) -> Any:
    if not settings.alert_webhook_url:
        return None
    from faithflow_ops.providers.alerts import AlertHook

    return AlertHook(settings)


def _alert(hook: Any, settings: Any, doc: dict[str, Any]) -> dict[str, Any]:
    if hook is None:
        return {"skipped": "ALERT_WEBHOOK_URL is not set"}
    try:
        hook.send(doc)
    except ProviderError as exc:
        log.warning("sla alert hook failed", ticket=doc["ticket_id"], error=str(exc))
        return {"ok": False, "error": str(exc)}
    return {"ok": True}
