"""`GET /readyz` (issue 16): answers within 2 s even when the database hangs, says ready only
when the database answers AND is at the head revision, and never tells the caller the host or
the driver's error (those go to the log)."""

from __future__ import annotations

from pathlib import Path

import httpx
from fakes.blackhole import blackhole
from helpers import running

from faithflow_ops.config import Settings
from faithflow_ops.db import Database
from faithflow_ops.migrate import upgrade
from receiver.app import create_app


def test_readyz_answers_503_fast_when_the_database_never_answers() -> None:
    with blackhole() as (host, port):
        url = f"postgresql+psycopg://root@{host}:{port}/hangs"
        app = create_app(Settings(database_url=url, webhook_worker=False))
        with running(app) as base:
            # a client timeout of 5 s: the answer must come well before it
            response = httpx.get(base + "/readyz", timeout=5)
            again = httpx.get(base + "/readyz", timeout=5)  # a probe still in flight
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
