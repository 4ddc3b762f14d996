"""The operator commands: channels add/list, sessions schedule/list/show/cancel, through the
CLI with --json; bad input exits 2 with one line and writes nothing."""

from __future__ import annotations

import json
from typing import Any

from conftest import World
from helpers import said
from sqlalchemy import func, select

from faithflow_ops.db import Database
from faithflow_ops.models import StreamChannel, StreamEvent, StreamSession


def call(cli: Any, *args: str) -> Any:
    result = cli(*args, "--json")
    assert result.exit_code == 0, result.stderr
    return json.loads(result.stdout)


def count(db: Database, model: Any) -> int:
    with db.read_session() as session:
        return session.scalar(select(func.count()).select_from(model)) or 0


def test_channels_and_sessions_from_the_cli(db: Database, cli: Any) -> None:
    assert cli("tenants", "add", "hope", "--name", "Hope Parish").exit_code == 0
    channel = call(cli, "streams", "channels", "add", "Main", "--tenant", "hope",
                   "--stream-id", "ls-hope", "--reconnect-window", "120")  # fmt: skip
    assert (channel["tenant"], channel["provider"], channel["reconnect_window_s"]) == (
        "hope", "mux", 120)  # fmt: skip
    listed = call(cli, "streams", "channels", "list", "--tenant", "hope")
    assert [c["provider_stream_id"] for c in listed] == ["ls-hope"]

    made = call(cli, "streams", "sessions", "schedule", str(channel["id"]), "--title",
                "Sunday Mass", "--start", "2026-03-08T09:00:00+01:00",
                "--now", "2026-03-01T00:00:00Z")  # fmt: skip
    assert (made["status"], made["recording_status"], made["scheduled_start"]) == (
        "scheduled", "none", "2026-03-08T08:00:00+00:00")  # fmt: skip
    sid = str(made["id"])
    assert [s["id"] for s in call(cli, "streams", "sessions", "list", "--status", "scheduled")] == [
        made["id"]
    ]

    preview = cli("streams", "sessions", "cancel", sid, "--dry-run", "--json")
    assert preview.exit_code == 0, preview.stderr
    assert count(db, StreamEvent) == 0

    canceled = call(cli, "streams", "sessions", "cancel", sid, "--reason", "power cut",
                    "--now", "2026-03-07T00:00:00Z")  # fmt: skip
    assert canceled["status"] == "canceled"
    assert canceled["ended_at"] == "2026-03-07T00:00:00+00:00"
    [event] = call(cli, "streams", "sessions", "show", sid)["events"]
    assert (event["from"], event["to"], event["source"]) == ("scheduled", "canceled", "operator")
    assert event["reason"].endswith(": power cut")

    again = cli("streams", "sessions", "cancel", sid)
    assert again.exit_code == 2
    assert "cannot go from canceled to canceled" in said(again)
    assert count(db, StreamEvent) == 1
    assert cli("streams", "sessions", "show", sid).exit_code == 0  # the table form renders


def test_bad_input_is_refused_and_writes_nothing(world: World, cli: Any) -> None:
    channels, sessions = count(world.db, StreamChannel), count(world.db, StreamSession)
    cases = [
        (("channels", "add", "X", "--tenant", "nope", "--stream-id", "a"), "no tenant with slug"),
        (("channels", "add", "X", "--tenant", "grace"), "--provider mux needs --stream-id"),
        (("channels", "add", "X", "--tenant", "grace", "--provider", "youtube"),
         "--provider 'youtube' is not one of: mux, custom"),
        (("channels", "add", "Sunday services", "--tenant", "grace", "--stream-id", "b"),
         "already has a channel named"),
        (("channels", "add", "Y", "--tenant", "grace", "--stream-id", "mux-ls-1"),
         "mux live stream mux-ls-1 already belongs to a channel"),
        (("channels", "add", "Y", "--tenant", "grace", "--stream-id", "c",
          "--reconnect-window", "4000"), "give 0 to 1800 seconds"),
        (("sessions", "schedule", "999", "--title", "T", "--start", "2026-03-08T09:00:00Z"),
         "no channel with id 999"),
        (("sessions", "schedule", str(world.channel), "--title", " ", "--start",
          "2026-03-08T09:00:00Z", "--now", "2026-03-01T00:00:00Z"), "a session needs a title"),
        (("sessions", "schedule", str(world.channel), "--title", "T", "--start",
          "2026-03-08T09:00:00Z", "--now", "2026-03-09T00:00:00Z"), "is not in the future"),
        (("sessions", "schedule", str(world.channel), "--title", "T", "--start", "sunday"),
         "--start"),
        (("sessions", "list", "--status", "paused"), "--status 'paused' is not one of"),
        (("sessions", "show", "999"), "no stream session with id 999"),
        (("sessions", "cancel", "999"), "no stream session with id 999"),
    ]  # fmt: skip
    for args, message in cases:
        result = cli("streams", *args)
        assert result.exit_code == 2, (args, result.stdout, result.stderr)
        assert message in said(result), (args, said(result))
        assert "Traceback" not in result.stderr
    assert (count(world.db, StreamChannel), count(world.db, StreamSession)) == (channels, sessions)


def test_lists_say_when_empty(db: Database, cli: Any) -> None:
    assert call(cli, "streams", "channels", "list") == []
    result = cli("streams", "sessions", "list")
    assert (result.exit_code, said(result)) == (0, "no sessions")
