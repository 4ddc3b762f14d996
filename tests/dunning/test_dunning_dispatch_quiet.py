"""Quiet hours at send time (issue 21, point 5): the comms dispatcher re-checks the tenant's
quiet hours before every attempt of a dunning message, so a transient failure whose retry falls
at 21:00 in Lagos waits for 08:00 — across time zones, `now` pinned, on SQLite and Postgres."""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import update
from test_dunning_job import NOW, World, ctx, kinds
from test_dunning_job import run as dunning

from faithflow_ops.db import Database
from faithflow_ops.jobs import registry
from faithflow_ops.jobs.runner import RunResult, run_job
from faithflow_ops.models import OutboundMessage, Tenant

DISPATCH = registry.get("communications_dispatch")
MONDAY_21_LAGOS = dt.datetime(2026, 3, 2, 20, 0, tzinfo=dt.UTC)  # 15:00 in New York
TUESDAY_08_LAGOS = dt.datetime(2026, 3, 3, 7, 0, tzinfo=dt.UTC)


@pytest.fixture
def world(db: Database) -> World:
    return World(db)


def dispatch(db: Database, now: dt.datetime, *, dry_run: bool) -> RunResult:
    result = run_job(db, DISPATCH, ctx(now, dry_run))
    assert result.status in ("succeeded", "partial"), result.error
    return result


def retry_at(world: World, slug: str, at: dt.datetime, **values: object) -> int:
    """The tenant's dunning message failed once, transiently: its retry is due at `at`."""
    with world.db.session() as s:
        tenant_id = s.query(Tenant.id).filter(Tenant.slug == slug).scalar()
        s.execute(
            update(OutboundMessage)
            .where(OutboundMessage.tenant_id == tenant_id)
            .values(status="scheduled", next_attempt_at=at, attempts=1, **values)
        )
        return int(s.query(OutboundMessage.id).filter_by(tenant_id=tenant_id).scalar())


def test_a_retry_falling_at_21_in_lagos_is_deferred_to_08_new_york_is_sent(world: World) -> None:
    world.past_due("lagos", NOW)
    world.past_due("newyork", NOW, timezone="America/New_York")
    dunning(world.db, NOW)  # day 0 for both
    lagos = retry_at(world, "lagos", MONDAY_21_LAGOS - dt.timedelta(minutes=5))
    newyork = retry_at(world, "newyork", MONDAY_21_LAGOS - dt.timedelta(minutes=5))

    preview = dispatch(world.db, MONDAY_21_LAGOS, dry_run=True)
    [defer] = kinds(preview, "defer")
    assert defer.target == f"message:{lagos}"
    assert defer.data["until"] == TUESDAY_08_LAGOS.isoformat()
    assert "quiet hours (Africa/Lagos)" in defer.reason
    assert [a.target for a in kinds(preview, "send")] == [f"message:{newyork}"]

    retry_at(world, "newyork", MONDAY_21_LAGOS + dt.timedelta(hours=3))  # not due in this run
    result = dispatch(world.db, MONDAY_21_LAGOS, dry_run=False)
    assert result.outcomes == {"applied": 1}
    [message] = world.messages(id=lagos)
    assert (message.status, message.next_attempt_at, message.attempts) == (
        "scheduled",
        TUESDAY_08_LAGOS,
        1,
    )
    assert not kinds(dispatch(world.db, MONDAY_21_LAGOS, dry_run=True), "defer")


def test_only_dunning_messages_wait_for_the_tenants_quiet_hours(world: World) -> None:
    world.past_due("lagos", NOW)
    dunning(world.db, NOW)
    message = retry_at(world, "lagos", MONDAY_21_LAGOS, category="general")
    preview = dispatch(world.db, MONDAY_21_LAGOS, dry_run=True)
    assert [a.target for a in kinds(preview, "send")] == [f"message:{message}"]
    assert not kinds(preview, "defer")
