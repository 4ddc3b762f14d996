"""`faithflow demo`: a believable platform in an empty database, then every job's preview.

The data is fixed (no randomness); times are offsets from `now`, so `--now` makes the whole
demo reproducible. Subscription metadata deliberately carries the historical shapes the
metadata backfill normalises — including one conflict and one invalid id — so its preview has
something to say. The operations records (dunning cases and preferences, outbox messages and a
suppression, the support calendar, help-center articles and tickets, an incident) are written
through the same domain functions the CLI and the jobs use, so every rule applies to them, and
are timed so each preview plans the same kinds of work at any `now`: the dunning ladder sends,
holds one step for quiet hours, skips, pauses and opens a missed case; dispatch sends and
suppresses; the SLA sweep warns and breaches. Two churches' custom domains wait for
verification: the domains preview probes them through the real prober and rules against a DNS
server on loopback that answers for them (`stand_ins`; one is verified, one still lacks its
TXT record), so no query leaves the machine. The open incident is escalated in the preview
through a demo alert route when none is configured (a preview sends nothing).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, inspect, select
from sqlalchemy.orm import Session

from faithflow_ops import audit
from faithflow_ops.comms.admin import suppress
from faithflow_ops.comms.outbox import enqueue
from faithflow_ops.config import Settings
from faithflow_ops.db import Database
from faithflow_ops.domains.manage import TXT_VALUE_PREFIX, add_domain, txt_name
from faithflow_ops.dunning import quiet
from faithflow_ops.dunning.cases import open_case
from faithflow_ops.dunning.prefs import save_preferences
from faithflow_ops.dunning.windows import DEFAULT_QUIET_HOURS, QuietWindow
from faithflow_ops.errors import UserError
from faithflow_ops.health.checks import outbox_check
from faithflow_ops.incidents.records import raise_incident
from faithflow_ops.jobs.base import JobContext
from faithflow_ops.jobs.registry import JOBS
from faithflow_ops.jobs.runner import FAILED, RunResult, run_job
from faithflow_ops.migrate import upgrade
from faithflow_ops.models import (
    DunningCase,
    DunningPreference,
    Incident,
    Invoice,
    KbArticle,
    OutboundMessage,
    Subscription,
    SubscriptionPlan,
    SupportTicket,
    Suppression,
    Tenant,
    TenantDomain,
    TenantSecurityPolicy,
    User,
)
from faithflow_ops.providers.loopback_dns import LoopbackDns
from faithflow_ops.support.deflection import deflect
from faithflow_ops.support.kb import add_article
from faithflow_ops.support.policies import add_holiday, set_calendar
from faithflow_ops.support.sla import Rules
from faithflow_ops.support.tickets import assign, note, open_ticket, reply
from faithflow_ops.support.tickets import set_status as set_ticket_status

DAY = dt.timedelta(days=1)
HOUR = dt.timedelta(hours=1)
MINUTE = dt.timedelta(minutes=1)


# The demo platform, as tables. fmt: off keeps one record per line, which reads better here.
# fmt: off

# slug, name, time zone, country, currency, billing email, billing phone, status
_TENANTS = (
    ("grace-lagos", "Grace Assembly Lagos", "Africa/Lagos", "NG", "NGN",
     "finance@graceassembly.example", "+2348031234567", "active"),
    ("living-waters-accra", "Living Waters Chapel Accra", "Africa/Accra", "GH", "GHS",
     "accounts@livingwaters.example", "+233244123456", "active"),
    ("hope-nairobi", "Hope Fellowship Nairobi", "Africa/Nairobi", "KE", "KES",
     "finance@hopefellowship.example", "+254712345678", "active"),
    ("cornerstone-houston", "Cornerstone Community Church", "America/Chicago", "US", "USD",
     "billing@cornerstonehtx.example", "+17135550142", "active"),
    ("st-marks-london", "St Mark's Parish Church", "Europe/London", "GB", "GBP",
     "treasurer@stmarks.example", "+442079460321", "active"),
    ("shalom-joburg", "Shalom Tabernacle Johannesburg", "Africa/Johannesburg", "ZA", "ZAR",
     "office@shalomtab.example", "+27115550199", "suspended"),
    ("dayspring-ikeja", "Dayspring Chapel Ikeja", "Africa/Lagos", "NG", "NGN",
     "finance@dayspringchapel.example", "+2348091234567", "active"),
    ("new-life-kampala", "New Life Church Kampala", "Africa/Kampala", "UG", "UGX",
     "treasury@newlifekampala.example", "+256772123456", "active"),
)

# slug → (mfa required, sso required, session timeout minutes, retention days); others default
_POLICIES = {
    "grace-lagos": (True, False, 240, None),
    "cornerstone-houston": (True, True, 480, 365),
    "st-marks-london": (True, True, 720, 2555),
}

# tenant slug (None = platform staff), email, name, role, mfa enabled, disabled
_USERS = (
    (None, "ada.support@faithflow.example", "Ada Nwosu", "platform_agent", True, False),
    ("grace-lagos", "pastor@graceassembly.example", "Tunde Adeyemi", "owner", True, False),
    ("grace-lagos", "media@graceassembly.example", "Ngozi Eze", "staff", True, False),
    ("living-waters-accra", "pastor@livingwaters.example", "Kwame Boateng", "owner", False, False),
    ("living-waters-accra", "admin@livingwaters.example", "Efua Owusu", "admin", False, False),
    ("hope-nairobi", "lead@hopefellowship.example", "Wanjiru Kamau", "owner", False, False),
    ("hope-nairobi", "volunteers@hopefellowship.example", "Otieno Odhiambo", "volunteer", False,
     False),
    ("cornerstone-houston", "pastor@cornerstonehtx.example", "Marcus Reed", "owner", True, False),
    ("cornerstone-houston", "ops@cornerstonehtx.example", "Linda Alvarez", "admin", True, False),
    ("st-marks-london", "vicar@stmarks.example", "Clare Whitfield", "owner", True, False),
    ("st-marks-london", "office@stmarks.example", "James Okoro", "staff", True, False),
    ("shalom-joburg", "pastor@shalomtab.example", "Thabo Nkosi", "owner", False, False),
    ("shalom-joburg", "admin@shalomtab.example", "Lerato Dlamini", "admin", False, True),
    ("dayspring-ikeja", "pastor@dayspringchapel.example", "Folake Adebayo", "owner", False, False),
)

# code, name, amount (minor units), currency, interval, tier, active, metadata
_PLANS: tuple[tuple[str, str, int, str, str, int, bool, dict[str, Any]], ...] = (
    ("starter-monthly-usd", "Starter (monthly)", 2900, "USD", "month", 1, True,
     {"stripePriceId": "price_1PStrtMnthUSD0a1b2", "stripeProductId": "prod_QStarter0a1b2"}),
    ("growth-monthly-usd", "Growth (monthly)", 7900, "USD", "month", 2, True,
     {"stripePriceId": "price_1PGrwMnthUSD3c4d5", "stripeProductId": "prod_QGrowth3c4d5"}),
    ("growth-yearly-gbp", "Growth (yearly)", 69000, "GBP", "year", 2, True,
     {"stripePriceId": "price_1PGrwYrlyGBP6e7f8", "stripeProductId": "prod_QGrowth3c4d5"}),
    ("starter-monthly-ngn", "Starter (monthly)", 1500000, "NGN", "month", 1, True,
     {"paystackPlanCode": "PLN_gx2wn530m0i3w3m"}),
    ("growth-monthly-ngn", "Growth (monthly)", 4500000, "NGN", "month", 2, True,
     {"paystackPlanCode": "PLN_7fhzq2k9x4ve1ra"}),
    ("growth-monthly-ghs", "Growth (monthly)", 45000, "GHS", "month", 2, True,
     {"paystackPlanCode": "PLN_m3k8s0d2lq5wz7c"}),
    ("growth-monthly-kes", "Growth (monthly)", 650000, "KES", "month", 2, True,
     {"paystackPlanCode": "PLN_b6y1t4n9r2jx8pe"}),
    ("starter-monthly-zar", "Starter (monthly)", 49900, "ZAR", "month", 1, True,
     {"paystackPlanCode": "PLN_q9w2e7r4t1y6u3i"}),
    # Retired before provider ids had canonical keys.
    ("legacy-basic-usd", "Basic (legacy)", 1900, "USD", "month", 0, False,
     {"stripe_price": "price_0LgcyBasicUSD9g0h", "note": "closed to new sign-ups in 2023"}),
)
# fmt: on


@dataclass(frozen=True)
class _Sub:
    tenant: str
    plan: str
    provider: str
    status: str
    metadata: dict[str, Any]
    provider_subscription_id: str | None = None
    provider_customer_id: str | None = None
    period_started: dt.timedelta | None = None  # ago; a 30-day period (365 for yearly plans)
    trial_days_left: int | None = None
    past_due_for: dt.timedelta | None = None
    canceled_days_ago: int | None = None


# One subscription in every status; metadata in every shape the backfill reads.
_SUBSCRIPTIONS = (
    _Sub(
        "grace-lagos",
        "growth-monthly-ngn",
        "paystack",
        "active",
        {
            "customer_code": "CUS_xnxdt6s1zg1f4nx",
            "subscription_code": "SUB_vsyqdmlzble3uii",
            "email_token": "d7gofp6yppn3qz7",
        },
        period_started=12 * DAY,
    ),
    _Sub(
        "living-waters-accra",
        "growth-monthly-ghs",
        "paystack",
        "past_due",
        {"customerCode": "CUS_4jv8m2ud9q1wz6c", "authorization_code": "AUTH_72btv547ic"},
        provider_subscription_id="SUB_k2p9d1xq7mzr4tb",
        period_started=41 * DAY,
        past_due_for=11 * DAY,  # dunning: day10 is due (email; SMS opted out)
    ),
    _Sub(
        "hope-nairobi",
        "growth-monthly-kes",
        "paystack",
        "trialing",
        {"customer": {"id": "CUS_9wq3hz0x2lmy7rk", "email": "finance@hopefellowship.example"}},
        trial_days_left=5,
    ),
    # Already normalised: the backfill has nothing to do here. The renewal failed four days
    # ago; the treasurer promised to pay, so dunning is paused.
    _Sub(
        "cornerstone-houston",
        "growth-monthly-usd",
        "stripe",
        "past_due",
        {"stripeCustomerId": "cus_NffrFeUfNV2Hib"},
        provider_subscription_id="sub_1MowQVLkdIwHu7ixeRlqHVzs",
        provider_customer_id="cus_NffrFeUfNV2Hib",
        period_started=4 * DAY,
        past_due_for=4 * DAY,
    ),
    # Invalid: a legacy CRM id where a Stripe customer id belongs.
    _Sub(
        "cornerstone-houston",
        "legacy-basic-usd",
        "stripe",
        "canceled",
        {"stripe_customer_id": "cust-10443", "legacyPlan": "basic"},
        provider_subscription_id="sub_1LzKpTLkdIwHu7ixOldBasc",
        period_started=150 * DAY,
        canceled_days_ago=120,
    ),
    _Sub(
        "st-marks-london",
        "growth-yearly-gbp",
        "stripe",
        "unpaid",
        {
            "stripe": {"customer": {"id": "cus_PqL2x8VbTn4KcM"}},
            "subscriptionId": "sub_1OqR7sLkdIwHu7ixStMrks",
        },
        period_started=32 * DAY,
        past_due_for=32 * DAY,
    ),
    _Sub(
        "shalom-joburg",
        "starter-monthly-zar",
        "paystack",
        "suspended",
        {"customer_code": "CUS_t7r2k9m4x1b6zq0", "customerCode": "CUS_t7r2k9m4x1b6zq0"},
        provider_subscription_id="SUB_h3n8c0v5q2xw9pe",
        period_started=75 * DAY,
        past_due_for=45 * DAY,
    ),
    # Conflict: a retried checkout left two different Stripe customers behind; the first
    # payment is still pending. (Its own tenant: a tenant has one live subscription.)
    _Sub(
        "new-life-kampala",
        "starter-monthly-usd",
        "stripe",
        "incomplete",
        {
            "customerId": "cus_Rz4YbN7wQe2XhA",
            "customer": "cus_Ta9LmQ2vX8cN1e",
            "checkoutSessionId": "cs_test_a1Hc9TzQ2w",
        },
    ),
    _Sub(
        "living-waters-accra",
        "starter-monthly-usd",
        "stripe",
        "canceled",
        {"customer": {"id": "cus_J5uXk2PqW9rVbn", "object": "customer"}},
        provider_subscription_id="sub_1KdT4eLkdIwHu7ixMovedPs",
        period_started=230 * DAY,
        canceled_days_ago=200,
    ),
    # Canonical already. The renewal charge failed two hours ago: dunning's first e-mail is due,
    # held back by the church's quiet hours in Lagos.
    _Sub(
        "dayspring-ikeja",
        "starter-monthly-ngn",
        "paystack",
        "past_due",
        {
            "paystackCustomerCode": "CUS_d4y5pr1ngk3j4x0",
            "paystackSubscriptionCode": "SUB_d4y5pr1ngs8b2qw",
            "paystackEmailToken": "k3j4x0d4y5pr1ng",
            "paystackAuthorizationCode": "AUTH_d4y5pr1ng7",
        },
        provider_subscription_id="SUB_d4y5pr1ngs8b2qw",
        provider_customer_id="CUS_d4y5pr1ngk3j4x0",
        period_started=2 * HOUR,
        past_due_for=2 * HOUR,
    ),
)

# subscription index in _SUBSCRIPTIONS, provider invoice id, status, due (from now; negative =
# overdue), paid
_INVOICES: tuple[tuple[int, str, str, dt.timedelta, bool], ...] = (
    (0, "INV_3kd8xk2o1wq9fzz", "paid", -12 * DAY, True),
    (1, "INV_8hq2mz5v0c7wd1t", "paid", -41 * DAY, True),
    (1, "INV_1pz6xn3b8r4ks0m", "open", -11 * DAY, False),
    (3, "in_1MtHbELkdIwHu7ixl4OzzPMv", "paid", -34 * DAY, True),
    (3, "in_1QpT7cLkdIwHu7ixCrnrPstD", "open", -4 * DAY, False),
    (4, "in_1LzKqQLkdIwHu7ixVd0Basic", "void", -120 * DAY, False),
    (5, "in_1OqR8aLkdIwHu7ixUnpaidYr", "uncollectible", -32 * DAY, False),
    (6, "INV_6tg0wq9e2r5yb8n", "open", -45 * DAY, False),
    (9, "INV_9dq2ks7m1x4pb0w", "paid", -30 * DAY - 2 * HOUR, True),
    (9, "INV_5ry8ne3c6t0hv2z", "open", -2 * HOUR, False),
)


def _tenant_count(session: Session) -> int:
    return session.scalar(select(func.count()).select_from(Tenant)) or 0


def _refuse_if_populated(session: Session, where: str) -> None:
    count = _tenant_count(session)
    if count:
        raise UserError(
            f"{where} already holds {count} tenant{'s' if count != 1 else ''}; the demo only "
            "seeds an empty database, so it can never pollute a real one. Point "
            "FAITHFLOW_DATABASE_URL at a new file, e.g. sqlite:////tmp/faithflow-demo.db"
        )


def _flush(session: Session, now: dt.datetime) -> None:
    """Flush, stamping new rows as created at `now` (so `--now` reproduces the demo exactly)."""
    for row in session.new:
        row.created_at = row.updated_at = now
    session.flush()


def seed(session: Session, now: dt.datetime, settings: Settings) -> dict[str, int]:
    """Write the demo platform; refuses a database that already has tenants."""
    _refuse_if_populated(session, "the database")
    tenants: dict[str, Tenant] = {}
    for slug, name, tz, country, currency, email, phone, status in _TENANTS:
        tenant = Tenant(
            slug=slug,
            name=name,
            timezone=tz,
            country=country,
            currency=currency,
            billing_email=email,
            billing_phone=phone,
            status=status,
        )
        if status == "suspended":
            tenant.suspended_at = now - 3 * DAY
            tenant.suspension_reason = "non-payment: subscription overdue for 42 days"
        tenants[slug] = tenant
    session.add_all(tenants.values())
    _flush(session, now)

    for slug, tenant in tenants.items():
        mfa, sso, timeout, retention = _POLICIES.get(slug, (False, False, 720, None))
        session.add(
            TenantSecurityPolicy(
                tenant_id=tenant.id,
                mfa_required=mfa,
                sso_required=sso,
                session_timeout_minutes=timeout,
                data_retention_days=retention,
            )
        )
    for owner, email, name, role, mfa, disabled in _USERS:
        session.add(
            User(
                tenant_id=tenants[owner].id if owner else None,
                email=email,
                name=name,
                role=role,
                mfa_enabled=mfa,
                disabled_at=now - 60 * DAY if disabled else None,
            )
        )

    plans = {
        code: SubscriptionPlan(
            code=code,
            name=name,
            amount_minor=amount,
            currency=currency,
            interval=interval,
            tier_rank=tier,
            active=active,
            metadata_=metadata,
        )
        for code, name, amount, currency, interval, tier, active, metadata in _PLANS
    }
    session.add_all(plans.values())
    _flush(session, now)

    subs = [_subscription(spec, tenants, plans, now) for spec in _SUBSCRIPTIONS]
    session.add_all(subs)
    _flush(session, now)

    for index, provider_id, status, due_in, paid in _INVOICES:
        sub = subs[index]
        plan = plans[_SUBSCRIPTIONS[index].plan]
        due = now + due_in
        session.add(
            Invoice(
                tenant_id=sub.tenant_id,
                subscription_id=sub.id,
                provider=sub.provider,
                provider_invoice_id=provider_id,
                status=status,
                amount_due_minor=plan.amount_minor,
                amount_paid_minor=plan.amount_minor if paid else 0,
                currency=plan.currency,
                period_start=due,
                period_end=due + (365 if plan.interval == "year" else 30) * DAY,
                due_at=due,
                paid_at=due + dt.timedelta(hours=2) if paid else None,
            )
        )
    _flush(session, now)

    # The operations side, through the product's own rules (each call stamps its own times).
    _seed_dunning(session, now, subs)
    _seed_comms(session, now, tenants)
    _seed_support(session, now, settings)
    _seed_incident(session, now, settings)
    _seed_domains(session, now, settings)
    counts = {
        "tenants": len(tenants),
        "users": len(_USERS),
        "security_policies": len(tenants),
        "plans": len(plans),
        "subscriptions": len(subs),
        "invoices": len(_INVOICES),
        **{name: _count(session, model) for name, model in _OPERATIONS_COUNTED},
    }
    audit.record(
        session,
        actor="demo",
        action="demo.seed",
        entity_type="platform",
        entity_id="demo",
        after=counts,
    )
    return counts


# --- the operations side: dunning, communications, support, incidents ----------------------
#
# Everything below goes through the domain functions the CLI and the jobs use, at times relative
# to `now`, so each job's preview has something real to say.

# fmt: off
_PAUSE_NOTE = "treasurer Linda Alvarez promised payment by bank transfer (call with Ada Nwosu)"

# Knowledge base: slug, title, tags, published, body
_ARTICLES = (
    ("update-payment-card", "Change the card or bank account FaithFlow charges",
     ("billing", "payments"), True,
     "Open Settings → Billing → Payment method and choose Replace. Stripe churches enter the new "
     "card; Paystack churches authorise a new card or bank mandate with a small refundable "
     "charge. The next renewal, and any overdue invoice, is charged to the new method."),
    ("add-a-campus", "Add a second campus to your church",
     ("setup", "campuses"), True,
     "Go to Settings → Campuses → Add campus. Each campus gets its own service times, giving "
     "funds and volunteer rota; members can belong to more than one. Campuses share your plan: "
     "Growth includes up to three."),
    ("custom-domain", "Point your own domain at your FaithFlow site",
     ("domains", "setup"), True,
     "Add the domain under Settings → Website → Domains, then create a CNAME record for it at "
     "your DNS provider pointing at the target shown there. We check it every 15 minutes and "
     "issue the certificate once it resolves."),
    ("livestream-not-starting", "Livestream will not start: what to check",
     ("streaming", "troubleshooting"), True,
     "Check that the encoder uses the stream key shown under Media → Live (keys rotate when a "
     "staff member resets them), that the bitrate is at most 6 Mbps, and that port 443 is open "
     "on the church network."),
    ("year-end-giving-statements", "Send year-end giving statements",
     ("giving", "statements"), False,
     "From Giving → Statements choose the year, review the donors without an address, then "
     "send by e-mail or print. Draft: waiting for the new PDF layout."),
)

# Support tickets. Urgent targets run on calendar time, so the warning and the breach are the
# same at any `now`; the others are young enough (or paused, or solved) to stay quiet.
# tenant, requester, name, priority, subject, body, opened (ago)
_TICKETS = (
    ("grace-lagos", "media@graceassembly.example", "Ngozi Eze", "urgent",
     "Online giving page says 'payment failed' for every donor",
     "Since this morning every gift on our giving page fails with 'payment failed'. Members are "
     "asking what to do.", 50 * MINUTE),
    ("cornerstone-houston", "ops@cornerstonehtx.example", "Linda Alvarez", "urgent",
     "Livestream will not start: the encoder says the stream key is invalid",
     "Our encoder rejects the stream key and the service starts soon. Nothing changed on our "
     "side.", 26 * MINUTE),
    ("hope-nairobi", "lead@hopefellowship.example", "Wanjiru Kamau", "normal",
     "How do we add our second campus?",
     "We are opening a campus in Kisumu next month. How do we set it up in FaithFlow?",
     40 * MINUTE),
    ("living-waters-accra", "admin@livingwaters.example", "Efua Owusu", "high",
     "Paystack payouts have not reached our bank for three days",
     "Gifts show as successful but the last three payouts never arrived in our account.",
     3 * HOUR),
    ("st-marks-london", "office@stmarks.example", "James Okoro", "low",
     "Please change the address on our invoices",
     "Our parish office moved: please use 12 Church Lane, London N1 2AB on invoices.",
     3 * DAY),
)
# fmt: on

AGENT = "ada.support@faithflow.example"
DEMO_ACTOR = "demo"


def _seed_dunning(session: Session, now: dt.datetime, subs: list[Subscription]) -> None:
    """Open the cases the webhook hook would have opened (not St Mark's: its missing case is the
    safety net the preview shows), and the preferences that make the ladder interesting."""
    for sub in subs:
        tenant = session.get(Tenant, sub.tenant_id)
        if tenant is None or tenant.slug == "st-marks-london" or sub.past_due_since is None:
            continue
        open_case(session, sub, sub.past_due_since, DEMO_ACTOR)
    # Accra replied STOP to an SMS: no dunning SMS (and a suppression, see _seed_comms).
    save_preferences(session, "living-waters-accra", actor=DEMO_ACTOR, now=now, sms_opt_out=True)
    # Houston promised to pay: dunning waits.
    save_preferences(
        session,
        "cornerstone-houston",
        actor=DEMO_ACTOR,
        now=now,
        paused_until=now + 5 * DAY,
        pause_note=_PAUSE_NOTE,
    )
    # Lagos: the default quiet hours (nights, Sunday morning) hold the first e-mail back when
    # `now` falls in them; otherwise the church's own service hours around `now` do.
    service = _service_window(now, "Africa/Lagos")
    if service is not None:
        save_preferences(
            session,
            "dayspring-ikeja",
            actor=DEMO_ACTOR,
            now=now,
            quiet_hours=(*DEFAULT_QUIET_HOURS, service),
        )


def _service_window(now: dt.datetime, timezone: str) -> QuietWindow | None:
    """A three-hour weekly window starting at the hour of `now` in `timezone` (a service),
    or None when the default quiet hours already cover `now`."""
    if quiet.is_quiet(now, timezone, DEFAULT_QUIET_HOURS):
        return None
    local = now.astimezone(quiet.zone(timezone))  # 08:00-20:59 here: outside the defaults
    return QuietWindow(
        frozenset({local.weekday()}), dt.time(local.hour), dt.time(min(local.hour + 3, 23))
    )


def _seed_comms(session: Session, now: dt.datetime, tenants: dict[str, Tenant]) -> None:
    """Outbox messages: due now, due a while (scheduled), later (scheduled), one suppressed."""
    nairobi = tenants["hope-nairobi"]
    accra = tenants["living-waters-accra"]
    grace = tenants["grace-lagos"]
    trial_end = now + 5 * DAY
    enqueue(
        session,
        channel="sms",
        recipient=nairobi.billing_phone or "",
        template="notice",
        variables={
            "message": f"your trial ends on {trial_end:%d %b %Y}. Add a payment method at "
            "app.faithflow.example/billing to keep your giving pages online."
        },
        idempotency_key=f"demo:trial-reminder:{nairobi.slug}",
        now=now - 2 * MINUTE,
        tenant=nairobi,
        category="billing",
    )
    # Queued yesterday for this morning (a scheduled message that is now due).
    enqueue(
        session,
        channel="email",
        recipient=grace.billing_email or "",
        template="notice",
        variables={
            "subject": "Your monthly giving report is ready",
            "message": "The giving report for last month is ready under Giving → Reports.",
        },
        idempotency_key=f"demo:giving-report:{grace.slug}",
        now=now - DAY,
        not_before=now - 4 * MINUTE,
        tenant=grace,
        category="reports",
    )
    # Queued 25 minutes ago and never dispatched; the treasurer has since replied STOP.
    enqueue(
        session,
        channel="sms",
        recipient=accra.billing_phone or "",
        template="notice",
        variables={
            "message": "invoice INV_1pz6xn3b8r4ks0m is overdue. Pay at "
            "app.faithflow.example/billing to keep your account active."
        },
        idempotency_key=f"demo:overdue-sms:{accra.slug}",
        now=now - 25 * MINUTE,
        tenant=accra,
        category="billing",
    )
    suppress(
        session,
        channel="sms",
        contact=accra.billing_phone or "",
        reason="stop",
        now=now - 8 * MINUTE,
        actor=DEMO_ACTOR,
        note="the treasurer replied STOP",
    )
    # Tomorrow's maintenance notice to every active church (scheduled, not yet due).
    window = (now + DAY).replace(minute=0, second=0, microsecond=0)
    for tenant in tenants.values():
        if tenant.status != "active" or not tenant.billing_email:
            continue
        enqueue(
            session,
            channel="email",
            recipient=tenant.billing_email,
            template="notice",
            variables={
                "subject": "Planned maintenance tomorrow",
                "message": f"FaithFlow will be read-only for up to 30 minutes from "
                f"{window:%H:%M} UTC on {window:%d %b %Y} while we upgrade the database.",
            },
            idempotency_key=f"demo:maintenance:{tenant.slug}",
            now=now - HOUR,
            not_before=window - 12 * HOUR,
            tenant=tenant,
            priority=70,
            category="platform",
        )


def _seed_support(session: Session, now: dt.datetime, settings: Settings) -> None:
    """The support calendar, the help center, and tickets in every state of their clocks."""
    set_calendar(
        session,
        timezone="Africa/Lagos",
        hours=["mon-fri 08:00-17:00", "sat 09:00-13:00"],
        actor=DEMO_ACTOR,
    )
    for month, day, name in ((12, 25, "Christmas Day"), (12, 26, "Boxing Day")):
        add_holiday(session, dt.date(now.year, month, day), name, actor=DEMO_ACTOR)
    for slug, title, tags, published, body in _ARTICLES:
        add_article(
            session,
            slug=slug,
            title=title,
            body=body,
            tags=tags,
            publish=published,
            now=now - 30 * DAY,
            actor=DEMO_ACTOR,
        )
    rules = Rules.from_settings(session, settings)
    opened = {}
    for slug, email, name, priority, subject, body, ago in _TICKETS:
        opened[slug] = open_ticket(
            session,
            rules,
            tenant=slug,
            subject=subject,
            priority=priority,
            now=now - ago,
            body=body,
            requester=email,
            requester_name=name,
        ).id
    # grace-lagos: nobody has answered; its 30-minute first response is overdue (a breach).
    # cornerstone-houston: assigned, not answered yet; due in 4 minutes (a warning).
    houston = opened["cornerstone-houston"]
    assign(session, rules, houston, to=AGENT, now=now - 21 * MINUTE)
    note(
        session,
        rules,
        houston,
        body="Keys were rotated for every church last night; checking theirs.",
        now=now - 20 * MINUTE,
        agent=AGENT,
    )
    # hope-nairobi: answered with a help article, waiting for the requester to confirm.
    deflect(session, opened["hope-nairobi"], "add-a-campus", now=now - 3 * MINUTE, actor=AGENT)
    # living-waters-accra: answered, then the requester wrote back (next response running).
    accra = opened["living-waters-accra"]
    reply(
        session,
        rules,
        accra,
        author="agent",
        body="We have asked Paystack about the three payouts and will update you today.",
        now=now - 2 * HOUR - 30 * MINUTE,
        agent=AGENT,
    )
    reply(
        session,
        rules,
        accra,
        author="requester",
        body="Thank you. A fourth payout is now missing too.",
        now=now - 30 * MINUTE,
    )
    # st-marks-london: answered within the hour and solved.
    marks = opened["st-marks-london"]
    reply(
        session,
        rules,
        marks,
        author="agent",
        body="Done: your next invoice shows 12 Church Lane, London N1 2AB.",
        now=now - 3 * DAY + HOUR,
        agent=AGENT,
    )
    set_ticket_status(session, rules, marks, "solved", now=now - 2 * DAY)


def _seed_incident(session: Session, now: dt.datetime, settings: Settings) -> None:
    """The outbox has been backing up (no dispatcher runs in the demo): the health sweep five
    minutes ago opened an incident for it; escalation's preview plans its alert."""
    at = now - 5 * MINUTE
    check = outbox_check(session, settings, at)
    raise_incident(
        session,
        cause="health:outbox_backlog",
        kind="health",
        title="health check outbox_backlog is failing",
        now=at,
        severity="warning",
        detail=check.detail,
    )


