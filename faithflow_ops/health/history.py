"""Reading the stored health results back: `health status` (current state per check and its
uptime) and `health history`.

Uptime over a window = the share of a check's results in that window that were `ok` or
`warn` (the service answered, maybe slowly or late), out of its results that were not
`skipped` (an unconfigured provider is neither up nor down). Computed in SQL from
health_checks (`ix_health_checks_check_at`). No results in the window: no figure (None).

`checks` is every check the sweep runs, in its order (`jobs.health_sweep.check_names()`, which
knows the registered jobs; health never imports jobs).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from sqlalchemy import and_, case, func, select

from faithflow_ops.errors import UserError
from faithflow_ops.models import HealthCheckResult, Incident

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

WINDOWS = {"24h": dt.timedelta(hours=24), "30d": dt.timedelta(days=30)}


def known_check(session: Session, name: str, checks: Sequence[str]) -> str:
    """`name` when the sweep runs such a check (one of `checks`) or history holds one, else a
    UserError."""
    key = name.strip()
    if key in checks:
        return key
    stored = session.scalar(
        select(HealthCheckResult.id).where(HealthCheckResult.check_name == key).limit(1)
    )
    if stored is not None:
        return key
    raise UserError(f"no health check named {name!r}; known checks: {', '.join(checks)}")


def _uptime(up: Any, counted: Any) -> float | None:
    counted = int(counted or 0)
    return round(100.0 * int(up or 0) / counted, 2) if counted else None


def status(session: Session, now: dt.datetime, checks: Sequence[str]) -> list[dict[str, Any]]:
    """Per check (every one of `checks`, then any other name in history): its latest
    result at or before `now`, whether its incident is still open, and its 24 h / 30 d uptime."""
    latest_rank = (
        func.row_number()
        .over(
            partition_by=HealthCheckResult.check_name,
            order_by=(HealthCheckResult.checked_at.desc(), HealthCheckResult.id.desc()),
        )
        .label("rank")
    )
    ranked = (
        select(HealthCheckResult.id, latest_rank)
        .where(HealthCheckResult.checked_at <= now)
        .subquery()
    )
    latest_rows = session.execute(
        select(HealthCheckResult, Incident.status)
        .join(ranked, ranked.c.id == HealthCheckResult.id)
        .outerjoin(Incident, Incident.id == HealthCheckResult.incident_id)
        .where(ranked.c.rank == 1)
    ).all()
    latest = {row.check_name: (row, incident_status) for row, incident_status in latest_rows}

    day_from, month_from = now - WINDOWS["24h"], now - WINDOWS["30d"]
    counted = HealthCheckResult.status != "skipped"
    up = HealthCheckResult.status.in_(("ok", "warn"))
    in_day = HealthCheckResult.checked_at > day_from

    def total(*conds: Any) -> Any:
        return func.coalesce(func.sum(case((and_(*conds), 1), else_=0)), 0)

    uptime_rows = session.execute(
        select(
            HealthCheckResult.check_name,
            total(in_day, up),
            total(in_day, counted),
            total(up),
            total(counted),
        )
        .where(HealthCheckResult.checked_at > month_from, HealthCheckResult.checked_at <= now)
        .group_by(HealthCheckResult.check_name)
    ).all()
    uptime = {
        name: (_uptime(d_up, d_n), _uptime(m_up, m_n)) for name, d_up, d_n, m_up, m_n in uptime_rows
    }

    names = list(checks)
    names += sorted((set(latest) | set(uptime)) - set(names))
    docs = []
    for name in names:
        row, incident_status = latest.get(name, (None, None))
        day, month = uptime.get(name, (None, None))
        docs.append(
            {
                "check": name,
                "status": row.status if row else None,
                "checked_at": row.checked_at if row else None,
                "latency_ms": row.latency_ms if row else None,
                "detail": row.detail if row else "not checked yet: run `faithflow health sweep`",
                "incident_id": row.incident_id
                if row and incident_status not in (None, "resolved")
                else None,
                "uptime_24h": day,
                "uptime_30d": month,
            }
        )
    return docs


def history(
    session: Session,
    *,
    checks: Sequence[str],
    check: str | None = None,
    since: dt.datetime | None = None,
    until: dt.datetime | None = None,
    limit: int = 50,
) -> tuple[list[dict[str, Any]], int]:
    """Stored results, newest first, and how many match."""
    if limit < 1:
        raise UserError(f"--limit {limit} must be 1 or more")
    conds: list[Any] = []
    if check is not None:
        conds.append(HealthCheckResult.check_name == known_check(session, check, checks))
    if since is not None:
        conds.append(HealthCheckResult.checked_at >= since)
    if until is not None:
        conds.append(HealthCheckResult.checked_at <= until)
    rows = session.scalars(
        select(HealthCheckResult)
        .where(*conds)
        .order_by(HealthCheckResult.checked_at.desc(), HealthCheckResult.id.desc())
        .limit(limit)
    ).all()
    count = session.scalar(select(func.count()).select_from(HealthCheckResult).where(*conds)) or 0
    return [
        {
            "id": r.id,
            "check": r.check_name,
            "status": r.status,
            "checked_at": r.checked_at,
            "latency_ms": r.latency_ms,
            "detail": r.detail,
            "incident_id": r.incident_id,
            "data": r.data,
        }
        for r in rows
    ], int(count)
