"""Quiet hours: the first minute a message may go out, in the tenant's time zone.

A quiet window is a weekly wall-clock range (`sun 06:00-14:00`, `daily 21:00-08:00`). Each
occurrence starts on one of the window's weekdays at `start` and ends at the next `end` (the
same day, or the next day when `end <= start`). An occurrence becomes one interval of real time:

- a wall-clock time that does not exist (the hour skipped when clocks go forward) is read as the
  first instant after the gap, so a window starting at 02:30 on that night starts at 03:00;
- a wall-clock time that exists twice (the hour repeated when clocks go back) is read as its
  first instance for a start and its second for an end, so a window is never shortened by the
  change: nothing goes out at a time the clock on the church's wall shows as quiet.

Windows may overlap and chain (`21:00-08:00` then `sun 06:00-14:00`): `first_allowed` jumps to
the end of every interval it lands in until it reaches a minute outside all of them.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from functools import lru_cache
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from faithflow_ops.errors import UserError

if TYPE_CHECKING:
    from faithflow_ops.dunning.windows import QuietWindow

_MINUTE = dt.timedelta(minutes=1)
_WEEK_MINUTES = 7 * 24 * 60
# With at least one wall-clock minute free every week, a free minute that exists comes within
# two weeks (the free minute may fall in a skipped DST hour once); past this, give up loudly.
_HORIZON = dt.timedelta(days=21)


def zone(name: str) -> ZoneInfo:
    """The IANA zone `name`, or UserError naming it."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise UserError(
            f"time zone {name!r} is not an IANA time zone name; use e.g. Africa/Lagos"
        ) from None


def covers_whole_week(windows: Sequence[QuietWindow]) -> bool:
    """True when the windows leave no wall-clock minute of the week free."""
    return _covers_whole_week(tuple(windows))


@lru_cache(maxsize=4096)
def _covers_whole_week(windows: tuple[QuietWindow, ...]) -> bool:
    covered = bytearray(_WEEK_MINUTES)
    for window in windows:
        start = window.start.hour * 60 + window.start.minute
        end = window.end.hour * 60 + window.end.minute
        length = end - start if end > start else end - start + 24 * 60
        for day in window.days:
            first = day * 24 * 60 + start
            for minute in range(first, first + length):
                covered[minute % _WEEK_MINUTES] = 1
    return all(covered)


def check_week(windows: Sequence[QuietWindow]) -> None:
    """UserError when the windows leave no minute of the week for a message to go out."""
    if windows and covers_whole_week(windows):
        raise UserError(
            "quiet hours cover the whole week; no message could ever go out — leave some "
            "hours free (faithflow dunning prefs set --tenant SLUG --quiet … or --quiet-default)"
        )


def _aware(value: dt.datetime, what: str) -> dt.datetime:
    if value.tzinfo is None:
        raise ValueError(f"{what} {value!r} is naive: pass a timezone-aware UTC datetime")
    return value.astimezone(dt.UTC)


def _ceil_minute(value: dt.datetime) -> dt.datetime:
    floor = value.replace(second=0, microsecond=0)
    return floor if floor == value else floor + _MINUTE


def _wall(instant: dt.datetime, tz: ZoneInfo) -> dt.datetime:
    return instant.astimezone(tz).replace(tzinfo=None, fold=0)


def _instants(naive: dt.datetime, tz: ZoneInfo) -> tuple[dt.datetime, dt.datetime]:
    """The (earliest, latest) UTC instants whose wall clock reads `naive`; for a time inside a
    DST gap both are the instant the gap ends."""
    first = naive.replace(tzinfo=tz, fold=0).astimezone(dt.UTC)
    second = naive.replace(tzinfo=tz, fold=1).astimezone(dt.UTC)
    first_ok = _wall(first, tz) == naive
    second_ok = _wall(second, tz) == naive
    if first_ok or second_ok:
        found = [t for t, ok in ((first, first_ok), (second, second_ok)) if ok]
        return min(found), max(found)
    # A gap: fold=0 reads the time with the offset before the change, fold=1 with the one after;
    # the change itself lies between the two readings. Find it to the second.
    low, high = sorted((first, second))
    before = low.astimezone(tz).utcoffset()
    lo, hi = 0, int((high - low).total_seconds())
    while lo < hi:
        mid = (lo + hi) // 2
        if (low + dt.timedelta(seconds=mid)).astimezone(tz).utcoffset() == before:
            lo = mid + 1
        else:
            hi = mid
    end = low + dt.timedelta(seconds=lo)
    return end, end


@lru_cache(maxsize=65536)
def _occurrences(
    tz_name: str, day: dt.date, windows: tuple[QuietWindow, ...]
) -> tuple[tuple[dt.datetime, dt.datetime], ...]:
    """The UTC intervals [start, end) of the windows' occurrences that start on `day`."""
    tz = ZoneInfo(tz_name)
    found = []
    for window in windows:
        if day.weekday() not in window.days:
            continue
        end_day = day if window.end > window.start else day + dt.timedelta(days=1)
        start, _ = _instants(dt.datetime.combine(day, window.start), tz)
        _, end = _instants(dt.datetime.combine(end_day, window.end), tz)
        if end > start:
            found.append((start, end))
    return tuple(found)


def _covering_end(at: dt.datetime, tz_name: str, windows: tuple[QuietWindow, ...]) -> dt.datetime:
    """The latest end among the intervals containing `at`, or `at` itself when none does."""
    today = _wall(at, ZoneInfo(tz_name)).date()
    latest = at
    # An occurrence is at most 24 h of wall clock (+ a DST hour): it started today or yesterday;
    # two days back covers zones that skip a whole calendar day.
    for back in (2, 1, 0):
        for start, end in _occurrences(tz_name, today - dt.timedelta(days=back), windows):
            if start <= at < end and end > latest:
                latest = end
    return latest


def is_quiet(at: dt.datetime, timezone: str, windows: Sequence[QuietWindow]) -> bool:
    """Whether the instant `at` lies inside a quiet window in `timezone`."""
    zone(timezone)
    instant = _aware(at, "at")
    return _covering_end(instant, timezone, tuple(windows)) > instant


def first_allowed(
    earliest: dt.datetime, timezone: str, windows: Sequence[QuietWindow]
) -> dt.datetime:
    """The first whole minute at or after `earliest` (aware) outside every quiet window in the
    tenant's zone, in UTC. UserError when the windows cover the whole week."""
    zone(timezone)
    frozen = tuple(windows)
    check_week(frozen)
    candidate = _ceil_minute(_aware(earliest, "earliest"))
    limit = candidate + _HORIZON
    while candidate <= limit:
        end = _covering_end(candidate, timezone, frozen)
        if end == candidate:
            return candidate
        candidate = _ceil_minute(end)
    raise UserError(
        f"quiet hours in {timezone} leave no minute free in the {_HORIZON.days} days after "
        f"{earliest.isoformat()}; leave some hours free (faithflow dunning prefs set --quiet …)"
    )


def quiet_until(
    at: dt.datetime, timezone: str, windows: Sequence[QuietWindow]
) -> dt.datetime | None:
    """When the quiet period containing `at` ends (chained windows followed to their end), or
    None when `at` is not in quiet hours."""
    if not is_quiet(at, timezone, windows):
        return None
    return first_allowed(at, timezone, windows)
