"""Tenant lifecycle: add, look up, list, suspend and reactivate — each change audited."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from faithflow_ops import audit
from faithflow_ops.clock import jsonable
from faithflow_ops.db import utcnow
from faithflow_ops.errors import NotFound, UserError, one_of
from faithflow_ops.models import Tenant, TenantSecurityPolicy
from faithflow_ops.models.tenancy import TENANT_STATUSES
from faithflow_ops.tenancy import validation
from faithflow_ops.tenancy.records import column_values

_STATE_FIELDS = ("status", "suspension_reason", "suspended_at")


@dataclass(frozen=True)
class Transition:
    """The tenant after a suspend/reactivate, and whether anything changed."""

    tenant: Tenant
    changed: bool


def tenant_doc(tenant: Tenant) -> dict[str, Any]:
    return column_values(tenant)


def get_tenant(session: Session, slug: str) -> Tenant:
    """The tenant with this slug (soft-deleted ones too), or NotFound."""
    tenant = session.scalar(select(Tenant).where(Tenant.slug == slug.strip()))
    if tenant is None:
        raise NotFound(f"no tenant with slug {slug!r}; see `faithflow tenants list`")
    return tenant


def add_tenant(
    session: Session,
    *,
    slug: str,
    name: str,
    actor: str,
    timezone: str = "UTC",
    country: str | None = None,
    currency: str = "USD",
    email: str | None = None,
    phone: str | None = None,
) -> Tenant:
    """Create an active tenant with the default security policy."""
    tenant = Tenant(
        slug=validation.slug(slug),
        name=validation.name(name),
        status="active",
        timezone=validation.timezone(timezone),
        country=validation.country(country) if country is not None else None,
        currency=validation.currency(currency),
        billing_email=validation.email(email) if email is not None else None,
        billing_phone=validation.phone(phone) if phone is not None else None,
    )
    taken = session.scalar(select(Tenant.id).where(Tenant.slug == tenant.slug))
    if taken is not None:
        raise UserError(f"a tenant with slug {tenant.slug!r} already exists; choose another slug")
    session.add(tenant)
    session.flush()
    session.add(TenantSecurityPolicy(tenant_id=tenant.id))
    session.flush()
    audit.record(
        session,
        actor=actor,
        action="tenant.add",
        entity_type="tenant",
        entity_id=tenant.id,
        tenant_id=tenant.id,
        after=jsonable(tenant_doc(tenant)),
    )
    return tenant


def set_billing_contact(
    session: Session,
    slug: str,
    *,
    actor: str,
    email: str | None = None,
    phone: str | None = None,
    sms_name: str | None = None,
) -> Transition:
    """Set the tenant's billing email and/or phone, and/or the short name SMS call it by
    (GSM-7, at most 30 characters; '' clears it: comms.sms); values already held change
    nothing."""
    from faithflow_ops.comms import sms

    if email is None and phone is None and sms_name is None:
        raise UserError("nothing to change: give --email, --phone and/or --sms-name")
    tenant = get_tenant(session, slug)
    ensure_writable(tenant, "changed")
    after: dict[str, str | None] = {}
    if email is not None:
        after["billing_email"] = validation.email(email)
    if phone is not None:
        after["billing_phone"] = validation.phone(phone)
    if sms_name is not None:
        after["sms_name"] = sms.check_name(sms_name)
    before = {key: getattr(tenant, key) for key in after}
    changed = {key: value for key, value in after.items() if before[key] != value}
    if not changed:
        return Transition(tenant, False)
    for key, value in changed.items():
        setattr(tenant, key, value)
    session.flush()
    audit.record(
        session,
        actor=actor,
        action="tenant.set_billing_contact",
        entity_type="tenant",
        entity_id=tenant.id,
        tenant_id=tenant.id,
        before={key: before[key] for key in changed},
        after=changed,
    )
    return Transition(tenant, True)


def list_tenants(
    session: Session, *, status: str | None = None, include_deleted: bool = False
) -> list[Tenant]:
    query = select(Tenant).order_by(Tenant.slug)
    if status is not None:
        query = query.where(Tenant.status == one_of("status", status, TENANT_STATUSES))
    if not include_deleted:
        query = query.where(Tenant.deleted_at.is_(None))
    return list(session.scalars(query))


def ensure_writable(tenant: Tenant, verb: str) -> None:
    """Refuse changes to deleted or archived tenants."""
    if tenant.deleted_at is not None:
        raise UserError(
            f"tenant {tenant.slug!r} was deleted at {tenant.deleted_at.isoformat()}; "
            f"a deleted tenant cannot be {verb}"
        )
    if tenant.status == "archived":
        raise UserError(f"tenant {tenant.slug!r} is archived; an archived tenant cannot be {verb}")


def suspend_check(session: Session, slug: str, *, reason: str) -> Transition:
    """What suspending would do, writing nothing (`tenants suspend --dry-run`, and the check
    before the confirmation prompt): every refusal a suspension would raise, then whether it
    would change anything."""
    tenant = get_tenant(session, slug)
    ensure_writable(tenant, "suspended")
    validation.name(reason, "the suspension reason")
    return Transition(tenant, changed=tenant.status != "suspended")


def mark_suspended(
    session: Session, slug: str, *, reason: str, actor: str, now: dt.datetime | None = None
) -> Transition:
    """The tenant's side of a suspension: an active tenant becomes suspended; suspending a
    suspended one changes nothing. Callers suspend through `dunning.suspension.suspend_tenant`,
    which also closes the tenant's open dunning cases."""
    tenant = get_tenant(session, slug)
    ensure_writable(tenant, "suspended")
    if tenant.status == "suspended":
        return Transition(tenant, changed=False)
    before = _state(tenant)
    tenant.status = "suspended"
    tenant.suspension_reason = validation.name(reason, "the suspension reason")
    tenant.suspended_at = now or utcnow()
    _audit_transition(session, tenant, "tenant.suspend", before, actor)
    return Transition(tenant, changed=True)


