"""Tickets through the CLI on both dialects: clocks on open/reply/status/reopen, pausing,
episodes, and every bad input (exit 2, a clear message, nothing written)."""

from __future__ import annotations

from typing import Any

import pytest
from helpers import said
from sqlalchemy import func, select
from support_world import MONDAY_9, call, open_ticket, sweep

from faithflow_ops.db import Database
from faithflow_ops.models import SlaEvent, SupportMessage, SupportTicket


def clocks(doc: dict[str, Any]) -> dict[str, Any]:
    return doc["clocks"]


def test_open_prints_the_ticket_with_its_id_and_running_clocks(world: Database, cli) -> None:
    doc = open_ticket(cli, "normal")
    assert doc["id"] >= 1 and doc["status"] == "new" and doc["tenant"] == "grace"
    assert doc["requester_email"] == "office@grace.example"
    fr, nr, res = (clocks(doc)[m] for m in ("first_response", "next_response", "resolution"))
    # normal: 4 business hours, 3 business days (Mon 09:00 → Wed 17:00)
    assert fr["state"] == "running" and fr["due_at"] == "2026-03-02T13:00:00+00:00"
    assert fr["warn_at"] == "2026-03-02T12:45:00+00:00"  # later of due-15 min and 80 %
    assert nr["state"] == "not started"
    assert res["due_at"] == "2026-03-04T17:00:00+00:00"


def test_urgent_targets_count_calendar_time_and_warn_at_80_percent(world: Database, cli) -> None:
    doc = open_ticket(cli, "urgent", now="2026-03-07T23:00:00Z")  # a Saturday night
    fr = clocks(doc)["first_response"]
    assert fr["due_at"] == "2026-03-07T23:30:00+00:00"
    assert fr["warn_at"] == "2026-03-07T23:24:00+00:00"  # 80 % of 30 min beats due-15 min


def test_agent_reply_fulfils_first_response_and_requester_reply_starts_next(
    world: Database, cli
) -> None:
    t = open_ticket(cli)["id"]
    doc = call(
        cli,
        "support",
        "tickets",
        "reply",
        str(t),
        "--as",
        "agent",
        "--body",
        "On it",
        "--agent",
        "ada@faithflow.example",
        "--now",
        "2026-03-02T10:00:00Z",
    )
    assert doc["status"] == "open" and doc["assignee"] == "ada@faithflow.example"
    assert clocks(doc)["first_response"]["state"] == "fulfilled"
    doc = call(
        cli,
        "support",
        "tickets",
        "reply",
        str(t),
        "--as",
        "requester",
        "--body",
        "Still",
        "--now",
        "2026-03-02T11:00:00Z",
    )
    nr = clocks(doc)["next_response"]
    assert nr["state"] == "running" and nr["episode"] == 1
    assert nr["due_at"] == "2026-03-03T11:00:00+00:00"  # 8 business hours later
    # a second requester message while waiting does not restart the clock
    doc = call(
        cli,
        "support",
        "tickets",
        "reply",
        str(t),
        "--as",
        "requester",
        "--body",
        "Hello?",
        "--now",
        "2026-03-02T12:00:00Z",
    )
    assert clocks(doc)["next_response"]["due_at"] == "2026-03-03T11:00:00+00:00"
    doc = call(
        cli,
        "support",
        "tickets",
        "reply",
        str(t),
        "--as",
        "agent",
        "--body",
        "Fixed",
        "--now",
        "2026-03-02T13:00:00Z",
    )
    assert clocks(doc)["next_response"]["state"] == "fulfilled"
    with world.read_session() as s:
        kinds = s.execute(
            select(
                SlaEvent.metric, SlaEvent.episode, SlaEvent.kind, SlaEvent.within_target
            ).order_by(SlaEvent.id)
        ).all()
    assert [tuple(k) for k in kinds] == [
        ("first_response", 1, "fulfilled", True),
        ("next_response", 1, "fulfilled", True),
    ]


