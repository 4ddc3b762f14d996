"""SLA policies (targets per priority and metric) and the business calendar: the built-in
defaults, what is stored in `sla_policies` / `business_calendars`, and how operators change them.

Defaults (docs/support.md), a business day being the default calendar's 8 working hours:

| priority | first response | next response | resolution |
| --- | --- | --- | --- |
| urgent | 30 min calendar | 1 h calendar | 4 h calendar |
| high | 1 business hour | 4 business hours | 1 business day |
| normal | 4 business hours | 8 business hours | 3 business days |
| low | 1 business day | 2 business days | 5 business days |

Pausing statuses: `pending` and `on_hold` pause resolution; the response clocks never pause by
default. The default calendar: Monday–Friday 09:00–17:00 UTC, no holidays.
"""

from __future__ import annotations

import datetime as dt
import itertools
import re
from dataclasses import dataclass
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy import select
from sqlalchemy.orm import Session

from faithflow_ops.errors import UserError, one_of
from faithflow_ops.models import BusinessCalendar, SlaPolicy
from faithflow_ops.models.support import HOURS_KINDS, METRICS, OPEN_STATUSES, PRIORITIES
from faithflow_ops.support.clock import DAYS, Calendar

DEFAULT_CALENDAR = "default"
_BDAY = 8 * 60
DEFAULT_TARGETS: dict[str, dict[str, tuple[int, str]]] = {
    "urgent": {
        "first_response": (30, "calendar"),
        "next_response": (60, "calendar"),
        "resolution": (240, "calendar"),
    },
    "high": {
        "first_response": (60, "business"),
        "next_response": (240, "business"),
        "resolution": (_BDAY, "business"),
    },
    "normal": {
        "first_response": (240, "business"),
        "next_response": (480, "business"),
        "resolution": (3 * _BDAY, "business"),
    },
    "low": {
        "first_response": (_BDAY, "business"),
        "next_response": (2 * _BDAY, "business"),
        "resolution": (5 * _BDAY, "business"),
    },
}
DEFAULT_PAUSE: dict[str, tuple[str, ...]] = {
    "first_response": (),
    "next_response": (),
    "resolution": ("pending", "on_hold"),
}
DEFAULT_WEEKLY: dict[str, list[list[str]]] = {
    day: ([["09:00", "17:00"]] if day not in ("sat", "sun") else []) for day in DAYS
}
MAX_TARGET_MINUTES = 365 * 1440  # a target beyond a year is a typo, and overflows the column
PAUSABLE = tuple(s for s in OPEN_STATUSES if s != "new")  # open, pending, on_hold


@dataclass(frozen=True)
class Target:
    priority: str
    metric: str
    minutes: int
    hours: str  # business | calendar
    pause: tuple[str, ...]
    source: str  # "default" | "set"

    @property
    def seconds(self) -> int:
        return self.minutes * 60


Policies = dict[tuple[str, str], Target]


def load_policies(session: Session) -> Policies:
    """Every (priority, metric) target: the stored row, or the built-in default."""
    out: Policies = {}
    for priority in PRIORITIES:
        for metric in METRICS:
            minutes, hours = DEFAULT_TARGETS[priority][metric]
            out[priority, metric] = Target(
                priority, metric, minutes, hours, DEFAULT_PAUSE[metric], "default"
            )
    for row in session.scalars(select(SlaPolicy)):
        out[row.priority, row.metric] = Target(
            row.priority,
            row.metric,
            row.target_minutes,
            row.hours,
            tuple(row.pause_statuses or ()),
            "set",
        )
    return out


def policies_doc(policies: Policies) -> list[dict[str, Any]]:
    return [
        {
            "priority": t.priority,
            "metric": t.metric,
            "target_minutes": t.minutes,
            "hours": t.hours,
            "pause_statuses": list(t.pause),
            "source": t.source,
        }
        for t in sorted(
            policies.values(),
            key=lambda t: (-PRIORITIES.index(t.priority), METRICS.index(t.metric)),
        )
    ]


