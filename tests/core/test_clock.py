"""One parser per time shape (faithflow_ops.clock): --now and the task body's "now", every
--since, and the ISO round trip of action payloads."""

from __future__ import annotations

import datetime as dt

import pytest

from faithflow_ops.clock import from_iso, iso, jsonable, parse_instant, parse_since, parse_time
from faithflow_ops.errors import UserError

NOW = dt.datetime(2026, 3, 1, 9, 0, tzinfo=dt.UTC)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-03-01T09:00:00Z", NOW),
        ("2026-03-01t09:00:00z", NOW),
        ("2026-03-01T10:00:00+01:00", NOW),
        ("2026-03-01T09:00:00", NOW),  # naive means UTC
        ("2026-03-01", NOW.replace(hour=0)),
    ],
)
def test_parse_instant_reads_iso_8601_as_utc(text: str, expected: dt.datetime) -> None:
    assert parse_instant(text) == expected
    assert parse_time(text) == expected


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("", "--now '' is not an ISO-8601 time; use e.g. --now 2026-03-01T09:00:00Z"),
        ("   ", "--now '   ' is not an ISO-8601 time"),
        ("tomorrow", "--now 'tomorrow' is not an ISO-8601 time"),
        ("9999-12-31T23:59:59Z", "--now '9999-12-31T23:59:59Z' is out of range; give a time "
         "from 1970 to 8999"),
        ("0001-01-01T00:00:00Z", "is out of range"),
        (12345, "--now 12345 is not an ISO-8601 time"),
        (None, "--now null is not an ISO-8601 time"),
        ("x" * 500, "x..."),
    ],
)
def test_parse_instant_refuses_with_the_field_named(value: object, message: str) -> None:
    with pytest.raises(UserError) as caught:
        parse_instant(value)
    assert message in str(caught.value)
    assert len(str(caught.value)) < 200


def test_parse_instant_names_the_field_it_was_given() -> None:
    with pytest.raises(UserError, match=r"^now 'soon' is not an ISO-8601 time; use e\.g\. now"):
        parse_instant("soon", "now")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("30m", NOW - dt.timedelta(minutes=30)),
        ("24h", NOW - dt.timedelta(hours=24)),
        ("24H", NOW - dt.timedelta(hours=24)),
        (" 7d ", NOW - dt.timedelta(days=7)),
        ("2w", NOW - dt.timedelta(weeks=2)),
        ("90s", NOW - dt.timedelta(seconds=90)),
        ("2026-02-01", dt.datetime(2026, 2, 1, tzinfo=dt.UTC)),
        ("2026-02-01T12:00:00Z", dt.datetime(2026, 2, 1, 12, tzinfo=dt.UTC)),
    ],
)
def test_parse_since_takes_a_duration_or_a_time(text: str, expected: dt.datetime) -> None:
    assert parse_since(text, NOW) == expected


@pytest.mark.parametrize("text", ["", "yesterday", "24x", "-3d", "3 days"])
def test_parse_since_refuses_anything_else_naming_both_forms(text: str) -> None:
    with pytest.raises(UserError) as caught:
        parse_since(text, NOW, "--since")
    assert "is neither a duration nor an ISO-8601 time" in str(caught.value)
    assert "--since 24h" in str(caught.value)


def test_parse_since_refuses_a_duration_reaching_before_1970() -> None:
    with pytest.raises(UserError, match="reaches back before 1970"):
        parse_since("999999999d", NOW)
    with pytest.raises(UserError, match="reaches back before 1970"):
        parse_since("60w", dt.datetime(1970, 6, 1, tzinfo=dt.UTC))


def test_iso_round_trip_and_jsonable() -> None:
    assert iso(NOW) == "2026-03-01T09:00:00+00:00"
    assert iso(None) is None
    assert from_iso(iso(NOW)) == NOW
    assert from_iso(None) is None
    assert from_iso("") is None
    assert jsonable({"at": NOW, "n": 1}) == {"at": "2026-03-01T09:00:00+00:00", "n": 1}


def test_parse_since_says_out_of_range_for_a_time_outside_1970_to_8999() -> None:
    with pytest.raises(UserError, match=r"^--since '0001-01-01' is out of range"):
        parse_since("0001-01-01", NOW)
