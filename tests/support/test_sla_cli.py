"""`sla calendar …` and `sla breaches` filters through the CLI, on both dialects: the calendar an
operator sets is the one the clocks count on (time zone, split hours, holidays), and the
breach listing's --since / --priority filters."""

from __future__ import annotations

from typing import Any

import pytest
from support_world import call, open_ticket, sweep

from faithflow_ops.db import Database


def due(doc: dict[str, Any], metric: str = "first_response") -> str:
    return str(doc["clocks"][metric]["due_at"])


def test_the_calendar_set_from_the_cli_is_what_the_clocks_count_on(world: Database, cli) -> None:
    call(
        cli,
        "sla", "calendar", "set", "--timezone", "Africa/Lagos",
        "--hours", "mon-fri 08:00-12:00", "--hours", "mon-fri 13:00-17:00",
    )  # fmt: skip
    call(cli, "sla", "calendar", "holiday", "add", "2026-03-03", "--name", "Founders Day")
    shown = call(cli, "sla", "calendar", "show")
    assert shown["timezone"] == "Africa/Lagos"
    assert [h["date"] for h in shown["holidays"]] == ["2026-03-03"]
    # high first response = 60 business minutes. Monday 11:30 Lagos (10:30 UTC): 30 minutes
    # before lunch, 30 after it -> 13:30 Lagos = 12:30 UTC
    lunch = open_ticket(cli, "high", now="2026-03-02T10:30:00Z")
    assert due(lunch) == "2026-03-02T12:30:00+00:00"
    # Monday 16:30 Lagos: 30 minutes, Tuesday is the holiday, 30 minutes on Wednesday 08:00
    late = open_ticket(cli, "high", now="2026-03-02T15:30:00Z")
    assert due(late) == "2026-03-04T07:30:00+00:00"
    call(cli, "sla", "calendar", "holiday", "remove", "2026-03-03")
    again = open_ticket(cli, "high", now="2026-03-02T15:30:00Z")
    assert due(again) == "2026-03-03T07:30:00+00:00"  # Tuesday works again


@pytest.mark.parametrize(
    "args",
    [
        ("sla", "calendar", "set", "--timezone", "Mars/Olympus_Mons"),
        ("sla", "calendar", "set", "--hours", "mon-fri 17:00-09:00"),
        ("sla", "calendar", "holiday", "add", "2026-02-30"),
        ("sla", "calendar", "holiday", "remove", "2026-12-25"),  # not a holiday
        ("sla", "breaches", "--priority", "vip"),
        ("sla", "breaches", "--since", "last tuesday"),
        ("sla", "calendar", "holiday", "add", "2026-04-03", "--now", "friday"),
        ("sla", "calendar", "set", "--timezone", "Africa/Lagos", "--now", ""),
        ("sla", "policy", "set", "--metric", "resolution", "--target", "4h", "--now", "x"),
    ],
)
def test_bad_calendar_and_breach_input_exits_2_with_a_message(
    world: Database, cli, args: tuple[str, ...]
) -> None:
    result = cli(*args)
    assert result.exit_code == 2, (result.stdout, result.stderr)
    assert "Traceback" not in result.stderr and result.stderr.strip()
    # nothing written: the calendar and the policies are the defaults still
    assert call(cli, "sla", "calendar", "show")["source"] == "default"
    assert {p["source"] for p in call(cli, "sla", "policy", "show")} == {"default"}


def test_breaches_filter_by_since_and_priority(world: Database, cli) -> None:
    urgent = open_ticket(cli, "urgent")["id"]  # first response due 09:30 (30 calendar min)
    high = open_ticket(cli, "high")["id"]  # due 10:00 (60 business min, 09-17 UTC)
    sweep(cli, "2026-03-02T10:40:00Z")

    def listed(*args: str) -> list[tuple[int, str]]:
        found = call(cli, "sla", "breaches", *args)
        return [
            (b["ticket_id"], b["breached_at"]) for b in found if b["metric"] == "first_response"
        ]

    both = listed()
    assert sorted(both) == [
        (urgent, "2026-03-02T09:30:00+00:00"),
        (high, "2026-03-02T10:00:00+00:00"),
    ]
    assert listed("--priority", "high") == [(high, "2026-03-02T10:00:00+00:00")]
    assert listed("--since", "2026-03-02T09:45:00Z") == [(high, "2026-03-02T10:00:00+00:00")]
    assert sorted(listed("--since", "2026-03-02")) == sorted(both)
    assert listed("--since", "2026-03-03") == []


