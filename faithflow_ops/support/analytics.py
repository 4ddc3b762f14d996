"""Support analytics (`support analytics`, `sla analytics`) for a period [since, until).

What each figure counts (docs/support.md, "Analytics"):

- created: tickets opened in the period; solved: tickets whose (latest) solve is in the period.
- first response time: tickets opened in the period that have had an agent reply, from opening
  to the first public agent reply; resolution time: tickets solved in the period, from opening to
  the solve (full resolution time: pending time included). Each as median and p90 (linear
  interpolation between ranks, as Postgres `percentile_cont`), in calendar minutes and in
  business minutes of the support calendar (`sla calendar`).
- reopen rate: of the tickets opened in the period that were ever solved, the share reopened.
- SLA achievement per metric, from `sla_events` in the period: clocks met (a `fulfilled` event
  within target) and clocks breached (a `breach` event, recorded at the due time); achievement
  = met / (met + breached). A clock breached and then fulfilled counts once, as breached.
- backlog: unsolved tickets at the end of each UTC day of the period (opened, not yet solved).
- deflection rate: of the tickets solved in the period, the share solved as `deflected`; top
  deflecting articles: `resolved_by` links in the period per article, with their `sent` links.

`--by priority|agent|tenant` splits every figure but the backlog and the article ranking
(SLA events are split by the priority/assignee recorded on the event itself). Counts are SQL
aggregates; the percentiles read two timestamps per ticket in the period (streamed) and compute
business time with a cumulative index of the calendar's working time (two binary searches a
ticket), so 100k tickets take about a second.
"""

from __future__ import annotations

import bisect
import datetime as dt
import math
from collections import defaultdict
from collections.abc import Iterable
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import and_, case, func, select
from sqlalchemy.orm import Session

from faithflow_ops.errors import UserError, one_of
from faithflow_ops.models import KbArticle, SlaEvent, SupportTicket, Tenant, TicketKbLink, User
from faithflow_ops.models.support import METRICS
from faithflow_ops.support import clock, policies

BY = ("priority", "agent", "tenant")
ALL = "all"
DEFAULT_PERIOD = dt.timedelta(days=30)  # no --since: the 30 days before --until
TOP_ARTICLES = 10
_PRIORITY_ORDER = {"urgent": 0, "high": 1, "normal": 2, "low": 3}


# ---------------------------------------------------------------- arithmetic


def percentile(sorted_values: list[float], p: float) -> float | None:
    """Linear interpolation between closest ranks (Postgres `percentile_cont`)."""
    if not sorted_values:
        return None
    pos = p * (len(sorted_values) - 1)
    lo = math.floor(pos)
    hi = min(lo + 1, len(sorted_values) - 1)
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (pos - lo)


def _rate(part: int, whole: int) -> float | None:
    return round(part / whole, 4) if whole else None


class BusinessTime:
    """Working seconds between instants, for many pairs: the calendar's working ranges over a
    span, with the working seconds before each range (bisect, not a day-by-day walk)."""

    def __init__(self, calendar: clock.Calendar, start: dt.datetime, end: dt.datetime) -> None:
        self.starts: list[dt.datetime] = []
        self.ends: list[dt.datetime] = []
        self.before: list[float] = []
        zone = ZoneInfo(calendar.timezone)
        day = start.astimezone(zone).date() - dt.timedelta(days=1)
        last = end.astimezone(zone).date() + dt.timedelta(days=1)
        total = 0.0
        while day <= last:
            for lo, hi in clock.working_ranges(calendar, day):
                self.starts.append(lo)
                self.ends.append(hi)
                self.before.append(total)
                total += (hi - lo).total_seconds()
            day += dt.timedelta(days=1)

    def _upto(self, when: dt.datetime) -> float:
        naive = when.astimezone(dt.UTC).replace(tzinfo=None)
        i = bisect.bisect_right(self.starts, naive) - 1
        if i < 0:
            return 0.0
        return self.before[i] + min(
            (naive - self.starts[i]).total_seconds(),
            (self.ends[i] - self.starts[i]).total_seconds(),
        )

    def seconds(self, start: dt.datetime, end: dt.datetime) -> int:
        """Working seconds in [start, end), as clock.seconds_between counts them."""
        if end <= start:
            return 0
        return int(self._upto(end) - self._upto(start))


# ---------------------------------------------------------------- queries


def _key(model: Any, by: str | None) -> Any:
    if by is None:
        return None
    return {"priority": model.priority, "agent": model.assignee_id, "tenant": model.tenant_id}[by]


