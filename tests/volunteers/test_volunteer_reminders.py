"""`volunteers remind` on both databases: one message per person and local day at 10:00 in the
event's time zone (DST-correct), pending people asked to accept or decline, declined and
blocked-out people left alone (leaders told instead), never twice, re-armed by a moved event."""

from __future__ import annotations

import datetime as dt

from conftest import Church, messages, run, z

from faithflow_ops.actions import decode, encode
from faithflow_ops.models import VolunteerAssignment
from faithflow_ops.volunteers import records
from faithflow_ops.volunteers.reminders import FlagBlockout, SendReminder

FRIDAY_EARLY = "2026-03-06T06:00:00Z"  # Fri 01:00 EST: the reminder day has begun in New York


def test_a_confirmed_volunteer_is_reminded_at_ten_local_two_days_before(church: Church) -> None:
    church.assign(church.ann, confirmed=True)
    assert run(church.db, "volunteer_reminders", "2026-03-06T04:30:00Z").counts == {}  # Thu
    result = run(church.db, "volunteer_reminders", FRIDAY_EARLY)
    assert result.status == "succeeded", result.error
    assert dict(result.counts) == {"send_reminder": 1}
    [m] = messages(church.db)
    assert (m.channel, m.recipient, m.status) == ("email", "ann@grace.example", "scheduled")
    assert m.not_before == z("2026-03-06T15:00:00Z")  # 10:00 EST
    assert "Reminder" in (m.subject or "") and "Sound (Tech) — confirmed" in m.body
    assert "Sun 8 Mar 2026 09:00 EDT" in m.body  # the event as the church reads it


def test_a_rerun_sends_nothing_more(church: Church) -> None:
    church.assign(church.ann, confirmed=True)
    run(church.db, "volunteer_reminders", FRIDAY_EARLY)
    again = run(church.db, "volunteer_reminders", "2026-03-06T16:00:00Z")
    assert again.counts == {}
    assert len(messages(church.db)) == 1


def test_pending_gets_a_prompt_declined_gets_nothing(church: Church) -> None:
    church.assign(church.ann)  # pending
    declined = church.assign(church.cy)
    church.respond(declined, accept=False)
    run(church.db, "volunteer_reminders", FRIDAY_EARLY)
    [m] = messages(church.db)
    assert m.recipient == "ann@grace.example"
    assert (m.subject or "").startswith("Please confirm")
    assert "please accept or decline" in m.body
    with church.db.read_session() as session:
        row = session.get(VolunteerAssignment, declined)
        assert row is not None and row.reminded_at is None


def test_two_assignments_on_one_day_are_condensed_into_one_message(church: Church) -> None:
    evening = church.event("2026-03-08T22:00:00Z")  # 18:00 EDT the same Sunday
    church.need(evening, "Sound", 1)
    church.assign(church.bob, confirmed=True)
    church.assign(church.bob, church.camera)  # pending, same service
    church.assign(church.bob, event=evening, confirmed=True)
    result = run(church.db, "volunteer_reminders", FRIDAY_EARLY)
    assert dict(result.counts) == {"send_reminder": 1}
    [action] = [r.action for r in result.actions]
    assert len(decode(SendReminder, action.data).items) == 3
    [m] = messages(church.db)
    assert (m.channel, m.recipient) == ("sms", "+15555550101")
    assert m.body.startswith("Grace Chapel: Please confirm") and "(+2 more)" in m.body


def test_a_blocked_out_person_gets_nothing_and_the_leader_is_told(church: Church) -> None:
    church.assign(church.ann, confirmed=True)
    church.assign(church.cy, church.camera, confirmed=True)
    with church.db.session() as session:
        # Cy is away every Sunday from 1 March (weekly, recurring)
        records.add_blockout(
            session, person_id=church.cy, starts_on=dt.date(2026, 3, 1), repeat="weekly",
            reason="visiting mother",
        )  # fmt: skip
    result = run(church.db, "volunteer_reminders", FRIDAY_EARLY)
    assert dict(result.counts) == {"send_reminder": 1, "flag_blockout": 1}
    assert dict(result.outcomes) == {"applied": 2}
    flag = next(r.action for r in result.actions if r.action.kind == "flag_blockout")
    assert flag.data == encode(decode(FlagBlockout, flag.data))
    sent = {(m.template, m.recipient) for m in messages(church.db)}
    assert sent == {
        ("volunteer_reminder", "ann@grace.example"),
        ("volunteer_conflict", "lola@grace.example"),
    }
    [conflict] = [m for m in messages(church.db) if m.template == "volunteer_conflict"]
    assert "Cy" in conflict.body and "visiting mother" in conflict.body
    assert run(church.db, "volunteer_reminders", "2026-03-07T16:00:00Z").counts == {}