def test_pending_pauses_resolution_and_resuming_moves_the_due_time(world: Database, cli) -> None:
    t = open_ticket(cli, "urgent")["id"]  # resolution 4 h calendar: due 13:00
    call(
        cli,
        "support",
        "tickets",
        "reply",
        str(t),
        "--as",
        "agent",
        "--body",
        "Need info",
        "--now",
        "2026-03-02T09:10:00Z",
    )
    doc = call(
        cli, "support", "tickets", "status", str(t), "pending", "--now", "2026-03-02T10:00:00Z"
    )
    res = clocks(doc)["resolution"]
    assert res["state"] == "paused" and res["due_at"] is None and res["used_seconds"] == 3600
    # the requester answers two hours later: back to open, resolution resumes with 3 h left
    doc = call(
        cli,
        "support",
        "tickets",
        "reply",
        str(t),
        "--as",
        "requester",
        "--body",
        "Here",
        "--now",
        "2026-03-02T12:00:00Z",
    )
    assert doc["status"] == "open"
    assert clocks(doc)["resolution"]["due_at"] == "2026-03-02T15:00:00+00:00"


def test_pausing_statuses_are_configurable(world: Database, cli) -> None:
    call(cli, "sla", "policy", "set", "--metric", "resolution", "--pause", "on_hold")
    t = open_ticket(cli, "urgent")["id"]
    doc = call(
        cli, "support", "tickets", "status", str(t), "pending", "--now", "2026-03-02T10:00:00Z"
    )
    assert clocks(doc)["resolution"]["state"] == "running"
    doc = call(
        cli, "support", "tickets", "status", str(t), "on_hold", "--now", "2026-03-02T10:30:00Z"
    )
    assert clocks(doc)["resolution"]["state"] == "paused"


def test_solve_then_reopen_resumes_the_resolution_clock(world: Database, cli) -> None:
    # Zendesk's rule (docs/support.md "Reopened tickets"): a reopened ticket's resolution
    # clock resumes with the time it had used; it does not restart with a fresh target
    t = open_ticket(cli, "urgent")["id"]  # resolution: 4 calendar hours from 09:00
    doc = call(
        cli, "support", "tickets", "status", str(t), "solved", "--now", "2026-03-02T10:00:00Z"
    )
    assert doc["resolution"] == "solved" and doc["solved_at"] == "2026-03-02T10:00:00+00:00"
    assert all(c["state"] in ("fulfilled", "not started") for c in clocks(doc).values())
    doc = call(cli, "support", "tickets", "reopen", str(t), "--now", "2026-03-02T11:00:00Z")
    res = clocks(doc)["resolution"]
    assert doc["status"] == "open" and doc["reopen_count"] == 1 and doc["resolution"] is None
    # 1 h used before the solve, 3 h left from 11:00 (a restart would say 15:00); the time
    # solved (10:00-11:00) does not count
    assert res["episode"] == 2 and res["used_seconds"] == 3600
    assert res["state"] == "running" and res["due_at"] == "2026-03-02T14:00:00+00:00"
    # a requester reply on a solved ticket reopens it too: 2 h used, 2 h left from 13:00
    call(cli, "support", "tickets", "status", str(t), "solved", "--now", "2026-03-02T12:00:00Z")
    doc = call(
        cli,
        "support",
        "tickets",
        "reply",
        str(t),
        "--as",
        "requester",
        "--body",
        "Again",
        "--now",
        "2026-03-02T13:00:00Z",
    )
    assert doc["reopen_count"] == 2 and clocks(doc)["resolution"]["episode"] == 3
    assert clocks(doc)["resolution"]["due_at"] == "2026-03-02T15:00:00+00:00"
    with world.read_session() as s:
        done = s.scalars(select(SlaEvent).filter_by(metric="resolution", kind="fulfilled")).all()
    # each solve is its episode's fulfilment, with the clock time used so far
    assert [(e.episode, e.elapsed_seconds, e.within_target) for e in done] == [
        (1, 3600, True),
        (2, 7200, True),
    ]


