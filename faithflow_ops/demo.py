"""`faithflow demo`: a believable platform in an empty database, then every job's preview.

The data is fixed (no randomness); times are offsets from `now`, so `--now` makes the whole
demo reproducible. Subscription metadata deliberately carries the historical shapes the
metadata backfill normalises — including one conflict and one invalid id — so its preview has
something to say.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, inspect, select
from sqlalchemy.orm import Session

from faithflow_ops import audit
from faithflow_ops.config import Settings
from faithflow_ops.db import Database
from faithflow_ops.errors import UserError
from faithflow_ops.jobs.base import JobContext
from faithflow_ops.jobs.registry import JOBS
from faithflow_ops.jobs.runner import FAILED, RunResult, run_job
from faithflow_ops.migrate import upgrade
from faithflow_ops.models import (
    Invoice,
    Subscription,
    SubscriptionPlan,
    Tenant,
    TenantSecurityPolicy,
    User,
)

DAY = dt.timedelta(days=1)


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
    period_started_days_ago: int | None = None  # a 30-day period (365 for yearly plans)
    trial_days_left: int | None = None
    past_due_days: int | None = None
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
        period_started_days_ago=12,
    ),
    _Sub(
        "living-waters-accra",
        "growth-monthly-ghs",
        "paystack",
        "past_due",
        {"customerCode": "CUS_4jv8m2ud9q1wz6c", "authorization_code": "AUTH_72btv547ic"},
        provider_subscription_id="SUB_k2p9d1xq7mzr4tb",
        period_started_days_ago=39,
        past_due_days=9,
    ),
    _Sub(
        "hope-nairobi",
        "growth-monthly-kes",
        "paystack",
        "trialing",
        {"customer": {"id": "CUS_9wq3hz0x2lmy7rk", "email": "finance@hopefellowship.example"}},
        trial_days_left=5,
    ),
    # Already normalised: the backfill has nothing to do here.
    _Sub(
        "cornerstone-houston",
        "growth-monthly-usd",
        "stripe",
        "active",
        {"stripeCustomerId": "cus_NffrFeUfNV2Hib"},
        provider_subscription_id="sub_1MowQVLkdIwHu7ixeRlqHVzs",
        provider_customer_id="cus_NffrFeUfNV2Hib",
        period_started_days_ago=20,
    ),
    # Invalid: a legacy CRM id where a Stripe customer id belongs.
    _Sub(
        "cornerstone-houston",
        "legacy-basic-usd",
        "stripe",
        "canceled",
        {"stripe_customer_id": "cust-10443", "legacyPlan": "basic"},
        provider_subscription_id="sub_1LzKpTLkdIwHu7ixOldBasc",
        period_started_days_ago=150,
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
        period_started_days_ago=32,
        past_due_days=32,
    ),
    _Sub(
        "shalom-joburg",
        "starter-monthly-zar",
        "paystack",
        "suspended",
        {"customer_code": "CUS_t7r2k9m4x1b6zq0", "customerCode": "CUS_t7r2k9m4x1b6zq0"},
        provider_subscription_id="SUB_h3n8c0v5q2xw9pe",
        period_started_days_ago=75,
        past_due_days=45,
    ),
    # Conflict: a retried checkout left two different Stripe customers behind.
    _Sub(
        "hope-nairobi",
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
        period_started_days_ago=230,
        canceled_days_ago=200,
    ),
)

# subscription index in _SUBSCRIPTIONS, provider invoice id, status, days until due (negative =
# overdue), paid
_INVOICES = (
    (0, "INV_3kd8xk2o1wq9fzz", "paid", -12, True),
    (1, "INV_8hq2mz5v0c7wd1t", "paid", -39, True),
    (1, "INV_1pz6xn3b8r4ks0m", "open", -9, False),
    (3, "in_1MtHbELkdIwHu7ixl4OzzPMv", "paid", -20, True),
    (4, "in_1LzKqQLkdIwHu7ixVd0Basic", "void", -120, False),
    (5, "in_1OqR8aLkdIwHu7ixUnpaidYr", "uncollectible", -32, False),
    (6, "INV_6tg0wq9e2r5yb8n", "open", -45, False),
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


def seed(session: Session, now: dt.datetime) -> dict[str, int]:
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
        due = now + due_in * DAY
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
    counts = {
        "tenants": len(tenants),
        "users": len(_USERS),
        "security_policies": len(tenants),
        "plans": len(plans),
        "subscriptions": len(subs),
        "invoices": len(_INVOICES),
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
    if spec.period_started_days_ago is not None:
        length = 365 if plan.interval == "year" else 30
        sub.current_period_start = now - spec.period_started_days_ago * DAY
        sub.current_period_end = sub.current_period_start + length * DAY
    if spec.trial_days_left is not None:
        sub.trial_end = now + spec.trial_days_left * DAY
    if spec.past_due_days is not None:
        sub.past_due_since = now - spec.past_due_days * DAY
    if spec.canceled_days_ago is not None:
        sub.canceled_at = now - spec.canceled_days_ago * DAY
    return sub


def preview_all(db: Database, cfg: Settings, now: dt.datetime, actor: str) -> list[RunResult]:
    """Every registered job's dry run; a job that cannot even load is reported as failed."""
    ctx = JobContext(now=now, dry_run=True, trigger="cli", settings=cfg, actor=actor)
    results = []
    for spec in JOBS:
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
        results.append(run_job(db, spec, ctx, job=job))
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
        seeded = seed(session, now)
    return migrated, seeded
