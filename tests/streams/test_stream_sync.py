"""`streams sync` against a loopback Mux (tests/fakes/mux.py) running the real httpx client:
the provider-state table, a service's whole life (live, recording, no signal within and past
the reconnect window, a reconnect, the recording ready), the missed-start alert raised once,
previews that change nothing, reruns that change nothing, and bad configuration."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from typing import Any

import pytest
from conftest import SUNDAY, World, z
from fakes.mux import MuxFake
from sqlalchemy import select

from faithflow_ops.config import Settings
from faithflow_ops.jobs import registry
from faithflow_ops.jobs.base import JobContext
from faithflow_ops.jobs.runner import RunResult, run_job
from faithflow_ops.models import Incident
from faithflow_ops.streams.sync import decide, recording_target

T = z(SUNDAY)  # 14:00Z


def at(minutes: float) -> dt.datetime:
    return T + dt.timedelta(minutes=minutes)


@pytest.fixture
def mux(monkeypatch: pytest.MonkeyPatch) -> Iterator[MuxFake]:
    with MuxFake().serve() as fake:
        for name, value in fake.settings_env().items():  # type: ignore[attr-defined]
            monkeypatch.setenv(name, value)
        monkeypatch.setenv("FAITHFLOW_PROVIDER_MAX_ATTEMPTS", "1")
        yield fake  # type: ignore[misc]


def run(world: World, now: dt.datetime, *, dry_run: bool = False) -> RunResult:
    spec = registry.get("streams_sync")
    ctx = JobContext(now=now, dry_run=dry_run, trigger="cli", settings=Settings.from_env())
    return run_job(world.db, spec, ctx)


def kinds(result: RunResult) -> list[str]:
    assert result.status == "succeeded", result.summary()
    return sorted(a.action.kind for a in result.actions)


def incidents(world: World) -> list[tuple[str, str, int]]:
    with world.db.read_session() as session:
        return [
            (i.cause, i.status, i.occurrences)
            for i in session.scalars(select(Incident).order_by(Incident.id))
        ]


# --- the rules as tables ------------------------------------------------------------------

W = 60
DECIDE = [
    # status, provider state, interrupted `s` seconds before now (None: not), → target
    ("scheduled", "active", None, "live"),
    ("scheduled", "connected", None, "live"),
    ("scheduled", "recording", None, "live"),
    ("scheduled", "idle", None, None),
    ("scheduled", "disconnected", None, None),
    ("scheduled", "disabled", None, None),
    ("live", "active", None, None),
    ("live", "connected", None, None),
    ("live", "disconnected", None, "interrupted"),
    ("live", "idle", None, "interrupted"),
    ("live", "disabled", None, "ended"),
    ("interrupted", "active", 10, "live"),
    ("interrupted", "connected", 10, "live"),
    ("interrupted", "disconnected", 59, None),  # within the reconnect window
    ("interrupted", "idle", 59, None),
    ("interrupted", "disconnected", 60, "ended"),  # the window has passed
    ("interrupted", "idle", 600, "ended"),
    ("interrupted", "disabled", 5, "ended"),
    ("ended", "active", None, None),
    ("failed", "active", None, None),
    ("canceled", "active", None, None),
]


@pytest.mark.parametrize(("status", "state", "ago", "target"), DECIDE)
def test_provider_state_table(status: str, state: str, ago: int | None, target: str | None) -> None:
    now = at(30)
    since = now - dt.timedelta(seconds=ago) if ago is not None else None
    decided = decide(status, state, interrupted_at=since, window_s=W, now=now)
    assert (decided[0] if decided else None) == target


def test_recording_table() -> None:
    assert recording_target("none", "preparing") == "processing"
    assert recording_target("none", "ready") == "ready"
    assert recording_target("processing", "ready") == "ready"
    assert recording_target("processing", "errored") == "failed"
    assert recording_target("processing", "preparing") is None
    assert recording_target("ready", "errored") is None
    assert recording_target("none", "deleted") is None


# --- through the job and the fake ---------------------------------------------------------


def test_a_service_from_start_to_recording(world: World, mux: MuxFake) -> None:
    mux.live_stream("mux-ls-1", "idle")
    assert kinds(run(world, at(-5))) == []

    mux.go_active("mux-ls-1", "asset-1", at(-1))
    preview = run(world, at(1), dry_run=True)
    assert kinds(preview) == ["recording_processing", "session_live"]
    assert world.get(world.sunday).status == "scheduled"  # the preview changed nothing

    assert kinds(run(world, at(1))) == ["recording_processing", "session_live"]
    assert kinds(run(world, at(1))) == []  # a rerun finds nothing to do
    live = world.get(world.sunday)
    assert (live.status, live.started_at, live.ingest_health) == ("live", at(1), "good")
    assert (live.recording_status, live.recording_asset_id) == ("processing", "asset-1")

    # The encoder drops: no signal → interrupted and an incident; within the window it waits.
    mux.live_stream("mux-ls-1", "idle")
    assert kinds(run(world, at(30))) == ["session_interrupted"]
    assert world.get(world.sunday).ingest_health == "no_signal"
    assert incidents(world) == [(f"stream:session:{world.sunday}:no_signal", "open", 1)]
    assert kinds(run(world, at(30.5))) == []  # 30 s into a 60 s reconnect window
    # It reconnects: live again, the incident resolved, the same asset still recording.
    mux.live_stream("mux-ls-1", "active")
    assert kinds(run(world, at(31))) == ["session_live"]
    assert incidents(world)[0][1] == "resolved"

    # The broadcast ends; after the window, ended; then the asset becomes ready.
    mux.go_idle("mux-ls-1")
    assert kinds(run(world, at(70))) == ["session_interrupted"]
    assert kinds(run(world, at(71))) == ["session_ended"]
    assert kinds(run(world, at(72))) == []  # Mux still preparing the asset
    mux.asset_ready("asset-1", 4210.25)
    assert kinds(run(world, at(80))) == ["recording_ready"]
    assert kinds(run(world, at(81))) == []

    done = world.get(world.sunday)
    assert (done.status, done.ended_at) == ("ended", at(71))
    assert done.playback_url == "https://stream.mux.com/pb-asset-1.m3u8"
    assert done.duration_ms == 4_210_250
    assert world.events(world.sunday) == [
        ("status", "scheduled", "live", "provider_sync"),
        ("recording", "none", "processing", "provider_sync"),
        ("status", "live", "interrupted", "provider_sync"),
        ("status", "interrupted", "live", "provider_sync"),
        ("status", "live", "interrupted", "provider_sync"),
        ("status", "interrupted", "ended", "provider_sync"),
        ("recording", "processing", "ready", "provider_sync"),
    ]
    assert [r.path for r in mux.requests if r.method != "GET"] == []  # read-only


def test_an_asset_ready_while_still_live_is_not_the_recording(world: World, mux: MuxFake) -> None:
    """Mux makes the live stream's asset `ready` with its first seconds about when the stream
    goes active (`is_live` true, the duration growing); the recording is ready once the
    broadcast is over (https://www.mux.com/docs/guides/stream-recordings-of-live-streams)."""
    mux.go_active("mux-ls-1", "asset-1", at(-1))
    mux.assets["asset-1"].update(status="ready", duration=10.01)  # still is_live
    assert kinds(run(world, at(1))) == ["recording_processing", "session_live"]
    assert kinds(run(world, at(2))) == []
    live = world.get(world.sunday)
    assert (live.recording_status, live.duration_ms, live.playback_url) == (
        "processing",
        None,
        None,
    )
    mux.go_idle("mux-ls-1")  # the window passed: not live any more, its final duration
    mux.asset_ready("asset-1", 4210.25)
    assert "recording_ready" in kinds(run(world, at(80)))
    assert world.get(world.sunday).duration_ms == 4_210_250


def test_a_missed_start_alerts_once(world: World, mux: MuxFake) -> None:
    mux.live_stream("mux-ls-1", "idle")
    assert kinds(run(world, at(9.9))) == []
    assert kinds(run(world, at(10), dry_run=True)) == ["missed_start"]
    assert incidents(world) == []
    assert kinds(run(world, at(10))) == ["missed_start"]
    assert kinds(run(world, at(20))) == []  # once
    cause = f"stream:session:{world.sunday}:missed_start"
    assert incidents(world) == [(cause, "open", 1)]
    # Late, but it starts: live, and the alert is resolved.
    mux.go_active("mux-ls-1", "asset-9", at(24))
    assert "session_live" in kinds(run(world, at(25)))
    assert incidents(world) == [(cause, "resolved", 1)]


def test_a_recording_found_among_recent_assets_after_the_end(world: World, mux: MuxFake) -> None:
    """A sync that missed the whole broadcast's recording phase takes the asset from
    `recent_asset_ids` (created around the session), not last week's."""
    mux.go_active("mux-ls-1", "old-asset", at(-7 * 24 * 60))
    mux.asset_ready("old-asset", 100.0)
    mux.go_idle("mux-ls-1")
    mux.go_active("mux-ls-1", "asset-2", at(-2))
    assert "session_live" in kinds(run(world, at(0)))
    mux.live_stream("mux-ls-1", "disabled")
    mux.go_idle("mux-ls-1")
    mux.live_streams["mux-ls-1"]["status"] = "disabled"
    assert kinds(run(world, at(60))) == ["session_ended"]
    mux.asset_ready("asset-2", 3600.0)
    assert kinds(run(world, at(65))) == ["recording_ready"]
    assert world.get(world.sunday).recording_asset_id == "asset-2"


def test_custom_channels_and_far_sessions_are_left_alone(world: World, mux: MuxFake) -> None:
    world.session_at(channel=world.custom)  # custom: nobody syncs it, no missed-start alert
    mux.go_active("mux-ls-1", "asset-1", at(-1))
    assert kinds(run(world, at(-120))) == []  # the session is 2 h away
    assert mux.requests == []


def test_missing_mux_settings_stop_the_run(
    world: World, monkeypatch: pytest.MonkeyPatch, cli: Any
) -> None:
    monkeypatch.delenv("MUX_TOKEN_ID", raising=False)
    monkeypatch.delenv("MUX_TOKEN_SECRET", raising=False)
    result = cli("streams", "sync", "--now", "2026-03-08T14:20:00Z", "--json")
    assert result.exit_code == 2
    assert "MUX_TOKEN_ID is not set" in result.stdout + result.stderr
    assert world.get(world.sunday).missed_start_alerted_at is None


def test_a_refused_token_fails_as_a_provider_error(
    world: World, mux: MuxFake, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MUX_TOKEN_SECRET", "wrong")
    result = run(world, at(20))
    assert (result.status, result.failure, result.exit_code) == ("failed", "provider", 2)
    assert "Mux refused get live stream (HTTP 401): Unauthorized request" in (result.error or "")


def test_the_cli_runs_it_with_now_and_json(world: World, mux: MuxFake, cli: Any) -> None:
    import json

    mux.go_active("mux-ls-1", "asset-1", at(-1))
    result = cli("streams", "sync", "--now", "2026-03-08T14:01:00Z", "--json")
    assert result.exit_code == 0, result.stderr
    doc = json.loads(result.stdout)
    assert doc["counts"] == {"recording_processing": 1, "session_live": 1}
    live = next(a for a in doc["actions"] if a["kind"] == "session_live")
    assert live["data"] == {"session_id": world.sunday, "expect": "scheduled", "to": "live",
                            "provider_state": "active", "ingest_health": "good"}  # fmt: skip