def _grouped(
    session: Session, by: str | None, model: Any, columns: list[Any], *where: Any
) -> dict[Any, tuple[Any, ...]]:
    """{group key (or ALL): aggregate values} for one SELECT … GROUP BY key."""
    key = _key(model, by)
    stmt = select(*([key] if key is not None else []), *columns).where(*where)
    if key is not None:
        stmt = stmt.group_by(key)
    out: dict[Any, tuple[Any, ...]] = {}
    for row in session.execute(stmt):
        values = tuple(row)
        if key is not None:
            out[values[0]] = values[1:]
        else:
            out[ALL] = values
    return out


def _durations(
    session: Session,
    by: str | None,
    end_column: Any,
    where: list[Any],
    business: BusinessTime,
) -> dict[Any, dict[str, list[float]]]:
    key = _key(SupportTicket, by)
    stmt = (
        select(*([key] if key is not None else []), SupportTicket.opened_at, end_column)
        .where(*where)
        .execution_options(yield_per=10_000)
    )
    out: dict[Any, dict[str, list[float]]] = defaultdict(lambda: {"calendar": [], "business": []})
    for row in session.execute(stmt):
        group = row[0] if key is not None else ALL
        opened, ended = row[-2], row[-1]
        out[group]["calendar"].append(max((ended - opened).total_seconds(), 0.0) / 60)
        out[group]["business"].append(business.seconds(opened, ended) / 60)
    return out


def _summary(values: dict[str, list[float]] | None) -> dict[str, Any]:
    doc: dict[str, Any] = {"count": 0}
    for unit in ("calendar", "business"):
        xs = sorted(values[unit]) if values else []
        doc["count"] = len(xs)
        median, p90 = percentile(xs, 0.5), percentile(xs, 0.9)
        doc[unit] = {
            "median_minutes": round(median, 1) if median is not None else None,
            "p90_minutes": round(p90, 1) if p90 is not None else None,
        }
    return doc


def _sla(session: Session, by: str | None, since: dt.datetime, until: dt.datetime) -> Any:
    met = func.sum(
        case((and_(SlaEvent.kind == "fulfilled", SlaEvent.within_target.is_(True)), 1), else_=0)
    )
    breached = func.sum(case((SlaEvent.kind == "breach", 1), else_=0))
    key = _key(SlaEvent, by)
    stmt = (
        select(*([key] if key is not None else []), SlaEvent.metric, met, breached)
        .where(
            SlaEvent.kind.in_(("fulfilled", "breach")),
            SlaEvent.occurred_at >= since,
            SlaEvent.occurred_at < until,
        )
        .group_by(*([key] if key is not None else []), SlaEvent.metric)
    )
    out: dict[Any, dict[str, dict[str, Any]]] = defaultdict(dict)
    for row in session.execute(stmt):
        group = row[0] if key is not None else ALL
        metric, achieved, missed = row[-3], int(row[-2] or 0), int(row[-1] or 0)
        out[group][metric] = {
            "achieved": achieved,
            "breached": missed,
            "rate": _rate(achieved, achieved + missed),
        }
    return out


def labels_for(session: Session, by: str | None, keys: Iterable[Any]) -> dict[Any, str]:
    keys = [k for k in keys if k is not None and k != ALL]
    labels: dict[Any, str] = {None: "unassigned" if by == "agent" else "none", ALL: ALL}
    # (a Result has .keys(): dict.update() would read it as a mapping, so loop over rows)
    if by == "agent" and keys:
        for user_id, email in session.execute(
            select(User.id, User.email).where(User.id.in_(keys))
        ).tuples():
            labels[user_id] = email
    elif by == "tenant" and keys:
        for tenant_id, slug in session.execute(
            select(Tenant.id, Tenant.slug).where(Tenant.id.in_(keys))
        ).tuples():
            labels[tenant_id] = slug
    else:
        labels.update({k: str(k) for k in keys})
    return labels


def _day_expr(session: Session, column: Any) -> Any:
    if session.get_bind().dialect.name == "postgresql":
        return func.to_char(func.timezone("UTC", column), "YYYY-MM-DD")
    return func.substr(column, 1, 10)  # SQLite stores UTC text 'YYYY-MM-DD HH:MM:SS.ffffff'