def test_a_clock_stopped_after_its_due_time_records_the_breach_at_the_due_time(
    world: Database, cli
) -> None:
    t = open_ticket(cli, "urgent")["id"]  # first response due 09:30; no sweep ran
    doc = call(
        cli,
        "support",
        "tickets",
        "reply",
        str(t),
        "--as",
        "agent",
        "--body",
        "Sorry",
        "--now",
        "2026-03-02T09:50:00Z",
    )
    fr = clocks(doc)["first_response"]
    assert fr["breached_at"] == "2026-03-02T09:30:00+00:00"  # not 09:50
    with world.read_session() as s:
        breach = s.scalars(select(SlaEvent).filter_by(kind="breach")).one()
        done = s.scalars(select(SlaEvent).filter_by(kind="fulfilled")).one()
    assert breach.occurred_at.isoformat() == "2026-03-02T09:30:00+00:00"
    assert done.within_target is False


def test_note_assign_show_list_and_queue(world: Database, cli) -> None:
    t = open_ticket(cli, "high")["id"]
    call(cli, "support", "tickets", "note", str(t), "--body", "check logs", "--now", MONDAY_9)
    doc = call(
        cli,
        "support",
        "tickets",
        "assign",
        str(t),
        "--to",
        "ben@faithflow.example",
        "--now",
        "2026-03-02T09:05:00Z",
    )
    assert doc["assignee"] == "ben@faithflow.example" and doc["status"] == "open"
    shown = call(cli, "support", "tickets", "show", str(t))
    assert [m["public"] for m in shown["messages"]] == [True, False, False]
    listed = call(
        cli, "support", "tickets", "list", "--open", "--assignee", "ben@faithflow.example"
    )
    assert [d["id"] for d in listed] == [t]
    open_ticket(cli, "urgent")
    q = call(cli, "support", "queue", "--now", "2026-03-02T09:45:00Z")
    assert q["open"] == 2 and q["unassigned"] == 1
    assert q["by_priority"]["urgent"] == 1 and q["by_status"]["open"] == 1
    assert [(r["metric"], r["minutes_left"]) for r in q["breaching_now"]] == [
        ("first_response", -15)
    ]
    assert {r["metric"] for r in q["due_within_hour"]} == {"first_response"}  # high: due 10:00
    assert q["agents"] == [
        {"agent": "ben@faithflow.example", "name": "Ben", "open": 1, "urgent": 0}
    ]
    assert q["oldest_waiting"][0]["waiting_minutes"] == 45


def _nothing_written(world: Database, tickets: int, messages: int) -> None:
    with world.read_session() as s:
        assert s.scalar(select(func.count()).select_from(SupportTicket)) == tickets
        assert s.scalar(select(func.count()).select_from(SupportMessage)) == messages


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["show", "999"], "no ticket 999"),
        (["reply", "999", "--as", "agent", "--body", "x"], "no ticket 999"),
        (["reply", "{t}", "--as", "robot", "--body", "x"], "--as 'robot' is not one of"),
        (["reply", "{t}", "--as", "agent", "--body", " "], "--body is empty"),
        (["status", "{t}", "closed"], "solve it before closing it"),
        (["status", "{t}", "new"], "status 'new' is not one of"),
        (["status", "{t}", "open", "--now", "yesterday"], "--now 'yesterday' is not an ISO-8601"),
        (["assign", "{t}", "--to", "nobody@faithflow.example"], "no agent 'nobody@faithflow"),
        (["assign", "{t}", "--to", "pastor@grace.example"], "belongs to a tenant"),
        (["reopen", "{t}"], "not solved; nothing to reopen"),
        (["status", "{t}", "solved", "--resolution", "magic"], "--resolution 'magic'"),
    ],
)
def test_bad_input_exits_2_with_a_clear_message(
    world: Database, cli, args: list[str], message: str
) -> None:
    t = open_ticket(cli)["id"]
    result = cli("support", "tickets", *[a.replace("{t}", str(t)) for a in args])
    assert result.exit_code == 2, result.stdout
    assert message in said(result)
    assert "Traceback" not in result.stderr
    _nothing_written(world, 1, 1)


def test_bad_open_input_exits_2(world: Database, cli) -> None:
    base = ["support", "tickets", "open", "--tenant", "grace", "--subject", "x"]
    for extra, message in (
        (["--priority", "critical"], "--priority 'critical' is not one of"),
        (["--tenant", "nope"], "no tenant 'nope'"),
        (["--requester", "not-an-email"], "not-an-email"),
        (["--now", "2026-13-01"], "--now '2026-13-01' is not an ISO-8601"),
        (["--assign", "ghost@x.example"], "no agent"),
        (["--body", ""], "--body is empty"),
        (["--body", "  "], "--body is empty"),
    ):
        result = cli(*base, *extra)
        assert result.exit_code == 2, (extra, result.stdout)
        assert message in said(result), (extra, said(result))
    _nothing_written(world, 0, 0)


