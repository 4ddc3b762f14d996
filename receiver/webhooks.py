"""`POST /webhooks/{stripe,paystack}[/platform]` and `/webhooks/mux` (live streams, issue 18):
verify the raw body, store the delivery,
answer once it is committed (`faithflow_ops.webhooks.ingest`). The effects are applied later,
each event in its own transaction, by the applier (`faithflow_ops.webhooks.applier`: the
worker in this process, or `faithflow webhooks apply`).

Answers (DESIGN §4): 200 stored — `{"status": "received"}` for a new event, or the current
status of the stored row and `"duplicate": true` for a redelivery; 400 missing/bad signature
(any malformed or non-ASCII signature header too), expired timestamp, not JSON, JSON nested
deeper than the parser reads, not an event of the provider's shape — nothing is stored;
403 a Paystack delivery from outside PAYSTACK_ALLOWED_IPS; 413 body over the limit; 503 the
endpoint's secret is not set, or the database is unavailable (nothing stored, the provider
retries). No handler code and no provider API call run here.

The routes are `async`: verification and parsing are a few tens of microseconds, and the
store is awaited (Postgres: the group-commit writer; SQLite: one transaction in a thread).
"""

from __future__ import annotations

import functools
import ipaddress
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import anyio.to_thread
import structlog
from litestar import Request, Response, post
from litestar.openapi import ResponseSpec
from litestar.openapi.spec import OpenAPIMediaType, Operation, Parameter, RequestBody, Schema
from litestar.openapi.spec.enums import OpenAPIFormat, OpenAPIType

from faithflow_ops.db import RECEIVER_TIMEOUTS, DbTimeouts
from faithflow_ops.providers import SignatureError
from faithflow_ops.providers import mux as mux_provider
from faithflow_ops.providers import paystack as paystack_provider
from faithflow_ops.providers import stripe as stripe_provider
from faithflow_ops.webhooks import inbox, ingest
from faithflow_ops.webhooks.endpoints import ENDPOINTS
from faithflow_ops.webhooks.events import MalformedEvent, paystack_scope
from faithflow_ops.webhooks.ingest import DatabaseUnavailable, Delivery, NotAnEvent, Stored
from receiver.tasks import RawBody

if TYPE_CHECKING:
    from litestar import Litestar
    from litestar.handlers import HTTPRouteHandler

    from faithflow_ops.config import IPNetwork, Settings
    from faithflow_ops.db import Database
    from receiver.metrics import Metrics

log = structlog.get_logger("faithflow.receiver")

RESPONSES = {
    code: ResponseSpec(data_container=dict[str, Any], description=text, generate_examples=False)
    for code, text in {
        200: "Stored (committed) before this answer: `status` is `received` for a new event, "
        "or the current status of the stored event with `duplicate: true` for a redelivery. "
        "Its effects are applied later by the webhook applier.",
        400: "Missing or bad signature, expired timestamp, or a body that is not an event "
        "(not JSON, nested too deep, not of the provider's shape). Nothing is stored.",
        403: "Paystack delivery from an address outside PAYSTACK_ALLOWED_IPS.",
        413: "The body is over the size limit.",
        503: "The endpoint's secret is not configured, or the database is unavailable; "
        "nothing is stored and the provider retries.",
    }.items()
}


def client_address(
    peer: str | None, forwarded_for: str | None, trusted: Sequence[IPNetwork]
) -> str | None:
    """The sender's address: the peer, or — when the peer is a trusted proxy — the right-most
    address in X-Forwarded-For that is not itself a trusted proxy."""
    if peer is None:
        return None

    def is_trusted(text: str) -> bool:
        try:
            address = ipaddress.ip_address(text)
        except ValueError:
            return False
        return any(address in network for network in trusted)

    if not forwarded_for or not is_trusted(peer):
        return peer
    hops = [hop.strip() for hop in forwarded_for.split(",") if hop.strip()]
    for hop in reversed(hops):
        if not is_trusted(hop):
            return hop
    return hops[0] if hops else peer


def _allowed(address: str | None, allowlist: Sequence[IPNetwork]) -> bool:
    if not allowlist:
        return True
    try:
        parsed = ipaddress.ip_address(address or "")
    except ValueError:
        return False
    return any(parsed in network for network in allowlist)


def _refuse(
    metrics: Metrics, provider: str, scope: str, status: int, result: str, error: str, **log_kw: Any
) -> Response[dict[str, Any]]:
    metrics.webhooks.labels(provider, scope, result).inc()
    log.warning("webhook refused", provider=provider, scope=scope, reason=error, **log_kw)
    return Response({"error": error, "detail": None}, status_code=status)


