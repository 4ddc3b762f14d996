"""A batch of rows as ONE multi-row `INSERT … ON CONFLICT (…) DO NOTHING [RETURNING …]`.

- Postgres: `INSERT INTO t (…) SELECT … FROM jsonb_to_recordset(:rows) AS r(col TYPE, …)
  ON CONFLICT …`: the batch travels as one JSON document (encoded in C by the json module), so
  the statement text is the same for 1 or 5,000 rows and psycopg has one parameter to send. A
  `VALUES (…), (…), …` list of 500 rows × 20 columns, or one array per column, costs more to
  build, escape and parse on the client than the server takes to insert the rows.
- SQLite: SQLAlchemy's multi-row `VALUES` (the SQLite driver binds in C).

Rows are dicts with the same keys (column names). Values: None, str, int, float, bool, aware
datetimes (a naive one is refused, as `UTCDateTime` refuses it), dates, Decimal, and dict/list
for JSON columns; None in a JSON column is SQL NULL on both dialects. RETURNING gives the
inserted rows only (a conflicting row returns nothing), in no set order: return a key column
to match them up.

`conflict=None`, for a table where nothing can conflict (no unique key but the id), leaves ON
CONFLICT out: SQLAlchemy caches the compiled statement then, where it compiles a dialect's
ON CONFLICT insert anew at every call (about 1 ms on Postgres).
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable, Sequence
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    JSON,
    Column,
    ColumnElement,
    Row,
    Table,
    Text,
    TextClause,
    bindparam,
    cast,
    column,
    func,
    insert,
    null,
    select,
)
from sqlalchemy.dialects import postgresql
from sqlalchemy.orm import Session

from faithflow_ops.db import upsert_insert


def insert_rows(
    session: Session,
    table: Table,
    rows: Sequence[dict[str, Any]],
    *,
    conflict: Sequence[str] | None,
    returning: Sequence[Column[Any]] = (),
    update: Callable[[Any], dict[str, Any]] | None = None,
    conflict_where: ColumnElement[bool] | TextClause | None = None,
) -> list[Row[Any]]:
    """Insert `rows` into `table`, skipping those that conflict on the unique `conflict`
    columns (an empty list: any unique constraint; None: no ON CONFLICT, see above); the
    RETURNING rows of the ones inserted (empty without `returning`). With `update` a
    conflicting row is updated instead (`ON CONFLICT … DO UPDATE SET update(excluded)`,
    `conflict_where`: the predicate of a partial unique index) and RETURNING gives the updated
    rows too."""
    if not rows:
        return []
    if conflict is None and update is not None:
        raise ValueError("update= needs the conflict columns it updates on")
    dialect = session.get_bind().dialect
    names = list(rows[0])

    def insert_into() -> Any:
        if conflict is None:
            return insert(table)
        stmt = upsert_insert(dialect.name, table)
        if update is None:
            return stmt.on_conflict_do_nothing(index_elements=list(conflict) or None)
        return stmt.on_conflict_do_update(
            index_elements=list(conflict), index_where=conflict_where, set_=update(stmt.excluded)
        )

    if dialect.name != "postgresql":
        # a JSON column takes None as a JSON null; null() is SQL NULL, as on Postgres
        json_names = [name for name in names if isinstance(table.c[name].type, JSON)]
        params = [
            {**row, **{name: null() for name in json_names if row[name] is None}} for row in rows
        ]
        stmt = insert_into()
        if returning:
            return list(session.execute(stmt.returning(*returning), params).all())
        session.execute(stmt, params)
        return []
    doc = json.dumps(rows, default=_jsonable, separators=(",", ":"))
    records = (
        func.jsonb_to_recordset(cast(bindparam("rows", doc, type_=Text()), postgresql.JSONB()))
        .table_valued(*(column(name, table.c[name].type) for name in names), name="r")
        .render_derived(with_types=True)
    )
    stmt = insert_into().from_select(names, select(*(records.c[name] for name in names)))
    if returning:
        return list(session.execute(stmt.returning(*returning)).all())
    session.execute(stmt)
    return []


def _jsonable(value: Any) -> Any:
    if isinstance(value, dt.datetime):
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value!r}: pass a timezone-aware UTC value")
        return value.isoformat()
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    raise TypeError(f"{type(value).__name__} {value!r} cannot be sent in a row batch")
