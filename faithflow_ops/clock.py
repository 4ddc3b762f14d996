"""Times as operators, task bodies and action payloads give them — one parser for each shape
(core: no imports from the rest of the package but `errors`).

- `parse_time`: ISO-8601 (`2026-03-01T09:00:00Z`, an offset, or a date; naive = UTC), raising
  ValueError — for code that makes its own message.
- `parse_instant`: an operator's or a task body's time (`--now`, `"now"`, `--until`), refused
  with a UserError naming the field when it is not ISO-8601, empty, or outside 1970–8999
  (clock arithmetic steps days either side of it, and datetimes end at year 9999).
- `parse_since`: a window's start — a duration back from `now` (`30m`, `24h`, `7d`, `2w`) or
  any time `parse_instant` takes. The same syntax for every `--since`.
- `iso` / `from_iso` / `jsonable`: datetimes in and out of JSON payloads (actions, audit rows).
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Mapping
from typing import Any, overload

from faithflow_ops.errors import UserError

EARLIEST_YEAR, LATEST_YEAR = 1970, 8999


class OutOfRange(UserError):
    """A well-formed time outside 1970–8999 (its own message, never "not ISO-8601")."""


_DURATION = re.compile(r"^\s*(\d{1,9})\s*([smhdw])\s*$", re.IGNORECASE)
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def parse_time(value: str) -> dt.datetime:
    """A UTC datetime from ISO-8601 (a date means its midnight UTC); ValueError otherwise."""
    parsed = dt.datetime.fromisoformat(value.strip().replace("z", "Z"))
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=dt.UTC)
    return parsed.astimezone(dt.UTC)


def parse_instant(
    value: object, field: str = "--now", example: str = "2026-03-01T09:00:00Z"
) -> dt.datetime:
    """`value` as a UTC datetime, or a UserError naming `field` and showing `example`."""
    what = "time" if "T" in example else "date or time"
    if not isinstance(value, str) or not value.strip():
        shown = repr(value) if isinstance(value, str) else shown_value(value)
        raise UserError(f"{field} {shown} is not an ISO-8601 {what}; use e.g. {field} {example}")
    try:
        when = parse_time(value)
    except (ValueError, OverflowError):
        raise UserError(
            f"{field} {_cut(value)!r} is not an ISO-8601 {what}; use e.g. {field} {example}"
        ) from None
    if not EARLIEST_YEAR <= when.year <= LATEST_YEAR:
        raise OutOfRange(
            f"{field} {_cut(value)!r} is out of range; "
            f"give a time from {EARLIEST_YEAR} to {LATEST_YEAR}"
        )
    return when


def parse_since(value: object, now: dt.datetime, field: str = "--since") -> dt.datetime:
    """A window's start: a duration back from `now` (`30m`, `24h`, `7d`, `2w`) or a time."""
    if isinstance(value, str) and (match := _DURATION.match(value)):
        amount, unit = int(match.group(1)), match.group(2).lower()
        try:
            start = now - dt.timedelta(**{_UNITS[unit]: amount})
        except OverflowError:
            start = dt.datetime.min.replace(tzinfo=dt.UTC)
        if start.year < EARLIEST_YEAR:
            raise UserError(
                f"{field} {value!r} reaches back before {EARLIEST_YEAR}; give a shorter duration"
            )
        return start
    try:
        return parse_instant(value, field, "2026-03-01")
    except OutOfRange:
        raise
    except UserError:
        shown = repr(_cut(value)) if isinstance(value, str) else shown_value(value)
        raise UserError(
            f"{field} {shown} is neither a duration nor an ISO-8601 time; use e.g. "
            f"{field} 24h, {field} 30d, {field} 2026-03-01 or {field} 2026-03-01T09:00:00Z"
        ) from None


@overload
def iso(value: dt.datetime) -> str: ...
@overload
def iso(value: None) -> None: ...
@overload
def iso(value: dt.datetime | None) -> str | None: ...
def iso(value: dt.datetime | None) -> str | None:
    """A datetime as it is stored in an action's data or an audit row (None stays None)."""
    return value.isoformat() if value is not None else None


@overload
def from_iso(value: str) -> dt.datetime: ...
@overload
def from_iso(value: None) -> None: ...
@overload
def from_iso(value: str | None) -> dt.datetime | None: ...
def from_iso(value: str | None) -> dt.datetime | None:
    """The datetime `iso` wrote (None or an empty string give None)."""
    return dt.datetime.fromisoformat(value) if value else None


def jsonable(doc: Mapping[str, Any]) -> dict[str, Any]:
    """`doc` with its datetime values written as ISO-8601 (one level deep)."""
    return {k: v.isoformat() if isinstance(v, dt.datetime) else v for k, v in doc.items()}


def _cut(text: str) -> str:
    """A received value cut short: messages never echo a whole body."""
    return text if len(text) <= 60 else text[:57] + "..."


def shown_value(value: object) -> str:
    """A received value as JSON (repr if it is not JSON), cut to 60 characters: messages
    never echo a whole body."""
    import json

    try:
        return _cut(json.dumps(value))
    except (TypeError, ValueError):
        return _cut(repr(value))