def test_a_closed_ticket_is_final(world: Database, cli) -> None:
    t = str(open_ticket(cli)["id"])
    call(cli, "support", "tickets", "status", t, "solved", "--now", "2026-03-02T10:00:00Z")
    call(cli, "support", "tickets", "status", t, "closed", "--now", "2026-03-02T11:00:00Z")
    for args in (["reply", t, "--as", "requester", "--body", "x"], ["reopen", t]):
        result = cli("support", "tickets", *args)
        assert result.exit_code == 2 and "is closed" in said(result)
    result = cli("support", "tickets", "status", t, "solved")
    assert result.exit_code == 2


@pytest.mark.parametrize(
    "args",
    [
        ["reply", "{t}", "--as", "agent", "--body", "early"],
        ["reply", "{t}", "--as", "requester", "--body", "early"],
        ["note", "{t}", "--body", "early"],
        ["assign", "{t}", "--to", "ada@faithflow.example"],
        ["assign", "{t}", "--to", "none"],
        ["priority", "{t}", "urgent"],
        ["status", "{t}", "solved"],
    ],
)
def test_a_command_dated_before_the_tickets_last_change_exits_2(
    world: Database, cli, args: list[str]
) -> None:
    # replaying history out of order would fulfil a clock before it started (a negative
    # response time in the events and the analytics)
    t = open_ticket(cli)["id"]  # Monday 09:00
    result = cli(
        "support",
        "tickets",
        *[a.replace("{t}", str(t)) for a in args],
        "--now",
        "2026-03-01T08:00:00Z",
    )
    assert result.exit_code == 2, result.stdout
    assert "is before ticket" in said(result) and "in order" in said(result)
    _nothing_written(world, 1, 1)
    with world.read_session() as s:
        assert s.scalar(select(func.count()).select_from(SlaEvent)) == 0


def test_a_target_the_calendar_cannot_reach_exits_2_and_writes_nothing(
    world: Database, cli
) -> None:
    set_hours = cli("sla", "calendar", "set", "--hours", "sun 00:00-00:01")
    assert set_hours.exit_code == 0, set_hours.stderr
    result = cli("support", "tickets", "open", "--tenant", "grace", "--subject", "x")
    assert result.exit_code == 2, result.stdout
    assert "not reached within ten years on the business calendar" in said(result)
    assert "Traceback" not in result.stderr
    _nothing_written(world, 0, 0)


@pytest.mark.parametrize("target", ["99999999999", "1d99999999999h", "366d"])
def test_a_target_beyond_a_year_exits_2(world: Database, cli, target: str) -> None:
    result = cli("sla", "policy", "set", "--metric", "resolution", "--target", target)
    assert result.exit_code == 2, result.stdout
    assert "is more than a year" in said(result)
    shown = call(cli, "sla", "policy", "show")
    assert {r["source"] for r in shown} == {"default"}


BIG = "99999999999999999999"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["support", "tickets", "show", BIG], f"no ticket {BIG}"),
        (["support", "tickets", "show", "2147483648"], "no ticket 2147483648"),
        (["support", "tickets", "reply", BIG, "--as", "agent", "--body", "x"], "no ticket"),
        (["support", "tickets", "status", BIG, "solved"], "no ticket"),
        (
            ["support", "tickets", "reply", "{t}", "--as", "agent", "--body", "x", "--agent", BIG],
            f"no agent '{BIG}'",
        ),
        (["support", "tickets", "assign", "{t}", "--to", "2147483648"], "no agent"),
        (["support", "tickets", "open", "--tenant", BIG, "--subject", "x"], f"no tenant '{BIG}'"),
        (["support", "tickets", "list", "--tenant", BIG], "no tenant"),
        (["support", "kb", "show", BIG], f"no knowledge-base article '{BIG}'"),
        (["support", "kb", "suggest", BIG], "no ticket"),
        (["support", "kb", "deflect", BIG, "x"], "no ticket"),
        (["support", "kb", "confirm", BIG], "no ticket"),
    ],
)
def test_an_id_beyond_the_integer_range_is_not_found_not_a_traceback(
    world: Database, cli, args: list[str], message: str
) -> None:
    t = open_ticket(cli)["id"]
    result = cli(*[a.replace("{t}", str(t)) for a in args])
    assert result.exit_code == 2, result.stdout
    assert message in said(result) and "Traceback" not in result.stderr
    _nothing_written(world, 1, 1)


