"""The operator's side of chat moderation (`faithflow streams moderation …`, `streams chat
import`): show and set a channel's or a session's policy, bring chat messages in, list the held
queue, approve or hide a message, ban and unban a viewer for a channel or one session.

Every function checks its input and raises UserError (one line naming the fix) before writing
anything; the caller's transaction commits the lot. Every operator action is recorded in
`stream_moderation_actions` (source `operator`, the actor).
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, cast

from sqlalchemy import Table, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from faithflow_ops.bulk import insert_rows
from faithflow_ops.db import rowcount
from faithflow_ops.errors import NotFound, UserError
from faithflow_ops.models import (
    StreamBan,
    StreamChannel,
    StreamChatMessage,
    StreamModerationAction,
    StreamSession,
    StreamSessionPolicy,
)
from faithflow_ops.streams import moderation_policy as policies
from faithflow_ops.streams.records import get_channel, get_session

_MESSAGES = cast(Table, StreamChatMessage.__table__)
MAX_BODY = 10_000
MAX_ID = 128
MAX_NAME = 200
CHAT_FIELDS = ("id", "viewer_id", "viewer_name", "body", "sent_at")
INSERT_BATCH = 1000


# --- policy -------------------------------------------------------------------------------


def _session_in(session: Session, channel: StreamChannel, session_id: int) -> StreamSession:
    row = get_session(session, session_id)
    if row.channel_id != channel.id:
        raise UserError(
            f"session {session_id} is on channel {row.channel_id}, not {channel.id}; "
            f"give --session with its own channel"
        )
    return row


def show_policy(session: Session, channel_id: int, session_id: int | None = None) -> dict[str, Any]:
    """The channel's policy, the session's own keys, and what its chat is moderated by."""
    channel = get_channel(session, channel_id)
    base = policies.parse(channel.moderation_policy or {}, "the channel's moderation policy")
    doc: dict[str, Any] = {"channel_id": channel.id, "channel": base.to_doc()}
    own = None
    if session_id is not None:
        _session_in(session, channel, session_id)
        stored = session.get(StreamSessionPolicy, session_id)
        own = policies.parse(stored.policy, f"session {session_id}'s policy") if stored else None
        doc["session_id"] = session_id
        doc["session"] = own.to_doc() if own else {}
    doc["effective"] = policies.effective(base, own).to_doc()
    return doc


def set_policy(
    session: Session,
    channel_id: int,
    change: policies.Change,
    *,
    by: str,
    session_id: int | None = None,
    replace: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Change a channel's policy, or a session's tightening of it (`replace`: start from this
    whole policy instead of the stored one). A session may not loosen its channel's policy."""
    channel = get_channel(session, channel_id)
    if session_id is None and replace is not None:  # also mends a stored policy gone bad
        start = policies.parse(replace, "the policy file")
        channel.moderation_policy = policies.changed(start, change, "policy").to_doc()
        session.flush()
        return show_policy(session, channel_id)
    base = policies.parse(
        channel.moderation_policy or {},
        "the channel's moderation policy (replace it with `policy set CHANNEL --file`)",
    )
    if session_id is None:
        start = base
        channel.moderation_policy = policies.changed(start, change, "policy").to_doc()
        session.flush()
        return show_policy(session, channel_id)
    row = _session_in(session, channel, session_id)
    for term in change.unblock_terms:
        if policies.normalise(" ".join(term.split())) in base.blocked_terms:
            raise policies.PolicyError(
                f"session {session_id} may only tighten its channel's policy: the channel "
                f"blocks {term!r}; unblock it on the channel instead"
            )
    stored = session.get(StreamSessionPolicy, session_id)
    if replace is not None:
        start = policies.parse(replace, "the policy file")
    else:
        start = policies.parse(stored.policy, f"session {session_id}'s policy") if stored else (
            policies.Policy()
        )  # fmt: skip
    own = policies.changed(start, change, f"session {session_id}'s policy")
    policies.check_tightens(base, own, session_id)
    if stored is None:
        session.add(
            StreamSessionPolicy(
                session_id=row.id, tenant_id=row.tenant_id, policy=own.to_doc(), updated_by=by
            )
        )
    else:
        stored.policy = own.to_doc()
        stored.updated_by = by
    session.flush()
    return show_policy(session, channel_id, session_id)


# --- chat messages in ---------------------------------------------------------------------


@dataclass(frozen=True)
class ChatImport:
    session_id: int
    read: int
    added: int
    duplicates: int

    def to_doc(self) -> dict[str, Any]:
        return {
            "session_id": self.session_id,
            "read": self.read,
            "added": self.added,
            "duplicates": self.duplicates,
        }


class ChatInputError(UserError):
    """A chat message that cannot be taken in; the message names where (file and line)."""


