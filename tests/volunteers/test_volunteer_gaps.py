"""`volunteers gaps` on both databases: needed − confirmed per position (pending is tentative),
alerts to the team leaders at 7, 3 and 1 days before, again when the gap grows, never twice for
an unchanged gap at the same threshold; a filled gap closes silently, a late gap alerts at once.

The church's Sunday service starts 2026-03-08T13:00Z and needs 1 Sound and 2 Camera."""

from __future__ import annotations

from conftest import Church, messages, run

from faithflow_ops.actions import decode
from faithflow_ops.models import VolunteerNeed
from faithflow_ops.volunteers.gaps import Gap

DAY8 = "2026-02-28T12:00:00Z"  # 8 days + 1 h before: within the horizon, no threshold yet
DAY7 = "2026-03-01T13:00:00Z"
DAY3 = "2026-03-05T13:00:00Z"
DAY1 = "2026-03-07T13:00:00Z"


def gaps(result: object) -> dict[str, tuple[str, int, int, int | None]]:
    out = {}
    for r in result.actions:  # type: ignore[attr-defined]
        g = decode(Gap, r.action.data)
        out[g.position] = (r.action.kind, g.gap, g.pending, g.threshold)
    return out


def test_gaps_alert_the_leaders_at_seven_days_pending_is_tentative(church: Church) -> None:
    church.assign(church.ann, confirmed=True)  # Sound filled
    church.assign(church.cy, church.camera)  # Camera: 1 pending, gap 2
    assert run(church.db, "volunteer_gap_alerts", DAY8).counts == {}
    result = run(church.db, "volunteer_gap_alerts", DAY7)
    assert gaps(result) == {"Camera": ("gap_alert", 2, 1, 7)}
    [m] = messages(church.db)
    assert (m.template, m.recipient) == ("volunteer_gap_alert", "lola@grace.example")
    assert "still needs 2 Camera" in m.body and "0 of 2 confirmed, 1 tentative" in m.body


def test_an_unchanged_gap_is_not_alerted_again_until_the_next_threshold(church: Church) -> None:
    run(church.db, "volunteer_gap_alerts", DAY7)
    assert len(messages(church.db)) == 2  # Sound and Camera
    assert run(church.db, "volunteer_gap_alerts", "2026-03-02T13:00:00Z").counts == {}
    third = run(church.db, "volunteer_gap_alerts", DAY3)
    assert {k: v[0] for k, v in gaps(third).items()} == {
        "Sound": "gap_alert",
        "Camera": "gap_alert",
    }
    assert run(church.db, "volunteer_gap_alerts", "2026-03-06T13:00:00Z").counts == {}
    last = run(church.db, "volunteer_gap_alerts", DAY1)
    assert {v[3] for v in gaps(last).values()} == {1}
    assert len(messages(church.db)) == 6


def test_a_growing_gap_alerts_again_at_the_same_threshold(church: Church) -> None:
    camera = church.assign(church.cy, church.camera, confirmed=True)  # gap 1
    church.assign(church.ann, confirmed=True)  # Sound filled
    assert gaps(run(church.db, "volunteer_gap_alerts", DAY7)) == {"Camera": ("gap_alert", 1, 0, 7)}
    church.respond(camera, accept=False)  # Cy drops out: gap 2
    again = run(church.db, "volunteer_gap_alerts", "2026-03-02T13:00:00Z")
    assert gaps(again) == {"Camera": ("gap_alert", 2, 0, 7)}
    assert len(messages(church.db)) == 2


def test_a_filled_gap_closes_silently_and_a_late_gap_alerts_at_once(church: Church) -> None:
    church.assign(church.ann, confirmed=True)
    church.assign(church.bob, church.camera, confirmed=True)
    cy = church.assign(church.cy, church.camera)
    run(church.db, "volunteer_gap_alerts", DAY7)  # Camera gap 1
    assert len(messages(church.db)) == 1
    church.respond(cy, accept=True)  # filled
    closed = run(church.db, "volunteer_gap_alerts", "2026-03-02T13:00:00Z")
    assert gaps(closed) == {"Camera": ("gap_closed", 0, 0, 7)}
    assert len(messages(church.db)) == 1  # silently
    with church.db.read_session() as session:
        assert {n.alerted_threshold for n in session.query(VolunteerNeed)} == {None}
    church.respond(cy, accept=False)  # Cy declines two days before: late gap
    late = run(church.db, "volunteer_gap_alerts", "2026-03-06T14:00:00Z")
    assert gaps(late) == {"Camera": ("gap_alert", 1, 0, 3)}  # at once, not at the 1-day mark
    assert len(messages(church.db)) == 2


def test_events_past_the_horizon_are_left_out(church: Church) -> None:
    far = church.event("2026-03-20T13:00:00Z")
    church.need(far, "Sound", 1)
    # the Sunday service is 7 days away; the far event 19: outside a 14-day horizon
    assert {
        g[0] for g in gaps(run(church.db, "volunteer_gap_alerts", DAY7, dry_run=True)).items()
    } == {
        "Sound",
        "Camera",
    }
    short = run(church.db, "volunteer_gap_alerts", DAY7, dry_run=True, horizon_days=3)
    assert short.counts == {}
    assert messages(church.db) == []


def test_an_alerted_event_moved_past_the_thresholds_still_closes_when_filled(
    church: Church,
) -> None:
    from conftest import z

    from faithflow_ops.volunteers import records

    church.assign(church.ann, confirmed=True)
    church.assign(church.bob, church.camera, confirmed=True)
    cy = church.assign(church.cy, church.camera)
    run(church.db, "volunteer_gap_alerts", DAY7)  # Camera gap 1 alerted
    with church.db.session() as session:
        records.move_event(session, church.sunday, z("2026-03-12T13:00:00Z"))  # 10 days away
    assert run(church.db, "volunteer_gap_alerts", "2026-03-02T13:00:00Z").counts == {}
    church.respond(cy, accept=True)
    closed = run(church.db, "volunteer_gap_alerts", "2026-03-02T14:00:00Z")
    assert gaps(closed) == {"Camera": ("gap_closed", 0, 0, None)}


def test_a_gap_found_at_night_reaches_the_leader_at_eight_local(church: Church) -> None:
    from conftest import z

    church.assign(church.ann, confirmed=True)
    run(church.db, "volunteer_gap_alerts", "2026-03-05T04:00:00Z")  # Wed 23:00 EST
    [m] = messages(church.db)
    assert (m.status, m.not_before) == ("scheduled", z("2026-03-05T13:00:00Z"))  # 08:00 EST