def reactivate_tenant(session: Session, slug: str, *, actor: str) -> Transition:
    """Reactivate a suspended tenant; reactivating an active one changes nothing."""
    tenant = get_tenant(session, slug)
    ensure_writable(tenant, "reactivated")
    if tenant.status == "active":
        return Transition(tenant, changed=False)
    before = _state(tenant)
    tenant.status = "active"
    tenant.suspension_reason = None
    tenant.suspended_at = None
    _audit_transition(session, tenant, "tenant.reactivate", before, actor)
    return Transition(tenant, changed=True)


def _state(tenant: Tenant) -> dict[str, Any]:
    return jsonable({field: getattr(tenant, field) for field in _STATE_FIELDS})


def _audit_transition(
    session: Session, tenant: Tenant, action: str, before: dict[str, Any], actor: str
) -> None:
    session.flush()
    audit.record(
        session,
        actor=actor,
        action=action,
        entity_type="tenant",
        entity_id=tenant.id,
        tenant_id=tenant.id,
        before=before,
        after=_state(tenant),
    )


MAX_GRACE_DAYS = 365


def set_billing_grace(session: Session, slug: str, days: int | None, *, actor: str) -> Transition:
    """Set (or with None clear) the tenant's grace before `subs automate` suspends it for
    non-payment; cleared means the plan's `graceDays`, else the default."""
    if days is not None and not 0 <= days <= MAX_GRACE_DAYS:
        raise UserError(f"grace DAYS must be 0 to {MAX_GRACE_DAYS}, or 'default'; got {days}")
    tenant = get_tenant(session, slug)
    ensure_writable(tenant, "changed")
    if tenant.billing_grace_days == days:
        return Transition(tenant, changed=False)
    before = {"billing_grace_days": tenant.billing_grace_days}
    tenant.billing_grace_days = days
    session.flush()
    audit.record(
        session,
        actor=actor,
        action="tenant.set_grace",
        entity_type="tenant",
        entity_id=tenant.id,
        tenant_id=tenant.id,
        before=before,
        after={"billing_grace_days": days},
    )
    return Transition(tenant, changed=True)
