"""`streams moderate`'s rules: each chat message nobody has looked at yet (`pending`) gets the
status its session's policy (faithflow_ops/streams/moderation_policy.py) calls for, with the
rule that hit. The first rule that hits decides, in this order:

- `ban` (hidden): the viewer has a standing ban on the channel or the session;
- `blocked_term` (hidden): a blocked word or phrase, as a whole word, any case, Unicode-folded;
- `max_length` (hidden): longer than the policy's maximum (characters);
- `slow_mode` (hidden): sent sooner than `slow_mode_s` after the viewer's previous message in
  the session that was not hidden;
- `link` (held): `http(s)://…`, `www.…` or a bare domain (`bit.ly/x`) when links are blocked;
- `first_time` (held): the viewer has no earlier visible, flagged or approved message in the
  channel, and the policy holds first-time chatters;
- `flagged_term` (flagged, stays visible): a flagged word or phrase;
- none of the above: visible.

Messages are decided per session in the order they were sent, and a decision counts for the
messages after it in the same run (a viewer's first visible message makes them known; a visible
message starts their slow-mode interval). Each decision is an Action (`hide`, `hold`, `flag`,
`allow`) per message, and a report-only `session_summary` per session gives its counts. apply
claims the message while it is still unmoderated (`moderated_at IS NULL`), so a rerun, or an
operator who got there first, is stale; every hide, hold and flag is recorded in
`stream_moderation_actions` with its rule.
"""

from __future__ import annotations

import bisect
import datetime as dt
import re
from collections import Counter, defaultdict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, cast

from sqlalchemy import Table, and_, func, insert, or_, select, update
from sqlalchemy.orm import Session

from faithflow_ops.actions import Action, StaleAction, decode, encode
from faithflow_ops.db import among, rowcount
from faithflow_ops.models import (
    StreamBan,
    StreamChannel,
    StreamChatMessage,
    StreamModerationAction,
    StreamSession,
    StreamSessionPolicy,
    Tenant,
)
from faithflow_ops.streams import moderation_policy as policies

_MESSAGES = cast(Table, StreamChatMessage.__table__)
_ACTIONS = cast(Table, StreamModerationAction.__table__)

JOB_ACTOR = "job:streams_moderate"
# status a message gets for each action kind
STATUS_OF = {"hide": "hidden", "hold": "held", "flag": "flagged", "allow": "visible"}
KIND_OF = {rule: kind for kind, rules in {
    "hide": ("ban", "blocked_term", "max_length", "slow_mode"),
    "hold": ("link", "first_time"),
    "flag": ("flagged_term",),
}.items() for rule in rules}  # fmt: skip
RULES = tuple(KIND_OF)
# statuses a viewer's message counts as seen by the chat (first-time chatters)
SEEN = ("visible", "flagged", "approved")

_TLDS = (
    "com|net|org|info|biz|io|co|me|tv|app|dev|gg|ly|xyz|site|online|live|link|church|shop|"
    "store|click|top|club|vip|win|bet|loan|ru|cn|uk|us|ng|za|ke|gh|in|de|fr|br|ca|au|to|cc|su"
)
LINK = re.compile(
    r"https?://\S+"
    r"|(?<![\w@.])www\.[^\s]+"
    r"|(?<![\w@.\-])(?:[a-z0-9](?:[a-z0-9\-]*[a-z0-9])?\.)+(?:" + _TLDS + r")(?![\w\-])(?:/\S*)?",
    re.IGNORECASE,
)


@dataclass(frozen=True)
class Verdict:
    kind: str  # hide | hold | flag | allow
    rule: str | None
    detail: str


@dataclass(frozen=True)
class Moderate:  # kinds "hide", "hold", "flag", "allow"
    message_id: int
    session_id: int
    channel_id: int
    tenant_id: int
    viewer_id: str
    status: str
    rule: str | None
    detail: str


@dataclass(frozen=True)
class SessionSummary:  # kind "session_summary" (report only)
    session_id: int
    counts: dict[str, int]


