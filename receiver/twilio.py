"""`POST /webhooks/twilio/status`: Twilio's message status callbacks, which move outbox SMS and
WhatsApp messages from `sent` to `delivered` or `failed` (faithflow_ops/comms/status.py does
the move; docs/comms.md, "Delivery status from Twilio").

The request (what this module relies on, and where it is written down):

- Twilio POSTs `application/x-www-form-urlencoded` to the `StatusCallback` URL the message was
  sent with, once per status change after creation (none for the initial `queued`/`accepted`),
  with `MessageSid`, `MessageStatus`, `ErrorCode` (on `undelivered`/`failed`), `AccountSid`,
  `To`, `From`, …; the set of parameters grows without notice. Twilio docs: "Track the Message
  Status of Outbound Messages" (https://www.twilio.com/docs/messaging/guides/track-outbound-
  message-status) and "Outbound Message Status in Status Callbacks" (https://www.twilio.com/
  docs/messaging/guides/outbound-message-status-in-status-callbacks).
- `MessageStatus` values are those of the Message resource: queued, sending, sent, failed,
  delivered, undelivered, receiving, received, accepted, scheduled, read, partially_delivered,
  canceled (the `MessageEnumStatus` of Twilio's OpenAPI description of the API, as published
  in the generated `twilio-openapi` client). Unknown values are answered 200 `ignored`.
- `X-Twilio-Signature` = base64(HMAC-SHA1(auth token, the full URL Twilio requested + every
  POST parameter's name and value, sorted by name, no separators)), compared in constant time.
  Twilio docs: "Webhooks security", https://www.twilio.com/docs/usage/security#validating-
  requests; the reference implementation is twilio-python's `twilio/request_validator.py`
  (`compute_signature` sorts the names, then each name's values; `validate` accepts the URL
  with or without the default port), which `providers.twilio.request_signature` follows.

The URL in the signature is the one Twilio called, not the one this process sees: behind
Render's or any TLS-terminating proxy the request arrives as `http://10.x.x.x:8000/…` while
Twilio signed `https://ops.example.org/…`. So the URL checked is
`FAITHFLOW_PUBLIC_URL + /webhooks/twilio/status` (+ the query string, if Twilio was given
one) — the same base the dispatcher put in `StatusCallback`. Only without
FAITHFLOW_PUBLIC_URL is the request's own URL used, which is right only when nothing in front
of the receiver rewrites scheme, host or port.

Answers: 200 with `{"result", "message", "status", "note"}` for every verified callback —
`applied`, `duplicate`, `stale`, `ignored`, and `unmatched` (no outbox message has that sid:
answered 200 and logged, since Twilio retrying it would never help); 400 missing or bad
signature, a body that is not a form, `AccountSid` other than TWILIO_ACCOUNT_SID, no
`MessageSid`/`MessageStatus` — nothing is changed; 413 body over the limit; 503
TWILIO_AUTH_TOKEN unset (naming it), or the database is down. Every answer is counted in
`faithflow_webhook_deliveries_total{provider="twilio", scope="status", result=…}`.
"""

from __future__ import annotations

import datetime as dt
import functools
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl

import structlog
from litestar import Request, Response, post
from litestar.openapi import ResponseSpec
from litestar.openapi.spec import OpenAPIMediaType, Operation, Parameter, RequestBody, Schema
from litestar.openapi.spec.enums import OpenAPIType

from faithflow_ops.comms import optout
from faithflow_ops.comms import status as delivery
from faithflow_ops.errors import UserError
from faithflow_ops.providers import SignatureError
from faithflow_ops.providers import twilio as twilio_provider
from receiver.tasks import RawBody

if TYPE_CHECKING:
    from litestar.handlers import HTTPRouteHandler

    from faithflow_ops.config import Settings
    from faithflow_ops.db import Database
    from receiver.metrics import Metrics

log = structlog.get_logger("faithflow.receiver")

PROVIDER, SCOPE, INBOUND = "twilio", "status", "inbound"

RESPONSES = {
    code: ResponseSpec(data_container=dict[str, Any], description=text, generate_examples=False)
    for code, text in {
        400: "Missing or bad X-Twilio-Signature, a body that is not a form, another account's "
        "AccountSid, or no MessageSid/MessageStatus. Nothing is changed.",
        413: "The body is over the size limit.",
        503: "TWILIO_AUTH_TOKEN is not set, or the database is unavailable.",
    }.items()
}


def signed_url(
    settings: Settings, request: Request[Any, Any, Any], path: str = delivery.STATUS_PATH
) -> str:
    """The URL Twilio signed: FAITHFLOW_PUBLIC_URL + the path (+ query), else the request's."""
    query = request.url.query
    if settings.public_url:
        return f"{settings.public_url}{path}" + (f"?{query}" if query else "")
    url = request.url
    return f"{url.scheme}://{url.netloc}{url.path}" + (f"?{query}" if query else "")


