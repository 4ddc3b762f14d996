"""`faithflow disputes monitor|list|show` on SQLite and Postgres, against loopback Stripe and
Paystack dispute lists and a loopback alert receiver (the real SDK and httpx code runs)."""

from __future__ import annotations

import copy
import datetime as dt
import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from fakes.disputes import AlertReceiver, Answer, PaystackDisputesFake, StripeDisputesFake
from fakes.smtp import SmtpServer, smtp_server
from helpers import running, said
from sqlalchemy import func, select
from webhook_support import payload, seed

from faithflow_ops.billing.dispute_alerts import threshold_for
from faithflow_ops.config import Settings
from faithflow_ops.db import Database
from faithflow_ops.models import AuditLog, Dispute, DisputeAlert, JobRun
from faithflow_ops.webhooks import inbox
from faithflow_ops.webhooks.events import parse

pytestmark = pytest.mark.filterwarnings("ignore:Use 'content=:DeprecationWarning")  # stripe SDK

NOW = dt.datetime(2026, 11, 25, 12, 0, tzinfo=dt.UTC)
ACCT = "acct_1QGraceConnect"


def iso(value: dt.datetime) -> str:
    return value.isoformat().replace("+00:00", "Z")


def stripe_dispute(due: dt.datetime, status: str = "needs_response", **over: Any) -> dict[str, Any]:
    """The Connect account's dispute from tests/fixtures, due at `due`."""
    obj = payload("stripe", "tenant.charge.dispute.created")["data"]["object"]
    obj["status"] = status
    obj["evidence_details"]["due_by"] = int(due.timestamp())
    obj.update(over)
    return obj


def paystack_dispute(
    due: dt.datetime, status: str = "awaiting-merchant-feedback"
) -> dict[str, Any]:
    """The church's (subaccount) Paystack dispute from tests/fixtures, due at `due`."""
    obj = payload("paystack", "tenant.charge.dispute.remind")["data"]
    obj["status"] = status
    obj["dueAt"] = iso(due)
    return obj


@dataclass
class World:
    db: Database
    stripe: StripeDisputesFake
    paystack: PaystackDisputesFake
    alerts: AlertReceiver
    mail: SmtpServer

    def count(self, model: Any, **where: Any) -> int:
        with self.db.read_session() as s:
            return s.scalar(select(func.count()).select_from(model).filter_by(**where)) or 0

    def dispute(self, provider_dispute_id: str) -> Dispute:
        with self.db.read_session() as s:
            return s.scalars(
                select(Dispute).filter_by(provider_dispute_id=provider_dispute_id)
            ).one()


@pytest.fixture
def world(db: Database, monkeypatch: pytest.MonkeyPatch) -> Iterator[World]:
    seed(db)
    with (
        StripeDisputesFake().serve() as stripe,
        PaystackDisputesFake().serve() as paystack,
        AlertReceiver().serve() as alerts,
        smtp_server() as mail,
    ):
        for name, value in {
            "STRIPE_SECRET_KEY": "sk_test_1",
            "STRIPE_API_BASE": stripe.url,
            "PAYSTACK_SECRET_KEY": "sk_test_ps",
            "PAYSTACK_API_BASE": paystack.url,
            "ALERT_WEBHOOK_URL": alerts.url + "/hooks/ops",
            "FAITHFLOW_OPS_EMAIL": "ops@faithflow.example",
            "SMTP_URL": mail.url(),
            "EMAIL_FROM": "faithflow@faithflow.example",
            "FAITHFLOW_PROVIDER_BACKOFF": "0",
            "FAITHFLOW_PROVIDER_MAX_WAIT": "0",
            "FAITHFLOW_PROVIDER_MAX_ATTEMPTS": "3",
        }.items():
            monkeypatch.setenv(name, value)
        yield World(db, stripe, paystack, alerts, mail)


def monitor(cli: Any, now: dt.datetime, *extra: str) -> tuple[int, dict[str, Any]]:
    result = cli("disputes", "monitor", "--now", iso(now), "--json", *extra)
    return result.exit_code, json.loads(result.stdout)


def kinds(doc: dict[str, Any], kind: str) -> list[dict[str, Any]]:
    return [a for a in doc["actions"] if a["kind"] == kind]


