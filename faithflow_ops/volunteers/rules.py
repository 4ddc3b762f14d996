"""The pure rules of volunteer scheduling (no database): reminder offsets, the local send time
(DST-correct through zoneinfo), blockouts (weekly ones too) and gap-alert thresholds.

docs/volunteers.md says the same in prose; tests/volunteers/test_volunteer_rules.py is the table.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from faithflow_ops.errors import UserError

DEFAULT_REMINDER_DAYS = 2  # Planning Center's default: two days before
MAX_REMINDER_DAYS = 14
REMINDER_OFF = -1  # Rock RMS: -1 = no reminder
SEND_AT = dt.time(10, 0)  # Planning Center sends reminders at 10 a.m. local time
THRESHOLDS = (7, 3, 1)  # days before an event a gap alerts the team leaders
DEFAULT_HORIZON_DAYS = 14


def zone(name: str) -> ZoneInfo:
    """The IANA time zone `name`, or a UserError naming the fix."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise UserError(
            f"unknown time zone {name!r}; use an IANA name such as America/New_York or Africa/Lagos"
        ) from None


def check_reminder_days(value: int | None, option: str = "--remind-days") -> None:
    if value is not None and not (REMINDER_OFF <= value <= MAX_REMINDER_DAYS):
        raise UserError(
            f"{option} {value} is out of range: give 0..{MAX_REMINDER_DAYS} days before the "
            f"event, or {REMINDER_OFF} (off)"
        )


def reminder_days(person: int | None, team: int | None) -> int:
    """The person's own setting, else the team's, else the default; -1 means off."""
    if person is not None:
        return person
    if team is not None:
        return team
    return DEFAULT_REMINDER_DAYS


def local_date(at: dt.datetime, tz: str) -> dt.date:
    return at.astimezone(zone(tz)).date()


def at_local(day: dt.date, time: dt.time, tz: str) -> dt.datetime:
    """`time` on `day` in `tz`, as UTC. zoneinfo resolves DST: 10:00 is 14:00Z in New York's
    summer and 15:00Z in its winter; a time a spring-forward skips lands an hour later (fold 0)."""
    local = dt.datetime.combine(day, time, tzinfo=zone(tz))
    # round-trip through UTC normalises a non-existent wall time (the spring-forward gap)
    return local.astimezone(dt.UTC)


@dataclass(frozen=True)
class ReminderTime:
    day: dt.date  # the local day the reminder belongs to (the condensing key)
    send_at: dt.datetime  # UTC; the outbox holds the message until then


def reminder_time(
    starts_at: dt.datetime, tz: str, days: int, now: dt.datetime, send_at: dt.time = SEND_AT
) -> ReminderTime | None:
    """When the reminder for an event starting at `starts_at` goes out, or None when it is not
    due yet at `now` (its local day has not begun), is off (days = -1), or the event has begun.

    The reminder day is `days` local days before the event's local date, at 10:00 local. A run
    on that day before 10:00 schedules it for 10:00; a run after 10:00 (or a later day: an
    assignment made late, a missed run) sends it at once — and at once, too, when 10:00 would
    be after the event starts."""
    if days == REMINDER_OFF or starts_at <= now:
        return None
    event_day = local_date(starts_at, tz)
    due_day = event_day - dt.timedelta(days=days)
    today = local_date(now, tz)
    if today < due_day:
        return None
    day = max(due_day, today)
    at = at_local(day, send_at, tz)
    if at < now or at >= starts_at:
        at = now
    return ReminderTime(day, at)


@dataclass(frozen=True)
class Blockout:
    starts_on: dt.date
    ends_on: dt.date
    repeat: str = "none"  # or "weekly"
    repeat_until: dt.date | None = None
    reason: str | None = None

    def covers(self, day: dt.date) -> bool:
        """Whether the person is blocked out on local date `day`."""
        if self.starts_on <= day <= self.ends_on:
            return True
        if self.repeat != "weekly" or day < self.starts_on:
            return False
        if self.repeat_until is not None and day > self.repeat_until:
            return False
        # the block repeats every 7 days: is `day` inside the copy that began on or before it?
        weeks = (day - self.starts_on).days // 7
        start = self.starts_on + dt.timedelta(weeks=weeks)
        return start <= day <= start + (self.ends_on - self.starts_on)


def blocking(blockouts: Iterable[Blockout], day: dt.date) -> Blockout | None:
    for blockout in blockouts:
        if blockout.covers(day):
            return blockout
    return None


def threshold_at(starts_at: dt.datetime, now: dt.datetime) -> int | None:
    """The smallest alert threshold (7, 3, 1 days before) `now` has reached, or None before the
    first one (or once the event has begun)."""
    if starts_at <= now:
        return None
    reached = [t for t in THRESHOLDS if starts_at - dt.timedelta(days=t) <= now]
    return min(reached) if reached else None


def gap_decision(
    gap: int, threshold: int | None, alerted_threshold: int | None, alerted_gap: int | None
) -> str | None:
    """What the gap job does about one need: "alert", "close" or None (nothing).

    - a gap at a threshold alerts when nothing is alerted yet (a gap that opens late alerts
      at once), when it reached a nearer threshold, or when it grew;
    - an unchanged (or shrinking) gap at the same threshold stays quiet;
    - a filled gap with an open alert closes silently (so a gap that opens again alerts)."""
    if gap <= 0:
        return "close" if alerted_threshold is not None else None
    if threshold is None:
        return None
    if alerted_threshold is None or alerted_gap is None:
        return "alert"
    if threshold < alerted_threshold or gap > alerted_gap:
        return "alert"
    return None


DAY_STARTS, DAY_ENDS = dt.time(8, 0), dt.time(21, 0)  # leaders are not woken by a gap alert


def daytime(now: dt.datetime, tz: str, starts_at: dt.datetime) -> dt.datetime:
    """When a message to a leader goes out: now between 08:00 and 21:00 local, else the next
    08:00 local — or now, when the event starts before that."""
    local = now.astimezone(zone(tz))
    if DAY_STARTS <= local.time() < DAY_ENDS:
        return now
    day = local.date() if local.time() < DAY_STARTS else local.date() + dt.timedelta(days=1)
    morning = at_local(day, DAY_STARTS, tz)
    return now if morning >= starts_at else morning
