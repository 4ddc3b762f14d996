"""`volunteers gaps`: the planner and the applier (jobs/volunteer_gap_alerts.py is the glue).

plan (read-only, one grouped query): for every need of an event starting within the horizon
(default 14 days), gap = needed − confirmed (pending people are shown as "tentative" and do not
fill a gap). Each need's last alert is kept on it (`alerted_threshold`, `alerted_gap`):

- `gap_alert`: a gap once the event is 7, 3 or 1 days away, when nothing is alerted yet (a gap
  that opens late alerts at once), when a nearer threshold is reached, or when the gap grew;
  never again for an unchanged (or smaller) gap at the same threshold;
- `gap_closed`: a filled gap with an alert on record is closed silently (no message), so a gap
  that opens again alerts again.

apply claims the need with a conditional UPDATE (its alert state still what the plan saw) and
queues one message per team leader through the outbox.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from sqlalchemy import and_, case, func, or_, select, update
from sqlalchemy.orm import Session

from faithflow_ops.actions import Action, StaleAction, decode
from faithflow_ops.comms import outbox
from faithflow_ops.config import Settings
from faithflow_ops.db import rowcount
from faithflow_ops.models import (
    Tenant,
    VolunteerAssignment,
    VolunteerEvent,
    VolunteerNeed,
    VolunteerPosition,
    VolunteerTeam,
)
from faithflow_ops.volunteers import rules
from faithflow_ops.volunteers.reminders import local_label, to_leaders

KINDS = ("gap_alert", "gap_closed")


@dataclass(frozen=True)
class Gap:  # kinds "gap_alert" and "gap_closed"
    need_id: int
    tenant_id: int
    event_id: int
    event: str
    starts_at: dt.datetime
    timezone: str
    team_id: int
    team: str
    position_id: int
    position: str
    needed: int
    confirmed: int
    pending: int  # tentative: asked, not answered
    gap: int
    threshold: int | None  # days before the event (7, 3, 1) now reached
    previous_threshold: int | None
    previous_gap: int | None


def plan(
    session: Session,
    now: dt.datetime,
    horizon_days: int = rules.DEFAULT_HORIZON_DAYS,
    limit: int | None = None,
) -> Iterator[Action]:
    n, e, a = VolunteerNeed, VolunteerEvent, VolunteerAssignment
    pos, team = VolunteerPosition, VolunteerTeam
    confirmed = func.coalesce(func.sum(case((a.status == "confirmed", 1), else_=0)), 0)
    pending = func.coalesce(func.sum(case((a.status == "pending", 1), else_=0)), 0)
    keys = (
        n.id,
        n.tenant_id,
        n.needed,
        n.alerted_threshold,
        n.alerted_gap,
        e.id,
        e.name,
        e.starts_at,
        e.timezone,
        team.id,
        team.name,
        pos.id,
        pos.name,
    )
    query = (
        select(*keys, confirmed, pending)
        .join(e, e.id == n.event_id)
        .join(pos, pos.id == n.position_id)
        .join(team, team.id == pos.team_id)
        .outerjoin(a, and_(a.event_id == n.event_id, a.position_id == n.position_id))
        .where(
            e.starts_at > now,
            e.starts_at <= now + dt.timedelta(days=horizon_days),
            # only a need past its first threshold can alert, and only one with an alert on
            # record can close: the others in the horizon are read for nothing
            or_(
                e.starts_at <= now + dt.timedelta(days=max(rules.THRESHOLDS)),
                n.alerted_threshold.is_not(None),
            ),
        )
        .group_by(*keys)
        .order_by(e.starts_at, n.id)
    )
    # plain rows through the session's connection (no ORM result processing); payloads are
    # written as the dict `encode(Gap)` makes (tests/volunteers check they are equal)
    # per event id: its threshold now, its start in ISO-8601 and as the church reads it
    starts: dict[int, tuple[int | None, str, str]] = {}
    count = 0
    for row in session.connection().execute(query):
        (need_id, tenant_id, needed, alerted_t, alerted_g, event_id, event, starts_at, tz) = row[:9]
        team_id, team_name, position_id, position, done, asked = row[9:]
        done, asked = int(done), int(asked)
        gap = needed - done
        start = starts.get(event_id)
        if start is None:
            start = starts[event_id] = (
                rules.threshold_at(starts_at, now),
                starts_at.isoformat(),
                local_label(starts_at, tz),
            )
        threshold = start[0]
        decision = rules.gap_decision(gap, threshold, alerted_t, alerted_g)
        if decision is None:
            continue
        data = {
            "need_id": need_id,
            "tenant_id": tenant_id,
            "event_id": event_id,
            "event": event,
            "starts_at": start[1],
            "timezone": tz,
            "team_id": team_id,
            "team": team_name,
            "position_id": position_id,
            "position": position,
            "needed": needed,
            "confirmed": done,
            "pending": asked,
            "gap": max(gap, 0),
            "threshold": threshold,
            "previous_threshold": alerted_t,
            "previous_gap": alerted_g,
        }
        when = start[2]
        if decision == "close":
            reason = f"{position} at {event} {when} is filled ({done}/{needed}): close silently"
            yield Action("gap_closed", f"need:{need_id}", reason, data)
        else:
            why = (
                "first alert"
                if alerted_t is None
                else f"nearer threshold ({alerted_t} → {threshold} days)"
                if threshold is not None and threshold < alerted_t
                else f"gap grew ({alerted_g} → {gap})"
            )
            reason = (
                f"{position} ({team_name}) at {event} {when}: {gap} missing, {done}/{needed} "
                f"confirmed, {asked} tentative; {threshold}-day threshold, {why}"
            )
            yield Action("gap_alert", f"need:{need_id}", reason, data)
        count += 1
        if limit is not None and count >= limit:
            return


def _claim(session: Session, g: Gap, now: dt.datetime, closed: bool) -> bool:
    n = VolunteerNeed
    values: dict[str, object] = (
        {"alerted_threshold": None, "alerted_gap": None}
        if closed
        else {"alerted_threshold": g.threshold, "alerted_gap": g.gap, "alerted_at": now}
    )
    result = session.execute(
        update(n)
        .where(
            n.id == g.need_id,
            n.alerted_threshold.is_not_distinct_from(g.previous_threshold),
            n.alerted_gap.is_not_distinct_from(g.previous_gap),
        )
        .values(updated_at=now, **values)
        .execution_options(synchronize_session=False)
    )
    return rowcount(result) == 1


def apply(
    session: Session, action: Action, now: dt.datetime, settings: Settings | None = None
) -> list[outbox.Enqueued]:
    if action.kind not in KINDS:
        raise ValueError(f"volunteers gaps has no action kind {action.kind!r}")
    g = decode(Gap, action.data)
    if not _claim(session, g, now, closed=action.kind == "gap_closed"):
        raise StaleAction(f"{action.target}: its alert changed since the plan")
    if action.kind == "gap_closed":
        return []
    tenant = session.get(Tenant, g.tenant_id)
    if tenant is None:
        raise StaleAction(f"{action.target}: the church is gone")
    when = local_label(g.starts_at, g.timezone)
    send_at = rules.daytime(now, g.timezone, g.starts_at)  # not in the night, local time
    messages = to_leaders(
        session,
        g.team_id,
        template="volunteer_gap_alert",
        variables={
            "headline": f"{g.event} {when}: {g.gap} {g.position} still needed",
            "event_name": g.event,
            "event_local": when,
            "event_tz": g.timezone,
            "event_id": g.event_id,
            "position_name": g.position,
            "position_id": g.position_id,
            "team_name": g.team,
            "gap": g.gap,
            "needed": g.needed,
            "confirmed": g.confirmed,
            "pending": g.pending,
        },
        key=f"volunteers:gap:{g.need_id}:{g.threshold}:{g.gap}:{now:%Y%m%dT%H%M%SZ}",
        tenant=tenant,
        not_before=send_at,
        priority=20 if g.threshold == 1 else 40,
        category="volunteers",
        about=("volunteer_need", g.need_id),
    )
    return outbox.enqueue_many(session, messages, now=now, settings=settings)


def table_rows(action: Action) -> Sequence[tuple[object, ...]]:
    g = decode(Gap, action.data)
    return [
        (
            action.kind,
            g.event,
            local_label(g.starts_at, g.timezone),
            f"{g.position} ({g.team})",
            f"{g.confirmed}/{g.needed}",
            g.pending,
            g.gap,
            g.threshold if g.threshold is not None else "-",
        )
    ]