def _text(item: Mapping[str, Any], key: str, where: str, limit: int, required: bool) -> str:
    value = item.get(key)
    if value is None or (isinstance(value, str) and not value.strip()):
        if required:
            raise ChatInputError(f"{where}: {key} is missing; every message needs one")
        return ""
    if isinstance(value, int) and not isinstance(value, bool) and key in ("id", "viewer_id"):
        value = str(value)
    if not isinstance(value, str):
        raise ChatInputError(f"{where}: {key} must be text, not {value!r}")
    if len(value) > limit:
        raise ChatInputError(f"{where}: {key} is over {limit} characters")
    return value if key == "body" else value.strip()


def chat_row(item: object, where: str) -> dict[str, Any]:
    """One message as the table takes it, checked; `where` names it in errors."""
    if not isinstance(item, Mapping):
        raise ChatInputError(f"{where}: a message must be an object with {', '.join(CHAT_FIELDS)}")
    unknown = sorted(str(k) for k in item if k not in CHAT_FIELDS)
    if unknown:
        raise ChatInputError(
            f"{where}: unknown field {unknown[0]!r}; known fields: {', '.join(CHAT_FIELDS)}"
        )
    viewer = _text(item, "viewer_id", where, MAX_ID, True)
    body = _text(item, "body", where, MAX_BODY, True)
    name = _text(item, "viewer_name", where, MAX_NAME, False) or viewer
    raw_time = item.get("sent_at")
    if not isinstance(raw_time, str) or not raw_time.strip():
        raise ChatInputError(f"{where}: sent_at is missing; give an ISO-8601 time with Z or offset")
    try:
        given = dt.datetime.fromisoformat(raw_time.strip().replace("z", "Z"))
    except ValueError:
        raise ChatInputError(
            f"{where}: sent_at {raw_time[:40]!r} is not an ISO-8601 time "
            "(e.g. 2026-03-08T14:05:00Z)"
        ) from None
    if given.tzinfo is None:  # whose clock? a chat provider always says
        raise ChatInputError(
            f"{where}: sent_at {raw_time[:40]!r} has no offset; add Z or one like +01:00"
        )
    sent_at = given.astimezone(dt.UTC)
    external = _text(item, "id", where, MAX_ID, False)
    if not external:  # no provider id: the same message read twice gets the same key
        digest = hashlib.sha256(f"{viewer}\0{sent_at.isoformat()}\0{body}".encode()).hexdigest()
        external = "sha256:" + digest[:48]
    return {
        "external_id": external,
        "viewer_id": viewer,
        "viewer_name": name,
        "body": body,
        "sent_at": sent_at,
    }


def add_messages(
    session: Session, session_id: int, messages: Iterable[object], *, source: str = "input"
) -> ChatImport:
    """Take in a session's chat messages (dicts with `viewer_id`, `body`, `sent_at` and
    optionally `id`, `viewer_name`), all checked before any is written; a message already
    taken in (same `id`, or without one the same viewer, time and text) is skipped. What the
    main app calls with its chat provider's messages; `streams chat import` reads a file."""
    row = get_session(session, session_id)
    rows = [chat_row(item, f"{source} message {n}") for n, item in enumerate(messages, 1)]
    return insert_checked(session, row, rows)


def insert_checked(
    session: Session, target: StreamSession, rows: Sequence[dict[str, Any]]
) -> ChatImport:
    """Insert rows `chat_row` built (status `pending`), skipping duplicates."""
    added = 0
    for start in range(0, len(rows), INSERT_BATCH):
        batch = [
            {
                **r,
                "tenant_id": target.tenant_id,
                "channel_id": target.channel_id,
                "session_id": target.id,
                "status": "pending",
            }
            for r in rows[start : start + INSERT_BATCH]
        ]
        inserted = insert_rows(
            session,
            _MESSAGES,
            batch,
            conflict=("session_id", "external_id"),
            returning=(_MESSAGES.c.id,),
        )
        added += len(inserted)
    return ChatImport(target.id, len(rows), added, len(rows) - added)


# --- the queue and an operator's actions ---------------------------------------------------


def message_doc(m: StreamChatMessage) -> dict[str, Any]:
    return {
        "id": m.id,
        "session_id": m.session_id,
        "channel_id": m.channel_id,
        "viewer_id": m.viewer_id,
        "viewer_name": m.viewer_name,
        "body": m.body,
        "sent_at": m.sent_at,
        "status": m.status,
        "rule": m.rule,
        "moderated_at": m.moderated_at,
    }


