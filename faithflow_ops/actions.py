"""The plain data of the job contract (DESIGN §2), at the bottom of the layers so domain code
can plan and apply without importing `jobs`: an `Action`, its `ActionResult`, `StaleAction`,
and `parse_time` (a run's `now`, from `faithflow_ops.clock`). `jobs.base` re-exports them
beside `Job` and `JobContext`."""

from __future__ import annotations

import dataclasses
import datetime as dt
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cache
from typing import Any, Literal, TypeVar, cast

from faithflow_ops.clock import parse_time

__all__ = [
    "Action",
    "ActionResult",
    "Outcome",
    "StaleAction",
    "decode",
    "encode",
    "parse_time",
]

P = TypeVar("P")

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
    # failed because an outside service did (a ProviderError, or a kind in the job's
    # failure_kinds): a run whose every failure is outside fails as `provider` (task 502)
    outside: bool = field(default=False, compare=False)

    def to_dict(self) -> dict[str, Any]:
        out = self.action.to_dict()
        if self.outcome is not None:
            out["outcome"] = self.outcome
        if self.error is not None:
            out["error"] = self.error
        return out


class StaleAction(Exception):
    """The row no longer matches what the plan saw: someone else applied it, or it changed."""


# ---------------------------------------------------------------------------------------------
# Typed payloads: one frozen dataclass per action kind, one JSON codec.
#
#     @dataclass(frozen=True)
#     class SendNotice:
#         case_id: int
#         due_at: dt.datetime
#
#     Action("send_notice", f"case:{n.case_id}", reason, encode(n))   # in the plan
#     notice = decode(SendNotice, action.data)                          # in apply
#
# `Action.data` stays plain JSON (what --json prints and a task answers); the dataclass is what
# the code reads, so mypy catches a renamed or misspelt field.


def encode(payload: object) -> dict[str, Any]:
    """A payload dataclass as a JSON-safe dict: datetimes and dates as ISO-8601, tuples as
    lists, nested dataclasses as dicts; field order kept."""
    if not dataclasses.is_dataclass(payload) or isinstance(payload, type):
        raise TypeError(f"encode() takes a dataclass instance, not {type(payload).__name__}")
    return {f.name: _encode(getattr(payload, f.name)) for f in dataclasses.fields(payload)}


def _encode(value: Any) -> Any:
    if isinstance(value, dt.datetime | dt.date):
        return value.isoformat()
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return encode(value)
    if isinstance(value, list | tuple):
        return [_encode(v) for v in value]
    if isinstance(value, dict):
        return {k: _encode(v) for k, v in value.items()}
    return value


def decode(cls: type[P], data: Mapping[str, Any]) -> P:
    """The payload `encode` wrote, typed again. Keys the class does not declare are ignored
    (a preview planned by an older version still applies); a missing field without a default
    is a ValueError naming it."""
    hints = _hints(cast(Any, cls))
    values: dict[str, Any] = {}
    for f in dataclasses.fields(cls):  # type: ignore[arg-type]
        if f.name in data:
            values[f.name] = _decode(hints[f.name], data[f.name])
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise ValueError(f"{cls.__name__} payload has no {f.name!r}")
    return cls(**values)


@cache
def _hints(cls: Any) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _decode(hint: Any, value: Any) -> Any:
    if value is None:
        return None
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        options = [a for a in typing.get_args(hint) if a is not type(None)]
        return _decode(options[0], value) if len(options) == 1 else value
    if hint is dt.datetime:
        return dt.datetime.fromisoformat(value) if isinstance(value, str) else value
    if hint is dt.date:
        return dt.date.fromisoformat(value) if isinstance(value, str) else value
    if isinstance(hint, type) and dataclasses.is_dataclass(hint):
        return decode(hint, value)
    if origin is tuple:
        args = typing.get_args(hint)
        item = args[0] if args else Any
        return tuple(_decode(item, v) for v in value)
    if origin is list:
        (item,) = typing.get_args(hint) or (Any,)
        return [_decode(item, v) for v in value]
    return value
