"""`streams moderate` on both databases: a session's chat under a policy, decisions that count
for later messages in the same run, first-time hold then approve, bans at both scopes, an
idempotent rerun, a preview that changes nothing, a stale apply, and chat import."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import pytest
from conftest import BEFORE, SUNDAY, World, z
from sqlalchemy import func, select, update

from faithflow_ops.actions import StaleAction, decode, encode
from faithflow_ops.config import Settings
from faithflow_ops.errors import UserError
from faithflow_ops.jobs import registry
from faithflow_ops.jobs.base import JobContext
from faithflow_ops.jobs.runner import RunResult, run_job
from faithflow_ops.models import StreamBan, StreamChatMessage, StreamModerationAction
from faithflow_ops.streams import moderation, moderation_chat
from faithflow_ops.streams import moderation_policy as policies
from faithflow_ops.streams import moderation_records as records

T = z(SUNDAY)
NOW = T + dt.timedelta(hours=1)


def at(seconds: float) -> str:
    return (T + dt.timedelta(seconds=seconds)).isoformat()


def run(world: World, *, dry_run: bool = False, now: dt.datetime = NOW) -> RunResult:
    spec = registry.get("streams_moderate")
    ctx = JobContext(now=now, dry_run=dry_run, trigger="cli", settings=Settings.from_env())
    result = run_job(world.db, spec, ctx)
    assert result.status == "succeeded", result.summary()
    return result


def add(world: World, *messages: tuple[str, str, float], session_id: int | None = None) -> None:
    """(viewer, body, seconds after 14:00) each."""
    with world.db.session() as session:
        records.add_messages(
            session,
            session_id or world.sunday,
            [
                {"viewer_id": v, "viewer_name": v.title(), "body": b, "sent_at": at(s)}
                for v, b, s in messages
            ],
        )


def set_policy(world: World, session_id: int | None = None, **change: Any) -> None:
    with world.db.session() as session:
        records.set_policy(
            session, world.channel, policies.Change(**change), by="test", session_id=session_id
        )


def statuses(world: World) -> list[tuple[str, str, str | None]]:
    with world.db.read_session() as session:
        return [
            (m.body, m.status, m.rule)
            for m in session.scalars(
                select(StreamChatMessage).order_by(StreamChatMessage.sent_at, StreamChatMessage.id)
            )
        ]


def recorded(world: World) -> list[tuple[str, str | None, str, str]]:
    with world.db.read_session() as session:
        return [
            (a.action, a.rule, a.source, a.viewer_id or "")
            for a in session.scalars(
                select(StreamModerationAction).order_by(StreamModerationAction.id)
            )
        ]


def message_id(world: World, body: str) -> int:
    with world.db.read_session() as session:
        found = session.scalar(select(StreamChatMessage.id).where(StreamChatMessage.body == body))
        assert found is not None
        return found


def test_a_service_chat_under_a_strict_policy(world: World) -> None:
    set_policy(world, block_terms=("damn",), block_links=True, max_length=80, slow_mode_s=10,
               flag_terms=("pray for me",))  # fmt: skip
    add(
        world,
        ("ann", "Good morning church!", 0),
        ("ann", "So glad to be here", 4),  # 4 s after her last: slow mode
        ("ann", "Amen", 12),  # 12 s after her last shown one: fine
        ("bob", "this is damn boring", 20),
        ("cat", "free gifts at bit.ly/x", 30),
        ("dan", "x" * 81, 40),
        ("eve", "please pray for me", 50),
    )
    preview = run(world, dry_run=True)
    assert [(a.action.kind, a.action.data.get("rule")) for a in preview.actions] == [
        ("allow", None),
        ("hide", "slow_mode"),
        ("allow", None),
        ("hide", "blocked_term"),
        ("hold", "link"),
        ("hide", "max_length"),
        ("flag", "flagged_term"),
        ("session_summary", None),
    ]
    summary = preview.actions[-1].action
    assert summary.data == {
        "session_id": world.sunday,
        "counts": {"allow": 2, "flag": 1, "hide": 3, "hold": 1},
    }
    assert "7 messages: 2 allow, 1 flag, 3 hide, 1 hold" in summary.reason
    for result in preview.actions[:-1]:  # each payload is a Moderate, as encode() writes it
        assert encode(decode(moderation.Moderate, result.action.data)) == result.action.data
    assert {s for _, s, _ in statuses(world)} == {"pending"}  # the preview changed nothing
    assert recorded(world) == []

    done = run(world)
    assert done.outcomes == {"applied": 7, "reported": 1}
    assert statuses(world) == [
        ("Good morning church!", "visible", None),
        ("So glad to be here", "hidden", "slow_mode"),
        ("Amen", "visible", None),
        ("this is damn boring", "hidden", "blocked_term"),
        ("free gifts at bit.ly/x", "held", "link"),
        ("x" * 81, "hidden", "max_length"),
        ("please pray for me", "flagged", "flagged_term"),
    ]
    assert recorded(world) == [
        ("hide", "slow_mode", "job", "ann"),
        ("hide", "blocked_term", "job", "bob"),
        ("hold", "link", "job", "cat"),
        ("hide", "max_length", "job", "dan"),
        ("flag", "flagged_term", "job", "eve"),
    ]
    again = run(world)  # idempotent: nothing left to look at
    assert again.actions == [] and len(recorded(world)) == 5


def test_slow_mode_counts_earlier_runs_and_not_hidden_messages(world: World) -> None:
    set_policy(world, slow_mode_s=10)
    add(world, ("ann", "one", 0))
    run(world)
    add(world, ("ann", "two", 5), ("ann", "three", 8), ("ann", "four", 10))
    run(world)
    # `two` is 5 s after `one` (hidden); `three` is 8 s after `one` (hidden: a hidden message
    # does not restart the interval); `four` is 10 s after `one`
    assert [(b, s) for b, s, _ in statuses(world)] == [
        ("one", "visible"), ("two", "hidden"), ("three", "hidden"), ("four", "visible"),
    ]  # fmt: skip


def test_a_first_time_chatter_is_held_until_approved(world: World) -> None:
    set_policy(world, hold_first_time=True)
    add(world, ("ann", "Hello from Lagos", 0), ("ann", "Blessings", 60))
    run(world)
    assert [(b, s, r) for b, s, r in statuses(world)] == [
        ("Hello from Lagos", "held", "first_time"), ("Blessings", "held", "first_time"),
    ]  # fmt: skip
    with world.db.read_session() as session:
        queued, total = records.queue(session, world.sunday)
    assert ([q["body"] for q in queued], total) == (["Hello from Lagos", "Blessings"], 2)

    first = message_id(world, "Hello from Lagos")
    with world.db.session() as session:
        doc = records.approve(session, first, by="cli:ops", now=NOW, reason="known member")
    assert (doc["status"], doc["rule"]) == ("approved", "operator")
    assert recorded(world)[-1] == ("approve", "first_time", "operator", "ann")
    with pytest.raises(UserError, match="already approved"), world.db.session() as session:
        records.approve(session, first, by="cli:ops", now=NOW)

    # known now: her next message, and one in another session of the channel, pass
    other = world.session_at("live")
    add(world, ("ann", "Back again", 120))
    add(world, ("ann", "Evening service!", 130), session_id=other)
    add(world, ("bob", "First time here", 140), session_id=other)
    run(world)
    got = {b: (s, r) for b, s, r in statuses(world)}
    assert got["Back again"] == ("visible", None)
    assert got["Evening service!"] == ("visible", None)
    assert got["First time here"] == ("held", "first_time")
    with world.db.read_session() as session:
        history = records.actions_of(session, first)
    assert [(h["action"], h["source"]) for h in history] == [
        ("hold", "job"), ("approve", "operator")]  # fmt: skip


def test_a_ban_that_lands_while_another_is_made_is_refused_in_words(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two operators ban one viewer at once: both see no standing ban, the second insert
    meets the first in the unique index. It is refused like any duplicate ban (exit 2),
    not a database error, and the first ban stands alone."""
    for scope in ({"channel_id": world.channel}, {"session_id": world.sunday}):
        with world.db.session() as session:
            records.ban(session, "troll", by="cli:ops", now=NOW, **scope)
        monkeypatch.setattr(records, "_standing", lambda *args: None)  # checked before it landed
        with (
            pytest.raises(UserError, match="viewer 'troll' is already banned from") as refused,
            world.db.session() as session,
        ):
            records.ban(session, "troll", by="cli:other", now=NOW, **scope)
        assert refused.value.exit_code == 2
        monkeypatch.undo()
    with world.db.read_session() as session:
        bans = session.scalars(select(StreamBan).order_by(StreamBan.id)).all()
        assert [(b.banned_by, b.session_id is None) for b in bans] == [
            ("cli:ops", True),
            ("cli:ops", False),
        ]