# --- custom domains, and the stand-ins the previews talk to --------------------------------

DEMO_EDGE = "edge.faithflow-demo.example"  # where the demo's domains point (CNAME)
DEMO_EDGE_ADDRESS = "216.24.57.1"  # what the demo edge resolves to (Render's load balancer)
# Escalation's demo route when none is configured: a preview plans the alert, sends nothing.
DEMO_ALERT_URL = "http://127.0.0.1:9/faithflow-demo-alerts"

# tenant, hostname, verification token, the church has published the TXT record
_DOMAINS = (
    ("grace-lagos", "live.graceassembly.example", "9f1c2ab47d0e4c6b8a5f3e21d7c4b0a6", True),
    ("st-marks-london", "watch.stmarks.example", "4e7a0d92c1b54f38a6e2d0c9b71f5a83", False),
)


def _seed_domains(session: Session, now: dt.datetime, settings: Settings) -> None:
    """Two churches added a custom domain an hour ago and created its CNAME; Grace Lagos also
    published the ownership TXT record, St Mark's has not yet (`demo_zone` serves exactly
    that). Added through `domains add` with fixed tokens, so the demo is reproducible."""
    edge = dataclasses.replace(settings, domain_cname_target=DEMO_EDGE)
    for slug, host, token, _ in _DOMAINS:
        domain = add_domain(
            session, tenant_slug=slug, hostname=host, settings=edge, actor="demo", now=now - HOUR
        )
        domain.verification_token = token
    session.flush()


