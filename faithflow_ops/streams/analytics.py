"""`faithflow streams analytics SESSION`: a session's audience from its view events
(faithflow_ops/streams/views.py imports them) — views, unique viewers, watch time, peak
concurrent viewers and when, retention at each tenth of the stream, source attribution and top
referrers, and concurrency over time for a chart. The peak is stored on the session
(`stream_sessions.peak_concurrent_viewers`).

Everything is computed in SQL, set-based, the same text on Postgres and SQLite but for how
timestamps are compared. Two steps:

- `build_views`: one pass of window functions (`lag`/`lead` per viewer in time order, an
  index-only scan of the unique index on (session_id, viewer_id, at, kind)) turns a session's
  events into its views, stored in `stream_views`. `streams ingest-views` runs it for every
  session a file imports into: it walks every heartbeat (seconds for a million events), so it
  runs once per import, not once per report;
- `session_analytics`: the views clipped to the session's span into a temporary table, and the
  figures as small aggregates over it (a sweep with a running `sum() OVER` for concurrency, a
  recursive series of instants for retention). It builds the views first when the session has
  events but none were built (events written by other means), or when asked (`--rebuild`).

Python only shapes the few result rows. docs/streams.md defines a view and watch time:

- the events of one viewer, in time order (at one instant: heartbeat, join, leave), are split
  into views: a `join` starts one; so does a `heartbeat` that is the viewer's first event, the
  first after a `leave`, or the first after a silence longer than the heartbeat timeout (60 s).
  A `leave` never starts a view (a lone `leave`: nobody was seen joining);
- a view ends at its first `leave`; without one, when the viewer's next view starts by a
  `join` within the timeout (a reload), else `timeout` after its last event (so a viewer who
  never leaves is closed by the timeout). A `join` … `leave` with no heartbeats between is the
  whole span between them;
- each view is clipped to the session's span (`started_at` … `ended_at`; a session never started
  or still on air is measured from its first view's start to its last view's end); a view with
  no time left inside the span is not a view;
- watch time is the clipped length; a view's source and referrer are its first event's;
  concurrency at an instant counts the views open at it (from the start, inclusive, to the
  end, exclusive); retention at an instant is the share of the session's unique viewers with a
  view covering it (ends included, so 100% is "stayed to the end").

"""

from __future__ import annotations

import datetime as dt
import time
from dataclasses import dataclass
from typing import Any

from sqlalchemy import delete, text, update
from sqlalchemy.orm import Session

from faithflow_ops.db import rowcount
from faithflow_ops.errors import UserError
from faithflow_ops.models import StreamSession, StreamView
from faithflow_ops.models.stream_views import VIEW_SOURCES
from faithflow_ops.streams.records import get_session

HEARTBEAT_TIMEOUT_S = 60  # a viewer silent longer than this has stopped watching
DEFAULT_BUCKETS = 10  # retention at every 10% of the stream
DEFAULT_SLOTS = 60  # columns of the concurrency chart
MAX_BUCKETS = 100
MAX_SLOTS = 500
TOP_REFERRERS = 10
EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_SPANS = "stream_view_spans"  # the temporary table of one run's views

# Epoch milliseconds, exact on both dialects (SQLite stores `YYYY-MM-DD HH:MM:SS.ffffff`).
_MS = {
    "postgresql": "CAST(floor(extract(epoch FROM {col}) * 1000) AS bigint)",
    "sqlite": "(CAST(strftime('%s', {col}) AS INTEGER) * 1000"
    " + CAST(substr({col}, 21, 3) AS INTEGER))",
}
# The time the window pass compares: Postgres keeps `at` (timestamps compare and add an interval
# cheaply; epoch arithmetic on a million rows does not), SQLite's text becomes epoch ms at once.
# `:timeout` is bound to match: an interval on Postgres, milliseconds on SQLite.
_PASS_TIME = {"postgresql": "at", "sqlite": _MS["sqlite"].format(col="at")}
_TO_MS = {"postgresql": _MS["postgresql"], "sqlite": "{col}"}

