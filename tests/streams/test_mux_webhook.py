"""`POST /webhooks/mux` (issue 18): Mux's signed live-stream and asset events go into the same
webhook inbox as Stripe's and Paystack's, are acknowledged once stored, and the worker
(`webhooks apply`) makes the transitions `streams sync` makes, with source `webhook`.

The events are built by tests/fakes/mux.py in the shape Mux documents (the pages are cited
there): https://www.mux.com/docs/core/verify-webhook-signatures (signature),
https://www.mux.com/webhook-spec.json (envelope),
https://www.mux.com/docs/guides/handle-live-stream-disconnects (event order, reconnect window).

The world (tests/streams/conftest.py): Grace Chapel's Mux channel on live stream `mux-ls-1`
(reconnect window 60 s) and its Sunday Service, scheduled 8 March 2026 14:00Z.
"""

from __future__ import annotations

import datetime as dt
import json
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from conftest import World, z
from fakes.mux import WEBHOOK_SECRET, MuxFake, MuxWebhooks, body_of, mux_signature
from helpers import running, wait_applied
from sqlalchemy import func, select, text
from typer.testing import CliRunner

from faithflow_ops.cli import app
from faithflow_ops.config import Settings
from faithflow_ops.db import Database
from faithflow_ops.errors import ConfigError
from faithflow_ops.jobs import registry
from faithflow_ops.jobs.base import JobContext
from faithflow_ops.jobs.runner import run_job
from faithflow_ops.models import Incident, StreamEvent, WebhookEvent
from faithflow_ops.providers import SignatureError
from faithflow_ops.providers.mux import signature_header, verify_webhook
from faithflow_ops.streams import records, sync
from faithflow_ops.webhooks import applier, inbox, ingest
from receiver.app import create_app

CONNECTED = z("2026-03-08T13:58:00Z")
RECORDING = z("2026-03-08T13:58:10Z")
ACTIVE = z("2026-03-08T13:58:20Z")
DISCONNECTED = z("2026-03-08T15:30:00Z")
RECONNECTED = z("2026-03-08T15:30:30Z")
IDLE = z("2026-03-08T15:31:00Z")
READY = z("2026-03-08T15:33:00Z")
APPLY_AT = z("2026-03-08T16:00:00Z")  # the worker's clock (`--now`)
ASSET = "mux-asset-sunday"


@pytest.fixture
def mux() -> MuxWebhooks:
    return MuxWebhooks("mux-ls-1")


@pytest.fixture
def base(world: World, db_url: str) -> Iterator[str]:
    """The receiver with the Mux secret set and its own worker off: `webhooks apply` applies."""
    settings = Settings(
        database_url=db_url, mux_webhook_secrets=(WEBHOOK_SECRET,), webhook_worker=False
    )
    with running(create_app(settings, db=world.db)) as url:
        yield url


def post(url: str, doc: dict[str, Any] | bytes, *, header: str | None = None) -> httpx.Response:
    body = doc if isinstance(doc, bytes) else body_of(doc)
    signature = mux_signature(body) if header is None else header
    headers = {"mux-signature": signature} if signature else {}
    return httpx.post(url + "/webhooks/mux", content=body, headers=headers, timeout=30)


def deliver(db: Database, doc: dict[str, Any]) -> ingest.Stored:
    """What the receiver does with a verified delivery (parse, store once), without HTTP."""
    body = body_of(doc)
    parsed = ingest.read_body(body)
    event = inbox.parse_event("mux", "platform", parsed.payload)
    return ingest.SyncStore(db).store(ingest.delivery(event, body, parsed), body)


def work(db: Database) -> None:
    """The worker's pass (`webhooks apply`'s code) at APPLY_AT."""
    applier.apply_waiting(db, now=APPLY_AT)


def row_of(db: Database, doc: dict[str, Any]) -> WebhookEvent:
    with db.read_session() as session:
        row = session.scalar(select(WebhookEvent).where(WebhookEvent.event_key == doc["id"]))
        assert row is not None
        session.expunge(row)
        return row


def rows(db: Database) -> int:
    with db.read_session() as session:
        return session.scalar(select(func.count()).select_from(WebhookEvent)) or 0


def webhook_events(world: World, session_id: int) -> list[tuple[str, str, str, str]]:
    return [e for e in world.events(session_id) if e[3] == "webhook"]


# --- signature ----------------------------------------------------------------------------


def test_signature_is_mux_documented_scheme() -> None:
    body = b'{"type":"video.live_stream.active"}'
    header = signature_header(body, "s3cret", 1565220904)
    import hashlib
    import hmac

    mac = hmac.new(b"s3cret", b"1565220904." + body, hashlib.sha256).hexdigest()
    assert header == f"t=1565220904,v1={mac}"
    verify_webhook(body, header, ("old", "s3cret"), now=1565220904 + 300)  # rotation, at the edge
    verify_webhook(body, f"t=1565220904,v1={'0' * 64},v1={mac}", ("s3cret",), now=1565220904)


