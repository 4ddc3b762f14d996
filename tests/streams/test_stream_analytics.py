"""Post-stream analytics on a hand-checked data set: every figure below was worked out by hand
from the events (the arithmetic is written next to each), on SQLite and Postgres.

The session is live from 14:00:00 to 15:00:00 (3600 s); heartbeat timeout 60 s. Views
(docs/streams.md, faithflow_ops/streams/analytics.py), as [start, end) after clipping:

    alice  web     facebook.com  join 14:00:00, hb :30, hb 14:01:00, leave 14:30:00
           → [14:00:00, 14:30:00]  1800 s
    bob    app     —             join 13:55:00, hb 13:55:50 (50 s ≤ 60), leave 14:10:00
           → [13:55:00, 14:10:00] clipped to [14:00:00, 14:10:00]  600 s
    carol  embed   church.org    heartbeats only: 14:12:00, 14:12:40, 14:13:20
           → [14:12:00, 14:13:20 + 60 = 14:14:20]  140 s
                                 14:40:00 (silence 26m40s > 60 s: a new view), 14:40:30
           → [14:40:00, 14:40:30 + 60 = 14:41:30]  90 s
    dave   social  m.youtube.com join 14:58:00, hb 14:58:50, hb 14:59:40, never leaves
           → [14:58:00, 14:59:40 + 60 = 15:00:40] clipped to 15:00:00  120 s
    erin   web     —             a lone leave 14:05:00: no view
    frank  web     facebook.com  join 14:10:00, hb 14:10:30, join 14:10:50 (a reload)
           → [14:10:00, 14:10:50] (closed by the rejoin)  50 s
                                 join 14:10:50, hb 14:11:40, leave 14:15:00
           → [14:10:50, 14:15:00]  250 s
           web     —             join 14:30:00, leave 14:45:00 (no heartbeats)
           → [14:30:00, 14:45:00]  900 s
    gina   other   —             join 13:40:00, leave 13:50:00; join 15:05:00, leave 15:10:00
           → both outside the span: no view
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import pytest
from conftest import World, z
from sqlalchemy import delete, func, select, update

from faithflow_ops.db import Database
from faithflow_ops.models import StreamSession, StreamView, StreamViewEvent
from faithflow_ops.streams.analytics import session_analytics
from faithflow_ops.streams.views import ingest_text

START, END = "2026-03-08T14:00:00Z", "2026-03-08T15:00:00Z"

EVENTS = [  # viewer, kind, at (time of day, 8 March 2026 UTC), source, referrer
    ("alice", "join", "14:00:00", "web", "https://www.facebook.com/gracechapel?ref=1"),
    ("alice", "heartbeat", "14:00:30", "web", ""),
    ("alice", "heartbeat", "14:01:00", "web", ""),
    ("alice", "leave", "14:30:00", "web", ""),
    ("bob", "join", "13:55:00", "app", ""),
    ("bob", "heartbeat", "13:55:50", "app", ""),
    ("bob", "leave", "14:10:00", "app", ""),
    ("carol", "heartbeat", "14:12:00", "embed", "church.org"),
    ("carol", "heartbeat", "14:12:40", "embed", "church.org"),
    ("carol", "heartbeat", "14:13:20", "embed", "church.org"),
    ("carol", "heartbeat", "14:40:00", "embed", "https://church.org/live"),
    ("carol", "heartbeat", "14:40:30", "embed", "church.org"),
    ("dave", "join", "14:58:00", "social", "https://m.youtube.com/watch?v=x"),
    ("dave", "heartbeat", "14:58:50", "social", ""),
    ("dave", "heartbeat", "14:59:40", "social", ""),
    ("erin", "leave", "14:05:00", "web", ""),
    ("frank", "join", "14:10:00", "web", "facebook.com"),
    ("frank", "heartbeat", "14:10:30", "web", ""),
    ("frank", "join", "14:10:50", "web", "https://facebook.com/"),
    ("frank", "heartbeat", "14:11:40", "web", ""),
    ("frank", "leave", "14:15:00", "web", ""),
    ("frank", "join", "14:30:00", "web", ""),
    ("frank", "leave", "14:45:00", "web", ""),
    ("gina", "join", "13:40:00", "", ""),
    ("gina", "leave", "13:50:00", "", ""),
    ("gina", "join", "15:05:00", "", ""),
    ("gina", "leave", "15:10:00", "", ""),
]


def at(clock: str) -> dt.datetime:
    return z(f"2026-03-08T{clock}Z")


def csv_of(events: list[tuple[str, str, str, str, str]]) -> str:
    lines = ["viewer_id,kind,at,source,referrer"]
    lines += [f"{v},{k},2026-03-08T{t}Z,{s},{r}" for v, k, t, s, r in events]
    return "\n".join(lines) + "\n"


def aired(world: World, start: str | None = START, end: str | None = END) -> int:
    """A session that went live at `start` and ended at `end` (None: not yet)."""
    sid = world.session_at("ended" if end else "live")
    with world.db.session() as session:
        session.execute(
            update(StreamSession)
            .where(StreamSession.id == sid)
            .values(
                started_at=z(start) if start else None,
                ended_at=z(end) if end else None,
            )
        )
    return sid


def load(world: World, sid: int, events: list[tuple[str, str, str, str, str]]) -> None:
    with world.db.session() as session:
        ingest_text(session, csv_of(events), name="beacons.csv", fmt="csv", session_id=sid)


def report(world: World, sid: int, **kw: Any) -> dict[str, Any]:
    with world.db.session() as session:
        doc: dict[str, Any] = json.loads(
            json.dumps(session_analytics(session, sid, **kw), default=str)
        )
        return doc


def stored_peak(db: Database, sid: int) -> int | None:
    with db.read_session() as session:
        return session.scalar(
            select(StreamSession.peak_concurrent_viewers).where(StreamSession.id == sid)
        )


def test_the_hand_checked_session(world: World) -> None:
    sid = aired(world)
    load(world, sid, EVENTS)
    doc = report(world, sid, slots=6)

    assert doc["span"] == {
        "from": "2026-03-08 14:00:00+00:00",
        "to": "2026-03-08 15:00:00+00:00",
        "seconds": 3600.0,
        "from_events": False,
    }
    # alice 1 + bob 1 + carol 2 + dave 1 + frank 3 = 8 views; erin and gina have none
    assert doc["views"] == 8
    assert doc["unique_viewers"] == 5  # alice, bob, carol, dave, frank
    # 1800 + 600 + 140 + 90 + 120 + 50 + 250 + 900 = 3950 s; / 8 views = 493.75; / 5 = 790
    assert doc["watch_time"] == {
        "total_s": 3950.0,
        "avg_per_view_s": 493.75,
        "avg_per_viewer_s": 790.0,
    }
    # open views: 14:00 alice+bob = 2; 14:10 bob out, frank in = 2; 14:10:50 frank reloads = 2;
    # 14:12 carol in = 3 (alice, frank, carol): the peak; 14:14:20 = 2; 14:15 = 1
    assert doc["peak_concurrent"] == {"viewers": 3, "at": "2026-03-08 14:12:00+00:00"}
    assert stored_peak(world.db, sid) == 3

    # retention every 360 s (10% of 3600), share of the 5 viewers with a view covering it:
    expected = [
        (0, "14:00:00", 2),  # alice, bob (both start at 14:00 after clipping)
        (10, "14:06:00", 2),  # alice, bob
        (20, "14:12:00", 3),  # alice, frank (2nd view), carol (starts at 14:12:00)
        (30, "14:18:00", 1),  # alice
        (40, "14:24:00", 1),  # alice
        (50, "14:30:00", 2),  # alice (ends at 14:30, ends count), frank (3rd view starts)
        (60, "14:36:00", 1),  # frank
        (70, "14:42:00", 1),  # frank (carol's 2nd view ended 14:41:30)
        (80, "14:48:00", 0),
        (90, "14:54:00", 0),
        (100, "15:00:00", 1),  # dave stayed to the end
    ]
    assert [(p["percent"], p["at"][11:19], p["viewers"], p["share"]) for p in doc["retention"]] == [
        (float(pct), clock, n, n / 5) for pct, clock, n in expected
    ]

    # sources (a view's source is its first event's): web alice 1 + frank 3 = 4 views of 8
    # (1800 + 50 + 250 + 900 = 3000 s); app bob 1 (600); embed carol 2 (140 + 90 = 230);
    # social dave 1 (120); other: gina's views fell outside the span
    assert [(s["source"], s["views"], s["viewers"], s["share"], s["watch_time_s"])
            for s in doc["sources"]] == [
        ("web", 4, 2, 0.5, 3000.0),
        ("app", 1, 1, 0.125, 600.0),
        ("embed", 2, 1, 0.25, 230.0),
        ("social", 1, 1, 0.125, 120.0),
        ("other", 0, 0, 0.0, 0.0),
    ]  # fmt: skip
    # referrers of the views' first events, as hosts: facebook.com alice 1 + frank 2 (his 3rd
    # join had none); church.org carol 2; m.youtube.com dave 1
    assert doc["top_referrers"] == [
        {"referrer": "facebook.com", "views": 3, "share": 0.375},
        {"referrer": "church.org", "views": 2, "share": 0.25},
        {"referrer": "m.youtube.com", "views": 1, "share": 0.125},
    ]
    # 6 slots of 10 minutes, the highest level in each: [14:00 2] [14:10 3 (14:12)]
    # [14:20 nothing happens: alice alone, 1] [14:30 alice out, frank in: 1]
    # [14:40 frank + carol: 2] [14:50 dave from 14:58: 1]
    assert doc["concurrency"]["slot_seconds"] == 600.0
    assert [s["viewers"] for s in doc["concurrency"]["slots"]] == [2, 3, 1, 1, 2, 1]
    assert doc["concurrency"]["slots"][1]["from"] == "2026-03-08 14:10:00+00:00"


def test_the_report_from_the_cli(world: World, cli: Any, tmp_path: Any) -> None:
    sid = aired(world)
    path = tmp_path / "beacons.csv"
    path.write_text(csv_of(EVENTS))
    done = cli("streams", "ingest-views", str(path), "--session", str(sid), "--json")
    assert done.exit_code == 0, done.stderr
    assert {k: v for k, v in json.loads(done.stdout).items() if k in ("lines", "inserted")} == {
        "lines": 27,
        "inserted": 27,
    }
    assert "imported 27 view events" in done.stderr and "lines/s" in done.stderr

    shown = cli("streams", "analytics", str(sid), "--json")
    assert shown.exit_code == 0, shown.stderr
    doc = json.loads(shown.stdout)
    assert (doc["views"], doc["unique_viewers"], doc["peak_concurrent"]["viewers"]) == (8, 5, 3)
    assert doc["peak_concurrent"]["at"] == "2026-03-08T14:12:00+00:00"
    assert len(doc["retention"]) == 11 and len(doc["concurrency"]["slots"]) == 60

    table = cli("streams", "analytics", str(sid), "--slots", "12")
    assert table.exit_code == 0, table.stderr
    assert "peak concurrent" in table.stdout and "3 at 14:12:00" in table.stdout
    assert "concurrent viewers" in table.stdout and "14:00" in table.stdout
    assert "facebook.com" in table.stdout

    assert cli("streams", "analytics", str(sid), "--buckets", "0").exit_code == 2
    missing = cli("streams", "analytics", "999")
    assert missing.exit_code == 2
    assert "no stream session with id 999" in missing.stderr


def test_five_buckets_and_a_viewer_on_the_boundaries(world: World) -> None:
    """--buckets 5: every 720 s; a view [14:12:00, 14:24:00] is watching at both 20% and 40%."""
    sid = aired(world)
    load(world, sid, [("v", "join", "14:12:00", "web", ""), ("v", "leave", "14:24:00", "web", "")])
    doc = report(world, sid, buckets=5)
    assert [(p["percent"], p["viewers"]) for p in doc["retention"]] == [
        (0.0, 0), (20.0, 1), (40.0, 1), (60.0, 0), (80.0, 0), (100.0, 0)
    ]  # fmt: skip
    assert doc["watch_time"]["total_s"] == 720.0


@pytest.mark.parametrize(
    ("events", "views", "total_s"),
    [
        # never leaves, no heartbeats: the timeout closes it 60 s after the join
        ([("a", "join", "14:10:00")], 1, 60.0),
        # a lone leave: nobody was seen joining
        ([("a", "leave", "14:10:00")], 0, 0.0),
        # leave, leave: the first closes the view
        (
            [("a", "join", "14:10:00"), ("a", "leave", "14:11:00"), ("a", "leave", "14:20:00")],
            1,
            60.0,
        ),
        # heartbeats only, one silence over 60 s: two views, each + 60 s
        (
            [
                ("a", "heartbeat", "14:10:00"),
                ("a", "heartbeat", "14:11:00"),
                ("a", "heartbeat", "14:12:01"),
            ],
            2,
            120.0 + 60.0,
        ),
        # heartbeats after a leave start a new view without a join
        (
            [("a", "join", "14:10:00"), ("a", "leave", "14:10:30"), ("a", "heartbeat", "14:10:40")],
            2,
            30.0 + 60.0,
        ),
        # a rejoin within the timeout closes the first view at the rejoin
        (
            [("a", "join", "14:10:00"), ("a", "join", "14:10:20"), ("a", "leave", "14:11:00")],
            2,
            20.0 + 40.0,
        ),
        # a join and a leave at the same instant: no time, no view
        ([("a", "join", "14:10:00"), ("a", "leave", "14:10:00")], 0, 0.0),
        # entirely before the start / after the end: no view; straddling: clipped
        ([("a", "join", "13:00:00"), ("a", "leave", "13:59:59")], 0, 0.0),
        ([("a", "join", "15:00:00"), ("a", "leave", "15:30:00")], 0, 0.0),
        ([("a", "join", "13:59:00"), ("a", "leave", "15:01:00")], 1, 3600.0),
    ],
)
def test_edge_cases(
    world: World, events: list[tuple[str, str, str]], views: int, total_s: float
) -> None:
    sid = aired(world)
    load(world, sid, [(v, k, t, "web", "") for v, k, t in events])
    doc = report(world, sid)
    assert (doc["views"], doc["watch_time"]["total_s"]) == (views, total_s)
    assert doc["unique_viewers"] == (1 if views else 0)
    assert doc["peak_concurrent"]["viewers"] == (1 if views else 0)


def test_an_empty_session(world: World) -> None:
    sid = aired(world)
    doc = report(world, sid)
    assert (doc["views"], doc["unique_viewers"], doc["peak_concurrent"]) == (
        0, 0, {"viewers": 0, "at": None})  # fmt: skip
    assert doc["watch_time"] == {"total_s": 0.0, "avg_per_view_s": None, "avg_per_viewer_s": None}
    assert [p["share"] for p in doc["retention"]] == [None] * 11
    assert [s["share"] for s in doc["sources"]] == [None] * 5
    assert doc["top_referrers"] == []
    assert {s["viewers"] for s in doc["concurrency"]["slots"]} == {0}
    assert stored_peak(world.db, sid) == 0


def test_a_session_never_aired_and_without_events(world: World) -> None:
    doc = report(world, world.sunday)
    assert doc["span"] is None and doc["views"] == 0
    assert len(doc["retention"]) == 11 and doc["concurrency"]["slots"] == []


def test_a_session_still_on_air_is_measured_to_its_last_event(world: World) -> None:
    """No ended_at: the span ends with the last view (b's, 14:20:00 + 60 s = 14:21:00)."""
    sid = aired(world, end=None)
    load(world, sid, [("a", "join", "14:00:00", "app", ""),
                      ("a", "heartbeat", "14:00:40", "app", ""),
                      ("b", "heartbeat", "14:20:00", "web", "")])  # fmt: skip
    doc = report(world, sid)
    assert doc["span"]["seconds"] == 21 * 60 and doc["span"]["from_events"] is True
    # a: 14:00:00 → 14:00:40 + 60 = 100 s; b: 14:20:00 → 14:21:00 = 60 s
    assert (doc["views"], doc["watch_time"]["total_s"]) == (2, 160.0)


def test_views_are_built_at_import_and_rebuilt_on_request(world: World) -> None:
    """ingest-views builds the session's views; events changed by other means need --rebuild,
    and a session with events but no views built gets them on its first report."""
    sid = aired(world)
    load(world, sid, [("a", "join", "14:00:00", "web", ""), ("b", "join", "14:00:30", "web", "")])
    first = report(world, sid)
    assert (first["peak_concurrent"]["viewers"], first["views_rebuilt"]) == (2, False)
    with world.db.session() as session:
        session.execute(delete(StreamViewEvent).where(StreamViewEvent.viewer_id == "b"))
    assert report(world, sid)["peak_concurrent"]["viewers"] == 2  # the views built at import
    again = report(world, sid, rebuild=True)
    assert (again["peak_concurrent"]["viewers"], again["views_rebuilt"]) == (1, True)
    assert stored_peak(world.db, sid) == 1

    other = aired(world)  # events written straight into the table: no views built yet
    with world.db.session() as session:
        session.add(StreamViewEvent(session_id=other, viewer_id="c", kind="join",
                                    at=at("14:10:00"), source="app"))  # fmt: skip
    built = report(world, other)
    assert (built["views"], built["views_rebuilt"], built["watch_time"]["total_s"]) == (
        1, True, 60.0)  # fmt: skip
    assert report(world, other)["views_rebuilt"] is False
    with world.db.read_session() as session:
        assert session.scalar(select(func.count()).select_from(StreamView)) == 2  # a, c