# The events of one session into views (see the module docstring). `w`: each event with its
# neighbours in the viewer's timeline, in the unique index's order (an index-only scan on
# Postgres: the pass reads no table row); `b`: only the events that start or end a view or are
# its first leave (a few per view; the heartbeats in between go); `c`: which of the three each
# is, and the end it gives; `spans`: each start with the end of the next kept row; then the
# first event's source and referrer for the views alone, by key (correlated subqueries: one
# index probe each, whatever the planner believes of a session imported a moment ago).
_VIEWS_SQL = """
INSERT INTO stream_views (session_id, viewer_id, source, referrer, start_ms, end_ms)
WITH w AS (
    SELECT viewer_id, kind, at, {t} AS t,
           lag({t}) OVER v AS prev_t, lag(kind) OVER v AS prev_kind,
           lead({t}) OVER v AS next_t, lead(kind) OVER v AS next_kind
    FROM stream_view_events
    WHERE session_id = :session_id
    WINDOW v AS (PARTITION BY viewer_id ORDER BY at, kind)
), b AS (
    SELECT * FROM w
    WHERE kind <> 'heartbeat' OR prev_t IS NULL OR prev_kind = 'leave'
       OR prev_t < t - :timeout OR next_t IS NULL OR next_kind = 'join' OR next_t > t + :timeout
), c AS (
    SELECT viewer_id, kind, at, t,
           CASE WHEN kind = 'join' OR (kind = 'heartbeat' AND (
                    prev_t IS NULL OR prev_kind = 'leave' OR prev_t < t - :timeout))
                THEN 1 ELSE 0 END AS is_start,
           CASE WHEN next_t IS NULL OR next_kind = 'join' OR (next_kind = 'heartbeat' AND (
                    kind = 'leave' OR next_t > t + :timeout))
                THEN 1 ELSE 0 END AS is_last,
           CASE WHEN kind = 'leave' AND (prev_kind IS NULL OR prev_kind <> 'leave')
                THEN 1 ELSE 0 END AS is_leave,
           CASE WHEN kind = 'leave' THEN t
                WHEN next_t IS NOT NULL AND next_t <= t + :timeout THEN next_t
                ELSE t + :timeout END AS end_t
    FROM b
), spans AS (
    SELECT viewer_id, kind, at, is_start, {s_ms} AS s,
           CASE WHEN is_last = 1 THEN {end_ms}
                ELSE lead({end_ms}) OVER (PARTITION BY viewer_id ORDER BY at, kind) END AS e
    FROM c
    WHERE is_start = 1 OR is_last = 1 OR is_leave = 1
)
SELECT :session_id, spans.viewer_id,
       (SELECT ev.source FROM stream_view_events ev
        WHERE ev.session_id = :session_id AND ev.viewer_id = spans.viewer_id
          AND ev.at = spans.at AND ev.kind = spans.kind),
       (SELECT ev.referrer FROM stream_view_events ev
        WHERE ev.session_id = :session_id AND ev.viewer_id = spans.viewer_id
          AND ev.at = spans.at AND ev.kind = spans.kind),
       spans.s, spans.e
FROM spans
WHERE spans.is_start = 1 AND spans.e > spans.s
"""
# One run's views, clipped to the span.
_CLIP_SQL = """
INSERT INTO {spans} (viewer_id, source, referrer, s, e)
SELECT viewer_id, source, referrer,
       CASE WHEN start_ms < :lo THEN :lo ELSE start_ms END,
       CASE WHEN end_ms > :hi THEN :hi ELSE end_ms END
FROM stream_views
WHERE session_id = :session_id AND end_ms > :lo AND start_ms < :hi
"""


def _views_sql(dialect: str) -> str:
    return _VIEWS_SQL.format(
        t=_PASS_TIME[dialect],
        s_ms=_TO_MS[dialect].format(col="t"),
        end_ms=_TO_MS[dialect].format(col="end_t"),
    )


def _timeout_param(dialect: str, timeout_ms: int) -> Any:
    if dialect == "postgresql":
        return dt.timedelta(milliseconds=timeout_ms)
    return timeout_ms


# Concurrency: +1 at each view's start, -1 at its end; the running sum after each instant.
_LEVELS = """
WITH d AS (
    SELECT s AS t, 1 AS delta FROM {spans}
    UNION ALL
    SELECT e AS t, -1 AS delta FROM {spans}
), p AS (
    SELECT t, sum(delta) AS delta FROM d GROUP BY t
), lv AS (
    SELECT t, sum(delta) OVER (ORDER BY t ROWS UNBOUNDED PRECEDING) AS level FROM p
)
"""
_PEAK_SQL = _LEVELS + "SELECT t, level FROM lv ORDER BY level DESC, t LIMIT 1"
# Per chart slot: the highest level reached in it, and the level its last instant left behind
# (carried into the following empty slots).
_SLOTS_SQL = (
    _LEVELS
    + """, sl AS (
    SELECT (t - :lo) * :slots / :width AS slot, t, level,
           row_number() OVER (PARTITION BY (t - :lo) * :slots / :width ORDER BY t DESC) AS rn
    FROM lv WHERE t < :hi
)
SELECT slot, max(level), max(CASE WHEN rn = 1 THEN level END) FROM sl GROUP BY slot ORDER BY slot
"""
)
# Retention: the instants lo + k/N of the span (k = 0..N), and the viewers watching at each.
_RETENTION_SQL = """
WITH RECURSIVE k(n) AS (
    SELECT 0 UNION ALL SELECT n + 1 FROM k WHERE n < :buckets
), pts AS (
    SELECT n, :lo + (:hi - :lo) * n / :buckets AS t FROM k
)
SELECT pts.n, pts.t, count(DISTINCT v.viewer_id)
FROM pts LEFT JOIN {spans} v ON v.s <= pts.t AND v.e >= pts.t
GROUP BY pts.n, pts.t ORDER BY pts.n
"""
_TOTALS_SQL = "SELECT count(*), count(DISTINCT viewer_id), sum(e - s) FROM {spans}"
_SOURCES_SQL = """
SELECT source, count(*), count(DISTINCT viewer_id), sum(e - s)
FROM {spans} GROUP BY source
"""
_REFERRERS_SQL = """
SELECT referrer, count(*) AS n FROM {spans} WHERE referrer IS NOT NULL
GROUP BY referrer ORDER BY n DESC, referrer LIMIT :top
"""
_SPAN_SQL = "SELECT min(start_ms), max(end_ms) FROM stream_views WHERE session_id = :session_id"
_BUILT_SQL = """
SELECT EXISTS (SELECT 1 FROM stream_view_events WHERE session_id = :session_id),
       EXISTS (SELECT 1 FROM stream_views WHERE session_id = :session_id)
"""