@pytest.mark.parametrize(
    ("header", "secrets", "now", "message"),
    [
        (None, ("s3cret",), 1565220904, "missing mux-signature header"),
        ("", ("s3cret",), 1565220904, "missing mux-signature header"),
        ("v1=abc", ("s3cret",), 1565220904, "has no timestamp"),
        ("t=soon,v1=abc", ("s3cret",), 1565220904, "has no timestamp"),
        ("t=1565220904", ("s3cret",), 1565220904, "has no v1 signature"),
        ("t=1565220904,v1=é", ("s3cret",), 1565220904, "not ASCII"),
        ("GOOD", ("other",), 1565220904, "does not verify"),
        ("GOOD", ("s3cret",), 1565220904 + 301, "older than the 300 s tolerance"),
    ],
)
def test_bad_signatures_are_refused_with_the_reason(
    header: str | None, secrets: tuple[str, ...], now: int, message: str
) -> None:
    body = b'{"type":"video.live_stream.active"}'
    if header == "GOOD":
        header = signature_header(body, "s3cret", 1565220904)
    with pytest.raises(SignatureError, match=message):
        verify_webhook(body, header, secrets, now=now)


# --- the route ----------------------------------------------------------------------------


def test_a_broadcast_is_stored_then_applied_by_webhooks_apply(
    world: World, base: str, mux: MuxWebhooks
) -> None:
    docs = [
        mux.live("connected", CONNECTED),
        mux.live("recording", RECORDING, asset_id=ASSET),
        mux.live("active", ACTIVE, asset_id=ASSET),
        mux.live("disconnected", DISCONNECTED, asset_id=ASSET),
        mux.live("idle", IDLE),
        mux.asset("ready", ASSET, READY, created=RECORDING, duration=5570.4),
    ]
    for doc in docs:
        answer = post(base, doc)
        assert answer.status_code == 200, answer.text
        assert answer.json()["status"] == "received" and answer.json()["duplicate"] is False
    # acknowledged once stored: nothing applied yet
    assert world.get(world.sunday).status == "scheduled"
    assert {row_of(world.db, d).status for d in docs} == {"received"}
    assert row_of(world.db, docs[0]).object_id == "mux-ls-1"
    assert row_of(world.db, docs[5]).object_id == "mux-ls-1"  # the asset's live stream

    run = CliRunner().invoke(app, ["webhooks", "apply", "--now", APPLY_AT.isoformat(), "--json"])
    assert run.exit_code == 0, run.output
    assert json.loads(run.stdout)["counts"] == {"apply_event": 6}
    statuses = [row_of(world.db, d).status for d in docs]
    assert statuses == ["applied", "applied", "applied", "applied", "applied", "applied"]

    sunday = world.get(world.sunday)
    assert (sunday.status, sunday.started_at, sunday.ended_at) == ("ended", CONNECTED, IDLE)
    assert (sunday.recording_status, sunday.recording_asset_id) == ("ready", ASSET)
    assert sunday.playback_url == f"https://stream.mux.com/pb-{ASSET}.m3u8"
    assert sunday.duration_ms == 5570400
    assert webhook_events(world, world.sunday) == [
        ("status", "scheduled", "live", "webhook"),
        ("recording", "none", "processing", "webhook"),
        ("status", "live", "interrupted", "webhook"),
        ("status", "interrupted", "ended", "webhook"),
        ("recording", "processing", "ready", "webhook"),
    ]
    with world.db.read_session() as session:
        times = session.execute(
            select(StreamEvent.to_state, StreamEvent.occurred_at)
            .where(StreamEvent.session_id == world.sunday)
            .order_by(StreamEvent.id)
        ).all()
        incident = session.scalar(
            select(Incident).where(Incident.cause == sync.no_signal_cause(world.sunday))
        )
    # Mux's time of each change, not the worker's
    assert [t for _, t in times] == [CONNECTED, RECORDING, DISCONNECTED, IDLE, READY]
    assert incident is not None and incident.resolved_at is not None  # raised, then cleared
    sunday_service = f"session {world.sunday} (Sunday Service)"
    assert [row_of(world.db, d).outcome for d in docs] == [
        f"{sunday_service}: scheduled → live (the stream is connected)",
        f"{sunday_service}'s recording: none → processing (Mux asset {ASSET}); "
        f"{sunday_service} stays live (recording)",
        f"{sunday_service} stays live (active); {sunday_service}'s recording is processing already",
        f"{sunday_service}: live → interrupted (no signal: the stream is disconnected)",
        f"{sunday_service}: interrupted → ended (the stream is idle: its reconnect window closed)",
        f"{sunday_service}'s recording: processing → ready (Mux asset {ASSET})",
    ]


