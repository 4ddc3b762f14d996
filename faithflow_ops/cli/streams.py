"""`faithflow streams …`: channels and sessions (faithflow_ops/streams/records.py) and the
session lifecycle (faithflow_ops/streams/lifecycle.py). `streams sync` is a job, generated from
the registry."""

from __future__ import annotations

from typing import Annotated

import typer

from faithflow_ops.cli import output, stream_analytics
from faithflow_ops.cli import streams_moderation as _moderation
from faithflow_ops.cli.common import JsonOpt, LimitOpt, actor, database, parse_now

app = typer.Typer(
    rich_markup_mode=None,
    help="Live streaming: channels, sessions and their lifecycle; the Mux sync job.",
    no_args_is_help=True,
)
channels_app = typer.Typer(
    rich_markup_mode=None, help="A church's streaming channels.", no_args_is_help=True
)
sessions_app = typer.Typer(
    rich_markup_mode=None,
    help="Streamed services: schedule, list, show, cancel.",
    no_args_is_help=True,
)
app.add_typer(channels_app, name="channels")
app.add_typer(sessions_app, name="sessions")
app.add_typer(_moderation.chat_app, name="chat")
app.add_typer(_moderation.moderation_app, name="moderation")

_CHANNEL_COLUMNS = {
    "id": "id",
    "tenant": "tenant",
    "name": "name",
    "provider": "provider",
    "provider_stream_id": "stream id",
    "reconnect_window_s": "reconnect (s)",
}
_SESSION_COLUMNS = {
    "id": "id",
    "tenant": "tenant",
    "channel": "channel",
    "title": "title",
    "scheduled_start": "start",
    "status": "status",
    "ingest_health": "ingest",
    "recording_status": "recording",
}


