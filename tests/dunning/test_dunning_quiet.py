"""Quiet hours across time zones and DST changes (faithflow_ops/dunning/quiet.py).

Property tests check `first_allowed` against two oracles: `is_quiet` (the interval reading the
module documents, minute by minute up to the result) and a plain wall-clock reading (a minute
whose local clock shows a time inside a window is never a send time).
"""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from faithflow_ops.dunning.quiet import (
    covers_whole_week,
    first_allowed,
    is_quiet,
    quiet_until,
)
from faithflow_ops.dunning.windows import DEFAULT_QUIET_HOURS, QuietWindow, parse_window
from faithflow_ops.errors import UserError

UTC = dt.UTC
ZONES = (
    "Africa/Lagos",
    "America/New_York",
    "Europe/London",
    "Australia/Lord_Howe",  # DST moves the clock by 30 minutes
    "Pacific/Chatham",  # +12:45 / +13:45
    "America/Sao_Paulo",
    "Asia/Kolkata",
    "UTC",
)


def utc(*args: int) -> dt.datetime:
    return dt.datetime(*args, tzinfo=UTC)  # type: ignore[misc]


def local(zone: str, *args: int, fold: int = 0) -> dt.datetime:
    return dt.datetime(*args, tzinfo=ZoneInfo(zone), fold=fold).astimezone(UTC)  # type: ignore[misc]


def wall_quiet(at: dt.datetime, zone: str, windows: tuple[QuietWindow, ...]) -> bool:
    """The wall-clock oracle: the local clock at `at` reads a time inside an occurrence."""
    wall = at.astimezone(ZoneInfo(zone)).replace(tzinfo=None, fold=0)
    for back in (0, 1):
        day = wall.date() - dt.timedelta(days=back)
        for w in windows:
            if day.weekday() not in w.days:
                continue
            start = dt.datetime.combine(day, w.start)
            end_day = day if w.end > w.start else day + dt.timedelta(days=1)
            if start <= wall < dt.datetime.combine(end_day, w.end):
                return True
    return False


# --- examples -------------------------------------------------------------------------------


def test_saturday_night_in_lagos_waits_for_sunday_afternoon() -> None:
    # Sat 22:30 WAT: inside 21:00-08:00, which ends inside Sunday 06:00-14:00
    at = local("Africa/Lagos", 2026, 11, 28, 22, 30)
    result = first_allowed(at, "Africa/Lagos", DEFAULT_QUIET_HOURS)
    assert result == local("Africa/Lagos", 2026, 11, 29, 14, 0)
    assert quiet_until(at, "Africa/Lagos", DEFAULT_QUIET_HOURS) == result


def test_a_free_minute_is_returned_as_it_is_and_seconds_round_up() -> None:
    at = local("Africa/Lagos", 2026, 11, 25, 10, 15)
    assert first_allowed(at, "Africa/Lagos", DEFAULT_QUIET_HOURS) == at
    assert quiet_until(at, "Africa/Lagos", DEFAULT_QUIET_HOURS) is None
    late = at + dt.timedelta(seconds=1)
    assert first_allowed(late, "Africa/Lagos", DEFAULT_QUIET_HOURS) == at + dt.timedelta(minutes=1)
    # 20:59:30 rounds up to 21:00, which is quiet: the next morning at 08:00
    edge = local("Africa/Lagos", 2026, 11, 25, 20, 59) + dt.timedelta(seconds=30)
    assert first_allowed(edge, "Africa/Lagos", DEFAULT_QUIET_HOURS) == local(
        "Africa/Lagos", 2026, 11, 26, 8, 0
    )


def test_the_end_of_a_window_is_free_and_a_window_start_is_quiet() -> None:
    assert not is_quiet(
        local("Africa/Lagos", 2026, 11, 25, 8, 0), "Africa/Lagos", DEFAULT_QUIET_HOURS
    )
    assert is_quiet(local("Africa/Lagos", 2026, 11, 25, 21, 0), "Africa/Lagos", DEFAULT_QUIET_HOURS)


def test_spring_forward_night_in_new_york() -> None:
    # 2026-03-08 (a Sunday): 02:00 EST becomes 03:00 EDT. Saturday 23:00 EST is quiet until
    # 08:00 EDT, and Sunday morning chains into 06:00-14:00.
    zone = "America/New_York"
    at = local(zone, 2026, 3, 7, 23, 0)
    assert first_allowed(at, zone, DEFAULT_QUIET_HOURS) == local(zone, 2026, 3, 8, 14, 0)
    # A weekday window 21:00-08:00 over the change on a Sunday→Monday night? Use daily only:
    daily = (QuietWindow(frozenset(range(7)), dt.time(21), dt.time(8)),)
    result = first_allowed(at, zone, daily)
    assert result == local(zone, 2026, 3, 8, 8, 0)
    assert result - at == dt.timedelta(hours=8)  # nine hours of clock, one hour skipped


