"""`faithflow webhooks …`: list and show the inbox, replay events through the live path, and
sign a body the way Stripe, Paystack or Twilio would (to drive the receiver by hand)."""

from __future__ import annotations

import shlex
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from faithflow_ops.cli import output
from faithflow_ops.cli.common import JsonOpt, database, parse_now, settings
from faithflow_ops.errors import UserError, one_of
from faithflow_ops.webhooks.endpoints import ENDPOINTS

app = typer.Typer(
    rich_markup_mode=None,
    help="Webhook inbox: list, show, replay stored events; sign a body for a manual delivery.",
    no_args_is_help=True,
)

PROVIDERS = ("stripe", "paystack", "mux")  # webhooks.endpoints.PROVIDERS
SCOPES = ("platform", "tenant")
# models.webhooks.WEBHOOK_STATUSES (not imported: `faithflow --help` stays free of SQLAlchemy)
STATUSES = ("received", "applied", "ignored", "unmatched", "stale", "failed")
RECEIVER = "http://127.0.0.1:8000"

# --- list / show ------------------------------------------------------------------------------


@app.command("list")
def list_(
    provider: Annotated[
        str | None, typer.Option("--provider", help="Only stripe, paystack or mux events.")
    ] = None,
    scope: Annotated[
        str | None,
        typer.Option("--scope", help="Only platform (billing) or tenant (Connect) events."),
    ] = None,
    status: Annotated[
        str | None,
        typer.Option(
            "--status",
            help="Only received (stored, not applied yet), applied, ignored, unmatched, stale "
            "or failed events.",
        ),
    ] = None,
    event_type: Annotated[
        str | None,
        typer.Option("--type", metavar="TYPE", help="Only this event type, e.g. invoice.paid."),
    ] = None,
    since: Annotated[
        str | None,
        typer.Option(
            "--since",
            help="Only events first received at or after this ISO-8601 time, e.g. "
            "2026-03-01T09:00:00Z.",
        ),
    ] = None,
    limit: Annotated[int, typer.Option("--limit", min=1, help="Show at most this many.")] = 50,
    as_json: JsonOpt = False,
) -> None:
    """Stored webhook events, newest first."""
    from faithflow_ops.webhooks.queries import list_events

    start = parse_now(since, "--since") if since is not None else None
    with database().read_session() as session:
        docs, total = list_events(
            session,
            provider=provider,
            scope=scope,
            status=status,
            event_type=event_type,
            since=start,
            limit=limit,
        )
    if output.empty(docs, "webhook event", as_json=as_json):
        return
    if as_json:
        output.print_json(docs)
    else:
        output.table(
            [
                "id",
                "received",
                "provider",
                "scope",
                "type",
                "status",
                "deliveries",
                "tenant",
                "outcome / error",
            ],
            [
                [
                    d["id"],
                    d["first_received_at"],
                    d["provider"],
                    d["scope"],
                    d["type"],
                    d["status"],
                    d["delivery_count"],
                    d["tenant"],
                    d["last_error"] or d["outcome"],
                ]
                for d in docs
            ],
        )
    output.list_footer(len(docs), total, "webhook event", as_json=as_json)


EventIdArg = Annotated[
    int, typer.Argument(metavar="ID", help="The event's id (see `faithflow webhooks list`).")
]


@app.command("show")
def show(event_id: EventIdArg, as_json: JsonOpt = False) -> None:
    """One stored event: every field, what handling did, and the payload as received."""
    from faithflow_ops.webhooks.queries import event_details

    with database().read_session() as session:
        doc = event_details(session, event_id)
    if as_json:
        output.print_json(doc)
        return
    payload = doc.pop("payload")
    doc.pop("tenant_id")  # named by its slug (`tenant`)
    output.record(doc, title=f"webhook event {doc['id']}")
    output.record({"payload": output.dumps(payload)}, title="payload")


# --- replay -----------------------------------------------------------------------------------


