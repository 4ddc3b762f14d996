"""Rows as plain documents keyed by column name (what `--json` prints and the audit log keeps)."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import inspect

from faithflow_ops.models import Base


def column_values(row: Base) -> dict[str, Any]:
    """Every column of a row, keyed by its column name (`metadata`, not `metadata_`)."""
    mapper = inspect(type(row))
    return {attr.columns[0].name: getattr(row, attr.key) for attr in mapper.column_attrs}


def jsonable(doc: dict[str, Any]) -> dict[str, Any]:
    """The same document with datetimes as ISO-8601 text, ready for a JSON column."""
    return {k: v.isoformat() if isinstance(v, dt.datetime) else v for k, v in doc.items()}
