"""Self-serve billing links (`faithflow billing checkout` / `billing portal`).

A link is worked out in two steps: `plan_checkout` / `plan_portal` read the database and settle
everything (which provider, which price or plan code, which customer, which URLs) — every
refusal an operator can fix happens here, before any call leaves the machine; then
`open_checkout` / `open_portal` make the one provider call (providers/, with retries) after
the database session is closed.

Decisions:

- Provider for a checkout: `--provider` when given; otherwise the plan's metadata decides when
  it holds only one of `stripePriceId` / `paystackPlanCode`; with both, `--provider` is required.
- Stripe customer reuse: the tenant's newest linked customer (`provider_accounts`, kind
  customer), else the `provider_customer_id` of its Stripe subscriptions (live ones first, then
  newest). With none, Checkout creates the customer, prefilled with the billing email.
- Portal: `--provider` when given; otherwise the provider of the tenant's subscription that is
  not canceled (newest), else its newest subscription, else the provider of its linked
  customer. Stripe needs a customer id, Paystack a subscription code (`SUB_…`).
- A checkout for a tenant that already pays for a subscription is allowed (an upgrade through
  a new subscription is the operator's call) but warned about: completing it bills twice until
  the old subscription is canceled.
- `{tenant}` in a success, cancel or return URL becomes the tenant's slug; Stripe's own
  `{CHECKOUT_SESSION_ID}` is left for Stripe.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from sqlalchemy import case, select
from sqlalchemy.orm import Session

from faithflow_ops.billing.identifiers import check
from faithflow_ops.billing.plans import get_plan
from faithflow_ops.errors import UserError, one_of
from faithflow_ops.models import ProviderAccount, Subscription, SubscriptionPlan, Tenant
from faithflow_ops.models.billing import PROVIDERS
from faithflow_ops.tenancy.tenants import ensure_writable, get_tenant

if TYPE_CHECKING:
    from faithflow_ops.config import Settings
    from faithflow_ops.db import Database
    from faithflow_ops.providers._http import RetryPolicy

PLAN_KEYS = {"stripe": "stripePriceId", "paystack": "paystackPlanCode"}
_EXAMPLES = {"stripe": "price_…", "paystack": "PLN_…"}
_SECRET = {
    "stripe": ("stripe_secret_key", "STRIPE_SECRET_KEY"),
    "paystack": ("paystack_secret_key", "PAYSTACK_SECRET_KEY"),
}
# Statuses in which the provider still bills (a second checkout would bill twice).
BILLING_STATUSES = ("trialing", "active", "past_due", "unpaid")
_RECOVER = (
    "`faithflow subs backfill` may recover it from subscription metadata, or a webhook replay "
    "(`faithflow webhooks replay --unmatched`) from a stored event"
)


@dataclass(frozen=True)
class Link:
    """A URL to send the church to, and what it was made from (the `--json` document)."""

    kind: str  # "checkout" | "portal"
    provider: str
    url: str
    tenant: str
    plan: str | None = None
    session_id: str | None = None  # Stripe Checkout / portal session
    reference: str | None = None  # Paystack transaction reference
    subscription_code: str | None = None  # Paystack manage link
    customer: str | None = None

    def doc(self) -> dict[str, Any]:
        doc: dict[str, Any] = {"url": self.url, "provider": self.provider, "kind": self.kind}
        doc["tenant"] = self.tenant
        if self.kind == "checkout":
            doc["plan"] = self.plan
        if self.provider == "stripe":
            doc["session_id"] = self.session_id
            doc["customer"] = self.customer
        elif self.kind == "checkout":
            doc["reference"] = self.reference
        else:
            doc["subscription_code"] = self.subscription_code
        return doc


@dataclass(frozen=True)
class CheckoutRequest:
    provider: str
    tenant: str
    plan: str
    provider_plan_id: str  # stripePriceId or paystackPlanCode
    amount_minor: int
    currency: str
    success_url: str | None
    cancel_url: str | None
    customer: str | None
    email: str | None
    warnings: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class PortalRequest:
    provider: str
    tenant: str
    customer: str | None  # Stripe
    subscription_code: str | None  # Paystack
    return_url: str | None
    warnings: list[str] = field(default_factory=list)


def _url(value: str | None, option: str, tenant: str) -> str | None:
    """An absolute http(s) URL with `{tenant}` filled in; None stays None."""
    if value is None:
        return None
    raw = value.strip()
    scheme, sep, rest = raw.partition("://")
    if scheme.lower() not in ("http", "https") or not sep or not rest or rest.startswith("/"):
        raise UserError(
            f"{option} {value!r} is not an absolute http(s) URL; use e.g. "
            f"{option} https://app.faithflow.example/billing"
        )
    return raw.replace("{tenant}", tenant)


def _plan_id(plan: SubscriptionPlan, provider: str) -> str | None:
    value = (plan.metadata_ or {}).get(PLAN_KEYS[provider])
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if not isinstance(value, str):
        raise UserError(
            f"plan {plan.code}'s {PLAN_KEYS[provider]} is {value!r}, not a text id; set it with "
            f"`faithflow plans set-meta {plan.code} {PLAN_KEYS[provider]}={_EXAMPLES[provider]}`"
        )
    return value.strip()


def _missing_plan_id(plan: SubscriptionPlan, provider: str) -> UserError:
    key = PLAN_KEYS[provider]
    return UserError(
        f"plan {plan.code} has no {key} in its metadata; set it with "
        f"`faithflow plans set-meta {plan.code} {key}={_EXAMPLES[provider]}`"
    )


def checkout_provider(plan: SubscriptionPlan, provider: str | None) -> str:
    """The provider a checkout for `plan` goes through (see the module's decisions)."""
    if provider is not None:
        chosen = one_of("--provider", provider.strip().lower(), PROVIDERS)
        if _plan_id(plan, chosen) is None:
            raise _missing_plan_id(plan, chosen)
        return chosen
    has = [p for p in PROVIDERS if _plan_id(plan, p) is not None]
    if len(has) == 1:
        return has[0]
    if has:
        return _choose_provider(f"plan {plan.code} has both stripePriceId and paystackPlanCode")
    return _no_plan_ids(plan)


def _choose_provider(why: str) -> str:
    raise UserError(f"{why}; choose one with --provider stripe or --provider paystack")


def _no_plan_ids(plan: SubscriptionPlan) -> str:
    raise UserError(
        f"plan {plan.code} has neither stripePriceId nor paystackPlanCode in its metadata; set "
        f"one with `faithflow plans set-meta {plan.code} stripePriceId=price_…` (or "
        "paystackPlanCode=PLN_…)"
    )


def _subscriptions(session: Session, tenant: Tenant, provider: str | None = None) -> list[Any]:
    """The tenant's subscriptions: not canceled first, then newest first."""
    query = (
        select(Subscription, SubscriptionPlan.code)
        .join(SubscriptionPlan, SubscriptionPlan.id == Subscription.plan_id)
        .where(Subscription.tenant_id == tenant.id)
        .order_by(case((Subscription.status == "canceled", 1), else_=0), Subscription.id.desc())
    )
    if provider is not None:
        query = query.where(Subscription.provider == provider)
    return list(session.execute(query))


def _linked_customers(session: Session, tenant: Tenant) -> list[tuple[str, str]]:
    """(provider, external id) of the tenant's linked customers, newest link first."""
    rows = session.execute(
        select(ProviderAccount.provider, ProviderAccount.external_id)
        .where(ProviderAccount.tenant_id == tenant.id, ProviderAccount.kind == "customer")
        .order_by(ProviderAccount.id.desc())
    )
    return [(p, e) for p, e in rows]


def stripe_customer(session: Session, tenant: Tenant) -> str | None:
    """The tenant's Stripe customer: a linked one, else one on its Stripe subscriptions."""
    for provider, external_id in _linked_customers(session, tenant):
        if provider == "stripe" and check("stripe", "customer", external_id).value:
            return external_id
    for sub, _code in _subscriptions(session, tenant, "stripe"):
        value = check("stripe", "customer", sub.provider_customer_id).value
        if value:
            return value
    return None


def paystack_subscription_code(session: Session, tenant: Tenant) -> str | None:
    """The `SUB_…` code of the tenant's Paystack subscription (not canceled first, newest)."""
    for sub, _code in _subscriptions(session, tenant, "paystack"):
        value = check("paystack", "subscription", sub.provider_subscription_id).value
        if value:
            return value
    return None


def plan_checkout(
    session: Session,
    settings: Settings,
    *,
    tenant: str,
    plan: str,
    provider: str | None = None,
    success_url: str | None = None,
    cancel_url: str | None = None,
) -> CheckoutRequest:
    """Everything a checkout link needs, or the UserError that says what to fix."""
    tenant_row = get_tenant(session, tenant)
    ensure_writable(tenant_row, "billed")
    slug = tenant_row.slug
    plan_row = get_plan(session, plan)
    if not plan_row.active:
        raise UserError(
            f"plan {plan_row.code} is not active, so it is not for sale; choose an active plan "
            "(`faithflow plans list`)"
        )
    chosen = checkout_provider(plan_row, provider)
    settings.require(*_SECRET[chosen])
    plan_id = _plan_id(plan_row, chosen)
    assert plan_id is not None  # checkout_provider refused a plan without one
    success = _url(success_url, "--success-url", slug) or _url(
        settings.billing_success_url, "FAITHFLOW_BILLING_SUCCESS_URL", slug
    )
    cancel = _url(cancel_url, "--cancel-url", slug) or _url(
        settings.billing_cancel_url, "FAITHFLOW_BILLING_CANCEL_URL", slug
    )
    customer = None
    email = tenant_row.billing_email
    warnings: list[str] = []
    if chosen == "stripe":
        if success is None:
            raise UserError(
                "Stripe Checkout needs a success URL; pass --success-url https://… or set "
                "FAITHFLOW_BILLING_SUCCESS_URL"
            )
        customer = stripe_customer(session, tenant_row)
    else:
        if not email:
            raise UserError(
                f"tenant {slug} has no billing email, which Paystack needs to start a "
                f"subscription; set it with `faithflow tenants set {slug} --email "
                "treasurer@church.example`"
            )
        if cancel_url is not None:
            warnings.append("--cancel-url is not used by Paystack (its page has its own cancel)")
    billing = [
        (sub, code)
        for sub, code in _subscriptions(session, tenant_row)
        if sub.status in BILLING_STATUSES
    ]
    for sub, code in billing:
        warnings.append(
            f"{slug} already has subscription {sub.id} ({sub.provider}, plan {code}, "
            f"{sub.status}); completing this checkout starts a second one — to change plans, "
            f"cancel the old one or use `faithflow billing portal --tenant {slug}`"
        )
    return CheckoutRequest(
        provider=chosen,
        tenant=slug,
        plan=plan_row.code,
        provider_plan_id=plan_id,
        amount_minor=plan_row.amount_minor,
        currency=plan_row.currency,
        success_url=success,
        cancel_url=cancel,
        customer=customer,
        email=email,
        warnings=warnings,
    )


def open_checkout(
    settings: Settings,
    request: CheckoutRequest,
    *,
    policy: RetryPolicy | None = None,
    now: dt.datetime | None = None,
) -> Link:
    """Make the provider call for a planned checkout (raises ProviderError on failure)."""
    if request.provider == "stripe":
        from faithflow_ops.providers.stripe import StripeAPI

        assert request.success_url is not None
        with StripeAPI(settings, policy) as api:
            made = api.create_checkout_session(
                price_id=request.provider_plan_id,
                tenant=request.tenant,
                plan=request.plan,
                success_url=request.success_url,
                cancel_url=request.cancel_url,
                customer=request.customer,
                customer_email=request.email,
                now=now,
            )
        return Link(
            "checkout",
            "stripe",
            made.url,
            request.tenant,
            plan=request.plan,
            session_id=made.id,
            customer=request.customer,
        )
    from faithflow_ops.providers.paystack import PaystackAPI

    assert request.email is not None
    with PaystackAPI(settings, policy) as paystack:
        started = paystack.initialize_transaction(
            email=request.email,
            amount_minor=request.amount_minor,
            currency=request.currency,
            plan_code=request.provider_plan_id,
            tenant=request.tenant,
            plan=request.plan,
            callback_url=request.success_url,
        )
    return Link(
        "checkout",
        "paystack",
        started.url,
        request.tenant,
        plan=request.plan,
        reference=started.reference,
    )


def plan_portal(
    session: Session,
    settings: Settings,
    *,
    tenant: str,
    provider: str | None = None,
    return_url: str | None = None,
) -> PortalRequest:
    """Everything a portal link needs, or the UserError that says what is missing."""
    tenant_row = get_tenant(session, tenant)
    slug = tenant_row.slug
    if provider is not None:
        chosen = one_of("--provider", provider.strip().lower(), PROVIDERS)
    else:
        chosen = _portal_provider(session, tenant_row)
    settings.require(*_SECRET[chosen])
    warnings: list[str] = []
    if chosen == "stripe":
        customer = stripe_customer(session, tenant_row)
        if customer is None:
            raise UserError(
                f"tenant {slug} has no Stripe customer id: no linked customer (`faithflow "
                f"tenants link {slug} cus_…`) and no provider_customer_id on its Stripe "
                f"subscriptions; {_RECOVER}"
            )
        back = _url(return_url, "--return-url", slug) or _url(
            settings.billing_return_url, "FAITHFLOW_BILLING_RETURN_URL", slug
        )
        return PortalRequest("stripe", slug, customer, None, back, warnings)
    code = paystack_subscription_code(session, tenant_row)
    if code is None:
        raise UserError(
            f"tenant {slug} has no Paystack subscription code (SUB_…) on a Paystack "
            f"subscription, which Paystack's manage link needs; {_RECOVER}"
        )
    if return_url is not None:
        warnings.append("--return-url is not used by Paystack's manage link")
    return PortalRequest("paystack", slug, None, code, None, warnings)


def _portal_provider(session: Session, tenant: Tenant) -> str:
    subs = _subscriptions(session, tenant)
    if subs:
        provider: str = subs[0][0].provider
        return provider
    linked = {p for p, _e in _linked_customers(session, tenant)}
    if len(linked) == 1:
        return linked.pop()
    if linked:
        return _choose_provider(
            f"tenant {tenant.slug} has no subscription and customers at both providers"
        )
    raise UserError(
        f"tenant {tenant.slug} has no subscription and no linked customer, so there is no "
        "billing portal to open; start one with `faithflow billing checkout --tenant "
        f"{tenant.slug} --plan …`, or recover a lost one: {_RECOVER}"
    )


def open_portal(
    settings: Settings,
    request: PortalRequest,
    *,
    policy: RetryPolicy | None = None,
    now: dt.datetime | None = None,
) -> Link:
    if request.provider == "stripe":
        from faithflow_ops.providers.stripe import StripeAPI

        assert request.customer is not None
        with StripeAPI(settings, policy) as api:
            made = api.create_portal_session(
                customer=request.customer, return_url=request.return_url, now=now
            )
        return Link(
            "portal",
            "stripe",
            made.url,
            request.tenant,
            session_id=made.id,
            customer=request.customer,
        )
    from faithflow_ops.providers.paystack import PaystackAPI

    assert request.subscription_code is not None
    with PaystackAPI(settings, policy) as paystack:
        url = paystack.manage_link(request.subscription_code)
    return Link(
        "portal", "paystack", url, request.tenant, subscription_code=request.subscription_code
    )


def checkout(
    db: Database,
    settings: Settings,
    *,
    tenant: str,
    plan: str,
    provider: str | None = None,
    success_url: str | None = None,
    cancel_url: str | None = None,
    policy: RetryPolicy | None = None,
) -> tuple[Link, list[str]]:
    """Plan (in a read session) then open a checkout link; returns it and any warnings."""
    with db.read_session() as session:
        request = plan_checkout(
            session,
            settings,
            tenant=tenant,
            plan=plan,
            provider=provider,
            success_url=success_url,
            cancel_url=cancel_url,
        )
    return open_checkout(settings, request, policy=policy), request.warnings


def portal(
    db: Database,
    settings: Settings,
    *,
    tenant: str,
    provider: str | None = None,
    return_url: str | None = None,
    policy: RetryPolicy | None = None,
) -> tuple[Link, list[str]]:
    with db.read_session() as session:
        request = plan_portal(
            session, settings, tenant=tenant, provider=provider, return_url=return_url
        )
    return open_portal(settings, request, policy=policy), request.warnings
