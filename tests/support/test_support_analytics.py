"""Support analytics on a known data set, every figure checked by hand, on both dialects.

Default policies and calendar (Mon–Fri 09:00–17:00 UTC). The period is Mon 2026-03-02 00:00 →
Sat 2026-03-07 00:00. Tickets (times UTC; cal = calendar minutes, bus = business minutes):

  G normal  opened Fri 02-27 10:00, reply 10:30, solved Mon 10:00   res cal 4320, bus 420+60=480
  A urgent  opened Mon 09:00 (agent sam), reply 09:20, solved 11:00 FRT 20/20, res 120/120
  B normal  opened Mon 16:00, reply Tue 10:00, solved Tue 12:00     FRT 1080/120, res 1200/240
  C normal  opened Tue 09:00, reply 09:30, solved 10:00, requester reply 11:00 (reopened),
            solved Wed 09:00                                        FRT 30/30, res 1440/480
  D high    opened Wed 10:00, article sent 10:10, confirmed 12:00   FRT 10/10, res 120/120 deflected
  E low     opened Thu 09:00, never answered (first response due Thu 17:00: breached)
  H urgent  opened Thu 09:00 (agent sam), reply 10:00 (due 09:30: breached), open
            (resolution due 13:00: breached)                        FRT 60/60
  F normal  opened Fri 10:00, reply 11:00, open                     FRT 60/60

`sla sweep` runs at Fri 12:00 and marks E's and H's breaches at their due times.
"""

from __future__ import annotations

import datetime as dt
import json
import random

import pytest
from helpers import said
from sqlalchemy import select

from faithflow_ops.db import Database
from faithflow_ops.models import User
from faithflow_ops.support import analytics, clock, kb, tickets
from faithflow_ops.support.deflection import confirm, deflect
from faithflow_ops.support.sla import Rules
from faithflow_ops.tenancy.tenants import add_tenant

UTC = dt.UTC
SINCE = dt.datetime(2026, 3, 2, tzinfo=UTC)
UNTIL = dt.datetime(2026, 3, 7, tzinfo=UTC)
AGENT = "sam@faithflow.test"


def at(day: int, hour: int, minute: int = 0, month: int = 3) -> dt.datetime:
    return dt.datetime(2026, month, day, hour, minute, tzinfo=UTC)


def _build(db: Database, cli, monkeypatch: pytest.MonkeyPatch) -> dict[str, int]:
    ids: dict[str, int] = {}
    with db.session() as s:
        add_tenant(s, slug="grace", name="Grace", actor="t", email="office@grace.test")
        add_tenant(s, slug="hope", name="Hope", actor="t", email="office@hope.test")
        s.add(User(email=AGENT, name="Sam", role="platform_agent"))
        s.flush()
        kb.add_article(
            s,
            slug="reset-password",
            title="Reset a password",
            body="Use the reset link.",
            publish=True,
            now=at(1, 9),
            actor="t",
        )

    def step(fn, *args, **kwargs):
        with db.session() as s:
            return fn(s, Rules.load(s), *args, **kwargs)

    def open_(name, tenant, priority, when, assignee=None):
        ticket = step(
            tickets.open_ticket,
            tenant=tenant,
            subject=f"ticket {name}",
            priority=priority,
            now=when,
            body="help",
            requester=f"{name.lower()}@{tenant}.test",
            assignee=assignee,
        )
        ids[name] = ticket.id

    def reply(name, when, author="agent"):
        step(tickets.reply, ids[name], author=author, body="…", now=when)

    def solve(name, when):
        step(tickets.set_status, ids[name], "solved", now=when)

    open_("G", "grace", "normal", at(27, 10, month=2))
    reply("G", at(27, 10, 30, month=2))
    solve("G", at(2, 10))
    open_("A", "grace", "urgent", at(2, 9), assignee=AGENT)
    reply("A", at(2, 9, 20))
    solve("A", at(2, 11))
    open_("B", "hope", "normal", at(2, 16))
    reply("B", at(3, 10))
    solve("B", at(3, 12))
    open_("C", "hope", "normal", at(3, 9))
    reply("C", at(3, 9, 30))
    solve("C", at(3, 10))
    reply("C", at(3, 11), author="requester")
    solve("C", at(4, 9))
    open_("D", "grace", "high", at(4, 10))
    with db.session() as s:
        deflect(s, ids["D"], "reset-password", now=at(4, 10, 10), actor="t")
    with db.session() as s:
        confirm(s, ids["D"], now=at(4, 12), actor="t")
    open_("E", "hope", "low", at(5, 9))
    open_("H", "grace", "urgent", at(5, 9), assignee=AGENT)
    reply("H", at(5, 10))
    open_("F", "grace", "normal", at(6, 10))
    reply("F", at(6, 11))
    monkeypatch.setenv("FAITHFLOW_SUPPORT_QUEUE_EMAIL", "queue@faithflow.test")
    swept = cli("sla", "sweep", "--now", "2026-03-06T12:00:00Z", "--json")
    assert swept.exit_code == 0, swept.stderr
    return ids