def parse_duration(text: str) -> int:
    """`90`, `90m`, `4h`, `1h30m`, `3d` (24-hour days) → minutes."""
    raw = text.strip().lower().replace(" ", "")
    if raw.isdigit():
        minutes = int(raw)
    else:
        match = re.fullmatch(r"(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m(?:in)?)?", raw)
        if not raw or match is None:
            raise UserError(f"--target {text!r} is not a duration; use e.g. 30m, 4h, 1h30m or 240")
        d, h, m = (int(g) if g else 0 for g in match.groups())
        minutes = d * 1440 + h * 60 + m
    if minutes <= 0:
        raise UserError(f"--target {text!r} must be more than 0 minutes")
    if minutes > MAX_TARGET_MINUTES:
        raise UserError(
            f"--target {text!r} is more than a year ({MAX_TARGET_MINUTES} minutes); "
            "give a shorter target, e.g. 5d or 40h"
        )
    return minutes


def set_policy(
    session: Session,
    *,
    priorities: list[str],
    metric: str,
    minutes: int | None,
    hours: str | None,
    pause: list[str] | None,
    actor: str,
) -> list[dict[str, Any]]:
    """Change one metric's target for some priorities (all when `priorities` is empty)."""
    one_of("--metric", metric, METRICS)
    for p in priorities:
        one_of("--priority", p, PRIORITIES)
    if hours is not None:
        one_of("--hours", hours, HOURS_KINDS)
    if pause is not None:
        for status in pause:
            if status not in PAUSABLE:
                raise UserError(
                    f"--pause {status!r} is not a status a clock can pause in; use any of "
                    f"{', '.join(PAUSABLE)} (comma-separated), or '' for none"
                )
    if minutes is None and hours is None and pause is None:
        raise UserError("nothing to change; pass --target, --hours and/or --pause")
    current = load_policies(session)
    for priority in priorities or list(PRIORITIES):
        old = current[priority, metric]
        row = session.scalars(
            select(SlaPolicy).where(SlaPolicy.priority == priority, SlaPolicy.metric == metric)
        ).one_or_none()
        if row is None:
            row = SlaPolicy(priority=priority, metric=metric)
            session.add(row)
        row.target_minutes = minutes if minutes is not None else old.minutes
        row.hours = hours if hours is not None else old.hours
        row.pause_statuses = list(pause) if pause is not None else list(old.pause)
        row.updated_by = actor
    session.flush()
    return policies_doc(load_policies(session))


# calendars


def _minutes(text: str, what: str) -> int:
    match = re.fullmatch(r"(\d{1,2}):(\d{2})", text.strip())
    if not match or int(match.group(2)) > 59 or int(match.group(1)) > 24:
        raise UserError(f"{what} {text!r} is not a time; use HH:MM, e.g. 09:00 or 17:30")
    value = int(match.group(1)) * 60 + int(match.group(2))
    if value > 1440:
        raise UserError(f"{what} {text!r} is after 24:00")
    return value


def to_calendar(
    timezone: str, weekly: dict[str, list[list[str]]], holidays: list[dict[str, Any]]
) -> Calendar:
    return Calendar(
        timezone=timezone,
        weekly=tuple(
            tuple(sorted((_minutes(a, "start"), _minutes(b, "end")) for a, b in weekly.get(d, [])))
            for d in DAYS
        ),
        holidays=frozenset(dt.date.fromisoformat(h["date"]) for h in holidays),
    )


def _row(session: Session) -> BusinessCalendar | None:
    return session.scalars(
        select(BusinessCalendar).where(BusinessCalendar.name == DEFAULT_CALENDAR)
    ).one_or_none()


def calendar_doc(session: Session) -> dict[str, Any]:
    row = _row(session)
    if row is None:
        return {
            "name": DEFAULT_CALENDAR,
            "timezone": "UTC",
            "weekly_hours": DEFAULT_WEEKLY,
            "holidays": [],
            "source": "default",
        }
    return {
        "name": row.name,
        "timezone": row.timezone,
        "weekly_hours": row.weekly_hours,
        "holidays": sorted(row.holidays, key=lambda h: str(h["date"])),
        "source": "set",
    }


def load_calendar(session: Session) -> Calendar:
    doc = calendar_doc(session)
    return to_calendar(doc["timezone"], doc["weekly_hours"], doc["holidays"])