def test_a_redelivery_is_acknowledged_and_stored_once(
    world: World, base: str, mux: MuxWebhooks
) -> None:
    doc = mux.live("active", ACTIVE, asset_id=ASSET)
    first, again = post(base, doc), post(base, doc)
    assert first.status_code == 200 and again.status_code == 200
    assert again.json()["duplicate"] is True and again.json()["status"] == "received"
    assert again.json()["delivery_count"] == 2
    work(world.db)
    late = post(base, doc)
    assert late.status_code == 200
    assert (late.json()["status"], late.json()["duplicate"]) == ("applied", True)
    work(world.db)
    assert rows(world.db) == 1 and row_of(world.db, doc).delivery_count == 3
    assert webhook_events(world, world.sunday) == [
        ("status", "scheduled", "live", "webhook"),
        ("recording", "none", "processing", "webhook"),
    ]


@pytest.mark.parametrize(
    ("case", "body", "header", "error"),
    [
        ("bad signature", None, "t=1,v1=" + "0" * 64, "does not verify"),
        ("missing header", None, "", "missing mux-signature header"),
        ("stale timestamp", None, "OLD", "older than the 300 s tolerance"),
        ("not JSON", b"{not json", None, "not JSON"),
        ("not an event", b'{"type": "video.live_stream.active"}', None, "not a Mux event"),
        (
            "id not text",
            b'{"id": "e1", "type": "video.asset.ready", '
            b'"created_at": "2026-03-08T15:33:00Z", "data": {"id": 7}}',
            None,
            "data.id is a int",
        ),
        (
            "no live stream id",
            b'{"id": "e2", "type": "video.live_stream.idle", '
            b'"created_at": "2026-03-08T15:31:00Z", "data": {"status": "idle"}}',
            None,
            "data.id is null, not a string id",
        ),
    ],
)
def test_refusals_are_400_and_store_nothing(
    world: World, base: str, mux: MuxWebhooks, case: str, body: bytes | None, header: str | None,
    error: str,
) -> None:  # fmt: skip
    raw = body if body is not None else body_of(mux.live("active", ACTIVE))
    if header == "OLD":
        header = mux_signature(raw, timestamp=1565220904)  # Mux's own example time, 2019
    answer = post(base, raw, header=header)
    assert answer.status_code == 400, case
    assert error in answer.json()["error"], answer.json()
    assert rows(world.db) == 0


def test_unset_secret_answers_503_naming_the_variable(
    world: World, db_url: str, mux: MuxWebhooks
) -> None:
    settings = Settings(database_url=db_url, webhook_worker=False)
    with running(create_app(settings, db=world.db)) as url:
        answer = post(url, mux.live("active", ACTIVE))
    assert answer.status_code == 503
    assert answer.json()["error"] == (
        "mux platform webhooks are disabled: MUX_WEBHOOK_SECRET is not set"
    )
    assert rows(world.db) == 0


def test_the_route_is_in_the_openapi_document_like_the_others(base: str) -> None:
    paths = httpx.get(base + "/docs/openapi.json", timeout=30).json()["paths"]
    operation = paths["/webhooks/mux"]["post"]
    assert [(p["name"], p["in"]) for p in operation["parameters"]] == [("mux-signature", "header")]
    body = operation["requestBody"]["content"]["application/json"]["schema"]
    assert set(body["required"]) == {"id", "type", "created_at", "data"}
    assert {"200", "400", "413", "503"} <= set(operation["responses"])
    assert "MUX_WEBHOOK_SECRET" in operation["description"]
    assert "`video.live_stream.idle`" in operation["description"]
    assert "`video.asset.ready`" in operation["description"]
    assert operation["tags"] == ["webhooks"]


# --- order --------------------------------------------------------------------------------


def test_active_after_idle_is_stale_and_does_not_reopen_the_service(
    world: World, mux: MuxWebhooks
) -> None:
    deliver(world.db, mux.live("connected", CONNECTED))
    work(world.db)
    idle, active = mux.live("idle", IDLE), mux.live("active", ACTIVE, asset_id=ASSET)
    deliver(world.db, idle)
    work(world.db)
    deliver(world.db, active)  # Mux's retry of an older event
    work(world.db)
    assert row_of(world.db, idle).status == "applied"
    late = row_of(world.db, active)
    assert late.status == "stale" and late.attempts == 0 and late.next_attempt_at is None
    assert "was ended at 2026-03-08 15:31:00Z, after this active event" in (late.outcome or "")
    sunday = world.get(world.sunday)
    assert (sunday.status, sunday.ended_at, sunday.recording_status) == ("ended", IDLE, "none")
    assert webhook_events(world, world.sunday) == [
        ("status", "scheduled", "live", "webhook"),
        ("status", "live", "ended", "webhook"),
    ]


