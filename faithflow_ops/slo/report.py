"""`faithflow slo report`: the objectives measured from the database alone, for deployments
without Prometheus — job_runs, webhook_events and outbound_messages over a window.

What the database can and cannot see (docs/slo.md):
- availability and latency of receiver routes (webhook ingest, task endpoints): the receiver's
  request tallies (slo.tallies), counted in memory and written once a minute, so 5xx answers
  given while the database was down are written when it is back. Not seen: answers never
  given by the receiver (process down, the platform's proxy answering 502) and the last
  minute of counts of a process that died; the window is read to the hour;
- webhook apply latency: first_received_at (the acknowledgement) to applied_at; a delivery
  still waiting longer than the threshold is bad too;
- job success: recorded runs (not previews) that failed or were abandoned, per job;
- outbox delivery: messages finished in the window that failed or are `unknown`;
- freshness and backlogs: as of `now`.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import and_, func, select
from sqlalchemy.orm import Session

from faithflow_ops.models import JobRun, OutboundMessage, WebhookEvent
from faithflow_ops.models.webhooks import WEBHOOK_WAITING
from faithflow_ops.slo.spec import Objective, Spec, freshness_limits
from faithflow_ops.slo.state import BAD_RUNS, GOOD_RUNS, SENT_MESSAGES, UNSENT_MESSAGES

WORST = 5  # offenders listed per objective


@dataclass
class Line:
    """One objective's result."""

    name: str
    kind: str
    objective: float | None
    good: int | None = None
    total: int | None = None
    status: str = "ok"  # ok | breached | n/a | no data
    note: str | None = None
    worst: list[dict[str, Any]] = field(default_factory=list)
    budget: float | None = None

    @property
    def sli(self) -> float | None:
        if self.total is None or self.good is None or self.total == 0:
            return None
        return self.good / self.total

    @property
    def budget_left(self) -> float | None:
        """Share of the error budget left (1 = untouched, 0 = spent, below 0 = overspent)."""
        if self.sli is None or not self.budget:
            return None
        return 1 - (1 - self.sli) / self.budget

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "kind": self.kind,
            "objective": self.objective,
            "status": self.status,
            "sli": None if self.sli is None else round(self.sli, 6),
            "budget_left": None if self.budget_left is None else round(self.budget_left, 4),
            "good": self.good,
            "total": self.total,
            "note": self.note,
            "worst": self.worst,
        }


def build(session: Session, spec: Spec, *, now: dt.datetime, since: dt.datetime) -> list[Line]:
    lines = []
    for o in spec.objectives:
        line = _measure(session, o, now, since)
        if o.has_budget:
            line.budget = o.budget
            if line.status == "ok" and line.sli is None:
                line.status = "no data"
            elif line.sli is not None and o.objective is not None:
                line.status = "ok" if line.sli * 100 >= o.objective else "breached"
        lines.append(line)
    return lines


def _measure(session: Session, o: Objective, now: dt.datetime, since: dt.datetime) -> Line:
    line = Line(o.name, o.kind, o.objective)
    if o.kind in ("availability", "latency"):
        _requests(session, line, o, since, now)
    elif o.kind == "apply_latency":
        assert o.threshold_seconds is not None
        _apply_latency(session, line, since, now, o.threshold_seconds)
    elif o.kind == "job_success":
        _job_success(session, line, o, since, now)
    elif o.kind == "outbox_delivery":
        _outbox(session, line, since, now)
    elif o.kind == "freshness":
        _freshness(session, line, o, now)
    elif o.kind == "backlog":
        _backlog(session, line, o, now)
    return line


def _runs(since: dt.datetime, now: dt.datetime) -> Any:
    return and_(
        JobRun.dry_run.is_(False),
        JobRun.started_at >= since,
        JobRun.started_at < now,
        JobRun.status.in_((*GOOD_RUNS, *BAD_RUNS)),
    )


def _requests(
    session: Session, line: Line, o: Objective, since: dt.datetime, now: dt.datetime
) -> None:
    """Answers on the objective's routes that were not refusals (4xx): for availability the
    bad ones are 5xx, for latency those slower than the threshold."""
    from faithflow_ops.slo.tallies import le_value, read

    assert o.routes is not None
    line.note = "from the receiver's request tallies, by the hour"
    pattern = re.compile(o.routes)
    per: dict[str, list[int]] = {}  # route: [good, total]
    for route, status_class, le, n in read(session, since, now):
        if status_class == "4xx" or not pattern.fullmatch(route):
            continue
        if o.kind == "availability":
            good = status_class != "5xx"
        else:
            assert o.threshold_seconds is not None
            good = le_value(le) <= o.threshold_seconds
        counts = per.setdefault(route, [0, 0])
        counts[0] += n if good else 0
        counts[1] += n
    line.good = sum(g for g, _ in per.values())
    line.total = sum(t for _, t in per.values())
    what = "5xx" if o.kind == "availability" else "slow"
    line.worst = [
        {"route": route, what: total - good, "requests": total}
        for route, (good, total) in sorted(per.items(), key=lambda kv: kv[1][0] - kv[1][1])
        if total > good
    ][:WORST]