def test_breaches_since_a_duration_count_back_from_now(world: Database, cli) -> None:
    urgent = open_ticket(cli, "urgent")["id"]  # first response breached at 09:30
    high = open_ticket(cli, "high")["id"]  # breached at 10:00
    sweep(cli, "2026-03-02T10:40:00Z")

    def listed(*args: str) -> list[int]:
        found = call(cli, "sla", "breaches", *args)
        return sorted(b["ticket_id"] for b in found if b["metric"] == "first_response")

    assert listed("--since", "24h", "--now", "2026-03-02T11:00:00Z") == sorted([urgent, high])
    assert listed("--since", "1h", "--now", "2026-03-02T11:00:00Z") == [high]  # from 10:00
    assert listed("--since", "24h", "--now", "2026-03-04T09:00:00Z") == []


# a calendar or policy change reaches the open tickets in its own transaction (issue 22 #9)


def test_a_holiday_declared_in_advance_moves_the_open_clocks_due_that_day(
    world: Database, cli
) -> None:
    # normal first response: 4 business hours (Mon-Fri 09-17 UTC). Opened Thursday 16:00:
    # 1 h on Thursday, 3 h on Friday 2026-04-03 -> due Friday 12:00
    t = open_ticket(cli, "normal", now="2026-04-02T16:00:00Z")
    assert due(t) == "2026-04-03T12:00:00+00:00"
    assert due(t, "resolution") == "2026-04-07T16:00:00+00:00"  # 24 business hours
    added = call(
        cli,
        "sla", "calendar", "holiday", "add", "2026-04-03", "--name", "Good Friday",
        "--now", "2026-04-02T17:30:00Z",
    )  # fmt: skip
    report = added["recomputed"]
    assert (report["clocks_moved"], report["tickets_moved"], report["dry_run"]) == (2, 1, False)
    assert {m["metric"]: (m["due_before"], m["due_after"]) for m in report["moved"]} == {
        # Friday is off: the 3 hours left are Monday's first three
        "first_response": ("2026-04-03T12:00:00+00:00", "2026-04-06T12:00:00+00:00"),
        "resolution": ("2026-04-07T16:00:00+00:00", "2026-04-08T16:00:00+00:00"),
    }
    shown = call(cli, "support", "tickets", "show", str(t["id"]), "--now", "2026-04-03T12:00:00Z")
    assert due(shown) == "2026-04-06T12:00:00+00:00"
    # the sweep on the holiday, at the old due time and late that night: nothing to mark
    assert sweep(cli, "2026-04-03T12:00:00Z")["counts"] == {}
    assert sweep(cli, "2026-04-03T23:00:00Z")["counts"] == {}
    out = sweep(cli, "2026-04-06T12:05:00Z")
    assert [(a["kind"], a["data"]["metric"], a["data"]["due_at"]) for a in out["actions"]] == [
        ("sla_breach", "first_response", "2026-04-06T12:00:00+00:00")
    ]


def test_a_dry_run_change_reports_the_moves_and_writes_nothing(world: Database, cli) -> None:
    t = open_ticket(cli, "normal", now="2026-04-02T16:00:00Z")
    preview = call(
        cli,
        "sla", "calendar", "holiday", "add", "2026-04-03",
        "--now", "2026-04-02T17:30:00Z", "--dry-run",
    )  # fmt: skip
    assert [h["date"] for h in preview["holidays"]] == ["2026-04-03"]  # what it would be
    assert (preview["recomputed"]["clocks_moved"], preview["recomputed"]["dry_run"]) == (2, True)
    assert call(cli, "sla", "calendar", "show")["holidays"] == []
    shown = call(cli, "support", "tickets", "show", str(t["id"]))
    assert due(shown) == "2026-04-03T12:00:00+00:00"
    text = cli("sla", "calendar", "holiday", "add", "2026-04-03", "--now",
               "2026-04-02T17:30:00Z", "--dry-run")  # fmt: skip
    assert text.exit_code == 0, text.stderr
    assert "2 open clocks would move on 1 ticket" in text.stderr
    assert "nothing was written" in text.stderr