def test_idle_before_any_live_event_waits_then_applies_in_mux_order(
    world: World, mux: MuxWebhooks
) -> None:
    disconnected, idle = mux.live("disconnected", DISCONNECTED), mux.live("idle", IDLE)
    for doc in (idle, disconnected):
        deliver(world.db, doc)
        work(world.db)
    assert {row_of(world.db, d).status for d in (idle, disconnected)} == {"unmatched"}
    assert "waits for the stream to go live" in (row_of(world.db, idle).outcome or "")
    assert world.get(world.sunday).status == "scheduled"
    active = mux.live("active", ACTIVE, asset_id=ASSET)
    deliver(world.db, active)
    work(world.db)
    # the waiting events are handled right after, oldest first: interrupted, then ended
    assert [row_of(world.db, d).status for d in (active, disconnected, idle)] == ["applied"] * 3
    assert [e[1:3] for e in webhook_events(world, world.sunday) if e[0] == "status"] == [
        ("scheduled", "live"),
        ("live", "interrupted"),
        ("interrupted", "ended"),
    ]
    assert world.get(world.sunday).ended_at == IDLE


def test_asset_ready_before_live_stream_recording(world: World, mux: MuxWebhooks) -> None:
    deliver(world.db, mux.live("connected", CONNECTED))
    work(world.db)
    ready = mux.asset("ready", ASSET, READY, created=RECORDING, duration=5570.4)
    recording = mux.live("recording", RECORDING, asset_id=ASSET)
    deliver(world.db, ready)
    work(world.db)
    deliver(world.db, recording)
    work(world.db)
    assert row_of(world.db, ready).status == "applied"
    late = row_of(world.db, recording)
    assert late.status == "stale"
    assert "recording is ready already" in (late.outcome or "")
    sunday = world.get(world.sunday)
    assert (sunday.status, sunday.recording_status, sunday.duration_ms) == (
        "live",
        "ready",
        5570400,
    )
    assert webhook_events(world, world.sunday) == [
        ("status", "scheduled", "live", "webhook"),
        ("recording", "none", "ready", "webhook"),
    ]


def test_the_asset_ready_while_live_is_not_the_recording(world: World, mux: MuxWebhooks) -> None:
    """Mux's order for a recording (https://www.mux.com/docs/guides/stream-recordings-of-live-
    streams): `video.asset.ready` comes about when the stream goes active, `is_live` and with
    some 10 s in it; `video.asset.live_stream_completed` comes with the idle, final. The first
    is `processing`, not a ten-second recording; a late retry of it changes nothing."""
    early = mux.asset("ready", ASSET, ACTIVE, created=CONNECTED, duration=10.01, live=True)
    for doc in (
        mux.live("connected", CONNECTED, asset_id=ASSET),
        mux.live("recording", RECORDING, asset_id=ASSET),
        mux.live("active", ACTIVE, asset_id=ASSET),
        early,
    ):
        deliver(world.db, doc)
        work(world.db)
    on_air = world.get(world.sunday)
    assert (on_air.status, on_air.recording_status, on_air.recording_asset_id) == (
        "live",
        "processing",
        ASSET,
    )
    assert (on_air.duration_ms, on_air.playback_url) == (None, None)
    assert row_of(world.db, early).status == "applied"
    assert row_of(world.db, early).outcome == (
        f"session {world.sunday} (Sunday Service)'s recording is processing already"
    )
    completed = mux.asset("live_stream_completed", ASSET, IDLE, created=CONNECTED, duration=5570.4)
    for doc in (mux.live("disconnected", DISCONNECTED, asset_id=ASSET),
                mux.live("idle", IDLE, asset_id=ASSET), completed):  # fmt: skip
        deliver(world.db, doc)
        work(world.db)
    retried = mux.asset("ready", ASSET, ACTIVE, created=CONNECTED, duration=10.01, live=True)
    deliver(world.db, retried)  # another delivery of a ready-while-live, after the end
    work(world.db)
    done = world.get(world.sunday)
    assert (done.status, done.recording_status, done.duration_ms) == ("ended", "ready", 5570400)
    assert done.playback_url == f"https://stream.mux.com/pb-{ASSET}.m3u8"
    assert row_of(world.db, completed).status == "applied"
    assert row_of(world.db, retried).status == "stale"
    assert [e[1:3] for e in webhook_events(world, world.sunday) if e[0] == "recording"] == [
        ("none", "processing"),
        ("processing", "ready"),
    ]


