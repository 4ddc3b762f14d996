"""Critical flows, Stripe side, end to end (issue 13; docs/flows.md): the real `faithflow`
executable and the real receiver over HTTP, the Stripe API stand-in, on SQLite and Postgres.

Every sequence of events is the one Stripe documents (named in each test's docstring), built
from tests/fixtures/stripe (the documented shapes) with new ids and scenario times, delivered
out of order and with the duplicates Stripe produces. Assertions read `--json` output only.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from harness import Platform, StripeCustomer, at, form

GROWTH = ("growth", "price_1QGrowthMonthly", 4900)
PRO = ("pro", "price_1QProMonthly", 9900)
STARTER = ("starter", "price_1QStarterMonthly", 1900)
MONTH = dt.timedelta(days=31)  # March 2026 has 31 days: the first period's length


def by_tenant(rows: list[dict[str, Any]], slug: str) -> list[dict[str, Any]]:
    return [row for row in rows if row.get("tenant") == slug]


def checkout(platform: Platform, slug: str, plan: str) -> dict[str, str]:
    """`faithflow billing checkout` (no --now: it makes a link, no job) against the Stripe
    stand-in; returns the form the CLI sent and the session id."""
    doc = platform.cli("billing", "checkout", "--tenant", slug, "--plan", plan)
    assert doc["provider"] == "stripe" and doc["kind"] == "checkout"
    assert doc["url"].startswith("https://checkout.stripe.com/")
    [sent] = [
        r
        for r in platform.stripe.requests
        if r.path == "/v1/checkout/sessions" and form(r).get("client_reference_id") == slug
    ]
    return {**form(sent), "session_id": doc["session_id"]}


def checkout_completed(
    church: StripeCustomer, session: dict[str, str], created: dt.datetime
) -> dict[str, Any]:
    """`checkout.session.completed` for the session the CLI created, as Stripe fills it in."""
    from harness import fixture_payload

    obj = fixture_payload("stripe", "platform.checkout.session.completed")["data"]["object"]
    obj.update(
        {
            "id": session["session_id"],
            "client_reference_id": session["client_reference_id"],
            "customer": church.customer,
            "customer_email": session.get("customer_email"),
            "subscription": church.subscription,
            "metadata": {
                "tenant": session["metadata[tenant]"],
                "plan": session["metadata[plan]"],
            },
        }
    )
    return church.event("checkout.session.completed", obj, created)


def test_checkout_then_webhooks_in_any_order_leave_the_subscription_active_and_paid(
    platform: Platform,
) -> None:
    """Stripe Checkout for a subscription, then the webhooks racing each other.

    Sources: https://docs.stripe.com/billing/subscriptions/build-subscriptions?ui=stripe-hosted
    (checkout.session.completed, invoice.paid), https://docs.stripe.com/billing/subscriptions/webhooks
    (customer.subscription.created → invoice.created/finalized/paid →
    customer.subscription.updated incomplete→active) and
    https://docs.stripe.com/webhooks#event-ordering ("Stripe doesn't guarantee delivery of
    events in the order in which they're generated"; deliveries are at least once).

    grace: invoice.paid arrives before anything names its customer (stored unmatched), then
    subscription.created, then checkout.session.completed links the customer and re-handles the
    waiting invoice; a retried invoice.paid and a late invoice.finalized change nothing.
    hope: checkout.session.completed first (records the subscription from metadata.plan), the
    update to active before the creation (which is then stale), invoice.paid delivered twice.
    """
    code, price, amount = GROWTH
    t = at(minutes=1)
    sessions = {slug: checkout(platform, slug, code) for slug in ("grace", "hope")}
    for slug, sent in sessions.items():
        assert sent["mode"] == "subscription"
        assert sent["line_items[0][price]"] == price
        assert sent["metadata[tenant]"] == slug and sent["metadata[plan]"] == code
        assert sent["subscription_data[metadata][tenant]"] == slug
    period = (t, t + MONTH)

    def stripe_side(slug: str) -> tuple[StripeCustomer, dict[str, dict[str, Any]]]:
        church = StripeCustomer(
            slug, f"cus_e2e{slug.title()}", f"sub_e2e{slug.title()}", platform.stripe_world, slug
        )
        incomplete = church.subscription_object("incomplete", *period, price=price, amount=amount)
        active = church.subscription_object("active", *period, price=price, amount=amount)
        first = church.invoice_object(
            "paid", *period, amount=amount, billing_reason="subscription_create", paid_at=t
        )
        events = {
            "created": church.subscription_event("created", t, incomplete),
            "finalized": church.invoice_event("finalized", t, {**first, "status": "open"}),
            "paid": church.invoice_event("paid", t + dt.timedelta(seconds=2), first),
            "updated": church.subscription_event(
                "updated", t + dt.timedelta(seconds=3), active, status="incomplete"
            ),
            "completed": checkout_completed(church, sessions[slug], t + dt.timedelta(seconds=4)),
        }
        return church, events

    grace, g = stripe_side("grace")
    hope, h = stripe_side("hope")
    for name in ("paid", "created", "completed", "updated", "paid", "finalized"):
        platform.post_stripe(g[name])
    for name in ("completed", "updated", "created", "paid", "paid"):
        platform.post_stripe(h[name])
    rows = platform.wait_applied()

    status = {key: row["status"] for key, row in rows.items()}
    assert {name: status[e["id"]] for name, e in g.items()} == {
        "created": "applied",
        "finalized": "stale",  # older than the payment already applied
        "paid": "applied",  # unmatched until the checkout linked cus_e2eGrace
        "updated": "applied",
        "completed": "applied",
    }
    assert {name: status[e["id"]] for name, e in h.items() if name != "finalized"} == {
        "completed": "applied",
        "updated": "applied",
        "created": "stale",  # older than the update already applied
        "paid": "applied",
    }
    assert rows[g["paid"]["id"]]["delivery_count"] == 2
    assert rows[h["paid"]["id"]]["delivery_count"] == 2

    subs = platform.cli("subs", "list")
    for church in (grace, hope):
        [sub] = by_tenant(subs, church.tenant)
        assert (sub["status"], sub["plan"], sub["provider"]) == ("active", code, "stripe")
        assert sub["provider_subscription_id"] == church.subscription
        assert sub["provider_customer_id"] == church.customer
    invoices = platform.cli("invoices", "list")
    for church in (grace, hope):
        [invoice] = by_tenant(invoices, church.tenant)
        assert (invoice["status"], invoice["amount_due_minor"], invoice["currency"]) == (
            "paid",
            amount,
            "USD",
        )
    tenant = platform.cli("tenants", "show", "grace")
    assert tenant["status"] == "active"
    assert grace.customer in {a["external_id"] for a in tenant["provider_accounts"]}
