"""Rows as plain documents keyed by column name (what `--json` prints and the audit log keeps).
`jsonable` is `faithflow_ops.clock.jsonable`, re-exported for support/kb.py."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import func, inspect, select
from sqlalchemy.orm import Session

from faithflow_ops.clock import jsonable as jsonable
from faithflow_ops.models import Base, Tenant


def column_values(row: Base) -> dict[str, Any]:
    """Every column of a row, keyed by its column name (`metadata`, not `metadata_`)."""
    mapper = inspect(type(row))
    return {attr.columns[0].name: getattr(row, attr.key) for attr in mapper.column_attrs}


def row_with_slug(
    session: Session, model: Any, row_id: int, *, outer: bool = False
) -> tuple[Any, str | None] | None:
    """The `model` row with this id and its tenant's slug (`outer`: slug None for a row
    without a tenant), or None when there is no such row."""
    found = session.execute(
        select(model, Tenant.slug)
        .join(Tenant, Tenant.id == model.tenant_id, isouter=outer)
        .where(model.id == row_id)
    ).first()
    return None if found is None else (found[0], found[1])


def rows_with_slug(
    session: Session,
    model: Any,
    conditions: Sequence[Any],
    order_by: Sequence[Any],
    limit: int,
    *,
    outer: bool = False,
) -> tuple[list[tuple[Any, str | None]], int]:
    """A list page of `model` rows matching `conditions`: at most `limit` of them in `order_by`
    order, each with its tenant's slug (`outer`: rows without a tenant too, slug None), and
    how many match in all."""
    total = session.scalar(select(func.count()).select_from(model).where(*conditions)) or 0
    query = (
        select(model, Tenant.slug)
        .join(Tenant, Tenant.id == model.tenant_id, isouter=outer)
        .where(*conditions)
        .order_by(*order_by)
        .limit(limit)
    )
    return [(row, slug) for row, slug in session.execute(query).tuples()], total
