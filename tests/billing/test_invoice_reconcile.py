"""`faithflow invoices reconcile|list|show` on SQLite and Postgres, against loopback stand-ins for
Stripe and Paystack that page their lists (the real SDK / httpx code runs)."""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from fakes.providers import FakeAPI, Recorded, Reply, stripe_error, stripe_fake
from helpers import running, said
from sqlalchemy import func, select

from faithflow_ops.billing import reconcile_remote
from faithflow_ops.config import Settings
from faithflow_ops.db import Database
from faithflow_ops.jobs import invoices_reconcile as rec
from faithflow_ops.jobs import registry
from faithflow_ops.jobs.base import Action, JobContext, StaleAction
from faithflow_ops.models import AuditLog, Invoice, ProviderAccount, Subscription
from faithflow_ops.providers._http import RetryPolicy
from faithflow_ops.providers.paystack import PaystackAPI
from faithflow_ops.providers.stripe import StripeAPI

pytestmark = pytest.mark.filterwarnings("ignore:Use 'content=:DeprecationWarning")  # stripe SDK

NOW = "2026-03-01T09:00:00Z"
NOW_AT = dt.datetime(2026, 3, 1, 9, tzinfo=dt.UTC)
KEY = "ffk_test_reconcile-key"


def ts(days_ago: float) -> int:
    return int((NOW_AT - dt.timedelta(days=days_ago)).timestamp())


def iso(days_ago: float) -> str:
    return (NOW_AT - dt.timedelta(days=days_ago)).isoformat().replace("+00:00", ".000Z")


def ok(result: Any) -> Any:
    assert result.exit_code == 0, result.stderr
    return result


def run_json(cli: Any, *args: str, code: int = 0) -> dict[str, Any]:
    result = cli("invoices", "reconcile", "--now", NOW, "--json", *args)
    assert result.exit_code == code, result.stderr
    return json.loads(result.stdout)


# --- fakes -----------------------------------------------------------------------------------


def flaky(default: Callable[[FakeAPI, Recorded], Reply], path: str, script: dict[int, Reply]):
    """A fake whose `path` answers the n-th request (1-based) from `script`, else normally."""
    seen = {"n": 0}

    def handler(fake: FakeAPI, req: Recorded) -> Reply:
        if req.path == path:
            seen["n"] += 1
            if seen["n"] in script:
                return script[seen["n"]]
        return default(fake, req)

    return handler


def _stripe_invoice(ref: str, customer: str, sub: str | None, status: str, amount: int,
                    days_ago: float) -> dict[str, Any]:  # fmt: skip
    paid = status == "paid"
    return {
        "id": ref,
        "object": "invoice",
        "customer": customer,
        "parent": {
            "type": "subscription_details",
            "subscription_details": {"subscription": sub, "metadata": {}},
        }
        if sub
        else None,
        "status": status,
        "amount_due": amount,
        "amount_paid": amount if paid else 0,
        "currency": "usd",
        "created": ts(days_ago),
        "period_start": ts(days_ago + 30),
        "period_end": ts(days_ago),
        "status_transitions": {"paid_at": ts(days_ago) + 60 if paid else None},
        "hosted_invoice_url": f"https://invoice.stripe.com/i/{ref}",
    }


STRIPE_INVOICES = [
    _stripe_invoice("in_A", "cus_grace", "sub_grace", "paid", 7900, 3),  # open here
    _stripe_invoice("in_B", "cus_hope", "sub_hope", "paid", 9900, 4),  # 7900 here
    _stripe_invoice("in_D", "cus_faith", "sub_faith", "open", 7900, 5),  # paid here
    _stripe_invoice("in_E", "cus_hope", "sub_hope", "paid", 7900, 6),  # missing here
    _stripe_invoice("in_F", "cus_stranger", None, "open", 1500, 7),  # nobody's customer
    _stripe_invoice("in_OLD", "cus_grace", "sub_grace", "paid", 7900, 36),  # before the window
    _stripe_invoice("in_DRAFT", "cus_grace", "sub_grace", "draft", 7900, 1),
]
STRIPE_SUBS = [
    {"id": "sub_grace", "object": "subscription", "status": "active", "created": ts(90)},
    {"id": "sub_hope", "object": "subscription", "status": "active", "created": ts(80)},
    {"id": "sub_faith", "object": "subscription", "status": "canceled", "created": ts(70)},
]


