"""A loopback stand-in for Mux Video's live-stream and asset API (DESIGN §7), on the FakeAPI
server of tests/fakes/providers.py: the real httpx client of providers/mux.py talks to it.

Shapes from Mux's API reference — https://mux.com/docs/api-reference/video/live-streams (a live
stream: `status` idle|active|disabled, `active_asset_id`, `recent_asset_ids`,
`reconnect_window`, default 60) and https://mux.com/docs/api-reference ("Assets": `status`
preparing|ready|errored, `duration` in seconds, `playback_ids` [{id, policy}],
`live_stream_id`, `is_live`, `created_at` in Unix seconds as a string). Every answer is
`{"data": {...}}`; errors are `{"error": {"type", "messages"}}`. Basic auth with the token id
and secret is checked. Scripted replies (`fake.queue(...)`) come first, as in the other fakes.

Webhooks (`MuxWebhooks`): signed deliveries as Mux sends them to `POST /webhooks/mux`.
- Signature, from https://www.mux.com/docs/core/verify-webhook-signatures: header
  `mux-signature: t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<raw body>" under the webhook's
  signing secret>`; `v1` is the only scheme; Mux's SDKs allow 5 minutes of clock tolerance.
- Envelope, from the webhook reference https://www.mux.com/webhook-spec.json: `type`, `id`
  (the event's UUID), `created_at` (ISO 8601), `object` {`type`, `id`}, `environment`
  {`name`, `id`}, `data` (the live stream or asset as the API returns it), `attempts`.
- Order of one broadcast, from https://www.mux.com/docs/guides/handle-live-stream-disconnects
  and https://www.mux.com/blog/is-it-recording-yet-new-live-stream-webhook-events:
  `video.live_stream.connected` → `.recording` → `.active` … `.disconnected` → (reconnect
  window) → `.idle`; the recording is an asset of the live stream (`data.live_stream_id`):
  `video.asset.ready` about when the stream goes active (`is_live` true, ~10 s of content),
  then `video.asset.live_stream_completed` with the idle (final `duration`), or
  `video.asset.errored` — https://www.mux.com/docs/guides/stream-recordings-of-live-streams.
"""

from __future__ import annotations

import base64
import datetime as dt
import itertools
import json
import uuid
from typing import Any

from faithflow_ops.providers.mux import signature_header
from fakes.providers import FakeAPI, Recorded, Reply

TOKEN_ID = "mux-token-id"
TOKEN_SECRET = "mux-token-secret"


def mux_error(status: int, type_: str, message: str) -> Reply:
    return Reply(status, {"error": {"type": type_, "messages": [message]}})


class MuxFake(FakeAPI):
    def __init__(self) -> None:
        super().__init__(MuxFake._answer)  # type: ignore[arg-type]
        self.live_streams: dict[str, dict[str, Any]] = {}
        self.assets: dict[str, dict[str, Any]] = {}

    def settings_env(self) -> dict[str, str]:
        return {
            "MUX_TOKEN_ID": TOKEN_ID,
            "MUX_TOKEN_SECRET": TOKEN_SECRET,
            "MUX_API_BASE": self.url,
        }

    def live_stream(
        self, stream_id: str, status: str = "idle", *, window: int = 60
    ) -> dict[str, Any]:
        doc = self.live_streams.setdefault(
            stream_id,
            {
                "id": stream_id,
                "created_at": "1767225600",
                "stream_key": "54676b58-6b19-5acb-f5bf-3aa35222efc6",
                "playback_ids": [{"id": f"pb-{stream_id}", "policy": "public"}],
                "reconnect_window": window,
                "recent_asset_ids": [],
                "new_asset_settings": {"playback_policies": ["public"]},
            },
        )
        doc["status"] = status
        return doc

    def go_active(self, stream_id: str, asset_id: str, created: dt.datetime) -> None:
        """The encoder connected: the stream is active, recording a new asset (preparing)."""
        stream = self.live_stream(stream_id, "active")
        stream["active_asset_id"] = asset_id
        stream["recent_asset_ids"] = [*stream["recent_asset_ids"], asset_id]
        self.assets[asset_id] = {
            "id": asset_id,
            "status": "preparing",
            "is_live": True,
            "live_stream_id": stream_id,
            "created_at": str(int(created.timestamp())),
            "playback_ids": [{"id": f"pb-{asset_id}", "policy": "public"}],
            "mp4_support": "none",
            "master_access": "none",
        }

    def go_idle(self, stream_id: str) -> None:
        """The broadcast finished (the reconnect window passed): idle, the asset not live."""
        stream = self.live_stream(stream_id, "idle")
        asset = self.assets.get(stream.pop("active_asset_id", "") or "")
        if asset is not None:
            asset["is_live"] = False

    def asset_ready(self, asset_id: str, duration: float) -> None:
        self.assets[asset_id].update(status="ready", duration=duration, is_live=False)

    def _answer(self, req: Recorded) -> Reply:
        expected = base64.b64encode(f"{TOKEN_ID}:{TOKEN_SECRET}".encode()).decode()
        if req.headers.get("authorization") != f"Basic {expected}":
            return mux_error(401, "unauthorized", "Unauthorized request")
        parts = req.path.strip("/").split("/")
        if req.method == "GET" and len(parts) == 4 and parts[:3] == ["video", "v1", "live-streams"]:
            doc = self.live_streams.get(parts[3])
            if doc is None:
                return mux_error(404, "not_found", "The requested resource was not found")
            return Reply(200, {"data": doc})
        if req.method == "GET" and len(parts) == 4 and parts[:3] == ["video", "v1", "assets"]:
            doc = self.assets.get(parts[3])
            if doc is None:
                return mux_error(404, "not_found", "The requested resource was not found")
            return Reply(200, {"data": doc})
        return mux_error(404, "not_found", "The requested resource was not found")


