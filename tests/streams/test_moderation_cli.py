"""Chat moderation through its doors: `streams chat import`, `streams moderation …` and the
`streams moderate` job from the CLI (`--now --json`, the preview alias), the task endpoint; bad
input exits 2 with one line and writes nothing."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest
from conftest import World
from helpers import job_document, running, said
from sqlalchemy import func, select

from faithflow_ops.config import Settings
from faithflow_ops.models import (
    StreamBan,
    StreamChannel,
    StreamChatMessage,
    StreamModerationAction,
    StreamSessionPolicy,
)

NOW = "2026-03-08T15:00:00Z"
CHAT = [
    {"id": "m1", "viewer_id": "UC-ann", "viewer_name": "Ann", "body": "Good morning!",
     "sent_at": "2026-03-08T14:00:00Z"},
    {"id": "m2", "viewer_id": "UC-bob", "viewer_name": "Bob", "body": "buy at spam.shop now",
     "sent_at": "2026-03-08T14:00:10Z"},
    {"id": "m3", "viewer_id": "UC-cat", "viewer_name": "Cat", "body": "what a DAMN mess",
     "sent_at": "2026-03-08T14:00:20Z"},
]  # fmt: skip


def call(cli: Any, *args: str) -> Any:
    result = cli(*args, "--json")
    assert result.exit_code == 0, result.stderr
    return json.loads(result.stdout)


def chat_file(tmp_path: Path) -> str:
    path = tmp_path / "chat.jsonl"
    path.write_text("".join(json.dumps(m) + "\n" for m in CHAT))
    return str(path)


def counts(world: World) -> tuple[int, ...]:
    with world.db.read_session() as session:
        return tuple(
            session.scalar(select(func.count()).select_from(m)) or 0
            for m in (StreamChatMessage, StreamModerationAction, StreamBan, StreamSessionPolicy)
        )


def test_the_whole_flow_from_the_cli(world: World, cli: Any, tmp_path: Path) -> None:
    ch, sid = str(world.channel), str(world.sunday)
    policy = call(cli, "streams", "moderation", "policy", "set", ch, "--block-term", "damn",
                  "--block-links", "--hold-first-time", "--slow-mode", "5")  # fmt: skip
    assert policy["channel"] == {"blocked_terms": ["damn"], "block_links": True,
                                 "slow_mode_s": 5, "hold_first_time": True}  # fmt: skip
    tightened = call(cli, "streams", "moderation", "policy", "set", ch, "--session", sid,
                     "--max-length", "100")  # fmt: skip
    assert tightened["effective"]["max_length"] == 100
    assert call(cli, "streams", "moderation", "policy", "show", ch)["effective"][
        "max_length"] is None  # fmt: skip
    assert cli("streams", "moderation", "policy", "show", ch, "--session", sid).exit_code == 0

    imported = call(cli, "streams", "chat", "import", sid, chat_file(tmp_path))
    assert (imported["added"], imported["duplicates"]) == (3, 0)

    preview = job_document(cli("streams", "preview-moderate", "--now", NOW, "--json"))
    assert preview["dry_run"] is True
    assert preview["counts"] == {"hold": 2, "hide": 1, "session_summary": 1}
    assert [(a["target"], a["data"].get("rule")) for a in preview["actions"]] == [
        ("chat_message:1", "first_time"),
        ("chat_message:2", "link"),
        ("chat_message:3", "blocked_term"),
        (f"stream_session:{world.sunday}", None),
    ]
    assert counts(world)[:2] == (3, 0)
    assert cli("streams", "preview-moderate", "--now", NOW).exit_code == 0  # the table form

    done = job_document(cli("streams", "moderate", "--now", NOW, "--json"))
    assert done["outcomes"] == {"applied": 3, "reported": 1}
    rerun = job_document(cli("streams", "moderate", "--now", NOW, "--json"))
    assert rerun["counts"] == {}

    queue = call(cli, "streams", "moderation", "queue", sid)
    assert [(m["viewer_name"], m["rule"]) for m in queue] == [("Ann", "first_time"),
                                                             ("Bob", "link")]  # fmt: skip
    assert cli("streams", "moderation", "queue", sid).exit_code == 0
    approved = call(cli, "streams", "moderation", "approve", str(queue[0]["id"]), "--now", NOW)
    assert approved["status"] == "approved"
    hidden = call(cli, "streams", "moderation", "hide", str(queue[1]["id"]), "--reason", "spam")
    assert hidden["status"] == "hidden"
    banned = call(cli, "streams", "moderation", "ban", "UC-bob", "--channel", ch, "--reason",
                  "spam links", "--now", NOW)  # fmt: skip
    assert (banned["scope"], banned["messages_hidden"]) == ("channel", 0)
    assert [b["viewer_id"] for b in call(cli, "streams", "moderation", "bans", ch)] == ["UC-bob"]
    history = call(cli, "streams", "moderation", "history", str(queue[1]["id"]))
    assert [(h["action"], h["rule"], h["source"]) for h in history] == [
        ("hold", "link", "job"), ("hide", "link", "operator")]  # fmt: skip
    lifted = call(cli, "streams", "moderation", "unban", "UC-bob", "--channel", ch)
    assert lifted["lifted_at"] is not None
    assert call(cli, "streams", "moderation", "queue", sid) == []


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("moderation", "policy", "set", "{ch}"), "nothing to change"),
        (("moderation", "policy", "set", "999", "--block-links"), "no channel with id 999"),
        (("moderation", "policy", "set", "{ch}", "--slow-mode", "-1"),
         "--slow-mode -1: give 0 (off) to 3600 seconds"),
        (("moderation", "policy", "set", "{ch}", "--slow-mode", "7200"),
         "slow_mode_s 7200 is out of range; give 0 to 3600"),
        (("moderation", "policy", "set", "{ch}", "--max-length", "-3"),
         "--max-length -3: give 0 (no limit) or more"),
        (("moderation", "policy", "set", "{ch}", "--unblock-term", "nope"),
         "'nope' is not in blocked_terms"),
        (("moderation", "policy", "set", "{ch}", "--session", "{sid}", "--allow-links"),
         "session {sid} may only tighten its channel's policy: the channel blocks links"),
        (("moderation", "policy", "set", "{custom}", "--session", "{sid}", "--block-links"),
         "session {sid} is on channel {ch}, not {custom}"),
        (("moderation", "policy", "set", "{ch}", "--file", "{bad_policy}"),
         "the policy file: unknown key 'slowmode'"),
        (("moderation", "queue", "{sid}", "--status", "lost"), "--status 'lost' is not one of"),
        (("moderation", "queue", "999"), "no stream session with id 999"),
        (("moderation", "approve", "999"), "no chat message with id 999"),
        (("moderation", "ban", "v1"), "give exactly one of --channel CHANNEL or --session SESSION"),
        (("moderation", "ban", "v1", "--channel", "{ch}", "--session", "{sid}"),
         "give exactly one of"),
        (("moderation", "ban", " ", "--channel", "{ch}"), "give the viewer's id"),
        (("moderation", "unban", "v1", "--session", "{sid}"), "is not banned from session"),
        (("chat", "import", "999", "{chat}"), "no stream session with id 999"),
        (("chat", "import", "{sid}", "{missing}"), "no file"),
        (("chat", "import", "{sid}", "{chat}", "--format", "xml"), "--format 'xml' is not one of"),
        (("chat", "import", "{sid}", "{bad_chat}"), "chat.csv line 3: sent_at 'yesterday' is not"),
    ],
)  # fmt: skip
def test_bad_input_exits_2_and_writes_nothing(
    world: World, cli: Any, tmp_path: Path, args: tuple[str, ...], message: str
) -> None:
    assert cli("streams", "moderation", "policy", "set", str(world.channel),
               "--block-links").exit_code == 0  # fmt: skip
    bad_policy = tmp_path / "policy.json"
    bad_policy.write_text('{"slowmode": 5}')
    bad_chat = tmp_path / "chat.csv"
    bad_chat.write_text(
        "viewer_id,body,sent_at\na,hi,2026-03-08T14:00:00Z\nb,yo,yesterday\n"
    )  # fmt: skip
    names = {
        "ch": world.channel, "sid": world.sunday, "custom": world.custom,
        "chat": chat_file(tmp_path), "missing": tmp_path / "none.jsonl",
        "bad_policy": bad_policy, "bad_chat": bad_chat,
    }  # fmt: skip
    before = counts(world)
    with world.db.read_session() as session:
        policy_before = session.get(StreamChannel, world.channel).moderation_policy  # type: ignore[union-attr]
    result = cli("streams", *(a.format(**names) for a in args))
    assert result.exit_code == 2, (result.stdout, result.stderr)
    assert message.format(**names) in said(result)
    assert "Traceback" not in result.stderr
    assert counts(world) == before
    with world.db.read_session() as session:
        assert session.get(StreamChannel, world.channel).moderation_policy == policy_before  # type: ignore[union-attr]


def test_the_task_endpoint_runs_the_same_job(world: World, db_url: str) -> None:
    from faithflow_ops.streams import moderation_records as records
    from receiver.app import create_app

    with world.db.session() as session:
        records.add_messages(session, world.sunday, CHAT)
    key = "k" * 32
    settings = Settings.from_env()
    settings = Settings(**{**settings.__dict__, "database_url": db_url, "integration_api_key": key})
    app = create_app(settings, db=world.db)
    with running(app) as url:
        path = url + "/tasks/streams/moderate"
        headers = {"X-API-Key": key}
        body: dict[str, Any] = {"dry_run": True, "now": NOW}
        preview = httpx.post(path, json=body, headers=headers, timeout=60)
        assert preview.status_code == 200, preview.text
        assert preview.json()["counts"] == {"allow": 3, "session_summary": 1}
        body["dry_run"] = False
        done = httpx.post(path, json=body, headers=headers, timeout=60)
        assert done.json()["outcomes"] == {"applied": 3, "reported": 1}
        assert httpx.post(path, json=body, headers=headers, timeout=60).json()["counts"] == {}
        assert httpx.post(path, json=body, timeout=60).status_code == 401
    with world.db.read_session() as session:
        assert set(session.scalars(select(StreamChatMessage.status))) == {"visible"}
