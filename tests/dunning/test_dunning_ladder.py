"""The ladder as a church's treasurer meets it (issue 21, points 5, 7 and 8): channel fallback,
the latest step that sends something, a pause that extends the grace, and payment retries kept
out of the church's quiet hours — each with `now` pinned, on SQLite and Postgres."""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import update
from test_dunning_job import NOW, World, ctx, kinds, run, settings

from faithflow_ops.db import Database
from faithflow_ops.jobs.dunning_run import JOB
from faithflow_ops.jobs.runner import apply_one
from faithflow_ops.models import OutboundMessage

D = dt.timedelta(days=1)
NO_WINDOW = settings(FAITHFLOW_DUNNING_WINDOW_HOURS="0")
# Saturday 7 March 2026, 22:00 UTC: 23:00 in Lagos (quiet: 21:00-08:00, then Sunday 06:00-14:00)
# and 17:00 in New York (not quiet).
SATURDAY_23_LAGOS = dt.datetime(2026, 3, 7, 22, 0, tzinfo=dt.UTC)
SUNDAY_14_LAGOS = dt.datetime(2026, 3, 8, 13, 0, tzinfo=dt.UTC)


@pytest.fixture
def world(db: Database) -> World:
    return World(db)


# --- point 8: channel fallback ---------------------------------------------------------------


def test_a_church_with_a_phone_and_no_email_gets_the_sms_version_on_day_0(world: World) -> None:
    _, case_id = world.past_due("phone-only", NOW, email=None)
    result = run(world.db)
    [send] = kinds(result, "send_step")
    assert (send.data["step"], send.data["channels"]) == ("day0", ["sms"])
    assert send.data["blocked"] == {"email": "no email address"}
    assert send.data["fallback"] == {"sms": "instead of email: no email address"}
    assert "falling back: sms: instead of email: no email address" in send.reason
    [message] = world.messages()
    assert (message.channel, message.template) == ("sms", "dunning_payment_failed")
    assert [(a.step, a.channel) for a in world.attempts(case_id)] == [("day0", "sms")]


def test_an_sms_step_for_a_church_that_opted_out_of_sms_goes_by_email(world: World) -> None:
    world.past_due("grace", NOW - 5 * D)
    world.prefs("grace", sms_opt_out=True)
    run(world.db, NOW - 2 * D, cfg=NO_WINDOW)  # day3
    [send] = kinds(run(world.db, cfg=NO_WINDOW), "send_step")
    assert (send.data["step"], send.data["channels"]) == ("day5", ["email"])
    assert send.data["blocked"] == {"sms": "sms opted out"}


def test_fallback_never_uses_a_channel_the_church_did_not_allow(world: World) -> None:
    world.past_due("grace", NOW, email=None)
    world.prefs("grace", channels=["email"])
    result = run(world.db)
    assert not kinds(result, "send_step")
    assert world.messages() == []


# --- point 7: the step taken is the latest that sends something --------------------------------


def test_a_case_found_after_the_handover_day_still_gets_its_final_notice(world: World) -> None:
    _, case_id = world.past_due("late", NOW - 15 * D)
    result = run(world.db)
    [send] = kinds(result, "send_step")
    assert send.data["step"] == "day10" and send.data["channels"] == ["email", "sms"]
    [skip] = kinds(result, "skip_steps")
    assert [s["step"] for s in skip.data["steps"]] == ["day0", "day3", "day5", "day7"]
    [handover] = kinds(result, "handover")
    assert handover.data["step"] == "day14"
    taken = {
        (a.step, a.channel)
        for a in world.attempts(case_id)
        if not a.detail or "skip" not in a.detail
    }
    assert ("day10", "email") in taken and ("day14", "handover") in taken


def test_a_pause_extends_the_grace_the_final_notice_announces(world: World) -> None:
    since = NOW - 13 * D
    world.past_due("grace", since)
    world.prefs("grace", paused_until=NOW - D, pause_note="treasurer pays on the 5th")
    [send] = kinds(run(world.db), "send_step")
    assert send.data["step"] == "day10"
    # 14 days' grace, final notice on day 10: after the pause the church still gets 4 days
    assert send.data["suspend_at"] == (NOW - D + 4 * D).isoformat()


