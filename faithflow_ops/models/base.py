"""Declarative base, naming convention and the timestamp columns every table carries."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import Index, MetaData, TextClause, text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from faithflow_ops.db import UTCDateTime, utc_now_default, utcnow

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class CreatedAt:
    created_at: Mapped[dt.datetime] = mapped_column(
        UTCDateTime(), default=utcnow, server_default=utc_now_default()
    )


class Timestamps(CreatedAt):
    updated_at: Mapped[dt.datetime] = mapped_column(
        UTCDateTime(), default=utcnow, onupdate=utcnow, server_default=utc_now_default()
    )


def in_list(column: str, values: tuple[str, ...]) -> str:
    """SQL for a CHECK that `column` holds one of `values`: `status IN ('a', 'b')`."""
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


def partial_index(name: str, *columns: Any, where: str | TextClause, unique: bool = False) -> Index:
    """An index over the rows matching `where`, the same on Postgres and SQLite (both support
    partial indexes; each dialect reads its own keyword)."""
    clause = text(where) if isinstance(where, str) else where
    return Index(name, *columns, unique=unique, postgresql_where=clause, sqlite_where=clause)
