"""audit.record / record_many: what lands in audit_log, on SQLite and Postgres."""

from __future__ import annotations

from typing import Any

from sqlalchemy import event, select, text
from sqlalchemy.engine.default import CACHE_HIT

from faithflow_ops import audit
from faithflow_ops.db import Database
from faithflow_ops.models import AuditLog


def test_one_entry_is_stored_whole_and_its_empty_values_are_sql_null(db: Database) -> None:
    with db.session() as session:
        audit.record(
            session, actor="cli:ops@host", action="plan.add", entity_type="plan", entity_id=7,
            after={"code": "growth", "note": None},
        )  # fmt: skip
        audit.record_many(
            session,
            [
                audit.audit_row(actor="job:x", action="plan.edit", entity_type="plan", entity_id=n)
                for n in (8, 9)
            ],
        )
    with db.read_session() as session:
        first = session.scalars(select(AuditLog).order_by(AuditLog.id)).first()
        assert first is not None
        assert (first.actor, first.action, first.entity_type, first.entity_id) == (
            "cli:ops@host", "plan.add", "plan", "7",
        )  # fmt: skip
        assert first.after == {"code": "growth", "note": None}
        assert first.tenant_id is None and first.at is not None
        # no before: SQL NULL, not a JSON null (Postgres stored it so already)
        assert session.scalar(text("SELECT before IS NULL FROM audit_log WHERE entity_id = '7'"))
        assert session.scalar(select(AuditLog.id).where(AuditLog.entity_id == "9")) is not None
        # in a batch too
        assert (
            session.scalar(
                text("SELECT count(*) FROM audit_log WHERE before IS NULL AND after IS NULL")
            )
            == 2
        )


def test_a_single_entry_reuses_its_compiled_statement(db: Database) -> None:
    """Every interactive change writes one audit row: its INSERT must come from SQLAlchemy's
    statement cache, not be compiled again at each call (a dialect's ON CONFLICT insert is).
    So must a batch's."""
    hits: list[Any] = []

    def seen(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if statement.lstrip().startswith("INSERT INTO audit_log"):
            hits.append(args[-2].cache_hit)  # the execution context

    event.listen(db.engine, "after_cursor_execute", seen)
    for n in range(3):
        with db.session() as session:
            audit.record(session, actor="t", action="a.b", entity_type="e", entity_id=n)
    assert len(hits) == 3
    assert hits[1:] == [CACHE_HIT, CACHE_HIT], hits
    for n in range(2):  # a batch's statement too
        with db.session() as session:
            rows = [audit.audit_row(actor="t", action="a.b", entity_type="e", entity_id=n)] * 3
            audit.record_many(session, rows)
    assert hits[-1] == CACHE_HIT, hits