def demo_zone() -> dict[tuple[str, str], list[str]]:
    """The DNS answers the demo's domains get: each CNAMEs to the demo edge, Grace Lagos's
    ownership TXT is published; `.` has NS records so the health sweep's resolver check asks
    here too and gets an answer."""
    zone: dict[tuple[str, str], list[str]] = {
        (".", "NS"): ["a.root-servers.net."],
        (DEMO_EDGE, "A"): [DEMO_EDGE_ADDRESS],
    }
    for _, host, token, published in _DOMAINS:
        zone[(host, "CNAME")] = [DEMO_EDGE + "."]
        if published:
            zone[(txt_name(host), "TXT")] = [f'"{TXT_VALUE_PREFIX}{token}"']
    return zone


@contextmanager
def stand_ins(cfg: Settings) -> Iterator[Settings]:
    """The settings the demo seeds and previews with, while a DNS server on loopback answers
    for the demo's domains (`demo_zone`): every DNS probe asks only it (the domains' and the
    health sweep's resolver check), and the edge target is the demo's."""
    with LoopbackDns(demo_zone()) as dns:
        yield dataclasses.replace(
            cfg, dns_nameservers=(dns.nameserver,), domain_cname_target=DEMO_EDGE
        )


ESCALATION = "incidents_escalate"