def _tally(line: Line, rows: Any) -> None:
    per: dict[str, list[int]] = {}
    for job, status, count in rows:
        good_total = per.setdefault(job, [0, 0])
        good_total[1] += count
        if status in GOOD_RUNS:
            good_total[0] += count
    line.good = sum(g for g, _ in per.values())
    line.total = sum(t for _, t in per.values())
    line.worst = [
        {"job": job, "bad": total - good, "runs": total}
        for job, (good, total) in sorted(
            per.items(), key=lambda kv: (kv[1][0] - kv[1][1], kv[1][0] / kv[1][1])
        )
        if total > good
    ][:WORST]


def _job_success(
    session: Session, line: Line, o: Objective, since: dt.datetime, now: dt.datetime
) -> None:
    rows = [
        row
        for row in session.execute(
            select(JobRun.job, JobRun.status, func.count())
            .where(_runs(since, now))
            .group_by(JobRun.job, JobRun.status)
        ).all()
        if o.covers(row[0])
    ]
    _tally(line, rows)
    for item in line.worst:  # the latest error says why (a run without a message says nothing)
        item["last_error"] = session.scalar(
            select(JobRun.error)
            .where(
                _runs(since, now),
                JobRun.job == item["job"],
                JobRun.status.in_(BAD_RUNS),
                JobRun.error.is_not(None),
            )
            .order_by(JobRun.started_at.desc(), JobRun.id.desc())
            .limit(1)
        )


def _apply_latency(
    session: Session, line: Line, since: dt.datetime, now: dt.datetime, threshold: float
) -> None:
    limit = dt.timedelta(seconds=threshold)
    rows = session.execute(
        select(
            WebhookEvent.provider,
            WebhookEvent.event_type,
            WebhookEvent.status,
            WebhookEvent.first_received_at,
            WebhookEvent.applied_at,
        ).where(WebhookEvent.first_received_at >= since, WebhookEvent.first_received_at < now)
    ).all()
    good = total = 0
    bad: dict[tuple[str, str], int] = {}
    for provider, event_type, status, received, applied in rows:
        if status in WEBHOOK_WAITING:
            if now - received <= limit:
                continue  # still within its time: not decided yet
            ok = False
        else:
            ok = applied is not None and applied - received <= limit
        total += 1
        if ok:
            good += 1
        else:
            bad[(provider, event_type)] = bad.get((provider, event_type), 0) + 1
    line.good, line.total = good, total
    line.worst = [
        {"provider": p, "event_type": t, "late_or_waiting": n}
        for (p, t), n in sorted(bad.items(), key=lambda kv: -kv[1])
    ][:WORST]


def _outbox(session: Session, line: Line, since: dt.datetime, now: dt.datetime) -> None:
    finished = (*SENT_MESSAGES, *UNSENT_MESSAGES)
    window = and_(
        OutboundMessage.status.in_(finished),
        OutboundMessage.updated_at >= since,
        OutboundMessage.updated_at < now,
    )
    rows = session.execute(
        select(
            OutboundMessage.channel, OutboundMessage.template, OutboundMessage.status, func.count()
        )
        .where(window)
        .group_by(OutboundMessage.channel, OutboundMessage.template, OutboundMessage.status)
    ).all()
    line.total = sum(n for *_, n in rows)
    line.good = sum(n for _, _, status, n in rows if status in SENT_MESSAGES)
    bad: dict[tuple[str, str], int] = {}
    for channel, template, status, n in rows:
        if status in UNSENT_MESSAGES:
            bad[(channel, template)] = bad.get((channel, template), 0) + n
    line.worst = [
        {"channel": c, "template": t, "unsent": n}
        for (c, t), n in sorted(bad.items(), key=lambda kv: -kv[1])
    ][:WORST]


def _freshness(session: Session, line: Line, o: Objective, now: dt.datetime) -> None:
    limits = freshness_limits(o)
    last: dict[str, dt.datetime | None] = {
        job: finished
        for job, finished in session.execute(
            select(JobRun.job, func.max(JobRun.finished_at))
            .where(JobRun.dry_run.is_(False), JobRun.status.in_(GOOD_RUNS))
            .group_by(JobRun.job)
        )
    }
    stale: list[dict[str, Any]] = []
    for job, limit in limits.items():
        when = last.get(job)
        age = None if when is None else (now - _aware(when)).total_seconds()
        if age is None or age > limit:
            stale.append(
                {
                    "job": job,
                    "last_success": None if when is None else _aware(when).isoformat(),
                    "age_seconds": None if age is None else round(age),
                    "limit_seconds": round(limit),
                }
            )
    line.total, line.good = len(limits), len(limits) - len(stale)
    line.status = "breached" if stale else "ok"
    line.note = f"{line.good} of {line.total} jobs fresh"
    never = float("inf")  # a job that never succeeded is the worst
    line.worst = sorted(stale, key=lambda s: -(s["age_seconds"] or never))[:WORST]


def _backlog(session: Session, line: Line, o: Objective, now: dt.datetime) -> None:
    from faithflow_ops.slo.state import outbox_backlog
    from faithflow_ops.webhooks.applier import backlog

    assert o.max_age_seconds is not None
    count, age = backlog(session, now) if o.queue == "webhook" else outbox_backlog(session, now)
    line.status = "breached" if age > o.max_age_seconds else "ok"
    line.note = f"{count} waiting, oldest {round(age)} s (limit {o.max_age_seconds:g} s)"


def _aware(value: dt.datetime) -> dt.datetime:
    return value if value.tzinfo is not None else value.replace(tzinfo=dt.UTC)
