"""Analytics that credit only what reached the church (issue 21, point 9): "attempted" means
handed to a provider, and a recovery is credited to the last message delivered (or sent, for
e-mail) before the payment — on SQLite and Postgres, `now` pinned."""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import update
from test_dunning_job import NOW, World, settings
from test_dunning_job import run as dunning

from faithflow_ops.db import Database
from faithflow_ops.dunning.analytics import compute
from faithflow_ops.models import OutboundMessage

D, H = dt.timedelta(days=1), dt.timedelta(hours=1)
NO_WINDOW = settings(FAITHFLOW_DUNNING_WINDOW_HOURS="0")


@pytest.fixture
def world(db: Database) -> World:
    return World(db)


def mark(world: World, channel: str, status: str, **values: object) -> None:
    with world.db.session() as s:
        s.execute(
            update(OutboundMessage)
            .where(OutboundMessage.channel == channel, OutboundMessage.status != "canceled")
            .values(status=status, attempts=1, **values)
        )


def test_day5_sms_canceled_by_quiet_hours_gets_no_credit_day0_email_does(world: World) -> None:
    since = NOW - 5 * D - 13 * H  # a Tuesday, 21:00 in Lagos; day 5 is Sunday 21:00
    sub, case_id = world.past_due("grace", since)
    dunning(world.db, since, cfg=NO_WINDOW)  # day 0 e-mail, held by quiet hours to 08:00
    mark(world, "email", "sent", sent_at=since + 11 * H)
    dunning(world.db, since + 5 * D, cfg=NO_WINDOW)  # day 5 SMS, held by quiet hours to 08:00
    [sms] = world.messages(channel="sms")
    assert sms.status == "scheduled"
    world.pay(sub, since + 5 * D + 2 * H)  # 23:00: the SMS is canceled, never sent
    case = world.case(case_id)
    assert (case.status, case.recovered_after_step) == ("recovered", "day0")


def test_an_sms_delivered_after_the_payment_gets_no_credit(world: World) -> None:
    since = NOW - 5 * D
    sub, case_id = world.past_due("grace", since)
    dunning(world.db, since, cfg=NO_WINDOW)  # day 0 e-mail: bounced, failed for good
    mark(world, "email", "failed")
    dunning(world.db, since + 5 * D, cfg=NO_WINDOW)  # day 5 SMS: sent, delivery not yet known
    mark(world, "sms", "sent", sent_at=since + 5 * D)
    world.pay(sub, since + 5 * D + H)
    assert world.case(case_id).recovered_after_step is None


def test_a_delivered_sms_before_the_payment_gets_the_credit(world: World) -> None:
    since = NOW - 5 * D
    sub, case_id = world.past_due("grace", since)
    dunning(world.db, since + 5 * D, cfg=NO_WINDOW)  # found late: day 5 only
    at = since + 5 * D
    mark(world, "sms", "delivered", sent_at=at, delivered_at=at + dt.timedelta(minutes=1))
    world.pay(sub, at + H)
    assert world.case(case_id).recovered_after_step == "day5"


def test_a_case_found_late_counts_its_skipped_steps_as_skipped_not_attempted(
    world: World,
) -> None:
    since = NOW - 10 * D
    world.past_due("grace", since)
    dunning(world.db)  # day 10 taken; day 0, 3, 5, 7 passed over (6 attempt rows)
    with world.db.read_session() as s:
        doc = compute(s, since=since - D, until=NOW + D)
    assert doc["attempts"]["skipped"] == 6
    assert doc["attempts"]["total"] == 0  # the final notice is queued, not handed over yet
    mark(world, "email", "sent", sent_at=NOW)
    with world.db.read_session() as s:
        doc = compute(s, since=since - D, until=NOW + D)
    assert doc["attempts"]["total"] == 1
    rows = {(r["step"], r["channel"]): r for r in doc["attempts"]["by_step"]}
    assert rows[("day3", "payment_retry")] == {
        "step": "day3",
        "channel": "payment_retry",
        "attempts": 0,
        "recorded": 1,
        "skipped": 1,
    }
    assert rows[("day10", "email")]["attempts"] == 1
    assert rows[("day10", "sms")]["attempts"] == 0