# --- pull ------------------------------------------------------------------------------------


def test_pull_records_missed_disputes_through_the_webhook_code(world: World, cli: Any) -> None:
    world.stripe.disputes[ACCT] = [stripe_dispute(NOW + dt.timedelta(days=10))]
    world.paystack.disputes = [paystack_dispute(NOW + dt.timedelta(days=10))]
    code, doc = monitor(cli, NOW)
    assert code == 0, doc
    assert doc["counts"] == {"dispute_pulled": 2}
    assert doc["outcomes"] == {"applied": 2}
    gift = world.dispute("dp_1QGift0001")
    assert (gift.scope, gift.status, gift.amount_minor, gift.currency) == (
        "tenant",
        "needs_response",
        10000,
        "USD",
    )
    assert gift.evidence_due_by == NOW + dt.timedelta(days=10)
    lagos = world.dispute("358977")
    assert (lagos.scope, lagos.status, lagos.charge_ref) == (
        "tenant",
        "awaiting-merchant-feedback",
        "T_lagos0gift001",
    )
    assert world.count(AuditLog, action="dispute.pulled") == 2
    # The Connect account's list went with its Stripe-Account header; the platform's without.
    accounts = [r.headers.get("stripe-account") for r in world.stripe.calls("/v1/disputes")]
    assert accounts == [None, ACCT]
    query = world.paystack.calls("/dispute")[0].query
    assert (query["from"], query["to"], query["page"]) == ("2026-07-28", "2026-11-26", "1")

    code, again = monitor(cli, NOW)
    assert (code, again["counts"]) == (0, {})  # idempotent: nothing new to do


def test_pull_follows_pages_and_retries_429_and_500(world: World, cli: Any) -> None:
    world.stripe.page_size = 2
    world.paystack.page_size = 2
    world.stripe.disputes[None] = []
    world.stripe.disputes[ACCT] = [
        stripe_dispute(NOW + dt.timedelta(days=20), id=f"dp_page{n}", created=1795600000 + n)
        for n in range(5)
    ]
    paged = []
    for n in range(3):
        obj = paystack_dispute(NOW + dt.timedelta(days=20))
        obj["id"] = 400000 + n
        obj["createdAt"] = f"2026-11-2{n}T09:00:00.000Z"
        paged.append(obj)
    world.paystack.disputes = paged
    world.stripe.queue(
        "/v1/disputes", Answer(200, {"object": "list", "data": [], "has_more": False})
    )
    world.stripe.queue(
        "/v1/disputes",
        Answer(
            429,
            {"error": {"type": "rate_limit_error", "message": "slow down"}},
            {"Retry-After": "1"},
        ),
        Answer(500, {"error": {"type": "api_error", "message": "boom"}}),
    )
    world.paystack.queue("/dispute", Answer(500, {"status": False, "message": "boom"}))
    code, doc = monitor(cli, NOW)
    assert code == 0, doc
    assert doc["counts"] == {"dispute_pulled": 8}
    assert world.count(Dispute, provider="stripe") == 5
    assert world.count(Dispute, provider="paystack") == 3
    connect = [r for r in world.stripe.calls("/v1/disputes") if r.headers.get("stripe-account")]
    # page 1 (429, 500, then 200), page 2, page 3
    assert len(connect) == 5
    assert [r.query.get("starting_after") for r in connect[2:]] == [None, "dp_page3", "dp_page1"]
    pages = [r.query["page"] for r in world.paystack.calls("/dispute")]
    assert pages == ["1", "1", "2"]