def test_a_window_starting_at_a_time_that_does_not_exist_starts_when_the_gap_ends() -> None:
    # 02:30 does not exist in New York on 2026-03-08: the window starts at 03:00 EDT.
    zone = "America/New_York"
    windows = (parse_window("sun 02:30-05:00"),)
    gap_end = utc(2026, 3, 8, 7, 0)  # 03:00 EDT
    assert not is_quiet(gap_end - dt.timedelta(minutes=1), zone, windows)  # 01:59 EST
    assert is_quiet(gap_end, zone, windows)
    assert first_allowed(gap_end, zone, windows) == local(zone, 2026, 3, 8, 5, 0)
    assert first_allowed(utc(2026, 3, 8, 6, 59), zone, windows) == utc(2026, 3, 8, 6, 59)


def test_a_window_ending_in_the_repeated_hour_lasts_until_its_second_instance() -> None:
    # 2026-11-01 New York: 02:00 EDT becomes 01:00 EST, 01:00-02:00 happens twice.
    zone = "America/New_York"
    windows = (parse_window("sat 22:00-01:30"),)
    at = local(zone, 2026, 10, 31, 23, 0)
    assert first_allowed(at, zone, windows) == local(zone, 2026, 11, 1, 1, 30, fold=1)
    # a window starting in the repeated hour starts at its first instance
    starts = (parse_window("sun 01:30-03:00"),)
    assert is_quiet(local(zone, 2026, 11, 1, 1, 30, fold=0), zone, starts)
    assert first_allowed(local(zone, 2026, 11, 1, 1, 45, fold=0), zone, starts) == local(
        zone, 2026, 11, 1, 3, 0
    )


def test_lord_howe_half_hour_shift_and_chatham_quarter_offset() -> None:
    # Lord Howe 2026-10-04 02:00 → 02:30; a window 02:00-02:20 that day does not exist at all.
    windows = (parse_window("sun 02:00-02:20"),)
    start = local("Australia/Lord_Howe", 2026, 10, 4, 1, 50)
    assert first_allowed(start, "Australia/Lord_Howe", windows) == start
    # Chatham +13:45: a window 21:00-08:00 ends at 08:00 on the clock
    chatham = local("Pacific/Chatham", 2026, 7, 1, 23, 0)
    assert first_allowed(chatham, "Pacific/Chatham", DEFAULT_QUIET_HOURS) == local(
        "Pacific/Chatham", 2026, 7, 2, 8, 0
    )


def test_overlapping_windows_chain_to_the_latest_end() -> None:
    windows = (
        parse_window("daily 20:00-22:00"),
        parse_window("daily 21:30-23:00"),
        parse_window("mon 23:00-23:30"),
    )
    zone = "Europe/London"
    at = local(zone, 2026, 6, 1, 20, 5)  # a Monday
    assert first_allowed(at, zone, windows) == local(zone, 2026, 6, 1, 23, 30)
    at = local(zone, 2026, 6, 2, 20, 5)  # Tuesday: no 23:00 window
    assert first_allowed(at, zone, windows) == local(zone, 2026, 6, 2, 23, 0)


def test_no_windows_means_no_quiet_hours() -> None:
    at = utc(2026, 6, 1, 3, 0)
    assert first_allowed(at, "Africa/Lagos", ()) == at
    assert quiet_until(at, "Africa/Lagos", ()) is None


def test_windows_covering_the_whole_week_are_refused_not_looped() -> None:
    windows = (parse_window("daily 08:00-08:00"),)  # end == start: 24 hours
    assert covers_whole_week(windows)
    with pytest.raises(UserError, match="quiet hours cover the whole week"):
        first_allowed(utc(2026, 6, 1), "Africa/Lagos", windows)
    chained = (parse_window("daily 00:00-12:00"), parse_window("daily 12:00-00:00"))
    with pytest.raises(UserError, match="cover the whole week"):
        first_allowed(utc(2026, 6, 1), "America/New_York", chained)
    almost = (parse_window("daily 00:00-12:00"), parse_window("mon-sat 12:00-00:00"),
              parse_window("sun 12:00-23:59"))  # fmt: skip
    assert not covers_whole_week(almost)
    assert first_allowed(utc(2026, 6, 1), "UTC", almost) == utc(2026, 6, 7, 23, 59)


