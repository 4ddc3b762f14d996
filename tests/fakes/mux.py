"""A loopback stand-in for Mux Video's live-stream and asset API (DESIGN §7), on the FakeAPI
server of tests/fakes/providers.py: the real httpx client of providers/mux.py talks to it.

Shapes from Mux's API reference — https://mux.com/docs/api-reference/video/live-streams (a live
stream: `status` idle|active|disabled, `active_asset_id`, `recent_asset_ids`,
`reconnect_window`, default 60) and https://mux.com/docs/api-reference ("Assets": `status`
preparing|ready|errored, `duration` in seconds, `playback_ids` [{id, policy}],
`live_stream_id`, `is_live`, `created_at` in Unix seconds as a string). Every answer is
`{"data": {...}}`; errors are `{"error": {"type", "messages"}}`. Basic auth with the token id
and secret is checked. Scripted replies (`fake.queue(...)`) come first, as in the other fakes.
"""

from __future__ import annotations

import base64
import datetime as dt
from typing import Any

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