def _report(cli, *args: str) -> dict:
    result = cli(
        "support", "analytics", "--since", "2026-03-02T00:00:00Z", "--until",
        "2026-03-07T00:00:00Z", "--json", *args,
    )  # fmt: skip
    assert result.exit_code == 0, result.stderr
    return json.loads(result.stdout)


def test_support_analytics_on_a_known_data_set(
    db: Database, cli, monkeypatch: pytest.MonkeyPatch
) -> None:
    _build(db, cli, monkeypatch)
    doc = _report(cli)
    totals = doc["totals"]
    assert doc["groups"] == [] and doc["by"] is None
    assert doc["calendar"] == {"timezone": "UTC"}
    assert (totals["created"], totals["solved"]) == (7, 5)  # A B C D E F H; G A B C D
    # FRT calendar [10, 20, 30, 60, 60, 1080]; business [10, 20, 30, 60, 60, 120]
    assert totals["first_response"] == {
        "count": 6,
        "calendar": {"median_minutes": 45.0, "p90_minutes": 570.0},
        "business": {"median_minutes": 45.0, "p90_minutes": 90.0},
    }
    # resolution calendar [120, 120, 1200, 1440, 4320]; business [120, 120, 240, 480, 480]
    assert totals["resolution"] == {
        "count": 5,
        "calendar": {"median_minutes": 1200.0, "p90_minutes": 3168.0},
        "business": {"median_minutes": 240.0, "p90_minutes": 480.0},
    }
    assert totals["reopen"] == {"solved": 4, "reopened": 1, "rate": 0.25}  # A B C D; C
    assert totals["sla"] == {
        # met A B C D F; breached E (Thu 17:00) and H (Thu 09:30)
        "first_response": {"achieved": 5, "breached": 2, "rate": 0.7143},
        # C: the requester's reply Tue 11:00, answered by the solve Wed 09:00 (6 business h)
        "next_response": {"achieved": 1, "breached": 0, "rate": 1.0},
        # met G A B C(1) C(2) D; breached H (Thu 13:00)
        "resolution": {"achieved": 6, "breached": 1, "rate": 0.8571},
    }
    assert (totals["deflected"], totals["deflection_rate"]) == (1, 0.2)
    assert doc["backlog"] == [
        {"date": "2026-03-02", "open": 1},  # G before; +A +B −G −A
        {"date": "2026-03-03", "open": 1},  # +C −B (C's first solve was undone by the reopen)
        {"date": "2026-03-04", "open": 0},  # +D −C −D
        {"date": "2026-03-05", "open": 2},  # +E +H
        {"date": "2026-03-06", "open": 3},  # +F
    ]
    assert doc["deflection"] == {
        "sent": 1,
        "confirmed": 1,
        "confirmation_rate": 1.0,
        "top_articles": [
            {"slug": "reset-password", "title": "Reset a password", "deflections": 1, "sent": 1}
        ],
    }


