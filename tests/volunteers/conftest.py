"""The volunteers area's fixtures: `church` seeds Grace Chapel (America/New_York) with a Tech
team (leader Lead Lola, positions Sound and Camera), volunteers Ann (email), Bob (SMS) and Cy
(email), and a service on Sunday 8 March 2026 09:00 EDT (the day clocks go forward), on both
databases. `run` runs a volunteers job through the runner as the CLI does."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

import pytest
from sqlalchemy import select

from faithflow_ops.config import Settings
from faithflow_ops.db import Database
from faithflow_ops.jobs import registry
from faithflow_ops.jobs.base import JobContext
from faithflow_ops.jobs.runner import RunResult, run_job
from faithflow_ops.models import OutboundMessage
from faithflow_ops.tenancy.tenants import add_tenant
from faithflow_ops.volunteers import records

UTC = dt.UTC


def z(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(UTC)


@dataclass
class Church:
    db: Database
    team: int
    leader: int
    ann: int
    bob: int
    cy: int
    sunday: int  # event: Sun 8 March 2026 09:00 EDT
    sound: int  # position ids
    camera: int

    def assign(self, person: int, position: int | None = None, *, event: int | None = None,
               confirmed: bool = False) -> int:  # fmt: skip
        with self.db.session() as session:
            row = records.assign(
                session,
                event_id=event or self.sunday,
                position_id=position or self.sound,
                person_id=person,
                confirmed=confirmed,
                now=z("2026-02-01T12:00:00Z"),
            )
            return row.id

    def event(self, start: str, name: str = "Evening Service", tz: str | None = None) -> int:
        with self.db.session() as session:
            return records.add_event(
                session, tenant="grace", name=name, starts_at=z(start), timezone=tz
            ).id

    def need(self, event: int, position: str, needed: int) -> int:
        with self.db.session() as session:
            return records.set_need(
                session, event_id=event, team_id=self.team, position=position, needed=needed
            ).id

    def respond(self, assignment: int, accept: bool) -> None:
        with self.db.session() as session:
            records.respond(
                session, assignment, accept=accept, reason=None, now=z("2026-02-02T00:00:00Z")
            )


def seed(db: Database) -> Church:
    with db.session() as session:
        add_tenant(
            session, slug="grace", name="Grace Chapel", actor="test", timezone="America/New_York"
        )
        leader = records.add_person(
            session, tenant="grace", name="Lead Lola", email="lola@grace.example"
        ).id
        ann = records.add_person(session, tenant="grace", name="Ann", email="ann@grace.example").id
        bob = records.add_person(
            session, tenant="grace", name="Bob", phone="+15555550101", channel="sms"
        ).id
        cy = records.add_person(session, tenant="grace", name="Cy", email="cy@grace.example").id
        team = records.add_team(session, tenant="grace", name="Tech", leaders=[leader]).id
        sunday = records.add_event(
            session, tenant="grace", name="Sunday Service", starts_at=z("2026-03-08T13:00:00Z")
        ).id
        sound = records.set_need(
            session, event_id=sunday, team_id=team, position="Sound", needed=1
        ).position_id
        camera = records.set_need(
            session, event_id=sunday, team_id=team, position="Camera", needed=2
        ).position_id
    return Church(db, team, leader, ann, bob, cy, sunday, sound, camera)


@pytest.fixture
def church(db: Database) -> Church:
    return seed(db)


def run(db: Database, job: str, now: str, *, dry_run: bool = False, **options: Any) -> RunResult:
    spec = registry.get(job)
    from faithflow_ops.jobs.options import fill

    opts = fill(spec.options, options, z(now), "json")
    ctx = JobContext(
        now=z(now), dry_run=dry_run, trigger="cli", settings=Settings.from_env(), options=opts
    )
    return run_job(db, spec, ctx)


def messages(db: Database) -> list[OutboundMessage]:
    with db.read_session() as session:
        rows = list(
            session.scalars(
                select(OutboundMessage)
                .where(OutboundMessage.category == "volunteers")
                .order_by(OutboundMessage.id)
            )
        )
        session.expunge_all()
        return rows