# --- point 5: payment retries respect quiet hours ------------------------------------------------


def test_a_payment_retry_due_at_23_on_saturday_in_lagos_waits_for_the_quiet_hours_to_end(
    world: World,
) -> None:
    world.past_due("lagos", SATURDAY_23_LAGOS - 3 * D)
    world.past_due("newyork", SATURDAY_23_LAGOS - 3 * D, timezone="America/New_York")
    saturday = run(world.db, SATURDAY_23_LAGOS - 3 * D, cfg=NO_WINDOW)  # day0 for both
    assert len(kinds(saturday, "send_step")) == 2

    preview = run(world.db, SATURDAY_23_LAGOS, dry_run=True, cfg=NO_WINDOW)
    assert [a.data["tenant"] for a in kinds(preview, "retry_payment")] == ["newyork"]
    [held] = kinds(preview, "held")
    assert held.data["tenant"] == "lagos" and held.data["step"] == "day3"
    assert held.data["until"] == SUNDAY_14_LAGOS.isoformat()
    assert "quiet hours (Africa/Lagos)" in held.reason

    still = run(world.db, SUNDAY_14_LAGOS - dt.timedelta(minutes=1), dry_run=True, cfg=NO_WINDOW)
    assert "lagos" in [a.data["tenant"] for a in kinds(still, "held")]
    then = run(world.db, SUNDAY_14_LAGOS, dry_run=True, cfg=NO_WINDOW)
    assert "lagos" in [a.data["tenant"] for a in kinds(then, "retry_payment")]
    assert "lagos" not in [a.data["tenant"] for a in kinds(then, "held")]


def test_a_payment_retry_applied_inside_quiet_hours_is_stale(world: World) -> None:
    friday = dt.datetime(2026, 3, 6, 12, 0, tzinfo=dt.UTC)  # Friday 13:00 in Lagos
    world.past_due("lagos", friday - 3 * D)
    [retry] = kinds(run(world.db, friday, dry_run=True, cfg=NO_WINDOW), "retry_payment")
    late = apply_one(world.db, JOB, ctx(SATURDAY_23_LAGOS, cfg=NO_WINDOW), retry)
    assert late.outcome == "stale"
    assert "quiet hours" in (late.error or "")
    assert [a for a in world.attempts(retry.data["case_id"]) if a.channel == "payment_retry"] == []


# --- the preview explains every open case ---------------------------------------------------


def test_the_preview_says_where_each_quiet_case_stands_and_why(world: World) -> None:
    _, sent = world.past_due("sent", NOW - D)
    world.past_due("night", NOW - D, timezone="America/Los_Angeles")  # Sunday 01:00 there
    run(world.db, NOW - D, cfg=NO_WINDOW)  # day 0 for both: LA's waits out its quiet hours
    with world.db.session() as s:
        s.execute(
            update(OutboundMessage)
            .where(OutboundMessage.tenant_id == world.case(sent).tenant_id)
            .values(status="sent", sent_at=NOW - D)
        )
    later = NOW - D + dt.timedelta(hours=6)
    preview = run(world.db, later, dry_run=True)
    waiting = {a.data["tenant"]: a for a in kinds(preview, "waiting")}
    assert set(waiting) == {"sent", "night"}
    day3 = (NOW - D + 3 * D).isoformat()
    assert waiting["sent"].reason == f"next: step day3 (day 3) due {day3}; so far: day0 email: sent"
    la_14 = dt.datetime(2026, 3, 1, 22, 0, tzinfo=dt.UTC).isoformat()  # Sunday 06:00-14:00
    assert f"day0 email: scheduled for {la_14}" in waiting["night"].reason
    assert waiting["night"].data["history"] == [f"day0 email: scheduled for {la_14}"]
    assert preview.outcomes == {}
    assert not kinds(run(world.db, later), "waiting")  # a real run does not list them