def queue(
    session: Session, session_id: int, *, status: str = "held", limit: int = 100
) -> tuple[list[dict[str, Any]], int]:
    """A session's messages in `status` (held: waiting for a human), oldest first."""
    get_session(session, session_id)
    where = (StreamChatMessage.session_id == session_id, StreamChatMessage.status == status)
    total = session.scalar(select(func.count()).select_from(StreamChatMessage).where(*where)) or 0
    rows = session.scalars(
        select(StreamChatMessage)
        .where(*where)
        .order_by(StreamChatMessage.sent_at, StreamChatMessage.id)
        .limit(limit)
    ).all()
    return [message_doc(m) for m in rows], total


def _message(session: Session, message_id: int) -> StreamChatMessage:
    row = session.get(StreamChatMessage, message_id)
    if row is None:
        raise NotFound(
            f"no chat message with id {message_id}; see `streams moderation queue SESSION`"
        )
    return row


def _record(
    session: Session,
    *,
    tenant_id: int,
    channel_id: int,
    action: str,
    by: str,
    now: dt.datetime,
    session_id: int | None = None,
    message_id: int | None = None,
    viewer_id: str | None = None,
    rule: str | None = None,
    reason: str | None = None,
) -> None:
    session.add(
        StreamModerationAction(
            tenant_id=tenant_id,
            channel_id=channel_id,
            session_id=session_id,
            message_id=message_id,
            viewer_id=viewer_id,
            action=action,
            rule=rule,
            source="operator",
            actor=by,
            reason=reason,
            occurred_at=now,
        )
    )


def _decide_message(
    session: Session, message_id: int, to: str, action: str, *, by: str, now: dt.datetime,
    reason: str | None,
) -> dict[str, Any]:  # fmt: skip
    row = _message(session, message_id)
    if row.status == to:
        raise UserError(f"chat message {message_id} is already {to}")
    was = row.status
    claimed = session.execute(
        update(_MESSAGES)
        .where(_MESSAGES.c.id == row.id, _MESSAGES.c.status == was)
        .values(status=to, rule="operator", moderated_at=now)
    )
    if rowcount(claimed) != 1:
        raise UserError(f"chat message {message_id} changed meanwhile; look again and retry")
    _record(
        session,
        tenant_id=row.tenant_id,
        channel_id=row.channel_id,
        session_id=row.session_id,
        message_id=row.id,
        viewer_id=row.viewer_id,
        action=action,
        rule=row.rule,
        by=by,
        now=now,
        reason=f"was {was}" + (f": {reason}" if reason else ""),
    )
    session.flush()
    session.refresh(row)
    return message_doc(row)


def approve(
    session: Session, message_id: int, *, by: str, now: dt.datetime, reason: str | None = None
) -> dict[str, Any]:
    """Show a held, flagged or hidden message (and, as a seen message, the viewer is no longer
    a first-time chatter in the channel)."""
    return _decide_message(
        session, message_id, "approved", "approve", by=by, now=now, reason=reason
    )


def hide(
    session: Session, message_id: int, *, by: str, now: dt.datetime, reason: str | None = None
) -> dict[str, Any]:
    return _decide_message(session, message_id, "hidden", "hide", by=by, now=now, reason=reason)


@dataclass(frozen=True)
class Scope:
    channel: StreamChannel
    session_id: int | None

    @property
    def label(self) -> str:
        return f"session {self.session_id}" if self.session_id else f"channel {self.channel.id}"


def scope_of(session: Session, channel_id: int | None, session_id: int | None) -> Scope:
    if (channel_id is None) == (session_id is None):
        raise UserError("give exactly one of --channel CHANNEL or --session SESSION")
    if session_id is not None:
        row = get_session(session, session_id)
        return Scope(get_channel(session, row.channel_id), row.id)
    assert channel_id is not None
    return Scope(get_channel(session, channel_id), None)


def _viewer(viewer_id: str) -> str:
    viewer = viewer_id.strip()
    if not viewer or len(viewer) > MAX_ID:
        raise UserError(f"give the viewer's id as the chat provider names it (1-{MAX_ID} chars)")
    return viewer


def _standing(session: Session, scope: Scope, viewer: str) -> StreamBan | None:
    query = select(StreamBan).where(
        StreamBan.channel_id == scope.channel.id,
        StreamBan.viewer_id == viewer,
        StreamBan.lifted_at.is_(None),
    )
    query = query.where(
        StreamBan.session_id.is_(None)
        if scope.session_id is None
        else StreamBan.session_id == scope.session_id
    )
    return session.scalars(query).first()


def ban_doc(ban: StreamBan) -> dict[str, Any]:
    return {
        "id": ban.id,
        "viewer_id": ban.viewer_id,
        "channel_id": ban.channel_id,
        "session_id": ban.session_id,
        "scope": "session" if ban.session_id else "channel",
        "reason": ban.reason,
        "banned_by": ban.banned_by,
        "banned_at": ban.banned_at,
        "lifted_at": ban.lifted_at,
        "lifted_by": ban.lifted_by,
    }


