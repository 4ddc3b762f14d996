"""The policy that governs a user or a session: the tenant's stored security policy (its
defaults when none is stored), or for platform agents (users without a tenant) the platform
baseline. The baseline is also the bar `security audit` holds tenant policies to."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from faithflow_ops.models import AuditLog, Tenant, TenantSecurityPolicy, User
from faithflow_ops.tenancy.policies import DEFAULT_SESSION_TIMEOUT_MINUTES

# Roles that pass the staff access gate and must follow their tenant's MFA requirement.
STAFF_ROLES = ("owner", "admin", "staff")
PLATFORM_ROLES = ("platform_admin", "platform_agent")


@dataclass(frozen=True)
class Policy:
    source: str  # "tenant:<slug>", "tenant:<slug> (defaults)" or "platform baseline"
    mfa_required: bool
    sso_required: bool
    session_timeout_minutes: int

    @property
    def timeout(self) -> dt.timedelta:
        return dt.timedelta(minutes=self.session_timeout_minutes)


# The platform baseline: what platform agents follow, and the floor tenant policies are
# audited against (MFA on, sessions idle out within 12 hours). SSO is a tenant's choice.
BASELINE = Policy(
    source="platform baseline",
    mfa_required=True,
    sso_required=False,
    session_timeout_minutes=DEFAULT_SESSION_TIMEOUT_MINUTES,
)
DEFAULT_GRACE_DAYS = 7


def tenant_policy(tenant: Tenant, stored: TenantSecurityPolicy | None) -> Policy:
    if stored is None:
        return Policy(f"tenant:{tenant.slug} (defaults)", False, False,
                      DEFAULT_SESSION_TIMEOUT_MINUTES)  # fmt: skip
    return Policy(
        f"tenant:{tenant.slug}",
        stored.mfa_required,
        stored.sso_required,
        stored.session_timeout_minutes,
    )


def stricter(a: Policy, b: Policy) -> Policy:
    """Both policies at once (a platform agent working inside a tenant)."""
    return Policy(
        f"{a.source} + {b.source}",
        a.mfa_required or b.mfa_required,
        a.sso_required or b.sso_required,
        min(a.session_timeout_minutes, b.session_timeout_minutes),
    )


def policies_by_tenant(session: Session) -> dict[int, Policy]:
    """Every tenant's effective policy, in two queries."""
    stored = {p.tenant_id: p for p in session.scalars(select(TenantSecurityPolicy))}
    return {t.id: tenant_policy(t, stored.get(t.id)) for t in session.scalars(select(Tenant))}


def for_user(user: User, tenants: dict[int, Policy], tenant_id: int | None = None) -> Policy:
    """The policy a user's session in `tenant_id` (default: the user's own tenant) follows."""
    if user.tenant_id is None:
        if tenant_id is not None and tenant_id in tenants:
            return stricter(BASELINE, tenants[tenant_id])
        return BASELINE
    return tenants.get(tenant_id if tenant_id is not None else user.tenant_id, BASELINE)


def mfa_required_since(session: Session, tenant_id: int | None) -> dt.datetime | None:
    """When MFA became required: the audit entry that switched the tenant's `mfa_required` on
    (the newest), else when its policy was stored. None for the platform baseline (always)."""
    if tenant_id is None:
        return None
    entries = session.scalars(
        select(AuditLog)
        .where(
            AuditLog.tenant_id == tenant_id,
            AuditLog.entity_type == "tenant_security_policy",
            AuditLog.action == "tenant.policy.set",
        )
        .order_by(AuditLog.at.desc(), AuditLog.id.desc())
    )
    for entry in entries:
        if (entry.after or {}).get("mfa_required") is True:
            return entry.at
    stored = session.scalar(
        select(TenantSecurityPolicy).where(TenantSecurityPolicy.tenant_id == tenant_id)
    )
    return stored.created_at if stored is not None else None
