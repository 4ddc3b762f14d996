"""`faithflow streams ingest-views FILE`: a session's player beacons (join, heartbeat, leave)
from a CSV or JSON-lines file into `stream_view_events`, for `streams analytics`.

Every line is checked (session, viewer id, kind, timestamp, source); a file with a bad line
imports nothing and the UserError names the lines (`line 7: bad timestamp '…'`). The rows go in
inside the caller's transaction, so a bad line found after the first batch rolls back the
batches before it. Re-importing a file adds nothing: (session, viewer, at, kind) is the dedupe
key. On Postgres the rows are COPYed into a temporary staging table and inserted from it with
`ON CONFLICT DO NOTHING` (one statement for the file); on SQLite they go through
`faithflow_ops.bulk.insert_rows` in batches. Then each session the file added events to has its
views rebuilt (`analytics.build_views`), so `streams analytics` reads views, not heartbeats.

The file (docs/streams.md):

- CSV with a header row, or JSON lines (one object per line); the columns / keys are
  `session_id` (optional with `--session`), `viewer_id`, `kind` (`join|heartbeat|leave`), `at`
  (ISO-8601 with an offset or `Z`, or Unix seconds), `source` (`web|app|embed|social|other`;
  empty means `other`) and `referrer` (a URL or a host; kept as its host, `www.` dropped).
  Other columns / keys are ignored.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import math
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast
from urllib.parse import urlsplit

from sqlalchemy import Table, func, select, text
from sqlalchemy.orm import Session

from faithflow_ops.bulk import insert_rows
from faithflow_ops.clock import parse_time
from faithflow_ops.db import rowcount
from faithflow_ops.errors import UserError
from faithflow_ops.models import StreamSession, StreamView, StreamViewEvent
from faithflow_ops.models.stream_views import VIEW_KINDS, VIEW_SOURCES
from faithflow_ops.streams.analytics import build_views

FORMATS = ("csv", "jsonl")
BATCH = 5000  # rows per insert batch (SQLite) / per COPY chunk (Postgres)
MAX_ERRORS_SHOWN = 5  # lines named in the message; the count says how many more
MAX_VIEWER_ID = 128
MAX_REFERRER = 255
COLUMNS = ("session_id", "viewer_id", "kind", "at", "source", "referrer")
_EVENTS = cast(Table, StreamViewEvent.__table__)
_EARLIEST, _LATEST = 1970, 8999
_EXAMPLE_AT = "2026-03-08T14:05:00Z"


@dataclass(frozen=True)
class IngestResult:
    file: str
    lines: int  # events read (data lines)
    inserted: int
    duplicates: int  # already imported (same session, viewer, time and kind)
    sessions: list[int]
    seconds: float  # parse + validate + insert
    views: int  # the sessions' views after the import (rebuilt when it added events)
    views_seconds: float  # rebuilding them

    @property
    def per_second(self) -> float:
        return self.lines / self.seconds if self.seconds > 0 else 0.0

    def doc(self) -> dict[str, Any]:
        return {
            "file": self.file,
            "lines": self.lines,
            "inserted": self.inserted,
            "duplicates": self.duplicates,
            "sessions": self.sessions,
            "seconds": round(self.seconds, 3),
            "events_per_second": round(self.per_second),
            "views": self.views,
            "views_seconds": round(self.views_seconds, 3),
        }


def detect_format(path: str, fmt: str | None) -> str:
    """`--format`, else the file's extension (`.csv`; `.jsonl`, `.ndjson`, `.json`)."""
    if fmt is not None:
        fmt = fmt.strip().lower()
        if fmt not in FORMATS:
            raise UserError(f"--format {fmt!r} is not one of: {', '.join(FORMATS)}")
        return fmt
    suffix = Path(path).suffix.lower()
    if suffix == ".csv":
        return "csv"
    if suffix in (".jsonl", ".ndjson", ".json"):
        return "jsonl"
    raise UserError(f"cannot tell the format of {path} from its name; pass --format csv or jsonl")