def test_naive_times_and_unknown_zones_are_refused() -> None:
    with pytest.raises(ValueError, match="naive"):
        first_allowed(dt.datetime(2026, 6, 1), "UTC", DEFAULT_QUIET_HOURS)  # noqa: DTZ001
    with pytest.raises(UserError, match="not an IANA time zone"):
        first_allowed(utc(2026, 6, 1), "Mars/Olympus", DEFAULT_QUIET_HOURS)


# --- properties -----------------------------------------------------------------------------

_minutes = st.integers(min_value=0, max_value=23 * 60 + 59)


@st.composite
def windows_strategy(draw: st.DrawFn) -> tuple[QuietWindow, ...]:
    count = draw(st.integers(min_value=0, max_value=4))
    found = []
    for _ in range(count):
        days = draw(st.frozensets(st.integers(0, 6), min_size=1, max_size=7))
        start, end = draw(_minutes), draw(_minutes)
        # keep some windows short so DST hours fall on their edges
        found.append(
            QuietWindow(days, dt.time(start // 60, start % 60), dt.time(end // 60, end % 60))
        )
    windows = tuple(found)
    if covers_whole_week(windows):
        windows = windows[:1]
        if covers_whole_week(windows):
            windows = ()
    return windows


# Instants near DST changes in the chosen zones, and anywhere in 2025-2027.
_DST_INSTANTS = [
    utc(2026, 3, 8, 7, 0),  # New York spring forward
    utc(2026, 11, 1, 6, 0),  # New York fall back
    utc(2026, 3, 29, 1, 0),  # London forward
    utc(2026, 10, 25, 1, 0),  # London back
    utc(2026, 4, 4, 15, 0),  # Lord Howe back (02:00 → 01:30 local)
    utc(2026, 10, 3, 15, 30),  # Lord Howe forward
    utc(2026, 4, 4, 14, 0),  # Chatham back
    utc(2026, 9, 26, 14, 0),  # Chatham forward
]


@st.composite
def instants(draw: st.DrawFn) -> dt.datetime:
    if draw(st.booleans()):
        base = draw(st.sampled_from(_DST_INSTANTS))
        return base + dt.timedelta(seconds=draw(st.integers(-3 * 86400, 3 * 86400)))
    return utc(2025, 1, 1) + dt.timedelta(seconds=draw(st.integers(0, 3 * 365 * 86400)))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(earliest=instants(), zone=st.sampled_from(ZONES), windows=windows_strategy())
def test_first_allowed_is_the_first_free_minute(
    earliest: dt.datetime, zone: str, windows: tuple[QuietWindow, ...]
) -> None:
    result = first_allowed(earliest, zone, windows)
    assert result >= earliest
    assert result.second == 0 and result.microsecond == 0
    assert result.tzinfo is not None and result.utcoffset() == dt.timedelta(0)
    assert not is_quiet(result, zone, windows)
    assert not wall_quiet(result, zone, windows)
    # no free minute between earliest and the result (a free minute comes within two weeks)
    assert result - earliest <= dt.timedelta(days=15)
    minute = earliest.replace(second=0, microsecond=0)
    if minute < earliest:
        minute += dt.timedelta(minutes=1)
    while minute < result:
        assert is_quiet(minute, zone, windows), f"{minute} is free but {result} was returned"
        minute += dt.timedelta(minutes=1)
    assert first_allowed(result, zone, windows) == result  # idempotent
    until = quiet_until(earliest, zone, windows)
    assert (until is None) == (not is_quiet(earliest, zone, windows))
    if until is not None:
        assert until == result


@settings(max_examples=300, deadline=None)
@given(at=instants(), zone=st.sampled_from(ZONES), windows=windows_strategy())
def test_a_minute_the_clock_shows_as_quiet_is_quiet(
    at: dt.datetime, zone: str, windows: tuple[QuietWindow, ...]
) -> None:
    if wall_quiet(at, zone, windows):
        assert is_quiet(at, zone, windows)


@settings(max_examples=200, deadline=None)
@given(earliest=instants(), zone=st.sampled_from(ZONES))
def test_default_quiet_hours_never_send_at_night_or_on_sunday_morning(
    earliest: dt.datetime, zone: str
) -> None:
    result = first_allowed(earliest, zone, DEFAULT_QUIET_HOURS)
    wall = result.astimezone(ZoneInfo(zone))
    assert dt.time(8, 0) <= wall.time() < dt.time(21, 0)
    if wall.weekday() == 6:
        assert wall.time() >= dt.time(14, 0)
    assert result - earliest <= dt.timedelta(hours=18)  # Sat 20:59 → Sun 14:00 at most (+DST)
