"""`GET /readyz` (issue 16): answers within FAITHFLOW_READY_TIMEOUT (1.5 s) even when the
database hangs, says ready only when the database answers AND is at the head revision, and
never tells the caller the host or the driver's error (those go to the log)."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
from fakes.blackhole import blackhole
from helpers import running
from structlog.testing import capture_logs

from faithflow_ops.config import Settings
from faithflow_ops.db import Database
from faithflow_ops.migrate import upgrade
from receiver.app import create_app


def test_readyz_answers_503_fast_when_the_database_never_answers() -> None:
    """Within FAITHFLOW_READY_TIMEOUT (here 0.2 s, default 1.5 s): the client's 5 s timeout
    would fail the test if the probe waited on the database instead."""
    with blackhole() as (host, port), capture_logs() as logs:
        url = f"postgresql+psycopg://root@{host}:{port}/hangs"
        app = create_app(Settings(database_url=url, webhook_worker=False, ready_timeout=0.2))
        with running(app) as base:
            started = time.monotonic()
            response = httpx.get(base + "/readyz", timeout=5)
            waited = time.monotonic() - started
            again = httpx.get(base + "/readyz", timeout=5)  # a probe still in flight
    # the deadline was waited out (the database never answered), and it was ours, not the 5 s
    # of the client or the driver's connect timeout
    assert 0.2 <= waited < 4, waited
    timed_out = [e for e in logs if e["event"] == "not ready: database did not answer"]
    assert timed_out and {e["seconds"] for e in timed_out} == {0.2}
    assert response.status_code == 503
    assert response.json() == {"error": "not ready", "detail": "database unavailable"}
    assert again.status_code == 503
    assert host not in response.text and str(port) not in response.text


def test_readyz_is_503_on_an_unmigrated_database(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'empty.db'}"
    db = Database.from_url(url)
    try:
        db.ping()  # it answers, but has no schema
        with running(create_app(Settings(database_url=url, webhook_worker=False), db=db)) as base:
            response = httpx.get(base + "/readyz", timeout=5)
            assert response.status_code == 503
            assert response.json() == {"error": "not ready", "detail": "database not at head"}
            upgrade(db.engine)
            ready = httpx.get(base + "/readyz", timeout=5)
        assert ready.status_code == 200
        assert ready.json() == {"status": "ready", "database": "sqlite"}
    finally:
        db.dispose()