def test_provider_state_marks_won_lost_and_closed(world: World, cli: Any) -> None:
    due = NOW + dt.timedelta(days=2)
    for name in ("tenant.charge.dispute.created",):
        doc = payload("stripe", name)
        doc["data"]["object"]["evidence_details"]["due_by"] = int(due.timestamp())
        assert inbox.receive(world.db, parse("stripe", "tenant", doc)).status == "applied"
    doc = payload("paystack", "tenant.charge.dispute.create")
    assert inbox.receive(world.db, parse("paystack", "tenant", doc)).status == "applied"
    assert world.dispute("dp_1QGift0001").closed_at is None

    world.stripe.disputes[ACCT] = [stripe_dispute(due, status="lost")]
    resolved = payload("paystack", "tenant.charge.dispute.resolve")["data"]
    world.paystack.disputes = [resolved]
    code, out = monitor(cli, NOW)
    assert code == 0, out
    assert out["counts"] == {"dispute_pulled": 2}  # and no alert: both are over
    reasons = " ".join(a["reason"] for a in out["actions"])
    assert "needs_response -> lost" in reasons
    gift = world.dispute("dp_1QGift0001")
    assert gift.status == "lost" and gift.closed_at is not None
    lagos = world.dispute("358977")
    assert lagos.status == "resolved" and lagos.closed_at is not None
    assert lagos.metadata_.get("resolution") == resolved["resolution"]
    assert world.alerts.alerts == []
    assert monitor(cli, NOW)[1]["counts"] == {}


def test_a_newer_webhook_is_not_undone_by_an_older_pull(world: World, cli: Any) -> None:
    """Paystack orders by the dispute's own updatedAt: a list older than what a webhook
    recorded changes nothing."""
    doc = payload("paystack", "tenant.charge.dispute.resolve")
    assert inbox.receive(world.db, parse("paystack", "tenant", doc)).status == "applied"
    older = paystack_dispute(NOW + dt.timedelta(days=2))
    older["updatedAt"] = "2026-11-20T09:00:00.000Z"
    world.paystack.disputes = [older]
    world.stripe.disputes[ACCT] = []
    code, out = monitor(cli, NOW)
    assert (code, out["counts"]) == (0, {})
    assert world.dispute("358977").status == "resolved"


def test_an_unmapped_dispute_is_reported_not_written(world: World, cli: Any) -> None:
    stray = payload("stripe", "platform.charge.dispute.created")["data"]["object"]  # no invoice
    world.stripe.disputes[None] = [stray]
    code, out = monitor(cli, NOW)
    assert code == 0, out
    assert out["counts"] == {"unmapped_dispute": 1}
    (action,) = out["actions"]
    assert action["outcome"] == "reported"
    assert action["target"] == "dispute:stripe:dp_1QGrace0001"
    assert "ch_3QGraceInvoice1" in action["reason"]
    assert world.count(Dispute) == 0