@pytest.mark.parametrize(
    ("option", "length", "most"),
    [("--subject", 501, 500), ("--requester-name", 201, 200), ("--category", 65, 64)],
)
def test_an_overlong_field_exits_2_on_both_dialects(
    world: Database, cli, option: str, length: int, most: int
) -> None:
    args = ["support", "tickets", "open", "--tenant", "grace", "--subject", "x"]
    result = cli(*args, option, "y" * length)
    assert result.exit_code == 2, result.stdout
    assert f"{option} is {length} characters; keep it to {most}" in said(result)
    _nothing_written(world, 0, 0)


@pytest.mark.parametrize(
    "args",
    [
        ["support", "tickets", "open", "--tenant", "grace", "--subject", "x"],
        ["support", "tickets", "open", "--tenant", "grace", "--subject", "x", "--priority", "low"],
        ["support", "queue"],
        ["support", "tickets", "show", "1"],
        ["sla", "breaches", "--since"],
    ],
)
@pytest.mark.parametrize("when", ["0001-01-01T00:00:00Z", "9999-12-31T23:59:00Z"])
def test_a_time_out_of_range_exits_2_not_a_traceback(
    world: Database, cli, args: list[str], when: str
) -> None:
    option = [] if args[-1] == "--since" else ["--now"]
    result = cli(*args, *option, when)
    assert result.exit_code == 2, result.stdout
    assert f"'{when}' is out of range" in said(result) and "Traceback" not in result.stderr
    _nothing_written(world, 0, 0)


# priority changes


def test_raising_the_priority_moves_the_due_time_and_the_sweep_breaches_at_it(
    world: Database, cli
) -> None:
    t = str(open_ticket(cli, "normal")["id"])  # Monday 09:00: first response due 13:00
    doc = call(cli, "support", "tickets", "priority", t, "urgent", "--now", "2026-03-02T09:10:00Z")
    fr, res = clocks(doc)["first_response"], clocks(doc)["resolution"]
    assert doc["priority"] == "urgent"
    # urgent: 30 calendar minutes from the clock's start (09:00), not from the change
    assert fr["state"] == "running" and fr["due_at"] == "2026-03-02T09:30:00+00:00"
    assert fr["warn_at"] == "2026-03-02T09:24:00+00:00"
    assert (fr["target_minutes"], fr["hours"]) == (30, "calendar")
    assert res["due_at"] == "2026-03-02T13:00:00+00:00"  # 4 calendar hours
    shown = call(cli, "support", "tickets", "show", t)
    assert [m["body"] for m in shown["messages"] if m["author_kind"] == "system"] == [
        "priority normal → urgent"
    ]
    assert not shown["messages"][-1]["public"]
    report = sweep(cli, "2026-03-02T09:40:00Z")
    assert [(a["kind"], a["target"]) for a in report["actions"]] == [("sla_breach", f"ticket:{t}")]
    fr = clocks(call(cli, "support", "tickets", "show", t))["first_response"]
    assert fr["state"] == "breached" and fr["breached_at"] == "2026-03-02T09:30:00+00:00"
    with world.read_session() as s:
        breach = s.scalars(select(SlaEvent).filter_by(kind="breach")).one()
    assert breach.occurred_at.isoformat() == "2026-03-02T09:30:00+00:00"
    assert breach.priority == "urgent"


