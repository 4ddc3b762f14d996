"""`faithflow sla sweep` (POST /tasks/support/sla, CRON_SUPPORT_SLA_SWEEP, default */5): mark SLA
breaches when they happened, warn before them, e-mail each recipient one digest per batch
(docs/support.md "The sweep").

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
kind; one `INSERT … SELECT` from the claimed tickets per metric and kind), and ONE e-mail per
recipient for the batch through the outbox (template `sla_digest`: its marks listed breaches
first, then by priority and due time): the assignee, or for unassigned tickets
FAITHFLOW_SUPPORT_QUEUE_EMAIL. A digest, not an e-mail per mark: a sweep that finds 300 overdue
clocks (a holiday, an outage of the sweep) must not bury the queue's inbox under 300 messages.
Its idempotency key hashes the marks it reports, and each mark is claimed once, so no digest is
ever queued twice. (A batch that fails is retried mark by mark by the runner: each of those
marks then gets a digest of its own.) Each event's `data.notify` names the digest (`to`,
`message_id`, `status`). With an escalation hook set (ALERT_WEBHOOK_URL, PAGERDUTY_ROUTING_KEY)
an urgent ticket's mark also opens an incident (support/alerts.py; its id in the event's
`data.alert`), which `incidents escalate` sends to those hooks: no hook is called inside this
transaction, and a failing hook is retried there with backoff without touching the sweep. A
malformed address (or a digest the outbox refuses) is kept in the events' `data.notify.error`
and the marks are recorded all the same. A second sweep at the same `now` plans nothing.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections import defaultdict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, cast

import structlog
from sqlalchemy import ColumnElement, Table, and_, func, literal, or_, select, union_all, update
from sqlalchemy.orm import Session

from faithflow_ops.actions import decode, encode
from faithflow_ops.comms import contacts, outbox
from faithflow_ops.db import UTCDateTime, among, json_member, upsert_insert
from faithflow_ops.errors import UserError
from faithflow_ops.jobs.base import Action, Job, JobContext, Outcome, StaleAction
from faithflow_ops.models import SlaEvent, SupportTicket, Tenant, User
from faithflow_ops.models.support import METRICS, PRIORITIES
from faithflow_ops.support import alerts
from faithflow_ops.support.alerts import LABELS
from faithflow_ops.support.clock import minute
from faithflow_ops.support.sla import SlaMark

log = structlog.get_logger("faithflow.sla")

KINDS = ("sla_breach", "sla_warning")
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
        d = decode(SlaMark, action.data)
        # (--json has the due time whole)
        return [(action.kind, d.ticket_id, d.metric, d.priority, minute(d.due_at), d.minutes_left)]

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
        found: list[tuple[str, SlaMark]] = []
        for branch, ticket_id, priority, assignee_id, episode, due in session.execute(query).all():
            kind, metric, _ = branches[branch]
            mark = SlaMark(
                ticket_id, metric, episode, priority, assignee_id, due, _minutes(due - now)
            )
            found.append((kind, mark))
        found.sort(key=lambda km: (km[1].due_at, km[1].ticket_id, km[1].metric))
        if ctx.progress is not None:
            ctx.progress.start(len(found))
        for kind, mark in found:
            what = "overdue" if kind == "sla_breach" else "due"
            left = f"{mark.minutes_left:+d} min"
            reason = f"{LABELS[mark.metric]} {what} {mark.due_at.isoformat()} ({left})"
            yield Action(kind, f"ticket:{mark.ticket_id}", reason, encode(mark))

    def apply(self, session: Session, ctx: JobContext, action: Action) -> None:
        (outcome,) = apply_many(session, ctx, [action])
        if outcome == "stale":
            raise StaleAction(
                f"{action.target} {decode(SlaMark, action.data).metric} changed since the plan "
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
    rows it returns are all the rest needs), the tenants' slugs and the assignees' addresses,
    the digests (`enqueue_many`: one suppression query, one multi-row INSERT), and one
    INSERT … SELECT of sla_events per metric and kind."""
    now = ctx.now
    marks = [decode(SlaMark, action.data) for action in actions]
    groups: dict[tuple[str, str], list[SlaMark]] = defaultdict(list)
    for action, mark in zip(actions, marks, strict=True):
        if action.kind not in KINDS:
            raise ValueError(f"sla sweep has no action kind {action.kind!r}")
        groups[action.kind, mark.metric].append(mark)
    rows: list[tuple[str, str, tuple[Any, ...]]] = []
    dialect = session.get_bind().dialect.name
    for (kind, metric), group in groups.items():
        by_episode: dict[int, list[int]] = defaultdict(list)
        for mark in group:
            by_episode[mark.episode].append(mark.ticket_id)
        planned = or_(
            *(
                and_(_col(metric, "episode") == episode, among(_T.c.id, ids, dialect))
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
            )
        )
        rows.extend((kind, metric, row) for row in result.tuples().all())
    claims = _with_names(session, rows, now)
    if claims:
        _record_and_notify(session, ctx, sorted(claims.values(), key=_Claim.order))
    return [
        "applied" if (a.kind, m.metric, m.ticket_id) in claims else "stale"
        for a, m in zip(actions, marks, strict=True)
    ]