def test_missing_keys_pull_only_the_configured_provider(
    world: World, cli: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("PAYSTACK_SECRET_KEY")
    world.stripe.disputes[ACCT] = [stripe_dispute(NOW + dt.timedelta(days=10))]
    world.paystack.disputes = [paystack_dispute(NOW + dt.timedelta(days=10))]
    code, out = monitor(cli, NOW)
    assert code == 0, out
    assert out["counts"] == {"dispute_pulled": 1, "pull_skipped": 1}
    (skipped,) = kinds(out, "pull_skipped")
    assert skipped["target"] == "provider:paystack"
    assert "PAYSTACK_SECRET_KEY is not set" in skipped["reason"]
    assert world.paystack.requests == []

    monkeypatch.delenv("STRIPE_SECRET_KEY")
    code, out = monitor(cli, NOW)
    assert code == 0
    assert out["counts"] == {"pull_skipped": 2}


def test_a_provider_that_keeps_failing_fails_the_run_but_not_the_rest(
    world: World, cli: Any
) -> None:
    boom = Answer(503, {"status": False, "message": "down"})
    world.paystack.queue("/dispute", boom, boom, boom)
    world.stripe.disputes[ACCT] = [stripe_dispute(NOW + dt.timedelta(days=1, hours=12))]
    code, out = monitor(cli, NOW)
    assert code == 1
    assert out["status"] == "partial", out.get("error")
    assert out["counts"] == {"dispute_pulled": 1, "evidence_due_alert": 1, "pull_failed": 1}
    (failed,) = kinds(out, "pull_failed")
    assert failed["outcome"] == "failed" and "after 3 attempts" in failed["error"]
    assert len(world.alerts.alerts) == 1


def test_a_preview_that_could_not_pull_is_partial_not_done(world: World, cli: Any) -> None:
    """The preview cannot show what a provider it could not reach holds: exit 1, `partial`."""
    boom = Answer(503, {"status": False, "message": "down"})
    world.paystack.queue("/dispute", boom, boom, boom)
    code, out = monitor(cli, NOW, "--dry-run")
    assert code == 1
    assert out["status"] == "partial"
    assert out["counts"] == {"pull_failed": 1}
    with world.db.read_session() as s:
        run = s.scalars(select(JobRun)).one()
        assert (run.dry_run, run.status) == (True, "partial")


# --- alerts ----------------------------------------------------------------------------------


def test_alerts_once_per_threshold(world: World, cli: Any) -> None:
    due = NOW + dt.timedelta(days=2, hours=12)
    world.stripe.disputes[ACCT] = [stripe_dispute(due)]
    world.paystack.disputes = [paystack_dispute(NOW + dt.timedelta(days=10))]

    code, out = monitor(cli, NOW)  # a missed dispute: recorded and alerted in one run
    assert code == 0, out
    assert out["counts"] == {"dispute_pulled": 2, "evidence_due_alert": 1}
    (alert_action,) = kinds(out, "evidence_due_alert")
    assert alert_action["data"]["threshold_days"] == 3
    assert alert_action["data"]["tenant"] == "grace"
    (alert,) = world.alerts.alerts
    assert alert["type"] == "dispute.evidence_due"
    assert alert["threshold_days"] == 3 and alert["provider_dispute_id"] == "dp_1QGift0001"
    assert alert["id"] == "dispute-evidence-due:stripe:dp_1QGift0001:3d"
    assert alert["tenant"] == "grace" and alert["evidence_due_by"] == due.isoformat()
    assert world.alerts.requests[0].path == "/hooks/ops"
    gift = world.dispute("dp_1QGift0001")
    with world.db.read_session() as s:
        row = s.scalars(select(DisputeAlert)).one()
        assert (row.dispute_id, row.threshold_days, row.channel) == (gift.id, 3, "webhook,email")
        notice = s.scalars(select(AuditLog).filter_by(action="dispute.evidence_due_alert")).one()
        assert notice.after["email_to"] == "ops@faithflow.example"
        assert notice.entity_id == str(gift.id)

    assert monitor(cli, NOW)[1]["counts"] == {}
    later = NOW + dt.timedelta(hours=20)  # 1 day 16 h left: still the 3-day threshold
    assert monitor(cli, later)[1]["counts"] == {}
    past_one_day = NOW + dt.timedelta(days=1, hours=13)  # 23 h left
    code, out = monitor(cli, past_one_day)
    assert code == 0
    assert out["counts"] == {"evidence_due_alert": 1}
    assert kinds(out, "evidence_due_alert")[0]["target"] == f"dispute:{gift.id}"
    assert [a["threshold_days"] for a in world.alerts.alerts] == [3, 1]
    assert monitor(cli, past_one_day)[1]["counts"] == {}
    assert monitor(cli, past_one_day + dt.timedelta(hours=12))[1]["counts"] == {}
    assert len(world.alerts.alerts) == 2
    assert world.count(DisputeAlert) == 2


def test_first_seen_inside_one_day_alerts_once_not_twice(world: World, cli: Any) -> None:
    world.stripe.disputes[ACCT] = [stripe_dispute(NOW + dt.timedelta(hours=10))]
    code, out = monitor(cli, NOW)
    assert code == 0
    assert [a["data"]["threshold_days"] for a in kinds(out, "evidence_due_alert")] == [1]
    assert len(world.alerts.alerts) == 1


def test_no_alert_for_closed_or_submitted_or_overdue_disputes(world: World, cli: Any) -> None:
    soon = NOW + dt.timedelta(days=1, hours=12)
    world.stripe.disputes[ACCT] = [
        stripe_dispute(soon, status="won", id="dp_won"),
        stripe_dispute(soon, status="under_review", id="dp_review"),
        stripe_dispute(NOW - dt.timedelta(hours=1), id="dp_overdue"),
        stripe_dispute(NOW + dt.timedelta(days=5), id="dp_later"),
    ]
    world.paystack.disputes = [paystack_dispute(soon, status="resolved")]
    code, out = monitor(cli, NOW)
    assert code == 0
    assert out["counts"] == {"dispute_pulled": 5}
    assert world.alerts.alerts == []


def test_a_failed_alert_is_retried_next_run(world: World, cli: Any) -> None:
    world.stripe.disputes[ACCT] = [stripe_dispute(NOW + dt.timedelta(days=2))]
    down = Answer(502, {"error": "bad gateway"})
    world.alerts.queue("/hooks/ops", down, down, down)
    code, out = monitor(cli, NOW)
    assert code == 1
    (alert,) = kinds(out, "evidence_due_alert")
    assert alert["outcome"] == "failed" and "HTTP 502" in alert["error"]
    assert world.count(DisputeAlert) == 0  # the claim rolled back with the failed send
    assert world.count(AuditLog, action="dispute.evidence_due_alert") == 0
    assert world.count(Dispute) == 1  # the pull itself applied

    code, out = monitor(cli, NOW)
    assert code == 0
    assert out["counts"] == {"evidence_due_alert": 1}
    assert world.count(DisputeAlert) == 1
    assert len(world.alerts.alerts) == 4  # 3 refused attempts, then the one that went through
    assert monitor(cli, NOW)[1]["counts"] == {}


def test_an_alert_with_nowhere_to_go_fails_and_waits(
    world: World, cli: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("ALERT_WEBHOOK_URL")
    monkeypatch.delenv("SMTP_URL")  # FAITHFLOW_OPS_EMAIL without a server is no channel
    world.stripe.disputes[ACCT] = [stripe_dispute(NOW + dt.timedelta(days=2))]
    code, out = monitor(cli, NOW)
    assert code == 1
    (alert,) = kinds(out, "evidence_due_alert")
    for name in ("ALERT_WEBHOOK_URL", "FAITHFLOW_OPS_EMAIL", "SMTP_URL"):
        assert name in alert["error"]
    assert world.count(DisputeAlert) == 0

    monkeypatch.setenv("SMTP_URL", world.mail.url())  # email only: sent
    code, out = monitor(cli, NOW)
    assert (code, out["counts"]) == (0, {"evidence_due_alert": 1})
    with world.db.read_session() as s:
        assert s.scalars(select(DisputeAlert.channel)).one() == "email"
    assert world.alerts.alerts == []
    assert len(world.mail.handler.messages) == 1


def test_the_alert_email_arrives_once_per_threshold(world: World, cli: Any) -> None:
    due = NOW + dt.timedelta(days=2, hours=12)
    world.stripe.disputes[ACCT] = [stripe_dispute(due)]
    assert monitor(cli, NOW)[0] == 0
    gift = world.dispute("dp_1QGift0001")
    (mail,) = world.mail.handler.messages
    assert mail.mail_from == "faithflow@faithflow.example"
    assert mail.rcpt_tos == ["ops@faithflow.example"]
    assert mail.message["To"] == "ops@faithflow.example"
    assert mail.message["Message-ID"] == f"<dispute-{gift.id}-3d@faithflow>"
    assert "dp_1QGift0001" in mail.message["Subject"] and "grace" in mail.message["Subject"]
    body = mail.message.get_content()
    assert f"faithflow disputes show {gift.id}" in body and due.isoformat() in body
    with world.db.read_session() as s:
        notice = s.scalars(select(AuditLog).filter_by(action="dispute.evidence_due_alert")).one()
        assert notice.after["email_to"] == "ops@faithflow.example"
        assert notice.after["message_id"] == mail.message["Message-ID"]

    assert monitor(cli, NOW)[1]["counts"] == {}  # the second run: no second e-mail
    past_one_day = NOW + dt.timedelta(days=1, hours=13)
    assert monitor(cli, past_one_day)[1]["counts"] == {"evidence_due_alert": 1}
    assert monitor(cli, past_one_day)[1]["counts"] == {}
    assert [m.message["Message-ID"] for m in world.mail.handler.messages] == [
        f"<dispute-{gift.id}-3d@faithflow>",
        f"<dispute-{gift.id}-1d@faithflow>",
    ]


def test_a_failed_email_rolls_the_claim_back_and_the_next_run_sends_it(
    world: World, cli: Any
) -> None:
    world.stripe.disputes[ACCT] = [stripe_dispute(NOW + dt.timedelta(days=2))]
    world.mail.handler.data_failures.append("451 4.3.0 mailbox busy, try later")
    code, out = monitor(cli, NOW)
    assert code == 1
    (alert,) = kinds(out, "evidence_due_alert")
    assert alert["outcome"] == "failed" and "SMTP 451" in alert["error"]
    assert world.count(DisputeAlert) == 0  # the claim rolled back with the failed e-mail
    assert world.count(AuditLog, action="dispute.evidence_due_alert") == 0
    assert world.mail.handler.messages == []
    assert len(world.alerts.alerts) == 1  # the webhook went first; it is sent again below

    code, out = monitor(cli, NOW)
    assert (code, out["counts"]) == (0, {"evidence_due_alert": 1})
    assert world.count(DisputeAlert) == 1
    (mail,) = world.mail.handler.messages
    assert (
        mail.message["Message-ID"] == f"<dispute-{world.dispute('dp_1QGift0001').id}-3d@faithflow>"
    )
    assert [a["id"] for a in world.alerts.alerts] == [
        "dispute-evidence-due:stripe:dp_1QGift0001:3d"
    ] * 2  # same id: the receiver deduplicates
    assert monitor(cli, NOW)[1]["counts"] == {}
    assert len(world.mail.handler.messages) == 1


def test_dry_run_writes_and_sends_nothing(world: World, cli: Any) -> None:
    world.stripe.disputes[ACCT] = [stripe_dispute(NOW + dt.timedelta(days=2))]
    world.paystack.disputes = [paystack_dispute(NOW + dt.timedelta(hours=20))]
    code, out = monitor(cli, NOW, "--dry-run")
    assert code == 0
    assert out["dry_run"] is True
    assert out["counts"] == {"dispute_pulled": 2, "evidence_due_alert": 2}
    assert all("outcome" not in a for a in out["actions"])
    assert world.count(Dispute) == 0 and world.count(DisputeAlert) == 0
    assert world.count(AuditLog, action="dispute.pulled") == 0
    assert world.alerts.alerts == []
    # The preview is what a run then does.
    code, out = monitor(cli, NOW)
    assert out["counts"] == {"dispute_pulled": 2, "evidence_due_alert": 2}
    assert out["outcomes"] == {"applied": 4}


def test_thresholds_come_from_the_setting(
    world: World, cli: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FAITHFLOW_DISPUTE_ALERT_DAYS", "7")
    world.stripe.disputes[ACCT] = [stripe_dispute(NOW + dt.timedelta(days=5))]
    code, out = monitor(cli, NOW)
    assert code == 0
    assert [a["data"]["threshold_days"] for a in kinds(out, "evidence_due_alert")] == [7]


def test_threshold_rule() -> None:
    now = NOW
    assert threshold_for(now + dt.timedelta(days=4), now, (3, 1)) is None
    assert threshold_for(now + dt.timedelta(days=3), now, (3, 1)) == 3
    assert threshold_for(now + dt.timedelta(hours=25), now, (3, 1)) == 3
    assert threshold_for(now + dt.timedelta(hours=24), now, (3, 1)) == 1
    assert threshold_for(now, now, (3, 1)) is None
    assert threshold_for(now - dt.timedelta(hours=1), now, (3, 1)) is None


# --- the task endpoint -----------------------------------------------------------------------


def test_the_task_endpoint_runs_the_same_job(world: World, db_url: str) -> None:
    from receiver.app import create_app

    world.stripe.disputes[ACCT] = [stripe_dispute(NOW + dt.timedelta(days=2))]
    world.paystack.disputes = [paystack_dispute(NOW + dt.timedelta(days=10))]
    key = "k" * 32
    settings = Settings.from_env()
    settings = Settings(**{**settings.__dict__, "database_url": db_url, "integration_api_key": key})
    app = create_app(settings, db=world.db)
    with running(app) as url:
        headers = {"Authorization": f"Bearer {key}"}
        body: dict[str, Any] = {"dry_run": True, "now": iso(NOW)}
        preview = httpx.post(url + "/tasks/disputes/monitor", json=body, headers=headers)
        assert preview.status_code == 200, preview.text
        assert preview.json()["counts"] == {"dispute_pulled": 2, "evidence_due_alert": 1}
        body["dry_run"] = False
        done = httpx.post(url + "/tasks/disputes/monitor", json=body, headers=headers, timeout=60)
        assert done.status_code == 200, done.text
        assert done.json()["outcomes"] == {"applied": 3}
        again = httpx.post(url + "/tasks/disputes/monitor", json=body, headers=headers, timeout=60)
        assert again.json()["counts"] == {}
        refused = httpx.post(url + "/tasks/disputes/monitor", json=body)
        assert refused.status_code == 401
    assert len(world.alerts.alerts) == 1
    with world.db.read_session() as s:
        triggers = s.scalars(
            select(JobRun.trigger).where(JobRun.job == "disputes_monitor").order_by(JobRun.id)
        ).all()
    assert triggers == ["http", "http", "http"]


# --- list and show ---------------------------------------------------------------------------


@pytest.fixture
def recorded(world: World, cli: Any) -> World:
    world.stripe.disputes[ACCT] = [
        stripe_dispute(NOW + dt.timedelta(days=2)),
        stripe_dispute(NOW + dt.timedelta(days=9), status="lost", id="dp_lost"),
    ]
    world.paystack.disputes = [paystack_dispute(NOW + dt.timedelta(days=4))]
    assert monitor(cli, NOW)[0] == 0
    return world


def test_list_filters_and_json(recorded: World, cli: Any) -> None:
    result = cli("disputes", "list", "--json")
    assert result.exit_code == 0
    rows = json.loads(result.stdout)
    assert [r["provider_dispute_id"] for r in rows] == ["dp_1QGift0001", "358977", "dp_lost"]
    assert rows[0]["tenant"] == "grace" and rows[0]["open"] is True
    assert rows[2]["open"] is False

    opened = json.loads(cli("disputes", "list", "--open", "--json").stdout)
    assert {r["provider_dispute_id"] for r in opened} == {"dp_1QGift0001", "358977"}
    lagos = json.loads(cli("disputes", "list", "--tenant", "lagos", "--json").stdout)
    assert [r["provider_dispute_id"] for r in lagos] == ["358977"]
    platform = json.loads(cli("disputes", "list", "--scope", "platform", "--json").stdout)
    assert platform == []
    table = cli("disputes", "list")
    assert table.exit_code == 0 and "dp_1QGift0001" in table.stdout
    assert "3 disputes" in said(table)
    limited = cli("disputes", "list", "--limit", "1", "--json")
    assert len(json.loads(limited.stdout)) == 1
    assert "showing 1 of 3" in said(limited)


def test_list_refuses_bad_filters(recorded: World, cli: Any) -> None:
    bad_scope = cli("disputes", "list", "--scope", "church")
    assert bad_scope.exit_code == 2 and "platform, tenant" in said(bad_scope)
    no_tenant = cli("disputes", "list", "--tenant", "nobody")
    assert no_tenant.exit_code == 2 and "nobody" in said(no_tenant)


def test_show_with_alerts_and_json(recorded: World, cli: Any) -> None:
    gift = recorded.dispute("dp_1QGift0001")
    result = cli("disputes", "show", str(gift.id), "--json")
    assert result.exit_code == 0
    doc = json.loads(result.stdout)
    assert doc["provider_dispute_id"] == "dp_1QGift0001" and doc["tenant"] == "grace"
    assert [a["threshold_days"] for a in doc["alerts"]] == [3]
    assert doc["alerts"][0]["channel"] == "webhook,email"
    table = cli("disputes", "show", str(gift.id))
    assert table.exit_code == 0 and "needs_response" in table.stdout


def test_show_an_unknown_dispute_exits_2(db: Database, cli: Any) -> None:
    result = cli("disputes", "show", "999")
    assert result.exit_code == 2
    assert "no dispute with id 999" in said(result)


def test_the_pulled_payload_is_the_webhook_shape() -> None:
    """The pull hands the webhook parser the same objects a delivery carries."""
    from faithflow_ops.billing.dispute_pulls import paystack_payload, stripe_payload

    obj = stripe_dispute(NOW, status="won")
    event = parse("stripe", "tenant", stripe_payload(copy.deepcopy(obj), ACCT, 1795600000))
    assert (event.type, event.object_id, event.account_ref) == (
        "charge.dispute.closed",
        "dp_1QGift0001",
        ACCT,
    )
    ps = parse("paystack", "tenant", paystack_payload(paystack_dispute(NOW, status="resolved")))
    assert (ps.type, ps.account_ref) == ("charge.dispute.resolve", "ACCT_lagos0chapel1")