def test_support_analytics_by_priority_and_by_agent(
    db: Database, cli, monkeypatch: pytest.MonkeyPatch
) -> None:
    _build(db, cli, monkeypatch)
    doc = _report(cli, "--by", "priority")
    groups = {g["key"]: g for g in doc["groups"]}
    assert [g["key"] for g in doc["groups"]] == ["urgent", "high", "normal", "low"]
    urgent, normal, low = groups["urgent"], groups["normal"], groups["low"]
    assert (urgent["created"], urgent["solved"]) == (2, 1)
    assert urgent["first_response"]["calendar"] == {"median_minutes": 40.0, "p90_minutes": 56.0}
    assert urgent["sla"]["first_response"] == {"achieved": 1, "breached": 1, "rate": 0.5}
    assert urgent["sla"]["resolution"] == {"achieved": 1, "breached": 1, "rate": 0.5}
    # normal: FRT B 1080/120, C 30/30, F 60/60 (G opened before the period)
    assert (normal["created"], normal["solved"]) == (3, 3)
    assert normal["first_response"]["calendar"] == {"median_minutes": 60.0, "p90_minutes": 876.0}
    assert normal["first_response"]["business"] == {"median_minutes": 60.0, "p90_minutes": 108.0}
    assert normal["reopen"] == {"solved": 2, "reopened": 1, "rate": 0.5}
    assert groups["high"]["deflection_rate"] == 1.0
    assert low["sla"]["first_response"] == {"achieved": 0, "breached": 1, "rate": 0.0}
    assert low["first_response"]["count"] == 0
    assert low["first_response"]["calendar"]["median_minutes"] is None
    assert doc["totals"]["created"] == 7  # the overall figures come with every split

    by_agent = {g["key"]: g for g in _report(cli, "--by", "agent")["groups"]}
    assert set(by_agent) == {AGENT, "unassigned"}
    assert (by_agent[AGENT]["created"], by_agent["unassigned"]["created"]) == (2, 5)
    by_tenant = {g["key"]: g for g in _report(cli, "--by", "tenant")["groups"]}
    assert (by_tenant["grace"]["created"], by_tenant["hope"]["created"]) == (4, 3)


def test_sla_analytics_is_the_sla_view(db: Database, cli, monkeypatch: pytest.MonkeyPatch) -> None:
    _build(db, cli, monkeypatch)
    result = cli(
        "sla", "analytics", "--since", "2026-03-02", "--until", "2026-03-07", "--json",
    )  # fmt: skip
    assert result.exit_code == 0, result.stderr
    doc = json.loads(result.stdout)
    assert doc["totals"]["sla"]["first_response"]["rate"] == 0.7143
    assert doc["totals"]["resolution"]["business"]["median_minutes"] == 240.0
    assert "backlog" not in doc and "created" not in doc["totals"]
    table = cli("sla", "analytics", "--since", "2026-03-02", "--until", "2026-03-07")
    assert table.exit_code == 0 and "SLA first response" in table.stdout
    assert "71.4% (5/7)" in table.stdout


def test_the_terminal_report_has_tables_and_bar_charts(
    db: Database, cli, monkeypatch: pytest.MonkeyPatch
) -> None:
    _build(db, cli, monkeypatch)
    result = cli(
        "support", "analytics", "--since", "2026-03-02", "--until", "2026-03-07", "--by",
        "priority",
    )  # fmt: skip
    assert result.exit_code == 0, result.stderr
    out = result.stdout
    assert "tickets created" in out and "urgent" in out
    assert "2026-03-06       3 " + "█" * 40 in out
    assert "reset-password" in out and "an article sent on 1 ticket(s), 1 confirmed solved" in out


