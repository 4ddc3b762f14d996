"""`dunning analytics` on a seeded dataset, on SQLite and Postgres."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import pytest
import typer
from helpers import said
from sqlalchemy import insert

from faithflow_ops.db import Database
from faithflow_ops.dunning.analytics import BEFORE_ANY_STEP, compute, duration
from faithflow_ops.models import (
    DunningAttempt,
    DunningCase,
    OutboundMessage,
    Subscription,
    SubscriptionPlan,
)
from faithflow_ops.tenancy.tenants import add_tenant

UTC = dt.UTC
SINCE = dt.datetime(2026, 10, 1, tzinfo=UTC)
UNTIL = dt.datetime(2026, 11, 1, tzinfo=UTC)
ORDER = ("day0", "day3", "day5", "day7", "day10", "day14")


def at(month: int, day: int, hour: int = 0) -> dt.datetime:
    return dt.datetime(2026, month, day, hour, tzinfo=UTC)


@pytest.fixture
def run():
    from typer.testing import CliRunner

    from faithflow_ops.cli import _Group
    from faithflow_ops.cli import dunning_settings as ds

    root = typer.Typer(cls=_Group, rich_markup_mode=None)
    dunning = typer.Typer(rich_markup_mode=None)
    dunning.command("analytics")(ds.analytics)
    dunning.command("noop")(lambda: None)  # keep `analytics` a subcommand
    root.add_typer(dunning, name="dunning")

    @root.callback()
    def _root() -> None:
        """test root"""

    runner = CliRunner()
    return lambda *args: runner.invoke(root, ["dunning", *args], catch_exceptions=False)


def seed(db: Database) -> None:
    """Seven cases opened in October (the cohort), one before and one after it."""
    with db.session() as s:
        ng = add_tenant(s, slug="grace-lagos", name="Grace Lagos", actor="t", currency="NGN").id
        us = add_tenant(s, slug="hope-ny", name="Hope NY", actor="t").id
        plan = s.execute(
            insert(SubscriptionPlan)
            .values(code="basic", name="Basic", amount_minor=100, currency="NGN", interval="month")
            .returning(SubscriptionPlan.id)
        ).scalar_one()
        cases: dict[str, int] = {}
        spec: list[tuple[str, int, str, int, dt.datetime, str, dt.datetime | None, str | None]] = [
            # name, tenant, currency, amount, past_due_since, status, closed_at, recovered_after
            ("c1", ng, "NGN", 150_000_000, at(10, 2), "recovered", at(10, 4), "day3"),
            ("c2", ng, "NGN", 500_000, at(10, 5), "recovered", at(10, 8, 12), "day3"),
            ("c3", us, "USD", 2_000, at(10, 10), "recovered", at(10, 10, 6), None),
            ("c4", ng, "NGN", 100_000, at(10, 12), "suspended", at(10, 26), None),
            ("c5", us, "USD", 3_000, at(10, 14), "canceled", at(10, 20), None),
            ("c6", ng, "NGN", 700, at(10, 30), "open", None, None),
            ("c9", ng, "NGN", 250_000, at(10, 15), "recovered", at(10, 19, 4), "day7"),
            ("c7", us, "USD", 5_000, at(9, 15), "open", None, None),  # before the window
            ("c8", us, "USD", 9_000, at(11, 5), "recovered", at(11, 6), "day0"),  # after it
        ]
        for name, tenant_id, currency, amount, since, status, closed, step in spec:
            # One live subscription per tenant: a closed case's subscription has ended.
            sub_status = "past_due" if status == "open" else "canceled"
            sub = s.execute(
                insert(Subscription)
                .values(tenant_id=tenant_id, plan_id=plan, provider="stripe", status=sub_status)
                .returning(Subscription.id)
            ).scalar_one()
            cases[name] = s.execute(
                insert(DunningCase)
                .values(
                    tenant_id=tenant_id,
                    subscription_id=sub,
                    status=status,
                    opened_at=since,
                    past_due_since=since,
                    amount_minor=amount,
                    currency=currency,
                    opened_by="test",
                    closed_at=closed,
                    recovered_after_step=step,
                )
                .returning(DunningCase.id)
            ).scalar_one()
        attempts = [
            # case, step, channel, message status, retry outcome
            ("c1", "day0", "email", "delivered", None),
            ("c1", "day3", "email", "sent", None),
            ("c1", "day3", "payment_retry", None, "succeeded"),
            ("c2", "day0", "email", "failed", None),
            ("c2", "day3", "email", "suppressed", None),
            ("c2", "day3", "payment_retry", None, "failed"),
            ("c4", "day5", "sms", "delivered", None),
            ("c4", "day14", "handover", None, None),
            ("c8", "day0", "email", "delivered", None),  # outside the cohort
        ]
        for i, (case, step, channel, status, outcome) in enumerate(attempts):
            message_id = None
            if status is not None:
                message_id = s.execute(
                    insert(OutboundMessage)
                    .values(
                        tenant_id=ng,
                        channel=channel,
                        recipient="+2348031234567" if channel == "sms" else "a@b.example",
                        template="dunning_reminder",
                        variables={},
                        locale="en",
                        body="…",
                        category="dunning",
                        priority=50,
                        status=status,
                        # handed to the provider once, except what was suppressed before it
                        attempts=0 if status == "suppressed" else 1,
                        idempotency_key=f"k{i}",
                        not_before=at(10, 1),
                        next_attempt_at=at(10, 1),
                    )
                    .returning(OutboundMessage.id)
                ).scalar_one()
            s.execute(
                insert(DunningAttempt).values(
                    case_id=cases[case],
                    tenant_id=ng,
                    step=step,
                    step_index=ORDER.index(step),
                    channel=channel,
                    scheduled_at=at(10, 1),
                    message_id=message_id,
                    retry_outcome=outcome,
                )
            )


def _messages(**counts: int) -> dict[str, int]:
    base = dict.fromkeys(
        (
            "queued",
            "scheduled",
            "sending",
            "sent",
            "delivered",
            "failed",
            "suppressed",
            "canceled",
            "unknown",
        ),
        0,
    )
    return base | counts


EXPECTED_ATTEMPTS: list[dict[str, Any]] = [
    {
        "step": "day0",
        "channel": "email",
        "attempts": 2,
        "recorded": 2,
        "skipped": 0,
        "messages": _messages(delivered=1, failed=1),
    },
    {
        "step": "day3",
        "channel": "email",
        "attempts": 1,  # the suppressed one never reached a provider
        "recorded": 2,
        "skipped": 0,
        "messages": _messages(sent=1, suppressed=1),
    },
    {
        "step": "day3",
        "channel": "payment_retry",
        "attempts": 2,
        "recorded": 2,
        "skipped": 0,
        "retry_outcomes": {"succeeded": 1, "failed": 1},
    },
    {
        "step": "day5",
        "channel": "sms",
        "attempts": 1,
        "recorded": 1,
        "skipped": 0,
        "messages": _messages(delivered=1),
    },
    # the handover is ours: recorded, never handed to a provider
    {"step": "day14", "channel": "handover", "attempts": 0, "recorded": 1, "skipped": 0},
]


def test_analytics_figures_for_a_cohort(db: Database) -> None:
    seed(db)
    with db.read_session() as s:
        doc = compute(s, since=SINCE, until=UNTIL, step_order=ORDER)
    assert doc["cases"] == {"opened": 7, "recovered": 4, "suspended": 1, "canceled": 1, "open": 1}
    assert doc["opened_amount_minor"] == {"NGN": 150_850_700, "USD": 5_000}
    rec = doc["recovered"]
    assert rec["count"] == 4
    assert rec["amount_minor"] == {"NGN": 150_750_000, "USD": 2_000}
    assert rec["rate"] == round(4 / 7, 4) and rec["rate_of_closed"] == round(4 / 6, 4)
    # recovery times 6 h, 48 h, 84 h, 100 h: the median is (48 + 84) / 2 = 66 h
    assert rec["median_seconds_to_recover"] == 66 * 3600
    assert rec["by_step"] == [
        {"step": BEFORE_ANY_STEP, "count": 1, "amount_minor": {"USD": 2_000}, "share": 0.25},
        {"step": "day3", "count": 2, "amount_minor": {"NGN": 150_500_000}, "share": 0.5},
        {"step": "day7", "count": 1, "amount_minor": {"NGN": 250_000}, "share": 0.25},
    ]
    assert doc["suspended"] == {"count": 1, "amount_minor": {"NGN": 100_000}}
    assert doc["canceled"] == {"count": 1, "amount_minor": {"USD": 3_000}}
    assert doc["attempts"]["total"] == 6 and doc["attempts"]["skipped"] == 0
    assert doc["attempts"]["by_step"] == EXPECTED_ATTEMPTS
    assert doc["attempts"]["messages_by_channel"] == {
        "email": {"attempts": 3, **_messages(delivered=1, failed=1, sent=1, suppressed=1)},
        "sms": {"attempts": 1, **_messages(delivered=1)},
    }
    assert doc["attempts"]["payment_retries"] == {"failed": 1, "succeeded": 1}
    assert doc["currently_open"] == {"count": 2, "amount_minor": {"NGN": 700, "USD": 5_000}}


def test_an_odd_count_median_and_an_empty_window(db: Database) -> None:
    seed(db)
    with db.read_session() as s:
        # only c1 (48 h), c2 (84 h), c3 (6 h): opened 2 - 11 October
        doc = compute(s, since=SINCE, until=at(10, 11), step_order=ORDER)
        empty = compute(s, since=at(1, 1), until=at(2, 1), step_order=ORDER)
    assert doc["recovered"]["median_seconds_to_recover"] == 48 * 3600
    assert empty["cases"]["opened"] == 0
    assert empty["recovered"]["rate"] is None
    assert empty["recovered"]["median_seconds_to_recover"] is None
    assert empty["recovered"]["by_step"] == [] and empty["attempts"]["by_step"] == []
    assert empty["currently_open"]["count"] == 2  # the whole open book, whatever the window


def test_analytics_json_through_the_cli(run, db: Database) -> None:
    seed(db)
    result = run("analytics", "--since", "2026-10-01", "--until", "2026-11-01", "--json")
    assert result.exit_code == 0, result.stderr
    doc = json.loads(result.stdout)  # stdout is one JSON document and nothing else
    assert doc["since"] == "2026-10-01T00:00:00+00:00"
    assert doc["until"] == "2026-11-01T00:00:00+00:00"
    assert set(doc) == {
        "since",
        "until",
        "cases",
        "opened_amount_minor",
        "recovered",
        "suspended",
        "canceled",
        "attempts",
        "currently_open",
    }
    assert doc["recovered"]["by_step"][1]["step"] == "day3"
    assert doc["attempts"]["by_step"] == EXPECTED_ATTEMPTS


def test_analytics_defaults_to_the_last_30_days(run, db: Database) -> None:
    seed(db)
    result = run("analytics", "--now", "2026-10-31T00:00:00Z", "--json")
    doc = json.loads(result.stdout)
    assert doc["since"] == "2026-10-01T00:00:00+00:00"
    assert doc["cases"]["opened"] == 7


@pytest.mark.parametrize(
    ("since", "start"),
    [("30d", "2026-10-01T00:00:00+00:00"), ("24h", "2026-10-30T00:00:00+00:00")],
)
def test_analytics_since_takes_a_duration_back_from_now(
    run, db: Database, since: str, start: str
) -> None:
    seed(db)
    result = run("analytics", "--now", "2026-10-31T00:00:00Z", "--since", since, "--json")
    assert result.exit_code == 0, result.stderr
    doc = json.loads(result.stdout)
    assert (doc["since"], doc["until"]) == (start, "2026-10-31T00:00:00+00:00")
    if since == "30d":  # the same window as the default, so the same cohort
        assert doc["cases"]["opened"] == 7


def test_analytics_table_and_bar_chart(run, db: Database) -> None:
    seed(db)
    result = run("analytics", "--since", "2026-10-01", "--until", "2026-11-01")
    assert result.exit_code == 0, result.stderr
    out = result.stdout
    assert "recovery by step" in out
    assert "NGN 1,507,500.00, USD 20.00" in out  # recovered amounts
    assert "57.1% of opened, 66.7% of closed" in out
    assert "2 d 18 h" in out  # 66 hours
    bars = [line for line in out.splitlines() if "█" in line]
    assert len(bars) == 3
    day3 = next(line for line in bars if "day3" in line)
    assert day3.count("█") == 40 and "2 (50.0%)" in day3
    assert "attempts by step and channel" in out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--since", "2026-11-01", "--until", "2026-10-01"), "is not before --until"),
        (("--since", "last week"), "--since 'last week' is neither a duration nor an ISO-8601"),
        (("--until", "soon"), "--until 'soon' is not an ISO-8601 date"),
    ],
)
def test_analytics_refuses_a_bad_window(
    run, db: Database, args: tuple[str, ...], message: str
) -> None:
    result = run("analytics", *args)
    assert result.exit_code == 2
    assert message in said(result)
    assert result.stdout == ""


def test_duration_text() -> None:
    assert duration(None) == "—"
    assert duration(59) == "0 min"
    assert duration(5 * 3600 + 20 * 60) == "5 h 20 min"
    assert duration(66 * 3600) == "2 d 18 h"
