"""`streams ingest-views`: CSV and JSON lines, every bad line named with its number and nothing
written, the same file twice adds nothing, on SQLite and Postgres."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from conftest import World, z
from sqlalchemy import func, select

from faithflow_ops.db import Database
from faithflow_ops.errors import UserError
from faithflow_ops.models import StreamViewEvent
from faithflow_ops.streams import views
from faithflow_ops.streams.views import ingest_text, parse_at, referrer_host

GOOD_CSV = """session_id,viewer_id,kind,at,source,referrer,player
{sid},v1,join,2026-03-08T14:00:00Z,web,https://www.Facebook.com/grace?x=1,hls.js
{sid},v1,heartbeat,2026-03-08T15:00:30+01:00,web,,hls.js
{sid},v1,leave,1772978460,web,,hls.js

{sid},v2,JOIN,2026-03-08T14:02:00.250Z,,,
"""


def rows(db: Database) -> list[tuple[Any, ...]]:
    with db.read_session() as session:
        return [
            (e.viewer_id, e.kind, e.at, e.source, e.referrer)
            for e in session.scalars(select(StreamViewEvent).order_by(StreamViewEvent.id))
        ]


def count(db: Database) -> int:
    with db.read_session() as session:
        return session.scalar(select(func.count()).select_from(StreamViewEvent)) or 0


def test_a_csv_file_twice(world: World, cli: Any, tmp_path: Path) -> None:
    path = tmp_path / "beacons.csv"
    path.write_text(GOOD_CSV.format(sid=world.sunday))
    first = cli("streams", "ingest-views", str(path), "--json")
    assert first.exit_code == 0, first.stderr
    doc = json.loads(first.stdout)
    assert (doc["lines"], doc["inserted"], doc["duplicates"], doc["sessions"]) == (
        4, 4, 0, [world.sunday])  # fmt: skip
    assert doc["events_per_second"] > 0
    assert doc["views"] == 2  # v1 join → leave, v2 join (closed by the timeout)
    assert rows(world.db) == [
        ("v1", "join", z("2026-03-08T14:00:00Z"), "web", "facebook.com"),
        ("v1", "heartbeat", z("2026-03-08T14:00:30Z"), "web", None),  # +01:00 → UTC
        ("v1", "leave", z("2026-03-08T14:01:00Z"), "web", None),  # Unix seconds
        ("v2", "join", z("2026-03-08T14:02:00.250Z"), "other", None),  # no source: other
    ]
    again = cli("streams", "ingest-views", str(path), "--json")
    assert again.exit_code == 0, again.stderr
    assert json.loads(again.stdout)["inserted"] == 0
    assert json.loads(again.stdout)["duplicates"] == 4
    assert "imported 0 view events" in again.stderr and "(4 already there)" in again.stderr
    assert "nothing new: the 2 views stand" in again.stderr
    assert json.loads(again.stdout)["views"] == 2
    assert count(world.db) == 4


def test_json_lines_with_session_from_the_option(world: World, cli: Any, tmp_path: Path) -> None:
    path = tmp_path / "beacons.ndjson"
    path.write_text(
        '{"viewer_id": "v1", "kind": "join", "at": "2026-03-08T14:00:00Z", "source": "app"}\n'
        "\n"
        '{"viewer_id": 42, "kind": "heartbeat", "at": 1772978430.5, "Referrer": "t.co"}\n'
    )
    done = cli("streams", "ingest-views", str(path), "--session", str(world.sunday))
    assert done.exit_code == 0, done.stderr
    assert rows(world.db) == [
        ("v1", "join", z("2026-03-08T14:00:00Z"), "app", None),
        ("42", "heartbeat", z("2026-03-08T14:00:30.500Z"), "other", "t.co"),
    ]


def test_bad_lines_are_named_and_nothing_is_written(world: World, cli: Any, tmp_path: Path) -> None:
    sid = world.sunday
    path = tmp_path / "bad.csv"
    path.write_text(
        "session_id,viewer_id,kind,at,source\n"
        f"{sid},v1,join,2026-03-08T14:00:00Z,web\n"  # line 2: good
        f"{sid},v1,heartbeat,yesterday,web\n"  # 3
        f"{sid},v1,paused,2026-03-08T14:00:00Z,web\n"  # 4
        f"{sid},v1,join,2026-03-08T14:00:00Z,tv\n"  # 5
        f"999,v1,join,2026-03-08T14:00:00Z,web\n"  # 6
        f"{sid},,join,2026-03-08T14:00:00Z,web\n"  # 7
        f"{sid},v1,join,2026-03-08T14:00:00,web\n"  # 8: no offset
    )
    result = cli("streams", "ingest-views", str(path))
    assert result.exit_code == 2
    message = result.stderr.strip()
    assert "\n" not in message
    assert f"{path}: 6 bad lines, nothing imported: " in message
    assert "line 3: bad timestamp 'yesterday'" in message
    assert "line 4: unknown kind 'paused'; use join, heartbeat or leave" in message
    assert "line 5: unknown source 'tv'" in message
    assert "line 7: missing viewer_id" in message
    assert "line 6: unknown session 999" in message
    # the first five by line number, then how many more (line 8: a time without an offset)
    assert message.endswith("; and 1 more; fix them and import the file again")
    assert "Traceback" not in result.stderr
    assert count(world.db) == 0


def test_a_bad_line_after_the_first_batches_rolls_them_back(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(views, "BATCH", 2)
    lines = [f'{{"viewer_id": "v{i}", "kind": "join", "at": "2026-03-08T14:00:0{i}Z"}}'
             for i in range(6)] + ["[1, 2]"]  # fmt: skip
    bad = r"1 bad line, nothing imported: line 7: not a JSON"
    with pytest.raises(UserError, match=bad), world.db.session() as session:
        ingest_text(session, "\n".join(lines), name="b.jsonl", fmt="jsonl", session_id=world.sunday)
    assert count(world.db) == 0


@pytest.mark.parametrize(
    ("content", "fmt", "session_id", "message"),
    [
        ("viewer,kind,at\n", "csv", None, "line 1: the header has no viewer_id column"),
        ("", "csv", None, "has no view events"),
        (
            '{"viewer_id": "v", "kind": "join", "at": "2026-03-08T14:00:00Z"}',
            "jsonl",
            None,
            "line 1: no session_id; add the column or pass --session",
        ),
        (
            '{"session_id": 7, "viewer_id": "v", "kind": "join", "at": "2026-03-08T14:00:00Z"}',
            "jsonl",
            1,
            "line 1: session_id 7 is not --session 1",
        ),
        (
            '{"session_id": "x", "viewer_id": "v", "kind": "join", "at": "2026-03-08T14:00:00Z"}',
            "jsonl",
            None,
            "line 1: session_id 'x' is not a number",
        ),
        ('{"viewer_id": "v", "kind": "join", "at": true}', "jsonl", 1, "line 1: bad timestamp"),
    ],
)
def test_file_level_mistakes(
    world: World, content: str, fmt: str, session_id: int | None, message: str
) -> None:
    with pytest.raises(UserError, match=message), world.db.session() as session:
        ingest_text(session, content, name="f", fmt=fmt, session_id=session_id)
    assert count(world.db) == 0


def test_command_mistakes(world: World, cli: Any, tmp_path: Path) -> None:
    path = tmp_path / "beacons.txt"
    path.write_text(GOOD_CSV.format(sid=world.sunday))
    unknown = cli("streams", "ingest-views", str(path))
    assert unknown.exit_code == 2
    assert "pass --format csv or jsonl" in unknown.stderr
    assert cli("streams", "ingest-views", str(path), "--format", "xml").exit_code == 2
    assert cli("streams", "ingest-views", str(path), "--format", "csv").exit_code == 0
    gone = cli("streams", "ingest-views", str(tmp_path / "nope.csv"))
    assert gone.exit_code == 2
    assert "cannot read" in gone.stderr
    session = cli("streams", "ingest-views", str(path), "--format", "csv", "--session", "999")
    assert session.exit_code == 2
    assert "--session 999: no stream session with that id" in session.stderr
    latin = tmp_path / "latin.csv"
    latin.write_bytes(b"viewer_id,kind,at\n\xe9,join,2026-03-08T14:00:00Z\n")
    bad = cli("streams", "ingest-views", str(latin), "--session", str(world.sunday))
    assert bad.exit_code == 2
    assert "line 2: not UTF-8 text" in bad.stderr
    assert count(world.db) == 4


@pytest.mark.parametrize(
    ("value", "iso"),
    [
        ("2026-03-08T14:00:00Z", "2026-03-08T14:00:00+00:00"),
        ("2026-03-08 09:00:00-05:00", "2026-03-08T14:00:00+00:00"),
        (1772978400, "2026-03-08T14:00:00+00:00"),
        ("1772978400.5", "2026-03-08T14:00:00.500000+00:00"),
    ],
)
def test_timestamps(value: Any, iso: str) -> None:
    assert parse_at(value).isoformat() == iso


@pytest.mark.parametrize("value", ["2026-03-08", "", None, -1, "nan", "2026-13-01T00:00:00Z"])
def test_bad_timestamps(value: Any) -> None:
    with pytest.raises(ValueError, match="bad timestamp"):
        parse_at(value)


@pytest.mark.parametrize(
    ("value", "host"),
    [
        ("https://www.facebook.com/watch?v=1", "facebook.com"),
        ("m.YouTube.com", "m.youtube.com"),
        ("android-app://com.church.app/", "com.church.app"),
        ("", None),
    ],
)
def test_referrers_are_kept_as_hosts(value: str, host: str | None) -> None:
    assert referrer_host(value) == host
