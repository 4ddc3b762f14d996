"""`faithflow comms …`: the communications outbox (`comms dispatch` is the job, added from the
registry). docs/comms.md is the runbook."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any

import typer

from faithflow_ops.cli import output
from faithflow_ops.cli.common import JsonOpt, actor, database, parse_now, settings

app = typer.Typer(
    rich_markup_mode=None,
    help="The communications outbox: dispatch, list, show, retry, cancel, suppressions.",
    no_args_is_help=True,
)
suppress_app = typer.Typer(
    rich_markup_mode=None,
    help="The suppression list: contacts never sent to on a channel.",
    no_args_is_help=True,
)
app.add_typer(suppress_app, name="suppress")

IdArg = Annotated[int, typer.Argument(metavar="ID", help="Message id (comms list).")]
ChannelOpt = Annotated[str, typer.Option("--channel", help="email, sms or whatsapp.")]
ContactArg = Annotated[
    str, typer.Argument(metavar="CONTACT", help="An e-mail address or a phone number (+234…).")
]


def _clip(value: Any, width: int = 60) -> Any:
    if isinstance(value, str) and len(value) > width:
        return value[: width - 1] + "…"
    return value


@app.command("list")
def list_(
    status: Annotated[
        str | None,
        typer.Option(
            "--status",
            help="queued, scheduled, sending, sent, delivered, failed, suppressed, canceled "
            "or unknown.",
        ),
    ] = None,
    channel: Annotated[
        str | None, typer.Option("--channel", help="email, sms or whatsapp.")
    ] = None,
    tenant: Annotated[
        str | None, typer.Option("--tenant", help="Only this tenant's (slug).")
    ] = None,
    limit: Annotated[
        int, typer.Option("--limit", min=1, max=100_000, help="Show at most this many.")
    ] = 100,
    as_json: JsonOpt = False,
) -> None:
    """Outbox messages, newest first: channel, recipient, template, status, attempts."""
    from faithflow_ops.comms.admin import LIST_FIELDS, list_messages

    with database().read_session() as session:
        rows, total = list_messages(
            session, status=status, channel=channel, tenant=tenant, limit=limit
        )
    output.listing(
        rows,
        total,
        "message",
        [f.replace("_", " ") for f in LIST_FIELDS],
        lambda r: [_clip(output.minute(r[f])) for f in LIST_FIELDS],
        as_json=as_json,
    )


@app.command("show")
def show(message_id: IdArg, as_json: JsonOpt = False) -> None:
    """One message: every field, the rendered subject and body, variables, attempts, errors."""
    from faithflow_ops.comms.admin import message_details

    with database().read_session() as session:
        doc = message_details(session, message_id)
    if as_json:
        output.print_json(doc)
        return
    body = doc.pop("body")
    fields = {k: (output.dumps(v) if isinstance(v, dict | list) else v) for k, v in doc.items()}
    output.record(fields, title=f"message {message_id}")
    output.info("body:")
    typer.echo(body)


@app.command("retry")
def retry(
    message_id: Annotated[
        int | None,
        typer.Argument(metavar="ID", help="Message id (comms list); or use --status."),
    ] = None,
    status: Annotated[
        str | None,
        typer.Option(
            "--status",
            help="Requeue every message with this status (failed, unknown or canceled) instead "
            "of one ID; shows each first, with whether it might have been delivered.",
        ),
    ] = None,
    since: Annotated[
        str | None,
        typer.Option(
            "--since",
            help="With --status: only those whose last attempt was since then (24h, 7d, "
            "2026-03-01, a timestamp).",
        ),
    ] = None,
    dry_run: Annotated[
        bool,
        typer.Option(
            "--dry-run", help="With --status: show what would be requeued; change nothing."
        ),
    ] = False,
    yes: Annotated[
        bool, typer.Option("--yes", help="With --status: requeue without asking (scripts).")
    ] = False,
    now_: Annotated[
        str | None,
        typer.Option("--now", help="The time --since counts back from (default: now)."),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Send a failed, unknown or canceled message again at the next dispatch (attempts start
    over), or, with --status, all of them at once (after a crash: `--status unknown --since
    24h --dry-run`, then without --dry-run). For `unknown`, check with the provider first that
    it was not delivered: the list says which ones the provider accepted."""
    from faithflow_ops.errors import UserError

    if message_id is not None and status is not None:
        raise UserError("give either a message ID or --status, not both")
    if status is None:
        if message_id is None:
            raise UserError(
                "give a message ID or --status unknown|failed|canceled (see `comms retry -h`)"
            )
        if since is not None or dry_run or yes:
            raise UserError(
                "--since, --dry-run and --yes go with --status; for one message: comms retry ID"
            )
        _retry_one(message_id, parse_now(now_))
        return
    _retry_many(status, since, parse_now(now_), dry_run=dry_run, yes=yes, as_json=as_json)


