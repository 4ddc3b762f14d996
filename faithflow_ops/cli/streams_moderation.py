"""`faithflow streams chat …` (bring a session's chat messages in) and `faithflow streams
moderation …` (policies, the held queue, approve, hide, ban, unban) over
faithflow_ops/streams/moderation_records.py. `streams moderate` is a job, generated from the
registry."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from faithflow_ops.cli import output
from faithflow_ops.cli.common import JsonOpt, actor, database, parse_now
from faithflow_ops.errors import UserError

chat_app = typer.Typer(
    rich_markup_mode=None,
    help="A session's live chat: bring messages in from a chat provider's export.",
    no_args_is_help=True,
)
moderation_app = typer.Typer(
    rich_markup_mode=None,
    help="Chat moderation: policies, the held queue, approve, hide, ban, unban.",
    no_args_is_help=True,
)
policy_app = typer.Typer(
    rich_markup_mode=None,
    help="A channel's moderation policy, and a session's tightening of it.",
    no_args_is_help=True,
)
moderation_app.add_typer(policy_app, name="policy")

NowOpt = Annotated[str | None, typer.Option("--now", help="When (ISO-8601).")]
ReasonOpt = Annotated[str | None, typer.Option("--reason", help="Why (kept on the record).")]
ChannelScope = Annotated[
    int | None, typer.Option("--channel", help="The whole channel (every session).")
]
SessionScope = Annotated[int | None, typer.Option("--session", help="One session only.")]
_MESSAGE_COLUMNS = {
    "id": "id",
    "sent_at": "sent",
    "viewer_name": "viewer",
    "body": "message",
    "status": "status",
    "rule": "rule",
}
_BAN_COLUMNS = {
    "id": "id",
    "viewer_id": "viewer",
    "scope": "scope",
    "session_id": "session",
    "reason": "reason",
    "banned_by": "by",
    "banned_at": "at",
    "lifted_at": "lifted",
}


@chat_app.command("import")
def chat_import(
    session_id: Annotated[int, typer.Argument(help="The session's id.")],
    file: Annotated[
        Path,
        typer.Argument(
            help="JSON lines (.jsonl) or CSV with viewer_id, body, sent_at and optionally id, "
            "viewer_name."
        ),
    ],
    fmt: Annotated[
        str | None,
        typer.Option("--format", help="jsonl or csv (default: from the file's extension)."),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Take in a session's chat messages (checked whole first; re-imports skip duplicates)."""
    from faithflow_ops.streams import moderation_chat

    with database().session() as session:
        result = moderation_chat.import_file(session, session_id, file, fmt)
    doc = result.to_doc()
    if as_json:
        output.print_json(doc)
    else:
        output.record(doc)
    output.info(
        f"imported {result.added} messages into session {session_id} "
        f"({result.duplicates} already there); `streams moderate` will look at them"
    )


def _show_policy(doc: dict[str, Any], as_json: bool) -> None:
    if as_json:
        output.print_json(doc)
        return
    layers = ["channel", "session", "effective"] if "session" in doc else ["channel", "effective"]
    keys = list(doc["effective"])

    def shown(value: Any) -> str:
        if isinstance(value, list):
            return ", ".join(value) or "—"
        return output.fmt(value)

    output.table(
        ["key", *layers],
        [[key, *(shown(doc[layer].get(key)) for layer in layers)] for key in keys],
        title=f"moderation policy · channel {doc['channel_id']}"
        + (f" · session {doc['session_id']}" if "session_id" in doc else ""),
    )


