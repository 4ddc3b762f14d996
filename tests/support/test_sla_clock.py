"""Business-time arithmetic against a brute-force minute counter: weekends, holidays, DST and
time zones (hypothesis), plus hand-checked cases."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from faithflow_ops.support.clock import ALWAYS, Calendar, add_seconds, seconds_between
from faithflow_ops.support.policies import parse_hours, to_calendar

UTC = dt.UTC
ZONES = (
    "UTC",
    "Africa/Lagos",
    "America/New_York",
    "Europe/London",
    "Australia/Lord_Howe",  # a 30-minute DST shift
    "Asia/Kolkata",  # a half-hour offset
    "Pacific/Chatham",  # +12:45 / +13:45
)


def brute_minutes(cal: Calendar, start: dt.datetime, end: dt.datetime) -> int:
    """Count, minute by minute, the UTC minutes whose local wall time is working time."""
    zone = ZoneInfo(cal.timezone)
    count, t = 0, start
    while t < end:
        local = t.astimezone(zone)
        minute = local.hour * 60 + local.minute
        if local.date() not in cal.holidays and any(
            a <= minute < b for a, b in cal.weekly[local.weekday()]
        ):
            count += 1
        t += dt.timedelta(minutes=1)
    return count


intervals = st.lists(
    st.tuples(st.integers(0, 1439), st.integers(1, 720)).map(
        lambda p: (p[0], min(1440, p[0] + p[1]))
    ),
    max_size=2,
).map(lambda xs: tuple(sorted(xs)))


@st.composite
def calendars(draw: st.DrawFn) -> Calendar:
    weekly = [draw(intervals) for _ in range(7)]
    # merge overlaps so each day is sorted and disjoint
    days = []
    for spans in weekly:
        merged: list[tuple[int, int]] = []
        for a, b in spans:
            if merged and a <= merged[-1][1]:
                merged[-1] = (merged[-1][0], max(merged[-1][1], b))
            else:
                merged.append((a, b))
        days.append(tuple(merged))
    if not any(days):
        days[0] = ((540, 1020),)
    start = dt.date(2026, 3, 1)
    holidays = draw(st.frozensets(st.integers(0, 400).map(lambda n: start + dt.timedelta(n))))
    return Calendar(draw(st.sampled_from(ZONES)), tuple(days), holidays)


# instants around the 2026 DST changes of both hemispheres
instants = st.integers(0, 60 * 24 * 400).map(
    lambda m: dt.datetime(2026, 3, 1, tzinfo=UTC) + dt.timedelta(minutes=m)
)


@settings(max_examples=150, deadline=None)
@given(calendars(), instants, st.integers(0, 60 * 24 * 9))
def test_seconds_between_matches_a_minute_counter(
    cal: Calendar, start: dt.datetime, span: int
) -> None:
    end = start + dt.timedelta(minutes=span)
    assert seconds_between(cal, start, end) == 60 * brute_minutes(cal, start, end)


@settings(max_examples=150, deadline=None)
@given(calendars(), instants, st.integers(1, 60 * 40))
def test_add_seconds_lands_on_the_earliest_instant_with_that_much_working_time(
    cal: Calendar, start: dt.datetime, minutes: int
) -> None:
    # within add_seconds' ten-year search (a week of 1 working minute cannot reach 554 minutes)
    assume(sum(b - a for day in cal.weekly for a, b in day) * 52 * 8 >= minutes)
    due = add_seconds(cal, start, minutes * 60)
    assert seconds_between(cal, start, due) == minutes * 60
    # one minute earlier is not enough: due is the earliest such instant
    assert seconds_between(cal, start, due - dt.timedelta(minutes=1)) < minutes * 60
    assert brute_minutes(cal, start, due) == minutes


def test_a_friday_afternoon_target_runs_over_the_weekend() -> None:
    cal = to_calendar("UTC", parse_hours(["mon-fri 09:00-17:00"]), [])
    friday_4pm = dt.datetime(2026, 3, 6, 16, 0, tzinfo=UTC)
    assert add_seconds(cal, friday_4pm, 4 * 3600) == dt.datetime(2026, 3, 9, 12, 0, tzinfo=UTC)
    assert seconds_between(cal, friday_4pm, dt.datetime(2026, 3, 9, 12, 0, tzinfo=UTC)) == 4 * 3600


def test_a_holiday_has_no_working_time() -> None:
    cal = to_calendar(
        "Africa/Lagos",
        parse_hours(["mon-fri 09:00-17:00"]),
        [{"date": "2026-12-25", "name": "Christmas"}],
    )
    # Thu 24 Dec 16:00 Lagos (15:00 UTC) + 2 business hours: Christmas Friday skipped → Mon 28
    start = dt.datetime(2026, 12, 24, 15, 0, tzinfo=UTC)
    assert add_seconds(cal, start, 2 * 3600) == dt.datetime(2026, 12, 28, 9, 0, tzinfo=UTC)


def test_the_spring_forward_night_loses_an_hour_of_a_night_shift() -> None:
    cal = to_calendar("America/New_York", parse_hours(["sun 00:00-06:00"]), [])
    # 8 March 2026: 02:00 → 03:00 local; the shift has 5 real hours
    day_start = dt.datetime(2026, 3, 8, 5, 0, tzinfo=UTC)  # 00:00 EST
    assert seconds_between(cal, day_start, day_start + dt.timedelta(hours=12)) == 5 * 3600
    # 1 November 2026: 02:00 → 01:00; the repeated hour is worked twice (7 real hours)
    fall = dt.datetime(2026, 11, 1, 4, 0, tzinfo=UTC)  # 00:00 EDT
    assert seconds_between(cal, fall, fall + dt.timedelta(hours=12)) == 7 * 3600


def test_calendar_hours_count_every_second() -> None:
    start = dt.datetime(2026, 3, 7, 23, 0, tzinfo=UTC)
    assert add_seconds(ALWAYS, start, 3600) == start + dt.timedelta(hours=1)
    assert seconds_between(ALWAYS, start, start + dt.timedelta(days=2)) == 2 * 86400


def test_add_seconds_refuses_a_target_out_of_reach_in_ten_years() -> None:
    one_minute_a_week = Calendar("UTC", ((), (), (), (), (), (), ((0, 1),)))
    with pytest.raises(ValueError, match="no working time in the next ten years"):
        add_seconds(one_minute_a_week, dt.datetime(2026, 3, 1, tzinfo=UTC), 554 * 60)