def test_a_reconnect_within_the_window_goes_back_to_live(world: World, mux: MuxWebhooks) -> None:
    for doc in (
        mux.live("active", ACTIVE, asset_id=ASSET),
        mux.live("disconnected", DISCONNECTED, asset_id=ASSET),
        mux.live("active", RECONNECTED, asset_id=ASSET),
    ):
        deliver(world.db, doc)
        work(world.db)
    sunday = world.get(world.sunday)
    assert (sunday.status, sunday.interrupted_at, sunday.ingest_health) == ("live", None, "good")
    assert [e[1:3] for e in webhook_events(world, world.sunday) if e[0] == "status"] == [
        ("scheduled", "live"),
        ("live", "interrupted"),
        ("interrupted", "live"),
    ]


def test_an_errored_recording_fails(world: World, mux: MuxWebhooks) -> None:
    for doc in (
        mux.live("recording", RECORDING, asset_id=ASSET),
        mux.live("idle", IDLE),
        mux.asset("errored", ASSET, READY, created=RECORDING),
    ):
        deliver(world.db, doc)
        work(world.db)
    sunday = world.get(world.sunday)
    assert (sunday.status, sunday.recording_status, sunday.playback_url) == (
        "ended",
        "failed",
        None,
    )


# --- what no session takes ----------------------------------------------------------------


def test_an_unknown_live_stream_is_ignored_with_the_reason(world: World) -> None:
    stranger = MuxWebhooks("mux-ls-nobody")
    docs = [
        stranger.live("active", ACTIVE),
        stranger.asset("ready", "mux-asset-x", READY, created=RECORDING, duration=10.0),
    ]
    for doc in docs:
        deliver(world.db, doc)
    work(world.db)
    for doc in docs:
        row = row_of(world.db, doc)
        assert (row.status, row.attempts, row.next_attempt_at) == ("ignored", 0, None)
        assert "no channel streams from Mux live stream mux-ls-nobody" in (row.outcome or "")
    assert world.get(world.sunday).status == "scheduled"
    # not retried: the worker has nothing left
    assert applier.apply_waiting(world.db, now=APPLY_AT + dt.timedelta(days=1)).claimed == 0


def test_an_uploaded_asset_and_an_event_far_from_any_session_are_ignored(
    world: World, mux: MuxWebhooks
) -> None:
    upload = mux.asset("ready", "mux-asset-upload", READY, created=RECORDING, live_stream_id=None)
    weekday = mux.live("active", z("2026-03-11T19:00:00Z"))
    for doc in (upload, weekday):
        deliver(world.db, doc)
    work(world.db)
    assert row_of(world.db, upload).status == "ignored"
    assert "is not the recording of a live stream" in (row_of(world.db, upload).outcome or "")
    row = row_of(world.db, weekday)
    assert row.status == "ignored"
    assert "no session of channel Sunday services is on air or scheduled near" in (
        row.outcome or ""
    )


def test_unhandled_mux_types_are_stored_as_ignored(world: World, mux: MuxWebhooks) -> None:
    doc = mux.event("video.asset.created", {"id": ASSET, "status": "preparing"}, RECORDING)
    deliver(world.db, doc)
    work(world.db)
    row = row_of(world.db, doc)
    assert row.status == "ignored"
    assert row.outcome == "video.asset.created is not handled on the platform endpoint"


def test_decide_ends_a_live_session_when_mux_says_the_window_closed() -> None:
    at = IDLE
    assert sync.decide("live", "idle", interrupted_at=None, window_s=60, now=at) == (
        "interrupted",
        "no signal: the stream is idle",
    )  # what `streams sync` reads from the API: not over until the window has passed
    assert sync.decide(
        "live", "idle", interrupted_at=None, window_s=60, now=at, window_closed=True
    ) == ("ended", "the stream is idle: its reconnect window closed")
    assert (
        sync.decide(
            "scheduled", "idle", interrupted_at=None, window_s=60, now=at, window_closed=True
        )
        is None
    )


# --- operator commands --------------------------------------------------------------------


def test_webhooks_sign_prints_the_header_mux_would_send(tmp_path: Any) -> None:
    event = tmp_path / "event.json"
    event.write_bytes(b'{"type": "video.live_stream.active"}')
    runner = CliRunner()
    signed = runner.invoke(
        app,
        ["webhooks", "sign", "--provider", "mux", "--secret", "s3cret", "--timestamp",
         "1565220904", str(event)],
    )  # fmt: skip
    assert signed.exit_code == 0, signed.output
    expected = signature_header(event.read_bytes(), "s3cret", 1565220904)
    assert signed.stdout == f"mux-signature: {expected}\n"
    assert "/webhooks/mux" in signed.stderr
    tenant = runner.invoke(
        app, ["webhooks", "sign", "--provider", "mux", "--secret", "s", "--scope", "tenant",
              str(event)],
    )  # fmt: skip
    assert tenant.exit_code == 2
    assert "Mux has one endpoint, /webhooks/mux (platform scope): drop --scope" in tenant.stderr


