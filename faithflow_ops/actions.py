"""The plain data of the job contract (DESIGN §2), at the bottom of the layers so domain code
can plan and apply without importing `jobs`: an `Action`, its `ActionResult`, `StaleAction`,
and `parse_time` (a run's `now`). `jobs.base` re-exports them beside `Job` and `JobContext`."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any, Literal

Outcome = Literal["applied", "stale", "failed", "reported"]


def parse_time(value: str) -> dt.datetime:
    """A job's `now` from ISO-8601 (`2026-03-01T09:00:00Z`, an offset, or a date; naive = UTC).

    Raises ValueError; the CLI and the receiver turn that into their own message.
    """
    parsed = dt.datetime.fromisoformat(value.strip().replace("z", "Z"))
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=dt.UTC)
    return parsed.astimezone(dt.UTC)


@dataclass(frozen=True)
class Action:
    """One thing a job would do. Plain data: safe to print, serialise, and apply later."""

    kind: str
    target: str  # e.g. "subscription:17"
    reason: str
    data: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "target": self.target, "reason": self.reason, "data": self.data}


@dataclass
class ActionResult:
    action: Action
    outcome: Outcome | None = None  # None in a preview
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        out = self.action.to_dict()
        if self.outcome is not None:
            out["outcome"] = self.outcome
        if self.error is not None:
            out["error"] = self.error
        return out


class StaleAction(Exception):
    """The row no longer matches what the plan saw: someone else applied it, or it changed."""