def test_bans_at_both_scopes(world: World) -> None:
    other = world.session_at("live")
    add(world, ("troll", "first visit", 0))
    add(world, ("troll", "in the other session", 5), session_id=other)
    run(world)
    with world.db.session() as session:
        doc = records.ban(session, "troll", session_id=world.sunday, reason="spam", by="cli:ops",
                          now=NOW)  # fmt: skip
    assert (doc["scope"], doc["messages_hidden"]) == ("session", 1)
    add(world, ("troll", "again here", 100))
    add(world, ("troll", "and there", 105), session_id=other)
    run(world)
    got = {b: (s, r) for b, s, r in statuses(world)}
    assert got["first visit"] == ("hidden", "ban")  # hidden by the ban itself
    assert got["again here"] == ("hidden", "ban")
    assert got["in the other session"] == ("visible", None)
    assert got["and there"] == ("visible", None)  # a session ban stays in its session

    with world.db.session() as session:
        wide = records.ban(session, "troll", channel_id=world.channel, by="cli:ops", now=NOW)
    assert (wide["scope"], wide["messages_hidden"]) == ("channel", 2)
    with pytest.raises(UserError, match="already banned from channel"), world.db.session() as s:
        records.ban(s, "troll", channel_id=world.channel, by="cli:ops", now=NOW)
    add(world, ("troll", "still here?", 200), session_id=other)
    run(world)
    assert {b: s for b, s, _ in statuses(world)}["still here?"] == "hidden"

    with world.db.session() as session:
        records.unban(session, "troll", channel_id=world.channel, by="cli:ops", now=NOW)
        records.unban(session, "troll", session_id=world.sunday, by="cli:ops", now=NOW)
    with pytest.raises(UserError, match="is not banned from session"), world.db.session() as s:
        records.unban(s, "troll", session_id=world.sunday, by="cli:ops", now=NOW)
    add(world, ("troll", "sorry", 300))
    run(world)
    assert {b: s for b, s, _ in statuses(world)}["sorry"] == "visible"
    with world.db.read_session() as session:
        bans, total = records.list_bans(session, channel_id=world.channel, include_lifted=True)
        standing = session.scalar(
            select(func.count()).select_from(StreamBan).where(StreamBan.lifted_at.is_(None))
        )
    assert (total, standing) == (2, 0)
    assert [b["scope"] for b in bans] == ["channel", "session"]  # newest first (same time: id)
    kinds = [a for a, _, src, _ in recorded(world) if src == "operator"]
    assert kinds == ["ban", "hide", "ban", "hide", "hide", "unban", "unban"]