def test_webhooks_list_filters_mux_events(world: World, mux: MuxWebhooks) -> None:
    doc = mux.live("active", ACTIVE)
    deliver(world.db, doc)
    listed = CliRunner().invoke(app, ["webhooks", "list", "--provider", "mux", "--json"])
    assert listed.exit_code == 0, listed.output
    found = json.loads(listed.stdout)
    assert [(r["provider"], r["scope"], r["type"]) for r in found] == [
        ("mux", "platform", "video.live_stream.active")
    ]


def test_webhooks_show_and_replay_work_on_mux_events(world: World, mux: MuxWebhooks) -> None:
    """The operator's view of a Mux event that waits (`list`, `show`), a dry-run replay that
    changes nothing, and `replay --unmatched` applying it once the session is live by a path
    that does not re-handle (here a change made directly, as by an operator's repair)."""
    runner = CliRunner()
    idle = mux.live("idle", IDLE)
    deliver(world.db, idle)
    work(world.db)
    event_id = row_of(world.db, idle).id

    listed = runner.invoke(app, ["webhooks", "list", "--provider", "mux", "--status", "unmatched"])
    assert listed.exit_code == 0, listed.output
    assert "video.live_stream.idle" in listed.stdout and "unmatched" in listed.stdout
    unknown = runner.invoke(app, ["webhooks", "list", "--provider", "youtube"])
    assert unknown.exit_code == 2
    assert "mux" in unknown.stderr and "youtube" in unknown.stderr

    shown = runner.invoke(app, ["webhooks", "show", str(event_id), "--json"])
    assert shown.exit_code == 0, shown.output
    doc = json.loads(shown.stdout)
    assert (doc["provider"], doc["scope"], doc["type"], doc["status"]) == (
        "mux",
        "platform",
        "video.live_stream.idle",
        "unmatched",
    )
    assert doc["event_key"] == idle["id"] and doc["payload"] == idle
    assert "waits for the stream to go live" in doc["outcome"]
    table = runner.invoke(app, ["webhooks", "show", str(event_id)])
    assert table.exit_code == 0, table.output
    assert "video.live_stream.idle" in table.stdout and "mux-ls-1" in table.stdout

    preview = runner.invoke(app, ["webhooks", "replay", str(event_id), "--dry-run", "--json"])
    assert preview.exit_code == 0, preview.output
    [would] = json.loads(preview.stdout)
    assert (would["status_before"], would["status"]) == ("unmatched", "unmatched")
    assert would["detail"].startswith("would be unmatched: session ")
    assert row_of(world.db, idle).status == "unmatched"

    with world.db.session() as session:  # live since the active, by a path that re-handles none
        change = sync.StatusChange(world.sunday, "scheduled", "live", "active", "good")
        sync.apply_status(session, change, ACTIVE, source="operator", reason="repair")
    replayed = runner.invoke(app, ["webhooks", "replay", "--unmatched", "--json"])
    assert replayed.exit_code == 0, replayed.output
    [done] = json.loads(replayed.stdout)
    assert (done["id"], done["status_before"], done["status"]) == (event_id, "unmatched", "applied")
    assert world.get(world.sunday).status == "ended"
    again = runner.invoke(app, ["webhooks", "replay", str(event_id), "--json"])
    assert again.exit_code == 0, again.output
    assert json.loads(again.stdout)[0]["detail"] == "already applied; nothing to replay"
    assert [e[1:] for e in world.events(world.sunday)] == [
        ("scheduled", "live", "operator"),
        ("live", "ended", "webhook"),
    ]


# --- with the rest of the system ----------------------------------------------------------


def test_the_receivers_own_worker_applies_mux_events(
    world: World, db_url: str, mux: MuxWebhooks
) -> None:
    settings = Settings(database_url=db_url, mux_webhook_secrets=(WEBHOOK_SECRET,))
    doc = mux.live("connected", CONNECTED)
    with running(create_app(settings, db=world.db)) as url:
        assert post(url, doc).status_code == 200
        assert wait_applied(world.db, doc["id"]) == {doc["id"]: "applied"}
    assert (world.get(world.sunday).status, world.get(world.sunday).started_at) == (
        "live",
        CONNECTED,
    )


def test_streams_sync_finds_nothing_left_after_the_webhooks(
    world: World, mux: MuxWebhooks, monkeypatch: pytest.MonkeyPatch
) -> None:
    for doc in (
        mux.live("recording", RECORDING, asset_id=ASSET),
        mux.live("active", ACTIVE, asset_id=ASSET),
    ):
        deliver(world.db, doc)
    work(world.db)
    with MuxFake().serve() as fake:
        for name, value in fake.settings_env().items():  # type: ignore[attr-defined]
            monkeypatch.setenv(name, value)
        fake.go_active("mux-ls-1", ASSET, RECORDING)  # type: ignore[attr-defined]
        ctx = JobContext(
            now=ACTIVE + dt.timedelta(minutes=1),
            dry_run=True,
            trigger="cli",
            settings=Settings.from_env(),
        )
        result = run_job(world.db, registry.get("streams_sync"), ctx)
    assert result.status == "succeeded", result.summary()
    assert [a.action.kind for a in result.actions] == []  # live, recording processing already


