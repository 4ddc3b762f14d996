"""Rows as plain documents keyed by column name (what `--json` prints and the audit log keeps).
`jsonable` is `faithflow_ops.clock.jsonable`, re-exported for support/kb.py."""

from __future__ import annotations

from typing import Any

from sqlalchemy import inspect

from faithflow_ops.clock import jsonable as jsonable
from faithflow_ops.models import Base


def column_values(row: Base) -> dict[str, Any]:
    """Every column of a row, keyed by its column name (`metadata`, not `metadata_`)."""
    mapper = inspect(type(row))
    return {attr.columns[0].name: getattr(row, attr.key) for attr in mapper.column_attrs}
