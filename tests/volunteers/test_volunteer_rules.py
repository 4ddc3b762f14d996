"""The pure rules of volunteer scheduling as tables: the 10:00 local send time across DST
changes (America/New_York 2026: clocks go forward on Sun 8 March, back on Sun 1 November;
Africa/Lagos keeps WAT, UTC+1, all year), offsets, weekly blockouts and the gap-alert
thresholds."""

from __future__ import annotations

import datetime as dt

import pytest

from faithflow_ops.errors import UserError
from faithflow_ops.volunteers import rules
from faithflow_ops.volunteers.rules import Blockout, gap_decision, reminder_time, threshold_at

UTC = dt.UTC


def z(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text).astimezone(UTC)


NY = "America/New_York"


@pytest.mark.parametrize(
    ("starts", "tz", "days", "now", "send_at", "day"),
    [
        # Sunday of the spring change, 09:00 EDT; reminded Friday at 10:00 EST (15:00Z)
        (
            "2026-03-08T09:00:00-04:00",
            NY,
            2,
            "2026-03-06T05:00:00Z",
            "2026-03-06T15:00:00Z",
            "2026-03-06",
        ),
        # reminded ON the change day: 10:00 EDT is 14:00Z (the day before it was 15:00Z)
        (
            "2026-03-10T19:00:00-04:00",
            NY,
            2,
            "2026-03-08T05:00:00Z",
            "2026-03-08T14:00:00Z",
            "2026-03-08",
        ),
        (
            "2026-03-09T19:00:00-04:00",
            NY,
            2,
            "2026-03-07T05:00:00Z",
            "2026-03-07T15:00:00Z",
            "2026-03-07",
        ),
        # autumn: reminded on Sun 1 November, back to EST: 10:00 is 15:00Z
        (
            "2026-11-03T19:00:00-05:00",
            NY,
            2,
            "2026-11-01T04:30:00Z",
            "2026-11-01T15:00:00Z",
            "2026-11-01",
        ),
        (
            "2026-11-02T19:00:00-05:00",
            NY,
            2,
            "2026-10-31T04:30:00Z",
            "2026-10-31T14:00:00Z",
            "2026-10-31",
        ),
        # Lagos: 10:00 WAT is 09:00Z all year
        (
            "2026-03-08T08:00:00+01:00",
            "Africa/Lagos",
            2,
            "2026-03-06T00:00:00Z",
            "2026-03-06T09:00:00Z",
            "2026-03-06",
        ),
        (
            "2026-07-05T08:00:00+01:00",
            "Africa/Lagos",
            3,
            "2026-07-02T08:00:00Z",
            "2026-07-02T09:00:00Z",
            "2026-07-02",
        ),
        # a run after 10:00 on the day sends at once
        (
            "2026-03-08T09:00:00-04:00",
            NY,
            2,
            "2026-03-06T18:20:00Z",
            "2026-03-06T18:20:00Z",
            "2026-03-06",
        ),
        # a late assignment (the reminder day passed): the next 10:00 local, today
        (
            "2026-03-08T09:00:00-04:00",
            NY,
            5,
            "2026-03-07T06:00:00Z",
            "2026-03-07T15:00:00Z",
            "2026-03-07",
        ),
        # 10:00 would be after the start: at once
        (
            "2026-03-07T09:00:00-05:00",
            NY,
            0,
            "2026-03-07T12:00:00Z",
            "2026-03-07T12:00:00Z",
            "2026-03-07",
        ),
    ],
)
def test_the_send_time_is_ten_local_on_the_reminder_day(
    starts: str, tz: str, days: int, now: str, send_at: str, day: str
) -> None:
    when = reminder_time(z(starts), tz, days, z(now))
    assert when is not None
    assert (when.send_at, when.day) == (z(send_at), dt.date.fromisoformat(day))


@pytest.mark.parametrize(
    ("starts", "days", "now"),
    [
        ("2026-03-08T09:00:00-04:00", 2, "2026-03-06T04:59:00Z"),  # Thu 23:59 EST: not yet Friday
        ("2026-03-08T09:00:00-04:00", -1, "2026-03-08T12:00:00Z"),  # off
        ("2026-03-08T09:00:00-04:00", 2, "2026-03-08T13:00:00Z"),  # started
    ],
)
def test_no_reminder_before_its_day_when_off_or_after_the_start(
    starts: str, days: int, now: str
) -> None:
    assert reminder_time(z(starts), NY, days, z(now)) is None


