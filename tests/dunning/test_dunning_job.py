"""`faithflow dunning preview|run`: the ladder, the suppression window, quiet hours across time
zones, preferences, payment retries against the provider stand-ins, idempotency, the CLI and the
task endpoint — on SQLite and Postgres."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from fakes.providers import FakeAPI, Reply, paystack_fake, stripe_error, stripe_fake
from helpers import running
from sqlalchemy import select, update

from faithflow_ops.billing.lifecycle import set_subscription_status
from faithflow_ops.config import Settings
from faithflow_ops.db import Database
from faithflow_ops.dunning.prefs import save_preferences
from faithflow_ops.dunning.windows import windows_from_specs as _windows
from faithflow_ops.jobs import registry
from faithflow_ops.jobs.base import Action, JobContext
from faithflow_ops.jobs.dunning_run import JOB
from faithflow_ops.jobs.runner import RunResult, apply_one, run_job
from faithflow_ops.models import (
    Invoice,
    OutboundMessage,
    Subscription,
    SubscriptionPlan,
    Tenant,
)
from faithflow_ops.models.dunning import DunningAttempt, DunningCase

SPEC = registry.get("dunning")
NOW = dt.datetime(2026, 3, 2, 9, 0, tzinfo=dt.UTC)  # Monday 09:00 UTC (10:00 in Lagos)
SUNDAY = dt.datetime(2026, 3, 1, 9, 0, tzinfo=dt.UTC)  # Sunday 10:00 in Lagos
H, D = dt.timedelta(hours=1), dt.timedelta(days=1)


def settings(**values: str) -> Settings:
    return Settings.from_env(
        {"FAITHFLOW_PROVIDER_MAX_ATTEMPTS": "1", "FAITHFLOW_PROVIDER_TIMEOUT": "3", **values}
    )


def ctx(now: dt.datetime = NOW, dry_run: bool = False, cfg: Settings | None = None) -> JobContext:
    return JobContext(
        now=now, dry_run=dry_run, trigger="cli", settings=cfg or settings(), actor="test:ops"
    )


def run(db: Database, now: dt.datetime = NOW, *, dry_run: bool = False, **kw: Any) -> RunResult:
    result = run_job(db, SPEC, ctx(now, dry_run, **kw))
    assert result.status in ("succeeded", "partial"), result.error
    return result


def kinds(result: RunResult, kind: str) -> list[Action]:
    return [a.action for a in result.actions if a.action.kind == kind]


class World:
    def __init__(self, db: Database) -> None:
        self.db = db
        self.plans: dict[str, int] = {}

    def plan(self, currency: str = "NGN") -> int:
        if currency not in self.plans:
            with self.db.session() as s:
                plan = SubscriptionPlan(
                    code=f"growth-{currency.lower()}",
                    name="Growth",
                    amount_minor=1500000,
                    currency=currency,
                    interval="month",
                    metadata_={"paystackPlanCode": "PLN_growth"},
                )
                s.add(plan)
                s.flush()
                self.plans[currency] = plan.id
        return self.plans[currency]

    def past_due(
        self,
        slug: str,
        since: dt.datetime,
        *,
        timezone: str = "Africa/Lagos",
        email: str | None = "treasurer@example.org",
        phone: str | None = "+2348012345678",
        provider: str = "paystack",
        currency: str = "NGN",
        invoice: str | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> tuple[int, int]:
        """A tenant with one subscription that went past due at `since` (through the hook in
        set_subscription_status, as the webhooks and subs automate do): (subscription, case)."""
        plan_id = self.plan(currency)
        with self.db.session() as s:
            tenant = Tenant(
                slug=slug,
                name=slug.title() + " Church",
                timezone=timezone,
                currency=currency,
                billing_email=email,
                billing_phone=phone,
            )
            s.add(tenant)
            s.flush()
            sub = Subscription(
                tenant_id=tenant.id,
                plan_id=plan_id,
                provider=provider,
                provider_subscription_id=f"SUB_{slug}",
                status="active",
                metadata_=metadata or {},
            )
            s.add(sub)
            s.flush()
            if invoice:
                s.add(
                    Invoice(
                        tenant_id=tenant.id,
                        subscription_id=sub.id,
                        provider=provider,
                        provider_invoice_id=invoice,
                        status="open",
                        amount_due_minor=4900,
                        currency=currency,
                        hosted_invoice_url=f"https://invoice.example/{invoice}",
                    )
                )
                s.flush()
            set_subscription_status(s, sub, "past_due", since, "test:webhook")
            case_id = s.scalar(select(DunningCase.id).where(DunningCase.subscription_id == sub.id))
            assert case_id is not None
            return sub.id, case_id

    def pay(self, sub_id: int, at: dt.datetime = NOW) -> None:
        with self.db.session() as s:
            sub = s.get(Subscription, sub_id)
            assert sub is not None
            set_subscription_status(s, sub, "active", at, "test:webhook")

    def prefs(self, slug: str, **changes: Any) -> None:
        with self.db.session() as s:
            save_preferences(s, slug, actor="test", now=NOW - 30 * D, **changes)

    def attempts(self, case_id: int) -> list[DunningAttempt]:
        with self.db.read_session() as s:
            return list(
                s.scalars(
                    select(DunningAttempt)
                    .where(DunningAttempt.case_id == case_id)
                    .order_by(DunningAttempt.step_index, DunningAttempt.channel)
                )
            )

    def messages(self, **where: Any) -> list[OutboundMessage]:
        with self.db.read_session() as s:
            return list(s.scalars(select(OutboundMessage).filter_by(**where)))

    def case(self, case_id: int) -> DunningCase:
        with self.db.read_session() as s:
            case = s.get(DunningCase, case_id)
            assert case is not None
            return case


@pytest.fixture
def world(db: Database) -> World:
    return World(db)


# --- the ladder ----------------------------------------------------------------------------


def test_a_step_is_due_exactly_at_its_offset_and_not_a_second_before(world: World) -> None:
    world.past_due("grace", NOW - 3 * D + dt.timedelta(seconds=1))  # day3: 1 s away
    first = run(world.db)
    [send] = kinds(first, "send_step")
    assert send.data["step"] == "day0"
    assert send.data["scheduled_at"] == NOW.isoformat()
    assert not kinds(first, "retry_payment")

    no_window = settings(FAITHFLOW_DUNNING_WINDOW_HOURS="0")
    later = run(world.db, NOW + dt.timedelta(seconds=1), cfg=no_window)
    [send] = kinds(later, "send_step")
    assert send.data["step"] == "day3"  # exactly at past_due_since + 3 days
    assert send.data["due_at"] == (NOW + dt.timedelta(seconds=1)).isoformat()
    assert [a.data["step"] for a in kinds(later, "retry_payment")] == ["day3"]


def test_several_overdue_steps_send_only_the_latest_and_record_the_others_skipped(
    world: World,
) -> None:
    _, case_id = world.past_due("late", NOW - 6 * D)  # found late: day0, day3, day5 all due
    result = run(world.db)
    [send] = kinds(result, "send_step")
    assert (send.data["step"], send.data["channels"]) == ("day5", ["sms"])
    [skip] = kinds(result, "skip_steps")
    assert [s["step"] for s in skip.data["steps"]] == ["day0", "day3"]
    assert not kinds(result, "retry_payment")  # day3's retry is passed over too
    rows = {(a.step, a.channel): a for a in world.attempts(case_id)}
    assert set(rows) == {
        ("day0", "email"),
        ("day3", "email"),
        ("day3", "payment_retry"),
        ("day5", "sms"),
    }
    assert rows[("day0", "email")].detail.startswith("skipped:")
    assert rows[("day3", "payment_retry")].retry_outcome == "skipped"
    assert rows[("day5", "sms")].message_id is not None
    [sms] = world.messages(channel="sms")
    assert sms.idempotency_key == f"dunning:{case_id}:day5:sms"
    assert (sms.about_type, sms.about_id) == ("dunning_attempt", str(rows[("day5", "sms")].id))
    assert sms.category == "dunning" and "NGN" in sms.body


def test_a_second_run_at_the_same_now_plans_no_new_sends(world: World) -> None:
    world.past_due("grace", NOW - 3 * D)
    world.past_due("hope", NOW - 10 * D, timezone="UTC")
    first = run(world.db)
    assert first.counts["send_step"] == 2
    assert first.outcomes == {"applied": sum(first.counts.values())}
    again = run(world.db)
    assert not kinds(again, "send_step")
    assert not kinds(again, "skip_steps") and not kinds(again, "retry_payment")
    assert len(world.messages()) == 3  # day3 email; day10 email + sms


def test_the_handover_step_records_the_attempt_and_marks_the_case(world: World) -> None:
    _, case_id = world.past_due("grace", NOW - 14 * D)
    result = run(world.db)
    assert [a.data["step"] for a in kinds(result, "handover")] == ["day14"]
    # day14 sends nothing: the final notice (day10) goes with it; day0..day7 passed over
    assert [a.data["step"] for a in kinds(result, "send_step")] == ["day10"]
    assert world.case(case_id).handed_over_at == NOW
    assert ("day14", "handover") in {(a.step, a.channel) for a in world.attempts(case_id)}
    assert not kinds(run(world.db), "handover")


# --- the window and quiet hours --------------------------------------------------------------


def test_two_steps_three_days_apart_are_both_sent_on_time(world: World) -> None:
    world.past_due("grace", NOW)
    [day0] = kinds(run(world.db), "send_step")
    assert day0.data["scheduled_at"] == NOW.isoformat() and not day0.data["held_back"]
    [day3] = kinds(run(world.db, NOW + 3 * D), "send_step")
    assert day3.data["scheduled_at"] == (NOW + 3 * D).isoformat()
    assert not day3.data["held_back"]


def test_a_step_due_ten_hours_after_the_last_message_waits_for_the_window(
    world: World,
) -> None:
    # One church, two subscriptions past due ten hours apart (the first ended after its notice
    # went out): one contact per 20 hours.
    world.past_due("grace", NOW - 10 * H, timezone="UTC")
    world.prefs("grace", quiet_hours=())  # no quiet hours: the window alone decides
    run(world.db, NOW - 10 * H)
    [first] = world.messages()
    assert first.not_before == NOW - 10 * H
    with world.db.session() as s:  # one live subscription per tenant: the first one ended
        s.get(OutboundMessage, first.id).status = "sent"  # type: ignore[union-attr]
        [old] = s.scalars(select(Subscription).where(Subscription.tenant_id == first.tenant_id))
        set_subscription_status(s, old, "canceled", NOW - H, "test:webhook")
        sub = Subscription(
            tenant_id=first.tenant_id, plan_id=world.plan(), provider="paystack", status="active"
        )
        s.add(sub)
        s.flush()
        set_subscription_status(s, sub, "past_due", NOW, "test:webhook")
    result = run(world.db, NOW)
    [send] = kinds(result, "send_step")
    assert send.data["due_at"] == NOW.isoformat()
    assert send.data["scheduled_at"] == (NOW + 10 * H).isoformat()  # last message + 20 h
    assert "window" in send.data["held_back"][0]
    [second] = [m for m in world.messages() if m.id != first.id]
    assert second.status == "scheduled" and second.not_before == NOW + 10 * H


def test_quiet_hours_hold_a_step_in_each_tenants_time_zone(world: World) -> None:
    # Sunday 09:00 UTC: 10:00 in Lagos, inside the Sunday-service window (06:00-14:00);
    # 03:00 in Chicago, inside the night window and then the Sunday one.
    world.past_due("lagos", SUNDAY, timezone="Africa/Lagos")
    world.past_due("chicago", SUNDAY, timezone="America/Chicago")
    world.past_due("auckland", SUNDAY, timezone="Pacific/Auckland")  # Sunday 22:00 there
    result = run(world.db, SUNDAY)
    by_tenant = {a.data["tenant"]: a for a in kinds(result, "send_step")}
    lagos = by_tenant["lagos"].data
    assert lagos["scheduled_at"] == "2026-03-01T13:00:00+00:00"  # 14:00 in Lagos
    assert "quiet hours (Africa/Lagos)" in lagos["held_back"][0]
    assert by_tenant["chicago"].data["scheduled_at"] == "2026-03-01T20:00:00+00:00"  # 14:00 CST
    assert by_tenant["auckland"].data["scheduled_at"] == "2026-03-01T19:00:00+00:00"  # Mon 08:00
    scheduled = {a.data["tenant_id"]: a.data["scheduled_at"] for a in by_tenant.values()}
    for message in world.messages():
        assert message.status == "scheduled"
        assert message.not_before.isoformat() == scheduled[message.tenant_id]


# --- preferences -----------------------------------------------------------------------------


def test_a_paused_tenant_is_held_and_nothing_is_sent_or_charged(world: World) -> None:
    world.past_due("grace", NOW - 3 * D)
    world.prefs("grace", paused_until=NOW + 2 * D, pause_note="treasurer pays on Wednesday")
    result = run(world.db)
    [held] = kinds(result, "paused")
    assert "treasurer pays on Wednesday" in held.reason
    assert held.data["paused_until"] == (NOW + 2 * D).isoformat()
    assert not kinds(result, "send_step") and not kinds(result, "retry_payment")
    assert result.outcomes == {"reported": 1}
    assert world.messages() == []


def test_an_sms_opt_out_drops_the_sms_channel_and_says_why(world: World) -> None:
    world.past_due("grace", NOW - 10 * D)
    world.prefs("grace", sms_opt_out=True)
    [send] = kinds(run(world.db), "send_step")
    assert send.data["step"] == "day10"
    assert send.data["channels"] == ["email"]
    assert send.data["blocked"] == {"sms": "sms opted out"}
    assert [m.channel for m in world.messages()] == ["email"]


def test_an_sms_only_step_with_sms_opted_out_is_recorded_skipped(world: World) -> None:
    world.past_due("grace", NOW - 5 * D, email=None)  # nothing to fall back to
    world.prefs("grace", sms_opt_out=True, whatsapp_opt_out=True)
    run(world.db, NOW - 2 * D, cfg=settings(FAITHFLOW_DUNNING_WINDOW_HOURS="0"))  # day3
    result = run(world.db)
    assert not kinds(result, "send_step")
    [skip] = kinds(result, "skip_steps")
    assert "every channel blocked (sms: sms opted out)" in skip.reason
    assert not kinds(run(world.db), "skip_steps")


def test_a_missing_phone_is_reported_for_a_human(world: World) -> None:
    world.past_due("grace", NOW - 5 * D, phone=None)
    run(world.db, NOW - 2 * D, cfg=settings(FAITHFLOW_DUNNING_WINDOW_HOURS="0"))
    with world.db.session() as s:  # and no email either: no channel to fall back to
        s.execute(update(Tenant).values(billing_email=None))
    result = run(world.db)
    [report] = kinds(result, "no_contact")
    assert report.data["blocked"] == {"sms": "no phone number"}
    assert "faithflow dunning prefs set --tenant grace" in report.reason
    assert result.outcomes.get("reported") == 1
    assert not kinds(result, "send_step")


# --- recovery --------------------------------------------------------------------------------


def test_a_payment_between_preview_and_run_means_the_run_sends_nothing(world: World) -> None:
    sub_id, case_id = world.past_due("grace", NOW - 3 * D)
    preview = run(world.db, dry_run=True)
    [send] = kinds(preview, "send_step")
    assert world.messages() == [] and world.attempts(case_id) == []
    world.pay(sub_id)  # the invoice.paid webhook lands
    assert world.case(case_id).status == "recovered"
    # The preview's own action, applied now, re-checks the case and does nothing.
    applied = apply_one(world.db, JOB, ctx(), send)
    assert applied.outcome == "stale" and "recovered" in (applied.error or "")
    result = run(world.db)
    assert sum(result.counts.values()) == 0
    assert world.messages() == [] and world.attempts(case_id) == []


def test_recovery_cancels_the_scheduled_messages_and_credits_no_step(world: World) -> None:
    sub_id, case_id = world.past_due("lagos", SUNDAY)
    run(world.db, SUNDAY)
    [message] = world.messages()
    assert message.status == "scheduled"  # held for the Sunday service
    world.pay(sub_id, SUNDAY + H)
    case = world.case(case_id)
    # its only message never went out (held, then canceled): no step earned the recovery
    assert (case.status, case.recovered_after_step) == ("recovered", None)
    [message] = world.messages()
    assert message.status == "canceled" and "recovered" in (message.last_error or "")


def test_the_safety_net_opens_and_closes_cases_the_hook_missed(world: World) -> None:
    sub_id, case_id = world.past_due("grace", NOW - 1 * D)
    with world.db.session() as s:  # bypass the hook both ways
        s.get(Subscription, sub_id).status = "active"  # type: ignore[union-attr]
        bethel = Tenant(slug="bethel", name="Bethel Church")  # one live subscription each
        s.add(bethel)
        s.flush()
        other = Subscription(
            tenant_id=bethel.id,
            plan_id=world.plan(),
            provider="paystack",
            status="past_due",
            past_due_since=NOW - 2 * D,
        )
        s.add(other)
        s.flush()
        other_id = other.id
    preview = run(world.db, dry_run=True)
    assert [a.data["subscription_id"] for a in kinds(preview, "open_case")] == [other_id]
    [close] = kinds(preview, "close_case")
    assert close.data == {**close.data, "case_id": case_id, "status": "recovered"}
    run(world.db)
    assert world.case(case_id).status == "recovered"
    with world.db.read_session() as s:
        opened = s.scalars(select(DunningCase).where(DunningCase.subscription_id == other_id)).one()
    assert opened.past_due_since == NOW - 2 * D and opened.status == "open"
    assert not kinds(run(world.db), "open_case")


# --- payment retries -------------------------------------------------------------------------


@pytest.fixture
def stripe_api() -> Iterator[FakeAPI]:
    with stripe_fake().serve() as fake:
        yield fake


@pytest.fixture
def paystack_api() -> Iterator[FakeAPI]:
    with paystack_fake().serve() as fake:
        yield fake


def retry_outcome(world: World, case_id: int) -> DunningAttempt:
    [row] = [a for a in world.attempts(case_id) if a.channel == "payment_retry"]
    return row


def test_stripe_retry_pays_the_open_invoice_once(world: World, stripe_api: FakeAPI) -> None:
    cfg = settings(STRIPE_SECRET_KEY="sk_test_x", STRIPE_API_BASE=stripe_api.url)
    _, case_id = world.past_due(
        "grace", NOW - 3 * D, provider="stripe", currency="USD", invoice="in_1QGrace0001"
    )
    run(world.db, cfg=cfg)
    [call] = [r for r in stripe_api.requests if r.path == "/v1/invoices/in_1QGrace0001/pay"]
    assert call.headers["idempotency-key"] == f"dunning:{case_id}:day3:payment_retry"
    row = retry_outcome(world, case_id)
    assert row.retry_outcome == "succeeded" and "webhook" in (row.detail or "")
    assert world.case(case_id).status == "open"  # the invoice.paid webhook settles it
    run(world.db, cfg=cfg)
    assert len([r for r in stripe_api.requests if r.path.endswith("/pay")]) == 1


def test_stripe_decline_is_failed_and_a_network_error_is_error(
    world: World, stripe_api: FakeAPI
) -> None:
    cfg = settings(STRIPE_SECRET_KEY="sk_test_x", STRIPE_API_BASE=stripe_api.url)
    _, declined = world.past_due(
        "grace", NOW - 3 * D, provider="stripe", currency="USD", invoice="in_declined"
    )
    stripe_api.queue(
        "POST",
        "/v1/invoices/in_declined/pay",
        stripe_error(402, "Your card was declined.", "card_error", code="card_declined"),
    )
    run(world.db, cfg=cfg)
    row = retry_outcome(world, declined)
    assert row.retry_outcome == "failed" and "declined" in (row.detail or "")

    _, down = world.past_due(
        "hope", NOW - 3 * D, provider="stripe", currency="USD", invoice="in_down"
    )
    unreachable = settings(STRIPE_SECRET_KEY="sk_test_x", STRIPE_API_BASE="http://127.0.0.1:9")
    run(world.db, cfg=unreachable)
    assert retry_outcome(world, down).retry_outcome == "error"


def test_paystack_retry_charges_the_saved_authorization(
    world: World, paystack_api: FakeAPI
) -> None:
    cfg = settings(PAYSTACK_SECRET_KEY="sk_test_p", PAYSTACK_API_BASE=paystack_api.url)
    _, case_id = world.past_due(
        "lagos",
        NOW - 3 * D,
        invoice="INV_lagos1",
        metadata={"paystackAuthorizationCode": "AUTH_72btv547ic"},
    )
    run(world.db, cfg=cfg)
    [call] = [r for r in paystack_api.requests if r.path == "/transaction/charge_authorization"]
    body = call.json()
    assert body["authorization_code"] == "AUTH_72btv547ic"
    assert (body["amount"], body["currency"]) == ("4900", "NGN")
    assert body["reference"] == f"ff-dunning-{case_id}-day3"
    assert body["email"] == "treasurer@example.org"
    assert retry_outcome(world, case_id).retry_outcome == "succeeded"


def test_paystack_decline_network_error_and_no_authorization(
    world: World, paystack_api: FakeAPI
) -> None:
    cfg = settings(PAYSTACK_SECRET_KEY="sk_test_p", PAYSTACK_API_BASE=paystack_api.url)
    auth = {"paystackAuthorizationCode": "AUTH_x1"}
    _, declined = world.past_due("a", NOW - 3 * D, metadata=auth)
    paystack_api.queue(
        "POST",
        "/transaction/charge_authorization",
        Reply(
            200,
            {
                "status": True,
                "message": "Charge attempted",
                "data": {"status": "failed", "gateway_response": "Insufficient Funds"},
            },
        ),
    )
    _, missing = world.past_due("b", NOW - 3 * D)  # no saved authorization
    run(world.db, cfg=cfg)
    row = retry_outcome(world, declined)
    assert row.retry_outcome == "failed" and "Insufficient Funds" in (row.detail or "")
    row = retry_outcome(world, missing)
    assert row.retry_outcome == "skipped" and "authorization" in (row.detail or "")
    assert len(paystack_api.requests) == 1

    _, down = world.past_due("c", NOW - 3 * D, metadata=auth)
    paystack_api.queue(
        "POST", "/transaction/charge_authorization", Reply(503, {"status": False, "message": "x"})
    )
    run(world.db, cfg=cfg)
    assert retry_outcome(world, down).retry_outcome == "error"


# --- CLI and task endpoint -------------------------------------------------------------------


def test_cli_preview_json_has_case_step_channels_and_scheduled_at(world: World, cli: Any) -> None:
    _, case_id = world.past_due("lagos", SUNDAY)
    result = cli("dunning", "preview", "--json", "--now", SUNDAY.isoformat())
    assert result.exit_code == 0, result.stderr
    doc = json.loads(result.stdout)
    assert doc["job"] == "dunning" and doc["dry_run"] is True
    [action] = doc["actions"]
    assert action["kind"] == "send_step" and action["target"] == f"dunning_case:{case_id}"
    data = action["data"]
    assert (data["case_id"], data["step"], data["channels"]) == (case_id, "day0", ["email"])
    assert data["scheduled_at"] == "2026-03-01T13:00:00+00:00"
    assert data["days_past_due"] == 0 and data["amount_minor"] == 1500000
    assert world.messages() == []
    table = cli("dunning", "preview", "--now", SUNDAY.isoformat())
    assert table.exit_code == 0 and "send_step" in table.stdout


def test_cli_run_enqueues_and_returns_the_job_json(world: World, cli: Any) -> None:
    world.past_due("grace", NOW)
    result = cli("dunning", "run", "--json", "--now", NOW.isoformat())
    assert result.exit_code == 0, result.stderr
    doc = json.loads(result.stdout)
    assert doc["dry_run"] is False and doc["counts"] == {"send_step": 1}
    assert doc["outcomes"] == {"applied": 1}
    assert len(world.messages()) == 1
    again = cli("dunning", "run", "--json", "--now", NOW.isoformat())
    assert json.loads(again.stdout)["counts"] == {}


def test_cli_bad_now_is_a_one_line_error(world: World, cli: Any) -> None:
    result = cli("dunning", "preview", "--now", "next tuesday")
    assert result.exit_code == 2
    assert "--now" in result.stderr and "Traceback" not in result.stderr


def test_the_task_endpoint_runs_the_same_job(world: World, db_url: str) -> None:
    from receiver.app import create_app

    world.past_due("grace", NOW)
    key = "k" * 32
    app = create_app(Settings(database_url=db_url, integration_api_key=key), db=world.db)
    with running(app) as url:
        headers = {"X-API-Key": key}
        body = {"dry_run": True, "now": NOW.isoformat()}
        preview = httpx.post(url + "/tasks/subscriptions/dunning", json=body, headers=headers)
        assert preview.status_code == 200, preview.text
        assert preview.json()["counts"] == {"send_step": 1}
        body["dry_run"] = False
        done = httpx.post(url + "/tasks/subscriptions/dunning", json=body, headers=headers)
        assert done.json()["outcomes"] == {"applied": 1}
        again = httpx.post(url + "/tasks/subscriptions/dunning", json=body, headers=headers)
        assert again.json()["counts"] == {}
    assert len(world.messages()) == 1


# --- preferences changed while a step's messages wait in the outbox ---------------------------


def _set_prefs(world: World, slug: str, now: dt.datetime, **changes: Any) -> None:
    with world.db.session() as s:
        save_preferences(s, slug, actor="test", now=now, **changes)


def test_a_pause_holds_a_step_already_scheduled_until_the_pause_ends(world: World) -> None:
    from faithflow_ops.comms import dispatch

    world.past_due("lagos", SUNDAY)
    run(world.db, SUNDAY)
    [message] = world.messages()
    assert message.not_before.isoformat() == "2026-03-01T13:00:00+00:00"  # after the service
    # The treasurer promises payment before it goes out: nothing may go out during the pause.
    _set_prefs(world, "lagos", SUNDAY + H, paused_until=SUNDAY + 3 * D, pause_note="promised")
    [message] = world.messages()
    assert message.status == "scheduled"
    assert message.next_attempt_at == message.not_before == SUNDAY + 3 * D  # Wed 10:00 Lagos
    with world.db.read_session() as s:
        assert not list(dispatch.plan(s, SUNDAY + 5 * H))
        [due] = list(dispatch.plan(s, SUNDAY + 3 * D))
    assert due.kind == "send"


def test_a_pause_ending_in_quiet_hours_holds_the_step_to_the_first_allowed_minute(
    world: World,
) -> None:
    world.past_due("lagos", SUNDAY)
    run(world.db, SUNDAY)
    end = dt.datetime(2026, 3, 3, 22, 0, tzinfo=dt.UTC)  # Tuesday 23:00 in Lagos: quiet
    _set_prefs(world, "lagos", SUNDAY + H, paused_until=end, pause_note="promised")
    [message] = world.messages()
    assert message.next_attempt_at == dt.datetime(2026, 3, 4, 7, 0, tzinfo=dt.UTC)  # 08:00


def test_an_opt_out_cancels_that_channels_scheduled_message_only(world: World) -> None:
    world.past_due("grace", SUNDAY - 10 * D)  # day10: email + sms
    run(world.db, SUNDAY)
    assert sorted(m.channel for m in world.messages()) == ["email", "sms"]
    _set_prefs(world, "grace", SUNDAY + H, sms_opt_out=True)
    by_channel = {m.channel: m for m in world.messages()}
    assert by_channel["sms"].status == "canceled"
    assert "sms opted out" in (by_channel["sms"].last_error or "")
    assert by_channel["email"].status == "scheduled"


def test_new_quiet_hours_move_a_scheduled_step_later_never_earlier(world: World) -> None:
    world.past_due("lagos", SUNDAY)
    run(world.db, SUNDAY)  # held to 14:00 Lagos by the Sunday service
    evening = _windows(["sun 06:00-18:00", "daily 21:00-08:00"])
    _set_prefs(world, "lagos", SUNDAY + H, quiet_hours=evening)
    [message] = world.messages()
    assert message.next_attempt_at == dt.datetime(2026, 3, 1, 17, 0, tzinfo=dt.UTC)
    _set_prefs(world, "lagos", SUNDAY + H, quiet_hours=())  # no quiet hours: not earlier
    [message] = world.messages()
    assert message.next_attempt_at == dt.datetime(2026, 3, 1, 17, 0, tzinfo=dt.UTC)


def test_comms_retry_refuses_a_reminder_canceled_because_the_church_paid(world: World) -> None:
    from faithflow_ops.comms import admin
    from faithflow_ops.errors import UserError

    sub_id, case_id = world.past_due("lagos", SUNDAY)
    run(world.db, SUNDAY)
    world.pay(sub_id, SUNDAY + H)
    [message] = world.messages()
    assert message.status == "canceled"
    with world.db.session() as s, pytest.raises(UserError) as refused:
        admin.retry(s, message.id, now=SUNDAY + 2 * H, actor="test")
    assert f"dunning case {case_id} is recovered" in str(refused.value)
    [message] = world.messages()
    assert message.status == "canceled"