def test_raising_the_priority_late_breaches_at_the_change_never_before_it(
    world: Database, cli
) -> None:
    # issue 22 #10: normal at 09:00 (first response due 13:00), urgent at 11:00. Urgent's 30
    # minutes from 09:00 ran out at 09:30, when the ticket was normal and in time: the new
    # target applies from the change, so the breach is due, and recorded, at 11:00
    t = str(open_ticket(cli, "normal")["id"])
    doc = call(cli, "support", "tickets", "priority", t, "urgent", "--now", "2026-03-02T11:00:00Z")
    fr = clocks(doc)["first_response"]
    assert fr["state"] == "running" and fr["due_at"] == "2026-03-02T11:00:00+00:00"
    assert clocks(doc)["resolution"]["due_at"] == "2026-03-02T13:00:00+00:00"  # still ahead
    report = sweep(cli, "2026-03-02T11:05:00Z")
    assert [(a["kind"], a["data"]["metric"]) for a in report["actions"]] == [
        ("sla_breach", "first_response")
    ]
    with world.read_session() as s:
        breach = s.scalars(select(SlaEvent).filter_by(kind="breach")).one()
    assert (breach.occurred_at.isoformat(), breach.priority) == (
        "2026-03-02T11:00:00+00:00",
        "urgent",
    )
    found = call(cli, "sla", "breaches", "--since", "2026-03-02T10:00:00Z")
    assert [(b["ticket_id"], b["metric"], b["priority"], b["breached_at"]) for b in found] == [
        (int(t), "first_response", "urgent", "2026-03-02T11:00:00+00:00")
    ]


def test_a_reply_after_a_late_raise_records_the_breach_at_the_change(world: Database, cli) -> None:
    # no sweep ran between the raise (11:00) and the reply (11:20): the reply catches the
    # breach at 11:00, the change, not at 09:30
    t = str(open_ticket(cli, "normal")["id"])
    call(cli, "support", "tickets", "priority", t, "urgent", "--now", "2026-03-02T11:00:00Z")
    doc = call(
        cli, "support", "tickets", "reply", t, "--as", "agent", "--body", "Sorry",
        "--now", "2026-03-02T11:20:00Z",
    )  # fmt: skip
    assert clocks(doc)["first_response"]["breached_at"] == "2026-03-02T11:00:00+00:00"
    assert call(cli, "sla", "breaches", "--since", "2026-03-02T10:00:00Z")[0]["breached_at"] == (
        "2026-03-02T11:00:00+00:00"
    )


def test_lowering_the_priority_keeps_a_breach_the_sweep_recorded(world: Database, cli) -> None:
    t = str(open_ticket(cli, "urgent")["id"])  # first response due 09:30
    sweep(cli, "2026-03-02T09:40:00Z")
    doc = call(cli, "support", "tickets", "priority", t, "low", "--now", "2026-03-02T09:45:00Z")
    fr, res = clocks(doc)["first_response"], clocks(doc)["resolution"]
    assert fr["state"] == "breached" and fr["breached_at"] == "2026-03-02T09:30:00+00:00"
    assert fr["due_at"] == "2026-03-02T09:30:00+00:00"  # frozen at the breach
    # the running resolution clock takes low's 5 business days from 09:00 (Mon → Fri 17:00)
    assert res["state"] == "running" and res["due_at"] == "2026-03-06T17:00:00+00:00"
    assert sweep(cli, "2026-03-02T10:00:00Z")["actions"] == []  # nothing new to mark
    doc = call(
        cli,
        "support",
        "tickets",
        "reply",
        t,
        "--as",
        "agent",
        "--body",
        "Sorry",
        "--now",
        "2026-03-02T10:05:00Z",
    )
    assert clocks(doc)["first_response"]["state"] == "fulfilled"
    with world.read_session() as s:
        events = s.scalars(select(SlaEvent).order_by(SlaEvent.id)).all()
    assert [(e.metric, e.kind, e.within_target) for e in events] == [
        ("first_response", "breach", None),
        ("first_response", "fulfilled", False),  # a breach is never undone
    ]


