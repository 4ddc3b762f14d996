"""Mux Video live streams and their recordings (issue 18, `streams sync`), read-only, over httpx
with the shared retry policy (providers/_http.py: connection errors, timeouts, 429 and 5xx
retried with `Retry-After` honoured; other 4xx not).

What this relies on — Mux's API reference (https://mux.com/docs/api-reference/video/live-streams
and https://mux.com/docs/api-reference, "Assets"):

- auth: HTTP basic with an access token's id and secret (MUX_TOKEN_ID / MUX_TOKEN_SECRET);
- every answer wraps its object in `{"data": {...}}`; errors are
  `{"error": {"type": "...", "messages": ["..."]}}`;
- `GET /video/v1/live-streams/{LIVE_STREAM_ID}` — `id`, `status` (`idle` | `active` |
  `disabled`), `active_asset_id` (the asset being recorded while a broadcast is on),
  `recent_asset_ids` (newest last), `reconnect_window` (seconds Mux waits for the encoder to
  come back before it finishes the broadcast; the stream stays `active` meanwhile);
- `GET /video/v1/assets/{ASSET_ID}` — `id`, `status` (`preparing` | `ready` | `errored`),
  `duration` (seconds, a number), `playback_ids` [{`id`, `policy`: `public` | `signed`}],
  `live_stream_id`, `is_live`, `created_at` (Unix seconds, as a string);
- a public playback id plays at `https://stream.mux.com/{PLAYBACK_ID}.m3u8` (HLS).

Webhooks (`POST /webhooks/mux`) — Mux's "Verify webhook signatures"
(https://www.mux.com/docs/core/verify-webhook-signatures): each delivery carries
`mux-signature: t=<unix seconds>,v1=<hex HMAC-SHA256>` where the HMAC is computed with the
webhook's signing secret over `<t>.<raw body>`; `v1` is the only scheme; the receiver compares
in constant time and refuses a timestamp older than the tolerance (Mux's SDKs: 5 minutes).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from faithflow_ops.providers import SignatureError
from faithflow_ops.providers._http import (
    PooledClient,
    ProviderError,
    RetryPolicy,
    call,
    parse_retry_after,
    retryable_status,
)

if TYPE_CHECKING:
    import httpx

    from faithflow_ops.config import Settings

PROVIDER = "Mux"
STREAM_BASE = "https://stream.mux.com"
SIGNATURE_HEADER = "mux-signature"
WEBHOOK_TOLERANCE = 300  # seconds; the default of Mux's own SDKs


def _signature(body: bytes, secret: str, timestamp: str) -> str:
    signed = timestamp.encode("ascii") + b"." + body
    return hmac.new(secret.encode("utf-8"), signed, hashlib.sha256).hexdigest()


def signature_header(body: bytes, secret: str, timestamp: int | None = None) -> str:
    """The `mux-signature` header Mux would send with `body` (tests, `webhooks sign`)."""
    when = str(int(time.time()) if timestamp is None else timestamp)
    return f"t={when},v1={_signature(body, secret, when)}"


def verify_webhook(
    body: bytes,
    header: str | None,
    secrets: Sequence[str],
    tolerance: int = WEBHOOK_TOLERANCE,
    *,
    now: float | None = None,
) -> None:
    """Raise SignatureError unless `mux-signature` proves `body` came from Mux recently.

    Any `v1` in the header may match any of `secrets` (rotation). A signature that matches but
    whose timestamp is more than `tolerance` seconds old (0: no limit) is refused as expired,
    not as forged, so the log says which."""
    if not header:
        raise SignatureError("missing mux-signature header")
    if not header.isascii():
        raise SignatureError("mux-signature header is not ASCII, so it cannot be a signature")
    timestamp: str | None = None
    signatures: list[str] = []
    for part in header.split(","):
        name, eq, value = part.strip().partition("=")
        if not eq:
            continue
        if name == "t":
            timestamp = value.strip()
        elif name == "v1":
            signatures.append(value.strip().lower())
    if timestamp is None or not timestamp.isdigit() or len(timestamp) > 12:
        raise SignatureError(
            "mux-signature header has no timestamp: expected t=<unix time>,v1=<hex HMAC>"
        )
    if not signatures:
        raise SignatureError("mux-signature header has no v1 signature (the only Mux scheme)")
    for secret in secrets:
        expected = _signature(body, secret, timestamp)
        if any(hmac.compare_digest(expected, sig) for sig in signatures):
            break
    else:
        raise SignatureError(
            "signature does not verify: no v1 signature matches MUX_WEBHOOK_SECRET for this body"
        )
    clock = time.time() if now is None else now
    if tolerance and int(timestamp) < clock - tolerance:
        raise SignatureError(
            f"timestamp is older than the {tolerance} s tolerance (a replay, or a clock far "
            "off); Mux's retry will carry a fresh timestamp"
        )


@dataclass(frozen=True)
class MuxLiveStream:
    id: str
    status: str  # idle | active | disabled
    active_asset_id: str | None
    recent_asset_ids: tuple[str, ...]
    reconnect_window: float | None

    @classmethod
    def from_api(cls, doc: dict[str, Any]) -> MuxLiveStream:
        window = doc.get("reconnect_window")
        return cls(
            id=str(doc.get("id") or ""),
            status=str(doc.get("status") or ""),
            active_asset_id=doc.get("active_asset_id") or None,
            recent_asset_ids=tuple(str(a) for a in doc.get("recent_asset_ids") or ()),
            reconnect_window=float(window) if isinstance(window, int | float) else None,
        )


@dataclass(frozen=True)
class MuxAsset:
    id: str
    status: str  # preparing | ready | errored
    duration_s: float | None
    playback_id: str | None  # the first public one
    live_stream_id: str | None
    is_live: bool
    created_at: dt.datetime | None

    @property
    def playback_url(self) -> str | None:
        return f"{STREAM_BASE}/{self.playback_id}.m3u8" if self.playback_id else None

    @property
    def duration_ms(self) -> int | None:
        return round(self.duration_s * 1000) if self.duration_s is not None else None

    @classmethod
    def from_api(cls, doc: dict[str, Any]) -> MuxAsset:
        public = [
            p.get("id")
            for p in doc.get("playback_ids") or ()
            if isinstance(p, dict) and p.get("policy") == "public" and p.get("id")
        ]
        duration = doc.get("duration")
        created = doc.get("created_at")
        created_at = None
        try:
            if created is not None:
                created_at = dt.datetime.fromtimestamp(int(str(created)), dt.UTC)
        except ValueError:
            created_at = None
        return cls(
            id=str(doc.get("id") or ""),
            status=str(doc.get("status") or ""),
            duration_s=float(duration) if isinstance(duration, int | float) else None,
            playback_id=str(public[0]) if public else None,
            live_stream_id=doc.get("live_stream_id") or None,
            is_live=bool(doc.get("is_live")),
            created_at=created_at,
        )


def _error_message(response: httpx.Response) -> str:
    try:
        doc = response.json()
    except ValueError:
        return response.text[:200] or response.reason_phrase
    error = doc.get("error") if isinstance(doc, dict) else None
    if isinstance(error, dict):
        messages = error.get("messages") or []
        text = "; ".join(str(m) for m in messages) or str(error.get("type") or "")
        if text:
            return text
    return response.text[:200] or response.reason_phrase


class MuxAPI(PooledClient):
    """Read a live stream and its assets. Use as a context manager."""

    provider = PROVIDER

    def __init__(self, settings: Settings, policy: RetryPolicy | None = None) -> None:
        import httpx

        token_id = settings.require("mux_token_id", "MUX_TOKEN_ID")
        secret = settings.require("mux_token_secret", "MUX_TOKEN_SECRET")
        self.policy = policy or RetryPolicy.from_settings(settings)
        self._client = httpx.Client(
            base_url=settings.mux_api_base.rstrip("/"),
            auth=(token_id, secret),
            headers={"Accept": "application/json"},
            timeout=self.policy.timeout,
        )

    def _get(self, operation: str, path: str) -> dict[str, Any] | None:
        """The `data` object of a GET; None on 404 (the id does not exist)."""

        def once() -> dict[str, Any] | None:
            response = self._transport(operation, "GET", path)
            if response.status_code == 404:
                return None
            if response.status_code >= 300:
                raise ProviderError(
                    PROVIDER,
                    operation,
                    _error_message(response),
                    status=response.status_code,
                    retryable=retryable_status(response.status_code),
                    retry_after=parse_retry_after(response.headers.get("retry-after")),
                )
            try:
                doc = response.json()
            except ValueError:
                raise ProviderError(
                    PROVIDER, operation, "the answer is not JSON", status=response.status_code
                ) from None
            data = doc.get("data") if isinstance(doc, dict) else None
            if not isinstance(data, dict):
                raise ProviderError(
                    PROVIDER, operation, "the answer has no data object", status=502
                )
            return data

        return call(once, self.policy, provider=PROVIDER, operation=operation)

    def live_stream(self, stream_id: str) -> MuxLiveStream | None:
        doc = self._get("get live stream", f"/video/v1/live-streams/{quote(stream_id, safe='')}")
        return MuxLiveStream.from_api(doc) if doc is not None else None

    def asset(self, asset_id: str) -> MuxAsset | None:
        doc = self._get("get asset", f"/video/v1/assets/{quote(asset_id, safe='')}")
        return MuxAsset.from_api(doc) if doc is not None else None
