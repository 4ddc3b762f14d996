"""Suspension respects the ladder (issue 21, point 7): `subs automate` holds a church whose
dunning is paused (the pause extends the grace) or whose final notice has not been delivered or
failed for good — on SQLite and Postgres, `now` pinned."""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import update
from test_dunning_job import NOW, World, kinds
from test_dunning_job import run as dunning

from faithflow_ops.config import Settings
from faithflow_ops.db import Database
from faithflow_ops.jobs import registry
from faithflow_ops.jobs.base import JobContext
from faithflow_ops.jobs.runner import RunResult, run_job
from faithflow_ops.models import OutboundMessage, Tenant

D = dt.timedelta(days=1)
SPEC = registry.get("subscriptions_automate")


@pytest.fixture
def world(db: Database) -> World:
    return World(db)


def automate(db: Database, now: dt.datetime, *, dry_run: bool = False) -> RunResult:
    ctx = JobContext(
        now=now, dry_run=dry_run, trigger="cli", settings=Settings.from_env({}), actor="test"
    )
    result = run_job(db, SPEC, ctx)
    assert result.status in ("succeeded", "partial"), result.error
    return result


def tenant_status(world: World, slug: str) -> str:
    with world.db.read_session() as s:
        return s.query(Tenant.status).filter(Tenant.slug == slug).scalar()


def set_messages(world: World, status: str, **extra: object) -> None:
    with world.db.session() as s:
        s.execute(update(OutboundMessage).values(status=status, **extra))


def test_a_paused_church_is_not_suspended_and_the_pause_extends_its_grace(world: World) -> None:
    since = NOW - 15 * D
    world.past_due("grace", since)
    world.prefs("grace", paused_until=NOW + 2 * D, pause_note="treasurer pays on the 5th")

    [held] = kinds(automate(world.db, NOW), "suspension_held")
    assert "dunning paused until" in held.reason and "treasurer pays on the 5th" in held.reason
    assert tenant_status(world, "grace") == "active"

    # the pause is over: the church still gets the ladder's notice period (14 - 10 = 4 days)
    after = automate(world.db, NOW + 3 * D, dry_run=True)
    [held] = kinds(after, "suspension_held")
    assert f"extended the grace to {(NOW + 6 * D).isoformat()}" in held.reason
    assert not kinds(after, "suspend_tenant")


def test_no_church_is_suspended_before_its_final_notice_is_delivered(world: World) -> None:
    since = NOW - 14 * D  # a Monday, 10:00 in Lagos: every run below is outside quiet hours
    world.past_due("grace", since)
    with world.db.session() as s:
        s.execute(update(Tenant).values(billing_grace_days=7))
    dunning(world.db, since + 7 * D)  # the ladder runs: day 7 is taken (day 0..5 passed over)

    [held] = kinds(automate(world.db, since + 8 * D), "suspension_held")
    assert "the final notice (day10) has not gone out yet" in held.reason
    assert tenant_status(world, "grace") == "active"

    dunning(world.db, since + 10 * D)  # the final notice: e-mail and SMS, queued
    [held] = kinds(automate(world.db, since + 10 * D), "suspension_held")
    assert "not delivered yet (email: queued, sms: queued)" in held.reason

    set_messages(world, "sent", sent_at=since + 10 * D)  # e-mail sent is delivered
    result = automate(world.db, since + 10 * D + dt.timedelta(hours=1))
    assert [a.action.kind for a in result.actions] == ["suspend_tenant"]
    assert tenant_status(world, "grace") == "suspended"


def test_a_final_notice_that_failed_for_good_lets_suspension_follow(world: World) -> None:
    since = NOW - 11 * D
    world.past_due("grace", since)
    dunning(world.db, since + 10 * D)
    set_messages(world, "failed")
    with world.db.session() as s:
        s.execute(update(Tenant).values(billing_grace_days=10))
    assert kinds(automate(world.db, NOW), "suspend_tenant")
    assert tenant_status(world, "grace") == "suspended"


def test_an_sms_final_notice_sent_without_a_callback_counts_after_48_hours(
    world: World,
) -> None:
    since = NOW - 11 * D
    world.past_due("grace", since, email=None)
    dunning(world.db, since + 10 * D)  # SMS only
    set_messages(world, "sent", sent_at=since + 10 * D)
    with world.db.session() as s:
        s.execute(update(Tenant).values(billing_grace_days=10))
    [held] = kinds(automate(world.db, NOW, dry_run=True), "suspension_held")
    assert "sms: sent" in held.reason
    assert kinds(automate(world.db, since + 12 * D, dry_run=True), "suspend_tenant")


def test_an_open_case_the_ladder_never_touched_is_held_until_dunning_runs(world: World) -> None:
    since = NOW - 15 * D  # the grace (14 days) ran out yesterday; the dunning job never ran
    world.past_due("grace", since)

    preview = automate(world.db, NOW, dry_run=True)
    [held] = kinds(preview, "suspension_held")
    assert "the final notice (day10) has not gone out yet" in held.reason, held.reason
    assert "run `faithflow dunning run`" in held.reason, held.reason
    assert not kinds(preview, "suspend_tenant")
    automate(world.db, NOW)
    assert tenant_status(world, "grace") == "active"

    dunning(world.db, NOW)  # the cron catches up: the final notice is the step it takes
    set_messages(world, "sent", sent_at=NOW)  # the dispatcher sent its e-mail
    assert kinds(automate(world.db, NOW + dt.timedelta(hours=1)), "suspend_tenant")
    assert tenant_status(world, "grace") == "suspended"


def test_without_a_dunning_case_suspension_follows_the_grace_alone(world: World) -> None:
    from faithflow_ops.models import DunningCase

    world.past_due("grace", NOW - 15 * D)
    with world.db.session() as s:  # dunning not in use for this subscription: no open case
        s.execute(update(DunningCase).values(status="canceled", closed_at=NOW - 15 * D))
    result = automate(world.db, NOW)
    assert [a.action.kind for a in result.actions] == ["suspend_tenant"]
    assert tenant_status(world, "grace") == "suspended"