@dataclass(frozen=True)
class Context:
    """What a message is judged against besides its text."""

    banned: str | None = None  # the ban's description when the viewer is banned
    since_previous_s: float | None = None  # seconds since their previous counted message
    first_time: bool = False


@lru_cache(maxsize=256)
def _pattern(terms: tuple[str, ...]) -> re.Pattern[str] | None:
    return policies.terms_pattern(terms)


def find_link(text: str) -> str | None:
    found = LINK.search(text)
    return found.group(0) if found else None


def find_term(text: str, terms: tuple[str, ...], *, normalised: bool = False) -> str | None:
    """The first of `terms` in `text` as a whole word (both normalised), or None."""
    pattern = _pattern(terms)
    if pattern is None:
        return None
    found = pattern.search(text if normalised else policies.normalise(text))
    return found.group(0) if found else None


def decide(body: str, policy: policies.Effective, ctx: Context) -> Verdict:
    """The rule that hits `body` first under `policy` (the table in this module's doc)."""
    if ctx.banned is not None:
        return Verdict("hide", "ban", f"viewer banned ({ctx.banned})")
    folded = policies.normalise(body) if policy.blocked_terms or policy.flagged_terms else body
    term = find_term(folded, policy.blocked_terms, normalised=True)
    if term is not None:
        return Verdict("hide", "blocked_term", f"blocked term {term!r}")
    length = len(body)
    if policy.max_length is not None and length > policy.max_length:
        return Verdict(
            "hide", "max_length", f"{length} characters, over the maximum {policy.max_length}"
        )
    if (
        policy.slow_mode_s > 0
        and ctx.since_previous_s is not None
        and ctx.since_previous_s < policy.slow_mode_s
    ):
        return Verdict(
            "hide",
            "slow_mode",
            f"{ctx.since_previous_s:.0f} s after the viewer's previous message "
            f"(slow mode {policy.slow_mode_s} s)",
        )
    if policy.block_links:
        link = find_link(body)
        if link is not None:
            return Verdict("hold", "link", f"link {link[:60]!r}")
    if policy.hold_first_time and ctx.first_time:
        return Verdict("hold", "first_time", "the viewer's first message in the channel")
    term = find_term(folded, policy.flagged_terms, normalised=True)
    if term is not None:
        return Verdict("flag", "flagged_term", f"flagged term {term!r}")
    return Verdict("allow", None, "no rule hit")


# --- plan ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Scope:
    session_id: int
    channel_id: int
    tenant_id: int
    slug: str
    channel: str
    title: str
    channel_policy: dict[str, Any]
    session_policy: dict[str, Any] | None


def _scopes(session: Session) -> list[_Scope]:
    """The sessions with unmoderated messages (ix_stream_chat_messages_unmoderated)."""
    waiting = (
        select(StreamChatMessage.session_id)
        .where(StreamChatMessage.moderated_at.is_(None))
        .distinct()
        .subquery()
    )
    rows = session.execute(
        select(
            StreamSession.id,
            StreamChannel.id,
            StreamSession.tenant_id,
            Tenant.slug,
            StreamChannel.name,
            StreamSession.title,
            StreamChannel.moderation_policy,
            StreamSessionPolicy.policy,
        )
        .join(waiting, waiting.c.session_id == StreamSession.id)
        .join(StreamChannel, StreamChannel.id == StreamSession.channel_id)
        .join(Tenant, Tenant.id == StreamSession.tenant_id)
        .outerjoin(StreamSessionPolicy, StreamSessionPolicy.session_id == StreamSession.id)
        .order_by(StreamSession.id)
    ).all()
    return [_Scope(*row) for row in rows]


def effective_policy(
    channel_doc: object, session_doc: object, session_id: int
) -> policies.Effective:
    channel = policies.parse(channel_doc or {}, "the channel's moderation policy")
    own = policies.parse(session_doc, f"session {session_id}'s policy") if session_doc else None
    return policies.effective(channel, own)


