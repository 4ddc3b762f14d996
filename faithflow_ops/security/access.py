"""The staff access gate: may this user work in this tenant now, and how must they sign in?

`check_access(session, user, tenant=None, now=…)` returns a `Decision` — allowed or denied,
with every reason — for `faithflow security access-check` and for the main application (a
library call: no I/O beyond the shared database). The rules, in order (every denial is
listed, not only the first):

1. the user is deleted or disabled (disabled by `security enforce` for missing MFA says so,
   and that enrolling restores access);
2. the user belongs to another tenant; tenant staff need a staff role (owner, admin, staff);
   a user without a tenant must be a platform agent (a non-member gets no policy verdict);
3. the tenant is deleted or archived;
4. MFA is required (the tenant's policy, or the platform baseline for platform agents) and
   the user has not enrolled: denied, unless within the grace period `security enforce`
   granted when it warned them (allowed, with the deadline);
5. SSO required: allowed, but only through SSO (`methods`).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from faithflow_ops.errors import NotFound
from faithflow_ops.models import MfaNotice, Tenant, User
from faithflow_ops.security.policy import (
    PLATFORM_ROLES,
    STAFF_ROLES,
    Policy,
    for_user,
    mfa_required_since,
    policies_by_tenant,
)
from faithflow_ops.tenancy.tenants import get_tenant


@dataclass(frozen=True)
class Decision:
    allowed: bool
    user_id: int
    user: str  # e-mail
    tenant: str | None  # slug; None = the platform
    policy: str
    reasons: list[str] = field(default_factory=list)  # why denied (empty when allowed)
    notes: list[str] = field(default_factory=list)  # conditions of an allowed sign-in
    methods: tuple[str, ...] = ("password", "sso")  # sign-in methods accepted
    mfa_required: bool = False

    @property
    def summary(self) -> str:
        if self.allowed:
            return "allowed" + (f" ({'; '.join(self.notes)})" if self.notes else "")
        return "denied: " + "; ".join(self.reasons)

    def to_dict(self) -> dict[str, Any]:
        return {
            "decision": "allowed" if self.allowed else "denied",
            "summary": self.summary,
            "user_id": self.user_id,
            "user": self.user,
            "tenant": self.tenant,
            "policy": self.policy,
            "reasons": self.reasons,
            "notes": self.notes,
            "methods": list(self.methods),
            "mfa_required": self.mfa_required,
        }


def find_user(session: Session, ref: str) -> User:
    """A user by id or e-mail (case-insensitive), or NotFound naming what to give."""
    text = ref.strip()
    user = None
    if text.isdigit():
        user = session.get(User, int(text))
    elif text:
        user = session.scalar(select(User).where(func.lower(User.email) == text.lower()))
    if user is None:
        raise NotFound(f"no user {ref!r}; give the user's e-mail address or numeric id")
    return user


def _day(when: dt.datetime) -> str:
    return f"{when:%Y-%m-%d}"


def check_access(
    session: Session, user_ref: str, tenant_slug: str | None = None, *, now: dt.datetime
) -> Decision:
    user = find_user(session, user_ref)
    tenant = get_tenant(session, tenant_slug) if tenant_slug else None
    if tenant is None and user.tenant_id is not None:
        tenant = session.get(Tenant, user.tenant_id)
    policy: Policy = for_user(user, policies_by_tenant(session), tenant.id if tenant else None)
    reasons: list[str] = []
    notes: list[str] = []

    if user.deleted_at is not None:
        reasons.append(f"user deleted on {_day(user.deleted_at)}")
    elif user.disabled_at is not None:
        notice = session.scalar(select(MfaNotice).where(MfaNotice.user_id == user.id))
        if (
            notice is not None
            and notice.resolved_at is None
            and (notice.disabled_at == user.disabled_at)
        ):
            reasons.append(
                f"disabled since {_day(user.disabled_at)} for not enrolling in MFA "
                "(enrolling restores access)"
            )
        else:
            reasons.append(f"disabled since {_day(user.disabled_at)}")

    outsider = user.tenant_id is not None and tenant is not None and tenant.id != user.tenant_id
    if user.tenant_id is not None:
        if outsider and tenant is not None:
            home = session.get(Tenant, user.tenant_id)
            reasons.append(
                f"not a member of {tenant.slug} (belongs to {home.slug if home else '?'})"
            )
        if user.role not in STAFF_ROLES:
            reasons.append(f"role {user.role} has no staff access")
    elif user.role not in PLATFORM_ROLES:
        reasons.append(f"no tenant and role {user.role} is not a platform role")

    if tenant is not None:
        if tenant.deleted_at is not None:
            reasons.append(f"tenant {tenant.slug} deleted on {_day(tenant.deleted_at)}")
        elif tenant.status == "archived":
            reasons.append(f"tenant {tenant.slug} is archived")
        elif tenant.status == "suspended":
            notes.append(f"tenant {tenant.slug} is suspended ({tenant.suspension_reason or '?'})")

    by_tenant = tenant is not None and user.tenant_id is not None
    source = "tenant policy" if by_tenant else "the platform baseline"
    if tenant is not None and user.tenant_id is None and policy.source != "platform baseline":
        source = f"the platform baseline and {tenant.slug}'s policy"
    if policy.mfa_required and not outsider:  # an outsider is denied whatever the policy says
        if user.mfa_enabled:
            notes.append("sign-in must pass MFA")
        else:
            since = mfa_required_since(session, tenant.id) if by_tenant and tenant else None
            required = f"MFA required by {source}" + (f" since {_day(since)}" if since else "")
            notice = session.scalar(select(MfaNotice).where(MfaNotice.user_id == user.id))
            if (
                notice is not None
                and notice.resolved_at is None
                and notice.disabled_at is None
                and now < notice.disable_after
            ):
                notes.append(
                    f"{required}: not enrolled, grace period until "
                    f"{notice.disable_after:%Y-%m-%d %H:%M}Z"
                )
            else:
                reasons.append(f"{required}; the user has not enrolled")
    methods: tuple[str, ...] = ("password", "sso")
    if policy.sso_required and not outsider:
        methods = ("sso",)
        notes.append(f"SSO only: password sign-in refused by {source}")

    return Decision(
        allowed=not reasons,
        user_id=user.id,
        user=user.email,
        tenant=tenant.slug if tenant else None,
        policy=policy.source,
        reasons=reasons,
        notes=notes,
        methods=methods,
        mfa_required=policy.mfa_required,
    )
