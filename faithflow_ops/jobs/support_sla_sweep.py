"""`faithflow sla sweep` (POST /tasks/support/sla, CRON_SUPPORT_SLA_SWEEP, default */5): mark SLA
breaches when they happened, warn before them, notify (docs/support.md "The sweep").

plan (read-only; per metric, over open tickets only through the partial indexes
`ix_support_tickets_sla_<metric>_due` / `_warn`, so its cost follows the open tickets):
- `sla_breach`: a running clock whose due time has passed and is not marked;
- `sla_warning`: a clock whose warning time has passed, not warned, not breached, still due in
  the future (a clock found already overdue gets its breach, not a late warning).
Each action shows the ticket, metric, due time and minutes left (negative: overdue).

apply (claims with one conditional UPDATE per metric and kind for a batch, RETURNING the rows
still due — a row someone changed since the plan is `stale`):
- breach: `<m>_breached_at = <m>_due_at` (the moment it happened, never the sweep's time);
- warning: `<m>_warned_at = now`;
then, in the same transaction, one `sla_events` row per claim (UNIQUE ticket, metric, episode,
kind), an e-mail through the outbox to the assignee or, unassigned, FAITHFLOW_SUPPORT_QUEUE_EMAIL
(idempotency key `sla:<ticket>:<metric>:<episode>:<kind>`), and for urgent tickets a POST to
ALERT_WEBHOOK_URL. A failing hook does not fail the sweep: its error is kept in the event's
`data.alert` (and logged); the e-mail still goes out. A second sweep at the same `now` plans
nothing.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Iterator, Sequence
from typing import Any, cast

import structlog
from sqlalchemy import ColumnElement, Table, and_, select, tuple_, update
from sqlalchemy.orm import Session

from faithflow_ops.comms import outbox
from faithflow_ops.db import upsert_insert
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
        found: list[Action] = []
        for metric in METRICS:
            cols = (
                _T.c.id,
                _T.c.priority,
                _T.c.assignee_id,
                _col(metric, "episode"),
                _col(metric, "due_at"),
            )
            for kind, where in (
                ("sla_breach", _breach_due(metric, now)),
                ("sla_warning", _warning_due(metric, now)),
            ):
                for row in session.execute(select(*cols).where(where)):
                    due: dt.datetime = row[4]
                    left = _minutes(due - now)
                    what = "overdue" if kind == "sla_breach" else "due"
                    found.append(
                        Action(
                            kind,
                            f"ticket:{row.id}",
                            f"{LABELS[metric]} {what} {due.isoformat()} ({left:+d} min)",
                            {
                                "ticket_id": row.id,
                                "metric": metric,
                                "episode": row[3],
                                "priority": row.priority,
                                "assignee_id": row.assignee_id,
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
    """Claim, record and notify a batch; 'applied' per claimed action, 'stale' otherwise."""
    now = ctx.now
    groups: dict[tuple[str, str], list[Action]] = defaultdict(list)
    for action in actions:
        if action.kind not in KINDS:
            raise ValueError(f"sla sweep has no action kind {action.kind!r}")
        groups[action.kind, action.data["metric"]].append(action)
    claimed: set[tuple[str, str, int]] = set()
    for (kind, metric), group in groups.items():
        keys = [(int(a.data["ticket_id"]), int(a.data["episode"])) for a in group]
        if kind == "sla_breach":
            where, values = (
                _breach_due(metric, now),
                {f"{metric}_breached_at": _col(metric, "due_at")},
            )
        else:
            where, values = _warning_due(metric, now), {f"{metric}_warned_at": now}
        result = session.execute(
            update(_T)
            .where(tuple_(_T.c.id, _col(metric, "episode")).in_(keys), where)
            .values(updated_at=now, **values)
            .returning(_T.c.id)
        )
        claimed.update((kind, metric, ticket_id) for (ticket_id,) in result)
    if claimed:
        _record_and_notify(session, ctx, claimed)
    return [
        "applied" if (a.kind, a.data["metric"], int(a.data["ticket_id"])) in claimed else "stale"
        for a in actions
    ]


def _record_and_notify(
    session: Session, ctx: JobContext, claimed: set[tuple[str, str, int]]
) -> None:
    now, settings = ctx.now, ctx.settings
    ids = sorted({ticket_id for _, _, ticket_id in claimed})
    tickets = {
        t.id: t for t in session.scalars(select(SupportTicket).where(SupportTicket.id.in_(ids)))
    }
    agents = {
        u.id: u.email
        for u in session.scalars(
            select(User).where(User.id.in_({t.assignee_id for t in tickets.values()} - {None}))
        )
    }
    slugs = dict(
        session.execute(
            select(Tenant.id, Tenant.slug).where(
                Tenant.id.in_({t.tenant_id for t in tickets.values()})
            )
        )
        .tuples()
        .all()
    )
    hook = _hook(settings) if any(tickets[i].priority == "urgent" for _, _, i in claimed) else None
    events: list[dict[str, Any]] = []
    try:
        for kind, metric, ticket_id in sorted(claimed, key=lambda c: (c[2], c[1], c[0])):
            ticket = tickets[ticket_id]
            event = "breach" if kind == "sla_breach" else "warning"
            episode = int(getattr(ticket, f"{metric}_episode"))
            due: dt.datetime = getattr(ticket, f"{metric}_due_at")
            warn_at: dt.datetime | None = getattr(ticket, f"{metric}_warn_at")
            doc = _document(ticket, metric, event, episode, due, now, slugs, agents)
            data: dict[str, Any] = {"notify": _notify(session, settings, ticket, doc, now)}
            if ticket.priority == "urgent":
                data["alert"] = _alert(hook, settings, doc)
            events.append(
                {
                    "ticket_id": ticket.id,
                    "tenant_id": ticket.tenant_id,
                    "metric": metric,
                    "episode": episode,
                    "kind": event,
                    "priority": ticket.priority,
                    # a breach happened at its due time; a warning when it became due
                    "occurred_at": due if event == "breach" else (warn_at or now),
                    "started_at": getattr(ticket, f"{metric}_started_at"),
                    "due_at": due,
                    "assignee_id": ticket.assignee_id,
                    "data": data,
                    "created_at": now,
                }
            )
    finally:
        if hook is not None:
            hook.close()
    unsent = sum(1 for e in events if "skipped" in e["data"]["notify"])
    if unsent:
        log.warning(
            "sla notifications without a recipient: set FAITHFLOW_SUPPORT_QUEUE_EMAIL",
            events=unsent,
        )
    session.execute(
        upsert_insert(session.get_bind().dialect.name, SlaEvent).on_conflict_do_nothing(
            index_elements=["ticket_id", "metric", "episode", "kind"]
        ),
        events,
    )


def _document(
    ticket: SupportTicket,
    metric: str,
    event: str,
    episode: int,
    due: dt.datetime,
    now: dt.datetime,
    slugs: dict[int, str],
    agents: dict[int, str],
) -> dict[str, Any]:
    left = _minutes(due - now)
    return {
        "id": f"sla:{ticket.id}:{metric}:{episode}:{event}",
        "type": f"support.sla_{event}",
        "text": (
            f"ticket #{ticket.id} ({ticket.priority}, {slugs.get(ticket.tenant_id)}): "
            f"{LABELS[metric]} "
            + (f"breached at {due.isoformat()}" if event == "breach" else f"due {due.isoformat()}")
            + f" ({left:+d} min). `faithflow support tickets show {ticket.id}`"
        ),
        "ticket_id": ticket.id,
        "tenant": slugs.get(ticket.tenant_id),
        "subject": ticket.subject,
        "priority": ticket.priority,
        "metric": metric,
        "episode": episode,
        "due_at": due.isoformat(),
        "minutes_left": left,
        "assignee": agents.get(ticket.assignee_id) if ticket.assignee_id else None,
    }


def _notify(
    session: Session, settings: Any, ticket: SupportTicket, doc: dict[str, Any], now: dt.datetime
) -> dict[str, Any]:
    to = doc["assignee"] or settings.support_queue_email
    if not to:  # logged once per batch by _record_and_notify
        return {"skipped": "unassigned and FAITHFLOW_SUPPORT_QUEUE_EMAIL is not set"}
    event = doc["type"].rsplit("_", 1)[1]
    left = int(doc["minutes_left"])
    try:
        queued = outbox.enqueue(
            session,
            channel="email",
            recipient=to,
            template=f"sla_{event}",
            variables={
                "ticket_id": ticket.id,
                "ticket_subject": ticket.subject,
                "tenant_slug": doc["tenant"] or "",
                "priority": ticket.priority,
                "metric_label": LABELS[doc["metric"]],
                "due": dt.datetime.fromisoformat(doc["due_at"]).strftime("%Y-%m-%d %H:%M"),
                "minutes_left": max(left, 0),
                "minutes_overdue": max(-left, 0),
                "assignee": doc["assignee"] or "nobody (the queue)",
                "target": _target_text(ticket, doc["metric"]),
            },
            idempotency_key=doc["id"],
            now=now,
            priority=10 if ticket.priority == "urgent" else 30,
            category="support",
            about=("support_ticket", ticket.id),
        )
    except UserError as exc:  # a malformed address: the breach is still recorded
        return {"to": to, "error": str(exc)}
    return {"to": to, "message_id": queued.id, "status": queued.status}


def _target_text(ticket: SupportTicket, metric: str) -> str:
    started = getattr(ticket, f"{metric}_started_at")
    return f"episode {getattr(ticket, f'{metric}_episode')}, started {started:%Y-%m-%d %H:%M} UTC"


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
