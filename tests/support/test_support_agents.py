"""Platform support agents through the CLI on both dialects: add, list, disable, enable; what
`tickets assign` then accepts; every bad input (exit 2, a clear message, nothing written)."""

from __future__ import annotations

from typing import Any

import pytest
from helpers import said
from sqlalchemy import func, select
from support_world import MONDAY_9, call, open_ticket

from faithflow_ops.db import Database
from faithflow_ops.models import AuditLog, User


def _users(db: Database) -> list[tuple[str, Any]]:
    with db.read_session() as s:
        return [tuple(r) for r in s.execute(select(User.email, User.disabled_at).order_by(User.id))]


def test_a_fresh_install_can_add_an_agent_and_assign_a_ticket(db: Database, cli) -> None:
    # no seed: before `agents add` there was no way to create someone `assign --to` accepts
    added = cli("tenants", "add", "grace", "--name", "Grace", "--email", "office@grace.example")
    assert added.exit_code == 0, added.stderr
    doc = call(cli, "support", "agents", "add", "  Carol@FaithFlow.Example ", "--name", "Carol  O")
    assert doc["email"] == "carol@faithflow.example" and doc["name"] == "Carol O"
    assert doc["disabled_at"] is None and doc["open_tickets"] == 0
    t = str(open_ticket(cli, "urgent")["id"])
    ticket = call(cli, "support", "tickets", "assign", t, "--to", "carol@faithflow.example")
    assert ticket["assignee"] == "carol@faithflow.example" and ticket["status"] == "open"
    with db.read_session() as s:
        user = s.scalars(select(User).filter_by(email="carol@faithflow.example")).one()
        audit = s.scalars(select(AuditLog).filter_by(action="agent.add")).one()
    assert user.tenant_id is None and user.role == "platform_agent"
    assert audit.entity_id == str(user.id) and audit.after["email"] == "carol@faithflow.example"


def test_list_shows_each_agents_open_and_urgent_tickets(world: Database, cli) -> None:
    a = str(open_ticket(cli, "urgent")["id"])
    b = str(open_ticket(cli, "normal")["id"])
    c = str(open_ticket(cli, "urgent")["id"])
    for t in (a, b, c):
        call(cli, "support", "tickets", "assign", t, "--to", "ada@faithflow.example")
    call(cli, "support", "tickets", "status", c, "solved")  # solved: no longer open
    listed = call(cli, "support", "agents", "list")
    assert [(d["email"], d["name"], d["open_tickets"], d["urgent_open"]) for d in listed] == [
        ("ada@faithflow.example", "Ada", 2, 1),
        ("ben@faithflow.example", "Ben", 0, 0),
    ]  # the tenant user is not an agent
    table = cli("support", "agents", "list")
    assert table.exit_code == 0 and "ada@faithflow.example" in table.stdout
    assert "2 agents" in said(table)


def test_a_disabled_agent_cannot_be_assigned_and_keeps_their_tickets(world: Database, cli) -> None:
    t = str(open_ticket(cli)["id"])
    call(cli, "support", "tickets", "assign", t, "--to", "ben@faithflow.example", "--now", MONDAY_9)
    result = cli(
        "support", "agents", "disable", "Ben@faithflow.example", "--now", "2026-03-02T10:00:00Z"
    )
    assert result.exit_code == 0, result.stderr
    # the operator is told which open tickets still need another owner, and how
    assert f"1 open ticket still assigned to ben@faithflow.example (#{t})" in said(result)
    assert "--to none" in said(result)
    doc = call(cli, "support", "agents", "list")[1]
    assert doc["email"] == "ben@faithflow.example"
    assert doc["disabled_at"] == "2026-03-02T10:00:00+00:00" and doc["open_tickets"] == 1
    u = str(open_ticket(cli)["id"])
    for args in (
        ["tickets", "assign", u, "--to", "ben@faithflow.example"],
        ["tickets", "reply", u, "--as", "agent", "--body", "x", "--agent", "ben@faithflow.example"],
        [
            "tickets",
            "open",
            "--tenant",
            "grace",
            "--subject",
            "x",
            "--assign",
            "ben@faithflow.example",
        ],
    ):
        refused = cli("support", *args)
        assert refused.exit_code == 2, args
        assert "agent ben@faithflow.example is disabled; assign someone else" in said(refused)
    # reassigning the ticket he held works (a disabled holder is no obstacle)
    call(cli, "support", "tickets", "assign", t, "--to", "ada@faithflow.example")
    # enable undoes it
    doc = call(cli, "support", "agents", "enable", "ben@faithflow.example")
    assert doc["disabled_at"] is None
    assert (
        call(cli, "support", "tickets", "assign", u, "--to", "ben@faithflow.example")["assignee"]
        == "ben@faithflow.example"
    )
    with world.read_session() as s:
        actions = s.scalars(select(AuditLog.action).order_by(AuditLog.id)).all()
    assert actions == ["agent.disable", "agent.enable"]


def test_disable_json_names_the_tickets_still_held(world: Database, cli) -> None:
    t = open_ticket(cli, "urgent")["id"]
    call(cli, "support", "tickets", "assign", str(t), "--to", "ada@faithflow.example")
    doc = call(cli, "support", "agents", "disable", "ada@faithflow.example")
    assert doc["open_ticket_ids"] == [t] and doc["urgent_open"] == 1
    assert doc["disabled_at"] is not None


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["add", "not-an-email", "--name", "X"], "'not-an-email' is not an email address"),
        (["add", "x@faithflow.example", "--name", "  "], "--name is empty"),
        (["add", "x@faithflow.example", "--name", "y" * 201], "--name is 201 characters"),
        (
            ["add", "ADA@faithflow.example", "--name", "Ada"],
            "ada@faithflow.example is already a platform agent",
        ),
        (
            ["add", "pastor@grace.example", "--name", "P"],
            "pastor@grace.example is a user of tenant grace, not platform staff",
        ),
        (
            ["add", "gone@faithflow.example", "--name", "G"],
            "gone@faithflow.example is a disabled agent (since 2026-03-01T00:00:00+00:00); "
            "enable them with `faithflow support agents enable gone@faithflow.example`",
        ),
        (["disable", "nobody@faithflow.example"], "no agent 'nobody@faithflow.example'"),
        (["disable", "pastor@grace.example"], "belongs to a tenant, not the support team"),
        (["disable", "gone@faithflow.example"], "is already disabled (since 2026-03-01"),
        (["disable", "ada@faithflow.example", "--now", "soon"], "--now 'soon' is not an ISO"),
        (["disable", "99999999999999"], "no agent '99999999999999'"),
        (["enable", "ada@faithflow.example"], "is not disabled; nothing to enable"),
    ],
)
def test_bad_agent_input_exits_2_and_changes_nothing(
    world: Database, cli, args: list[str], message: str
) -> None:
    import datetime as dt

    with world.session() as s:
        s.add(
            User(
                email="gone@faithflow.example",
                name="Gone",
                disabled_at=dt.datetime(2026, 3, 1, tzinfo=dt.UTC),
            )
        )
    before = _users(world)
    result = cli("support", "agents", *args)
    assert result.exit_code == 2, result.stdout
    assert message in said(result) and "Traceback" not in result.stderr
    assert _users(world) == before
    with world.read_session() as s:
        assert s.scalar(select(func.count()).select_from(AuditLog)) == 0