def test_lowering_after_an_unmarked_breach_records_it_under_the_old_priority(
    world: Database, cli
) -> None:
    # no sweep ran: the change itself records the breach at the due time, as the priority
    # it breached under (urgent), before the new targets apply
    t = str(open_ticket(cli, "urgent")["id"])
    doc = call(cli, "support", "tickets", "priority", t, "normal", "--now", "2026-03-02T09:45:00Z")
    fr = clocks(doc)["first_response"]
    assert fr["state"] == "breached" and fr["breached_at"] == "2026-03-02T09:30:00+00:00"
    assert clocks(doc)["resolution"]["due_at"] == "2026-03-04T17:00:00+00:00"
    with world.read_session() as s:
        breach = s.scalars(select(SlaEvent).filter_by(kind="breach")).one()
    assert (breach.metric, breach.priority) == ("first_response", "urgent")
    assert breach.occurred_at.isoformat() == "2026-03-02T09:30:00+00:00"
    assert breach.data["recorded_by"] == "priority"


def test_a_priority_change_keeps_fulfilled_and_paused_clocks(world: Database, cli) -> None:
    t = str(open_ticket(cli, "normal")["id"])
    call(cli, "support", "tickets", "reply", t, "--as", "agent", "--body", "Hi", "--now", MONDAY_9)
    call(cli, "support", "tickets", "status", t, "pending", "--now", "2026-03-02T10:00:00Z")
    doc = call(cli, "support", "tickets", "priority", t, "urgent", "--now", "2026-03-02T10:30:00Z")
    assert clocks(doc)["first_response"]["state"] == "fulfilled"
    res = clocks(doc)["resolution"]
    assert res["state"] == "paused" and res["due_at"] is None and res["used_seconds"] == 3600
    # resuming at 11:00: urgent's 4 calendar hours, 1 h used → due 14:00
    doc = call(
        cli,
        "support",
        "tickets",
        "reply",
        t,
        "--as",
        "requester",
        "--body",
        "Here",
        "--now",
        "2026-03-02T11:00:00Z",
    )
    assert clocks(doc)["resolution"]["due_at"] == "2026-03-02T14:00:00+00:00"


@pytest.mark.parametrize(
    ("setup", "args", "message"),
    [
        ([], ["priority", "{t}", "normal"], "ticket {t} is already normal priority"),
        ([], ["priority", "{t}", "critical"], "priority 'critical' is not one of"),
        ([], ["priority", "999", "high"], "no ticket 999"),
        (
            [],
            ["priority", "{t}", "high", "--now", "2026-03-01T08:00:00Z"],
            "is before ticket",
        ),
        ([["status", "{t}", "solved"]], ["priority", "{t}", "high"], "reopen it first"),
        (
            [["status", "{t}", "solved"], ["status", "{t}", "closed"]],
            ["priority", "{t}", "high"],
            "is closed and cannot be changed",
        ),
    ],
)
def test_a_bad_priority_change_exits_2_and_changes_nothing(
    world: Database, cli, setup: list[list[str]], args: list[str], message: str
) -> None:
    t = str(open_ticket(cli)["id"])
    for step in setup:
        call(cli, "support", "tickets", *[a.replace("{t}", t) for a in step])
    # `show` reads its clocks at --now: pinned, so the two documents compare equal however
    # long the command in between takes (they drifted by a minute under load)
    at = ("--now", "2026-03-04T12:00:00Z")
    before = call(cli, "support", "tickets", "show", t, *at)
    result = cli("support", "tickets", *[a.replace("{t}", t) for a in args])
    assert result.exit_code == 2, result.stdout
    assert message.replace("{t}", t) in said(result) and "Traceback" not in result.stderr
    assert call(cli, "support", "tickets", "show", t, *at) == before


def test_a_command_dated_before_a_priority_change_exits_2(world: Database, cli) -> None:
    # the priority change is part of the ticket's history: replaying a reply before it would
    # judge that reply by a priority the ticket did not have yet
    t = str(open_ticket(cli)["id"])
    call(cli, "support", "tickets", "priority", t, "urgent", "--now", "2026-03-02T10:10:00Z")
    result = cli(
        "support",
        "tickets",
        "reply",
        t,
        "--as",
        "agent",
        "--body",
        "x",
        "--now",
        "2026-03-02T09:50:00Z",
    )
    assert result.exit_code == 2 and "is before ticket" in said(result)


# unassign


