"""Critical flows, Paystack side, end to end (issue 13; docs/flows.md): the real `faithflow`
executable and the real receiver over HTTP, the Paystack API stand-in, on SQLite and Postgres.

Every sequence of events is the one Paystack documents (the page is named in each test's
docstring), built from tests/fixtures/paystack (the documented shapes) with new codes, amounts
and scenario times, and delivered as Paystack delivers: every event of the integration to ONE
URL (here `/webhooks/paystack/platform`, church giving included: the receiver routes by
content), at least once (a redelivery repeats the body), in no guaranteed order
(https://paystack.com/docs/payments/webhooks/). Assertions read `--json` output only.

The churches are `lagos` and `abuja` (NGN, Africa/Lagos), on the NGN plans of the world
(tests/e2e/conftest.py) whose `paystackPlanCode` Paystack's events name.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from harness import (
    PaystackCustomer,
    PaystackPlan,
    Platform,
    at,
    defect_unless,
    iso,
    run_cli,
)

STARTER = PaystackPlan("starter-ngn", "PLN_starter0ngn01", "Starter (NGN)", 500_000)
GROWTH = PaystackPlan("growth-ngn", "PLN_growth0ngn01", "Growth (NGN)", 1_500_000)
PRO = PaystackPlan("pro-ngn", "PLN_pro0ngn01", "Pro (NGN)", 4_500_000)
EMAILS = {"lagos": "treasurer@lagoschapel.org", "abuja": "finance@abujagrace.org"}
SUBACCOUNT = "ACCT_lagos0chapel1"  # linked to lagos in the world (`faithflow tenants link`)

# Monthly periods from the first payment at T0 (Monday 2 March 2026, 15:00 UTC).
APR2 = at(days=31)
MAY2 = APR2 + dt.timedelta(days=30)
JUN2 = MAY2 + dt.timedelta(days=31)
JUL2 = JUN2 + dt.timedelta(days=30)
SETTLE = {"applied"}


def church(slug: str, plan: PaystackPlan = GROWTH) -> PaystackCustomer:
    return PaystackCustomer(
        slug, f"CUS_e2e{slug}01", EMAILS[slug], f"SUB_e2e{slug}01", f"{slug}token01", plan
    )


def first_reference(payer: PaystackCustomer) -> str:
    return f"T_e2e{payer.tenant}mar"


def post(platform: Platform, *payloads: dict[str, Any]) -> list[str]:
    """Deliver each payload to the one Paystack URL; the stored event keys, in order."""
    return [platform.post_paystack(p)["event_key"] for p in payloads]


def subscribed(platform: Platform, payer: PaystackCustomer) -> None:
    """The first payment of a subscription started by `billing checkout`, as Paystack reports
    it (https://paystack.com/docs/payments/subscriptions/): `charge.success` with the plan and
    the metadata the checkout put on the transaction, then `subscription.create`, its next
    payment date one month on. The caller waits."""
    meta = {"tenant": payer.tenant, "plan": payer.plan.code}
    post(
        platform,
        payer.charge(first_reference(payer), at(), metadata=meta),
        payer.subscription("create", at(seconds=5), APR2),
    )


def renewal_paid(
    platform: Platform,
    payer: PaystackCustomer,
    invoice_code: str,
    start: dt.datetime,
    end: dt.datetime,
    reference: str,
) -> list[str]:
    """A renewal Paystack charges (https://paystack.com/docs/payments/subscriptions/):
    `invoice.create` three days before the payment date, then on it `charge.success` and
    `invoice.update` (paid; `transaction.reference` = the charge's reference; the subscription's
    next payment date one period on). The charge is redelivered after the update."""
    paid_at = start + dt.timedelta(minutes=5)
    charge = payer.charge(reference, paid_at)
    return post(
        platform,
        payer.invoice("invoice.create", invoice_code, start, end, created=start - dt.timedelta(3)),
        charge,
        payer.invoice(
            "invoice.update", invoice_code, start, end,
            created=start - dt.timedelta(days=3), updated=paid_at + dt.timedelta(seconds=40),
            reference=reference, paid_at=paid_at, next_payment=end,
        ),
        charge,
    )  # fmt: skip


def renewal_failed(
    platform: Platform,
    payer: PaystackCustomer,
    invoice_code: str,
    start: dt.datetime,
    end: dt.datetime,
) -> dt.datetime:
    """A renewal whose charge is declined: `invoice.create` three days ahead, then
    `invoice.payment_failed` on the payment date (`transaction` the declined charge). Returns the
    failure time."""
    failed_at = start + dt.timedelta(minutes=6)
    post(
        platform,
        payer.invoice("invoice.create", invoice_code, start, end, created=start - dt.timedelta(3)),
        payer.invoice(
            "invoice.payment_failed", invoice_code, start, end,
            created=start - dt.timedelta(days=3), updated=failed_at,
            reference=f"T_e2e{payer.tenant}{invoice_code[-2:]}x",
        ),
    )  # fmt: skip
    return failed_at


def by_tenant(rows: list[dict[str, Any]], slug: str) -> list[dict[str, Any]]:
    return [row for row in rows if row.get("tenant") == slug]


def statuses(rows: dict[str, dict[str, Any]]) -> list[str]:
    return [row["status"] for row in rows.values()]


# --- 1. checkout --------------------------------------------------------------------------------


def test_checkout_then_charge_and_subscription_create_in_either_order_link_and_record_it(
    platform: Platform,
) -> None:
    """`faithflow billing checkout --provider paystack` initializes the transaction
    (`POST /transaction/initialize` with the plan and `metadata: {tenant, plan}`); the church pays;
    Paystack sends `charge.success` (plan, that metadata and reference) BEFORE
    `subscription.create`.

    Sources: https://paystack.com/docs/payments/subscriptions/ (a plan on the initialized
    transaction subscribes the customer; "charge.success" then "subscription.create"),
    https://paystack.com/docs/payments/webhooks/ (one URL for every event, retries, no order).

    lagos: Paystack's order, the charge redelivered after the subscription. abuja: the other
    order (`subscription.create` applied before the charge is delivered). Each charge names its
    church through the checkout's metadata: the customer code is linked then, and the first
    payment ends recorded against the subscription.
    """
    refs: dict[str, str] = {}
    for slug in ("lagos", "abuja"):
        doc = platform.cli(
            "billing", "checkout", "--tenant", slug, "--plan", "growth-ngn",
            "--provider", "paystack",
        )  # fmt: skip
        assert (doc["provider"], doc["kind"]) == ("paystack", "checkout"), doc
        [sent] = [
            r.json()
            for r in platform.paystack.requests
            if r.path == "/transaction/initialize" and r.json()["metadata"]["tenant"] == slug
        ]
        assert sent["metadata"] == {"tenant": slug, "plan": "growth-ngn"}, sent
        assert (sent["plan"], sent["email"]) == (GROWTH.plan_code, EMAILS[slug]), sent
        assert doc["reference"] == sent["reference"] and doc["url"].startswith("https://"), doc
        refs[slug] = sent["reference"]

    lagos, abuja = church("lagos"), church("abuja")
    events = {}
    for payer in (lagos, abuja):
        meta = {"tenant": payer.tenant, "plan": "growth-ngn"}
        events[payer.tenant] = (
            payer.charge(refs[payer.tenant], at(minutes=3), metadata=meta),
            payer.subscription("create", at(minutes=3, seconds=4), APR2),
        )
    charge, create = events["lagos"]
    lagos_keys = post(platform, charge, create, charge)
    charge, create = events["abuja"]
    abuja_keys = post(platform, create)
    rows = platform.wait_applied()  # applied before the charge arrives, whatever the batching
    abuja_keys += post(platform, charge)
    rows.update(platform.wait_applied())

    assert set(statuses(rows)) == SETTLE, rows
    assert rows[lagos_keys[0]]["delivery_count"] == 2
    assert {rows[k]["tenant_id"] for k in lagos_keys} != {rows[k]["tenant_id"] for k in abuja_keys}

    invoices = platform.cli("invoices", "list")
    subs = platform.cli("subs", "list")
    linked = {}
    for payer in (lagos, abuja):
        shown = platform.cli("tenants", "show", payer.tenant)
        linked[payer.tenant] = {
            (a["provider"], a["kind"], a["external_id"]) for a in shown["provider_accounts"]
        }
        [sub] = by_tenant(subs, payer.tenant)
        assert (sub["status"], sub["plan"], sub["provider"]) == ("active", "growth-ngn", "paystack")
        assert sub["provider_subscription_id"] == payer.subscription_code, sub
        assert sub["provider_customer_id"] == payer.customer_code, sub
        assert sub["current_period_end"].startswith(iso(APR2)[:16]), sub
        [invoice] = by_tenant(invoices, payer.tenant)
        assert (invoice["status"], invoice["amount_due_minor"], invoice["currency"]) == (
            "paid",
            GROWTH.amount,
            "NGN",
        ), invoice
        assert invoice["provider_invoice_id"] == refs[payer.tenant], invoice
    assert ("paystack", "customer", lagos.customer_code) in linked["lagos"], linked
    # abuja: subscription.create came first and found abuja by its billing e-mail (which links
    # nothing); the charge's metadata.tenant, which names the church outright, then finds the
    # customer through the recorded subscription: the charge naming the church links it.
    defect_unless(
        ("paystack", "customer", abuja.customer_code) in linked["abuja"],
        f"abuja's customer {abuja.customer_code} is not linked: {linked['abuja']}",
    )


# --- 2. renewals and dunning ----------------------------------------------------------------------


def test_renewal_paid_then_failed_renewal_is_dunned_and_recovered_by_the_retry_charge(
    platform: Platform,
) -> None:
    """April's renewal is paid (invoice.create → charge.success → invoice.update, period end
    moves to 2 May); May's is declined (invoice.payment_failed) → past due → the dunning ladder
    (docs/dunning.md): day 0 message, day 3 retry charging the saved authorization
    (`POST /transaction/charge_authorization`, reference `ff-dunning-{case}-day3`, metadata
    `dunning_case` and `invoice`) → Paystack's `charge.success` for that retry (no plan) pays
    May's invoice → recovered; June renews normally. Each charge pays its own invoice only.

    Sources: https://paystack.com/docs/payments/subscriptions/ (invoice.create 3 days ahead;
    charge.success and invoice.update whose transaction.reference is the charge;
    invoice.payment_failed), https://paystack.com/docs/payments/recurring-charges/ (charge
    authorization), https://paystack.com/docs/payments/webhooks/.
    """
    lagos = church("lagos")
    subscribed(platform, lagos)
    april = renewal_paid(platform, lagos, "INV_e2elagos04", APR2, MAY2, "T_e2elagosapr")
    failed_at = renewal_failed(platform, lagos, "INV_e2elagos05", MAY2, JUN2)
    rows = platform.wait_applied()
    assert set(statuses(rows)) == SETTLE, rows
    assert rows[april[1]]["delivery_count"] == 2

    [sub] = platform.cli("subs", "list", "--tenant", "lagos")
    assert (sub["status"], sub["past_due_since"][:16]) == ("past_due", iso(failed_at)[:16]), sub
    assert sub["current_period_end"].startswith(iso(MAY2)[:16]), sub  # April's payment moved it

    preview = platform.cli("dunning", "preview", now=failed_at + dt.timedelta(minutes=30))
    assert preview["dry_run"] is True and preview["counts"] == {"send_step": 1}, preview
    assert preview["actions"][0]["data"]["step"] == "day0", preview
    run = platform.cli("dunning", "run", now=failed_at + dt.timedelta(minutes=30))
    assert run["counts"] == {"send_step": 1} and run["status"] == "succeeded", run
    day3 = failed_at + dt.timedelta(days=3, minutes=30)
    run = platform.cli("dunning", "run", now=day3)
    assert run["counts"].get("retry_payment") == 1, run
    [retry] = [r for r in platform.paystack.requests if r.path.endswith("/charge_authorization")]
    sent = retry.json()
    case = sent["metadata"]["dunning_case"]
    assert sent["reference"] == f"ff-dunning-{case}-day3", sent
    assert sent["metadata"]["invoice"] == "INV_e2elagos05", sent
    assert (sent["amount"], sent["authorization_code"]) == (str(GROWTH.amount), "AUTH_e2e0auth1")

    # Paystack reports the retry's charge (no plan: a charge of the authorization) twice
    retried = lagos.charge(
        sent["reference"], day3 + dt.timedelta(minutes=1), plan=None, metadata=sent["metadata"]
    )
    post(platform, retried, retried)
    june = renewal_paid(platform, lagos, "INV_e2elagos06", JUN2, JUL2, "T_e2elagosjun")
    rows = platform.wait_applied()
    assert set(statuses(rows)) == SETTLE, rows

    sub = platform.cli("subs", "show", str(sub["id"]))
    assert (sub["status"], sub["past_due_since"]) == ("active", None), sub
    assert sub["current_period_end"].startswith(iso(JUL2)[:16]), sub
    invoices = {i["provider_invoice_id"]: (i["status"], i["amount_paid"]) for i in sub["invoices"]}
    paid = ("paid", "15000.00")
    assert invoices == {
        first_reference(lagos): paid,
        "INV_e2elagos04": paid,
        "INV_e2elagos05": paid,  # by the retry, which named it
        "INV_e2elagos06": paid,  # by June's own charge
    }, invoices
    assert rows[june[2]]["outcome"] and "INV_e2elagos05" not in str(rows[june[2]]["outcome"])
    analytics = platform.cli(
        "dunning", "analytics", "--since", iso(MAY2), "--until", iso(JUN2), now=JUN2
    )
    assert analytics["cases"]["opened"] == 1 and analytics["cases"]["recovered"] == 1, analytics
    assert [s["step"] for s in analytics["recovered"]["by_step"]] == ["day3"], analytics
    assert analytics["currently_open"]["count"] == 0, analytics


# --- 3. suspension ------------------------------------------------------------------------------


def test_unpaid_past_the_grace_suspends_and_only_its_own_payment_reactivates(
    platform: Platform,
) -> None:
    """April's renewal is declined → 14 days of grace → `faithflow subs automate` suspends the
    church for non-payment → May's renewal is charged and paid (that charge pays May, never
    April: the church stays suspended) → the church updates its card and Paystack charges the
    open April invoice (`charge.success`, then `invoice.update` naming that charge) → reactivated.

    Sources: https://paystack.com/docs/payments/subscriptions/ (invoice.payment_failed; a paid
    invoice's invoice.update names its charge in transaction.reference),
    https://paystack.com/docs/payments/webhooks/; suspension is ours: docs/subs-automate.md.
    """
    lagos = church("lagos")
    subscribed(platform, lagos)
    failed_at = renewal_failed(platform, lagos, "INV_e2elagos04", APR2, MAY2)
    platform.wait_applied()

    beyond = failed_at + dt.timedelta(days=14, hours=1)
    held = platform.cli("subs", "automate", "--dry-run", now=beyond)  # the ladder never ran
    assert held["counts"] == {"suspension_held": 1}, held
    assert "run `faithflow dunning run`" in held["actions"][0]["reason"], held
    # the crons by day 10: the final notice (e-mail and SMS) goes out before any suspension
    ran = platform.dunning_cron(failed_at + dt.timedelta(days=10, minutes=30))
    assert [a["data"]["step"] for a in ran["actions"] if a["kind"] == "send_step"] == ["day10"]
    run = platform.cli("subs", "automate", now=beyond)
    assert run["counts"] == {"suspend_tenant": 1}, run
    assert "14 days (default)" in run["actions"][0]["reason"], run

    # May: Paystack charges the renewal; its charge arrives before its invoice.update
    may = renewal_paid(platform, lagos, "INV_e2elagos05", MAY2, JUN2, "T_e2elagosmay")
    rows = platform.wait_applied()
    assert set(statuses(rows)) == SETTLE, rows
    tenant = platform.cli("tenants", "show", "lagos")
    assert (tenant["status"], tenant["suspension_reason"]) == ("suspended", "non_payment"), tenant
    assert tenant["suspended_at"].startswith(beyond.date().isoformat()), tenant
    [sub] = tenant["subscriptions"]
    sub = platform.cli("subs", "show", str(sub["id"]))
    assert sub["status"] == "suspended" and sub["past_due_since"] is not None, sub
    invoices = {i["provider_invoice_id"]: i["status"] for i in sub["invoices"]}
    # May's charge paid May only: April stays open (the "December pays November")
    assert invoices == {
        first_reference(lagos): "paid",
        "INV_e2elagos04": "open",
        "INV_e2elagos05": "paid",
    }, (invoices, [rows[k]["outcome"] for k in may])

    # the church pays April: Paystack charges the open invoice, then updates it
    paid_at = MAY2 + dt.timedelta(days=2)
    charge = lagos.charge("T_e2elagosapr2", paid_at)
    update = lagos.invoice(
        "invoice.update", "INV_e2elagos04", APR2, MAY2, created=APR2 - dt.timedelta(days=3),
        updated=paid_at + dt.timedelta(seconds=30), reference="T_e2elagosapr2", paid_at=paid_at,
        next_payment=JUN2,
    )  # fmt: skip
    post(platform, charge, update)
    rows = platform.wait_applied()
    assert set(statuses(rows)) == SETTLE, rows
    outcomes = " / ".join(str(r["outcome"]) for r in rows.values())
    assert "tenant lagos reactivated (was suspended for non-payment)" in outcomes, outcomes
    tenant = platform.cli("tenants", "show", "lagos")
    assert (tenant["status"], tenant["suspension_reason"]) == ("active", None), tenant
    sub = platform.cli("subs", "show", str(sub["id"]))
    assert (sub["status"], sub["past_due_since"]) == ("active", None), sub
    assert sorted(i["status"] for i in sub["invoices"]) == ["paid"] * 3, sub["invoices"]


# --- 4. cancellation ----------------------------------------------------------------------------


def test_not_renew_keeps_access_until_the_period_ends_and_never_lifts_a_suspension(
    platform: Platform,
) -> None:
    """lagos turns renewal off during March: `subscription.not_renew` (status `non-renewing`,
    redelivered) — the subscription and the church stay active until the paid period ends,
    when Paystack sends `subscription.disable` (status `complete`). abuja's April renewal is
    declined, `subs automate` suspends it after the grace, and then it turns renewal off: the
    `not_renew` leaves it suspended and past due.

    Sources: https://paystack.com/docs/payments/subscriptions/ (statuses active, non-renewing,
    attention, completed, cancelled; subscription.not_renew, subscription.disable),
    https://paystack.com/docs/payments/webhooks/.
    """
    lagos, abuja = church("lagos"), church("abuja")
    subscribed(platform, lagos)
    subscribed(platform, abuja)
    stop = lagos.subscription("not_renew", at(seconds=5), None)
    post(platform, stop, stop)
    rows = platform.wait_applied()
    assert set(statuses(rows)) == SETTLE, rows

    run = platform.cli("subs", "automate", now=APR2 - dt.timedelta(days=1))
    assert run["counts"] == {}, run
    subs = {s["tenant"]: s for s in platform.cli("subs", "list")}
    assert {t: (s["status"], s["cancel_at_period_end"]) for t, s in subs.items()} == {
        "lagos": ("active", True),
        "abuja": ("active", False),
    }, subs
    assert subs["lagos"]["current_period_end"].startswith(iso(APR2)[:16]), subs

    # the period ends: lagos's subscription completes; abuja's renewal is declined
    post(platform, lagos.subscription("disable", at(seconds=5), None))
    failed_at = renewal_failed(platform, abuja, "INV_e2eabuja04", APR2, MAY2)
    platform.wait_applied()
    platform.dunning_cron(failed_at + dt.timedelta(days=10, minutes=30))  # the final notice
    run = platform.cli("subs", "automate", now=failed_at + dt.timedelta(days=14, hours=1))
    assert run["counts"] == {"suspend_tenant": 1}, run  # lagos: already ended, not suspended
    post(platform, abuja.subscription("not_renew", at(seconds=5), None))
    rows = platform.wait_applied()
    assert statuses(rows) == ["applied"], rows

    subs = {s["tenant"]: s for s in platform.cli("subs", "list")}
    assert subs["lagos"]["status"] == "canceled", subs
    assert (subs["abuja"]["status"], subs["abuja"]["cancel_at_period_end"]) == ("suspended", True)
    assert subs["abuja"]["past_due_since"] is not None, subs
    tenants = {t["slug"]: t for t in platform.cli("tenants", "list")}
    assert (tenants["lagos"]["status"], tenants["lagos"]["suspension_reason"]) == ("active", None)
    assert (tenants["abuja"]["status"], tenants["abuja"]["suspension_reason"]) == (
        "suspended",
        "non_payment",
    ), tenants
    # Ended when the paid period ended, not before (the Stripe flow's canceled_at is the end).
    canceled_at = dt.datetime.fromisoformat(subs["lagos"]["canceled_at"])
    defect_unless(
        canceled_at >= APR2,
        f"lagos canceled_at {canceled_at.isoformat()} is before the paid period's end {iso(APR2)}",
    )


# --- 5. plan changes ----------------------------------------------------------------------------


def test_upgrade_now_refunds_the_unused_part_and_downgrade_waits_for_the_period_end(
    platform: Platform,
) -> None:
    """Paystack cannot change a subscription's plan (docs/plan-changes.md): `subs change-plan`
    disables the old subscription and creates one on the new plan. abuja downgrades to starter
    on day 20: the new subscription starts at the period end (`start_date`), and `subs automate`
    moves the row to it then. lagos upgrades to pro ten days into April: the default is the
    period end (previewed); `--at now` creates the new subscription at once (Paystack charges it
    in full) and refunds April's unused 20 of 30 days through `POST /refund`.

    Sources: https://paystack.com/docs/api/subscription/ (create with start_date, disable),
    https://paystack.com/docs/api/refund/, https://paystack.com/docs/payments/subscriptions/
    (subscription.create, charge.success, invoice.update, subscription.disable),
    https://paystack.com/docs/payments/webhooks/.
    """
    lagos, abuja = church("lagos"), church("abuja")
    subscribed(platform, lagos)
    subscribed(platform, abuja)
    platform.wait_applied()
    # an upgrade now in the first month must be able to work out its refund too
    first_month = run_cli(
        platform.env,
        ["subs", "change-plan", "--tenant", "abuja", "--to", "pro-ngn", "--at", "now",
         "--dry-run", "--json", "--now", iso(at(days=10))],
    )  # fmt: skip

    down = platform.cli(
        "subs", "change-plan", "--tenant", "abuja", "--to", "starter-ngn", now=at(days=20)
    )
    assert (down["kind"], down["status"]) == ("downgrade", "scheduled"), down
    assert down["effective_at"].startswith(iso(APR2)[:16]), down
    calls = [(r.path, r.json()) for r in platform.paystack.requests if r.method == "POST"]
    assert calls == [
        ("/subscription/disable", {"code": abuja.subscription_code, "token": abuja.email_token}),
        ("/subscription", {"customer": abuja.customer_code, "plan": STARTER.plan_code,
                           "start_date": calls[1][1].get("start_date")}),
    ], calls  # fmt: skip
    assert calls[1][1]["start_date"].startswith(APR2.date().isoformat()), calls
    [created] = platform.paystack_world.subscriptions
    starter = PaystackCustomer(
        "abuja", abuja.customer_code, abuja.email, created["subscription_code"],
        created["email_token"], STARTER,
    )  # fmt: skip
    # what Paystack sends: the new subscription (starting at the period end), the old disabled
    post(
        platform,
        starter.subscription("create", at(days=20), APR2),
        abuja.subscription("disable", at(seconds=5), None),
    )
    renewal_paid(platform, lagos, "INV_e2elagos04", APR2, MAY2, "T_e2elagosapr")
    rows = platform.wait_applied()
    assert set(statuses(rows)) == SETTLE, rows  # the pending and the old code: noted, kept

    run = platform.cli("subs", "automate", now=APR2 + dt.timedelta(minutes=1))
    assert run["counts"].get("apply_plan_change") == 1, run
    defects = []
    if run["counts"] != {"apply_plan_change": 1}:  # abuja missed no payment
        defects.append(f"subs automate at the change's effective time: {run['actions']}")
    paid_at = APR2 + dt.timedelta(minutes=5)
    post(
        platform,
        starter.charge("T_e2eabujaapr", paid_at),
        starter.invoice(
            "invoice.update", "INV_e2eabuja04", APR2, MAY2, created=APR2 - dt.timedelta(3),
            updated=paid_at, reference="T_e2eabujaapr", paid_at=paid_at, next_payment=MAY2,
        ),
    )  # fmt: skip
    platform.wait_applied()

    apr12 = APR2 + dt.timedelta(days=10)
    preview = platform.cli(
        "subs", "change-plan", "--tenant", "lagos", "--to", "pro-ngn", "--dry-run", now=apr12
    )
    assert (preview["kind"], preview["effective_at"][:16]) == ("upgrade", iso(MAY2)[:16]), preview
    up = platform.cli(
        "subs", "change-plan", "--tenant", "lagos", "--to", "pro-ngn", "--at", "now",
        "--reason", "second campus", now=apr12,
    )  # fmt: skip
    assert (up["kind"], up["status"]) == ("upgrade", "applied"), up
    refund = 1_500_000 * 20 // 30  # April's unused 20 of 30 days
    calls = [(r.path, r.json()) for r in platform.paystack.requests if r.method == "POST"][2:]
    assert calls == [
        ("/subscription/disable", {"code": lagos.subscription_code, "token": lagos.email_token}),
        ("/subscription", {"customer": lagos.customer_code, "plan": PRO.plan_code}),
        ("/refund", {**calls[2][1], "transaction": "T_e2elagosapr", "amount": refund}),
    ], calls
    created = platform.paystack_world.subscriptions[1]
    pro = PaystackCustomer(
        "lagos", lagos.customer_code, lagos.email, created["subscription_code"],
        created["email_token"], PRO,
    )  # fmt: skip
    # Paystack charges the new plan at once and reports the new subscription and the old one
    post(
        platform,
        pro.charge("T_e2elagospro", apr12 + dt.timedelta(minutes=1)),
        pro.subscription("create", apr12, apr12 + dt.timedelta(days=30)),
        lagos.subscription("disable", at(seconds=5), None),
    )
    rows = platform.wait_applied()
    assert set(statuses(rows)) <= {"applied", "ignored"}, rows

    subs = {s["tenant"]: s for s in platform.cli("subs", "list")}
    assert {
        t: (s["plan"], s["status"], s["provider_subscription_id"]) for t, s in subs.items()
    } == {
        "lagos": ("pro-ngn", "active", pro.subscription_code),
        "abuja": ("starter-ngn", "active", starter.subscription_code),
    }, subs
    changes = platform.cli("subs", "changes")
    assert sorted((c["tenant"], c["kind"], c["status"]) for c in changes) == [
        ("abuja", "downgrade", "applied"),
        ("lagos", "upgrade", "applied"),
    ], changes
    invoices = sorted(
        (i["tenant"], i["amount_due_minor"], i["status"]) for i in platform.cli("invoices", "list")
    )
    assert invoices == [
        ("abuja", STARTER.amount, "paid"),
        ("abuja", GROWTH.amount, "paid"),
        ("lagos", GROWTH.amount, "paid"),
        ("lagos", GROWTH.amount, "paid"),
        ("lagos", PRO.amount, "paid"),
    ], invoices
    if first_month.returncode != 0:
        defects.append(f"first-month upgrade now: exit {first_month.returncode}: "
                       f"{first_month.stderr.strip()}")  # fmt: skip
    defect_unless(not defects, "\n".join(defects))


# --- 6. disputes --------------------------------------------------------------------------------


def test_dispute_on_a_subscription_payment_alerts_before_evidence_is_due_then_closes(
    platform: Platform,
) -> None:
    """`charge.dispute.create` (redelivered) for the charge that paid lagos's first month →
    `faithflow disputes monitor` (its pull of `GET /dispute` lists the same dispute) sends the
    3-day evidence alert once → `charge.dispute.resolve` → closed.

    Sources: https://paystack.com/docs/payments/dispute/ (charge.dispute.create, remind,
    resolve; dueAt), https://paystack.com/docs/api/dispute/ (list), docs/disputes.md.
    """
    lagos = church("lagos")
    subscribed(platform, lagos)
    platform.wait_applied()

    opened = at(days=12)
    due = opened + dt.timedelta(days=7)
    dispute_id = 358990
    created = lagos.dispute(
        "create", dispute_id, first_reference(lagos), GROWTH.amount, opened, due
    )
    post(platform, created, created)
    rows = platform.wait_applied()
    assert statuses(rows) == ["applied"], rows
    platform.paystack_world.disputes = [created["data"]]

    [row] = platform.cli("disputes", "list", "--open")
    assert (row["tenant"], row["scope"]) == ("lagos", "platform"), row
    assert row["evidence_due_by"].startswith(due.date().isoformat()), row

    run = platform.cli("disputes", "monitor", now=due - dt.timedelta(days=2, hours=12))
    assert run["status"] == "succeeded" and run["counts"] == {"evidence_due_alert": 1}, run
    [hook] = [r for r in platform.alerts.requests if r.path == "/hooks/ops"]
    alert = hook.json()
    assert (alert["type"], alert["threshold_days"]) == ("dispute.evidence_due", 3), alert
    assert alert["id"] == f"dispute-evidence-due:paystack:{dispute_id}:3d", alert

    resolved_at = opened + dt.timedelta(days=5)
    resolve = lagos.dispute(
        "resolve", dispute_id, first_reference(lagos), GROWTH.amount, opened, due,
        resolved=resolved_at,
    )  # fmt: skip
    post(platform, resolve)
    platform.paystack_world.disputes = [resolve["data"]]
    platform.wait_applied()
    [row] = platform.cli("disputes", "list", "--tenant", "lagos")
    assert row["closed_at"].startswith(resolved_at.date().isoformat()), row
    shown = platform.cli("disputes", "show", str(row["id"]))
    assert [a["threshold_days"] for a in shown["alerts"]] == [3], shown
    assert shown["invoice_id"] is not None, shown  # the invoice the disputed charge paid


# --- 7. giving ----------------------------------------------------------------------------------


def test_church_giving_on_a_subaccount_is_recorded_for_that_church_only(
    platform: Platform,
) -> None:
    """A member gives to lagos through its subaccount: `charge.success` with
    `subaccount.subaccount_code` (no plan), posted to the same URL as the billing events and
    redelivered; a gift on a subaccount nobody linked; then a dispute of lagos's gift. The gift is
    lagos's payment (tenant scope), not a subscription payment; abuja sees nothing.

    Sources: https://paystack.com/docs/payments/split-payments/ (subaccounts),
    https://paystack.com/docs/payments/webhooks/ (one URL for every event).
    """
    lagos = church("lagos")
    gift = lagos.charge(
        "T_e2elagosgift1", at(), amount=250_000, plan=None,
        metadata={"purpose": "giving", "fund": "building"}, subaccount=SUBACCOUNT,
    )  # fmt: skip
    stray = lagos.charge(
        "T_e2estraygift", at(), amount=10_000, plan=None, metadata={"purpose": "giving"},
        subaccount="ACCT_nobody0000",
    )  # fmt: skip
    keys = post(platform, gift, gift, stray)
    rows = platform.wait_applied()
    assert [(rows[k]["scope"], rows[k]["status"]) for k in keys[1:]] == [
        ("tenant", "applied"),
        ("tenant", "unmatched"),
    ], rows
    assert rows[keys[0]]["delivery_count"] == 2

    opened = at(days=3)
    dispute = lagos.dispute(
        "create", 358991, "T_e2elagosgift1", 250_000, opened, opened + dt.timedelta(days=7),
        subaccount=SUBACCOUNT,
    )  # fmt: skip
    post(platform, dispute)
    rows = platform.wait_applied()
    assert [(r["scope"], r["status"]) for r in rows.values()] == [("tenant", "applied")], rows
    [row] = platform.cli("disputes", "list", "--tenant", "lagos")
    assert (row["scope"], row["amount_minor"]) == ("tenant", 250_000), row
    shown = platform.cli("disputes", "show", str(row["id"]))
    assert shown["payment_id"] is not None, shown  # the gift recorded for lagos
    assert platform.cli("disputes", "list", "--tenant", "abuja") == []
    assert platform.cli("invoices", "list", "--provider", "paystack") == []  # not a subscription