def _with_names(
    session: Session, rows: list[tuple[str, str, tuple[Any, ...]]], now: dt.datetime
) -> dict[tuple[str, str, int], _Claim]:
    """The claims, with the tenants' slugs and the assignees' addresses (two look-ups for the
    batch: cheaper than a subquery per row in the claiming UPDATE's RETURNING)."""
    if not rows:
        return {}
    tenants = {row[1] for _, _, row in rows}
    users = {row[4] for _, _, row in rows if row[4] is not None}
    slugs = dict(
        session.execute(select(Tenant.id, Tenant.slug).where(Tenant.id.in_(tenants))).tuples().all()
    )
    agents: dict[int, str] = {}
    if users:
        agents = dict(
            session.execute(select(User.id, User.email).where(User.id.in_(users))).tuples().all()
        )
    claims: dict[tuple[str, str, int], _Claim] = {}
    for kind, metric, row in rows:
        ticket, tenant, priority, subject, assignee, episode, started, due = row
        claims[kind, metric, ticket] = _Claim(
            kind,
            metric,
            ticket,
            tenant,
            priority,
            subject,
            assignee,
            episode,
            started,
            due,
            slugs.get(tenant),
            agents.get(assignee) if assignee is not None else None,
            _minutes(due - now),
        )
    return claims


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
    tenant: str | None  # the tenant's slug
    assignee: str | None  # the agent's e-mail address; None: the queue
    left: int  # whole minutes to the due time at the sweep's `now` (negative: overdue)

    @property
    def event(self) -> str:
        return "breach" if self.kind == "sla_breach" else "warning"

    def order(self) -> tuple[int, str, str]:
        return (self.ticket_id, self.metric, self.kind)

    @property
    def key(self) -> str:
        """The mark's name: the alert's `id`, and what a digest's idempotency key hashes."""
        return alerts.cause(self.ticket_id, self.metric, self.episode, self.event)


def _record_and_notify(session: Session, ctx: JobContext, claims: list[_Claim]) -> None:
    now, settings = ctx.now, ctx.settings
    notices = _notify_all(session, settings, claims, now)
    unsent = sum(1 for n in notices if "skipped" in n)
    if unsent:
        log.warning(
            "sla notifications without a recipient: set FAITHFLOW_SUPPORT_QUEUE_EMAIL",
            events=unsent,
        )
    alerting = alerts.enabled(settings)
    urgent = [
        alerts.Mark(
            c.ticket_id, c.tenant_id, c.metric, c.episode, c.event, c.due_at, c.subject, c.assignee
        )
        for c in claims
        if alerting and c.priority == alerts.ALERTED
    ]
    incidents = alerts.raise_marks(session, urgent, now=now)
    data: dict[tuple[str, str], dict[int, dict[str, Any]]] = defaultdict(dict)
    for claim, notice in zip(claims, notices, strict=True):
        note: dict[str, Any] = {"notify": notice}
        if claim.key in incidents:
            note["alert"] = {"incident": incidents[claim.key]}
        data[claim.kind, claim.metric][claim.ticket_id] = note
    for (kind, metric), notes in data.items():
        _insert_events(session, now, kind, metric, notes)


def _insert_events(
    session: Session, now: dt.datetime, kind: str, metric: str, notes: dict[int, dict[str, Any]]
) -> None:
    """The sla_events rows of one (kind, metric) group of claims, as ONE `INSERT … SELECT`
    from the tickets just claimed (the clock's columns never make a round trip through Python;
    only each event's `data` travels, as one JSON object keyed by ticket id)."""
    dialect = session.get_bind().dialect.name
    breach = kind == "sla_breach"
    at = literal(now, UTCDateTime())
    rows = select(
        _T.c.id,
        _T.c.tenant_id,
        literal(metric),
        _col(metric, "episode"),
        literal("breach" if breach else "warning"),
        _T.c.priority,
        # a breach happened at its due time; a warning when it became due
        _col(metric, "due_at") if breach else func.coalesce(_col(metric, "warn_at"), at),
        _col(metric, "started_at"),
        _col(metric, "due_at"),
        _T.c.assignee_id,
        json_member({str(k): v for k, v in notes.items()}, _T.c.id, dialect),
        at,
    ).where(among(_T.c.id, list(notes), dialect))
    columns = ["ticket_id", "tenant_id", "metric", "episode", "kind", "priority", "occurred_at"]
    columns += ["started_at", "due_at", "assignee_id", "data", "created_at"]
    session.execute(
        upsert_insert(dialect, _EVENTS)
        .from_select(columns, rows)
        .on_conflict_do_nothing(index_elements=["ticket_id", "metric", "episode", "kind"])
    )