def _refuse(
    metrics: Metrics, status: int, result: str, error: str, scope: str = SCOPE, **log_kw: Any
) -> Response[Any]:
    metrics.webhooks.labels(PROVIDER, scope, result).inc()
    log.warning("webhook refused", provider=PROVIDER, scope=scope, reason=error, **log_kw)
    return Response({"error": error, "detail": None}, status_code=status)


def _verified(
    settings: Settings,
    metrics: Metrics,
    request: Request[Any, Any, Any],
    body: bytes,
    *,
    path: str,
    scope: str,
) -> dict[str, str] | Response[Any]:
    """The form of a request Twilio signed for `path` under TWILIO_AUTH_TOKEN and our
    account, or the refusal to answer (503 no token, 400 not a form / bad signature / another
    account)."""
    token = settings.twilio_auth_token
    if not token:
        return _refuse(
            metrics,
            503,
            "not_configured",
            f"twilio {'status callbacks' if scope == SCOPE else 'incoming messages'} are "
            "disabled: TWILIO_AUTH_TOKEN is not set",
            scope,
        )
    try:
        params = parse_qsl(body.decode("utf-8"), keep_blank_values=True)
    except (UnicodeDecodeError, ValueError):
        return _refuse(metrics, 400, "malformed", "body is not a UTF-8 form", scope)
    url = signed_url(settings, request, path)
    try:
        twilio_provider.verify_request(
            url, params, request.headers.get("x-twilio-signature"), token
        )
    except SignatureError as exc:
        return _refuse(metrics, 400, "bad_signature", str(exc), scope)
    form = dict(params)
    account = form.get("AccountSid", "")
    if settings.twilio_account_sid and account != settings.twilio_account_sid:
        return _refuse(
            metrics,
            400,
            "wrong_account",
            f"AccountSid {account or '(missing)'} is not TWILIO_ACCOUNT_SID",
            scope,
        )
    return form


def _message_ref(request: Request[Any, Any, Any]) -> int | None:
    """The outbox id the dispatcher put in the StatusCallback URL (`?m=ID`), covered by the
    signature like the rest of the URL; None for a URL without one."""
    raw = request.query_params.get("m", "")
    return int(raw) if _digits(raw) else None


def _digits(raw: str) -> bool:
    """A number our integer columns hold: ASCII digits only (`str.isdigit` is also true for
    "²", which `int` refuses), at most 9 of them (a 32-bit column; Twilio's error codes have
    5, an outbox id fewer than 10)."""
    return raw.isascii() and raw.isdigit() and len(raw) <= 9


def _error_code(raw: str | None) -> int | None:
    raw = (raw or "").strip()
    return int(raw) if _digits(raw) else None


def receive_status(
    db: Database,
    settings: Settings,
    metrics: Metrics,
    request: Request[Any, Any, Any],
    body: bytes,
) -> Response[Any]:
    form = _verified(settings, metrics, request, body, path=delivery.STATUS_PATH, scope=SCOPE)
    if isinstance(form, Response):
        return form
    sid, reported = form.get("MessageSid", "").strip(), form.get("MessageStatus", "").strip()
    if not sid or not reported:
        missing = " and ".join(
            n for n, v in (("MessageSid", sid), ("MessageStatus", reported)) if not v
        )
        return _refuse(metrics, 400, "malformed", f"not a message status callback: no {missing}")
    error_code = _error_code(form.get("ErrorCode"))
    with db.session() as session:
        outcome = delivery.record(
            session,
            sid=sid,
            twilio_status=reported,
            error_code=error_code,
            now=dt.datetime.now(dt.UTC),
            message_ref=_message_ref(request),
        )
    metrics.webhooks.labels(PROVIDER, SCOPE, outcome.result).inc()
    fields = {
        "provider": PROVIDER,
        "scope": SCOPE,
        "sid": sid,
        "twilio_status": reported,
        "error_code": error_code,
        "result": outcome.result,
        "message": outcome.message_id,
    }
    if outcome.result == "unmatched":
        log.warning("twilio status for an unknown message", **fields, note=outcome.note)
    elif outcome.result == "stale" and reported.lower() in delivery.DELIVERED | delivery.FAILED:
        log.warning("twilio status contradicts a final status", **fields, note=outcome.note)
    # One log line per delivery: the metrics middleware's `request` line carries these fields.
    request.scope["log_fields"] = fields  # type: ignore[typeddict-unknown-key]
    return Response(outcome.to_dict(), status_code=200)


EMPTY_TWIML = '<?xml version="1.0" encoding="UTF-8"?><Response></Response>'


