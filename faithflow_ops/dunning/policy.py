"""The dunning ladder: steps at offsets from a case's `past_due_since`.

Stored as one `dunning_policies` row named `default`; no row = `DEFAULT_POLICY`. Operators edit
it as a TOML file (docs/dunning.md, `faithflow dunning policy show --toml | set --file`):

    [[step]]
    key = "day3"                  # unique; used in idempotency keys and analytics
    day = 3                       # and/or hours = 12: the offset from past_due_since
    channels = ["email"]          # email, sms, whatsapp; may be empty
    template = "dunning_reminder" # needs a template file for every channel
    retry_payment = true          # retry the payment at the provider (default false)

    [[step]]
    key = "day14"
    day = 14
    handover = true               # hand the case over to suspension (the last step)

Every problem in a file is a PolicyError naming the file, the line and the fix.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from faithflow_ops import audit
from faithflow_ops.errors import UserError

CHANNELS = ("email", "sms", "whatsapp")
POLICY_NAME = "default"
_HOUR = dt.timedelta(hours=1)
_MAX_OFFSET = dt.timedelta(days=365)
_KEY = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")
STEP_KEYS = ("key", "day", "hours", "channels", "template", "retry_payment", "handover")


class PolicyError(UserError):
    """An invalid policy file: `policy.toml line 12: <reason>; <fix>`."""


@dataclass(frozen=True)
class Step:
    key: str  # unique in the ladder, e.g. "day3"; used in idempotency keys and analytics
    offset: dt.timedelta  # from the case's past_due_since
    channels: tuple[str, ...]  # may be empty (handover)
    template: str | None  # comms template name; required when channels is not empty
    retry_payment: bool = False
    handover: bool = False  # hand the case over to suspension

    def to_dict(self) -> dict[str, Any]:
        hours = int(self.offset / _HOUR)
        return {
            "key": self.key,
            "offset_hours": hours,
            "day": hours // 24 if hours % 24 == 0 else None,
            "channels": list(self.channels),
            "template": self.template,
            "retry_payment": self.retry_payment,
            "handover": self.handover,
        }

    @classmethod
    def from_dict(cls, doc: dict[str, Any]) -> Step:
        return cls(
            key=str(doc["key"]),
            offset=dt.timedelta(hours=int(doc["offset_hours"])),
            channels=tuple(doc.get("channels") or ()),
            template=doc.get("template"),
            retry_payment=bool(doc.get("retry_payment", False)),
            handover=bool(doc.get("handover", False)),
        )

    def when(self) -> str:
        """`day 3`, `36 h`, `day 2 + 6 h`."""
        hours = int(self.offset / _HOUR)
        days, rest = divmod(hours, 24)
        if rest == 0:
            return f"day {days}"
        return f"{hours} h" if days == 0 else f"day {days} + {rest} h"


@dataclass(frozen=True)
class Policy:
    steps: tuple[Step, ...]  # sorted by offset

    def to_dict(self) -> dict[str, Any]:
        return {"steps": [step.to_dict() for step in self.steps]}

    def step(self, key: str) -> Step | None:
        return next((s for s in self.steps if s.key == key), None)

    @property
    def final_notice(self) -> Step | None:
        """The last step that sends a message: no church is suspended before it went out."""
        return next((s for s in reversed(self.steps) if s.channels), None)


def suspend_at(
    past_due_since: dt.datetime,
    grace_days: int,
    paused_until: dt.datetime | None,
    final_notice: Step | None,
) -> dt.datetime:
    """When a past-due church may be suspended: `past_due_since + grace`, pushed back by a
    dunning pause of this episode (the treasurer promised to pay on the 5th): after the pause
    the church still gets the notice period the ladder gives everyone (from its final notice
    to the end of the grace, at least a day)."""
    grace = dt.timedelta(days=grace_days)
    at = past_due_since + grace
    if paused_until is not None and paused_until > past_due_since:
        notice = grace - final_notice.offset if final_notice is not None else grace
        at = max(at, paused_until + max(notice, dt.timedelta(days=1)))
    return at


def check_final_notice(policy: Policy, shortest_grace: tuple[int, str] | None) -> None:
    """PolicyError when the ladder's final notice falls after the suspension day, the shortest
    grace in force (`(days, whose)`). (parse_policy already keeps the handover last.)"""
    final = policy.final_notice
    if final is None:
        return
    if shortest_grace is not None:
        days, whose = shortest_grace
        if final.offset > dt.timedelta(days=days):
            raise PolicyError(
                f"the final notice {final.key!r} ({final.when()}) falls after the suspension "
                f"day: {whose} suspends after {days} days past due; move the final notice to "
                f"day {days} or earlier, or lengthen that grace"
            )


DEFAULT_POLICY = Policy(
    (
        Step("day0", dt.timedelta(days=0), ("email",), "dunning_payment_failed"),
        Step("day3", dt.timedelta(days=3), ("email",), "dunning_reminder", retry_payment=True),
        Step("day5", dt.timedelta(days=5), ("sms",), "dunning_reminder"),
        Step("day7", dt.timedelta(days=7), ("whatsapp",), "dunning_reminder", retry_payment=True),
        Step("day10", dt.timedelta(days=10), ("email", "sms"), "dunning_final_notice"),
        Step("day14", dt.timedelta(days=14), (), None, handover=True),
    )
)


# --- reading a file -------------------------------------------------------------------------


class _Lines:
    """Where things are in the file: tomllib gives values, not positions."""

    _HEADER = re.compile(r"""^\s*\[\[\s*(?:step|"step"|'step')\s*\]\]\s*(?:#.*)?$""")
    _TABLE = re.compile(r"^\s*\[")

    def __init__(self, text: str) -> None:
        self.lines = text.splitlines()
        self.headers = [i + 1 for i, line in enumerate(self.lines) if self._HEADER.match(line)]

    def step(self, index: int) -> int:
        return self.headers[index] if index < len(self.headers) else 1

    def key(self, index: int, key: str) -> int:
        """The line of `key = …` inside step `index` (else the step's header)."""
        start = self.step(index)
        pattern = re.compile(
            rf"""^\s*(?:{re.escape(key)}|"{re.escape(key)}"|'{re.escape(key)}')\s*[=.]"""
        )
        for number in range(start + 1, len(self.lines) + 1):
            line = self.lines[number - 1]
            if self._TABLE.match(line):
                if re.match(rf"^\s*\[\s*step\.{re.escape(key)}\s*\]", line):
                    return number
                break
            if pattern.match(line):
                return number
        return start

    def top(self, key: str) -> int:
        pattern = re.compile(rf"""^\s*\[*\s*(?:{re.escape(key)}|"{re.escape(key)}")\s*[=\].]""")
        for number, line in enumerate(self.lines, start=1):
            if pattern.match(line):
                return number
        return 1


def _type_name(value: Any) -> str:
    return {
        bool: "true/false",
        int: "a number",
        float: "a decimal number",
        str: "text",
        list: "a list",
        dict: "a table",
    }.get(type(value), type(value).__name__)


def parse_policy(text: str, *, filename: str = "policy.toml") -> Policy:
    """The ladder in a TOML policy file (docs/dunning.md); PolicyError names the line and fix."""
    import tomllib

    from faithflow_ops.comms import templates

    def fail(line: int, message: str) -> PolicyError:
        return PolicyError(f"{filename} line {line}: {message}")

    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        found = re.search(r"\(at line (\d+), column (\d+)\)", str(exc))
        reason = re.sub(r"\s*\(at line \d+, column \d+\)", "", str(exc))
        if found:
            raise fail(
                int(found[1]),
                f"not valid TOML ({reason} at column {found[2]}); fix the syntax",
            ) from None
        raise PolicyError(f"{filename}: not valid TOML ({reason}); fix the syntax") from None
    lines = _Lines(text)
    for key in doc:
        if key != "step":
            raise fail(
                lines.top(key),
                f"unknown setting {key!r}; a policy file holds only [[step]] tables",
            )
    raw_steps = doc.get("step")
    if raw_steps is None or raw_steps == []:
        raise fail(1, "the policy has no steps; add at least one [[step]] table")
    if not isinstance(raw_steps, list) or not all(isinstance(s, dict) for s in raw_steps):
        raise fail(lines.top("step"), "'step' must be [[step]] tables; write each step as [[step]]")

    steps: list[tuple[int, Step]] = []
    keys: dict[str, int] = {}
    offsets: dict[dt.timedelta, str] = {}
    for index, raw in enumerate(raw_steps):
        header = lines.step(index)
        name = f"step {index + 1}"
        for key in raw:
            if key not in STEP_KEYS:
                raise fail(
                    lines.key(index, key),
                    f"{name} has an unknown key {key!r}; the keys are {', '.join(STEP_KEYS)}",
                )

        def typed(key: str, kind: type, what: str, label: str) -> Any:
            value = raw.get(key)  # noqa: B023 (used within this iteration only)
            if value is not None and (
                not isinstance(value, kind) or (kind is int and isinstance(value, bool))
            ):
                raise fail(
                    lines.key(index, key),  # noqa: B023
                    f"{label}: {key} is {_type_name(value)}, not {what}; "
                    f"write e.g. {_EXAMPLES[key]}",
                )
            return value

        key = typed("key", str, "text", name)
        if key is None:
            raise fail(header, f'{name} has no key; add e.g. key = "day{index}"')
        if not _KEY.match(key):
            raise fail(
                lines.key(index, "key"),
                f"{name}: key {key!r} must be 1-64 lower-case letters, digits, '-' or '_' "
                'starting with a letter or digit, e.g. key = "day3"',
            )
        name = f"step {key!r}"
        if key in keys:
            raise fail(
                lines.key(index, "key"),
                f"{name} is defined twice (first at line {keys[key]}); give each step its own key",
            )
        keys[key] = lines.key(index, "key")

        day = typed("day", int, "a whole number of days", name)
        hours = typed("hours", int, "a whole number of hours", name)
        if day is None and hours is None:
            raise fail(header, f"{name} has no offset; add day = N (or hours = N)")
        for field, value in (("day", day), ("hours", hours)):
            if value is not None and value < 0:
                raise fail(
                    lines.key(index, field),
                    f"{name}: {field} = {value} is negative; steps run at or after past_due_since",
                )
        # compare in hours before building a timedelta: a huge day/hours would overflow it
        total_hours = (day or 0) * 24 + (hours or 0)
        if total_hours > _MAX_OFFSET / _HOUR:
            raise fail(
                lines.key(index, "day" if day is not None else "hours"),
                f"{name} runs {total_hours // 24} days after past_due_since; keep steps within "
                "365 days",
            )
        offset = dt.timedelta(hours=total_hours)
        if offset in offsets:
            raise fail(
                header,
                f"{name} has the same offset as step {offsets[offset]!r} "
                f"({Step(key, offset, (), None).when()}); give each step its own time",
            )
        offsets[offset] = key

        channels = typed("channels", list, 'a list such as ["email", "sms"]', name) or []
        for channel in channels:
            if channel not in CHANNELS:
                raise fail(
                    lines.key(index, "channels"),
                    f"{name}: channel {channel!r} is not one of: {', '.join(CHANNELS)}",
                )
        if len(set(channels)) != len(channels):
            raise fail(
                lines.key(index, "channels"), f"{name} names a channel twice; list each once"
            )
        template = typed("template", str, "text (a template name)", name)
        if channels and template is None:
            raise fail(
                header,
                f"{name} sends on {', '.join(channels)} but has no template; "
                'add e.g. template = "dunning_reminder"',
            )
        if template is not None and not channels:
            raise fail(
                lines.key(index, "template"),
                f'{name} has a template but no channels; add e.g. channels = ["email"] '
                "or drop the template",
            )
        if template is not None:
            have = templates.available(template)
            if not have:
                known = ", ".join(n for n in templates.names() if n.startswith("dunning")) or "none"
                raise fail(
                    lines.key(index, "template"),
                    f"{name}: there is no template {template!r}; dunning templates: {known}",
                )
            for channel in channels:
                if channel not in have:
                    raise fail(
                        lines.key(index, "channels"),
                        f"{name}: template {template!r} has no {channel} version (it has "
                        f"{', '.join(have)}); add faithflow_ops/comms/templates/"
                        f"{template}.{channel}.txt or drop {channel} from this step",
                    )
            if "sms" in channels or "whatsapp" in channels:  # WhatsApp may go by SMS
                try:  # a dunning SMS is one GSM-7 segment with the church's name (issue 21)
                    templates.check_sms_fit(template)
                except UserError as exc:
                    raise fail(lines.key(index, "template"), f"{name}: {exc}") from None
        retry = typed("retry_payment", bool, "true or false", name) or False
        handover = typed("handover", bool, "true or false", name) or False
        if not channels and not retry and not handover:
            raise fail(
                header,
                f"{name} does nothing; give it channels, retry_payment = true or handover = true",
            )
        steps.append((header, Step(key, offset, tuple(channels), template, retry, handover)))

    handovers = [(line, s) for line, s in steps if s.handover]
    if len(handovers) > 1:
        first, second = sorted(handovers, key=lambda item: item[0])[:2]
        raise fail(
            second[0],
            f"step {second[1].key!r} is a second handover (step {first[1].key!r} at line "
            f"{first[0]} is one); keep one handover step, the last",
        )
    ordered = sorted(steps, key=lambda item: item[1].offset)
    if handovers and ordered[-1][1] is not handovers[0][1]:
        line, step = handovers[0]
        later = ordered[-1][1]
        raise fail(
            line,
            f"handover step {step.key!r} ({step.when()}) is not the last step: {later.key!r} "
            f"comes after it ({later.when()}); move the handover to the end",
        )
    return Policy(tuple(step for _, step in ordered))


_EXAMPLES = {
    "key": 'key = "day3"',
    "day": "day = 3",
    "hours": "hours = 12",
    "channels": 'channels = ["email", "sms"]',
    "template": 'template = "dunning_reminder"',
    "retry_payment": "retry_payment = true",
    "handover": "handover = true",
}


def _toml_string(value: str) -> str:
    escaped = value.replace("\\", "\\\\").replace('"', '\\"')
    return f'"{escaped}"'


def to_toml(policy: Policy) -> str:
    """The policy as a file `parse_policy` reads back to the same policy."""
    out = [
        "# FaithFlow dunning ladder: each [[step]] runs at day/hours after the case went past due.",
        "# Edit, then: faithflow dunning policy set --file policy.toml (--dry-run to check).",
    ]
    for step in policy.steps:
        hours = int(step.offset / _HOUR)
        out.append("")
        out.append("[[step]]")
        out.append(f"key = {_toml_string(step.key)}")
        out.append(f"day = {hours // 24}" if hours % 24 == 0 else f"hours = {hours}")
        if step.channels or not step.handover:
            out.append(f"channels = [{', '.join(_toml_string(c) for c in step.channels)}]")
        if step.template is not None:
            out.append(f"template = {_toml_string(step.template)}")
        if step.retry_payment:
            out.append("retry_payment = true")
        if step.handover:
            out.append("handover = true")
    return "\n".join(out) + "\n"


# --- the stored policy ----------------------------------------------------------------------


def _row(session: Session) -> Any:
    from faithflow_ops.models import DunningPolicy

    return session.scalar(select(DunningPolicy).where(DunningPolicy.name == POLICY_NAME))


def current_policy(session: Session) -> Policy:
    """The stored ladder (row `default`), or DEFAULT_POLICY when none is stored."""
    row = _row(session)
    if row is None:
        return DEFAULT_POLICY
    steps = sorted((Step.from_dict(doc) for doc in row.steps), key=lambda s: s.offset)
    return Policy(tuple(steps))


def policy_doc(session: Session) -> dict[str, Any]:
    """What `dunning policy show --json` prints."""
    row = _row(session)
    policy = current_policy(session)
    return {
        "name": POLICY_NAME,
        "stored": row is not None,
        "updated_by": row.updated_by if row is not None else None,
        "updated_at": row.updated_at if row is not None else None,
        **policy.to_dict(),
    }


def stored_source(session: Session) -> str | None:
    """The TOML the stored policy was set from (comments and all), if any."""
    row = _row(session)
    return row.source if row is not None else None


def save_policy(session: Session, policy: Policy, *, source: str | None, actor: str) -> bool:
    """Store `policy` as the ladder in force, audited. False when it is already in force (with
    the same source text): nothing changes."""
    from faithflow_ops.db import upsert_insert, utcnow
    from faithflow_ops.models import DunningPolicy

    if not policy.steps:
        raise PolicyError("a policy needs at least one step")
    steps = policy.to_dict()["steps"]
    row = _row(session)
    before = current_policy(session).to_dict()["steps"]
    if row is not None and row.steps == steps and row.source == source:
        return False
    now = utcnow()
    dialect = session.get_bind().dialect.name
    stmt = upsert_insert(dialect, DunningPolicy).values(
        name=POLICY_NAME, steps=steps, source=source, updated_by=actor, created_at=now,
        updated_at=now,
    )  # fmt: skip
    stmt = stmt.on_conflict_do_update(
        index_elements=["name"],
        set_={"steps": steps, "source": source, "updated_by": actor, "updated_at": now},
    ).returning(DunningPolicy.id)
    policy_id = session.execute(stmt).scalar_one()
    audit.record(
        session,
        actor=actor,
        action="dunning.policy.set",
        entity_type="dunning_policy",
        entity_id=policy_id,
        before={"stored": row is not None, "steps": before},
        after={"stored": True, "steps": steps},
    )
    return True


def reset_policy(session: Session, *, actor: str) -> bool:
    """Go back to the built-in DEFAULT_POLICY (the stored row is removed), audited. False when
    no policy was stored."""
    from faithflow_ops.models import DunningPolicy

    row = _row(session)
    if row is None:
        return False
    before = current_policy(session).to_dict()["steps"]
    session.execute(delete(DunningPolicy).where(DunningPolicy.id == row.id))
    audit.record(
        session,
        actor=actor,
        action="dunning.policy.reset",
        entity_type="dunning_policy",
        entity_id=row.id,
        before={"stored": True, "steps": before},
        after={"stored": False, "steps": DEFAULT_POLICY.to_dict()["steps"]},
    )
    return True
