"""Provider-side ids that belong to a tenant (`faithflow tenants link` / `unlink`).

Webhooks find an event's tenant through these rows (`provider_accounts`): the platform's
customer for the church (`cus_…` Stripe, `CUS_…` Paystack), its Stripe Connect account
(`acct_…`) or its Paystack subaccount (`ACCT_…`). The prefix says which, so the operator
types only the id. One id belongs to one tenant: linking it elsewhere is refused, linking the
same pair again changes nothing. Linking writes through `link_account`, the same
insert-or-nothing the checkout webhook uses. Handling the webhook events that waited for a link
is the webhooks' part (`webhooks.inbox.link_and_handle`): this module only stores links.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from faithflow_ops import audit
from faithflow_ops.db import upsert_insert
from faithflow_ops.errors import UserError
from faithflow_ops.models import ProviderAccount, Subscription, Tenant
from faithflow_ops.providers.ids import MAX_LENGTH, check
from faithflow_ops.tenancy.records import column_values
from faithflow_ops.tenancy.tenants import ensure_writable, get_tenant


@dataclass(frozen=True)
class IdKind:
    prefix: str
    provider: str
    kind: str  # provider_accounts.kind
    label: str


# Longest prefix first is not needed: prefixes are case-sensitive and none is another's prefix.
KINDS = (
    IdKind("cus_", "stripe", "customer", "Stripe customer"),
    IdKind("acct_", "stripe", "connect_account", "Stripe Connect account"),
    IdKind("CUS_", "paystack", "customer", "Paystack customer"),
    IdKind("ACCT_", "paystack", "subaccount", "Paystack subaccount"),
)
_ID_NAMES = {"stripe": "id", "paystack": "code"}


def _accepted() -> str:
    names = [f"{k.prefix}… ({k.label})" for k in KINDS]
    return f"{', '.join(names[:-1])} or {names[-1]}"


@dataclass(frozen=True)
class ExternalId:
    provider: str
    kind: str
    value: str
    label: str  # "Stripe customer"

    def describe(self) -> str:
        return f"{self.provider} {self.kind} {self.value}"


def parse_external_id(raw: str) -> ExternalId:
    """Which provider and kind `raw` is (by its prefix), validated; surrounding space trimmed."""
    text = raw.strip()
    for spec in KINDS:
        if text.startswith(spec.prefix):
            break
    else:
        raise UserError(f"{raw!r} is not an id `tenants link` knows; use {_accepted()}")
    name = f"a {spec.label} {_ID_NAMES[spec.provider]}"
    if spec.kind == "customer":
        checked = check(spec.provider, "customer", text)
        problem = checked.problem
    else:
        problem = _account_problem(spec.prefix, text)
    if problem is not None:
        raise UserError(f"{raw!r} is not {name}: {problem}")
    return ExternalId(spec.provider, spec.kind, text, spec.label)


def _account_problem(prefix: str, text: str) -> str | None:
    """Connect account and subaccount ids: the prefix, then letters and digits."""
    if len(text) > MAX_LENGTH:
        return f"longer than {MAX_LENGTH} characters"
    if any(ch.isspace() for ch in text):
        return "contains whitespace"
    if not re.fullmatch(re.escape(prefix) + "[A-Za-z0-9]+", text):
        return (
            f"has no letters and digits after {prefix}"
            if text == prefix
            else (f"has characters other than letters and digits after {prefix}")
        )
    return None


def owner_id(session: Session, provider: str, kind: str, external_id: str | None) -> int | None:
    """The tenant a provider-side id is linked to (`provider_accounts`), or None."""
    if external_id is None:
        return None
    return session.scalar(
        select(ProviderAccount.tenant_id).where(
            ProviderAccount.provider == provider,
            ProviderAccount.kind == kind,
            ProviderAccount.external_id == external_id,
        )
    )


def _owner(session: Session, ext: ExternalId) -> Tenant | None:
    tenant_id = owner_id(session, ext.provider, ext.kind, ext.value)
    return session.get(Tenant, tenant_id) if tenant_id is not None else None


def _subscription_holder(session: Session, ext: ExternalId, tenant: Tenant) -> Tenant | None:
    """Another tenant whose subscription names this customer (webhooks would resolve to it)."""
    if ext.kind != "customer":
        return None
    return session.scalar(
        select(Tenant)
        .join(Subscription, Subscription.tenant_id == Tenant.id)
        .where(
            Subscription.provider == ext.provider,
            Subscription.provider_customer_id == ext.value,
            Tenant.id != tenant.id,
        )
        .limit(1)
    )


def _taken(ext: ExternalId, owner: Tenant) -> UserError:
    return UserError(
        f"{ext.label} {ext.value} is already linked to tenant {owner.slug}; unlink it there "
        f"first: `faithflow tenants unlink {owner.slug} {ext.value}`"
    )


@dataclass
class Linked:
    """`tenants link`: the row, whether it is new, and the webhook events handled after."""

    tenant: Tenant
    account: ProviderAccount
    external: ExternalId
    changed: bool
    handled: list[dict[str, Any]] = field(default_factory=list)

    def doc(self) -> dict[str, Any]:
        return {
            "tenant": self.tenant.slug,
            **column_values(self.account),
            "changed": self.changed,
            "handled": self.handled,
        }


def link_account(
    session: Session, tenant_id: int, provider: str, kind: str, external_id: str, source: str
) -> int:
    """Record that `external_id` belongs to the tenant (insert-or-nothing); returns the owner,
    which is another tenant when the id was already linked elsewhere."""
    stmt = (
        upsert_insert(session.get_bind().dialect.name, ProviderAccount)
        .values(
            tenant_id=tenant_id,
            provider=provider,
            kind=kind,
            external_id=external_id,
            source=source[:100],
        )
        .on_conflict_do_nothing(index_elements=["provider", "kind", "external_id"])
    )
    session.execute(stmt)
    owner = owner_id(session, provider, kind, external_id)
    assert owner is not None
    return owner


def _audit_fields(ext: ExternalId) -> dict[str, Any]:
    return {"provider": ext.provider, "kind": ext.kind, "external_id": ext.value}


def link(session: Session, slug: str, raw_id: str, *, actor: str) -> Linked:
    """Link a provider id to the tenant (the row only: `webhooks.inbox.link_and_handle` then
    handles the webhook events that waited for it)."""
    tenant = get_tenant(session, slug)
    ext = parse_external_id(raw_id)
    ensure_writable(tenant, "linked to a provider id")
    owner = _owner(session, ext)
    if owner is not None and owner.id != tenant.id:
        raise _taken(ext, owner)
    holder = _subscription_holder(session, ext, tenant)
    if holder is not None:
        raise UserError(
            f"{ext.value} is the customer of tenant {holder.slug}'s subscription; a customer "
            "belongs to one tenant (see `faithflow subs list --tenant "
            f"{holder.slug}`)"
        )
    changed = owner is None
    if changed:
        owner_id = link_account(session, tenant.id, ext.provider, ext.kind, ext.value, actor)
        if owner_id != tenant.id:  # linked elsewhere in the meantime
            other = session.get(Tenant, owner_id)
            assert other is not None
            raise _taken(ext, other)
    account = session.scalars(
        select(ProviderAccount).where(
            ProviderAccount.provider == ext.provider,
            ProviderAccount.kind == ext.kind,
            ProviderAccount.external_id == ext.value,
        )
    ).one()
    result = Linked(tenant, account, ext, changed)
    if changed:
        audit.record(
            session,
            actor=actor,
            action="tenant.link_account",
            entity_type="provider_account",
            entity_id=account.id,
            tenant_id=tenant.id,
            after=_audit_fields(ext),
        )
    return result


@dataclass
class Unlinked:
    tenant: Tenant
    external: ExternalId


def unlink(session: Session, slug: str, raw_id: str, *, actor: str) -> Unlinked:
    """Remove the link; an id not linked to this tenant is refused (naming its owner)."""
    tenant = get_tenant(session, slug)
    ext = parse_external_id(raw_id)
    owner = _owner(session, ext)
    if owner is None or owner.id != tenant.id:
        elsewhere = f" (it is linked to {owner.slug})" if owner is not None else ""
        raise UserError(
            f"{ext.value} is not linked to {tenant.slug}{elsewhere}; see "
            f"`faithflow tenants show {tenant.slug}`"
        )
    account_id = session.scalar(
        select(ProviderAccount.id).where(
            ProviderAccount.tenant_id == tenant.id,
            ProviderAccount.provider == ext.provider,
            ProviderAccount.kind == ext.kind,
            ProviderAccount.external_id == ext.value,
        )
    )
    session.execute(delete(ProviderAccount).where(ProviderAccount.id == account_id))
    audit.record(
        session,
        actor=actor,
        action="tenant.unlink_account",
        entity_type="provider_account",
        entity_id=account_id or 0,
        tenant_id=tenant.id,
        before=_audit_fields(ext),
    )
    return Unlinked(tenant, ext)


def accounts_of(session: Session, tenant_id: int) -> list[dict[str, Any]]:
    """`tenants show`: the tenant's linked provider ids, oldest link first."""
    return [
        {
            "id": a.id,
            "provider": a.provider,
            "kind": a.kind,
            "external_id": a.external_id,
            "source": a.source,
            "created_at": a.created_at,
        }
        for a in session.scalars(
            select(ProviderAccount)
            .where(ProviderAccount.tenant_id == tenant_id)
            .order_by(ProviderAccount.id)
        )
    ]