class WebhookIngest:
    """Where the routes store deliveries: the Postgres group-commit writer, or one
    transaction per delivery (SQLite) in a worker thread. `lifespan` opens and closes the
    writer with the app; `on_stored` (this process's applier's `wake`, set by `create_app`)
    is called after each commit."""

    def __init__(self, db: Database, timeouts: DbTimeouts = RECEIVER_TIMEOUTS) -> None:
        self.db = db
        self.on_stored: Callable[[], None] | None = None  # this process's applier: wake()
        self.sync = ingest.SyncStore(db, on_stored=self._wake)
        self.writer: ingest.GroupWriter | None = None
        if db.dialect == "postgresql":  # FAITHFLOW_INGEST_{STATEMENT,LOCK}_TIMEOUT
            self.writer = ingest.GroupWriter(
                ingest.conninfo(db), on_stored=self._wake, timeouts=timeouts
            )

    def _wake(self) -> None:
        if self.on_stored is not None:
            self.on_stored()

    @asynccontextmanager
    async def lifespan(self, app: Litestar) -> AsyncIterator[None]:
        del app  # `create_app` sets `on_stored` (the applier's wake)
        if self.writer is not None:
            await self.writer.start()
        try:
            yield
        finally:
            if self.writer is not None:
                await self.writer.stop()

    async def store(self, item: Delivery, body: bytes) -> Stored:
        if self.writer is not None:
            return await self.writer.store(item, body)
        return await anyio.to_thread.run_sync(self.sync.store, item, body)


async def receive_webhook(
    store: WebhookIngest,
    settings: Settings,
    metrics: Metrics,
    provider: str,
    scope: str,
    request: Request[Any, Any, Any],
    body: bytes,
) -> Response[dict[str, Any]]:
    _, attr, variable = ENDPOINTS[(provider, scope)]
    secrets: tuple[str, ...] = getattr(settings, attr)
    if not secrets:
        return _refuse(
            metrics,
            provider,
            scope,
            503,
            "not_configured",
            f"{provider} {scope} webhooks are disabled: {variable} is not set",
        )
    headers = request.headers
    if provider == "paystack" and settings.paystack_allowed_ips:
        peer = request.client.host if request.client else None
        address = client_address(peer, headers.get("x-forwarded-for"), settings.trusted_proxies)
        if not _allowed(address, settings.paystack_allowed_ips):
            return _refuse(
                metrics,
                provider,
                scope,
                403,
                "forbidden_address",
                f"deliveries from {address} are refused: not in PAYSTACK_ALLOWED_IPS",
                client=address,
            )
    try:
        if provider == "stripe":
            stripe_provider.verify_webhook(
                body, headers.get("stripe-signature"), secrets, settings.stripe_webhook_tolerance
            )
        elif provider == "mux":
            mux_provider.verify_webhook(
                body,
                headers.get(mux_provider.SIGNATURE_HEADER),
                secrets,
                settings.mux_webhook_tolerance,
            )
        else:
            paystack_provider.verify_webhook(body, headers.get("x-paystack-signature"), secrets)
    except SignatureError as exc:
        return _refuse(metrics, provider, scope, 400, "bad_signature", str(exc))
    try:
        parsed = ingest.read_body(body)
    except NotAnEvent as exc:
        return _refuse(metrics, provider, scope, 400, exc.result, str(exc))
    if provider == "paystack":
        # One Paystack URL receives every event of the integration: route by content.
        scope = paystack_scope(parsed.payload, scope)
    try:
        event = inbox.parse_event(provider, scope, parsed.payload)
    except MalformedEvent as exc:
        return _refuse(metrics, provider, scope, 400, "malformed", str(exc))
    try:
        stored = await store.store(ingest.delivery(event, body, parsed), body)
    except DatabaseUnavailable:
        metrics.webhooks.labels(provider, scope, "unavailable").inc()
        return Response(
            {"error": "database unavailable; try again later", "detail": None}, status_code=503
        )
    result = "duplicate" if stored.duplicate else "received"
    metrics.webhooks.labels(provider, scope, result).inc()
    # One log line per delivery: the metrics middleware's `request` line carries these fields.
    request.scope["log_fields"] = {  # type: ignore[typeddict-unknown-key]
        "provider": provider,
        "scope": scope,
        "event_key": event.key,
        "type": event.type,
        "result": result,
        "deliveries": stored.delivery_count,
    }
    return Response(stored.to_dict(), status_code=200)