def _notify_all(
    session: Session,
    settings: Any,
    claims: Sequence[_Claim],
    now: dt.datetime,
) -> list[dict[str, Any]]:
    """One digest e-mail per recipient for the batch, through the outbox at once; per claim
    what happened (`to` and the digest's `message_id`/`status`, or `error` for a malformed
    address or a digest the outbox refused, or `skipped`). A bad address never stops the
    other recipients' digests: the marks are recorded all the same."""
    notices: list[dict[str, Any]] = [{} for _ in claims]
    by_address: dict[str, list[int]] = defaultdict(list)
    for n, claim in enumerate(claims):
        to = claim.assignee or settings.support_queue_email
        if not to:  # logged once per batch by _record_and_notify
            notices[n] = {"skipped": "unassigned and FAITHFLOW_SUPPORT_QUEUE_EMAIL is not set"}
            continue
        try:
            address = contacts.normalize("email", to)
        except UserError as exc:
            notices[n] = {"to": to, "error": str(exc)}
            continue
        notices[n] = {"to": address}  # as the digest's recipient is written
        by_address[address].append(n)
    messages = [
        _digest(address, [claims[n] for n in members], now)
        for address, members in by_address.items()
    ]
    groups = list(by_address.values())
    queued: list[outbox.Enqueued | UserError]
    try:
        queued = list(outbox.enqueue_many(session, messages, now=now))
    except UserError:
        # a digest the outbox refuses (nothing of the batch was written): find it, keep the rest
        queued = []
        for message in messages:
            try:
                queued.append(outbox.enqueue_many(session, [message], now=now)[0])
            except UserError as exc:
                queued.append(exc)
    for result, members in zip(queued, groups, strict=True):
        for n in members:
            if isinstance(result, UserError):
                notices[n]["error"] = str(result)
            else:
                notices[n].update(message_id=result.id, status=result.status)
    return notices


DIGEST_ITEMS = 100  # marks listed in one e-mail; the rest are counted, with where to see them
_RANK = {p: n for n, p in enumerate(reversed(PRIORITIES))}  # urgent first


def _digest(address: str, marks: list[_Claim], now: dt.datetime) -> outbox.Message:
    """The e-mail telling one recipient what this batch marked for them: breaches first, then
    the most urgent, then the earliest due. Keyed by the marks it reports (each is claimed once,
    so a digest is never queued twice for the same marks)."""
    marks = sorted(marks, key=_listed)
    breaches = sum(1 for m in marks if m.event == "breach")
    counts = ", ".join(
        _plural(n, word)
        for n, word in ((breaches, "breach"), (len(marks) - breaches, "warning"))
        if n
    )
    claim = marks[0]
    first = f"ticket #{claim.ticket_id}: {LABELS[claim.metric]} " + (
        f"overdue since {minute(claim.due_at)}"
        if claim.event == "breach"
        else f"due in {max(claim.left, 0)} min"
    )
    if len(marks) == 1:
        headline = f"[SLA {claim.event}] {first} ({claim.priority})"
    else:
        headline = f"[SLA] {counts}: {first} ({claim.priority}) and {len(marks) - 1} more"
    mine, queue = any(m.assignee for m in marks), any(not m.assignee for m in marks)
    scope = " and ".join(
        what
        for what, present in (
            ("tickets assigned to you", mine),
            ("unassigned tickets (the support queue)", queue),
        )
        if present
    )
    listed = [_item(m) for m in marks[:DIGEST_ITEMS]]
    more = len(marks) - len(listed)
    reported = "\n".join(m.key for m in marks)
    digest = hashlib.sha256(f"{address}\n{reported}".encode()).hexdigest()[:24]
    return outbox.Message(
        channel="email",
        recipient=address,
        template="sla_digest",
        variables={
            "headline": headline,
            "counts": counts,
            "scope": scope,
            "swept": minute(now),
            "items": "\n\n".join(listed),
            "more": f"\n… and {more} more, not listed here.\n" if more else "",
        },
        idempotency_key=f"sla:digest:{now:%Y%m%dT%H%M%SZ}:{digest}",
        priority=10 if any(m.priority == "urgent" for m in marks) else 30,
        category="support",
        about=("support_ticket", claim.ticket_id) if len(marks) == 1 else None,
    )


def _listed(claim: _Claim) -> tuple[bool, int, dt.datetime, tuple[int, str, str]]:
    return (claim.event != "breach", _RANK[claim.priority], claim.due_at, claim.order())


def _item(claim: _Claim) -> str:
    """A mark as the digest lists it: what, when, the ticket, and the command to open it."""
    left = claim.left
    due = f"{minute(claim.due_at)} UTC"
    if claim.event == "breach":
        what = f"BREACHED at {due} ({-left} min overdue)" if left < 0 else f"BREACHED at {due}"
    else:
        what = f"due {due} (in {max(left, 0)} min)"
    started = claim.started_at
    since = f"{minute(started)} UTC" if started is not None else "not started"
    return (
        f"- #{claim.ticket_id} [{claim.priority}] {LABELS[claim.metric]} {what}\n"
        f'  "{claim.subject}" · {claim.tenant or "?"} · assigned to '
        f"{claim.assignee or 'nobody (the queue)'} · episode {claim.episode}, started {since}\n"
        f"  faithflow support tickets show {claim.ticket_id}"
    )


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}es" if word.endswith("ch") else f"{n} {word}s"
