"""`faithflow tenants show`: a tenant with what hangs off it — its security policy, its
subscriptions and its linked provider ids. Above `tenants`, `accounts` and `policies`, which
it reads (each of them looks tenants up through `tenants`)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from faithflow_ops.models import Subscription, SubscriptionPlan, Tenant, User
from faithflow_ops.tenancy.accounts import accounts_of
from faithflow_ops.tenancy.policies import policy_doc
from faithflow_ops.tenancy.tenants import tenant_doc


def tenant_details(session: Session, tenant: Tenant) -> dict[str, Any]:
    """`tenants show`: the tenant's columns, its security policy, its subscriptions and its
    linked provider ids."""
    doc = tenant_doc(tenant)
    doc["security_policy"] = policy_doc(tenant, tenant.security_policy)
    rows = session.execute(
        select(Subscription, SubscriptionPlan.code)
        .join(SubscriptionPlan, SubscriptionPlan.id == Subscription.plan_id)
        .where(Subscription.tenant_id == tenant.id)
        .order_by(Subscription.id)
    )
    doc["subscriptions"] = [
        {
            "id": sub.id,
            "plan": code,
            "provider": sub.provider,
            "status": sub.status,
            "current_period_end": sub.current_period_end,
        }
        for sub, code in rows
    ]
    doc["provider_accounts"] = accounts_of(session, tenant.id)
    doc["users"] = session.scalar(
        select(func.count())
        .select_from(User)
        .where(User.tenant_id == tenant.id, User.deleted_at.is_(None))
    )
    return doc