def parse_hours(specs: list[str]) -> dict[str, list[list[str]]]:
    """`mon-fri 09:00-17:00`, `sat 10:00-12:00 13:00-15:00`, `sun closed` → weekly hours.
    Days not named are closed."""
    weekly: dict[str, list[list[str]]] = {d: [] for d in DAYS}
    for spec in specs:
        parts = spec.strip().lower().split()
        if len(parts) < 2:
            raise UserError(
                f"--hours {spec!r}: give days then intervals, e.g. 'mon-fri 09:00-17:00'"
            )
        days: list[str] = []
        for chunk in parts[0].split(","):
            ends = chunk.split("-")
            if any(e not in DAYS for e in ends) or len(ends) > 2:
                raise UserError(
                    f"--hours {spec!r}: {chunk!r} is not a day or range; use mon..sun, "
                    "e.g. mon-fri or sat,sun"
                )
            i, j = DAYS.index(ends[0]), DAYS.index(ends[-1])
            if j < i:
                raise UserError(f"--hours {spec!r}: {chunk!r} runs backwards; write e.g. mon-fri")
            days += DAYS[i : j + 1]
        intervals: list[list[str]] = []
        if parts[1:] != ["closed"]:
            for chunk in parts[1:]:
                bounds = chunk.split("-")
                if len(bounds) != 2:
                    raise UserError(f"--hours {spec!r}: {chunk!r} is not HH:MM-HH:MM")
                a, b = (_minutes(x, "--hours") for x in bounds)
                if b <= a:
                    raise UserError(
                        f"--hours {spec!r}: {chunk!r} ends before it starts; split a night "
                        "shift in two days, e.g. 'mon 22:00-24:00' and 'tue 00:00-06:00'"
                    )
                intervals.append([f"{a // 60:02d}:{a % 60:02d}", f"{b // 60:02d}:{b % 60:02d}"])
        for day in days:
            weekly[day] = sorted(weekly[day] + intervals)
    for day, spans in weekly.items():
        for (_, end), (start, _) in itertools.pairwise(spans):
            if _minutes(start, "") < _minutes(end, ""):
                raise UserError(f"--hours: {day} has overlapping intervals; merge them")
    if not any(weekly.values()):
        raise UserError("--hours leaves no working time in the week; give at least one interval")
    return weekly


def _writable_row(session: Session) -> BusinessCalendar:
    row = _row(session)
    if row is None:
        row = BusinessCalendar(
            name=DEFAULT_CALENDAR,
            timezone="UTC",
            weekly_hours=DEFAULT_WEEKLY,
            holidays=[],
        )
        session.add(row)
    return row


def set_calendar(
    session: Session, *, timezone: str | None, hours: list[str] | None, actor: str
) -> dict[str, Any]:
    if timezone is None and not hours:
        raise UserError("nothing to change; pass --timezone and/or --hours")
    if timezone is not None:
        try:
            ZoneInfo(timezone)
        except (ZoneInfoNotFoundError, ValueError):
            raise UserError(
                f"--timezone {timezone!r} is not an IANA time zone; use e.g. Africa/Lagos"
            ) from None
    weekly = parse_hours(hours) if hours else None
    row = _writable_row(session)
    if timezone is not None:
        row.timezone = timezone
    if weekly is not None:
        row.weekly_hours = weekly
    row.updated_by = actor
    session.flush()
    return calendar_doc(session)


def parse_day(text: str) -> dt.date:
    try:
        return dt.date.fromisoformat(text.strip())
    except ValueError:
        raise UserError(f"{text!r} is not a date; use YYYY-MM-DD, e.g. 2026-12-25") from None


def add_holiday(session: Session, day: dt.date, name: str | None, *, actor: str) -> dict[str, Any]:
    row = _writable_row(session)
    kept = [h for h in row.holidays if h["date"] != day.isoformat()]
    row.holidays = sorted(
        [*kept, {"date": day.isoformat(), "name": name or ""}], key=lambda h: str(h["date"])
    )
    row.updated_by = actor
    session.flush()
    return calendar_doc(session)


def remove_holiday(session: Session, day: dt.date, *, actor: str) -> dict[str, Any]:
    row = _row(session)
    if row is None or all(h["date"] != day.isoformat() for h in row.holidays):
        raise UserError(f"{day.isoformat()} is not a holiday of the calendar (sla calendar show)")
    row.holidays = [h for h in row.holidays if h["date"] != day.isoformat()]
    row.updated_by = actor
    session.flush()
    return calendar_doc(session)
