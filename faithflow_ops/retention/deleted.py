"""Purging a soft-deleted tenant (`tenants.deleted_at` set by the platform) once its period has
passed: every row it owns, table by table in foreign-key-safe order (children first), in
batches; then the tenant row becomes a tombstone.

Which rows a tenant owns comes from the schema (`Base.metadata`), so a table added later is
covered without a change here:

- a table with a `tenant_id` column: its rows with that tenant;
- a table without one whose NOT NULL foreign key points at an owned table (a domain's checks,
  a ticket's knowledge-base links, a dispute's alerts): the rows under an owned row;
- a table without one whose *nullable* foreign key points at an owned table is platform data
  about the tenant's rows (a health check's incident, a bounce's message): the reference is
  set to NULL in the batch that deletes the row it points at, the platform row stays.

Kept: `audit_log` (the record of the purge itself), `retention_legal_holds` (history), and the
tenant row, as a tombstone: id, `deleted_at` and timestamps stay so audit entries and holds keep
pointing at something; name, slug and contact details are replaced (slug `purged-<id>`).
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from dataclasses import dataclass

from sqlalchemy import Column, ColumnElement, Table, and_, false, or_, select
from sqlalchemy.orm import Session

from faithflow_ops.models import Base, Tenant
from faithflow_ops.retention.paging import key_pages

KEPT = frozenset({"audit_log", "retention_legal_holds", "tenants"})
TOMBSTONE_NAME = "(purged tenant)"


def tombstone_slug(tenant_id: int) -> str:
    return f"purged-{tenant_id}"


def is_tombstone(tenant: Tenant) -> bool:
    return (
        tenant.slug == tombstone_slug(tenant.id)
        and tenant.name == TOMBSTONE_NAME
        and tenant.billing_email is None
        and tenant.billing_phone is None
        and tenant.sms_name is None
        and tenant.suspension_reason is None
    )


@dataclass(frozen=True)
class Detach:
    """A platform row's nullable reference to a purged row: set to NULL first."""

    table: Table
    column: Column[int]
    parent_key: Column[int]


@dataclass(frozen=True)
class Owned:
    table: Table
    key: Column[int]  # the single-column primary key batches are cut on
    detach: tuple[Detach, ...]


def _key(table: Table) -> Column[int]:
    columns = list(table.primary_key.columns)
    if len(columns) != 1:  # every table has one key column (DESIGN §3); say so if one does not
        raise RuntimeError(f"{table.name}: retention needs a single-column primary key")
    return columns[0]


@functools.cache
def owned_tables() -> tuple[Owned, ...]:
    """The tables a tenant owns rows of, children before parents (safe delete order)."""
    ordered = Base.metadata.sorted_tables  # parents before children
    owned: set[str] = set()
    for table in ordered:
        if table.name in KEPT:
            continue
        if "tenant_id" in table.c:
            owned.add(table.name)
            continue
        if any(
            fk.column.table.name in owned and not fk.parent.nullable for fk in table.foreign_keys
        ):
            owned.add(table.name)
    result = []
    for table in reversed(ordered):
        if table.name not in owned:
            continue
        detach = tuple(
            Detach(other, fk.parent, fk.column)
            for other in ordered
            if other.name not in owned
            for fk in other.foreign_keys
            if fk.column.table is table and fk.parent.nullable
        )
        result.append(Owned(table, _key(table), detach))
    return tuple(result)


def owned_by(table: Table, tenant_id: int) -> ColumnElement[bool]:
    """The rows of `table` that belong to the tenant (see the module's rules)."""
    if "tenant_id" in table.c:
        return table.c.tenant_id == tenant_id
    by_parent = [
        fk.parent.in_(select(fk.column).where(owned_by(fk.column.table, tenant_id)))
        for fk in table.foreign_keys
        if not fk.parent.nullable and fk.column.table.name not in KEPT
    ]
    return or_(*by_parent) if by_parent else false()


def pages(
    session: Session, owned: Owned, tenant_id: int, batch: int
) -> Iterator[tuple[int, int, int]]:
    """(first key, last key, rows) of each batch of the tenant's rows in the table."""
    query = select(owned.key).where(owned_by(owned.table, tenant_id))
    return key_pages(session, query, owned.key, batch)


def in_range(owned: Owned, tenant_id: int, first: int, last: int) -> ColumnElement[bool]:
    return and_(owned.key.between(first, last), owned_by(owned.table, tenant_id))


def by_name(name: str) -> Owned:
    for owned in owned_tables():
        if owned.table.name == name:
            return owned
    raise ValueError(f"{name} is not a table a tenant owns rows of")