def test_a_moved_event_re_arms_its_reminders(church: Church) -> None:
    church.assign(church.ann, confirmed=True)
    run(church.db, "volunteer_reminders", FRIDAY_EARLY)
    with church.db.session() as session:
        records.move_event(session, church.sunday, z("2026-03-08T15:00:00Z"))  # 11:00 EDT
    # Saturday: the day-before reminder day has not passed, so a moved event is reminded now
    result = run(church.db, "volunteer_reminders", "2026-03-07T12:00:00Z")
    assert dict(result.counts) == {"send_reminder": 1}
    later = messages(church.db)[-1]
    assert later.not_before == z("2026-03-07T15:00:00Z")  # Saturday 10:00 EST
    assert "11:00 EDT" in later.body
    assert run(church.db, "volunteer_reminders", "2026-03-07T16:00:00Z").counts == {}


def test_reminders_off_for_a_team_but_on_for_a_person(church: Church) -> None:
    with church.db.session() as session:
        team = records.get_team(session, church.team)
        team.reminder_days = -1
        records.get_person(session, church.cy).reminder_days = 1
    church.assign(church.ann, confirmed=True)
    church.assign(church.cy, church.camera, confirmed=True)
    assert run(church.db, "volunteer_reminders", FRIDAY_EARLY).counts == {}
    result = run(church.db, "volunteer_reminders", "2026-03-07T06:00:00Z")  # Saturday
    assert dict(result.counts) == {"send_reminder": 1}
    assert [m.recipient for m in messages(church.db)] == ["cy@grace.example"]


def test_a_lagos_church_is_reminded_at_ten_wat(church: Church) -> None:
    with church.db.session() as session:
        from faithflow_ops.tenancy.tenants import add_tenant

        add_tenant(session, slug="hope", name="Hope Parish", actor="t", timezone="Africa/Lagos")
        ada = records.add_person(session, tenant="hope", name="Ada", email="ada@hope.example")
        team = records.add_team(session, tenant="hope", name="Ushers")
        ev = records.add_event(
            session, tenant="hope", name="Sunday Mass", starts_at=z("2026-03-08T07:00:00Z")
        )
        need = records.set_need(session, event_id=ev.id, team_id=team.id, position="Door", needed=1)
        records.assign(
            session, event_id=ev.id, position_id=need.position_id, person_id=ada.id,
            confirmed=True, now=z("2026-02-01T00:00:00Z"),
        )  # fmt: skip
    run(church.db, "volunteer_reminders", "2026-03-05T23:30:00Z")  # Fri 00:30 WAT
    [m] = messages(church.db)
    assert m.not_before == z("2026-03-06T09:00:00Z")  # 10:00 WAT
    assert "08:00 WAT" in m.body


def test_the_preview_plans_and_writes_nothing(church: Church) -> None:
    church.assign(church.ann, confirmed=True)
    preview = run(church.db, "volunteer_reminders", FRIDAY_EARLY, dry_run=True)
    assert dict(preview.counts) == {"send_reminder": 1}
    assert messages(church.db) == []
    assert dict(run(church.db, "volunteer_reminders", FRIDAY_EARLY).counts) == {"send_reminder": 1}


def test_the_plans_fast_payloads_are_exactly_what_encode_writes(church: Church) -> None:
    from faithflow_ops.volunteers.gaps import Gap

    church.assign(church.bob, confirmed=True)
    church.assign(church.bob, church.camera)
    [action] = [
        r.action for r in run(church.db, "volunteer_reminders", FRIDAY_EARLY, dry_run=True).actions
    ]
    assert action.data == encode(decode(SendReminder, action.data))
    gaps = run(church.db, "volunteer_gap_alerts", "2026-03-05T13:00:00Z", dry_run=True).actions
    assert gaps and all(r.action.data == encode(decode(Gap, r.action.data)) for r in gaps)


def test_a_person_reminded_a_week_ahead_is_planned_a_week_ahead(church: Church) -> None:
    with church.db.session() as session:
        records.get_person(session, church.ann).reminder_days = 7
    church.assign(church.ann, confirmed=True)
    church.assign(church.cy, church.camera, confirmed=True)  # the default: 2 days
    result = run(church.db, "volunteer_reminders", "2026-03-01T06:00:00Z")  # Sun 01:00 EST
    assert [decode(SendReminder, r.action.data).person for r in result.actions] == ["Ann"]
    assert messages(church.db)[0].not_before == z("2026-03-01T15:00:00Z")