def test_a_session_policy_tightens_and_may_not_loosen(world: World) -> None:
    set_policy(world, block_links=True, slow_mode_s=10)
    set_policy(world, session_id=world.sunday, block_terms=("boring",), max_length=20)
    with world.db.read_session() as session:
        shown = records.show_policy(session, world.channel, world.sunday)
    assert shown["session"] == {"blocked_terms": ["boring"], "max_length": 20}
    assert shown["effective"]["blocked_terms"] == ["boring"]
    assert (shown["effective"]["block_links"], shown["effective"]["slow_mode_s"]) == (True, 10)
    loosen: list[tuple[dict[str, Any], str]] = [
        ({"block_links": False}, "the channel blocks links"),
        ({"slow_mode_s": 5}, "--slow-mode 5 is under the channel's 10 s"),
    ]
    for change, message in loosen:
        with pytest.raises(policies.PolicyError, match=message):
            set_policy(world, session_id=world.sunday, **change)
    set_policy(world, block_terms=("damn",))
    with pytest.raises(policies.PolicyError, match="the channel blocks 'damn'"):
        set_policy(world, session_id=world.sunday, unblock_terms=("damn",))

    other = world.session_at("live")  # the channel's policy only
    add(world, ("ann", "so boring", 0), ("ann", "a" * 25, 20))
    add(world, ("ann", "so boring", 0), ("ann", "a" * 25, 20), session_id=other)
    run(world)
    with world.db.read_session() as session:
        got = session.execute(
            select(StreamChatMessage.session_id, StreamChatMessage.status).order_by(
                StreamChatMessage.session_id, StreamChatMessage.sent_at
            )
        ).all()
    assert [tuple(g) for g in got] == [
        (world.sunday, "hidden"), (world.sunday, "hidden"),
        (other, "visible"), (other, "visible"),
    ]  # fmt: skip