def _bans(session: Session, scope: _Scope) -> dict[str, str]:
    rows = session.execute(
        select(StreamBan.viewer_id, StreamBan.session_id, StreamBan.reason).where(
            StreamBan.lifted_at.is_(None),
            StreamBan.channel_id == scope.channel_id,
            or_(StreamBan.session_id.is_(None), StreamBan.session_id == scope.session_id),
        )
    ).all()
    out: dict[str, str] = {}
    for viewer, session_id, reason in rows:
        where = "this session" if session_id is not None else "the channel"
        out[viewer] = f"from {where}" + (f": {reason}" if reason else "")
    return out


def _history(
    session: Session, scope: _Scope, viewers: Sequence[str], policy: policies.Effective
) -> tuple[dict[str, list[dt.datetime]], dict[str, dt.datetime]]:
    """Per viewer: the send times of their moderated, not hidden messages in the session
    (slow mode), and their first seen message in the channel (first-time chatters)."""
    dialect = session.get_bind().dialect.name
    sent: dict[str, list[dt.datetime]] = defaultdict(list)
    first: dict[str, dt.datetime] = {}
    if not viewers:
        return sent, first
    if policy.slow_mode_s > 0:
        for viewer, at in session.execute(
            select(StreamChatMessage.viewer_id, StreamChatMessage.sent_at)
            .where(
                StreamChatMessage.channel_id == scope.channel_id,
                among(StreamChatMessage.viewer_id, viewers, dialect),
                StreamChatMessage.moderated_at.is_not(None),
                StreamChatMessage.session_id == scope.session_id,
                StreamChatMessage.status != "hidden",
            )
            .order_by(StreamChatMessage.sent_at)
        ):
            sent[viewer].append(at)
    if policy.hold_first_time:
        for viewer, at in session.execute(
            select(StreamChatMessage.viewer_id, func.min(StreamChatMessage.sent_at))
            .where(
                StreamChatMessage.channel_id == scope.channel_id,
                among(StreamChatMessage.viewer_id, viewers, dialect),
                StreamChatMessage.moderated_at.is_not(None),
                StreamChatMessage.status.in_(SEEN),
            )
            .group_by(StreamChatMessage.viewer_id)
        ):
            first[viewer] = at
    return sent, first


def plan(session: Session, now: dt.datetime, limit: int | None = None) -> Iterator[Action]:
    made = 0
    for scope in _scopes(session):
        if limit is not None and made >= limit:
            return
        label = f"{scope.slug} · {scope.channel} · {scope.title}"
        try:
            policy = effective_policy(scope.channel_policy, scope.session_policy, scope.session_id)
        except policies.PolicyError as exc:
            yield Action(
                "policy_invalid",
                f"stream_session:{scope.session_id}",
                f"{label}: messages left unmoderated: {exc}; fix it with "
                "`streams moderation policy set`",
                {"session_id": scope.session_id},
            )
            continue
        counts: Counter[str] = Counter()
        for action in _session_actions(session, scope, policy, label, now):
            if limit is not None and made >= limit:
                break
            made += 1
            counts[action.kind] += 1
            yield action
        if counts:
            summary = ", ".join(f"{n} {kind}" for kind, n in sorted(counts.items()))
            yield Action(
                "session_summary",
                f"stream_session:{scope.session_id}",
                f"{label}: {sum(counts.values())} messages: {summary}",
                encode(SessionSummary(scope.session_id, dict(sorted(counts.items())))),
            )


