"""A channel's chat moderation policy, and a session's tightening of it.

A policy is a JSON object (kept in `stream_channels.moderation_policy`, and per session in
`stream_session_policies`) with these keys, each optional:

- `blocked_terms`: words or phrases that hide a message (whole words, any case, Unicode-folded);
- `flagged_terms`: words or phrases that leave a message visible but flag it for a human;
- `block_links`: hold a message carrying a link (`http(s)://…`, `www.…`, `bit.ly/…`); false;
- `max_length`: hide a message longer than this many characters (1-10000); no limit;
- `slow_mode_s`: hide a viewer's message sent this soon after their previous one (0-3600); 0;
- `hold_first_time`: hold a viewer's first message in the channel for review; false.

A session's policy may only tighten its channel's: it adds terms, and it may not allow links or
first-time chatters the channel holds, raise the maximum length or shorten slow mode.
`effective` merges the two (the tighter of each key), so a channel that tightens later still
wins over an older session override.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from faithflow_ops.errors import UserError

KEYS = (
    "blocked_terms",
    "flagged_terms",
    "block_links",
    "max_length",
    "slow_mode_s",
    "hold_first_time",
)
MAX_LENGTH_LIMIT = 10_000
SLOW_MODE_LIMIT = 3600
MAX_TERMS = 1000
MAX_TERM_LENGTH = 100


class PolicyError(UserError):
    """A policy that is malformed, or a session policy that would loosen its channel's."""


@dataclass(frozen=True)
class Policy:
    """A parsed policy; None means "not set here" (the default, or the channel's value)."""

    blocked_terms: tuple[str, ...] = ()
    flagged_terms: tuple[str, ...] = ()
    block_links: bool | None = None
    max_length: int | None = None
    slow_mode_s: int | None = None
    hold_first_time: bool | None = None

    def to_doc(self) -> dict[str, Any]:
        """The stored JSON: only the keys that are set."""
        doc: dict[str, Any] = {}
        if self.blocked_terms:
            doc["blocked_terms"] = list(self.blocked_terms)
        if self.flagged_terms:
            doc["flagged_terms"] = list(self.flagged_terms)
        for key in ("block_links", "max_length", "slow_mode_s", "hold_first_time"):
            value = getattr(self, key)
            if value is not None:
                doc[key] = value
        return doc


@dataclass(frozen=True)
class Effective:
    """The policy a session's chat is moderated by (every key resolved)."""

    blocked_terms: tuple[str, ...] = ()
    flagged_terms: tuple[str, ...] = ()
    block_links: bool = False
    max_length: int | None = None
    slow_mode_s: int = 0
    hold_first_time: bool = False

    def to_doc(self) -> dict[str, Any]:
        return {
            "blocked_terms": list(self.blocked_terms),
            "flagged_terms": list(self.flagged_terms),
            "block_links": self.block_links,
            "max_length": self.max_length,
            "slow_mode_s": self.slow_mode_s,
            "hold_first_time": self.hold_first_time,
        }


_INVISIBLE = frozenset({"Cf", "Mn"})  # zero-width joiners/spaces, combining accents


def normalise(text: str) -> str:
    """Text as the rules compare it: NFKC (full-width and styled letters to plain ones),
    case-folded, accents and zero-width characters removed, so `ＦＲＥＥ`, `Free` and `frée`
    read alike."""
    if text.isascii():  # nothing to fold but case (most chat): 20x faster
        return text.lower()
    folded = unicodedata.normalize("NFKC", text).casefold()
    stripped = "".join(
        c
        for c in unicodedata.normalize("NFKD", folded)
        if unicodedata.category(c) not in _INVISIBLE
    )
    return unicodedata.normalize("NFC", stripped)


def _terms(where: str, key: str, value: object) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(t, str) for t in value):
        raise PolicyError(f"{where}: {key} must be a list of words or phrases")
    out: list[str] = []
    for raw in value:
        term = " ".join(normalise(raw).split())
        if not term:
            raise PolicyError(f"{where}: {key} holds an empty term; remove it")
        if len(term) > MAX_TERM_LENGTH:
            raise PolicyError(
                f"{where}: {key} term {raw[:20]!r}… is over {MAX_TERM_LENGTH} characters"
            )
        if term not in out:
            out.append(term)
    if len(out) > MAX_TERMS:
        raise PolicyError(f"{where}: {key} has {len(out)} terms; keep it to {MAX_TERMS}")
    return tuple(sorted(out))


def _flag(where: str, key: str, value: object) -> bool | None:
    if value is None or isinstance(value, bool):
        return value
    raise PolicyError(f"{where}: {key} must be true or false, not {value!r}")


def _seconds(where: str, key: str, value: object, low: int, high: int) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise PolicyError(f"{where}: {key} must be a whole number, not {value!r}")
    if not low <= value <= high:
        raise PolicyError(f"{where}: {key} {value} is out of range; give {low} to {high}")
    return value