@pytest.fixture(autouse=True)
def _fast(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAITHFLOW_PROVIDER_TIMEOUT", "2")
    monkeypatch.setenv("FAITHFLOW_PROVIDER_BACKOFF", "0.01")
    monkeypatch.setenv("FAITHFLOW_PROVIDER_MAX_ATTEMPTS", "3")
    monkeypatch.setattr(reconcile_remote, "PAGE_SIZE", 2)  # several pages from a handful of objects


def _serve_stripe(monkeypatch: pytest.MonkeyPatch, fake: FakeAPI) -> Iterator[FakeAPI]:
    fake.objects = {"invoices": list(STRIPE_INVOICES), "subscriptions": list(STRIPE_SUBS)}
    with fake.serve():
        monkeypatch.setenv("STRIPE_SECRET_KEY", "sk_test_rec")
        monkeypatch.setenv("STRIPE_API_BASE", fake.url)
        yield fake


@pytest.fixture
def stripe(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeAPI]:
    yield from _serve_stripe(monkeypatch, stripe_fake())


@pytest.fixture
def platform(cli: Any, db: Database) -> Database:
    """Three Stripe tenants and one Paystack tenant, their subscriptions and invoices."""
    for args in (
        ("tenants", "add", "grace", "--name", "Grace"),
        ("tenants", "add", "hope", "--name", "Hope"),
        ("tenants", "add", "faith", "--name", "Faith"),
        ("tenants", "add", "lagos", "--name", "Lagos", "--currency", "NGN"),
        ("plans", "add", "growth-usd", "--name", "Growth", "--amount", "79", "--currency", "USD",
         "--interval", "month", "--meta", "stripePriceId=price_1Growth"),
        ("plans", "add", "growth-ngn", "--name", "Growth", "--amount", "450", "--currency", "NGN",
         "--interval", "month", "--meta", "paystackPlanCode=PLN_growth"),
        ("subs", "add", "--tenant", "grace", "--plan", "growth-usd", "--provider", "stripe",
         "--status", "past_due", "--provider-subscription-id", "sub_grace",
         "--customer-id", "cus_grace"),
        ("subs", "add", "--tenant", "hope", "--plan", "growth-usd", "--provider", "stripe",
         "--provider-subscription-id", "sub_hope", "--customer-id", "cus_hope"),
        ("subs", "add", "--tenant", "faith", "--plan", "growth-usd", "--provider", "stripe",
         "--provider-subscription-id", "sub_faith", "--customer-id", "cus_faith"),
        ("subs", "add", "--tenant", "lagos", "--plan", "growth-ngn", "--provider", "paystack",
         "--status", "past_due", "--provider-subscription-id", "SUB_lagos",
         "--customer-id", "CUS_lagos"),
        ("tenants", "link", "grace", "cus_grace"),
        ("tenants", "link", "faith", "cus_faith"),
        ("tenants", "link", "lagos", "CUS_lagos"),
    ):  # fmt: skip
        ok(cli(*args, "--json"))  # the rows, not a Rich record per add
    with db.session() as session:
        subs = {s.provider_subscription_id: s for s in session.scalars(select(Subscription))}
        recorded = NOW_AT - dt.timedelta(days=3)

        def add(sub: str, ref: str, status: str, amount: int, currency: str = "USD", **kw: Any):
            s = subs[sub]
            session.add(
                Invoice(tenant_id=s.tenant_id, subscription_id=s.id, provider=s.provider,
                        provider_invoice_id=ref, status=status, amount_due_minor=amount,
                        amount_paid_minor=amount if status == "paid" else 0, currency=currency,
                        created_at=kw.pop("created_at", recorded), metadata_=kw.pop("meta", {}),
                        **kw)
            )  # fmt: skip

        add("sub_grace", "in_A", "open", 7900)
        add("sub_hope", "in_B", "paid", 7900)
        add("sub_faith", "in_C", "paid", 7900)  # Stripe lists no in_C
        add("sub_faith", "in_D", "paid", 7900)
        add("SUB_lagos", "INV_open1", "open", 45000, "NGN")  # paid by T1, no reference yet
        add("SUB_lagos", "INV_paid0", "paid", 45000, "NGN", meta={"paystackReference": "T0"})
    return db


def counts(db: Database) -> dict[str, int]:
    with db.read_session() as session:
        return {
            "invoices": session.scalar(select(func.count()).select_from(Invoice)) or 0,
            "accounts": session.scalar(select(func.count()).select_from(ProviderAccount)) or 0,
            "audit": session.scalar(select(func.count()).select_from(AuditLog)) or 0,
            "paid": session.scalar(
                select(func.count()).select_from(Invoice).where(Invoice.status == "paid")
            )
            or 0,
        }


def by_kind(doc: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {}
    for action in doc["actions"]:
        out.setdefault(action["kind"], []).append(action)
    return out


# --- Stripe ----------------------------------------------------------------------------------


def test_stripe_preview_reports_every_finding_and_writes_nothing(
    cli: Any, platform: Database, stripe: FakeAPI
) -> None:
    before = counts(platform)
    doc = run_json(cli, "--provider", "stripe", "--dry-run")
    assert doc["dry_run"] is True and doc["status"] == "succeeded"
    assert doc["counts"] == {
        "amount_mismatch": 1,
        "missing_at_provider": 1,
        "missing_locally": 1,
        "relink_customer": 1,
        "status_conflict": 1,
        "status_mismatch": 1,
        "subscription_state_drift": 1,
        "unmapped_customer": 1,
    }
    kinds = by_kind(doc)
    assert [a["data"]["provider_ref"] for a in kinds["missing_locally"]] == ["in_E"]
    assert kinds["status_mismatch"][0]["data"]["provider_ref"] == "in_A"
    assert kinds["amount_mismatch"][0]["data"]["provider_amount"] == 9900
    assert kinds["status_conflict"][0]["data"]["provider_ref"] == "in_D"
    assert kinds["missing_at_provider"][0]["data"]["provider_ref"] == "in_C"
    # reasons show money as people read it (faithflow_ops.money), never raw minor units
    assert kinds["amount_mismatch"][0]["reason"] == "stripe in_B is USD 99.00; ours is USD 79.00"
    assert "(paid, USD 79.00) is recorded here" in kinds["missing_at_provider"][0]["reason"]
    assert "(paid, USD 79.00) is not recorded here" in kinds["missing_locally"][0]["reason"]
    reasons = " ".join(a["reason"] for a in doc["actions"])
    assert re.search(r"\b\d+ (USD|NGN)\b", reasons) is None, reasons
    assert kinds["relink_customer"][0]["data"]["customer"] == "cus_hope"
    assert kinds["unmapped_customer"][0]["data"]["provider_refs"] == ["in_F"]
    drift = kinds["subscription_state_drift"][0]
    assert drift["data"]["provider_ref"] == "sub_faith"
    assert drift["data"]["expected_status"] == "canceled"
    # sub_grace is past due here and active at Stripe, but taking in_A's paid status settles
    # it: no drift is reported for it.
    assert counts(platform) == before
    # pages of 2: the invoice list took several requests, each after the last id
    pages = [r for r in stripe.requests if r.path == "/v1/invoices"]
    assert len(pages) == 4
    after = [page.params().get("starting_after") for page in pages]
    assert after == [None, "in_A", "in_D", "in_F"]  # newest first: in_DRAFT, in_A | in_B, in_D…
    assert int(pages[0].params()["created[gte]"]) == ts(37)  # 35 days + 2 of slack


def test_stripe_run_applies_the_safe_fixes_once(
    cli: Any, platform: Database, stripe: FakeAPI
) -> None:
    doc = run_json(cli, "--provider", "stripe")
    outcomes = {(a["kind"], a["outcome"]) for a in doc["actions"]}
    assert ("status_mismatch", "applied") in outcomes
    assert ("missing_locally", "applied") in outcomes
    assert ("relink_customer", "applied") in outcomes
    assert doc["outcomes"] == {"applied": 3, "reported": 5}
    with platform.read_session() as session:
        inv_a = session.scalar(select(Invoice).where(Invoice.provider_invoice_id == "in_A"))
        assert inv_a is not None and inv_a.status == "paid" and inv_a.amount_paid_minor == 7900
        assert inv_a.paid_at == dt.datetime.fromtimestamp(ts(3) + 60, dt.UTC)
        grace = session.scalar(
            select(Subscription).where(Subscription.provider_subscription_id == "sub_grace")
        )
        assert grace is not None and grace.status == "active" and grace.past_due_since is None
        hope = session.scalar(
            select(Subscription).where(Subscription.provider_subscription_id == "sub_hope")
        )
        assert hope is not None
        inv_e = session.scalar(select(Invoice).where(Invoice.provider_invoice_id == "in_E"))
        assert inv_e is not None
        assert (inv_e.tenant_id, inv_e.subscription_id, inv_e.status) == (
            hope.tenant_id, hope.id, "paid"
        )  # fmt: skip
        assert inv_e.hosted_invoice_url == "https://invoice.stripe.com/i/in_E"
        assert (
            inv_e.metadata_["providerCreatedAt"]
            == dt.datetime.fromtimestamp(ts(6), dt.UTC).isoformat()
        )
        link = session.scalar(
            select(ProviderAccount).where(ProviderAccount.external_id == "cus_hope")
        )
        assert link is not None and link.tenant_id == hope.tenant_id
        assert link.source == "job:invoices_reconcile"
        actions = set(session.scalars(select(AuditLog.action)))
        assert {
            "invoice.reconcile_paid",
            "invoice.reconcile_import",
            "provider_account.reconcile_link",
            "subscription.reconcile_settle",  # the shared settle rule, audited as the job
        } <= actions
        # report-only findings changed nothing
        inv_d = session.scalar(select(Invoice).where(Invoice.provider_invoice_id == "in_D"))
        inv_b = session.scalar(select(Invoice).where(Invoice.provider_invoice_id == "in_B"))
        assert inv_d is not None and inv_d.status == "paid"
        assert inv_b is not None and inv_b.amount_due_minor == 7900
        faith = session.scalar(
            select(Subscription).where(Subscription.provider_subscription_id == "sub_faith")
        )
        assert faith is not None and faith.status == "active"

    before = counts(platform)
    again = run_json(cli, "--provider", "stripe")
    assert set(again["counts"]) <= set(rec.REPORT_KINDS)
    assert again["counts"] == {
        "amount_mismatch": 1,
        "missing_at_provider": 1,
        "status_conflict": 1,
        "subscription_state_drift": 1,
        "unmapped_customer": 1,
    }
    assert again["outcomes"] == {"reported": 5}
    assert counts(platform) == before


def test_a_fix_whose_row_moved_on_is_stale_never_applied_twice(
    cli: Any, platform: Database, stripe: FakeAPI
) -> None:
    """A webhook that lands between plan and apply wins; the reconcile fix becomes stale."""
    doc = run_json(cli, "--provider", "stripe", "--dry-run")
    planned = {a["kind"]: a for a in doc["actions"]}
    with platform.session() as session:  # the webhooks got there first
        inv = session.scalar(select(Invoice).where(Invoice.provider_invoice_id == "in_A"))
        assert inv is not None
        inv.status = "paid"
        session.add(Invoice(tenant_id=inv.tenant_id, provider="stripe",
                            provider_invoice_id="in_E", status="paid", amount_due_minor=7900,
                            currency="USD"))  # fmt: skip
        session.add(ProviderAccount(tenant_id=inv.tenant_id, provider="stripe", kind="customer",
                                    external_id="cus_hope", source="webhook:evt_1"))  # fmt: skip
    before = counts(platform)
    ctx = JobContext(now=NOW_AT, dry_run=False, trigger="cli", settings=Settings.from_env())
    for kind in ("status_mismatch", "missing_locally", "relink_customer"):
        action = Action(kind, planned[kind]["target"], planned[kind]["reason"],
                        planned[kind]["data"])  # fmt: skip
        with pytest.raises(StaleAction), platform.session() as session:
            rec.JOB.apply(session, ctx, action)
    assert counts(platform) == before


def test_since_moves_the_window(cli: Any, platform: Database, stripe: FakeAPI) -> None:
    doc = run_json(cli, "--provider", "stripe", "--dry-run", "--since", "2026-02-24T12:00:00Z")
    kinds = by_kind(doc)
    assert "missing_locally" not in kinds  # in_E was created on 23 February
    assert "unmapped_customer" not in kinds  # in_F too
    # in_A (26 February) is still compared
    assert [a["data"]["provider_ref"] for a in kinds["status_mismatch"]] == ["in_A"]
    first = next(r for r in stripe.requests if r.path == "/v1/invoices")
    since = dt.datetime(2026, 2, 24, 12, tzinfo=dt.UTC)
    assert int(first.params()["created[gte]"]) == int((since - rec.SLACK).timestamp())

    # A wider window imports an older invoice too.
    stripe.objects["invoices"].append(
        _stripe_invoice("in_G", "cus_grace", "sub_grace", "paid", 7900, 50)
    )
    doc = run_json(cli, "--provider", "stripe", "--dry-run", "--since", "2026-01-01")
    refs = [a["data"]["provider_ref"] for a in by_kind(doc)["missing_locally"]]
    assert refs == ["in_G", "in_OLD", "in_E"]


def test_rate_limits_and_outages_are_retried_page_by_page(
    cli: Any, platform: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    from fakes.providers import _stripe_default

    script = {
        2: stripe_error(429, "Too many requests", "rate_limit_error"),
        4: stripe_error(500, "Something went wrong", "api_error"),
    }
    script[2].headers["Retry-After"] = "0.2"
    fake = FakeAPI(flaky(_stripe_default, "/v1/invoices", script))
    for _ in _serve_stripe(monkeypatch, fake):
        doc = run_json(cli, "--provider", "stripe", "--dry-run")
        assert doc["counts"]["missing_locally"] == 1
        pages = [r for r in fake.requests if r.path == "/v1/invoices"]
        assert len(pages) == 6  # 4 pages, two of them asked twice
        assert pages[1].params() == pages[2].params()  # the same page again
        assert pages[2].at - pages[1].at >= 0.2  # after Retry-After
        assert pages[3].params() == pages[4].params()


def test_a_provider_that_keeps_failing_fails_the_run(
    cli: Any, platform: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    from fakes.providers import _stripe_default

    down = {n: stripe_error(503, "down", "api_error") for n in range(1, 10)}
    fake = FakeAPI(flaky(_stripe_default, "/v1/invoices", down))
    for _ in _serve_stripe(monkeypatch, fake):
        before = counts(platform)
        result = cli("invoices", "reconcile", "--now", NOW, "--provider", "stripe")
        assert result.exit_code == 1
        assert "after 3 attempts" in said(result)
        assert counts(platform) == before
    refused = {1: stripe_error(401, "Invalid API Key provided: sk_test_***rec")}
    fake = FakeAPI(flaky(_stripe_default, "/v1/invoices", refused))
    for _ in _serve_stripe(monkeypatch, fake):
        result = cli("invoices", "reconcile", "--now", NOW, "--provider", "stripe")
        assert result.exit_code == 2
        assert "Invalid API Key" in said(result)


# --- Paystack --------------------------------------------------------------------------------


def _txn(ref: str, status: str, amount: int, days_ago: float, plan: str | None = "PLN_growth",
         customer: str = "CUS_lagos") -> dict[str, Any]:  # fmt: skip
    return {
        "id": abs(hash(ref)) % 10**9,
        "status": status,
        "reference": ref,
        "amount": amount,
        "currency": "NGN",
        "paid_at": iso(days_ago) if status == "success" else None,
        "createdAt": iso(days_ago),
        "customer": {"id": 1, "customer_code": customer, "email": "t@lagos.example"},
        "plan": {"plan_code": plan, "name": "Growth"} if plan else {},
        "metadata": None,
    }


@pytest.fixture
def paystack(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeAPI]:
    from fakes.providers import _paystack_default

    script = {
        2: Reply(429, {"status": False, "message": "Rate limit"}, {"Retry-After": "0.1"}),
        3: Reply(500, {"status": False, "message": "Internal error"}),
    }
    fake = FakeAPI(flaky(_paystack_default, "/transaction", script))
    fake.objects = {
        "transactions": [
            _txn("T0", "success", 45000, 20),  # INV_paid0's charge
            _txn("T1", "success", 45000, 2),  # pays INV_open1
            _txn("T2", "success", 45000, 1),  # missing here
            _txn("T3", "success", 5000, 1, plan=None),  # a one-off payment: not ours
            _txn("T4", "abandoned", 45000, 1),  # never paid: no invoice
            _txn("T5", "success", 45000, 3, customer="CUS_nobody"),
        ],
        "subscriptions": [
            {"subscription_code": "SUB_lagos", "status": "active", "createdAt": iso(90),
             "customer": {"customer_code": "CUS_lagos"}},
        ],
    }  # fmt: skip
    with fake.serve():
        monkeypatch.setenv("PAYSTACK_SECRET_KEY", "sk_test_ps")
        monkeypatch.setenv("PAYSTACK_API_BASE", fake.url)
        yield fake


def test_paystack_charges_reconcile_through_pages_and_retries(
    cli: Any, platform: Database, paystack: FakeAPI
) -> None:
    preview = run_json(cli, "--provider", "paystack", "--dry-run")
    assert preview["counts"] == {"missing_locally": 1, "status_mismatch": 1, "unmapped_customer": 1}
    kinds = by_kind(preview)
    assert kinds["status_mismatch"][0]["data"]["reference"] == "T1"
    assert kinds["missing_locally"][0]["data"]["provider_ref"] == "T2"
    assert kinds["unmapped_customer"][0]["data"]["customer"] == "CUS_nobody"
    pages = [r for r in paystack.requests if r.path == "/transaction"]
    assert [r.params()["page"] for r in pages] == ["1", "2", "2", "2", "3"]
    assert pages[0].params()["perPage"] == "2"
    assert pages[0].params()["from"].startswith("2026-01-23T09:00:00")  # 37 days before now
    assert pages[0].headers["authorization"] == "Bearer sk_test_ps"

    doc = run_json(cli, "--provider", "paystack")
    assert doc["outcomes"] == {"applied": 2, "reported": 1}
    with platform.read_session() as session:
        open1 = session.scalar(select(Invoice).where(Invoice.provider_invoice_id == "INV_open1"))
        assert open1 is not None and open1.status == "paid"
        assert open1.metadata_["paystackReference"] == "T1"
        t2 = session.scalar(select(Invoice).where(Invoice.provider_invoice_id == "T2"))
        assert t2 is not None and t2.status == "paid" and t2.currency == "NGN"
        sub = session.scalar(
            select(Subscription).where(Subscription.provider_subscription_id == "SUB_lagos")
        )
        assert sub is not None and sub.status == "active"  # settled
        assert t2.subscription_id == sub.id
    again = run_json(cli, "--provider", "paystack")
    assert again["counts"] == {"unmapped_customer": 1}


def test_paystack_drift_and_missing_at_provider(
    cli: Any, platform: Database, paystack: FakeAPI
) -> None:
    paystack.objects["subscriptions"][0]["status"] = "cancelled"
    paystack.objects["transactions"] = [
        t for t in paystack.objects["transactions"] if t["reference"] != "T0"
    ]
    with platform.session() as session:  # INV_paid0 recorded inside the window
        inv = session.scalar(select(Invoice).where(Invoice.provider_invoice_id == "INV_paid0"))
        assert inv is not None
        inv.created_at = NOW_AT - dt.timedelta(days=10)
    kinds = by_kind(run_json(cli, "--provider", "paystack", "--dry-run"))
    assert kinds["missing_at_provider"][0]["data"]["provider_ref"] == "T0"
    drift = kinds["subscription_state_drift"][0]["data"]
    assert (drift["provider_status"], drift["local_status"]) == ("cancelled", "past_due")


# --- configuration, both providers, the task endpoint ----------------------------------------


def test_no_provider_configured_is_exit_2_naming_the_variables(
    cli: Any, platform: Database
) -> None:
    result = cli("invoices", "reconcile", "--now", NOW)
    assert result.exit_code == 2
    assert "STRIPE_SECRET_KEY" in said(result) and "PAYSTACK_SECRET_KEY" in said(result)
    result = cli("invoices", "reconcile", "--provider", "paystack")
    assert result.exit_code == 2 and "PAYSTACK_SECRET_KEY is not set" in said(result)
    for bad in (("--provider", "paypal"), ("--since", "last week"), ("--since", "2026-03-02")):
        result = cli("invoices", "reconcile", "--now", NOW, *bad)
        assert result.exit_code == 2, bad
        assert bad[0] in said(result)


def test_only_the_configured_provider_is_reconciled_and_the_other_named(
    cli: Any, platform: Database, stripe: FakeAPI
) -> None:
    result = cli("invoices", "reconcile", "--now", NOW, "--dry-run", "--json")
    assert result.exit_code == 0, result.stderr
    assert "PAYSTACK_SECRET_KEY is not set: paystack is skipped" in said(result)
    doc = json.loads(result.stdout)
    skipped = by_kind(doc)["provider_skipped"]
    assert skipped[0]["target"] == "provider:paystack"
    assert skipped[0]["data"]["variable"] == "PAYSTACK_SECRET_KEY"


def test_both_providers_in_one_run_and_a_terminal_table(
    cli: Any, platform: Database, stripe: FakeAPI, paystack: FakeAPI
) -> None:
    doc = run_json(cli, "--dry-run")
    assert doc["counts"]["missing_locally"] == 2  # in_E and T2
    assert "provider_skipped" not in doc["counts"]
    result = cli("invoices", "reconcile", "--now", NOW, "--dry-run")
    assert result.exit_code == 0, result.stderr
    assert "invoices_reconcile: succeeded; would do:" in said(result)
    assert "status_mismatch=2" in said(result)


def test_the_task_endpoint_runs_the_same_job(
    db: Database, db_url: str, platform: Database, stripe: FakeAPI
) -> None:
    from receiver.app import create_app

    spec = registry.get("invoices_reconcile")
    assert spec.task_path == "/tasks/invoices/reconcile"
    cfg = Settings(database_url=db_url, integration_api_key=KEY, stripe_secret_key="sk_test_rec",
                   stripe_api_base=stripe.url, provider_backoff=0.01)  # fmt: skip
    app = create_app(cfg, db=db, jobs=[spec])
    with running(app) as url:
        preview = httpx.post(url + spec.task_path, json={"dry_run": True, "now": NOW},
                             headers={"X-API-Key": KEY}, timeout=30)  # fmt: skip
        assert preview.status_code == 200, preview.text
        assert preview.json()["counts"]["status_mismatch"] == 1
        assert preview.json()["counts"]["provider_skipped"] == 1
        run = httpx.post(url + spec.task_path, json={"now": NOW}, headers={"X-API-Key": KEY},
                         timeout=30)  # fmt: skip
        assert run.status_code == 200, run.text
        assert run.json()["outcomes"] == {"applied": 3, "reported": 6}
    with db.read_session() as session:
        assert (
            session.scalar(select(Invoice.status).where(Invoice.provider_invoice_id == "in_A"))
            == "paid"
        )


def test_the_job_is_registered_hourly_and_listed(cli: Any, db: Database) -> None:
    spec = registry.get("invoices_reconcile")
    assert spec.schedule == "17 * * * *" and spec.cron_variable == "CRON_INVOICES_RECONCILE"
    rows = json.loads(ok(cli("jobs", "list", "--json")).stdout)
    assert any(r["cli"] == "faithflow invoices reconcile" for r in rows)


# --- list and show ---------------------------------------------------------------------------


def test_list_filters_and_json_shape(cli: Any, platform: Database) -> None:
    docs = json.loads(ok(cli("invoices", "list", "--json")).stdout)
    assert len(docs) == 6
    first = docs[0]
    assert {"id", "tenant", "provider", "provider_invoice_id", "status", "amount_due_minor",
            "amount_paid_minor", "currency", "amount_due", "amount_paid", "metadata",
            "period_end", "paid_at"} <= set(first)  # fmt: skip
    paystack = json.loads(ok(cli("invoices", "list", "--provider", "paystack", "--json")).stdout)
    assert {d["provider_invoice_id"] for d in paystack} == {"INV_open1", "INV_paid0"}
    grace = json.loads(ok(cli("invoices", "list", "--tenant", "grace", "--json")).stdout)
    assert [d["provider_invoice_id"] for d in grace] == ["in_A"]
    opened = json.loads(ok(cli("invoices", "list", "--status", "open", "--json")).stdout)
    assert {d["provider_invoice_id"] for d in opened} == {"in_A", "INV_open1"}
    limited = cli("invoices", "list", "--limit", "2", "--json")
    assert len(json.loads(ok(limited).stdout)) == 2
    assert "showing 2 of 6" in said(limited)
    table = ok(cli("invoices", "list"))
    assert "in_A" in table.stdout and "6 invoices" in said(table)
    for bad in (("--status", "late"), ("--provider", "paypal"), ("--tenant", "nobody")):
        result = cli("invoices", "list", *bad)
        assert result.exit_code == 2, bad


def test_show_one_invoice_and_unknown_id(cli: Any, platform: Database, stripe: FakeAPI) -> None:
    run_json(cli, "--provider", "stripe")
    docs = json.loads(ok(cli("invoices", "list", "--tenant", "grace", "--json")).stdout)
    doc = json.loads(ok(cli("invoices", "show", str(docs[0]["id"]), "--json")).stdout)
    assert doc["provider_invoice_id"] == "in_A" and doc["status"] == "paid"
    assert doc["tenant"] == "grace"
    assert doc["subscription"]["provider_subscription_id"] == "sub_grace"
    assert doc["audit"][0]["action"] == "invoice.reconcile_paid"
    assert doc["audit"][0]["before"] == {"status": "open"}
    shown = ok(cli("invoices", "show", str(docs[0]["id"])))
    assert "in_A" in shown.stdout and "invoice.reconcile_paid" in shown.stdout
    missing = cli("invoices", "show", "9999")
    assert missing.exit_code == 2
    assert "no invoice with id 9999" in said(missing)


# --- the list calls themselves ---------------------------------------------------------------


class Sleeps(list[float]):
    def __call__(self, seconds: float) -> None:
        self.append(seconds)


def test_list_calls_page_and_honour_retry_after() -> None:
    from fakes.providers import _paystack_default, _stripe_default

    sleeps = Sleeps()
    policy = RetryPolicy(attempts=4, timeout=2.0, backoff=0.01, max_wait=5.0, sleep=sleeps)
    limited = stripe_error(429, "slow down", "rate_limit_error")
    limited.headers["Retry-After"] = "3"
    fake = FakeAPI(flaky(_stripe_default, "/v1/invoices", {2: limited}))
    fake.objects = {"invoices": list(STRIPE_INVOICES)}
    with fake.serve():
        cfg = Settings(database_url="sqlite://", stripe_secret_key="sk", stripe_api_base=fake.url)
        with StripeAPI(cfg, policy) as api:
            got = [o["id"] for o in api.list_invoices(created_gte=NOW_AT - dt.timedelta(days=10),
                                                      page_size=3)]  # fmt: skip
    assert got == ["in_DRAFT", "in_A", "in_B", "in_D", "in_E", "in_F"]
    assert sleeps == [3.0]

    sleeps.clear()
    fake = FakeAPI(flaky(_paystack_default, "/subscription", {1: Reply(502, "bad gateway")}))
    fake.objects = {"subscriptions": [{"subscription_code": f"SUB_{n}"} for n in range(5)]}
    with fake.serve():
        cfg = Settings(database_url="sqlite://", paystack_secret_keys=("sk",),
                       paystack_api_base=fake.url)  # fmt: skip
        with PaystackAPI(cfg, policy) as api:
            codes = [o["subscription_code"] for o in api.list_subscriptions(page_size=2)]
    assert sorted(codes) == [f"SUB_{n}" for n in range(5)]
    assert len(sleeps) == 1 and sleeps[0] < 0.03  # backoff, no Retry-After
    assert [r.params()["page"] for r in fake.requests] == ["1", "1", "2", "3"]


def test_without_any_key_every_door_refuses_the_same_way(
    cli: Any, db_url: str, platform: Database
) -> None:
    """One behaviour for a missing setting (issue 16): the command, `jobs run`, the runner the
    scheduler and the demo use, and the task endpoint all refuse, naming the variables, and
    record nothing."""
    from faithflow_ops.errors import ConfigError
    from faithflow_ops.jobs.runner import run_job
    from faithflow_ops.models import JobRun
    from receiver.app import create_app

    spec = registry.get("invoices_reconcile")
    for args in (("invoices", "reconcile"), ("invoices", "preview"),
                 ("jobs", "run", "invoices_reconcile"),
                 ("jobs", "preview", "invoices-reconcile")):  # fmt: skip
        result = cli(*args, "--now", NOW)
        assert result.exit_code == 2, args
        assert "no payment provider is configured: set STRIPE_SECRET_KEY and/or " in said(result)
    ctx = JobContext(now=NOW_AT, dry_run=True, trigger="scheduler",
                     settings=Settings(database_url=db_url))  # fmt: skip
    with pytest.raises(ConfigError, match="PAYSTACK_SECRET_KEY"):
        run_job(platform, spec, ctx)
    cfg = Settings(database_url=db_url, integration_api_key=KEY)
    with running(create_app(cfg, db=platform, jobs=[spec])) as url:
        answer = httpx.post(url + spec.task_path, json={"now": NOW}, headers={"X-API-Key": KEY},
                            timeout=30)  # fmt: skip
    assert answer.status_code == 503, answer.text
    assert "STRIPE_SECRET_KEY" in answer.json()["error"]
    with platform.read_session() as session:
        assert session.scalar(select(func.count()).select_from(JobRun)) == 0


def test_its_options_are_one_declaration_for_every_door(
    cli: Any, db_url: str, platform: Database, stripe: FakeAPI
) -> None:
    """--provider/--since on the command, -o on `jobs run|preview`, body fields on the task:
    the same values, the same refusals (the field named)."""
    from receiver.app import create_app

    by_flags = run_json(cli, "--dry-run", "--provider", "stripe", "--since", "10d")
    by_alias = json.loads(ok(cli("invoices", "preview", "--now", NOW, "--json", "--provider",
                                 "stripe", "--since", "10d")).stdout)  # fmt: skip
    by_name = json.loads(ok(cli("jobs", "preview", "invoices_reconcile", "--now", NOW, "--json",
                                "-o", "provider=stripe", "-o", "since=10d")).stdout)  # fmt: skip
    assert by_flags["counts"] == by_alias["counts"] == by_name["counts"]
    assert by_flags["dry_run"] and by_alias["dry_run"] and by_name["dry_run"]
    assert "provider_skipped" not in by_flags["counts"]
    for bad, named in ((("-o", "provider=paypal"), "--provider 'paypal' is not one of: stripe, "
                        "paystack"), (("-o", "colour=red"), "its options: provider=…, since=…"),
                       (("-o", "since=soon"), "--since 'soon' is neither a duration")):  # fmt: skip
        result = cli("jobs", "run", "invoices_reconcile", "--now", NOW, *bad)
        assert result.exit_code == 2, bad
        assert named in said(result), said(result)
    spec = registry.get("invoices_reconcile")
    cfg = Settings(database_url=db_url, integration_api_key=KEY, stripe_secret_key="sk_test_rec",
                   stripe_api_base=stripe.url, provider_backoff=0.01)  # fmt: skip
    with running(create_app(cfg, db=platform, jobs=[spec])) as url:

        def post(body: dict[str, Any]) -> httpx.Response:
            return httpx.post(url + spec.task_path, json=body, headers={"X-API-Key": KEY},
                              timeout=30)  # fmt: skip

        answer = post({"dry_run": True, "now": NOW, "provider": "stripe", "since": "10d"})
        assert answer.status_code == 200, answer.text
        assert answer.json()["counts"] == by_flags["counts"]
        for body, field in (({"provider": "paypal"}, "provider"), ({"since": 35}, "since"),
                            ({"since": "soon"}, "since"),
                            ({"colour": "red"}, "colour")):  # fmt: skip
            refused = post({"dry_run": True, "now": NOW, **body})
            assert refused.status_code == 400, (body, refused.text)
            assert refused.json()["detail"]["field"] == field, refused.text
        unknown = post({"colour": "red"}).json()["error"]
        assert "the fields are dry_run, now, limit, provider, since" in unknown
        schema = httpx.get(url + "/docs/openapi.json", timeout=30).json()
    body = schema["paths"][spec.task_path]["post"]["requestBody"]["content"]["application/json"]
    assert body["schema"]["properties"]["provider"]["enum"] == ["stripe", "paystack"]
    assert set(body["schema"]["properties"]) == {"dry_run", "now", "limit", "provider", "since"}


def test_an_unreachable_provider_is_a_502_without_a_traceback(
    db_url: str, platform: Database, caplog: pytest.LogCaptureFixture
) -> None:
    """An outside failure is not our bug (issue 16): the run fails with `failure: provider`,
    the task answers 502 with the job JSON, and the log has no traceback."""
    import socket

    from receiver.app import create_app

    with socket.socket() as closed:  # a port nobody listens on
        closed.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{closed.getsockname()[1]}"
    spec = registry.get("invoices_reconcile")
    cfg = Settings(database_url=db_url, integration_api_key=KEY, stripe_secret_key="sk_test_rec",
                   stripe_api_base=dead, provider_backoff=0.01,
                   provider_max_attempts=2)  # fmt: skip
    with running(create_app(cfg, db=platform, jobs=[spec])) as url:
        answer = httpx.post(url + spec.task_path, json={"now": NOW, "provider": "stripe"},
                            headers={"X-API-Key": KEY}, timeout=30)  # fmt: skip
    assert answer.status_code == 502, answer.text
    doc = answer.json()
    assert (doc["status"], doc["failure"]) == ("failed", "provider")
    assert "could not reach stripe" in doc["error"]
    failed = [r for r in caplog.records if "job failed" in r.getMessage()]
    assert failed and not any(r.exc_info for r in failed)