def with_alert_route(cfg: Settings) -> Settings:
    """Escalation's settings in the demo: DEMO_ALERT_URL when no route is configured, so its
    preview shows the alert it would send (a preview sends nothing). Only escalation gets it:
    the health sweep still warns that no alert route is set."""
    if cfg.alert_webhook_url or cfg.pagerduty_routing_key:
        return cfg
    return dataclasses.replace(cfg, alert_webhook_url=DEMO_ALERT_URL)


_OPERATIONS_COUNTED: tuple[tuple[str, type[Any]], ...] = (
    ("tenant_domains", TenantDomain),
    ("dunning_cases", DunningCase),
    ("dunning_preferences", DunningPreference),
    ("outbound_messages", OutboundMessage),
    ("suppressions", Suppression),
    ("kb_articles", KbArticle),
    ("support_tickets", SupportTicket),
    ("incidents", Incident),
)


def _count(session: Session, model: type[Any]) -> int:
    return session.scalar(select(func.count()).select_from(model)) or 0


def _subscription(
    spec: _Sub, tenants: dict[str, Tenant], plans: dict[str, SubscriptionPlan], now: dt.datetime
) -> Subscription:
    plan = plans[spec.plan]
    sub = Subscription(
        tenant_id=tenants[spec.tenant].id,
        plan_id=plan.id,
        provider=spec.provider,
        status=spec.status,
        provider_subscription_id=spec.provider_subscription_id,
        provider_customer_id=spec.provider_customer_id,
        metadata_=spec.metadata,
        cancel_at_period_end=False,
        provider_state_at=now - DAY,
    )
    if spec.period_started is not None:
        length = 365 if plan.interval == "year" else 30
        sub.current_period_start = now - spec.period_started
        sub.current_period_end = sub.current_period_start + length * DAY
    if spec.trial_days_left is not None:
        sub.trial_end = now + spec.trial_days_left * DAY
    if spec.past_due_for is not None:
        sub.past_due_since = now - spec.past_due_for
    if spec.canceled_days_ago is not None:
        sub.canceled_at = now - spec.canceled_days_ago * DAY
    return sub