def ban(
    session: Session,
    viewer_id: str,
    *,
    channel_id: int | None = None,
    session_id: int | None = None,
    reason: str | None = None,
    by: str,
    now: dt.datetime,
) -> dict[str, Any]:
    """Ban a viewer from a channel or one session: `streams moderate` hides their messages in
    that scope from now on, and their messages already shown or held there are hidden now."""
    scope = scope_of(session, channel_id, session_id)
    viewer = _viewer(viewer_id)
    if _standing(session, scope, viewer) is not None:
        raise UserError(f"viewer {viewer!r} is already banned from {scope.label}")
    row = StreamBan(
        tenant_id=scope.channel.tenant_id,
        channel_id=scope.channel.id,
        session_id=scope.session_id,
        viewer_id=viewer,
        reason=(reason or "").strip() or None,
        banned_by=by,
        banned_at=now,
    )
    try:
        with session.begin_nested():  # flushes what came before, then the ban alone
            session.add(row)
    except IntegrityError:  # another operator's ban landed between the check and this one
        raise UserError(f"viewer {viewer!r} is already banned from {scope.label}") from None
    _record(
        session,
        tenant_id=scope.channel.tenant_id,
        channel_id=scope.channel.id,
        session_id=scope.session_id,
        viewer_id=viewer,
        action="ban",
        rule="ban",
        by=by,
        now=now,
        reason=row.reason,
    )
    shown = select(StreamChatMessage).where(
        StreamChatMessage.channel_id == scope.channel.id,
        StreamChatMessage.viewer_id == viewer,
        StreamChatMessage.status.in_(("visible", "flagged", "held", "approved")),
    )
    if scope.session_id is not None:
        shown = shown.where(StreamChatMessage.session_id == scope.session_id)
    hidden = 0
    for message in session.scalars(shown.order_by(StreamChatMessage.id)).all():
        _record(
            session,
            tenant_id=message.tenant_id,
            channel_id=message.channel_id,
            session_id=message.session_id,
            message_id=message.id,
            viewer_id=viewer,
            action="hide",
            rule="ban",
            by=by,
            now=now,
            reason=f"was {message.status}: the viewer was banned from {scope.label}",
        )
        message.status, message.rule, message.moderated_at = "hidden", "ban", now
        hidden += 1
    session.flush()
    return {**ban_doc(row), "messages_hidden": hidden}


def unban(
    session: Session,
    viewer_id: str,
    *,
    channel_id: int | None = None,
    session_id: int | None = None,
    by: str,
    now: dt.datetime,
    reason: str | None = None,
) -> dict[str, Any]:
    """Lift a viewer's standing ban on a channel or a session (their hidden messages stay
    hidden; approve any you want back)."""
    scope = scope_of(session, channel_id, session_id)
    viewer = _viewer(viewer_id)
    row = _standing(session, scope, viewer)
    if row is None:
        raise UserError(
            f"viewer {viewer!r} is not banned from {scope.label}; see `streams moderation bans`"
        )
    row.lifted_at, row.lifted_by = now, by
    _record(
        session,
        tenant_id=scope.channel.tenant_id,
        channel_id=scope.channel.id,
        session_id=scope.session_id,
        viewer_id=viewer,
        action="unban",
        by=by,
        now=now,
        reason=(reason or "").strip() or None,
    )
    session.flush()
    return ban_doc(row)


def list_bans(
    session: Session,
    *,
    channel_id: int,
    include_lifted: bool = False,
    limit: int = 100,
) -> tuple[list[dict[str, Any]], int]:
    """A channel's bans (channel-wide and per session), newest first."""
    get_channel(session, channel_id)
    query = select(StreamBan).where(StreamBan.channel_id == channel_id)
    if not include_lifted:
        query = query.where(StreamBan.lifted_at.is_(None))
    total = session.scalar(select(func.count()).select_from(query.subquery())) or 0
    rows = session.scalars(
        query.order_by(StreamBan.banned_at.desc(), StreamBan.id.desc()).limit(limit)
    )
    return [ban_doc(b) for b in rows], total


def actions_of(session: Session, message_id: int) -> list[dict[str, Any]]:
    """What happened to a message, oldest first (for `streams moderation show`)."""
    _message(session, message_id)
    rows = session.scalars(
        select(StreamModerationAction)
        .where(StreamModerationAction.message_id == message_id)
        .order_by(StreamModerationAction.occurred_at, StreamModerationAction.id)
    ).all()
    return [
        {
            "action": a.action,
            "rule": a.rule,
            "source": a.source,
            "actor": a.actor,
            "reason": a.reason,
            "occurred_at": a.occurred_at,
        }
        for a in rows
    ]