def test_the_person_setting_wins_over_the_team_then_the_default() -> None:
    assert rules.reminder_days(None, None) == 2
    assert rules.reminder_days(None, 4) == 4
    assert rules.reminder_days(1, 4) == 1
    assert rules.reminder_days(-1, 4) == -1
    assert rules.reminder_days(3, -1) == 3


@pytest.mark.parametrize("value", [-2, 15])
def test_an_offset_out_of_range_is_refused(value: int) -> None:
    with pytest.raises(UserError, match="-1 \\(off\\)"):
        rules.check_reminder_days(value)


def test_a_weekly_blockout_covers_the_same_days_every_week_until_it_ends() -> None:
    # every weekend (Sat-Sun) from Sat 7 March to 4 April
    weekends = Blockout(dt.date(2026, 3, 7), dt.date(2026, 3, 8), "weekly", dt.date(2026, 4, 4))
    d = dt.date
    assert weekends.covers(d(2026, 3, 7)) and weekends.covers(d(2026, 3, 8))
    assert weekends.covers(d(2026, 3, 14)) and weekends.covers(d(2026, 3, 22))
    assert not weekends.covers(d(2026, 3, 13)) and not weekends.covers(d(2026, 3, 16))
    assert not weekends.covers(d(2026, 3, 6))  # before it begins
    assert weekends.covers(d(2026, 4, 4)) and not weekends.covers(d(2026, 4, 5))  # until
    once = Blockout(d(2026, 3, 7), d(2026, 3, 10))
    assert once.covers(d(2026, 3, 9)) and not once.covers(d(2026, 3, 14))
    forever = Blockout(d(2026, 3, 1), d(2026, 3, 1), "weekly")
    assert forever.covers(d(2027, 2, 28))  # Sundays for good


def test_thresholds_are_seven_three_and_one_days_before() -> None:
    start = z("2026-03-15T09:00:00Z")
    assert threshold_at(start, start - dt.timedelta(days=8)) is None
    assert threshold_at(start, start - dt.timedelta(days=7)) == 7
    assert threshold_at(start, start - dt.timedelta(days=4)) == 7
    assert threshold_at(start, start - dt.timedelta(days=3)) == 3
    assert threshold_at(start, start - dt.timedelta(hours=23)) == 1
    assert threshold_at(start, start) is None


@pytest.mark.parametrize(
    ("gap", "threshold", "alerted", "decision"),
    [
        (2, None, (None, None), None),  # before 7 days: quiet
        (2, 7, (None, None), "alert"),  # first
        (2, 7, (7, 2), None),  # unchanged at the same threshold
        (1, 7, (7, 2), None),  # shrinking
        (3, 7, (7, 2), "alert"),  # grew
        (2, 3, (7, 2), "alert"),  # nearer threshold
        (1, 1, (3, 2), "alert"),  # nearer, even if smaller
        (0, 3, (7, 2), "close"),  # filled: close silently
        (0, 3, (None, None), None),  # nothing open
        (1, 1, (None, None), "alert"),  # opened late: at once
    ],
)
def test_gap_decisions(
    gap: int, threshold: int | None, alerted: tuple[int | None, int | None], decision: str | None
) -> None:
    assert gap_decision(gap, threshold, *alerted) == decision


@pytest.mark.parametrize(
    ("now", "send_at"),
    [
        ("2026-03-05T14:00:00Z", "2026-03-05T14:00:00Z"),  # 09:00 EST: at once
        ("2026-03-06T03:00:00Z", "2026-03-06T13:00:00Z"),  # 22:00 EST: 08:00 next morning
        ("2026-03-06T10:00:00Z", "2026-03-06T13:00:00Z"),  # 05:00 EST: 08:00 that morning
        ("2026-03-08T05:00:00Z", "2026-03-08T12:00:00Z"),  # 00:00 EST on the change day: 08:00 EDT
        ("2026-03-08T11:30:00Z", "2026-03-08T12:00:00Z"),
    ],
)
def test_a_leader_is_messaged_in_the_daytime_only(now: str, send_at: str) -> None:
    start = z("2026-03-08T18:00:00Z")  # Sunday 14:00 EDT
    assert rules.daytime(z(now), NY, start) == z(send_at)


def test_a_night_message_goes_at_once_when_the_event_starts_before_morning() -> None:
    start = z("2026-03-06T11:00:00Z")  # 06:00 EST
    assert rules.daytime(z("2026-03-06T03:00:00Z"), NY, start) == z("2026-03-06T03:00:00Z")
