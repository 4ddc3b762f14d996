"""Quiet windows: weekly wall-clock periods in which no dunning message goes out
(`sun 06:00-14:00`, `daily 21:00-08:00`), as a tenant's preferences store them and as
operators write them (`--quiet`). What they mean in real time is `dunning.quiet`.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from faithflow_ops.errors import UserError

DAY_NAMES = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


@dataclass(frozen=True)
class QuietWindow:
    """A weekly quiet period in the tenant's wall-clock time."""

    days: frozenset[int]  # weekdays the window STARTS on, Monday = 0
    start: dt.time
    end: dt.time  # end <= start: runs past midnight into the next day

    def __post_init__(self) -> None:
        if not self.days or any(not isinstance(d, int) or not 0 <= d <= 6 for d in self.days):
            raise UserError(f"quiet window days {sorted(self.days)} must be weekdays 0-6")
        for when in (self.start, self.end):
            if when.second or when.microsecond or when.tzinfo is not None:
                raise UserError(f"quiet window time {when} must be a whole minute (HH:MM)")

    def to_dict(self) -> dict[str, Any]:
        return {
            "days": sorted(self.days),
            "start": self.start.strftime("%H:%M"),
            "end": self.end.strftime("%H:%M"),
        }

    @classmethod
    def from_dict(cls, doc: dict[str, Any]) -> QuietWindow:
        return cls(
            frozenset(int(d) for d in doc["days"]),
            _clock(str(doc["start"])),
            _clock(str(doc["end"])),
        )

    def describe(self) -> str:
        """`daily 21:00-08:00`, `sun 06:00-14:00`, `mon-fri 22:00-07:00`."""
        return f"{describe_days(self.days)} {self.start:%H:%M}-{self.end:%H:%M}"


_EVERY_DAY = frozenset(range(7))
DEFAULT_QUIET_HOURS: tuple[QuietWindow, ...] = (
    QuietWindow(_EVERY_DAY, dt.time(21, 0), dt.time(8, 0)),
    QuietWindow(frozenset({6}), dt.time(6, 0), dt.time(14, 0)),
)


def _clock(text: str) -> dt.time:
    match = re.fullmatch(r"(\d{1,2}):(\d{2})", text.strip())
    if not match or int(match[1]) > 23 or int(match[2]) > 59:
        raise UserError(f"time {text!r} is not HH:MM (00:00-23:59)")
    return dt.time(int(match[1]), int(match[2]))


def describe_days(days: Iterable[int]) -> str:
    chosen = sorted(set(days))
    if chosen == list(range(7)):
        return "daily"
    runs: list[list[int]] = []
    for day in chosen:
        if runs and runs[-1][-1] == day - 1:
            runs[-1].append(day)
        else:
            runs.append([day])
    parts = [
        DAY_NAMES[r[0]] if len(r) == 1 else f"{DAY_NAMES[r[0]]}-{DAY_NAMES[r[-1]]}" for r in runs
    ]
    return ",".join(parts)


_DAY_WORDS = {
    **{name: i for i, name in enumerate(DAY_NAMES)},
    **{
        full: i
        for i, full in enumerate(
            ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
        )
    },
}
_SPEC_HINT = (
    "use e.g. 'sun 06:00-14:00', 'daily 21:00-08:00', 'mon-fri 22:00-07:00' "
    "or 'sat,sun 13:00-15:00'"
)


def _day(word: str, spec: str) -> int:
    if word not in _DAY_WORDS:
        raise UserError(f"quiet hours {spec!r}: {word!r} is not a day; {_SPEC_HINT}")
    return _DAY_WORDS[word]


def parse_window(spec: str) -> QuietWindow:
    """`DAYS HH:MM-HH:MM` → QuietWindow. DAYS: daily, weekdays, weekends, a day (`sun`), a range
    (`mon-fri`, wrapping allowed: `fri-mon`) or a comma list (`sat,sun`)."""
    parts = spec.strip().lower().split()
    if len(parts) != 2 or "-" not in parts[1]:
        raise UserError(f"quiet hours {spec!r} are not 'DAYS HH:MM-HH:MM'; {_SPEC_HINT}")
    days_text, times = parts
    start_text, _, end_text = times.partition("-")
    try:
        start, end = _clock(start_text), _clock(end_text)
    except UserError as exc:
        raise UserError(f"quiet hours {spec!r}: {exc}; {_SPEC_HINT}") from None
    if days_text in ("daily", "every", "everyday", "all", "*"):
        days = set(range(7))
    elif days_text == "weekdays":
        days = set(range(5))
    elif days_text == "weekends":
        days = {5, 6}
    else:
        days = set()
        for item in days_text.split(","):
            first, dash, last = item.partition("-")
            if not dash:
                days.add(_day(item, spec))
                continue
            a, b = _day(first, spec), _day(last, spec)
            days.update(d % 7 for d in range(a, a + (b - a) % 7 + 1))
    return QuietWindow(frozenset(days), start, end)


def windows_from_specs(specs: Sequence[str]) -> tuple[QuietWindow, ...]:
    """`--quiet` values → windows; the single value `none` means no quiet hours at all."""
    if [s.strip().lower() for s in specs] == ["none"]:
        return ()
    windows = tuple(parse_window(spec) for spec in specs)
    _refuse_same_start_and_end(specs, windows)
    return windows


def _refuse_same_start_and_end(specs: Sequence[str], windows: Sequence[QuietWindow]) -> None:
    """`sun 06:00-06:00` reads as an empty window or as a whole day: refused, naming it. (When
    such windows fill every day, the week check says the week is covered, which is true either
    way.)"""
    same = [(spec, w) for spec, w in zip(specs, windows, strict=True) if w.start == w.end]
    if not same or set().union(*(w.days for _, w in same)) == set(range(7)):
        return
    spec, window = same[0]
    raise UserError(
        f"quiet hours {spec.strip()!r} start and end at the same minute ({window.start:%H:%M}), "
        "an empty window; give different times, e.g. 'sun 06:00-14:00' (a window past midnight "
        "ends the next day: 'daily 21:00-08:00')"
    )
