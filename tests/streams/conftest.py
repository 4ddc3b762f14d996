"""The streams area's fixtures: `world` seeds Grace Chapel with a Mux channel (live stream
`mux-ls-1`, reconnect window 60 s) and a custom one, and a session scheduled for Sunday
8 March 2026 14:00Z, on both databases."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import pytest
from sqlalchemy import select, update

from faithflow_ops.db import Database
from faithflow_ops.models import StreamEvent, StreamSession
from faithflow_ops.streams import records
from faithflow_ops.tenancy.tenants import add_tenant

UTC = dt.UTC
SUNDAY = "2026-03-08T14:00:00Z"
BEFORE = "2026-03-01T12:00:00Z"


def z(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(UTC)


@dataclass
class World:
    db: Database
    channel: int  # mux, live stream mux-ls-1
    custom: int
    sunday: int  # session

    def session_at(self, status: str = "scheduled", recording: str = "none",
                   start: str = SUNDAY, channel: int | None = None) -> int:  # fmt: skip
        """A new session forced into `status` / `recording` (as if it got there earlier)."""
        with self.db.session() as session:
            row = records.schedule_session(
                session, channel_id=channel or self.channel, title="Extra",
                start=z(start), now=z(BEFORE) - dt.timedelta(days=30),
            )  # fmt: skip
            session.execute(
                update(StreamSession)
                .where(StreamSession.id == row.id)
                .values(status=status, recording_status=recording)
            )
            return row.id

    def get(self, session_id: int) -> StreamSession:
        with self.db.read_session() as session:
            row = session.get(StreamSession, session_id)
            assert row is not None
            session.expunge(row)
            return row

    def events(self, session_id: int) -> list[tuple[str, str, str, str]]:
        with self.db.read_session() as session:
            return [
                (e.field, e.from_state, e.to_state, e.source)
                for e in session.scalars(
                    select(StreamEvent)
                    .where(StreamEvent.session_id == session_id)
                    .order_by(StreamEvent.id)
                )
            ]


def seed(db: Database) -> World:
    with db.session() as session:
        add_tenant(session, slug="grace", name="Grace Chapel", actor="test", timezone="UTC")
        channel = records.add_channel(
            session, tenant="grace", name="Sunday services", provider="mux", stream_id="mux-ls-1"
        ).id
        custom = records.add_channel(session, tenant="grace", name="Youth", provider="custom").id
        sunday = records.schedule_session(
            session, channel_id=channel, title="Sunday Service", start=z(SUNDAY), now=z(BEFORE)
        ).id
    return World(db, channel, custom, sunday)


@pytest.fixture
def world(db: Database) -> World:
    return seed(db)