@pytest.fixture
def mux_api(monkeypatch: pytest.MonkeyPatch) -> Iterator[MuxFake]:
    """The loopback Mux API `streams sync` reads (the settings point at it)."""
    with MuxFake().serve() as fake:
        for name, value in fake.settings_env().items():  # type: ignore[attr-defined]
            monkeypatch.setenv(name, value)
        monkeypatch.setenv("FAITHFLOW_PROVIDER_MAX_ATTEMPTS", "1")
        yield fake  # type: ignore[misc]


def sync_at(world: World, now: dt.datetime) -> list[str]:
    ctx = JobContext(now=now, dry_run=False, trigger="cli", settings=Settings.from_env())
    result = run_job(world.db, registry.get("streams_sync"), ctx)
    assert result.status == "succeeded", result.summary()
    return sorted(a.action.kind for a in result.actions)


def test_streams_sync_going_live_first_handles_the_waiting_events(
    world: World, mux: MuxWebhooks, mux_api: MuxFake
) -> None:
    """The webhook that makes the session live is late (Mux retries it); `streams sync` reads
    the stream active and makes it live first. The `idle` stored `unmatched` meanwhile is
    handled in the sync's transaction, without `webhooks replay`: the service ends. A
    `disconnected` created before the sync's clock is stale (sync says live after it)."""
    disconnected = mux.live("disconnected", z("2026-03-08T13:59:00Z"), asset_id=ASSET)
    idle = mux.live("idle", IDLE)
    for doc in (idle, disconnected):
        deliver(world.db, doc)
        work(world.db)
    assert {row_of(world.db, d).status for d in (idle, disconnected)} == {"unmatched"}

    mux_api.go_active("mux-ls-1", ASSET, RECORDING)  # type: ignore[attr-defined]
    sync_now = z("2026-03-08T14:00:00Z")
    assert sync_at(world, sync_now) == ["recording_processing", "session_live"]

    late, ended = row_of(world.db, disconnected), row_of(world.db, idle)
    assert (late.status, late.attempts, late.next_attempt_at) == ("stale", 0, None)
    sunday_service = f"session {world.sunday} (Sunday Service)"
    assert late.outcome == (
        f"{sunday_service} is live since 14:00:00Z, after this disconnected event of 13:59:00Z"
    )
    assert (ended.status, ended.applied_at) == ("applied", sync_now)
    assert ended.outcome == (
        f"{sunday_service}: live → ended (the stream is idle: its reconnect window closed)"
    )
    sunday = world.get(world.sunday)
    assert (sunday.status, sunday.started_at, sunday.ended_at) == ("ended", sync_now, IDLE)
    expected = [
        ("status", "scheduled", "live", "provider_sync"),
        ("status", "live", "ended", "webhook"),
        ("recording", "none", "processing", "provider_sync"),
    ]
    assert world.events(world.sunday) == expected

    # A rerun (and the worker) find nothing: the session is over, no event waits.
    assert sync_at(world, sync_now) == []
    assert sync_at(world, sync_now + dt.timedelta(minutes=5)) == []
    assert applier.apply_waiting(world.db, now=APPLY_AT).claimed == 0
    assert world.events(world.sunday) == expected
    assert [row_of(world.db, d).status for d in (disconnected, idle)] == ["stale", "applied"]