def _session_actions(
    session: Session,
    scope: _Scope,
    policy: policies.Effective,
    label: str,
    now: dt.datetime,
) -> Iterator[Action]:
    pending = session.execute(
        select(
            StreamChatMessage.id,
            StreamChatMessage.viewer_id,
            StreamChatMessage.viewer_name,
            StreamChatMessage.body,
            StreamChatMessage.sent_at,
        )
        .where(
            StreamChatMessage.session_id == scope.session_id,
            StreamChatMessage.moderated_at.is_(None),
        )
        .order_by(StreamChatMessage.sent_at, StreamChatMessage.id)
    ).all()
    bans = _bans(session, scope)
    viewers = sorted({row.viewer_id for row in pending})
    sent, first = _history(session, scope, viewers, policy)
    for row in pending:
        times = sent.get(row.viewer_id, [])
        at = bisect.bisect_right(times, row.sent_at)
        previous = times[at - 1] if at else None
        seen = first.get(row.viewer_id)
        ctx = Context(
            banned=bans.get(row.viewer_id),
            since_previous_s=(row.sent_at - previous).total_seconds() if previous else None,
            first_time=seen is None or seen > row.sent_at,
        )
        verdict = decide(row.body, policy, ctx)
        status = STATUS_OF[verdict.kind]
        if status != "hidden":
            bisect.insort(sent[row.viewer_id], row.sent_at)
        if status in SEEN and (seen is None or row.sent_at < seen):
            first[row.viewer_id] = row.sent_at
        shown = row.body if len(row.body) <= 60 else row.body[:57] + "…"
        # Moderate's fields as a plain dict (what encode() writes; apply decodes it): one per
        # message, so the generic encoder's walk is skipped
        data = {
            "message_id": row.id,
            "session_id": scope.session_id,
            "channel_id": scope.channel_id,
            "tenant_id": scope.tenant_id,
            "viewer_id": row.viewer_id,
            "status": status,
            "rule": verdict.rule,
            "detail": verdict.detail,
        }
        yield Action(
            verdict.kind,
            f"chat_message:{row.id}",
            f"{label} · {row.viewer_name}: {shown!r}: "
            + (f"{verdict.rule}: {verdict.detail}" if verdict.rule else verdict.detail),
            data,
        )


# --- apply --------------------------------------------------------------------------------


def apply(session: Session, action: Action, now: dt.datetime) -> None:
    apply_many(session, [action], now)


def apply_many(session: Session, actions: Sequence[Action], now: dt.datetime) -> None:
    """Claim every message (still unmoderated) and record the hides, holds and flags; all or
    nothing: StaleAction when one was moderated meanwhile (the caller rolls back)."""
    moves = [decode(Moderate, a.data) for a in actions]
    by_status: dict[tuple[str, str | None], list[int]] = defaultdict(list)
    for move in moves:
        by_status[(move.status, move.rule)].append(move.message_id)
    dialect = session.get_bind().dialect.name
    for (status, rule), ids in by_status.items():
        claimed = session.execute(
            update(_MESSAGES)
            .where(and_(among(_MESSAGES.c.id, ids, dialect), _MESSAGES.c.moderated_at.is_(None)))
            .values(status=status, rule=rule, moderated_at=now)
        )
        if rowcount(claimed) != len(ids):
            raise StaleAction("a chat message was moderated meanwhile")
    recorded = [
        {
            "tenant_id": m.tenant_id,
            "channel_id": m.channel_id,
            "session_id": m.session_id,
            "message_id": m.message_id,
            "viewer_id": m.viewer_id,
            "action": a.kind,
            "rule": m.rule,
            "source": "job",
            "actor": JOB_ACTOR,
            "reason": m.detail,
            "occurred_at": now,
        }
        for a, m in zip(actions, moves, strict=True)
        if a.kind != "allow"
    ]
    if recorded:
        session.execute(insert(_ACTIONS), recorded)


def table_rows(action: Action) -> Iterator[tuple[Any, ...]]:
    data = action.data
    if action.kind == "session_summary":
        counts = data.get("counts", {})
        yield (action.kind, data.get("session_id"), "", "", "", ", ".join(
            f"{n} {k}" for k, n in counts.items()))  # fmt: skip
        return
    if action.kind == "policy_invalid":
        yield (action.kind, data.get("session_id"), "", "", "", action.reason)
        return
    yield (
        action.kind,
        data.get("session_id"),
        data.get("message_id"),
        data.get("viewer_id"),
        data.get("rule") or "",
        data.get("detail", ""),
    )
