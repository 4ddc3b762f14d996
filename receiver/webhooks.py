"""`POST /webhooks/{stripe,paystack}[/platform]`: verify the raw body, then hand the event to
the inbox (`faithflow_ops.webhooks.inbox`), the same code `faithflow webhooks replay` runs.

Answers (DESIGN §4): 200 applied, ignored, unmatched, stale or a duplicate (the JSON says
which); 400 missing/bad signature, expired timestamp, not JSON, not an event of the provider's
shape — nothing is stored; 403 a Paystack delivery from outside PAYSTACK_ALLOWED_IPS;
413 body over the limit; 500 our handler failed (the delivery is kept as `failed` with the
error, the provider retries); 503 the endpoint's secret is not set, or the database is down.
No provider API is called here.
"""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import structlog
from litestar import Request, Response, post
from litestar.openapi import ResponseSpec

from faithflow_ops.providers import SignatureError
from faithflow_ops.providers import paystack as paystack_provider
from faithflow_ops.providers import stripe as stripe_provider
from faithflow_ops.webhooks import inbox
from faithflow_ops.webhooks.endpoints import ENDPOINTS
from faithflow_ops.webhooks.events import MalformedEvent, parse, paystack_scope
from receiver.tasks import RawBody

if TYPE_CHECKING:
    from litestar.handlers import HTTPRouteHandler

    from faithflow_ops.config import IPNetwork, Settings
    from faithflow_ops.db import Database
    from receiver.metrics import Metrics

log = structlog.get_logger("faithflow.receiver")

RESPONSES = {
    code: ResponseSpec(data_container=dict[str, Any], description=text, generate_examples=False)
    for code, text in {
        400: "Missing or bad signature, expired timestamp, or a body that is not an event.",
        403: "Paystack delivery from an address outside PAYSTACK_ALLOWED_IPS.",
        413: "The body is over the size limit.",
        500: "Handling failed; the delivery is stored as `failed` and the provider retries.",
        503: "The endpoint's secret is not configured, or the database is unavailable.",
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


def receive_webhook(
    db: Database,
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
        else:
            paystack_provider.verify_webhook(body, headers.get("x-paystack-signature"), secrets)
    except SignatureError as exc:
        return _refuse(metrics, provider, scope, 400, "bad_signature", str(exc))
    try:
        payload = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return _refuse(metrics, provider, scope, 400, "not_json", "signed body is not JSON")
    if provider == "paystack":
        # One Paystack URL receives every event of the integration: route by content.
        scope = paystack_scope(payload, scope)
    try:
        event = parse(provider, scope, payload)
    except MalformedEvent as exc:
        return _refuse(metrics, provider, scope, 400, "malformed", str(exc))
    received = inbox.receive(db, event)
    result = "duplicate" if received.duplicate else received.status
    metrics.webhooks.labels(provider, scope, result).inc()
    # One log line per delivery: the metrics middleware's `request` line carries these fields.
    request.scope["log_fields"] = {  # type: ignore[typeddict-unknown-key]
        "provider": provider,
        "scope": scope,
        "event_key": event.key,
        "type": event.type,
        "result": result,
        "deliveries": received.delivery_count,
    }
    return Response(received.to_dict(), status_code=500 if received.status == "failed" else 200)


def webhook_handlers(db: Database, settings: Settings, metrics: Metrics) -> list[HTTPRouteHandler]:
    """One route per (provider, scope) in ENDPOINTS."""

    def route(provider: str, scope: str) -> HTTPRouteHandler:
        path, _, variable = ENDPOINTS[(provider, scope)]

        def handler(request: Request[Any, Any, Any], body: RawBody) -> Response[dict[str, Any]]:
            return receive_webhook(db, settings, metrics, provider, scope, request, body)

        handled = ", ".join(f"`{name}`" for name in inbox.handled_types(provider, scope))
        return post(
            path,
            sync_to_thread=True,
            name=f"webhook:{provider}:{scope}",
            operation_id=f"webhook_{provider}_{scope}",
            summary=f"{provider.title()} webhooks ({scope} scope)",
            description=(
                f"Signed with `{variable}`. Handled types: {handled}; other types are stored "
                "as `ignored`. However often and in whatever order an event is delivered, it "
                "is applied at most once."
            ),
            responses=RESPONSES,
            tags=["webhooks"],
        )(handler)

    return [route(provider, scope) for provider, scope in ENDPOINTS]
