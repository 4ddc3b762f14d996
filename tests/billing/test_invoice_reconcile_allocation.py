"""`faithflow invoices reconcile`: invoices paid by a charge that is not theirs, and subscriptions
whose period end is behind their last paid invoice (issue 13), on SQLite and Postgres.

The state seeded is the one the old Paystack `charge.success` left: it paid the subscription's
oldest open invoice, so the December renewal charge T_dec marked November's failed invoice
paid, and `invoice.update` then marked December paid with T_dec as well; the subscription's
current_period_end stayed at 1 December.

What the fake Paystack serves follows the documented list answers: `GET /transaction`
(https://paystack.com/docs/api/transaction/#list — `reference`, `status`, `paid_at`,
`amount`, `plan`, `customer.customer_code`, `metadata`) and `GET /subscription`
(https://paystack.com/docs/api/subscription/#list — `subscription_code`, `status`,
`open_invoice`; the single fetch `GET /subscription/:code` adds `invoices`). The strongest
signal those give for "which invoice did T_dec pay" is the transaction itself: its `paid_at`
falls in December's period, its amount and plan match December's.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator
from typing import Any

import pytest
from fakes.providers import FakeAPI, paystack_fake, stripe_fake
from sqlalchemy import func, select

from faithflow_ops.billing import reconcile_allocation as alloc
from faithflow_ops.config import Settings
from faithflow_ops.db import Database
from faithflow_ops.jobs import invoices_reconcile as rec
from faithflow_ops.jobs.base import Action, JobContext, StaleAction
from faithflow_ops.models import AuditLog, Invoice, Subscription
from faithflow_ops.models.dunning import DunningCase

pytestmark = pytest.mark.filterwarnings("ignore:Use 'content=:DeprecationWarning")  # stripe SDK

NOW = "2025-12-20T09:00:00Z"
NOW_AT = dt.datetime(2025, 12, 20, 9, tzinfo=dt.UTC)
NOV_1 = dt.datetime(2025, 11, 1, tzinfo=dt.UTC)
DEC_1 = dt.datetime(2025, 12, 1, tzinfo=dt.UTC)
JAN_1 = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
T_DEC_PAID = dt.datetime(2025, 12, 1, 0, 5, tzinfo=dt.UTC)


def ok(result: Any) -> Any:
    assert result.exit_code == 0, result.stderr
    return result


def run_json(cli: Any, *args: str) -> dict[str, Any]:
    result = cli("invoices", "reconcile", "--now", NOW, "--json", *args)
    assert result.exit_code == 0, result.stderr
    return json.loads(result.stdout)


def by_kind(doc: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {}
    for action in doc["actions"]:
        out.setdefault(action["kind"], []).append(action)
    return out


def zulu(at: dt.datetime) -> str:
    return at.isoformat().replace("+00:00", ".000Z")


@pytest.fixture(autouse=True)
def _fast(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAITHFLOW_PROVIDER_TIMEOUT", "2")
    monkeypatch.setenv("FAITHFLOW_PROVIDER_BACKOFF", "0.01")
    monkeypatch.setenv("FAITHFLOW_PROVIDER_MAX_ATTEMPTS", "2")


def _txn(ref: str, status: str, at: dt.datetime, amount: int = 45000) -> dict[str, Any]:
    return {
        "id": abs(hash(ref)) % 10**9,
        "status": status,
        "reference": ref,
        "amount": amount,
        "currency": "NGN",
        "paid_at": zulu(at) if status == "success" else None,
        "createdAt": zulu(at),
        "customer": {"id": 1, "customer_code": "CUS_lagos", "email": "t@lagos.example"},
        "plan": {"plan_code": "PLN_growth", "name": "Growth"},
        "metadata": None,
    }


@pytest.fixture
def paystack(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeAPI]:
    fake = paystack_fake()
    fake.objects = {
        "transactions": [_txn("T_dec", "success", T_DEC_PAID)],
        "subscriptions": [
            {"subscription_code": "SUB_lagos", "status": "active", "open_invoice": None,
             "next_payment_date": zulu(JAN_1), "createdAt": zulu(NOV_1),
             "customer": {"customer_code": "CUS_lagos"}},
        ],
    }  # fmt: skip
    with fake.serve():
        monkeypatch.setenv("PAYSTACK_SECRET_KEY", "sk_test_ps")
        monkeypatch.setenv("PAYSTACK_API_BASE", fake.url)
        yield fake


def _seed(cli: Any, db: Database, nov_meta: dict[str, Any]) -> dict[str, int]:
    """Lagos on Paystack, active again after the wrong payment, period stuck at 1 December."""
    for args in (
        ("tenants", "add", "lagos", "--name", "Lagos", "--currency", "NGN"),
        ("plans", "add", "growth-ngn", "--name", "Growth", "--amount", "450", "--currency", "NGN",
         "--interval", "month", "--meta", "paystackPlanCode=PLN_growth"),
        ("subs", "add", "--tenant", "lagos", "--plan", "growth-ngn", "--provider", "paystack",
         "--status", "active", "--provider-subscription-id", "SUB_lagos",
         "--customer-id", "CUS_lagos"),
        ("tenants", "link", "lagos", "CUS_lagos"),
    ):  # fmt: skip
        ok(cli(*args, "--json"))  # the rows, not a Rich record per add
    with db.session() as session:
        sub = session.scalar(select(Subscription))
        assert sub is not None
        sub.current_period_start, sub.current_period_end = NOV_1, DEC_1
        common = {"tenant_id": sub.tenant_id, "subscription_id": sub.id, "provider": "paystack",
                  "status": "paid", "amount_due_minor": 45000, "amount_paid_minor": 45000,
                  "currency": "NGN", "paid_at": T_DEC_PAID}  # fmt: skip
        nov = Invoice(provider_invoice_id="INV_nov", period_start=NOV_1, period_end=DEC_1,
                      created_at=NOV_1, metadata_=nov_meta, **common)  # fmt: skip
        dec_meta = {"paystackReference": "T_dec"}
        dec = Invoice(provider_invoice_id="INV_dec", period_start=DEC_1, period_end=JAN_1,
                      created_at=DEC_1, metadata_=dec_meta, **common)  # fmt: skip
        session.add_all([nov, dec])
        session.flush()
        return {"sub": sub.id, "nov": nov.id, "dec": dec.id}


def snapshot(db: Database) -> dict[str, Any]:
    """Every column that the fixes could touch, plus the audit and dunning row counts."""
    with db.read_session() as session:
        invoices = {
            inv.id: (
                inv.status,
                inv.amount_paid_minor,
                inv.paid_at,
                inv.metadata_,
                inv.updated_at,
            )
            for inv in session.scalars(select(Invoice))
        }
        subs = {
            s.id: (s.status, s.past_due_since, s.current_period_start, s.current_period_end)
            for s in session.scalars(select(Subscription))
        }
        return {
            "invoices": invoices,
            "subs": subs,
            "audit": session.scalar(select(func.count()).select_from(AuditLog)),
            "cases": session.scalar(select(func.count()).select_from(DunningCase)),
        }


# Variants of what the old handler left on November's invoice, and what Paystack lists.
VARIANTS = {
    # The December charge's reference on both invoices: two paid invoices share T_dec.
    "shared_reference": ({"paystackReference": "T_dec"}, []),
    # No reference on November: the only charge matching it (T_dec) is December's.
    "no_reference": ({}, []),
    # November keeps its own failed attempt's reference: Paystack lists T_nov failed and no
    # successful charge for it.
    "failed_reference": (
        {"paystackReference": "T_nov"},
        [_txn("T_nov", "failed", dt.datetime(2025, 11, 16, 10, tzinfo=dt.UTC))],
    ),
}


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_november_paid_by_the_december_charge_is_reopened_once(
    cli: Any, db: Database, paystack: FakeAPI, variant: str
) -> None:
    nov_meta, extra = VARIANTS[variant]
    paystack.objects["transactions"] += extra
    ids = _seed(cli, db, dict(nov_meta))
    before = snapshot(db)

    preview = run_json(cli, "--provider", "paystack", "--dry-run")
    assert preview["counts"] == {"reopen_invoice": 1, "advance_period": 1}
    kinds = by_kind(preview)
    reopen = kinds["reopen_invoice"][0]
    assert reopen["target"] == f"invoice:{ids['nov']}"
    assert reopen["data"]["subscription_id"] == ids["sub"]
    assert reopen["data"]["mark_past_due"] is True  # due 1 November, long passed
    assert reopen["data"]["settled_by_this_payment"] is True
    assert "dunning job chases the reopened invoice on its next run" in reopen["reason"]
    if variant != "failed_reference":
        assert reopen["data"]["owner_invoice_ids"] == [ids["dec"]]
    advance = kinds["advance_period"][0]
    assert advance["target"] == f"subscription:{ids['sub']}"
    assert advance["data"]["invoice_id"] == ids["dec"]
    assert snapshot(db) == before  # the preview wrote nothing

    doc = run_json(cli, "--provider", "paystack")
    assert doc["outcomes"] == {"applied": 2}
    with db.read_session() as session:
        nov = session.get(Invoice, ids["nov"])
        dec = session.get(Invoice, ids["dec"])
        sub = session.get(Subscription, ids["sub"])
        assert nov is not None and dec is not None and sub is not None
        assert (nov.status, nov.amount_paid_minor, nov.paid_at) == ("open", 0, None)
        note = nov.metadata_[alloc.NOTE_KEY][0]
        assert note["paidAt"] == T_DEC_PAID.isoformat()
        if variant == "shared_reference":
            assert "paystackReference" not in nov.metadata_  # the foreign reference dropped
            assert note["dropped"] == {"paystackReference": "T_dec"}
        elif variant == "failed_reference":
            assert nov.metadata_["paystackReference"] == "T_nov"  # its own, kept
        # the owner is untouched
        assert before["invoices"][ids["dec"]] == (
            dec.status, dec.amount_paid_minor, dec.paid_at, dec.metadata_, dec.updated_at
        )  # fmt: skip
        assert (sub.current_period_start, sub.current_period_end) == (DEC_1, JAN_1)
        assert (sub.status, sub.past_due_since) == ("past_due", NOW_AT)  # grace runs from now
        case = session.scalar(select(DunningCase))
        assert case is not None and case.invoice_id == ids["nov"]  # dunning chases November
        actions = list(session.scalars(select(AuditLog.action).order_by(AuditLog.id)))
        assert {"invoice.reconcile_reopen", "subscription.reconcile_past_due",
                "subscription.reconcile_period"} <= set(actions)  # fmt: skip

    after = snapshot(db)
    again = run_json(cli, "--provider", "paystack")
    assert not {"reopen_invoice", "advance_period"} & set(again["counts"])
    assert set(again.get("outcomes", {})) <= {"reported"}
    assert snapshot(db) == after


def test_a_subscription_behind_its_last_paid_invoice_moves_forward_only(
    cli: Any, db: Database, paystack: FakeAPI
) -> None:
    ids = _seed(cli, db, {"paystackReference": "T_nov_paid"})  # November genuinely paid
    with db.session() as session:
        nov = session.get(Invoice, ids["nov"])
        assert nov is not None
        nov.paid_at = NOV_1
        sub = session.get(Subscription, ids["sub"])
        assert sub is not None
        sub.current_period_start = sub.current_period_end = None
    doc = run_json(cli, "--provider", "paystack", "--dry-run")
    assert doc["counts"] == {"advance_period": 1}  # NULL is behind too
    action = by_kind(doc)["advance_period"][0]
    assert action["data"]["period_end"] == JAN_1.isoformat()

    # Apply re-checks with a conditional UPDATE: a period already further on is never moved
    # back, and a second apply of the same action is stale.
    ctx = JobContext(now=NOW_AT, dry_run=False, trigger="cli", settings=Settings.from_env())
    planned = Action(action["kind"], action["target"], action["reason"], action["data"])
    with db.session() as session:
        rec.JOB.apply(session, ctx, planned)
    with pytest.raises(StaleAction), db.session() as session:
        rec.JOB.apply(session, ctx, planned)
    later = dt.datetime(2026, 2, 1, tzinfo=dt.UTC)
    with db.session() as session:
        sub = session.get(Subscription, ids["sub"])
        assert sub is not None
        assert (sub.current_period_start, sub.current_period_end) == (DEC_1, JAN_1)
        sub.current_period_end = later
    assert run_json(cli, "--provider", "paystack", "--dry-run")["counts"] == {}
    with pytest.raises(StaleAction), db.session() as session:
        rec.JOB.apply(session, ctx, planned)
    with db.read_session() as session:
        assert session.scalar(select(Subscription.current_period_end)) == later
        assert (
            session.scalar(
                select(func.count())
                .select_from(AuditLog)
                .where(AuditLog.action == "subscription.reconcile_period")
            )
            == 1
        )


def test_a_reopen_whose_owner_moved_on_is_stale(cli: Any, db: Database, paystack: FakeAPI) -> None:
    ids = _seed(cli, db, {"paystackReference": "T_dec"})
    doc = run_json(cli, "--provider", "paystack", "--dry-run")
    planned = by_kind(doc)["reopen_invoice"][0]
    action = Action(planned["kind"], planned["target"], planned["reason"], planned["data"])
    with db.session() as session:  # an operator fixed December by hand meanwhile
        dec = session.get(Invoice, ids["dec"])
        assert dec is not None
        dec.metadata_ = {"paystackReference": "T_dec_other"}
    before = snapshot(db)
    ctx = JobContext(now=NOW_AT, dry_run=False, trigger="cli", settings=Settings.from_env())
    with pytest.raises(StaleAction, match="no longer holds the charge"), db.session() as session:
        rec.JOB.apply(session, ctx, action)
    assert snapshot(db) == before


def test_no_single_owner_is_reported_not_reopened(
    cli: Any, db: Database, paystack: FakeAPI
) -> None:
    """Periods that do not tell (none recorded) and amounts that both match: report only."""
    ids = _seed(cli, db, {"paystackReference": "T_dec"})
    with db.session() as session:
        for inv in session.scalars(select(Invoice)):
            inv.period_start = inv.period_end = None
    before = snapshot(db)
    doc = run_json(cli, "--provider", "paystack")
    assert doc["counts"] == {"charge_owner_unclear": 1}
    unclear = by_kind(doc)["charge_owner_unclear"][0]
    assert unclear["data"]["invoice_ids"] == [ids["nov"], ids["dec"]]
    assert snapshot(db) == before


# --- Stripe ----------------------------------------------------------------------------------


def _stripe_invoice(ref: str, status: str, at: dt.datetime, charge: str | None) -> dict[str, Any]:
    paid = status == "paid"
    return {
        "id": ref,
        "object": "invoice",
        "customer": "cus_grace",
        "parent": {"type": "subscription_details",
                   "subscription_details": {"subscription": "sub_grace", "metadata": {}}},
        "status": status,
        "amount_due": 7900,
        "amount_paid": 7900 if paid else 0,
        "currency": "usd",
        "created": int(at.timestamp()),
        "period_start": int(at.timestamp()),
        "period_end": int(at.timestamp()),
        "status_transitions": {"paid_at": int(at.timestamp()) + 60 if paid else None},
        "charge": charge,
        "payment_intent": charge.replace("ch_", "pi_") if charge else None,
    }  # fmt: skip


@pytest.fixture
def stripe(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeAPI]:
    fake = stripe_fake()
    fake.objects = {
        "invoices": [_stripe_invoice("in_dec", "paid", DEC_1, "ch_dec")],
        "subscriptions": [{"id": "sub_grace", "object": "subscription", "status": "active",
                           "created": int(NOV_1.timestamp())}],
    }  # fmt: skip
    with fake.serve():
        monkeypatch.setenv("STRIPE_SECRET_KEY", "sk_test_rec")
        monkeypatch.setenv("STRIPE_API_BASE", fake.url)
        yield fake


def test_stripe_invoices_sharing_a_charge_reopen_the_one_stripe_does_not_name(
    cli: Any, db: Database, stripe: FakeAPI
) -> None:
    for args in (
        ("tenants", "add", "grace", "--name", "Grace"),
        ("plans", "add", "growth-usd", "--name", "Growth", "--amount", "79", "--currency", "USD",
         "--interval", "month", "--meta", "stripePriceId=price_1Growth"),
        ("subs", "add", "--tenant", "grace", "--plan", "growth-usd", "--provider", "stripe",
         "--status", "active", "--provider-subscription-id", "sub_grace",
         "--customer-id", "cus_grace"),
        ("tenants", "link", "grace", "cus_grace"),
    ):  # fmt: skip
        ok(cli(*args, "--json"))  # the rows, not a Rich record per add
    shared = {"stripeChargeId": "ch_dec", "stripePaymentIntentId": "pi_dec"}
    with db.session() as session:
        sub = session.scalar(select(Subscription))
        assert sub is not None
        common = {"tenant_id": sub.tenant_id, "subscription_id": sub.id, "provider": "stripe",
                  "status": "paid", "amount_due_minor": 7900, "amount_paid_minor": 7900,
                  "currency": "USD", "paid_at": DEC_1}  # fmt: skip
        nov = Invoice(provider_invoice_id="in_nov", period_start=NOV_1, period_end=NOV_1,
                      created_at=NOV_1, metadata_=dict(shared), **common)  # fmt: skip
        dec = Invoice(provider_invoice_id="in_dec", period_start=DEC_1, period_end=DEC_1,
                      created_at=DEC_1, metadata_=dict(shared), **common)  # fmt: skip
        session.add_all([nov, dec])
        session.flush()
        nov_id, dec_id = nov.id, dec.id
    before = snapshot(db)
    preview = run_json(cli, "--provider", "stripe", "--dry-run")
    assert preview["counts"] == {"reopen_invoice": 1}  # one finding for charge and intent
    reopen = by_kind(preview)["reopen_invoice"][0]
    assert reopen["target"] == f"invoice:{nov_id}"
    assert reopen["data"]["owner_invoice_ids"] == [dec_id]
    assert "in_dec names ch_dec" in reopen["reason"]
    assert snapshot(db) == before

    assert run_json(cli, "--provider", "stripe")["outcomes"] == {"applied": 1}
    with db.read_session() as session:
        nov_row = session.get(Invoice, nov_id)
        assert nov_row is not None and nov_row.status == "open"
        assert not {"stripeChargeId", "stripePaymentIntentId"} & set(nov_row.metadata_)
        dec_row = session.get(Invoice, dec_id)
        assert dec_row is not None and dec_row.status == "paid"
        assert dec_row.metadata_ == shared
    again = run_json(cli, "--provider", "stripe")
    assert "reopen_invoice" not in again["counts"]