def test_assign_to_none_returns_the_ticket_to_the_queue(world: Database, cli) -> None:
    t = str(open_ticket(cli, "urgent")["id"])
    call(cli, "support", "tickets", "assign", t, "--to", "ben@faithflow.example", "--now", MONDAY_9)
    doc = call(
        cli, "support", "tickets", "assign", t, "--to", "none", "--now", "2026-03-02T09:05:00Z"
    )
    assert doc["assignee"] is None and doc["assignee_id"] is None
    assert doc["status"] == "open"  # back in the queue, not new again
    assert clocks(doc)["first_response"]["due_at"] == "2026-03-02T09:30:00+00:00"
    shown = call(cli, "support", "tickets", "show", t)
    assert [m["body"] for m in shown["messages"] if m["author_kind"] == "system"] == [
        "assigned to ben@faithflow.example",
        "unassigned (was ben@faithflow.example)",
    ]
    q = call(cli, "support", "queue", "--now", "2026-03-02T09:10:00Z")
    assert q["unassigned"] == 1 and q["agents"] == []
    # the sweep's breach then goes to the queue's address, not ben (who no longer holds it)
    sweep(cli, "2026-03-02T09:40:00Z")
    with world.read_session() as s:
        breach = s.scalars(select(SlaEvent).filter_by(kind="breach")).one()
    assert breach.assignee_id is None


def test_unassigning_an_unassigned_or_closed_ticket_exits_2(world: Database, cli) -> None:
    t = str(open_ticket(cli)["id"])
    result = cli("support", "tickets", "assign", t, "--to", "none")
    assert result.exit_code == 2 and f"ticket {t} is not assigned; nothing to unassign" in said(
        result
    )
    call(cli, "support", "tickets", "assign", t, "--to", "ada@faithflow.example", "--now", MONDAY_9)
    call(cli, "support", "tickets", "status", t, "solved", "--now", "2026-03-02T10:00:00Z")
    call(cli, "support", "tickets", "status", t, "closed", "--now", "2026-03-02T11:00:00Z")
    result = cli("support", "tickets", "assign", t, "--to", "none")
    assert result.exit_code == 2 and "is closed and cannot be assigned" in said(result)
    assert call(cli, "support", "tickets", "show", t)["assignee"] == "ada@faithflow.example"


# notes


def test_a_closed_ticket_takes_no_note_but_a_solved_one_does(world: Database, cli) -> None:
    t = str(open_ticket(cli)["id"])
    call(cli, "support", "tickets", "status", t, "solved", "--now", "2026-03-02T10:00:00Z")
    doc = call(
        cli,
        "support",
        "tickets",
        "note",
        t,
        "--body",
        "for the record",
        "--now",
        "2026-03-02T10:30:00Z",
    )
    assert doc["status"] == "solved"
    call(cli, "support", "tickets", "status", t, "closed", "--now", "2026-03-02T11:00:00Z")
    result = cli("support", "tickets", "note", t, "--body", "late", "--now", "2026-03-02T12:00:00Z")
    assert result.exit_code == 2, result.stdout
    assert f"ticket {t} is closed and cannot be annotated" in said(result)
    assert "open a new ticket for a follow-up" in said(result)
    with world.read_session() as s:
        bodies = s.scalars(select(SupportMessage.body).order_by(SupportMessage.id)).all()
    assert "late" not in bodies and "for the record" in bodies


# queue --now


def test_the_queue_refuses_a_now_before_the_newest_ticket(world: Database, cli) -> None:
    open_ticket(cli, "normal")
    open_ticket(cli, "urgent", now="2026-03-02T09:30:00Z")
    result = cli("support", "queue", "--now", "2026-03-02T09:20:00Z")
    assert result.exit_code == 2, result.stdout
    assert "is before ticket 2 was opened (2026-03-02T09:30:00+00:00)" in said(result)
    assert "leave out --now" in said(result) and "Traceback" not in result.stderr
    q = call(cli, "support", "queue", "--now", "2026-03-02T09:30:00Z")  # from then on: fine
    assert q["open"] == 2 and q["oldest_waiting"][0]["waiting_minutes"] == 30


def test_the_queue_of_an_empty_desk_takes_any_now(world: Database, cli) -> None:
    assert call(cli, "support", "queue", "--now", "2020-01-01T00:00:00Z")["open"] == 0
