"""Keyset paging for the retention batches: each batch is a key range (`id > last`), so a run
that stops anywhere resumes where it stopped without a cursor table."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from sqlalchemy import Select
from sqlalchemy.orm import Session


def key_pages(
    session: Session, query: Select[tuple[int]], key: Any, batch: int
) -> Iterator[tuple[int, int, int]]:
    """(first key, last key, rows) of each batch: keyset paging, no cursor table."""
    last: int | None = None
    while True:
        page = query if last is None else query.where(key > last)
        keys = list(session.scalars(page.order_by(key).limit(batch)))
        if not keys:
            return
        yield keys[0], keys[-1], len(keys)
        if len(keys) < batch:
            return
        last = keys[-1]
