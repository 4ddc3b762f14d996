"""A database outage in the middle of a run is the run failing (exit 1, `failure: internal`),
not a usage or configuration error (exit 2) — even when the run's closing write fails too."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from faithflow_ops.db import Database
from faithflow_ops.jobs import runner, subs_backfill
from faithflow_ops.jobs.base import Action, JobContext


def _gone() -> OperationalError:
    return OperationalError(
        "SELECT 1", {}, ConnectionError("server closed the connection unexpectedly")
    )


@pytest.fixture
def outage(monkeypatch: pytest.MonkeyPatch) -> dict[str, bool]:
    """Once the job's plan starts, every new write session fails like a dead server."""
    state = {"down": False}
    real = Database.session

    @contextlib.contextmanager
    def session(self: Database) -> Iterator[Session]:
        if state["down"]:
            raise _gone()
        with real(self) as s:
            yield s

    def plan(session: Session, ctx: JobContext) -> Iterator[Action]:
        state["down"] = True
        raise _gone()
        yield  # pragma: no cover - a generator

    monkeypatch.setattr(runner, "FINISH_RETRY_WAITS", (0.0, 0.0))
    monkeypatch.setattr(Database, "session", session)
    monkeypatch.setattr(subs_backfill.JOB, "plan", plan)
    return state


def test_an_outage_mid_run_exits_1_not_2(db: Database, cli: Any, outage: dict[str, bool]) -> None:
    result = cli("subs", "backfill", "--now", "2026-03-01T09:00:00Z", "--json")
    assert outage["down"]
    assert result.exit_code == 1, result.output
    doc = json.loads(result.stdout)
    assert doc["status"] == "failed"
    assert doc["failure"] == "internal"
    assert "database" in doc["error"]
    assert "Traceback" not in result.stderr