def ingest_views(
    session: Session,
    path: str | Path,
    *,
    fmt: str | None = None,
    session_id: int | None = None,
) -> IngestResult:
    """Import the view events in the file at `path` (see the module docstring)."""
    name = str(path)
    kind = detect_format(name, fmt)
    try:
        handle = open(path, "rb")  # noqa: SIM115 - closed below
    except OSError as exc:
        raise UserError(f"cannot read {name}: {exc.strerror or exc}; check the path") from None
    with handle:
        return ingest_stream(
            session, _utf8_lines(handle), name=name, fmt=kind, session_id=session_id
        )


def ingest_stream(
    session: Session,
    stream: Iterable[str],
    *,
    name: str,
    fmt: str,
    session_id: int | None = None,
) -> IngestResult:
    """`ingest_views` over an open text stream (`name` is what messages call it)."""
    started = time.perf_counter()
    lines = _csv_records(stream, name) if fmt == "csv" else _jsonl_records(stream)
    errors: list[tuple[int, str]] = []
    known: dict[int, bool] = {}
    if session_id is not None:
        _check_sessions(session, [session_id], known, option=True)
    sink = _Sink(session)
    batch: list[tuple[int, dict[str, Any]]] = []
    count = 0
    sessions: set[int] = set()
    try:
        for line_no, record in lines:
            count += 1
            try:
                row = parse_record(record, session_id)
            except ValueError as exc:
                errors.append((line_no, str(exc)))
                continue
            batch.append((line_no, row))
            if len(batch) >= BATCH:
                _flush(session, sink, batch, known, errors, sessions)
                batch = []
        _flush(session, sink, batch, known, errors, sessions)
    except _FileError as exc:
        errors.append((exc.line, exc.message))
    if errors:
        raise UserError(_summary(name, errors))
    if count == 0:
        raise UserError(f"{name} has no view events; nothing imported")
    inserted = sink.finish()
    loaded = time.perf_counter()
    if inserted:  # the sessions' views, for `streams analytics`
        views = sum(build_views(session, sid) for sid in sorted(sessions))
    else:  # nothing new: the views stand
        views = (
            session.scalar(select(func.count()).where(StreamView.session_id.in_(sorted(sessions))))
            or 0
        )
    return IngestResult(
        file=name,
        lines=count,
        inserted=inserted,
        duplicates=count - inserted,
        sessions=sorted(sessions),
        seconds=loaded - started,
        views=views,
        views_seconds=time.perf_counter() - loaded,
    )


def _summary(name: str, errors: list[tuple[int, str]]) -> str:
    """One line: how many bad lines, the first few by line number."""
    ordered = sorted(errors)
    shown = "; ".join(f"line {line}: {message}" for line, message in ordered[:MAX_ERRORS_SHOWN])
    more = len(errors) - MAX_ERRORS_SHOWN
    tail = f"; and {more} more" if more > 0 else ""
    bad = f"{len(errors)} bad line{'s' if len(errors) != 1 else ''}"
    return f"{name}: {bad}, nothing imported: {shown}{tail}; fix them and import the file again"


class _FileError(Exception):
    """The file cannot be read on from `line` (no header, not UTF-8, broken CSV)."""

    def __init__(self, line: int, message: str) -> None:
        super().__init__(f"line {line}: {message}")
        self.line = line
        self.message = message


def _csv_records(stream: Iterable[str], name: str) -> Iterator[tuple[int, dict[str, Any]]]:
    reader = csv.DictReader(stream)
    try:
        header = reader.fieldnames
    except csv.Error as exc:
        raise _FileError(1, f"not a CSV header ({exc})") from None
    if not header:
        return
    fields = {(h or "").strip().lower() for h in header}
    missing = [c for c in ("viewer_id", "kind", "at") if c not in fields]
    if missing:
        raise _FileError(
            1,
            f"the header has no {', '.join(missing)} column; the columns are {', '.join(COLUMNS)}",
        )
    try:
        for record in reader:
            line = reader.line_num
            values = {(k or "").strip().lower(): v for k, v in record.items() if k is not None}
            if not any((v or "").strip() for v in values.values() if isinstance(v, str)):
                continue  # a blank line
            yield line, values
    except csv.Error as exc:
        raise _FileError(reader.line_num, f"not CSV ({exc})") from None


