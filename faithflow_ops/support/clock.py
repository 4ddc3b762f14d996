"""Business-time arithmetic: seconds of working time between two instants, and the instant a
number of working seconds after another, for a weekly schedule in a time zone with holidays.

Working time is every real (UTC) second whose local wall-clock time falls inside one of the
day's intervals on a day that is not a holiday. So a spring-forward night loses the skipped hour
and a fall-back night counts the repeated hour twice, exactly as a clock on the wall would show
them being worked; tests/support/test_sla_clock.py checks this against a minute-by-minute counter.

Calendar time (a policy in `calendar` minutes) is plain elapsed time: `Calendar.ALWAYS`.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from functools import lru_cache
from zoneinfo import ZoneInfo

UTC = dt.UTC
DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_SEARCH_DAYS = 3660  # add_seconds gives up after ten years of calendar without working time


@dataclass(frozen=True)
class Calendar:
    """`weekly[d]`: the working intervals of weekday d (Monday = 0) as (start, end) minutes
    after local midnight, end ≤ 1440; `holidays`: local dates with no working time. A calendar
    with `always=True` counts every second (calendar hours)."""

    timezone: str = "UTC"
    weekly: tuple[tuple[tuple[int, int], ...], ...] = ((),) * 7
    holidays: frozenset[dt.date] = frozenset()
    always: bool = False

    def seconds_between(self, start: dt.datetime, end: dt.datetime) -> int:
        return seconds_between(self, start, end)

    def add_seconds(self, start: dt.datetime, seconds: int) -> dt.datetime:
        return add_seconds(self, start, seconds)


ALWAYS = Calendar(always=True)


def minute(at: dt.datetime) -> str:
    """`2026-03-02 09:30`, the way SLA e-mails and incidents name a time (UTC; isoformat is
    several times faster than strftime, which matters for a digest of 500 marks)."""
    return at.isoformat(" ", "minutes")[:16]


def _naive_utc(value: dt.datetime) -> dt.datetime:
    if value.tzinfo is None:
        raise ValueError(f"naive datetime {value!r}")
    return value.astimezone(UTC).replace(tzinfo=None)


def _offset(zone: ZoneInfo, naive_utc: dt.datetime) -> dt.timedelta:
    offset = naive_utc.replace(tzinfo=UTC).astimezone(zone).utcoffset()
    assert offset is not None
    return offset


def _offset_pieces(
    zone: ZoneInfo, lo: dt.datetime, hi: dt.datetime
) -> list[tuple[dt.datetime, dt.datetime, dt.timedelta]]:
    """[lo, hi) (naive UTC) cut where the zone's UTC offset changes: (start, end, offset)."""
    pieces: list[tuple[dt.datetime, dt.datetime, dt.timedelta]] = []
    start, current = lo, _offset(zone, lo)
    probe = lo
    step = dt.timedelta(hours=1)
    while probe < hi:
        nxt = min(probe + step, hi)
        if _offset(zone, nxt) != current:
            # the change lies in (probe, nxt]: bisect to the second
            a, b = probe, nxt
            while b - a > dt.timedelta(seconds=1):
                mid = a + (b - a) / 2
                mid = mid.replace(microsecond=0)
                if mid <= a:
                    break
                if _offset(zone, mid) == current:
                    a = mid
                else:
                    b = mid
            pieces.append((start, b, current))
            start, current = b, _offset(zone, b)
        probe = nxt
    pieces.append((start, hi, current))
    return pieces


@lru_cache(maxsize=65536)
def working_ranges(calendar: Calendar, day: dt.date) -> tuple[tuple[dt.datetime, dt.datetime], ...]:
    """The working time of local `day` as sorted, disjoint naive-UTC ranges [start, end)."""
    intervals = calendar.weekly[day.weekday()]
    if not intervals or day in calendar.holidays:
        return ()
    zone = ZoneInfo(calendar.timezone)
    midnight = dt.datetime.combine(day, dt.time())
    # every UTC instant whose local date is `day` lies in this window (offsets are < ±15 h)
    pieces = _offset_pieces(
        zone, midnight - dt.timedelta(hours=15), midnight + dt.timedelta(hours=39)
    )
    out: list[tuple[dt.datetime, dt.datetime]] = []
    for first, last in intervals:
        local_start = midnight + dt.timedelta(minutes=first)
        local_end = midnight + dt.timedelta(minutes=last)
        for p_start, p_end, offset in pieces:
            # within a piece local = utc + offset, so local ∈ [s, e) ⟺ utc ∈ [s−off, e−off)
            lo = max(local_start - offset, p_start)
            hi = min(local_end - offset, p_end)
            if lo < hi:
                out.append((lo, hi))
    out.sort()
    merged: list[tuple[dt.datetime, dt.datetime]] = []
    for lo, hi in out:
        if merged and lo <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], hi))
        else:
            merged.append((lo, hi))
    return tuple(merged)


def _local_date(calendar: Calendar, naive_utc: dt.datetime) -> dt.date:
    return naive_utc.replace(tzinfo=UTC).astimezone(ZoneInfo(calendar.timezone)).date()


def seconds_between(calendar: Calendar, start: dt.datetime, end: dt.datetime) -> int:
    """Working seconds in [start, end) (0 when end ≤ start), rounded down to whole seconds."""
    if end <= start:
        return 0
    if calendar.always:
        return int((end - start).total_seconds())
    a, b = _naive_utc(start), _naive_utc(end)
    day = _local_date(calendar, a) - dt.timedelta(days=1)
    last = _local_date(calendar, b) + dt.timedelta(days=1)
    total = dt.timedelta()
    while day <= last:
        for lo, hi in working_ranges(calendar, day):
            lo, hi = max(lo, a), min(hi, b)
            if lo < hi:
                total += hi - lo
        day += dt.timedelta(days=1)
    return int(total.total_seconds())


def add_seconds(calendar: Calendar, start: dt.datetime, seconds: int) -> dt.datetime:
    """The earliest instant t ≥ start with `seconds` working seconds in [start, t)."""
    if seconds <= 0:
        return start
    if calendar.always:
        return start + dt.timedelta(seconds=seconds)
    a = _naive_utc(start)
    left = dt.timedelta(seconds=seconds)
    day = _local_date(calendar, a) - dt.timedelta(days=1)
    for _ in range(_SEARCH_DAYS):
        for lo, hi in working_ranges(calendar, day):
            lo = max(lo, a)
            if lo >= hi:
                continue
            if hi - lo >= left:
                return (lo + left).replace(tzinfo=UTC)
            left -= hi - lo
        day += dt.timedelta(days=1)
    raise ValueError("the business calendar has no working time in the next ten years")