def backlog(session: Session, since: dt.datetime, until: dt.datetime) -> list[dict[str, Any]]:
    """Unsolved tickets at the end of each UTC day in [since, until) (the last day ends at
    `until`): opened before then, minus solved before then. Four aggregate queries."""
    opened_before = session.scalar(
        select(func.count()).select_from(SupportTicket).where(SupportTicket.opened_at < since)
    )
    solved_before = session.scalar(
        select(func.count())
        .select_from(SupportTicket)
        .where(SupportTicket.solved_at < since, SupportTicket.opened_at < since)
    )
    per_day: dict[str, int] = defaultdict(int)
    opened_day = _day_expr(session, SupportTicket.opened_at)
    for day, count in session.execute(
        select(opened_day, func.count())
        .where(SupportTicket.opened_at >= since, SupportTicket.opened_at < until)
        .group_by(opened_day)
    ).tuples():
        per_day[str(day)] += int(count)
    solved_day = _day_expr(session, SupportTicket.solved_at)
    for day, count in session.execute(
        select(solved_day, func.count())
        .where(SupportTicket.solved_at >= since, SupportTicket.solved_at < until)
        .group_by(solved_day)
    ).tuples():
        per_day[str(day)] -= int(count)
    # tickets opened before `since` and solved in the period were counted open at `since`;
    # tickets opened and solved within it appear in both sums: either way the running sum holds
    running = int(opened_before or 0) - int(solved_before or 0)
    out = []
    day = since.astimezone(dt.UTC).date()
    last = (until - dt.timedelta(microseconds=1)).astimezone(dt.UTC).date()
    while day <= last:
        running += per_day.get(day.isoformat(), 0)
        out.append({"date": day.isoformat(), "open": running})
        day += dt.timedelta(days=1)
    return out


def deflection(session: Session, since: dt.datetime, until: dt.datetime) -> dict[str, Any]:
    """Deflection over the period and the articles that deflected most."""
    in_period = (TicketKbLink.at >= since, TicketKbLink.at < until)
    sent = (
        session.scalar(
            select(func.count(func.distinct(TicketKbLink.ticket_id))).where(
                TicketKbLink.kind == "sent", *in_period
            )
        )
        or 0
    )
    confirmed = (
        session.scalar(
            select(func.count(func.distinct(TicketKbLink.ticket_id))).where(
                TicketKbLink.kind == "resolved_by", *in_period
            )
        )
        or 0
    )
    deflections = func.count().label("deflections")
    top = session.execute(
        select(TicketKbLink.article_id, deflections)
        .where(TicketKbLink.kind == "resolved_by", *in_period)
        .group_by(TicketKbLink.article_id)
        .order_by(deflections.desc(), TicketKbLink.article_id)
        .limit(TOP_ARTICLES)
    ).all()
    ids = [row.article_id for row in top]
    articles = {a.id: a for a in session.scalars(select(KbArticle).where(KbArticle.id.in_(ids)))}
    sent_by_article: dict[int, int] = {}
    for article_id, count in session.execute(
        select(TicketKbLink.article_id, func.count())
        .where(TicketKbLink.kind == "sent", TicketKbLink.article_id.in_(ids), *in_period)
        .group_by(TicketKbLink.article_id)
    ).tuples():
        sent_by_article[article_id] = int(count)
    return {
        "sent": int(sent),
        "confirmed": int(confirmed),
        "confirmation_rate": _rate(int(confirmed), int(sent)),
        "top_articles": [
            {
                "slug": articles[row.article_id].slug,
                "title": articles[row.article_id].title,
                "deflections": int(row.deflections),
                "sent": int(sent_by_article.get(row.article_id, 0)),
            }
            for row in top
        ],
    }


# ---------------------------------------------------------------- reports


def period(since: dt.datetime | None, until: dt.datetime) -> tuple[dt.datetime, dt.datetime]:
    """The report's period [since, until): `since` defaults to DEFAULT_PERIOD before `until`;
    a period that does not run forward is refused."""
    start = since if since is not None else until - DEFAULT_PERIOD
    if start >= until:
        raise UserError(
            f"--since {start.isoformat()} is not before --until {until.isoformat()}; "
            "give a period that runs forward"
        )
    return start, until


def _check(by: str | None, since: dt.datetime, until: dt.datetime) -> None:
    if by is not None:
        one_of("--by", by, BY)
    period(since, until)


