"""The plain data of the job contract (DESIGN §2), at the bottom of the layers so domain code
can plan and apply without importing `jobs`: an `Action`, its `ActionResult`, `StaleAction`,
and `parse_time` (a run's `now`, from `faithflow_ops.clock`). `jobs.base` re-exports them
beside `Job` and `JobContext`."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from faithflow_ops.clock import parse_time

__all__ = ["Action", "ActionResult", "Outcome", "StaleAction", "parse_time"]

Outcome = Literal["applied", "stale", "failed", "reported"]


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