def test_apply_is_stale_once_an_operator_got_there(world: World) -> None:
    add(world, ("ann", "hello", 0))
    preview = run(world, dry_run=True)
    action = preview.actions[0].action
    with world.db.session() as session:
        records.hide(session, message_id(world, "hello"), by="cli:ops", now=NOW)
    with pytest.raises(StaleAction), world.db.session() as session:
        moderation.apply(session, action, NOW)
    assert statuses(world) == [("hello", "hidden", "operator")]


def test_an_invalid_stored_policy_leaves_its_messages_waiting(world: World) -> None:
    from faithflow_ops.models import StreamChannel

    add(world, ("ann", "hello", 0))
    with world.db.session() as session:
        session.execute(
            update(StreamChannel)
            .where(StreamChannel.id == world.channel)
            .values(moderation_policy={"slow_mode": 5})
        )
    result = run(world)
    [only] = result.actions
    assert (only.action.kind, only.outcome) == ("policy_invalid", "reported")
    assert "unknown key 'slow_mode'" in only.action.reason
    assert statuses(world) == [("hello", "pending", None)]
    with pytest.raises(UserError, match="replace it with `policy set CHANNEL --file`"):
        set_policy(world, block_links=True)
    with world.db.session() as session:  # the operator mends it with a whole policy
        records.set_policy(
            session, world.channel, policies.Change(), by="t", replace={"slow_mode_s": 5}
        )
    assert run(world).outcomes == {"applied": 1, "reported": 1}
    assert statuses(world) == [("hello", "visible", None)]


def test_chat_import_from_json_lines_and_csv(world: World, tmp_path: Path) -> None:
    lines = [
        {"id": "yt-1", "viewer_id": "UC1", "viewer_name": "Ann", "body": "Amen", "sent_at": at(0)},
        {"viewer_id": "UC2", "body": "Hello, all", "sent_at": "2026-03-08T15:00:05+01:00"},
    ]
    jsonl = tmp_path / "chat.jsonl"
    jsonl.write_text("\n".join(json.dumps(x) for x in lines) + "\n\n")
    with world.db.session() as session:
        first = moderation_chat.import_file(session, world.sunday, jsonl)
    assert (first.read, first.added, first.duplicates) == (2, 2, 0)
    with world.db.session() as session:
        again = moderation_chat.import_file(session, world.sunday, jsonl)
    assert (again.added, again.duplicates) == (0, 2)  # a re-import adds nothing

    csv_file = tmp_path / "chat.csv"
    csv_file.write_text(
        "id,viewer_id,viewer_name,body,sent_at\nyt-1,UC1,Ann,Amen,2026-03-08T14:00:00Z\n"
        'yt-3,UC3,Bob,"Hi, ""friends""\nfrom Accra",2026-03-08T14:00:09Z\n'
    )
    with world.db.session() as session:
        third = moderation_chat.import_file(session, world.sunday, csv_file)
    assert (third.added, third.duplicates) == (1, 1)
    with world.db.read_session() as session:
        rows = session.execute(
            select(
                StreamChatMessage.viewer_name, StreamChatMessage.body, StreamChatMessage.sent_at
            ).order_by(StreamChatMessage.sent_at)
        ).all()
    assert [tuple(r) for r in rows] == [
        ("Ann", "Amen", T),
        ("UC2", "Hello, all", T + dt.timedelta(seconds=5)),
        ("Bob", 'Hi, "friends"\nfrom Accra', T + dt.timedelta(seconds=9)),
    ]