def preview_all(
    db: Database, cfg: Settings, now: dt.datetime, actor: str, *, demo_alert_route: bool = False
) -> list[RunResult]:
    """Every registered job's dry run; a job that cannot even load is reported as failed.
    `demo_alert_route`: escalation previews with `with_alert_route(cfg)`."""
    plain = JobContext(now=now, dry_run=True, trigger="cli", settings=cfg, actor=actor)
    routed = dataclasses.replace(plain, settings=with_alert_route(cfg))
    results = []
    for spec in JOBS:
        ctx = routed if demo_alert_route and spec.name == ESCALATION else plain
        try:
            job = spec.load()
        except Exception as exc:
            results.append(
                RunResult(
                    job=spec.name,
                    dry_run=True,
                    now=now,
                    status=FAILED,
                    error=f"cannot load {spec.module}: {type(exc).__name__}: {exc}",
                )
            )
            continue
        try:
            results.append(run_job(db, spec, ctx, job=job))
        except UserError as exc:  # refused before it started (a setting the demo lacks)
            refused = RunResult(job=spec.name, dry_run=True, now=now)
            refused.fail(exc)
            results.append(refused)
    return results


def seed_demo(
    db: Database, cfg: Settings, now: dt.datetime
) -> tuple[tuple[str | None, str | None], dict[str, int]]:
    """Migrate and seed an empty database: ((revision before, after), counts seeded)."""
    if inspect(db.engine).has_table("tenants"):
        # Checked before migrating, so pointing the demo at a real database changes nothing.
        with db.read_session() as session:
            _refuse_if_populated(session, f"the database at {cfg.masked_database_url}")
    migrated = upgrade(db.engine)
    with db.session() as session:
        seeded = seed(session, now, cfg)
    return migrated, seeded
