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
    ],
)
def test_bad_calendar_and_breach_input_exits_2_with_a_message(
    world: Database, cli, args: tuple[str, ...]
) -> None:
    result = cli(*args)
    assert result.exit_code == 2, (result.stdout, result.stderr)
    assert "Traceback" not in result.stderr and result.stderr.strip()


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