@channels_app.command("add")
def channels_add(
    name: Annotated[str, typer.Argument(help="The channel's name, e.g. 'Sunday services'.")],
    tenant: Annotated[str, typer.Option("--tenant", help="The church's slug.")],
    provider: Annotated[str, typer.Option("--provider", help="mux or custom.")] = "mux",
    stream_id: Annotated[
        str | None, typer.Option("--stream-id", help="The Mux live stream id (with mux).")
    ] = None,
    reconnect_window: Annotated[
        int | None,
        typer.Option(
            "--reconnect-window",
            help="Seconds a disconnected stream may reconnect before its session ends "
            "(0-1800; default 60, as Mux).",
        ),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Add a channel: a Mux live stream, or a custom one nobody syncs."""
    from faithflow_ops.streams import records

    with database().session() as session:
        channel = records.add_channel(
            session,
            tenant=tenant,
            name=name,
            provider=provider,
            stream_id=stream_id,
            reconnect_window_s=reconnect_window,
        )
        doc = records.channel_doc(channel, tenant.strip())
    if as_json:
        output.print_json(doc)
    else:
        output.record(doc)
    output.info(f"added channel (id {doc['id']})")


@channels_app.command("list")
def channels_list(
    tenant: Annotated[str | None, typer.Option("--tenant", help="Only this church.")] = None,
    limit: LimitOpt = 100,
    as_json: JsonOpt = False,
) -> None:
    """Channels: church, name, provider, live stream id, reconnect window."""
    from faithflow_ops.streams import records

    with database().read_session() as session:
        docs, total = records.list_channels(session, tenant=tenant, limit=limit)
    if output.empty(docs, "channel", as_json=as_json):
        return
    if as_json:
        output.print_json(docs)
    else:
        output.table(
            list(_CHANNEL_COLUMNS.values()),
            [[output.fmt(d[key]) for key in _CHANNEL_COLUMNS] for d in docs],
        )
    output.list_footer(len(docs), total, "channel", as_json=as_json)


@sessions_app.command("schedule")
def sessions_schedule(
    channel: Annotated[int, typer.Argument(help="The channel's id.")],
    title: Annotated[str, typer.Option("--title", help="e.g. 'Sunday 9am Service'.")],
    start: Annotated[str, typer.Option("--start", help="Start time, ISO-8601 with offset or Z.")],
    now: Annotated[str | None, typer.Option("--now", help="When (ISO-8601).")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Schedule a service to stream on a channel."""
    from faithflow_ops.streams import records

    starts_at = parse_now(start, "--start", "2026-03-08T09:00:00-05:00")
    when = parse_now(now)
    with database().session() as session:
        row = records.schedule_session(
            session, channel_id=channel, title=title, start=starts_at, now=when
        )
        doc = records.show_session(session, row.id)
    if as_json:
        output.print_json(doc)
    else:
        output.record({k: v for k, v in doc.items() if k != "events"})
    output.info(f"scheduled session (id {doc['id']})")


@sessions_app.command("list")
def sessions_list(
    tenant: Annotated[str | None, typer.Option("--tenant", help="Only this church.")] = None,
    channel: Annotated[int | None, typer.Option("--channel", help="Only this channel.")] = None,
    status: Annotated[
        str | None,
        typer.Option("--status", help="scheduled, live, interrupted, ended, failed or canceled."),
    ] = None,
    limit: LimitOpt = 100,
    as_json: JsonOpt = False,
) -> None:
    """Sessions, latest start first: channel, status, ingest health, recording."""
    from faithflow_ops.streams import records

    with database().read_session() as session:
        docs, total = records.list_sessions(
            session, tenant=tenant, channel_id=channel, status=status, limit=limit
        )
    if output.empty(docs, "session", as_json=as_json):
        return
    if as_json:
        output.print_json(docs)
    else:
        output.table(
            list(_SESSION_COLUMNS.values()),
            [[output.fmt(d[key]) for key in _SESSION_COLUMNS] for d in docs],
        )
    output.list_footer(len(docs), total, "session", as_json=as_json)


@sessions_app.command("show")
def sessions_show(
    session_id: Annotated[int, typer.Argument(help="The session's id.")],
    as_json: JsonOpt = False,
) -> None:
    """One session and every transition it went through, with its source."""
    from faithflow_ops.streams import records

    with database().read_session() as session:
        doc = records.show_session(session, session_id)
    if as_json:
        output.print_json(doc)
        return
    events = doc.pop("events")
    output.record(doc)
    if events:
        output.table(
            ["when", "field", "from", "to", "source", "reason"],
            [
                [
                    output.fmt(e[k])
                    for k in ("occurred_at", "field", "from", "to", "source", "reason")
                ]
                for e in events
            ],
            title="transitions",
        )


@sessions_app.command("cancel")
def sessions_cancel(
    session_id: Annotated[int, typer.Argument(help="The session's id.")],
    reason: Annotated[str | None, typer.Option("--reason", help="Why (kept on the event).")] = None,
    now: Annotated[str | None, typer.Option("--now", help="When (ISO-8601).")] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Check it may be canceled; change nothing.")
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """Cancel a session that has not started (scheduled → canceled)."""
    from faithflow_ops.streams import lifecycle, records

    when = parse_now(now)
    db = database()
    if dry_run:
        with db.read_session() as session:
            row = records.get_session(session, session_id)
            lifecycle.check("status", row.status, "canceled")
            doc = records.show_session(session, session_id)
        if as_json:
            output.print_json({"dry_run": True, "session": doc})
        output.info(f"session {session_id} would be canceled (dry run: nothing changed)")
        return
    with db.session() as session:
        records.cancel_session(session, session_id, now=when, by=actor(), reason=reason)
        doc = records.show_session(session, session_id)
    if as_json:
        output.print_json(doc)
    output.info(f"session {session_id} is canceled")


# Post-stream analytics (cli/stream_analytics.py): import view events, report on a session.
app.command("ingest-views")(stream_analytics.ingest_views)
app.command("analytics")(stream_analytics.analytics)