def _time_metrics(
    session: Session, by: str | None, since: dt.datetime, until: dt.datetime
) -> tuple[dict[Any, Any], dict[Any, Any], dict[str, Any]]:
    cal = policies.load_calendar(session)
    # the span the business-time index must cover: solves in the period may have opened
    # before it, and first replies to tickets opened in it may come after it
    earliest = session.scalar(
        select(func.min(SupportTicket.opened_at)).where(
            SupportTicket.solved_at >= since, SupportTicket.solved_at < until
        )
    )
    latest = session.scalar(
        select(func.max(SupportTicket.first_responded_at)).where(
            SupportTicket.opened_at >= since, SupportTicket.opened_at < until
        )
    )
    business = BusinessTime(
        cal,
        min(earliest, since) if earliest is not None else since,
        max(latest, until) if latest is not None else until,
    )
    first = _durations(
        session,
        by,
        SupportTicket.first_responded_at,
        [
            SupportTicket.opened_at >= since,
            SupportTicket.opened_at < until,
            SupportTicket.first_responded_at.is_not(None),
        ],
        business,
    )
    resolution = _durations(
        session,
        by,
        SupportTicket.solved_at,
        [SupportTicket.solved_at >= since, SupportTicket.solved_at < until],
        business,
    )
    return first, resolution, {"timezone": cal.timezone}


def _order(by: str | None, keys: Iterable[Any], labels: dict[Any, str]) -> list[Any]:
    if by == "priority":
        return sorted(keys, key=lambda k: _PRIORITY_ORDER.get(k, 9))
    return sorted(keys, key=lambda k: (k is None, labels.get(k, str(k))))


def support_report(
    session: Session, *, since: dt.datetime, until: dt.datetime, by: str | None = None
) -> dict[str, Any]:
    """Every support figure for [since, until), overall and per group (`by`)."""
    _check(by, since, until)
    doc = _report(session, since, until, by, full=True)
    doc["backlog"] = backlog(session, since, until)
    doc["deflection"] = deflection(session, since, until)
    return doc


def sla_report(
    session: Session, *, since: dt.datetime, until: dt.datetime, by: str | None = None
) -> dict[str, Any]:
    """The SLA view: achievement per metric and the response/resolution times."""
    _check(by, since, until)
    return _report(session, since, until, by, full=False)


def _report(
    session: Session, since: dt.datetime, until: dt.datetime, by: str | None, *, full: bool
) -> dict[str, Any]:
    first, resolution, calendar = _time_metrics(session, by, since, until)
    sla = _sla(session, by, since, until)
    groups_sla = sla
    created = solved = reopen = {}
    if full:
        opened = (SupportTicket.opened_at >= since, SupportTicket.opened_at < until)
        ever_solved = (SupportTicket.solved_at.is_not(None)) | (SupportTicket.reopen_count > 0)
        created_reopen = _grouped(
            session,
            by,
            SupportTicket,
            [
                func.count(),
                func.sum(case((ever_solved, 1), else_=0)),
                func.sum(case((SupportTicket.reopen_count > 0, 1), else_=0)),
            ],
            *opened,
        )
        created = {k: int(v[0]) for k, v in created_reopen.items()}
        reopen = {k: (int(v[1] or 0), int(v[2] or 0)) for k, v in created_reopen.items()}
        solved_rows = _grouped(
            session,
            by,
            SupportTicket,
            [
                func.count(),
                func.sum(case((SupportTicket.resolution == "deflected", 1), else_=0)),
            ],
            SupportTicket.solved_at >= since,
            SupportTicket.solved_at < until,
        )
        solved = {k: (int(v[0]), int(v[1] or 0)) for k, v in solved_rows.items()}

    def metrics(group: Any) -> dict[str, Any]:
        doc: dict[str, Any] = {}
        if full:
            n_solved, n_deflected = solved.get(group, (0, 0))
            ever, reopened = reopen.get(group, (0, 0))
            doc["created"] = created.get(group, 0)
            doc["solved"] = n_solved
        doc["first_response"] = _summary(first.get(group))
        doc["resolution"] = _summary(resolution.get(group))
        if full:
            doc["reopen"] = {"solved": ever, "reopened": reopened, "rate": _rate(reopened, ever)}
        doc["sla"] = {
            m: groups_sla.get(group, {}).get(m, {"achieved": 0, "breached": 0, "rate": None})
            for m in METRICS
        }
        if full:
            doc["deflected"] = n_deflected
            doc["deflection_rate"] = _rate(n_deflected, n_solved)
        return doc

    report: dict[str, Any] = {
        "since": since,
        "until": until,
        "by": by,
        "calendar": calendar,
    }
    if by is None:
        report["totals"] = metrics(ALL)
        report["groups"] = []
        return report
    keys = set(first) | set(resolution) | set(sla) | set(created) | set(solved)
    labels = labels_for(session, by, keys)
    report["groups"] = [
        {"key": labels.get(k, str(k)), **metrics(k)} for k in _order(by, keys, labels)
    ]
    # the overall figures, computed once more without the split (percentiles do not add up)
    report["totals"] = _report(session, since, until, None, full=full)["totals"]
    return report