@dataclass(frozen=True)
class Span:
    lo: int  # epoch ms
    hi: int
    source: str  # `session` (its started_at and ended_at) or `events` (one missing: the views)


def _ms(when: dt.datetime) -> int:
    return (when - EPOCH) // dt.timedelta(milliseconds=1)


def _at(ms: int | None) -> dt.datetime | None:
    return None if ms is None else EPOCH + dt.timedelta(milliseconds=int(ms))


def _seconds(ms: Any) -> float:
    return round(int(ms or 0) / 1000, 3)


def _span(session: Session, row: StreamSession) -> Span | None:
    lo = _ms(row.started_at) if row.started_at is not None else None
    hi = _ms(row.ended_at) if row.ended_at is not None else None
    if lo is not None and hi is not None:
        return Span(lo, hi, "session") if hi > lo else None
    first, last = session.execute(text(_SPAN_SQL), {"session_id": row.id}).one()
    if first is None:
        return None
    lo = int(first) if lo is None else lo
    hi = int(last) if hi is None else hi
    return Span(lo, hi, "events") if hi > lo else None


def _dialect(session: Session) -> str:
    return "postgresql" if session.get_bind().dialect.name == "postgresql" else "sqlite"


def build_views(session: Session, session_id: int) -> int:
    """Replace `session_id`'s views with those of its view events now; how many."""
    dialect = _dialect(session)
    session.execute(delete(StreamView).where(StreamView.session_id == session_id))
    if dialect == "postgresql":
        session.execute(text("SET LOCAL work_mem = '64MB'"))  # the window pass in memory
    result = session.execute(
        text(_views_sql(dialect)),
        {
            "session_id": session_id,
            "timeout": _timeout_param(dialect, HEARTBEAT_TIMEOUT_S * 1000),
        },
    )
    return rowcount(result)


def session_analytics(
    session: Session,
    session_id: int,
    *,
    buckets: int = DEFAULT_BUCKETS,
    slots: int = DEFAULT_SLOTS,
    rebuild: bool = False,
    store_peak: bool = True,
) -> dict[str, Any]:
    """The report for one session (the `--json` document), and its peak concurrent viewers
    stored on the session when `store_peak` (needs a write session). The views are built first
    with `rebuild`, or when the session has events and no views."""
    if not 1 <= buckets <= MAX_BUCKETS:
        raise UserError(f"--buckets {buckets}: give 1 to {MAX_BUCKETS} (10 = every 10%)")
    if not 1 <= slots <= MAX_SLOTS:
        raise UserError(f"--slots {slots}: give 1 to {MAX_SLOTS}")
    started = time.perf_counter()
    row = get_session(session, session_id)
    has_events, has_views = session.execute(text(_BUILT_SQL), {"session_id": row.id}).one()
    built = None
    if rebuild or (has_events and not has_views):
        built = build_views(session, row.id)
    span = _span(session, row)
    doc: dict[str, Any] = {
        "session": {
            "id": row.id,
            "title": row.title,
            "status": row.status,
            "started_at": row.started_at,
            "ended_at": row.ended_at,
        },
        "definitions": {"heartbeat_timeout_s": HEARTBEAT_TIMEOUT_S, "buckets": buckets},
        "views_rebuilt": built is not None,
        "span": None,
    }
    if span is None:
        doc.update(_empty(buckets))
    else:
        doc["span"] = {
            "from": _at(span.lo),
            "to": _at(span.hi),
            "seconds": _seconds(span.hi - span.lo),
            "from_events": span.source != "session",
        }
        doc.update(_figures(session, row.id, span, buckets, slots))
    if store_peak:
        session.execute(
            update(StreamSession)
            .where(StreamSession.id == row.id)
            .values(peak_concurrent_viewers=doc["peak_concurrent"]["viewers"])
        )
    doc["seconds"] = round(time.perf_counter() - started, 3)
    return doc