def test_a_waiting_event_handled_while_sync_goes_live_is_not_left_behind(
    world: World, mux: MuxWebhooks, mux_api: MuxFake
) -> None:
    """The race the lock closes: the worker is handling an `idle` (the session still
    scheduled: it will be `unmatched`) when `streams sync` makes the session live. Sync waits
    for the live stream's lock, so it sees the worker's `unmatched` row once committed and
    handles it; without the lock its look for waiting events ran before that commit. On
    SQLite the single writer serialises the two the same way (the worker commits first)."""
    idle = mux.live("idle", IDLE)
    deliver(world.db, idle)
    event_id = row_of(world.db, idle).id
    mux_api.go_active("mux-ls-1", ASSET, RECORDING)  # type: ignore[attr-defined]
    postgres = world.db.dialect == "postgresql"
    handled, release = threading.Event(), threading.Event()
    outcome: list[str] = []

    def worker() -> None:  # what applier.apply_one does: the lock, then the event
        with world.db.session() as session:
            applier.lock_object(session, "mux", "mux-ls-1")
            result = applier.apply_in(session, event_id, APPLY_AT)
            outcome.append(result.status if result else "gone")
            handled.set()
            if postgres:
                assert release.wait(60), "streams sync never queued on the live stream's lock"

    thread = threading.Thread(target=worker)
    thread.start()
    assert handled.wait(60)
    if postgres:
        sync_thread = threading.Thread(target=lambda: outcome.append(",".join(
            sync_at(world, z("2026-03-08T14:00:00Z")))))  # fmt: skip
        sync_thread.start()
        deadline = time.monotonic() + 60
        while not _waits_on_advisory_lock(world.db):
            assert time.monotonic() < deadline, "streams sync did not wait for the lock"
            time.sleep(0.02)
        release.set()
        thread.join(60)
        sync_thread.join(60)
    else:
        thread.join(60)
        outcome.append(",".join(sync_at(world, z("2026-03-08T14:00:00Z"))))
    assert outcome == ["unmatched", "recording_processing,session_live"]
    assert row_of(world.db, idle).status == "applied"
    assert world.get(world.sunday).status == "ended"


def _waits_on_advisory_lock(db: Database) -> bool:
    with db.read_session() as session:
        waiting = session.execute(
            text("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted")
        ).scalar_one()
    return bool(waiting)


def test_streams_sync_going_live_leaves_other_streams_events_waiting(
    world: World, mux_api: MuxFake
) -> None:
    """Only the live stream of the session that went live is re-handled; a sync that does not
    make a session live (a reconnect, here none at all) handles nothing."""
    with world.db.session() as session:
        other = records.add_channel(
            session, tenant="grace", name="Overflow", provider="mux", stream_id="mux-ls-2"
        ).id
        records.schedule_session(
            session, channel_id=other, title="Overflow room", start=z("2026-03-08T18:00:00Z"),
            now=z("2026-03-01T12:00:00Z"),
        )  # fmt: skip
    overflow_idle = MuxWebhooks("mux-ls-2").live("idle", z("2026-03-08T17:30:00Z"))
    deliver(world.db, overflow_idle)
    work(world.db)
    assert row_of(world.db, overflow_idle).status == "unmatched"
    mux_api.go_active("mux-ls-1", ASSET, RECORDING)  # type: ignore[attr-defined]
    mux_api.live_stream("mux-ls-2", "idle")  # type: ignore[attr-defined]
    assert sync_at(world, z("2026-03-08T14:00:00Z")) == ["recording_processing", "session_live"]
    assert row_of(world.db, overflow_idle).status == "unmatched"


def test_the_timestamp_tolerance_is_a_setting(world: World, db_url: str, mux: MuxWebhooks) -> None:
    """MUX_WEBHOOK_TOLERANCE (default 300 s, Mux's SDKs) is what the receiver checks; 0 turns
    the age check off (a signature still has to verify)."""
    assert Settings.from_env({}).mux_webhook_tolerance == 300
    assert Settings.from_env({"MUX_WEBHOOK_TOLERANCE": "0"}).mux_webhook_tolerance == 0
    assert Settings.from_env({"MUX_WEBHOOK_TOLERANCE": " 600 "}).mux_webhook_tolerance == 600
    doc = mux.live("active", ACTIVE)
    old = mux_signature(body_of(doc), timestamp=1565220904)  # Mux's own example time, 2019
    settings = Settings(
        database_url=db_url,
        mux_webhook_secrets=(WEBHOOK_SECRET,),
        mux_webhook_tolerance=0,
        webhook_worker=False,
    )
    with running(create_app(settings, db=world.db)) as url:
        assert post(url, doc, header=old).status_code == 200
        forged = post(url, mux.live("idle", IDLE), header="t=1565220904,v1=" + "0" * 64)
    assert forged.status_code == 400
    assert rows(world.db) == 1


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("-1", "MUX_WEBHOOK_TOLERANCE='-1' is below 0; set it to 0-3600, e.g. 300"),
        ("7200", "MUX_WEBHOOK_TOLERANCE='7200' is above 3600; set it to 0-3600, e.g. 300"),
        ("5m", "MUX_WEBHOOK_TOLERANCE='5m' is not a whole number; set it to e.g. 300"),
    ],
)
def test_a_bad_tolerance_is_refused_naming_the_fix(value: str, message: str) -> None:
    with pytest.raises(ConfigError) as refused:
        Settings.from_env({"MUX_WEBHOOK_TOLERANCE": value})
    assert str(refused.value) == message


def test_the_secret_is_a_list_so_it_can_rotate() -> None:
    env = {"MUX_WEBHOOK_SECRET": " old-secret , new-secret "}
    assert Settings.from_env(env).mux_webhook_secrets == ("old-secret", "new-secret")
    assert Settings.from_env({}).mux_webhook_secrets == ()
