"""The stream session lifecycle: which status and recording transitions are allowed, and the one
function that makes each of them — claimed with a conditional UPDATE and recorded in
`stream_events` with its source (`provider_sync`, `webhook`, `operator`).

Status: a session is `scheduled` until the provider reports its stream live; a stream that
disconnects is `interrupted` (Mux keeps the live stream `active` for its reconnect window) and
goes back to `live` when the encoder reconnects, or `ended` when the window closes. `failed`
(never started, or broke beyond recovery) and `canceled` (by an operator, before it started)
are final, as is `ended`.

Recording: `none` → `processing` (the live stream's asset is being recorded) → `ready` (a
playback URL and a duration) or `failed` (Mux `errored`). A sync that first sees the asset
already ready goes straight from `none` to `ready`.
"""

from __future__ import annotations

import datetime as dt
from typing import Any, cast

from sqlalchemy import Table, update
from sqlalchemy.orm import Session

from faithflow_ops.actions import StaleAction
from faithflow_ops.db import rowcount
from faithflow_ops.errors import UserError
from faithflow_ops.models import StreamEvent, StreamSession
from faithflow_ops.models.streams import EVENT_SOURCES, RECORDING_STATUSES, SESSION_STATUSES

_SESSIONS = cast(Table, StreamSession.__table__)

STATUS_TRANSITIONS: dict[str, frozenset[str]] = {
    "scheduled": frozenset({"live", "failed", "canceled"}),
    "live": frozenset({"interrupted", "ended", "failed"}),
    "interrupted": frozenset({"live", "ended", "failed"}),
    "ended": frozenset(),
    "failed": frozenset(),
    "canceled": frozenset(),
}
RECORDING_TRANSITIONS: dict[str, frozenset[str]] = {
    "none": frozenset({"processing", "ready", "failed"}),
    "processing": frozenset({"ready", "failed"}),
    "ready": frozenset(),
    "failed": frozenset(),
}
FINAL_STATUSES = frozenset(s for s, nxt in STATUS_TRANSITIONS.items() if not nxt)
ACTIVE_STATUSES = ("scheduled", "live", "interrupted")  # what `streams sync` still watches

assert set(STATUS_TRANSITIONS) == set(SESSION_STATUSES)
assert set(RECORDING_TRANSITIONS) == set(RECORDING_STATUSES)


class IllegalTransition(UserError):
    """A transition the lifecycle does not allow (e.g. `ended` → `live`)."""


def allowed(field: str, current: str, target: str) -> bool:
    table = STATUS_TRANSITIONS if field == "status" else RECORDING_TRANSITIONS
    return target in table.get(current, frozenset())


def check(field: str, current: str, target: str) -> None:
    """IllegalTransition naming the states a `current` session may move to."""
    if allowed(field, current, target):
        return
    table = STATUS_TRANSITIONS if field == "status" else RECORDING_TRANSITIONS
    nxt = sorted(table.get(current, frozenset()))
    where = f"one of: {', '.join(nxt)}" if nxt else f"nothing ({current} is final)"
    raise IllegalTransition(
        f"a session's {field} cannot go from {current} to {target}; from {current} it may go to "
        f"{where}"
    )


def _record(
    session: Session,
    row: StreamSession,
    field: str,
    current: str,
    target: str,
    *,
    source: str,
    now: dt.datetime,
    reason: str | None,
) -> StreamEvent:
    if source not in EVENT_SOURCES:
        raise ValueError(f"unknown stream event source {source!r}")
    event = StreamEvent(
        tenant_id=row.tenant_id,
        session_id=row.id,
        field=field,
        from_state=current,
        to_state=target,
        source=source,
        reason=reason,
        occurred_at=now,
    )
    session.add(event)
    session.flush()
    return event


def move(
    session: Session,
    row: StreamSession,
    target: str,
    *,
    source: str,
    now: dt.datetime,
    reason: str | None = None,
    expect: str | None = None,
) -> StreamEvent:
    """Move `row`'s status to `target`: checked against the table, claimed with
    `UPDATE … WHERE status = <current>` (StaleAction if someone moved it first), recorded.

    `expect` is the status the caller planned from (a preview taken earlier); when given and the
    row has moved on since, the move is stale rather than re-judged."""
    session.refresh(row)
    current = row.status
    if expect is not None and current != expect:
        raise StaleAction(f"session {row.id} is {current} now, not {expect}")
    check("status", current, target)
    values: dict[str, Any] = {"status": target, "updated_at": now}
    if target == "live":
        values["interrupted_at"] = None
        if row.started_at is None:
            values["started_at"] = now
    elif target == "interrupted":
        values["interrupted_at"] = now
    elif target in FINAL_STATUSES:
        values["ended_at"] = now
    _claim(session, row, "status", current, values, f"session {row.id}")
    return _record(session, row, "status", current, target, source=source, now=now, reason=reason)


def _claim(
    session: Session,
    row: StreamSession,
    column: str,
    current: str,
    values: dict[str, Any],
    what: str,
) -> None:
    """Write `values` only while `row`'s `column` still holds `current` (another sync or an
    operator may have moved it since it was read); StaleAction otherwise."""
    result = session.execute(
        update(_SESSIONS)
        .where(_SESSIONS.c.id == row.id, _SESSIONS.c[column] == current)
        .values(**values)
    )
    if rowcount(result) != 1:
        raise StaleAction(f"{what} moved while it was being updated")
    session.refresh(row)


def record_recording(
    session: Session,
    row: StreamSession,
    target: str,
    *,
    source: str,
    now: dt.datetime,
    reason: str | None = None,
    asset_id: str | None = None,
    playback_url: str | None = None,
    duration_ms: int | None = None,
    expect: str | None = None,
) -> StreamEvent:
    """Move `row`'s recording status to `target` (with the asset, its playback URL and
    duration when it is ready), claimed and recorded like `move`."""
    session.refresh(row)
    current = row.recording_status
    if expect is not None and current != expect:
        raise StaleAction(f"session {row.id}'s recording is {current} now, not {expect}")
    check("recording", current, target)
    values: dict[str, Any] = {"recording_status": target, "updated_at": now}
    if asset_id is not None:
        values["recording_asset_id"] = asset_id
    if playback_url is not None:
        values["playback_url"] = playback_url
    if duration_ms is not None:
        values["duration_ms"] = duration_ms
    _claim(session, row, "recording_status", current, values, f"session {row.id}'s recording")
    return _record(
        session, row, "recording", current, target, source=source, now=now, reason=reason
    )