def _retry_one(message_id: int, now: dt.datetime) -> None:
    from sqlalchemy import select

    from faithflow_ops.comms.admin import retry as do_retry
    from faithflow_ops.models import OutboundMessage

    with database().session() as session:
        before = do_retry(session, message_id, now=now, actor=actor())
        status, due = session.execute(
            select(OutboundMessage.status, OutboundMessage.next_attempt_at).where(
                OutboundMessage.id == message_id
            )
        ).one()
    if status == "scheduled":
        output.info(
            f"message {message_id}: {before} → scheduled; `comms dispatch` sends it at "
            f"{due.isoformat()} (its not-before time), not earlier"
        )
    else:
        output.info(f"message {message_id}: {before} → queued; the next `comms dispatch` sends it")


def _retry_many(
    status: str, since: str | None, now: dt.datetime, *, dry_run: bool, yes: bool, as_json: bool
) -> None:
    from faithflow_ops.clock import from_iso, parse_since
    from faithflow_ops.comms.admin import (
        RETRYABLE,
        candidate_doc,
        retry_candidates,
        retry_many,
    )
    from faithflow_ops.errors import one_of

    one_of("--status", status, RETRYABLE)
    start = parse_since(since, now) if since is not None else None
    window = f" since {start.isoformat()}" if start is not None else ""
    with database().session() as session:
        found = retry_candidates(session, status=status, since=start)
        docs = [candidate_doc(session, msg) for msg in found]
        for doc in docs:
            doc["requeued"], doc["skipped"] = False, None
        if not docs:
            if as_json:
                output.print_json({"dry_run": dry_run, "messages": []})
            output.info(f"no {status} messages{window}; nothing to requeue")
            return
        if not as_json:
            output.table(
                [
                    "id",
                    "channel",
                    "recipient",
                    "template",
                    "attempts",
                    "last attempt",
                    "provider id",
                    "delivered?",
                    "last answer",
                ],
                [
                    [
                        d["id"],
                        d["channel"],
                        d["recipient"],
                        d["template"],
                        d["attempts"],
                        output.minute(from_iso(d["last_attempt"])),
                        d["provider_message_id"],
                        d["maybe_delivered"],
                        _clip(d["last_error"]),
                    ]
                    for d in docs
                ],
            )
        if dry_run:
            if as_json:
                output.print_json({"dry_run": True, "messages": docs})
            output.info(
                f"dry run: would requeue {len(docs)} {status} message(s){window}; nothing changed"
            )
            return
        likely = sum(1 for d in docs if d["maybe_delivered"].startswith("likely"))
        warning = f" ({likely} likely delivered already)" if likely else ""
        output.confirm(
            f"Requeue {len(docs)} {status} message(s){warning} for the next dispatch?", yes=yes
        )
        outcome = retry_many(session, [d["id"] for d in docs], now=now, actor=actor())
    for doc in docs:
        doc["skipped"] = outcome.get(doc["id"])
        doc["requeued"] = doc["id"] in outcome and doc["skipped"] is None
    if as_json:
        output.print_json({"dry_run": False, "messages": docs})
    skipped = [d for d in docs if not d["requeued"]]
    for doc in skipped:
        output.warn(f"message {doc['id']} not requeued: {doc['skipped']}")
    output.info(
        f"requeued {len(docs) - len(skipped)} {status} message(s); the next `comms dispatch` "
        f"sends them" + (f"; {len(skipped)} not requeued" if skipped else "")
    )


@app.command("cancel")
def cancel(message_id: IdArg) -> None:
    """Cancel a queued or scheduled message (it is never sent)."""
    from faithflow_ops.comms.admin import cancel as do_cancel

    now = parse_now(None)
    with database().session() as session:
        before = do_cancel(session, message_id, now=now, actor=actor())
    output.info(f"message {message_id}: {before} → canceled")