def _jsonl_records(stream: Iterable[str]) -> Iterator[tuple[int, dict[str, Any]]]:
    for line_no, line in enumerate(stream, start=1):
        if not line.strip():
            continue
        try:
            value = json.loads(line)
        except ValueError:
            value = None
        if not isinstance(value, dict):
            # reported like any bad line (parse_record refuses a non-dict)
            yield line_no, {"__not_json__": line.strip()[:40]}
            continue
        yield line_no, {str(k).lower(): v for k, v in value.items()}


def _utf8_lines(binary: Iterable[bytes]) -> Iterator[str]:
    """A file's lines decoded one by one (a UTF-8 byte-order mark dropped), so a line that is
    not UTF-8 is named by its number."""
    for line, raw in enumerate(binary, start=1):
        try:
            yield raw.decode("utf-8-sig" if line == 1 else "utf-8")
        except UnicodeDecodeError:
            raise _FileError(line, "not UTF-8 text; save the file as UTF-8") from None


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return str(value).lower()
    return str(value).strip()


def _shown(value: Any) -> str:
    shown = _text(value)
    return repr(shown if len(shown) <= 40 else shown[:37] + "...")


def parse_record(record: dict[str, Any], session_id: int | None) -> dict[str, Any]:
    """One line's row for stream_view_events; ValueError naming the first problem."""
    if "__not_json__" in record:
        raise ValueError(f"not a JSON object ({_shown(record['__not_json__'])})")
    raw_session = record.get("session_id", record.get("session"))
    if _text(raw_session) == "":
        if session_id is None:
            raise ValueError("no session_id; add the column or pass --session")
        sid = session_id
    else:
        try:
            sid = int(_text(raw_session))
        except ValueError:
            raise ValueError(f"session_id {_shown(raw_session)} is not a number") from None
        if session_id is not None and sid != session_id:
            raise ValueError(f"session_id {sid} is not --session {session_id}")
    viewer = _text(record.get("viewer_id"))
    if not viewer:
        raise ValueError("missing viewer_id")
    if len(viewer) > MAX_VIEWER_ID:
        raise ValueError(f"viewer_id is longer than {MAX_VIEWER_ID} characters")
    kind = _text(record.get("kind")).lower()
    if kind not in VIEW_KINDS:
        raise ValueError(f"unknown kind {_shown(record.get('kind'))}; use join, heartbeat or leave")
    at = parse_at(record.get("at"))
    source = _text(record.get("source")).lower() or "other"
    if source not in VIEW_SOURCES:
        raise ValueError(
            f"unknown source {_shown(record.get('source'))}; use one of {', '.join(VIEW_SOURCES)}"
        )
    return {
        "session_id": sid,
        "viewer_id": viewer,
        "kind": kind,
        "at": at,
        "source": source,
        "referrer": referrer_host(_text(record.get("referrer"))),
    }


def parse_at(value: Any) -> dt.datetime:
    """ISO-8601 with an offset or `Z` (a naive time is refused: whose clock?), or Unix seconds."""
    bad = ValueError(
        f"bad timestamp {_shown(value)}; use ISO-8601 with an offset (e.g. {_EXAMPLE_AT}) or "
        "Unix seconds"
    )
    if isinstance(value, bool) or value is None:
        raise bad
    if isinstance(value, int | float):
        return _from_epoch(float(value), bad)
    raw = _text(value)
    try:
        seconds = float(raw)
    except ValueError:
        pass
    else:
        return _from_epoch(seconds, bad)
    if "T" not in raw.upper() and " " not in raw:
        raise bad  # a bare date is not a beacon's time
    try:
        parsed = dt.datetime.fromisoformat(raw.replace("z", "Z"))
    except ValueError:
        raise bad from None
    if parsed.tzinfo is None:
        raise ValueError(
            f"timestamp {_shown(value)} has no offset; add Z or +HH:MM (e.g. {_EXAMPLE_AT})"
        )
    when = parse_time(raw)
    if not _EARLIEST <= when.year <= _LATEST:
        raise bad
    return when