@pytest.mark.parametrize(
    ("name", "text", "message"),
    [
        ("a.jsonl", '{"viewer_id": "a", "body": "x", "sent_at": "2026-03-08T14:00:00Z"}\n{oops\n',
         "a.jsonl line 2: not JSON"),
        ("a.jsonl", '{"viewer_id": "a", "body": "x"}\n', "a.jsonl line 1: sent_at is missing"),
        ("a.jsonl", '{"viewer_id": "a", "body": "x", "sent_at": "Sunday"}\n',
         "a.jsonl line 1: sent_at 'Sunday' is not an ISO-8601 time"),
        ("a.jsonl", '{"viewer_id": "a", "body": "x", "sent_at": "2026-03-08T14:00:00"}\n',
         "a.jsonl line 1: sent_at '2026-03-08T14:00:00' has no offset; add Z or one like +01:00"),
        ("a.jsonl", '{"viewer_id": "a", "body": "x", "sent_at": "2026-03-08"}\n',
         "a.jsonl line 1: sent_at '2026-03-08' has no offset"),
        ("a.jsonl", '{"viewer_id": "a", "body": "", "sent_at": "2026-03-08T14:00:00Z"}\n',
         "a.jsonl line 1: body is missing"),
        ("a.jsonl", '{"viewer": "a", "body": "x", "sent_at": "2026-03-08T14:00:00Z"}\n',
         "a.jsonl line 1: unknown field 'viewer'"),
        ("a.jsonl", '[1]\n\n[2]\n',
         "a.jsonl line 1: a message must be an object with id, viewer_id, viewer_name, body, "
         "sent_at (1 more bad lines); nothing was imported"),
        ("a.csv", "viewer_id,body,sent_at\na,x,2026-03-08T14:00:00Z\n,y,2026-03-08T14:00:01Z\n",
         "a.csv line 3: viewer_id is missing"),
        ("a.csv", "viewer,body,sent_at\n", "a.csv line 1: unknown column 'viewer'"),
        ("a.csv", "viewer_id,body,sent_at\n", "a.csv holds no messages"),
        ("a.txt", "", "a.txt: cannot tell the format from its name; give --format jsonl|csv"),
    ],
)  # fmt: skip
def test_a_bad_chat_file_is_refused_whole(
    world: World, tmp_path: Path, name: str, text: str, message: str
) -> None:
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(UserError) as err, world.db.session() as session:
        moderation_chat.import_file(session, world.sunday, path)
    assert message in str(err.value)
    assert statuses(world) == []


def test_the_library_call_checks_every_message_first(world: World) -> None:
    good: dict[str, object] = {"viewer_id": "a", "body": "x", "sent_at": at(0)}
    with (
        pytest.raises(UserError, match="input message 2: body is missing"),
        world.db.session() as s,
    ):
        records.add_messages(s, world.sunday, [good, {**good, "body": None}])
    with pytest.raises(UserError, match="no stream session with id 999"), world.db.session() as s:
        records.add_messages(s, 999, [good])
    assert statuses(world) == []
    assert BEFORE < SUNDAY  # the world's session is scheduled for Sunday 14:00Z
