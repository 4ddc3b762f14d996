"""The session lifecycle as a table: every allowed status and recording transition is made and
recorded with its source; every other one is refused with a message naming what is allowed,
and writes nothing."""

from __future__ import annotations

import itertools

import pytest
from conftest import World, z

from faithflow_ops.actions import StaleAction
from faithflow_ops.models import StreamSession
from faithflow_ops.models.streams import RECORDING_STATUSES, SESSION_STATUSES
from faithflow_ops.streams import lifecycle
from faithflow_ops.streams.lifecycle import IllegalTransition

NOW = z("2026-03-08T14:01:00Z")

ALLOWED_STATUS = {
    ("scheduled", "live"), ("scheduled", "failed"), ("scheduled", "canceled"),
    ("live", "interrupted"), ("live", "ended"), ("live", "failed"),
    ("interrupted", "live"), ("interrupted", "ended"), ("interrupted", "failed"),
}  # fmt: skip
ALLOWED_RECORDING = {
    ("none", "processing"), ("none", "ready"), ("none", "failed"),
    ("processing", "ready"), ("processing", "failed"),
}  # fmt: skip


@pytest.mark.parametrize(
    ("field", "states", "allowed"),
    [("status", SESSION_STATUSES, ALLOWED_STATUS),
     ("recording", RECORDING_STATUSES, ALLOWED_RECORDING)],
)  # fmt: skip
def test_the_table_allows_exactly_these_transitions(
    field: str, states: tuple[str, ...], allowed: set[tuple[str, str]]
) -> None:
    for current, target in itertools.product(states, states):
        assert lifecycle.allowed(field, current, target) == ((current, target) in allowed), (
            current,
            target,
        )
        if (current, target) not in allowed:
            with pytest.raises(IllegalTransition, match=f"from {current} to {target}"):
                lifecycle.check(field, current, target)


def test_a_final_status_says_so() -> None:
    with pytest.raises(IllegalTransition, match=r"nothing \(ended is final\)"):
        lifecycle.check("status", "ended", "live")


def test_every_status_transition_on_the_database(world: World) -> None:
    for current, target in itertools.product(SESSION_STATUSES, SESSION_STATUSES):
        sid = world.session_at(current)
        with world.db.session() as session:
            row = session.get(StreamSession, sid)
            assert row is not None
            if (current, target) in ALLOWED_STATUS:
                lifecycle.move(session, row, target, source="operator", now=NOW, reason="t")
            else:
                with pytest.raises(IllegalTransition):
                    lifecycle.move(session, row, target, source="operator", now=NOW)
        after = world.get(sid)
        if (current, target) in ALLOWED_STATUS:
            assert after.status == target
            assert world.events(sid) == [("status", current, target, "operator")]
        else:
            assert after.status == current
            assert world.events(sid) == []


def test_every_recording_transition_on_the_database(world: World) -> None:
    for current, target in itertools.product(RECORDING_STATUSES, RECORDING_STATUSES):
        sid = world.session_at("ended", current)
        with world.db.session() as session:
            row = session.get(StreamSession, sid)
            assert row is not None
            if (current, target) in ALLOWED_RECORDING:
                lifecycle.record_recording(
                    session, row, target, source="provider_sync", now=NOW, asset_id="a1"
                )
            else:
                with pytest.raises(IllegalTransition):
                    lifecycle.record_recording(
                        session, row, target, source="provider_sync", now=NOW
                    )
        after = world.get(sid)
        if (current, target) in ALLOWED_RECORDING:
            assert (after.recording_status, after.recording_asset_id) == (target, "a1")
            assert world.events(sid) == [("recording", current, target, "provider_sync")]
        else:
            assert after.recording_status == current
            assert world.events(sid) == []


def test_times_follow_the_status(world: World) -> None:
    sid = world.sunday
    steps = [("live", "14:01"), ("interrupted", "14:30"), ("live", "14:31"), ("ended", "15:10")]
    for target, hhmm in steps:
        with world.db.session() as session:
            row = session.get(StreamSession, sid)
            assert row is not None
            lifecycle.move(session, row, target, source="webhook", now=z(f"2026-03-08T{hhmm}:00Z"))
            if target == "interrupted":
                assert row.interrupted_at == z("2026-03-08T14:30:00Z")
    after = world.get(sid)
    assert after.started_at == z("2026-03-08T14:01:00Z")  # the first time it went live
    assert after.interrupted_at is None  # it came back
    assert after.ended_at == z("2026-03-08T15:10:00Z")
    assert [e[2] for e in world.events(sid)] == ["live", "interrupted", "live", "ended"]


def test_a_move_planned_from_an_old_state_is_stale(world: World) -> None:
    with world.db.session() as session:
        row = session.get(StreamSession, world.sunday)
        assert row is not None
        lifecycle.move(session, row, "live", source="provider_sync", now=NOW)
    with world.db.session() as session:
        row = session.get(StreamSession, world.sunday)
        assert row is not None
        with pytest.raises(StaleAction):
            lifecycle.move(session, row, "live", source="provider_sync", now=NOW,
                           expect="scheduled")  # fmt: skip
    assert len(world.events(world.sunday)) == 1