@app.command("send")
def send(
    channel: ChannelOpt,
    to: Annotated[str, typer.Option("--to", help="Recipient: e-mail address or +E.164 number.")],
    template: Annotated[str, typer.Option("--template", help="Template name (comms templates).")],
    tenant: Annotated[
        str | None, typer.Option("--tenant", help="Tenant slug: its locale, time zone and name.")
    ] = None,
    var: Annotated[
        list[str] | None,
        typer.Option("--var", help="A template variable, key=value (repeatable)."),
    ] = None,
    key: Annotated[
        str | None,
        typer.Option(
            "--key", help="Idempotency key (the same key never enqueues twice); default: new."
        ),
    ] = None,
    not_before: Annotated[
        str | None, typer.Option("--not-before", help="Send at this time or later (ISO-8601).")
    ] = None,
    priority: Annotated[
        int, typer.Option("--priority", min=0, max=1000, help="Lower is sent first.")
    ] = 50,
    as_json: JsonOpt = False,
) -> None:
    """Enqueue one message through the outbox (rendered now, sent by the next dispatch)."""
    import uuid

    from sqlalchemy import select

    from faithflow_ops.comms.outbox import enqueue
    from faithflow_ops.errors import NotFound, UserError, one_of
    from faithflow_ops.models import Tenant
    from faithflow_ops.models.comms import CHANNELS

    one_of("--channel", channel, CHANNELS)
    variables: dict[str, Any] = {}
    for item in var or []:
        name, sep, value = item.partition("=")
        if not sep or not name.strip():
            raise UserError(f"--var {item!r} is not key=value; use e.g. --var amount_minor=150000")
        variables[name.strip()] = value
    now = parse_now(None)
    when = parse_now(not_before, "--not-before") if not_before else None
    with database().session() as session:
        row = None
        if tenant:
            row = session.scalar(select(Tenant).where(Tenant.slug == tenant))
            if row is None:
                raise NotFound(f"no tenant with slug {tenant!r}; see `faithflow tenants list`")
        result = enqueue(
            session,
            channel=channel,
            recipient=to,
            template=template,
            variables=variables,
            idempotency_key=key or f"cli:{uuid.uuid4().hex}",
            now=now,
            tenant=row,
            not_before=when,
            priority=priority,
            category="operator",
            settings=settings(),  # WhatsApp: the approved template (TWILIO_CONTENT_SIDS), or SMS
        )
    doc = {"id": result.id, "status": result.status, "created": result.created}
    if as_json:
        output.print_json(doc)
    elif result.created:
        output.info(f"message {result.id} {result.status}")
    else:
        output.info(f"that key was used already: message {result.id} ({result.status}), unchanged")


@app.command("templates")
def templates_(as_json: JsonOpt = False) -> None:
    """The message templates in the package, the channels each has, the locales with an
    approved WhatsApp template (TWILIO_CONTENT_SIDS; others go by SMS) and the characters an
    SMS leaves for the church's name in one segment."""
    from faithflow_ops.comms import templates, whatsapp

    cfg = settings()
    docs: list[dict[str, Any]] = []
    rows: list[list[Any]] = []
    for name in templates.names():
        channels = list(templates.available(name))
        locales = whatsapp.approved(cfg, name)
        room = templates.sms_room(name) if "sms" in channels else None
        docs.append(
            {
                "name": name,
                "channels": channels,
                "whatsapp_approved": locales,
                "sms_name_room": room,
            }
        )
        shown = "-" if room is None else room
        rows.append([name, ", ".join(channels), ", ".join(locales) or "-", shown])
    for stray in whatsapp.stray_sids(cfg):
        output.warn(f"TWILIO_CONTENT_SIDS {stray}; fix or drop it")
    if as_json:
        output.print_json(docs)
        return
    output.table(["template", "channels", "whatsapp approved", "sms name room"], rows)


def _until(value: str | None) -> dt.datetime | None:
    if value is None:
        return None
    from faithflow_ops.errors import UserError

    try:
        return parse_now(value, "--until", "2026-12-31")
    except UserError:
        raise UserError(f"--until {value!r} is not a date; use e.g. --until 2026-12-31") from None


@suppress_app.command("add")
def suppress_add(
    contact: ContactArg,
    channel: ChannelOpt,
    reason: Annotated[
        str, typer.Option("--reason", help="bounce, complaint, unsubscribe or stop.")
    ],
    until: Annotated[
        str | None, typer.Option("--until", help="Suppressed until this date (default: for good).")
    ] = None,
    note: Annotated[str | None, typer.Option("--note", help="Why, for the next operator.")] = None,
) -> None:
    """Never send to CONTACT on this channel (until --until)."""
    from faithflow_ops.comms.admin import suppress

    now = parse_now(None)
    with database().session() as session:
        to, added = suppress(
            session,
            channel=channel,
            contact=contact,
            reason=reason,
            now=now,
            actor=actor(),
            until=_until(until),
            note=note,
        )
    if added:
        output.info(f"{to} suppressed on {channel} ({reason})")
    else:
        output.info(f"{to} was already suppressed on {channel}; unchanged (remove it first)")


@suppress_app.command("remove")
def suppress_remove(contact: ContactArg, channel: ChannelOpt) -> None:
    """Take CONTACT off the suppression list for this channel."""
    from faithflow_ops.comms.admin import unsuppress

    now = parse_now(None)
    with database().session() as session:
        to = unsuppress(session, channel=channel, contact=contact, now=now, actor=actor())
    output.info(f"{to} is no longer suppressed on {channel}")


@suppress_app.command("list")
def suppress_list(
    channel: Annotated[str | None, typer.Option("--channel", help="Only this channel.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Every suppressed contact: channel, reason, until, note."""
    from faithflow_ops.comms.admin import suppressions

    with database().read_session() as session:
        rows = suppressions(session, channel=channel)
    if as_json:
        output.print_json(rows)
        return
    output.table(
        ["channel", "contact", "reason", "until", "note", "by", "since"],
        [
            [
                r["channel"],
                r["contact"],
                r["reason"],
                output.minute(r["until"]) or "for good",
                r["note"],
                r["created_by"],
                output.minute(r["created_at"]),
            ]
            for r in rows
        ],
    )
    output.info(f"{len(rows)} suppressed contact{'s' if len(rows) != 1 else ''}")