@app.command("replay")
def replay(
    event_id: Annotated[
        int | None,
        typer.Argument(metavar="ID", help="Replay this event (see `faithflow webhooks list`)."),
    ] = None,
    failed: Annotated[
        bool, typer.Option("--failed", help="Replay every failed event, oldest first.")
    ] = False,
    unmatched: Annotated[
        bool, typer.Option("--unmatched", help="Replay every unmatched event, oldest first.")
    ] = False,
    dry_run: Annotated[
        bool,
        typer.Option("--dry-run", help="Say what handling would do now; change nothing."),
    ] = False,
    limit: Annotated[
        int | None,
        typer.Option("--limit", min=1, help="With --failed/--unmatched: at most this many."),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Handle stored events again through the receiver's own code path (applied, ignored and
    stale events are left alone). Exit 1 when any event ends (or, with --dry-run, would end)
    failed."""
    from faithflow_ops.webhooks import inbox
    from faithflow_ops.webhooks.queries import event_status

    chosen = [event_id is not None, failed, unmatched]
    if sum(chosen) != 1:
        raise UserError(
            "name exactly one of: an event ID, --failed or --unmatched "
            "(e.g. `faithflow webhooks replay --failed`)"
        )
    db = database()
    if event_id is not None:
        ids = [event_id]
        wanted = None
    else:
        wanted = "failed" if failed else "unmatched"
        ids = inbox.ids_with_status(db, [wanted], limit)
        if not ids:
            output.info(f"no {wanted} webhook events to replay")
            if as_json:
                output.print_json([])
            return
    if wanted is None:
        with db.read_session() as session:
            before = {one: event_status(session, one) for one in ids}
    else:  # just selected by that status; replay itself re-reads and locks each row
        before = dict.fromkeys(ids, wanted)
    docs: list[dict[str, Any]] = []
    problems = 0
    for one in ids:
        try:
            doc = inbox.replay(db, one, dry_run=dry_run).to_dict()
        except UserError as exc:
            if wanted is None:
                raise
            problems += 1  # unparseable stored payload, or deleted meanwhile: report, go on
            doc = {
                "id": one,
                "event_key": None,
                "type": None,
                "status": before.get(one),
                "duplicate": False,
                "delivery_count": None,
                "detail": str(exc),
            }
        docs.append({**doc, "status_before": before.get(one)})
    if as_json:
        output.print_json(docs)
    else:
        output.table(
            ["id", "type", "status", "detail"],
            [
                [d["id"], d["type"], f"{d['status_before']} → {d['status']}", d["detail"]]
                for d in docs
            ],
        )
    counts: dict[str, int] = {}
    for d in docs:
        counts[d["status"]] = counts.get(d["status"], 0) + 1
    summary = ", ".join(
        f"{counts.get(name, 0)} {name}"
        for name in STATUSES
        if name == "applied" or counts.get(name)
    )
    output.info(f"{len(docs)} replayed: {summary}")
    if dry_run:
        output.info("dry run: nothing was changed")
    if problems or counts.get("failed"):
        raise typer.Exit(1)


# --- sign -------------------------------------------------------------------------------------


@app.command("sign")
def sign(
    file: Annotated[
        str,
        typer.Argument(
            metavar="FILE", help="The JSON body to sign, exactly as it will be sent; - for stdin."
        ),
    ],
    provider: Annotated[
        str,
        typer.Option(
            "--provider",
            help="stripe, paystack, mux, or twilio (a status callback's form body).",
        ),
    ],
    secret: Annotated[
        str | None,
        typer.Option(
            "--secret",
            help="The signing secret (default: the first of STRIPE_PLATFORM_WEBHOOK_SECRET, "
            "STRIPE_WEBHOOK_SECRET with --scope tenant, PAYSTACK_SECRET_KEY, "
            "MUX_WEBHOOK_SECRET, or TWILIO_AUTH_TOKEN).",
        ),
    ] = None,
    scope: Annotated[
        str,
        typer.Option(
            "--scope", help="platform or tenant: which endpoint (and Stripe secret) to sign for."
        ),
    ] = "platform",
    timestamp: Annotated[
        int | None,
        typer.Option(
            "--timestamp",
            metavar="EPOCH",
            help="Stripe and Mux only: the signature's time in Unix seconds (default: now).",
        ),
    ] = None,
    url: Annotated[
        str | None,
        typer.Option(
            "--url",
            help="Twilio only: the URL Twilio calls, which its signature covers (default: "
            "FAITHFLOW_PUBLIC_URL + /webhooks/twilio/status).",
        ),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Print the signature header Stripe, Paystack, Mux or Twilio would send with FILE's bytes
    (never re-serialised), and a curl command for the local receiver on stderr."""
    one_of("--provider", provider, (*PROVIDERS, "twilio"))
    one_of("--scope", scope, SCOPES)
    if provider == "mux" and scope != "platform":
        raise UserError("Mux has one endpoint, /webhooks/mux (platform scope): drop --scope")
    if secret is None:
        secret = _configured_secret(provider, scope)
    elif not secret.strip():
        raise UserError("--secret is empty; pass the endpoint's signing secret")
    if url is not None and provider != "twilio":
        output.warn(f"{provider} signatures do not cover the URL; --url ignored")
    body = _read_body(file)
    if provider == "twilio":
        if timestamp is not None:
            output.warn("Twilio signatures carry no timestamp; --timestamp ignored")
        _sign_twilio(file, body, secret, url, as_json)
        return
    if provider == "stripe":
        from faithflow_ops.providers.stripe import signature_header

        try:
            header = ("Stripe-Signature", signature_header(body, secret, timestamp))
        except UnicodeDecodeError:
            raise UserError(f"{file} is not UTF-8 text; Stripe events are JSON text") from None
    elif provider == "mux":
        from faithflow_ops.providers import mux

        header = ("mux-signature", mux.signature_header(body, secret, timestamp))
    else:
        from faithflow_ops.providers.paystack import signature

        if timestamp is not None:
            output.warn("Paystack signatures carry no timestamp; --timestamp ignored")
        header = ("x-paystack-signature", signature(body, secret))
    if as_json:
        output.print_json({"headers": {header[0]: header[1]}})
    else:
        sys.stdout.write(f"{header[0]}: {header[1]}\n")
    data = "@-" if file == "-" else f"@{file}"
    output.info(
        f"curl -X POST {RECEIVER}{ENDPOINTS[(provider, scope)].path} "
        f"-H 'Content-Type: application/json' -H {shlex.quote(f'{header[0]}: {header[1]}')} "
        f"--data-binary {shlex.quote(data)}"
    )


def _sign_twilio(file: str, body: bytes, token: str, url: str | None, as_json: bool) -> None:
    """`X-Twilio-Signature` for FILE's form parameters POSTed to `url`."""
    from urllib.parse import parse_qsl, urlsplit

    from faithflow_ops.comms.status import STATUS_PATH, callback_url
    from faithflow_ops.providers.twilio import request_signature

    if url is None:
        url = callback_url(settings())
        if url is None:
            raise UserError(
                "no URL to sign for: pass --url (the StatusCallback URL Twilio calls) or set "
                "FAITHFLOW_PUBLIC_URL"
            )
    elif urlsplit(url).scheme not in ("https", "http") or not urlsplit(url).netloc:
        raise UserError(
            f"--url {url!r} is not an absolute http(s) URL; use e.g. "
            f"https://ops.faithflow.example{STATUS_PATH}"
        )
    try:
        params = parse_qsl(body.decode("utf-8"), keep_blank_values=True)
    except UnicodeDecodeError:
        raise UserError(f"{file} is not UTF-8 text; Twilio posts a UTF-8 form") from None
    header = ("X-Twilio-Signature", request_signature(token, url, params))
    if as_json:
        output.print_json({"headers": {header[0]: header[1]}, "url": url})
    else:
        sys.stdout.write(f"{header[0]}: {header[1]}\n")
    data = "@-" if file == "-" else f"@{file}"
    output.info(
        f"curl -X POST {RECEIVER}{STATUS_PATH} "
        "-H 'Content-Type: application/x-www-form-urlencoded' "
        f"-H {shlex.quote(f'{header[0]}: {header[1]}')} --data-binary {shlex.quote(data)}"
    )


def _configured_secret(provider: str, scope: str) -> str:
    if provider == "twilio":
        token = settings().twilio_auth_token
        if not token:
            raise UserError("no secret: pass --secret or set TWILIO_AUTH_TOKEN")
        return token
    endpoint = ENDPOINTS[(provider, scope)]
    secrets: tuple[str, ...] = getattr(settings(), endpoint.secrets_setting)
    if not secrets:
        raise UserError(f"no secret: pass --secret or set {endpoint.variable}")
    return secrets[0]


def _read_body(file: str) -> bytes:
    if file == "-":
        return sys.stdin.buffer.read()
    try:
        return Path(file).read_bytes()
    except OSError as exc:
        raise UserError(
            f"cannot read {file}: {exc.strerror or exc}; pass the body's path, or - for stdin"
        ) from None
