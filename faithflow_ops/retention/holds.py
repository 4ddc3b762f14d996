"""Legal holds: while a tenant has an active hold, `retention run` purges none of its data."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from faithflow_ops import audit
from faithflow_ops.errors import UserError
from faithflow_ops.models import LegalHold, Tenant
from faithflow_ops.tenancy.tenants import get_tenant


def held_tenant_ids(session: Session) -> set[int]:
    return set(session.scalars(select(LegalHold.tenant_id).where(LegalHold.released_at.is_(None))))


def hold_doc(hold: LegalHold, slug: str) -> dict[str, Any]:
    return {
        "id": hold.id,
        "tenant": slug,
        "reason": hold.reason,
        "placed_by": hold.placed_by,
        "placed_at": hold.placed_at,
        "released_at": hold.released_at,
        "released_by": hold.released_by,
    }


def place(session: Session, slug: str, reason: str, *, actor: str, now: dt.datetime) -> LegalHold:
    tenant = get_tenant(session, slug)
    if not reason.strip():
        raise UserError("a legal hold needs a --reason (the matter or request it is for)")
    active = session.scalar(
        select(LegalHold).where(LegalHold.tenant_id == tenant.id, LegalHold.released_at.is_(None))
    )
    if active is not None:
        raise UserError(
            f"{tenant.slug} is already on legal hold since {active.placed_at:%Y-%m-%d} "
            f"({active.reason}); release it first to change it"
        )
    hold = LegalHold(tenant_id=tenant.id, reason=reason.strip(), placed_by=actor, placed_at=now)
    session.add(hold)
    session.flush()
    audit.record(session, actor=actor, action="retention.hold.place", entity_type="legal_hold",
                 entity_id=hold.id, tenant_id=tenant.id,
                 after={"reason": hold.reason, "placed_at": now.isoformat()})  # fmt: skip
    return hold


def release(session: Session, slug: str, *, actor: str, now: dt.datetime) -> LegalHold:
    tenant = get_tenant(session, slug)
    hold = session.scalar(
        select(LegalHold).where(LegalHold.tenant_id == tenant.id, LegalHold.released_at.is_(None))
    )
    if hold is None:
        raise UserError(f"{tenant.slug} has no active legal hold; see `faithflow retention holds`")
    hold.released_at = now
    hold.released_by = actor
    session.flush()
    audit.record(session, actor=actor, action="retention.hold.release", entity_type="legal_hold",
                 entity_id=hold.id, tenant_id=tenant.id,
                 after={"released_at": now.isoformat()})  # fmt: skip
    return hold


def list_holds(session: Session, *, include_released: bool = False) -> list[dict[str, Any]]:
    query = select(LegalHold, Tenant.slug).join(Tenant, Tenant.id == LegalHold.tenant_id)
    if not include_released:
        query = query.where(LegalHold.released_at.is_(None))
    return [hold_doc(h, slug) for h, slug in session.execute(query.order_by(LegalHold.id))]