def _empty(buckets: int) -> dict[str, Any]:
    return {
        "views": 0,
        "unique_viewers": 0,
        "watch_time": {"total_s": 0.0, "avg_per_view_s": None, "avg_per_viewer_s": None},
        "peak_concurrent": {"viewers": 0, "at": None},
        "retention": [
            {"percent": round(100 * k / buckets, 1), "at": None, "viewers": 0, "share": None}
            for k in range(buckets + 1)
        ],
        "sources": [
            {"source": s, "views": 0, "viewers": 0, "share": None, "watch_time_s": 0.0}
            for s in VIEW_SOURCES
        ],
        "top_referrers": [],
        "concurrency": {"slot_seconds": None, "slots": []},
    }


def _figures(
    session: Session, session_id: int, span: Span, buckets: int, slots: int
) -> dict[str, Any]:
    def run(sql: str, **params: Any) -> list[Any]:
        return list(session.execute(text(sql.format(spans=_SPANS)), params).all())

    session.execute(text(f"DROP TABLE IF EXISTS {_SPANS}"))
    session.execute(
        text(
            f"CREATE TEMPORARY TABLE {_SPANS} (viewer_id varchar(128), source varchar(16), "
            "referrer varchar(255), s bigint, e bigint)"
        )
    )
    session.execute(
        text(_CLIP_SQL.format(spans=_SPANS)),
        {"session_id": session_id, "lo": span.lo, "hi": span.hi},
    )
    try:
        views, viewers, total_ms = run(_TOTALS_SQL)[0]
        views, viewers, total_ms = int(views), int(viewers), int(total_ms or 0)
        peak = run(_PEAK_SQL)
        peak_at, peak_level = (int(peak[0][0]), int(peak[0][1])) if peak else (None, 0)
        retention = run(_RETENTION_SQL, lo=span.lo, hi=span.hi, buckets=buckets)
        per_source = {r[0]: r for r in run(_SOURCES_SQL)}
        referrers = run(_REFERRERS_SQL, top=TOP_REFERRERS)
        width = span.hi - span.lo
        slot_rows = run(_SLOTS_SQL, lo=span.lo, hi=span.hi, slots=slots, width=width)
    finally:
        session.execute(text(f"DROP TABLE IF EXISTS {_SPANS}"))
    return {
        "views": views,
        "unique_viewers": viewers,
        "watch_time": {
            "total_s": _seconds(total_ms),
            "avg_per_view_s": round(total_ms / views / 1000, 3) if views else None,
            "avg_per_viewer_s": round(total_ms / viewers / 1000, 3) if viewers else None,
        },
        "peak_concurrent": {"viewers": peak_level, "at": _at(peak_at) if peak_level else None},
        "retention": [
            {
                "percent": round(100 * int(n) / buckets, 1),
                "at": _at(int(t)),
                "viewers": int(count),
                "share": round(int(count) / viewers, 4) if viewers else None,
            }
            for n, t, count in retention
        ],
        "sources": [
            {
                "source": source,
                "views": int(per_source[source][1]) if source in per_source else 0,
                "viewers": int(per_source[source][2]) if source in per_source else 0,
                "share": (
                    round(int(per_source[source][1]) / views, 4)
                    if source in per_source and views
                    else (0.0 if views else None)
                ),
                "watch_time_s": _seconds(per_source[source][3]) if source in per_source else 0.0,
            }
            for source in VIEW_SOURCES
        ],
        "top_referrers": [
            {"referrer": r, "views": int(n), "share": round(int(n) / views, 4)}
            for r, n in referrers
        ],
        "concurrency": _series(slot_rows, span, slots),
    }


def _series(rows: list[Any], span: Span, slots: int) -> dict[str, Any]:
    """The chart's slots: the highest concurrency in each; an empty slot holds the level the
    last instant before it left (a few dozen aggregated rows, not the events)."""
    width = span.hi - span.lo
    by_slot = {int(slot): (int(top), int(last)) for slot, top, last in rows}
    level = 0
    out = []
    for k in range(slots):
        top, last = by_slot.get(k, (level, level))
        out.append(
            {
                "from": _at(span.lo + width * k // slots),
                "viewers": max(top, level),
            }
        )
        level = last
    return {"slot_seconds": round(width / slots / 1000, 3), "slots": out}