def receive_inbound(
    db: Database,
    settings: Settings,
    metrics: Metrics,
    request: Request[Any, Any, Any],
    body: bytes,
) -> Response[Any]:
    """Twilio's incoming message webhook: STOP / START replies (comms/optout.py). Answered
    with empty TwiML (Twilio sends its own reply to the keywords)."""
    form = _verified(settings, metrics, request, body, path=optout.INBOUND_PATH, scope=INBOUND)
    if isinstance(form, Response):
        return form
    sid, from_ = form.get("MessageSid", "").strip(), form.get("From", "").strip()
    if not sid or not from_:
        missing = " and ".join(n for n, v in (("MessageSid", sid), ("From", from_)) if not v)
        return _refuse(metrics, 400, "malformed", f"not an incoming message: no {missing}", INBOUND)
    try:
        with db.session() as session:
            outcome = optout.record_inbound(
                session,
                from_=from_,
                body=form.get("Body", ""),
                opt_out_type=form.get("OptOutType"),
                message_sid=sid,
                now=dt.datetime.now(dt.UTC),
            )
    except UserError:  # a short code or an alphanumeric sender: no number to (un)suppress
        outcome = None
    result = outcome.result if outcome is not None else "ignored"
    metrics.webhooks.labels(PROVIDER, INBOUND, result).inc()
    fields = {
        "provider": PROVIDER,
        "scope": INBOUND,
        "sid": sid,
        "result": result,
        "keyword": outcome.keyword if outcome is not None else None,
        "channel": outcome.channel if outcome is not None else None,
    }
    if result in ("stopped", "started"):
        log.info("twilio opt-out keyword", **fields)
    request.scope["log_fields"] = fields  # type: ignore[typeddict-unknown-key]
    return Response(EMPTY_TWIML, status_code=200, media_type="application/xml")


@functools.cache  # a class per app made the dataclass anew: 30 % of create_app
def _operation_class(fields: tuple[str, ...], required: tuple[str, ...]) -> type[Operation]:
    """What Twilio sends, in the OpenAPI document: `X-Twilio-Signature` and a form with these
    parameters (more may come; the handler reads the raw body itself, so the answers for bad
    ones are ours)."""

    @dataclass
    class TwilioOperation(Operation):
        def __post_init__(self) -> None:
            self.parameters = [
                Parameter(
                    name="X-Twilio-Signature",
                    param_in="header",
                    required=True,
                    description="base64 HMAC-SHA1 of the URL and the sorted parameters under "
                    "TWILIO_AUTH_TOKEN (twilio.com/docs/usage/security); bad or missing: 400.",
                    schema=Schema(type=OpenAPIType.STRING),
                )
            ]
            form = Schema(
                type=OpenAPIType.OBJECT,
                required=list(required),
                properties={name: Schema(type=OpenAPIType.STRING) for name in fields},
            )
            self.request_body = RequestBody(
                required=True,
                content={"application/x-www-form-urlencoded": OpenAPIMediaType(schema=form)},
            )

    return TwilioOperation


_STATUS_FORM = ("MessageSid", "MessageStatus", "ErrorCode", "AccountSid", "To", "From")
_INBOUND_FORM = ("MessageSid", "From", "To", "Body", "AccountSid", "OptOutType")


def twilio_handlers(db: Database, settings: Settings, metrics: Metrics) -> list[HTTPRouteHandler]:
    """`POST /webhooks/twilio/status` and `POST /webhooks/twilio/inbound`."""

    def handler(request: Request[Any, Any, Any], body: RawBody) -> Response[Any]:
        return receive_status(db, settings, metrics, request, body)

    def inbound(request: Request[Any, Any, Any], body: RawBody) -> Response[Any]:
        return receive_inbound(db, settings, metrics, request, body)

    return [
        post(
            delivery.STATUS_PATH,
            sync_to_thread=True,
            name="webhook:twilio:status",
            operation_id="webhook_twilio_status",
            summary="Twilio message status callbacks",
            description=(
                "Form-encoded, signed with `X-Twilio-Signature` under `TWILIO_AUTH_TOKEN` for "
                "the URL `FAITHFLOW_PUBLIC_URL` + this path. `delivered`/`read` and "
                "`undelivered`/`failed` move the outbox message from `sent` to `delivered` or "
                "`failed`; a message never moves backwards, and duplicates change nothing."
            ),
            responses=RESPONSES,
            tags=["webhooks"],
            operation_class=_operation_class(_STATUS_FORM, ("MessageSid", "MessageStatus")),
        )(handler),
        post(
            optout.INBOUND_PATH,
            sync_to_thread=True,
            name="webhook:twilio:inbound",
            operation_id="webhook_twilio_inbound",
            summary="Twilio incoming messages (STOP / START)",
            description=(
                "Twilio's incoming message webhook (set it as the number's or Messaging "
                "Service's 'A message comes in' URL), form-encoded and signed with "
                "`X-Twilio-Signature` under `TWILIO_AUTH_TOKEN` for `FAITHFLOW_PUBLIC_URL` + "
                "this path. An opt-out keyword (STOP, STOPALL, UNSUBSCRIBE, CANCEL, END, QUIT, "
                "REVOKE, OPTOUT) suppresses the number on its channel; START, YES or UNSTOP "
                "lifts that STOP. Answered with empty TwiML."
            ),
            responses=RESPONSES,
            tags=["webhooks"],
            operation_class=_operation_class(_INBOUND_FORM, ("MessageSid", "From")),
        )(inbound),
    ]
