"""Tenant security policies: MFA, SSO, session timeout, data retention (enforced by later jobs)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy.orm import Session

from faithflow_ops import audit
from faithflow_ops.clock import jsonable
from faithflow_ops.errors import UserError
from faithflow_ops.models import Tenant, TenantSecurityPolicy
from faithflow_ops.tenancy.tenants import ensure_writable, get_tenant

SESSION_TIMEOUT_MINUTES = (5, 43_200)  # five minutes to thirty days
RETENTION_DAYS = (30, 3_650)  # a month to ten years
DEFAULT_SESSION_TIMEOUT_MINUTES = 720

_FIELDS = ("mfa_required", "sso_required", "session_timeout_minutes", "data_retention_days")


@dataclass(frozen=True)
class PolicyChange:
    doc: dict[str, Any]
    changed: list[str]


def policy_doc(tenant: Tenant, policy: TenantSecurityPolicy | None) -> dict[str, Any]:
    """The tenant's policy; the defaults (with `stored: false`) when none was saved."""
    values: dict[str, Any] = {
        "mfa_required": False,
        "sso_required": False,
        "session_timeout_minutes": DEFAULT_SESSION_TIMEOUT_MINUTES,
        "data_retention_days": None,
    }
    if policy is not None:
        values = {field: getattr(policy, field) for field in _FIELDS}
    return {
        "tenant": tenant.slug,
        **values,
        "stored": policy is not None,
        "updated_at": policy.updated_at if policy is not None else None,
    }


def show_policy(session: Session, slug: str) -> dict[str, Any]:
    tenant = get_tenant(session, slug)
    return policy_doc(tenant, tenant.security_policy)


def _in_range(value: int, bounds: tuple[int, int], what: str, unit: str) -> int:
    low, high = bounds
    if not low <= value <= high:
        raise UserError(f"{what} {value} is out of range; use {low} to {high} {unit}")
    return value


def set_policy(
    session: Session,
    slug: str,
    *,
    actor: str,
    mfa_required: bool | None = None,
    sso_required: bool | None = None,
    session_timeout_minutes: int | None = None,
    data_retention_days: int | None = None,
    clear_retention: bool = False,
) -> PolicyChange:
    """Change the given fields (None = leave as is); `clear_retention` drops the tenant's own
    retention period, so its data follows the platform defaults."""
    if clear_retention and data_retention_days is not None:
        raise UserError(
            "give either a retention period (--retention-days) or --default-retention, not both"
        )
    wanted: dict[str, Any] = {}
    if mfa_required is not None:
        wanted["mfa_required"] = mfa_required
    if sso_required is not None:
        wanted["sso_required"] = sso_required
    if session_timeout_minutes is not None:
        wanted["session_timeout_minutes"] = _in_range(
            session_timeout_minutes, SESSION_TIMEOUT_MINUTES, "session timeout", "minutes"
        )
    if data_retention_days is not None:
        wanted["data_retention_days"] = _in_range(
            data_retention_days, RETENTION_DAYS, "retention", "days"
        )
    if clear_retention:
        wanted["data_retention_days"] = None
    if not wanted:
        raise UserError("nothing to change: give at least one policy setting")

    tenant = get_tenant(session, slug)
    ensure_writable(tenant, "changed")
    policy = tenant.security_policy
    if policy is None:
        policy = TenantSecurityPolicy(
            tenant_id=tenant.id,
            mfa_required=False,
            sso_required=False,
            session_timeout_minutes=DEFAULT_SESSION_TIMEOUT_MINUTES,
        )
        session.add(policy)
        tenant.security_policy = policy
    before = {field: getattr(policy, field) for field in _FIELDS}
    changed = [field for field, value in wanted.items() if before[field] != value]
    for field in changed:
        setattr(policy, field, wanted[field])
    session.flush()
    if changed:
        audit.record(
            session,
            actor=actor,
            action="tenant.policy.set",
            entity_type="tenant_security_policy",
            entity_id=policy.id,
            tenant_id=tenant.id,
            before=jsonable({field: before[field] for field in changed}),
            after=jsonable({field: wanted[field] for field in changed}),
        )
    return PolicyChange(policy_doc(tenant, policy), changed)