# The signature header of each provider (providers.stripe / providers.paystack verify them).
SIGNATURE_HEADERS = {
    "stripe": (
        "Stripe-Signature",
        '`t=<unix time>,v1=<hex HMAC-SHA256 of "t.body">` (docs.stripe.com/webhooks#verify-'
        "manually); missing, malformed or not matching: 400.",
    ),
    "paystack": (
        "x-paystack-signature",
        "Hex HMAC-SHA512 of the body under the secret key (paystack.com/docs/payments/"
        "webhooks#verify-event-origin); missing, malformed or not matching: 400.",
    ),
    "mux": (
        "mux-signature",
        '`t=<unix time>,v1=<hex HMAC-SHA256 of "t.body">` under the webhook\'s signing secret '
        "(www.mux.com/docs/core/verify-webhook-signatures); missing, malformed, not matching "
        f"or older than `MUX_WEBHOOK_TOLERANCE` ({mux_provider.WEBHOOK_TOLERANCE} s unless set): "
        "400.",
    ),
}


_OBJECT = Schema(type=OpenAPIType.OBJECT)
_STRING = Schema(type=OpenAPIType.STRING)
# The envelope of an event, as documented: Stripe's Event object (docs.stripe.com/api/events/
# object: `id`, `type`, `created`, `data.object`) and Paystack's webhook body
# (paystack.com/docs/payments/webhooks: `event` and `data`). Other fields pass through.
EVENT_SCHEMAS = {
    "stripe": Schema(
        type=OpenAPIType.OBJECT,
        required=["id", "type", "data"],
        properties={
            "id": _STRING,
            "type": _STRING,
            "created": Schema(type=OpenAPIType.INTEGER),
            "data": Schema(
                type=OpenAPIType.OBJECT, required=["object"], properties={"object": _OBJECT}
            ),
        },
    ),
    "paystack": Schema(
        type=OpenAPIType.OBJECT,
        required=["event", "data"],
        properties={"event": _STRING, "data": _OBJECT},
    ),
    # Mux's event envelope (www.mux.com/webhook-spec.json): `data` is the live stream or asset.
    "mux": Schema(
        type=OpenAPIType.OBJECT,
        required=["id", "type", "created_at", "data"],
        properties={
            "id": _STRING,
            "type": _STRING,
            "created_at": Schema(type=OpenAPIType.STRING, format=OpenAPIFormat.DATE_TIME),
            "object": _OBJECT,
            "data": _OBJECT,
        },
    ),
}


@functools.cache  # a class per app made the dataclass anew: 30 % of create_app
def _operation_class(provider: str) -> type[Operation]:
    """What a provider sends, in the OpenAPI document: its signature header and a JSON event
    (the handler reads both itself, so the answers for bad ones are ours)."""
    header, text = SIGNATURE_HEADERS[provider]

    @dataclass
    class WebhookOperation(Operation):
        def __post_init__(self) -> None:
            self.parameters = [
                Parameter(
                    name=header,
                    param_in="header",
                    required=True,
                    description=text,
                    schema=Schema(type=OpenAPIType.STRING),
                )
            ]
            self.request_body = RequestBody(
                required=True,
                description=f"The {provider.title()} event as the provider sent it (the raw "
                "bytes are verified before they are parsed).",
                content={"application/json": OpenAPIMediaType(schema=EVENT_SCHEMAS[provider])},
            )

    return WebhookOperation


def webhook_handlers(
    store: WebhookIngest, settings: Settings, metrics: Metrics
) -> list[HTTPRouteHandler]:
    """One route per (provider, scope) in ENDPOINTS."""

    def route(provider: str, scope: str) -> HTTPRouteHandler:
        path, _, variable = ENDPOINTS[(provider, scope)]

        async def handler(
            request: Request[Any, Any, Any], body: RawBody
        ) -> Response[dict[str, Any]]:
            return await receive_webhook(store, settings, metrics, provider, scope, request, body)

        handled = ", ".join(f"`{name}`" for name in inbox.handled_types(provider, scope))
        return post(
            path,
            name=f"webhook:{provider}:{scope}",
            operation_id=f"webhook_{provider}_{scope}",
            summary=f"{provider.title()} webhooks ({scope} scope)",
            description=(
                f"Signed with `{variable}`. The verified delivery is stored and answered 200 "
                "once committed; the webhook applier applies it afterwards. Handled types: "
                f"{handled}; other types end as `ignored`. However often and in whatever "
                "order an event is delivered, it is applied at most once."
            ),
            responses=RESPONSES,
            tags=["webhooks"],
            operation_class=_operation_class(provider),
        )(handler)

    return [route(provider, scope) for provider, scope in ENDPOINTS]