def _from_epoch(seconds: float, bad: ValueError) -> dt.datetime:
    if not math.isfinite(seconds) or seconds < 0 or seconds >= 253_402_300_800:  # year 10000
        raise bad
    return dt.datetime.fromtimestamp(seconds, dt.UTC)


def referrer_host(value: str) -> str | None:
    """`https://www.Facebook.com/watch?v=1` → `facebook.com`; empty → None."""
    if not value:
        return None
    try:
        host = urlsplit(value if "//" in value else "//" + value).hostname or ""
    except ValueError:
        host = ""
    host = (host or value).strip().lower()
    if host.startswith("www."):
        host = host[4:]
    return host[:MAX_REFERRER] or None


def _check_sessions(
    session: Session, ids: Iterable[int], known: dict[int, bool], *, option: bool = False
) -> None:
    """Look up the sessions not seen before (one query) into `known`."""
    new = [sid for sid in ids if sid not in known]
    if not new:
        return
    found = set(session.scalars(select(StreamSession.id).where(StreamSession.id.in_(new))))
    for sid in new:
        known[sid] = sid in found
        if option and sid not in found:
            raise UserError(
                f"--session {sid}: no stream session with that id; see "
                "`faithflow streams sessions list`"
            )


def _flush(
    session: Session,
    sink: _Sink,
    batch: list[tuple[int, dict[str, Any]]],
    known: dict[int, bool],
    errors: list[tuple[int, str]],
    sessions: set[int],
) -> None:
    if not batch:
        return
    _check_sessions(session, {row["session_id"] for _, row in batch}, known)
    for line_no, row in batch:
        if not known[row["session_id"]]:
            errors.append((line_no, f"unknown session {row['session_id']}"))
        else:
            sessions.add(row["session_id"])
    if errors:
        return  # nothing more is written; the caller raises and the transaction rolls back
    sink.add([row for _, row in batch])


class _Sink:
    """Where the rows go: COPY into a staging table on Postgres (one INSERT … ON CONFLICT at
    the end), `insert_rows` batches on SQLite."""

    def __init__(self, session: Session) -> None:
        self.session = session
        self.postgres = session.get_bind().dialect.name == "postgresql"
        self.inserted = 0
        self.staged = False

    def add(self, rows: list[dict[str, Any]]) -> None:
        if not self.postgres:
            self.inserted += len(
                insert_rows(
                    self.session,
                    _EVENTS,
                    rows,
                    conflict=("session_id", "viewer_id", "at", "kind"),
                    returning=(_EVENTS.c.id,),
                )
            )
            return
        if not self.staged:
            self.session.execute(text("DROP TABLE IF EXISTS stream_view_staging"))
            self.session.execute(
                text(
                    "CREATE TEMPORARY TABLE stream_view_staging (session_id integer, "
                    "viewer_id text, kind text, at timestamptz, source text, referrer text) "
                    "ON COMMIT DROP"
                )
            )
            self.staged = True
        raw: Any = self.session.connection().connection.dbapi_connection
        with (
            raw.cursor() as cursor,
            cursor.copy(
                "COPY stream_view_staging (session_id, viewer_id, kind, at, source, referrer) "
                "FROM STDIN"
            ) as copy,
        ):
            for row in rows:
                copy.write_row(tuple(row[c] for c in COLUMNS))

    def finish(self) -> int:
        if not self.postgres:
            return self.inserted
        if not self.staged:
            return 0
        result = self.session.execute(
            text(
                "INSERT INTO stream_view_events (session_id, viewer_id, kind, at, source, "
                "referrer) SELECT session_id, viewer_id, kind, at, source, referrer "
                "FROM stream_view_staging ON CONFLICT DO NOTHING"
            )
        )
        self.session.execute(text("DROP TABLE stream_view_staging"))
        return rowcount(result)


def ingest_text(
    session: Session, content: str, *, name: str, fmt: str, session_id: int | None = None
) -> IngestResult:
    """`ingest_stream` over a string (tests, the demo)."""
    return ingest_stream(
        session, io.StringIO(content, newline=""), name=name, fmt=fmt, session_id=session_id
    )