@policy_app.command("show")
def policy_show(
    channel: Annotated[int, typer.Argument(help="The channel's id.")],
    session_id: Annotated[
        int | None, typer.Option("--session", help="Also a session's own keys and its result.")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """A channel's policy (and a session's tightening), with what the chat is moderated by."""
    from faithflow_ops.streams import moderation_records as records

    with database().read_session() as session:
        doc = records.show_policy(session, channel, session_id)
    _show_policy(doc, as_json)


def _policy_file(path: Path) -> dict[str, Any]:
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UserError(f"no file {path}; give a JSON policy file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"cannot read {path}: {exc}") from None
    except json.JSONDecodeError as exc:
        raise UserError(f"{path.name} line {exc.lineno}: not JSON ({exc.msg})") from None
    if not isinstance(doc, dict):
        raise UserError(f'{path.name}: a policy is a JSON object, e.g. {{"block_links": true}}')
    return doc


@policy_app.command("set")
def policy_set(
    channel: Annotated[int, typer.Argument(help="The channel's id.")],
    session_id: Annotated[
        int | None,
        typer.Option("--session", help="Tighten this session's policy instead of the channel's."),
    ] = None,
    block_term: Annotated[
        list[str] | None, typer.Option("--block-term", help="Hide messages with it (repeat).")
    ] = None,
    unblock_term: Annotated[
        list[str] | None, typer.Option("--unblock-term", help="Remove a blocked term.")
    ] = None,
    flag_term: Annotated[
        list[str] | None,
        typer.Option("--flag-term", help="Flag messages with it for a human (repeat)."),
    ] = None,
    unflag_term: Annotated[
        list[str] | None, typer.Option("--unflag-term", help="Remove a flagged term.")
    ] = None,
    links: Annotated[
        bool | None,
        typer.Option("--block-links/--allow-links", help="Hold messages carrying a link."),
    ] = None,
    max_length: Annotated[
        int | None,
        typer.Option("--max-length", help="Hide longer messages (characters; 0: no limit)."),
    ] = None,
    slow_mode: Annotated[
        int | None,
        typer.Option("--slow-mode", help="Seconds between a viewer's messages (0: off; max 3600)."),
    ] = None,
    hold_first: Annotated[
        bool | None,
        typer.Option(
            "--hold-first-time/--no-hold-first-time",
            help="Hold a viewer's first message in the channel for review.",
        ),
    ] = None,
    file: Annotated[
        Path | None,
        typer.Option("--file", help="Replace the whole policy with this JSON object first."),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Change a channel's policy, or tighten one session's (a session may not loosen it)."""
    from faithflow_ops.streams import moderation_policy as policies
    from faithflow_ops.streams import moderation_records as records

    if slow_mode is not None and slow_mode < 0:
        raise UserError(f"--slow-mode {slow_mode}: give 0 (off) to 3600 seconds")
    change = policies.Change(
        block_terms=tuple(block_term or ()),
        unblock_terms=tuple(unblock_term or ()),
        flag_terms=tuple(flag_term or ()),
        unflag_terms=tuple(unflag_term or ()),
        block_links=links,
        max_length=max_length,
        slow_mode_s=slow_mode,
        hold_first_time=hold_first,
    )
    if change == policies.Change() and file is None:
        raise UserError("nothing to change; give --block-term, --block-links, --max-length, …")
    replace = _policy_file(file) if file is not None else None
    with database().session() as session:
        doc = records.set_policy(
            session, channel, change, by=actor(), session_id=session_id, replace=replace
        )
    _show_policy(doc, as_json)
    output.info(
        f"policy of {'session ' + str(session_id) if session_id else 'channel ' + str(channel)} "
        "saved; it applies to messages `streams moderate` has not looked at yet"
    )


@moderation_app.command("queue")
def moderation_queue(
    session_id: Annotated[int, typer.Argument(help="The session's id.")],
    status: Annotated[
        str,
        typer.Option(
            "--status", help="held (default), flagged, hidden, visible, approved or pending."
        ),
    ] = "held",
    limit: Annotated[int, typer.Option("--limit", min=1, help="Show at most this many.")] = 100,
    as_json: JsonOpt = False,
) -> None:
    """A session's held messages waiting for a human (or those in --status), oldest first."""
    from faithflow_ops.errors import one_of
    from faithflow_ops.models.stream_moderation import MESSAGE_STATUSES
    from faithflow_ops.streams import moderation_records as records

    one_of("--status", status, MESSAGE_STATUSES)
    with database().read_session() as session:
        docs, total = records.queue(session, session_id, status=status, limit=limit)
    if output.empty(docs, f"{status} message", as_json=as_json):
        return
    if as_json:
        output.print_json(docs)
    else:
        output.table(
            list(_MESSAGE_COLUMNS.values()),
            [[output.fmt(d[key]) for key in _MESSAGE_COLUMNS] for d in docs],
        )
    output.list_footer(len(docs), total, f"{status} message", as_json=as_json)


def _message_done(doc: dict[str, Any], verb: str, as_json: bool) -> None:
    if as_json:
        output.print_json(doc)
    else:
        output.record(doc)
    output.info(f"chat message {doc['id']} {verb}")


@moderation_app.command("approve")
def moderation_approve(
    message: Annotated[int, typer.Argument(help="The chat message's id.")],
    reason: ReasonOpt = None,
    now: NowOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Show a held, flagged or hidden message."""
    from faithflow_ops.streams import moderation_records as records

    when = parse_now(now)
    with database().session() as session:
        doc = records.approve(session, message, by=actor(), now=when, reason=reason)
    _message_done(doc, "approved", as_json)


@moderation_app.command("hide")
def moderation_hide(
    message: Annotated[int, typer.Argument(help="The chat message's id.")],
    reason: ReasonOpt = None,
    now: NowOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Hide a message."""
    from faithflow_ops.streams import moderation_records as records

    when = parse_now(now)
    with database().session() as session:
        doc = records.hide(session, message, by=actor(), now=when, reason=reason)
    _message_done(doc, "hidden", as_json)


@moderation_app.command("ban")
def moderation_ban(
    viewer: Annotated[str, typer.Argument(help="The viewer's id at the chat provider.")],
    channel: ChannelScope = None,
    session_id: SessionScope = None,
    reason: ReasonOpt = None,
    now: NowOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Ban a viewer from a channel or one session; their shown messages there are hidden."""
    from faithflow_ops.streams import moderation_records as records

    when = parse_now(now)
    with database().session() as session:
        doc = records.ban(
            session,
            viewer,
            channel_id=channel,
            session_id=session_id,
            reason=reason,
            by=actor(),
            now=when,
        )
    if as_json:
        output.print_json(doc)
    else:
        output.record(doc)
    where = f"session {doc['session_id']}" if doc["session_id"] else f"channel {doc['channel_id']}"
    output.info(f"banned {doc['viewer_id']} from {where}; hid {doc['messages_hidden']} messages")


@moderation_app.command("unban")
def moderation_unban(
    viewer: Annotated[str, typer.Argument(help="The viewer's id at the chat provider.")],
    channel: ChannelScope = None,
    session_id: SessionScope = None,
    reason: ReasonOpt = None,
    now: NowOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Lift a viewer's ban on a channel or a session (hidden messages stay hidden)."""
    from faithflow_ops.streams import moderation_records as records

    when = parse_now(now)
    with database().session() as session:
        doc = records.unban(
            session,
            viewer,
            channel_id=channel,
            session_id=session_id,
            by=actor(),
            now=when,
            reason=reason,
        )
    if as_json:
        output.print_json(doc)
    else:
        output.record(doc)
    output.info(f"lifted the ban on {doc['viewer_id']}")


@moderation_app.command("bans")
def moderation_bans(
    channel: Annotated[int, typer.Argument(help="The channel's id.")],
    lifted: Annotated[bool, typer.Option("--lifted", help="Include lifted bans.")] = False,
    limit: Annotated[int, typer.Option("--limit", min=1, help="Show at most this many.")] = 100,
    as_json: JsonOpt = False,
) -> None:
    """A channel's bans (channel-wide and per session), newest first."""
    from faithflow_ops.streams import moderation_records as records

    with database().read_session() as session:
        docs, total = records.list_bans(
            session, channel_id=channel, include_lifted=lifted, limit=limit
        )
    if output.empty(docs, "ban", as_json=as_json):
        return
    if as_json:
        output.print_json(docs)
    else:
        output.table(
            list(_BAN_COLUMNS.values()),
            [[output.fmt(d[key]) for key in _BAN_COLUMNS] for d in docs],
        )
    output.list_footer(len(docs), total, "ban", as_json=as_json)


@moderation_app.command("history")
def moderation_history(
    message: Annotated[int, typer.Argument(help="The chat message's id.")],
    as_json: JsonOpt = False,
) -> None:
    """What happened to a message: each hide, hold, flag or approve, its rule and who."""
    from faithflow_ops.streams import moderation_records as records

    with database().read_session() as session:
        docs = records.actions_of(session, message)
    if output.empty(docs, "moderation action", as_json=as_json):
        return
    if as_json:
        output.print_json(docs)
        return
    keys = ("occurred_at", "action", "rule", "source", "actor", "reason")
    output.table(list(keys), [[output.fmt(d[k]) for k in keys] for d in docs])