WEBHOOK_SECRET = "mux-webhook-signing-secret"
ENVIRONMENT = {"name": "Production", "id": "j0863n"}
# The live stream's `status` in each event's `data`: Mux keeps it `active` through the
# reconnect window after a disconnect, `idle` once the broadcast is over.
LIVE_STATUS = {
    "connected": "idle",
    "recording": "idle",  # "The live stream's status will still be idle at this point"
    "active": "active",
    "disconnected": "active",
    "idle": "idle",
    "disabled": "disabled",
}


def mux_signature(body: bytes, secret: str = WEBHOOK_SECRET, timestamp: int | None = None) -> str:
    """The `mux-signature` header value Mux sends with `body` (t = now unless given)."""
    return signature_header(body, secret, timestamp)


class MuxWebhooks:
    """Build Mux webhook events for one live stream, each with its own event id and time."""

    def __init__(self, stream_id: str = "mux-ls-1", *, window: int = 60) -> None:
        self.stream_id = stream_id
        self.window = window
        self._ids = itertools.count(1)

    def event(self, type_: str, data: dict[str, Any], at: dt.datetime) -> dict[str, Any]:
        kind = "live" if type_.startswith("video.live_stream.") else "asset"
        return {
            "type": type_,
            "object": {"type": kind, "id": data.get("id")},
            "id": str(uuid.UUID(int=next(self._ids))),
            "environment": ENVIRONMENT,
            "data": data,
            "created_at": at.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
            "accessor_source": None,
            "accessor": None,
            "request_id": None,
            "attempts": [],
        }

    def live(self, state: str, at: dt.datetime, *, asset_id: str | None = None) -> dict[str, Any]:
        """`video.live_stream.<state>`: the live stream object with the status it has then."""
        status = LIVE_STATUS[state]
        data: dict[str, Any] = {
            "id": self.stream_id,
            "status": status,
            "stream_key": "54676b58-6b19-5acb-f5bf-3aa35222efc6",
            "playback_ids": [{"id": f"pb-{self.stream_id}", "policy": "public"}],
            "reconnect_window": self.window,
            "created_at": "1767225600",
            "recent_asset_ids": [asset_id] if asset_id else [],
        }
        # `connected` names the new active asset; `idle` names the one just ending ("for ease
        # of use"): https://www.mux.com/docs/guides/stream-recordings-of-live-streams
        if asset_id and state in ("connected", "recording", "active", "disconnected", "idle"):
            data["active_asset_id"] = asset_id
        return self.event(f"video.live_stream.{state}", data, at)

    def asset(
        self,
        state: str,
        asset_id: str,
        at: dt.datetime,
        *,
        created: dt.datetime,
        duration: float | None = None,
        live_stream_id: str | None = "",
        live: bool = False,
    ) -> dict[str, Any]:
        """`video.asset.<state>` (ready | errored | live_stream_completed) for the recording.
        `live`: the broadcast is still on (`is_live`): Mux sends `ready` with the first seconds
        about when the stream goes active, `live_stream_completed` when it is over."""
        status = {"ready": "ready", "errored": "errored", "live_stream_completed": "ready"}[state]
        data: dict[str, Any] = {
            "id": asset_id,
            "status": status,
            "created_at": int(created.timestamp()),
            "is_live": live,
            "playback_ids": [{"id": f"pb-{asset_id}", "policy": "public"}],
            "mp4_support": "none",
            "master_access": "none",
        }
        stream = self.stream_id if live_stream_id == "" else live_stream_id
        if stream is not None:
            data["live_stream_id"] = stream
        if duration is not None:
            data["duration"] = duration
        if status == "errored":
            data["errors"] = {"type": "invalid_input", "messages": ["The input stream ended."]}
        return self.event(f"video.asset.{state}", data, at)


def body_of(doc: dict[str, Any]) -> bytes:
    return json.dumps(doc).encode()