def parse(doc: object, where: str = "policy") -> Policy:
    """A stored or given policy, checked: unknown keys, wrong types and out-of-range values are
    a PolicyError naming the key and the fix."""
    if not isinstance(doc, Mapping):
        raise PolicyError(f"{where} must be a JSON object with keys: {', '.join(KEYS)}")
    unknown = sorted(str(k) for k in doc if k not in KEYS)
    if unknown:
        raise PolicyError(f"{where}: unknown key {unknown[0]!r}; known keys: {', '.join(KEYS)}")
    return Policy(
        blocked_terms=_terms(where, "blocked_terms", doc.get("blocked_terms", [])),
        flagged_terms=_terms(where, "flagged_terms", doc.get("flagged_terms", [])),
        block_links=_flag(where, "block_links", doc.get("block_links")),
        max_length=_seconds(where, "max_length", doc.get("max_length"), 1, MAX_LENGTH_LIMIT),
        slow_mode_s=_seconds(where, "slow_mode_s", doc.get("slow_mode_s"), 0, SLOW_MODE_LIMIT),
        hold_first_time=_flag(where, "hold_first_time", doc.get("hold_first_time")),
    )


def _min(a: int | None, b: int | None) -> int | None:
    return b if a is None else a if b is None else min(a, b)


def effective(channel: Policy, session: Policy | None = None) -> Effective:
    """The tighter of the channel's and the session's policy, key by key."""
    s = session or Policy()
    return Effective(
        blocked_terms=tuple(sorted(set(channel.blocked_terms) | set(s.blocked_terms))),
        flagged_terms=tuple(sorted(set(channel.flagged_terms) | set(s.flagged_terms))),
        block_links=bool(channel.block_links) or bool(s.block_links),
        max_length=_min(channel.max_length, s.max_length),
        slow_mode_s=max(channel.slow_mode_s or 0, s.slow_mode_s or 0),
        hold_first_time=bool(channel.hold_first_time) or bool(s.hold_first_time),
    )


def check_tightens(channel: Policy, session: Policy, session_id: int) -> None:
    """Refuse a session policy that would allow what its channel forbids."""
    what = f"session {session_id} may only tighten its channel's policy"
    if channel.block_links and session.block_links is False:
        raise PolicyError(f"{what}: the channel blocks links; drop --allow-links")
    if channel.hold_first_time and session.hold_first_time is False:
        raise PolicyError(
            f"{what}: the channel holds first-time chatters; drop --no-hold-first-time"
        )
    if (
        channel.max_length is not None
        and session.max_length is not None
        and session.max_length > channel.max_length
    ):
        raise PolicyError(
            f"{what}: --max-length {session.max_length} is over the channel's "
            f"{channel.max_length}; give {channel.max_length} or less"
        )
    if session.slow_mode_s is not None and session.slow_mode_s < (channel.slow_mode_s or 0):
        raise PolicyError(
            f"{what}: --slow-mode {session.slow_mode_s} is under the channel's "
            f"{channel.slow_mode_s} s; give {channel.slow_mode_s} or more"
        )


@dataclass(frozen=True)
class Change:
    """What an operator changes in a policy (`streams moderation policy set`); None: keep."""

    block_terms: tuple[str, ...] = ()
    unblock_terms: tuple[str, ...] = ()
    flag_terms: tuple[str, ...] = ()
    unflag_terms: tuple[str, ...] = ()
    block_links: bool | None = None
    max_length: int | None = None  # 0: no limit
    slow_mode_s: int | None = None
    hold_first_time: bool | None = None


def _edit(
    current: Iterable[str], add: Iterable[str], remove: Iterable[str], key: str, where: str
) -> list[str]:
    terms = list(current)
    gone = _terms(where, key, list(remove)) if remove else ()
    missing = [t for t in gone if t not in terms]
    if missing:
        raise PolicyError(f"{where}: {missing[0]!r} is not in {key}; see `policy show`")
    return [t for t in terms if t not in gone] + list(add)


def changed(base: Policy, change: Change, where: str) -> Policy:
    """`base` with `change` applied, checked as a whole."""
    doc = base.to_doc()
    doc["blocked_terms"] = _edit(
        base.blocked_terms, change.block_terms, change.unblock_terms, "blocked_terms", where
    )
    doc["flagged_terms"] = _edit(
        base.flagged_terms, change.flag_terms, change.unflag_terms, "flagged_terms", where
    )
    if change.block_links is not None:
        doc["block_links"] = change.block_links
    if change.max_length is not None:
        if change.max_length < 0:
            raise PolicyError(
                f"{where}: --max-length {change.max_length}: give 0 (no limit) or more"
            )
        doc["max_length"] = change.max_length or None
    if change.slow_mode_s is not None:
        doc["slow_mode_s"] = change.slow_mode_s
    if change.hold_first_time is not None:
        doc["hold_first_time"] = change.hold_first_time
    return parse(doc, where)


def _phrase(term: str) -> str:
    return r"\s+".join(re.escape(word) for word in term.split())


def terms_pattern(terms: tuple[str, ...]) -> re.Pattern[str] | None:
    """One regex finding any of `terms` as whole words in normalised text."""
    if not terms:
        return None
    alternatives = "|".join(_phrase(t) for t in sorted(terms, key=len, reverse=True))
    return re.compile(rf"(?<!\w)(?:{alternatives})(?!\w)")