def test_hours_and_policy_changes_move_open_clocks_and_say_how_many(world: Database, cli) -> None:
    high = open_ticket(cli, "high")["id"]  # Monday 09:00: first response due 10:00
    low = open_ticket(cli, "low")["id"]  # first response due 17:00 (1 business day)
    # 09:30: hours become 09:00-12:00 and 13:00-17:00. high has used 30 min, 30 left -> 10:00
    # (unchanged); low has 7h30 left: 09:30-12:00, 13:00-17:00 (6h30), Tuesday 09:00-10:00
    result = cli(
        "sla", "calendar", "set", "--hours", "mon-fri 09:00-12:00 13:00-17:00",
        "--now", "2026-03-02T09:30:00Z",
    )  # fmt: skip
    assert result.exit_code == 0, result.stderr
    assert "open clocks moved on 2 tickets of 2 open" in result.stderr
    shown = call(cli, "support", "tickets", "show", str(low), "--now", "2026-03-02T09:30:00Z")
    assert due(shown) == "2026-03-03T10:00:00+00:00"
    assert due(call(cli, "support", "tickets", "show", str(high))) == "2026-03-02T10:00:00+00:00"
    # a stricter high first response at 09:50: 30 min used of 15 -> due at the change, 09:50
    # (never before it: the ticket was in time under the target it had), breached there
    changed = call(
        cli,
        "sla", "policy", "set", "--metric", "first_response", "--priority", "high",
        "--target", "15m", "--hours", "calendar", "--now", "2026-03-02T09:50:00Z",
    )  # fmt: skip
    assert {p["priority"]: p["target_minutes"] for p in changed["policies"] if
            p["metric"] == "first_response"}["high"] == 15  # fmt: skip
    moved = [(m["ticket_id"], m["metric"], m["due_after"]) for m in changed["recomputed"]["moved"]]
    assert moved == [(high, "first_response", "2026-03-02T09:50:00+00:00")]
    out = sweep(cli, "2026-03-02T09:55:00Z")
    assert [(a["data"]["ticket_id"], a["kind"]) for a in out["actions"]] == [(high, "sla_breach")]
    found = call(cli, "sla", "breaches", "--since", "2026-03-02T09:45:00Z")
    assert [(b["ticket_id"], b["breached_at"]) for b in found] == [
        (high, "2026-03-02T09:50:00+00:00")
    ]


def test_a_clock_already_overdue_keeps_its_breach_when_the_calendar_changes(
    world: Database, cli
) -> None:
    t = open_ticket(cli, "high")["id"]  # first response due 10:00; no sweep ran
    added = call(
        cli, "sla", "calendar", "holiday", "add", "2026-03-02", "--now", "2026-03-02T10:30:00Z"
    )
    # the clock ran out at 10:00 under the calendar of the time: not moved, and the sweep
    # still marks it at 10:00
    assert [m["metric"] for m in added["recomputed"]["moved"]] == ["resolution"]
    out = sweep(cli, "2026-03-02T10:35:00Z")
    assert [(a["data"]["ticket_id"], a["data"]["due_at"]) for a in out["actions"]] == [
        (t, "2026-03-02T10:00:00+00:00")
    ]


def test_a_holiday_after_every_due_day_moves_and_touches_nothing(world: Database, cli) -> None:
    from sqlalchemy import select

    from faithflow_ops.models import SupportTicket

    t = open_ticket(cli, "high")["id"]  # Monday 09:00: due 10:00 and Monday 17:00
    added = call(
        cli, "sla", "calendar", "holiday", "add", "2026-03-10", "--now", "2026-03-02T09:30:00Z"
    )
    assert (added["recomputed"]["open_tickets"], added["recomputed"]["clocks_moved"]) == (1, 0)
    with world.read_session() as s:
        row = s.scalars(select(SupportTicket).filter_by(id=t)).one()
        # no checkpoint written: the ticket's history is as it was
        assert row.first_response_running_since is not None
        assert row.first_response_running_since.isoformat() == "2026-03-02T09:00:00+00:00"
        assert row.first_response_elapsed_seconds == 0
