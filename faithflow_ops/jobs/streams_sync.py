"""`faithflow streams sync` (preview: `streams preview` = `sync --dry-run`;
POST /tasks/streams/sync; CRON_STREAMS_SYNC): bring sessions on Mux channels in line with their
live streams, take in their recordings, and alert a service not live 10 minutes after its start.

Action kinds (faithflow_ops/streams/sync.py has the rules; docs/streams.md the runbook):
`session_live`, `session_interrupted` (no signal: an incident), `session_ended` (the reconnect
window passed, or the stream was disabled), `recording_processing`, `recording_ready` (playback
URL and duration on the session), `recording_failed`, and `missed_start` (one incident per
session). apply claims the session in the state the plan saw, so a rerun changes nothing.

A `session_live` from `scheduled` also handles the Mux webhook events that waited for it (an
`idle` or asset event stored `unmatched` while the session was scheduled), in Mux's order and
in the same transaction, as the webhook that makes a session live does
(faithflow_ops/webhooks/mux_redrive.py).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from sqlalchemy.orm import Session

from faithflow_ops.actions import decode
from faithflow_ops.jobs.base import Action, Job, JobContext
from faithflow_ops.streams import sync
from faithflow_ops.webhooks import mux_redrive


class StreamsSync(Job):
    name = "streams_sync"
    table_columns = ("kind", "session", "from", "to", "provider")

    @classmethod
    def table_rows(cls, action: Action) -> list[tuple[Any, ...]]:
        return list(sync.table_rows(action))

    def plan(self, session: Session, ctx: JobContext) -> Iterator[Action]:
        return sync.plan(session, ctx.now, ctx.settings, ctx.limit)

    def apply(self, session: Session, ctx: JobContext, action: Action) -> None:
        change = decode(sync.StatusChange, action.data) if action.kind == "session_live" else None
        if change is None or change.expect != "scheduled":
            sync.apply(session, action, ctx.now)
            return
        mux_redrive.hold(session, change.session_id)
        sync.apply(session, action, ctx.now)
        mux_redrive.handle_waiting(session, change.session_id, ctx.now)


JOB = StreamsSync()
