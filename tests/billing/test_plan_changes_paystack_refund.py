"""`faithflow subs change-plan` on Paystack: upgrades wait for the period end by default, and a
change `--at now` refunds the unused part of the period paid on the old plan (issue 13,
defect 7). On SQLite and Postgres, through the CLI, at a fixed `--now`, against a loopback
stand-in for Paystack (the real httpx client runs).

The provider's documentation is the spec of the calls and answers:
- Refunds, `POST /refund` (`transaction` = the charge's reference or id, `amount` in the
  subunit, at most the charge; "Refund has been queued for processing", `data.id`,
  `data.status` "pending"): https://paystack.com/docs/payments/refunds/ and
  https://paystack.com/docs/api/refund/#create
- Subscriptions, `POST /subscription` (`customer`, `plan`, `start_date` ISO 8601 for the first
  debit) and `POST /subscription/disable` (`code`, `token`):
  https://paystack.com/docs/api/subscription/#create and
  https://paystack.com/docs/api/subscription/#disable
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator
from typing import Any

import pytest
from fakes.providers import FakeAPI, Recorded, Reply, paystack_error, paystack_refund, stripe_error
from helpers import said
from sqlalchemy import select, update

from faithflow_ops.db import Database
from faithflow_ops.models import AuditLog, Invoice, PlanChange, Subscription, SubscriptionPlan

pytestmark = pytest.mark.filterwarnings("ignore:Use 'content=:DeprecationWarning")  # stripe SDK

UTC = dt.UTC
NOW = dt.datetime(2026, 3, 21, 12, 0, 1, tzinfo=UTC)
PERIOD_START = dt.datetime(2026, 3, 1, tzinfo=UTC)
PERIOD_END = dt.datetime(2026, 3, 31, tzinfo=UTC)
PERIOD_S = 30 * 86_400  # 2_592_000
UNUSED_S = 9 * 86_400 + 12 * 3_600 - 1  # 820_799: from NOW to PERIOD_END
PAID = 4_500_000  # growth-ngn, 45 000 NGN in kobo
REFUND = PAID * UNUSED_S // PERIOD_S  # 1_424_998 (1_424_998.26… rounded down)
AT = ("--now", NOW.isoformat())


# --- stand-ins ---------------------------------------------------------------------------------


def _paystack(fake: FakeAPI, req: Recorded) -> Reply:
    if req.method == "POST" and req.path in ("/subscription/disable", "/subscription/enable"):
        verb = req.path.rsplit("/", 1)[-1]
        return Reply(200, {"status": True, "message": f"Subscription {verb}d successfully"})
    if req.method == "POST" and req.path == "/subscription":
        n = sum(1 for r in fake.requests if r.path == req.path)
        return Reply(
            200,
            {
                "status": True,
                "message": "Subscription successfully created",
                "data": {
                    "customer": 1173,
                    "plan": 28,
                    "integration": 100032,
                    "domain": "test",
                    "start": 1774094401,
                    "status": "active",
                    "quantity": 1,
                    "amount": 9000000,
                    "subscription_code": f"SUB_new{n}",
                    "email_token": f"tokNew{n}",
                    "id": 9,
                },
            },
        )
    if req.method == "POST" and req.path == "/refund":
        return paystack_refund(fake, req)
    return paystack_error(404, "Not found")


def _stripe(fake: FakeAPI, req: Recorded) -> Reply:
    parts = req.path.strip("/").split("/")
    if parts[:2] == ["v1", "subscriptions"] and len(parts) == 3:
        price = req.form().get("items[0][price]", "price_Growth") if req.method == "POST" else None
        item = {
            "id": "si_Item1",
            "object": "subscription_item",
            "price": {"id": price or "price_Growth", "object": "price"},
            "quantity": 1,
            "current_period_end": int(PERIOD_END.timestamp()),
        }
        return Reply(
            200,
            {
                "id": parts[2],
                "object": "subscription",
                "status": "active",
                "schedule": None,
                "items": {"object": "list", "data": [item], "has_more": False},
            },
        )
    return stripe_error(404, f"Unrecognized request URL ({req.method}: {req.path}).")


@pytest.fixture
def paystack(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeAPI]:
    with FakeAPI(_paystack).serve() as fake:
        monkeypatch.setenv("PAYSTACK_SECRET_KEY", "sk_test_ps")
        monkeypatch.setenv("PAYSTACK_API_BASE", fake.url)
        fake.objects["transactions"] = [{"reference": "T_mar", "amount": PAID}]
        yield fake


@pytest.fixture
def stripe(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeAPI]:
    with FakeAPI(_stripe).serve() as fake:
        monkeypatch.setenv("STRIPE_SECRET_KEY", "sk_test_cli")
        monkeypatch.setenv("STRIPE_API_BASE", fake.url)
        yield fake


@pytest.fixture(autouse=True)
def _fast_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAITHFLOW_PROVIDER_TIMEOUT", "0.5")
    monkeypatch.setenv("FAITHFLOW_PROVIDER_BACKOFF", "0.01")
    monkeypatch.setenv("FAITHFLOW_PROVIDER_MAX_ATTEMPTS", "3")


def ok(result: Any) -> Any:
    assert result.exit_code == 0, (result.stdout, result.stderr)
    return result


def refused(result: Any, code: int = 2) -> str:
    assert result.exit_code == code, (result.exit_code, result.stdout, result.stderr)
    return said(result)


# --- data --------------------------------------------------------------------------------------


@pytest.fixture
def lagos(cli: Any, db: Database, paystack: FakeAPI) -> Database:
    """Lagos on growth-ngn through Paystack, period 1–31 March; no charge recorded yet."""
    for args in (
        ("tenants", "add", "lagos", "--name", "Lagos", "--currency", "NGN",
         "--email", "treasurer@lagos.example"),
        ("plans", "add", "growth-ngn", "--name", "Growth", "--amount", "45000",
         "--currency", "NGN", "--interval", "month", "--tier", "2",
         "--meta", "paystackPlanCode=PLN_growth"),
        ("plans", "add", "pro-ngn", "--name", "Pro", "--amount", "90000",
         "--currency", "NGN", "--interval", "month", "--tier", "3",
         "--meta", "paystackPlanCode=PLN_pro"),
        ("subs", "add", "--tenant", "lagos", "--plan", "growth-ngn", "--provider", "paystack",
         "--provider-subscription-id", "SUB_old1", "--customer-id", "CUS_lagos1",
         "--current-period-end", PERIOD_END.isoformat(), "--meta", "paystackEmailToken=tokOld1"),
    ):  # fmt: skip
        ok(cli(*args, "--json"))  # the rows, not a Rich record per add
    return db


def _invoice(
    db: Database,
    code: str,
    *,
    reference: str | None,
    status: str = "paid",
    start: dt.datetime | None = PERIOD_START,
    end: dt.datetime | None = PERIOD_END,
    paid: int = PAID,
    paid_at: dt.datetime | None = None,
) -> int:
    with db.session() as session:
        sub = session.scalar(select(Subscription))
        assert sub is not None
        invoice = Invoice(
            tenant_id=sub.tenant_id,
            subscription_id=sub.id,
            provider="paystack",
            provider_invoice_id=code,
            status=status,
            amount_due_minor=paid,
            amount_paid_minor=paid if status == "paid" else 0,
            currency="NGN",
            period_start=start,
            period_end=end,
            paid_at=(paid_at or start) if status == "paid" else None,
            metadata_={"paystackReference": reference} if reference else {},
        )
        session.add(invoice)
        session.flush()
        return invoice.id


@pytest.fixture
def paid(lagos: Database) -> Database:
    """February's charge, and March's (T_mar) which paid the current period."""
    _invoice(lagos, "INV_feb", reference="T_feb", start=PERIOD_START - dt.timedelta(days=28),
             end=PERIOD_START)  # fmt: skip
    _invoice(lagos, "INV_mar", reference="T_mar")
    return lagos


def _change(cli: Any, *args: str) -> Any:
    return cli("subs", "change-plan", "--tenant", "lagos", "--to", "pro-ngn", *args, *AT)


def _changes(db: Database) -> list[PlanChange]:
    with db.read_session() as session:
        return list(session.scalars(select(PlanChange).order_by(PlanChange.id)))


def _sub(db: Database) -> Subscription:
    with db.read_session() as session:
        sub = session.scalar(select(Subscription))
        assert sub is not None
        return sub


def _plan_code(db: Database) -> str:
    with db.read_session() as session:
        plan = session.get(SubscriptionPlan, _sub(db).plan_id)
        assert plan is not None
        return plan.code


def _refunds(fake: FakeAPI) -> list[Recorded]:
    return [r for r in fake.requests if r.path == "/refund"]


# --- the default: the period end ---------------------------------------------------------------


def test_paystack_upgrade_defaults_to_the_period_end_so_nothing_is_billed_twice(
    cli: Any, paid: Database, paystack: FakeAPI
) -> None:
    preview = json.loads(ok(_change(cli, "--dry-run", "--json")).stdout)
    assert (preview["kind"], preview["at"], preview["would_be"]) == (
        "upgrade",
        "period_end",
        "scheduled",
    )
    assert preview["refund"] is None
    assert not any("/refund" in c for c in preview["provider_calls"])

    doc = json.loads(ok(_change(cli, "--json")).stdout)
    assert (doc["status"], doc["effective_at"]) == ("scheduled", PERIOD_END.isoformat())
    disable, create = paystack.requests
    assert disable.path == "/subscription/disable"
    assert create.json() == {
        "customer": "CUS_lagos1",
        "plan": "PLN_pro",
        "start_date": PERIOD_END.isoformat(),
    }
    assert _refunds(paystack) == []
    assert _plan_code(paid) == "growth-ngn"  # until `subs automate` at the period end


# --- --at now: the refund ----------------------------------------------------------------------


def test_upgrade_now_preview_shows_the_refund_and_its_call(
    cli: Any, paid: Database, paystack: FakeAPI
) -> None:
    doc = json.loads(ok(_change(cli, "--at", "now", "--dry-run", "--json")).stdout)
    assert (doc["at"], doc["would_be"], doc["effective_at"]) == ("now", "applied", NOW.isoformat())
    refund = doc["refund"]
    assert refund["amount_minor"] == REFUND == 1_424_998
    assert (refund["transaction"], refund["paid_minor"], refund["currency"]) == (
        "T_mar",
        PAID,
        "NGN",
    )
    assert (refund["unused_seconds"], refund["period_seconds"]) == (UNUSED_S, PERIOD_S)
    assert refund["note"].startswith("NGN 14,249.98 of the NGN 45,000.00 paid by T_mar for ")
    assert "minor units" not in refund["note"]
    assert (refund["period_start"], refund["period_end"]) == (
        PERIOD_START.isoformat(),
        PERIOD_END.isoformat(),
    )
    assert doc["provider_calls"] == [
        "POST /subscription/disable code=SUB_old1",
        "POST /subscription customer=CUS_lagos1 plan=PLN_pro now",
        f"POST /refund transaction=T_mar amount={REFUND}",
    ]
    table = ok(_change(cli, "--at", "now", "--dry-run"))
    assert f"would call: POST /refund transaction=T_mar amount={REFUND}" in said(table)
    assert "NGN 14,249.98" in table.stdout and "T_mar" in table.stdout
    assert paystack.requests == [] and _changes(paid) == []


def test_upgrade_now_refunds_the_unused_part_once_the_new_plan_is_in_place(
    cli: Any, paid: Database, paystack: FakeAPI
) -> None:
    result = ok(_change(cli, "--at", "now", "--json"))
    assert [r.path for r in paystack.requests] == [
        "/subscription/disable",
        "/subscription",
        "/refund",
    ]
    [refund] = _refunds(paystack)
    body = refund.json()
    assert (body["transaction"], body["amount"]) == ("T_mar", REFUND)
    assert refund.headers["authorization"] == "Bearer sk_test_ps"
    doc = json.loads(result.stdout)
    assert (doc["status"], doc["error"]) == ("applied", None)
    assert (doc["refund"]["id"], doc["refund"]["status"]) == ("3018284", "pending")
    assert "refunded NGN 14,249.98 of T_mar: Paystack refund 3018284" in said(result)
    [change] = _changes(paid)
    refs = change.provider_refs
    assert (refs["refund_id"], refs["refund_status"]) == ("3018284", "pending")
    assert (refs["refund_transaction"], refs["refund_amount"]) == ("T_mar", REFUND)
    assert change.status == "applied" and change.error is None
    sub = _sub(paid)
    assert (_plan_code(paid), sub.provider_subscription_id) == ("pro-ngn", "SUB_new1")
    with paid.read_session() as session:
        entry = session.scalar(select(AuditLog).where(AuditLog.action == "plan_change.apply"))
        assert entry is not None and entry.after is not None
        assert entry.after["refund"] == {
            "transaction": "T_mar",
            "amount": REFUND,
            "currency": "NGN",
            "id": "3018284",
            "status": "pending",
        }


def test_the_charge_covering_now_is_refunded_not_a_newer_or_unreferenced_one(
    cli: Any, lagos: Database, paystack: FakeAPI
) -> None:
    _invoice(lagos, "INV_mar", reference="T_mar")
    # paid later but for April (not now), and one paid with no reference known
    _invoice(lagos, "INV_apr", reference="T_apr", start=PERIOD_END,
             end=PERIOD_END + dt.timedelta(days=30), paid_at=NOW)  # fmt: skip
    _invoice(lagos, "INV_x", reference=None, paid_at=NOW)
    doc = json.loads(ok(_change(cli, "--at", "now", "--dry-run", "--json")).stdout)
    assert (doc["refund"]["transaction"], doc["refund"]["amount_minor"]) == ("T_mar", REFUND)


def test_without_a_period_on_the_charge_the_subscriptions_period_is_used(
    cli: Any, lagos: Database, paystack: FakeAPI
) -> None:
    # a charge `invoices reconcile` imported: its reference, no period
    _invoice(lagos, "T_imported", reference="T_imported", start=None, end=None,
             paid_at=PERIOD_START)  # fmt: skip
    text = refused(_change(cli, "--at", "now"))
    assert "has no period covering 2026-03-21T12:00:01+00:00" in text
    assert "use --at period_end" in text
    with lagos.session() as session:
        session.execute(update(Subscription).values(current_period_start=PERIOD_START))
    doc = json.loads(ok(_change(cli, "--at", "now", "--dry-run", "--json")).stdout)
    assert (doc["refund"]["transaction"], doc["refund"]["amount_minor"]) == ("T_imported", REFUND)
    assert paystack.requests == []


def test_upgrade_now_is_refused_without_a_known_paid_charge(
    cli: Any, lagos: Database, paystack: FakeAPI
) -> None:
    _invoice(lagos, "INV_open", reference="T_open", status="open")
    _invoice(lagos, "INV_noref", reference=None)
    text = refused(_change(cli, "--at", "now"))
    assert (
        "no paid Paystack charge of subscription 1 is recorded (a paid invoice with a "
        "paystackReference), so the unused part of the period on growth-ngn cannot be refunded"
    ) in text
    assert "use --at period_end" in text and "--no-refund" in text
    refused(_change(cli, "--at", "now", "--dry-run"))
    assert paystack.requests == [] and _changes(lagos) == []


def test_no_refund_charges_the_overlap_twice_and_says_so(
    cli: Any, lagos: Database, paystack: FakeAPI
) -> None:
    text = refused(_change(cli, "--no-refund"))  # the default is the period end: nothing to skip
    assert "--no-refund applies only to a Paystack change --at now" in text
    preview = _change(cli, "--at", "now", "--no-refund", "--dry-run", "--json")
    doc = json.loads(ok(preview).stdout)
    assert doc["refund"]["amount_minor"] == 0
    assert "the church pays the overlap twice" in doc["refund"]["note"]
    assert "the church pays the overlap twice" in said(preview)
    assert not any("/refund" in c for c in doc["provider_calls"])
    ok(_change(cli, "--at", "now", "--no-refund"))
    assert [r.path for r in paystack.requests] == ["/subscription/disable", "/subscription"]
    [change] = _changes(lagos)
    assert change.status == "applied" and "refund_id" not in change.provider_refs


def test_a_failed_refund_keeps_the_change_and_exits_1_naming_what_is_owed(
    cli: Any, paid: Database, paystack: FakeAPI
) -> None:
    paystack.queue("POST", "/refund", paystack_error(400, "Transaction has been fully reversed"))
    result = _change(cli, "--at", "now", "--json")
    text = refused(result, 1)
    assert "plan change 1 applied, but the refund of NGN 14,249.98 of " in text
    assert "transaction T_mar failed (HTTP 400): Transaction has been fully reversed" in text
    assert "refund it on the Paystack dashboard (transaction T_mar, amount NGN 14,249.98)" in text
    assert "minor units" not in text
    doc = json.loads(result.stdout)
    assert doc["status"] == "applied" and doc["refund"]["id"] is None
    assert "Transaction has been fully reversed" in doc["refund"]["error"]
    [change] = _changes(paid)
    assert change.status == "applied"
    assert "Transaction has been fully reversed" in (change.error or "")
    assert "Transaction has been fully reversed" in change.provider_refs["refund_error"]
    assert _sub(paid).provider_subscription_id == "SUB_new1"  # the new plan stands
    listed = json.loads(ok(cli("subs", "changes", "--json")).stdout)
    assert "refund it on the Paystack dashboard" in listed[0]["error"]
    # the period's charge is spoken for: another change now is refused, not refunded again
    text = refused(cli("subs", "change-plan", "--tenant", "lagos", "--to", "growth-ngn",
                       "--at", "now", *AT))  # fmt: skip
    assert "already settled by plan change 1, which tried to refund NGN 14,249.98 of it" in text


def test_a_refund_whose_outcome_is_unknown_is_not_sent_twice(
    cli: Any, paid: Database, paystack: FakeAPI
) -> None:
    paystack.queue("POST", "/refund", paystack_error(502, "Bad gateway"))
    text = refused(_change(cli, "--at", "now"), 1)
    assert len(_refunds(paystack)) == 1  # a 5xx may have queued it: never retried
    assert "the refund may have been queued" in text
    assert _changes(paid)[0].status == "applied"


def test_a_429_refund_is_retried(cli: Any, paid: Database, paystack: FakeAPI) -> None:
    paystack.queue("POST", "/refund", Reply(429, {"status": False, "message": "Slow down"}))
    ok(_change(cli, "--at", "now"))
    assert len(_refunds(paystack)) == 2
    assert _changes(paid)[0].provider_refs["refund_id"] == "3018284"


def test_a_second_change_now_in_the_same_period_is_refused_until_the_new_charge_is_known(
    cli: Any, paid: Database, paystack: FakeAPI
) -> None:
    ok(_change(cli, "--at", "now"))
    text = refused(
        cli("subs", "change-plan", "--tenant", "lagos", "--to", "growth-ngn", "--at", "now", *AT)
    )
    assert "the charge that paid the current period (T_mar, invoice 2)" in text
    assert "already settled by plan change 1, which refunded NGN 14,249.98 of it" in text
    assert len(_refunds(paystack)) == 1


def test_a_failed_create_refunds_nothing(cli: Any, paid: Database, paystack: FakeAPI) -> None:
    paystack.queue("POST", "/subscription", paystack_error(400, "Plan not found"))
    result = _change(cli, "--at", "now", "--json")
    refused(result, 2)
    assert _refunds(paystack) == []
    doc = json.loads(result.stdout)
    assert doc["status"] == "rejected" and doc["refund"]["amount_minor"] == 0
    assert doc["refund"]["note"].endswith("not refunded: the change was not made")


def test_a_trial_has_nothing_to_refund(cli: Any, lagos: Database, paystack: FakeAPI) -> None:
    with lagos.session() as session:
        session.execute(update(Subscription).values(status="trialing"))
    doc = json.loads(ok(_change(cli, "--at", "now", "--json")).stdout)
    assert doc["status"] == "applied" and doc["refund"]["amount_minor"] == 0
    assert "a trial" in doc["refund"]["note"]
    assert _refunds(paystack) == []


def test_bad_now_is_a_clear_usage_error(cli: Any, lagos: Database, paystack: FakeAPI) -> None:
    result = cli("subs", "change-plan", "--tenant", "lagos", "--to", "pro-ngn", "--now", "soon")
    assert "--now 'soon' is not an ISO-8601 time" in refused(result)


# --- Stripe is unchanged -----------------------------------------------------------------------


def test_stripe_upgrade_still_defaults_to_now_with_proration_and_no_refund(
    cli: Any, db: Database, stripe: FakeAPI
) -> None:
    for args in (
        ("tenants", "add", "grace", "--name", "Grace", "--email", "treasurer@grace.example"),
        ("plans", "add", "growth-usd", "--name", "Growth", "--amount", "79", "--currency", "USD",
         "--interval", "month", "--tier", "2", "--meta", "stripePriceId=price_Growth"),
        ("plans", "add", "pro-usd", "--name", "Pro", "--amount", "199", "--currency", "USD",
         "--interval", "month", "--tier", "3", "--meta", "stripePriceId=price_Pro"),
        ("subs", "add", "--tenant", "grace", "--plan", "growth-usd", "--provider", "stripe",
         "--provider-subscription-id", "sub_Growth1", "--customer-id", "cus_Grace1",
         "--current-period-end", PERIOD_END.isoformat()),
    ):  # fmt: skip
        ok(cli(*args, "--json"))  # the rows, not a Rich record per add
    change = ("subs", "change-plan", "--tenant", "grace", "--to", "pro-usd", *AT)
    preview = json.loads(ok(cli(*change, "--dry-run", "--json")).stdout)
    assert (preview["at"], preview["proration_behavior"]) == ("now", "create_prorations")
    assert preview["refund"] is None
    text = refused(cli(*change, "--no-refund"))
    assert "--no-refund applies only to a Paystack change --at now" in text
    doc = json.loads(ok(cli(*change, "--json")).stdout)
    assert (doc["status"], doc["refund"]) == ("applied", None)
    assert [(r.method, r.path) for r in stripe.requests] == [
        ("GET", "/v1/subscriptions/sub_Growth1"),
        ("POST", "/v1/subscriptions/sub_Growth1"),
    ]
