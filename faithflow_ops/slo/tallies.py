"""Request tallies: the receiver's answers counted per hour, route template, status class and
latency bucket, so `faithflow slo report` can measure ingest and task-endpoint availability and
latency from the database alone (docs/slo.md, "What the database can see").

A delivery refused with a 5xx leaves no webhook_events row, and the 5xx that matter most come
from the database being down — so a row written per request, in the request, would be lost
exactly when it counts. Instead each receiver process counts in memory (`Tally.add`, a dict
increment under a lock) and adds its counts to `request_tallies` once a minute with one upsert
per key (`flush`). A flush that fails keeps the counts for the next one: answers given while
the database was down are written when it is back. What is lost: the counts of a process that
dies before its next flush (at most a minute, or the whole outage if it dies during one), and
answers the receiver never gave (the process down, the platform's proxy answering 502).
"""

from __future__ import annotations

import bisect
import datetime as dt
import threading
from collections.abc import Mapping

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from faithflow_ops.db import Database, upsert_insert
from faithflow_ops.models import RequestTally
from faithflow_ops.slo.spec import HTTP_BUCKETS

FLUSH_SECONDS = 60.0
KEEP = dt.timedelta(days=90)  # three 30-day windows; older hours are deleted at a flush
INF = "+Inf"

Key = tuple[dt.datetime, str, str, str]  # hour, route, status class, le
# In memory the hour is its number since the epoch: `add` runs on every request, and this
# keeps it at about a microsecond (bench/bench_tallies.py).
_Pending = tuple[int, str, str, str]
_LABELS = (*(repr(float(bound)) for bound in HTTP_BUCKETS), INF)


def le_label(seconds: float) -> str:
    """The smallest histogram bound that `seconds` fits under, as Prometheus writes `le`."""
    return _LABELS[bisect.bisect_left(HTTP_BUCKETS, seconds)]


def le_value(label: str) -> float:
    return float("inf") if label == INF else float(label)


def hour_of(at: dt.datetime) -> dt.datetime:
    return at.astimezone(dt.UTC).replace(minute=0, second=0, microsecond=0)


class Tally:
    """One process's counts not written yet. Thread-safe: the receiver's event loop adds, the
    flusher thread takes."""

    def __init__(self) -> None:
        self._counts: dict[_Pending, int] = {}
        self._lock = threading.Lock()
        self._pruned: dt.datetime | None = None

    def add(self, route: str, status_class: str, seconds: float, at: dt.datetime) -> None:
        key = (int(at.timestamp()) // 3600, route, status_class, le_label(seconds))
        with self._lock:
            self._counts[key] = self._counts.get(key, 0) + 1

    @property
    def pending(self) -> dict[Key, int]:
        with self._lock:
            return _keyed(self._counts)

    def _take(self) -> dict[_Pending, int]:
        with self._lock:
            counts, self._counts = self._counts, {}
        return counts

    def _give_back(self, counts: Mapping[_Pending, int]) -> None:
        with self._lock:
            for key, n in counts.items():
                self._counts[key] = self._counts.get(key, 0) + n

    def flush(self, db: Database, now: dt.datetime) -> int:
        """Add the counts to `request_tallies` in one transaction; the number of keys written.
        On any error the counts stay for the next flush and the error propagates."""
        counts = self._take()
        if not counts:
            return 0
        try:
            with db.session() as session:
                write(session, _keyed(counts), now)
                if self._pruned != hour_of(now):  # once an hour per process is enough
                    prune(session, now)
        except BaseException:
            self._give_back(counts)
            raise
        self._pruned = hour_of(now)
        return len(counts)


def _keyed(counts: Mapping[_Pending, int]) -> dict[Key, int]:
    return {
        (dt.datetime.fromtimestamp(hour * 3600, dt.UTC), route, status_class, le): n
        for (hour, route, status_class, le), n in counts.items()
    }


def write(session: Session, counts: Mapping[Key, int], now: dt.datetime) -> None:
    table = RequestTally.__table__
    stmt = upsert_insert(session.get_bind().dialect.name, table)
    stmt = stmt.on_conflict_do_update(
        index_elements=["hour", "route", "status_class", "le"],
        set_={"count": table.c.count + stmt.excluded.count, "updated_at": stmt.excluded.updated_at},
    )
    rows = [
        {
            "hour": hour,
            "route": route,
            "status_class": status_class,
            "le": le,
            "count": n,
            "created_at": now,
            "updated_at": now,
        }
        for (hour, route, status_class, le), n in sorted(counts.items())
    ]
    session.execute(stmt, rows)


def prune(session: Session, now: dt.datetime) -> None:
    session.execute(delete(RequestTally).where(RequestTally.hour < hour_of(now - KEEP)))


def read(session: Session, since: dt.datetime, now: dt.datetime) -> list[tuple[str, str, str, int]]:
    """(route, status class, le, count) summed over the hours that start in [since's hour,
    now): the report's window, to the hour."""
    return [
        (route, status_class, le, int(n))
        for route, status_class, le, n in session.execute(
            select(
                RequestTally.route,
                RequestTally.status_class,
                RequestTally.le,
                func.sum(RequestTally.count),
            )
            .where(RequestTally.hour >= hour_of(since), RequestTally.hour < now)
            .group_by(RequestTally.route, RequestTally.status_class, RequestTally.le)
        )
    ]
