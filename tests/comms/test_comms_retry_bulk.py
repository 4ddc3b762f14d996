"""`comms retry --status S [--since …] [--dry-run] [--yes]`: requeue many messages at once (after
a crash left some `unknown`), first showing which of them might have been delivered."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

from sqlalchemy import select, update

from faithflow_ops.comms.outbox import enqueue
from faithflow_ops.db import Database
from faithflow_ops.models import AuditLog, OutboundMessage

NOW = dt.datetime(2026, 3, 1, 9, 0, tzinfo=dt.UTC)


def _message(db: Database, n: int, status: str, ago: dt.timedelta, **values: Any) -> int:
    with db.session() as session:
        result = enqueue(
            session,
            channel="email",
            recipient=f"member{n}@church.example",
            template="notice",
            variables={"subject": "Notice", "message": "Service moved to 10am"},
            idempotency_key=f"bulk:{n}",
            now=NOW - dt.timedelta(days=10),
        )
        session.execute(
            update(OutboundMessage)
            .where(OutboundMessage.id == result.id)
            .values(status=status, updated_at=NOW - ago, attempts=1, **values)
        )
    return result.id


def _world(db: Database) -> dict[str, int]:
    return {
        "accepted": _message(
            db,
            1,
            "unknown",
            dt.timedelta(hours=2),
            provider_message_id="SM123",
            last_error="outcome unknown: lease ended",
        ),
        "silent": _message(
            db, 2, "unknown", dt.timedelta(hours=3), last_error="outcome unknown: lease ended"
        ),
        "old": _message(db, 3, "unknown", dt.timedelta(days=3)),
        "failed": _message(db, 4, "failed", dt.timedelta(hours=1), last_error="smtp refused"),
        "sent": _message(db, 5, "sent", dt.timedelta(hours=1)),
    }


def _statuses(db: Database) -> dict[int, str]:
    with db.read_session() as session:
        return dict(session.execute(select(OutboundMessage.id, OutboundMessage.status)).all())


def test_dry_run_shows_what_might_have_been_delivered_and_changes_nothing(
    db: Database, cli: Any
) -> None:
    ids = _world(db)
    before = _statuses(db)
    args = ("comms", "retry", "--status", "unknown", "--since", "24h", "--now", NOW.isoformat())
    result = cli(*args, "--dry-run", "--json")
    assert result.exit_code == 0, result.stderr
    doc = json.loads(result.stdout)
    assert doc["dry_run"] is True
    rows = {m["id"]: m for m in doc["messages"]}
    assert set(rows) == {ids["accepted"], ids["silent"]}  # not the one from 3 days ago
    assert rows[ids["accepted"]]["provider_message_id"] == "SM123"
    assert rows[ids["accepted"]]["maybe_delivered"].startswith("likely")
    assert rows[ids["silent"]]["maybe_delivered"].startswith("maybe")
    assert rows[ids["silent"]]["last_attempt"] == (NOW - dt.timedelta(hours=3)).isoformat()
    assert all(m["requeued"] is False for m in doc["messages"])
    assert _statuses(db) == before

    table = cli(*args, "--dry-run")
    assert table.exit_code == 0, table.stderr
    assert "SM123" in table.stdout and "likely" in table.stdout
    assert "would requeue 2" in table.stderr and "nothing changed" in table.stderr


def test_requeue_needs_confirmation_and_yes_requeues_them(db: Database, cli: Any) -> None:
    ids = _world(db)
    args = ("comms", "retry", "--status", "unknown", "--since", "24h", "--now", NOW.isoformat())
    refused = cli(*args)  # no terminal to ask on, no --yes: refused, nothing changed
    assert refused.exit_code == 2
    assert "--yes" in refused.stderr
    assert _statuses(db)[ids["silent"]] == "unknown"

    declined = cli(*args, input="n\n")
    assert _statuses(db)[ids["silent"]] == "unknown", declined.stderr

    done = cli(*args, "--yes")
    assert done.exit_code == 0, done.stderr
    assert "requeued 2" in done.stderr
    statuses = _statuses(db)
    assert statuses[ids["accepted"]] == statuses[ids["silent"]] == "queued"
    assert statuses[ids["old"]] == "unknown"
    assert statuses[ids["failed"]] == "failed" and statuses[ids["sent"]] == "sent"
    with db.read_session() as session:
        audited = session.scalars(
            select(AuditLog.entity_id).where(AuditLog.action == "comms.retry")
        ).all()
    assert sorted(audited) == sorted(str(ids[k]) for k in ("accepted", "silent"))


def test_bulk_retry_bad_input_exits_2(db: Database, cli: Any) -> None:
    _world(db)
    for args, said in [
        (("--status", "sent", "--yes"), "--status"),
        (("1", "--status", "unknown"), "either"),
        ((), "ID or --status"),
        (("--since", "24h"), "--status"),
        (("--status", "unknown", "--since", "yesterday"), "--since"),
    ]:
        result = cli("comms", "retry", *args)
        assert result.exit_code == 2, (args, result.stderr)
        assert said in result.stderr, (args, result.stderr)
        assert "Traceback" not in result.stderr
    assert set(_statuses(db).values()) == {"unknown", "failed", "sent"}


def test_nothing_to_requeue_says_so(db: Database, cli: Any) -> None:
    result = cli("comms", "retry", "--status", "failed", "--yes", "--now", NOW.isoformat())
    assert result.exit_code == 0, result.stderr
    assert "no failed messages" in result.stderr