def test_since_a_duration_counts_back_from_the_end_of_the_period(db: Database, cli) -> None:
    now = ("--now", "2026-03-07T00:00:00Z")
    default = json.loads(cli("support", "analytics", *now, "--json").stdout)
    result = cli("support", "analytics", "--since", "30d", *now, "--json")
    assert result.exit_code == 0, result.stderr
    doc = json.loads(result.stdout)
    assert doc["since"] == "2026-02-05T00:00:00+00:00" == default["since"]
    assert doc == default
    until = ("--until", "2026-03-07T00:00:00Z")
    week = json.loads(cli("sla", "analytics", "--since", "1w", *until, "--json").stdout)
    assert week["since"] == "2026-02-28T00:00:00+00:00"
    assert week["until"] == "2026-03-07T00:00:00+00:00"


def test_an_empty_period_reports_zeros_and_no_rates(db: Database, cli) -> None:
    doc = json.loads(cli("support", "analytics", "--now", "2026-03-07T00:00:00Z", "--json").stdout)
    totals = doc["totals"]
    assert (totals["created"], totals["solved"]) == (0, 0)
    assert totals["reopen"]["rate"] is None and totals["deflection_rate"] is None
    assert totals["sla"]["resolution"] == {"achieved": 0, "breached": 0, "rate": None}
    assert len(doc["backlog"]) == 30 and {d["open"] for d in doc["backlog"]} == {0}


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--by", "team"), "--by 'team' is not one of: priority, agent, tenant"),
        (("--since", "2026-03-07", "--until", "2026-03-01"), "is not before --until"),
        (("--since", "last week"), "--since 'last week' is neither a duration nor an ISO-8601"),
        (("--until", "soon"), "--until 'soon' is not an ISO-8601 time"),
        (("--since", "0001-01-01"), "--since '0001-01-01' is out of range"),
        (("--until", "9999-12-31"), "--until '9999-12-31' is out of range"),
        (("--now", "9999-12-31T23:00:00Z"), "--now '9999-12-31T23:00:00Z' is out of range"),
    ],
)
def test_bad_analytics_input_exits_2(db: Database, cli, args: tuple[str, ...], message) -> None:
    for group in ("support", "sla"):
        result = cli(group, "analytics", *args)
        assert result.exit_code == 2, result.stdout
        assert message in said(result) and "Traceback" not in result.stderr


def test_business_time_index_matches_the_clock() -> None:
    """The cumulative index gives clock.seconds_between's answer (Lagos hours, a holiday,
    New York across the DST change)."""
    rng = random.Random(7)
    calendars = [
        clock.Calendar(
            timezone="Africa/Lagos",
            weekly=(((540, 1020),),) * 5 + ((), ()),
            holidays=frozenset({dt.date(2026, 3, 4)}),
        ),
        clock.Calendar(
            timezone="America/New_York",
            weekly=(((480, 720), (780, 1080)),) * 6 + (((0, 1440),),),
        ),
    ]
    base = dt.datetime(2026, 3, 1, tzinfo=UTC)
    for calendar in calendars:
        index = analytics.BusinessTime(calendar, base, base + dt.timedelta(days=34))
        for _ in range(300):
            a = base + dt.timedelta(minutes=rng.randrange(0, 60 * 24 * 28))
            b = a + dt.timedelta(minutes=rng.randrange(0, 60 * 24 * 5), seconds=rng.randrange(60))
            assert index.seconds(a, b) == clock.seconds_between(calendar, a, b), (a, b)


def test_percentile_interpolates_like_percentile_cont() -> None:
    assert analytics.percentile([], 0.5) is None
    assert analytics.percentile([7.0], 0.9) == 7.0
    assert analytics.percentile([10.0, 20.0, 30.0, 60.0, 60.0, 1080.0], 0.9) == 570.0
    assert analytics.percentile([1.0, 2.0, 3.0, 4.0], 0.5) == 2.5


def test_agent_labels_fall_back_to_unassigned(db: Database) -> None:
    with db.read_session() as s:
        labels = analytics.labels_for(s, "agent", [None])
        assert labels[None] == "unassigned"
        assert s.scalars(select(User)).all() == []
