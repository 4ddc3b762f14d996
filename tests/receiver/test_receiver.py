"""The receiver over real HTTP: uvicorn on a loopback port, httpx as the client."""

from __future__ import annotations

import datetime as dt
import io
import json
import logging
import socket
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest
from helpers import running
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from faithflow_ops.config import Settings
from faithflow_ops.db import Database
from faithflow_ops.errors import ConfigError
from faithflow_ops.jobs import locks, registry
from faithflow_ops.jobs.base import Action, Job, JobContext
from faithflow_ops.jobs.registry import JobSpec
from faithflow_ops.logging import configure
from faithflow_ops.models import JobRun
from faithflow_ops.providers._http import ProviderError
from receiver.app import create_app

KEY = "ffk_test_5eCr3t-integration-key"

# A job this module controls; JobSpec.load() imports this module and takes JOB.
FAKE = JobSpec(
    name="fake_sweep",
    summary="Touch three items",
    cli_group="test",
    cli_verb="sweep",
    task_path="/tasks/test/sweep",
    schedule="0 3 29 2 *",  # 29 February: never fires during a test
    module=__name__,
)


class FakeSweep(Job):
    """Plans three actions; can block inside plan, fail one action, or fail the whole run."""

    name = FAKE.name

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.gate: threading.Event | None = None
        self.entered = threading.Event()
        self.fail_target: str | None = None
        self.fail_every: Exception | None = None  # every action raises this
        self.crash = False
        self.planned = 0

    def plan(self, session: Session, ctx: JobContext) -> Iterator[Action]:
        self.planned += 1
        self.entered.set()
        if self.gate is not None:
            assert self.gate.wait(10)
        if self.crash:
            raise RuntimeError("plan exploded")
        for i in range(3):
            reason = f"due at {ctx.now.isoformat()}"
            yield Action("touch", f"item:{i}", reason, {"actor": ctx.actor})

    def apply(self, session: Session, ctx: JobContext, action: Action) -> None:
        if self.fail_every is not None:
            raise self.fail_every
        if action.target == self.fail_target:
            raise ValueError("cannot touch this one")


JOB = FakeSweep()


@pytest.fixture(autouse=True)
def _reset_job() -> None:
    JOB.reset()


# --- a real server -----------------------------------------------------------------------------


def settings_for(url: str, **overrides: Any) -> Settings:
    return Settings(database_url=url, integration_api_key=KEY, **overrides)


@pytest.fixture
def base_url(sqlite_db: Database) -> Iterator[str]:
    app = create_app(settings_for(str(sqlite_db.engine.url)), db=sqlite_db, jobs=[FAKE])
    with running(app) as url:
        yield url


@pytest.fixture
def served(db: Database, db_url: str) -> Iterator[tuple[str, Database]]:
    """The receiver over the `db` fixture: every test using it runs on SQLite and Postgres."""
    app = create_app(settings_for(db_url), db=db, jobs=[FAKE])
    with running(app) as url:
        yield url, db


def run_rows(db: Database) -> list[JobRun]:
    with db.read_session() as session:
        return list(session.scalars(select(JobRun).order_by(JobRun.id)))


def post_task(
    url: str,
    body: Any = None,
    *,
    content: bytes | None = None,
    headers: dict[str, str] | None = None,
) -> httpx.Response:
    return httpx.post(
        url + FAKE.task_path,
        json=body if content is None and body is not None else None,
        content=content,
        headers={"Authorization": f"Bearer {KEY}"} if headers is None else headers,
        timeout=30,
    )


# --- health, docs, metrics ---------------------------------------------------------------------


def test_healthz_answers_ok(base_url: str) -> None:
    response = httpx.get(base_url + "/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


def test_readyz_is_ready_when_the_database_answers(served: tuple[str, Database]) -> None:
    url, db = served
    response = httpx.get(url + "/readyz")
    assert response.status_code == 200
    assert response.json() == {"status": "ready", "database": db.dialect}


def test_readyz_is_503_when_the_database_is_unreachable() -> None:
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    app = create_app(settings_for(f"postgresql+psycopg://root@127.0.0.1:{port}/nowhere"))
    with running(app) as url:
        response = httpx.get(url + "/readyz", timeout=30)
        assert httpx.get(url + "/healthz").status_code == 200  # alive, just not ready
        task = httpx.post(
            url + "/tasks/subscriptions/metadata-backfill", timeout=30, headers={"X-API-Key": KEY}
        )
    assert response.status_code == 503
    # the caller learns only that; the host and the driver's error go to the log
    assert response.json() == {"error": "not ready", "detail": "database unavailable"}
    # A task call cannot take its lock: 503, so a caller retries later.
    assert task.status_code == 503
    assert task.json() == {"error": "database unavailable; try again later", "detail": None}


def test_docs_serve_the_openapi_ui_and_list_every_task(base_url: str) -> None:
    response = httpx.get(base_url + "/docs", follow_redirects=False)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    assert "<html" in response.text.lower()
    schema = httpx.get(base_url + "/docs/openapi.json").json()
    operation = schema["paths"][FAKE.task_path]["post"]
    assert set(operation["requestBody"]["content"]["application/json"]["schema"]["properties"]) == {
        "dry_run",
        "now",
        "limit",
    }
    assert {"409", "401", "503"} <= set(operation["responses"])


def test_metrics_are_prometheus_text_and_count_requests_and_runs(base_url: str) -> None:
    def scrape() -> str:
        response = httpx.get(base_url + "/metrics")
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/plain; version=")
        return response.text

    def sample(text: str, prefix: str) -> float:
        for line in text.splitlines():
            if line.startswith(prefix):
                return float(line.rsplit(" ", 1)[1])
        return 0.0

    healthz = 'faithflow_http_requests_total{method="GET",route="/healthz",status="200"}'
    runs = 'faithflow_job_runs_total{job_name="fake_sweep",status="succeeded",trigger="http"}'
    before = scrape()
    httpx.get(base_url + "/healthz")
    httpx.get(base_url + "/healthz")
    assert post_task(base_url, {"dry_run": True}).status_code == 200
    after = scrape()
    assert sample(after, healthz) == sample(before, healthz) + 2
    assert sample(after, runs) == sample(before, runs) + 1
    assert "faithflow_http_request_duration_seconds_bucket" in after


def test_unknown_route_and_wrong_method_answer_json(base_url: str) -> None:
    missing = httpx.get(base_url + "/nope")
    assert missing.status_code == 404
    assert missing.json()["error"]
    wrong = httpx.get(base_url + FAKE.task_path, headers={"X-API-Key": KEY})
    assert wrong.status_code == 405
    assert wrong.json()["error"]


# --- task auth ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "headers",
    [{"Authorization": f"Bearer {KEY}"}, {"authorization": f"bearer {KEY}"}, {"X-API-Key": KEY}],
    ids=["bearer", "bearer-lowercase", "x-api-key"],
)
def test_task_runs_with_a_valid_key(served: tuple[str, Database], headers: dict[str, str]) -> None:
    url, db = served
    response = post_task(url, content=b"", headers=headers)  # empty body: all defaults
    assert response.status_code == 200, response.text
    assert response.headers["x-job-status"] == "succeeded"
    doc = response.json()
    assert doc["job"] == "fake_sweep"
    assert doc["status"] == "succeeded"
    assert doc["dry_run"] is False
    assert doc["counts"] == {"touch": 3}
    assert doc["outcomes"] == {"applied": 3}
    assert [a["outcome"] for a in doc["actions"]] == ["applied"] * 3
    assert doc["actions"][0]["data"] == {"actor": "http"}
    [row] = run_rows(db)
    assert (row.id, row.trigger, row.status, row.dry_run) == (
        doc["run_id"],
        "http",
        "succeeded",
        False,
    )


@pytest.mark.parametrize(
    ("headers", "reason"),
    [
        ({}, "missing API key"),
        ({"Authorization": "Bearer"}, "missing API key"),
        ({"Authorization": f"Basic {KEY}"}, "missing API key"),
        ({"Authorization": "Bearer wrong-key"}, "invalid API key"),
        ({"X-API-Key": KEY[:-1]}, "invalid API key"),
        ({"X-API-Key": KEY + "x"}, "invalid API key"),
    ],
    ids=["none", "empty-bearer", "basic-scheme", "wrong-bearer", "short-x-api-key", "long-key"],
)
def test_missing_or_wrong_key_is_401(
    base_url: str, sqlite_db: Database, headers: dict[str, str], reason: str
) -> None:
    response = post_task(base_url, {"dry_run": True}, headers=headers)
    assert response.status_code == 401
    assert response.headers["www-authenticate"].startswith("Bearer")
    assert response.json()["error"].startswith(reason)
    assert "X-API-Key" in response.json()["error"]  # says how to authenticate
    assert run_rows(sqlite_db) == []


def test_no_key_configured_disables_every_task(sqlite_db: Database) -> None:
    cfg = Settings(database_url=str(sqlite_db.engine.url), integration_api_key=None)
    with running(create_app(cfg, db=sqlite_db, jobs=[FAKE])) as url:
        for headers in ({}, {"Authorization": "Bearer"}, {"X-API-Key": "anything"}):
            response = post_task(url, {"dry_run": True}, headers=headers)
            assert response.status_code == 503
            assert response.json() == {
                "error": "task endpoints are disabled: INTEGRATION_API_KEY is not set",
                "detail": None,
            }
    assert run_rows(sqlite_db) == []


def test_the_api_key_is_never_logged(base_url: str) -> None:
    stream = io.StringIO()
    root = logging.getLogger()
    saved = root.handlers[:]
    configure("json", stream=stream)
    try:
        post_task(base_url, {"dry_run": True})
        post_task(base_url, {"dry_run": True}, headers={"X-API-Key": KEY})
        post_task(base_url, {"dry_run": True}, headers={"Authorization": f"Bearer {KEY}x"})
        # The request line is written once the response has gone: wait for all three.
        deadline = time.monotonic() + 60  # a bound for a failure, not a wait
        while stream.getvalue().count('"event": "request"') < 3:
            assert time.monotonic() < deadline
            time.sleep(0.01)
    finally:
        root.handlers[:] = saved
    out = stream.getvalue()
    events = [json.loads(line)["event"] for line in out.splitlines()]
    assert "job run" in events and "task call refused" in events
    assert KEY not in out


# --- task body ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("content", "field", "says"),
    [
        (b"{not json", None, "not valid JSON"),
        (b"[1, 2]", None, "must be a JSON object, not array"),
        (b'"dry_run"', None, "must be a JSON object, not string"),
        (b"null", None, "must be a JSON object, not null"),
        (b'{"dry_run": "yes"}', "dry_run", "dry_run must be true or false"),
        (b'{"dry_run": 1}', "dry_run", "dry_run must be true or false"),
        (b'{"now": "yesterday"}', "now", "now must be an ISO-8601 time"),
        (b'{"now": ""}', "now", "now must be an ISO-8601 time"),
        (b'{"now": 1767225600}', "now", "now must be an ISO-8601 time"),
        # one rule with --now (issue 16): the CLI refused these, the task ran and crashed
        (b'{"now": "9999-12-31T23:59:59Z"}', "now", "is out of range; give a time from 1970"),
        (b'{"now": "0001-01-01T00:00:00Z"}', "now", "is out of range; give a time from 1970"),
        (b"[" * 5000 + b"]" * 5000, None, "not valid JSON (nested too deeply)"),
        (b'{"limit": 0}', "limit", "limit must be a whole number from 1 to 1,000,000,000"),
        (b'{"limit": -5}', "limit", "limit must be a whole number from 1 to 1,000,000,000"),
        (b'{"limit": "10"}', "limit", "limit must be a whole number from 1 to 1,000,000,000"),
        (b'{"limit": 2.5}', "limit", "limit must be a whole number from 1 to 1,000,000,000"),
        (
            b'{"limit": true}',
            "limit",
            "limit must be a whole number from 1 to 1,000,000,000, not true",
        ),
        (b'{"limit": 99999999999999999999}', "limit", "from 1 to 1,000,000,000, not 9999"),
        (b'{"limit": "' + b"9" * 500 + b'"}', "limit", "9999..."),  # echoes 60 chars at most
        (b'{"dryRun": true}', "dryRun", "unknown field 'dryRun'; the fields are dry_run, now"),
    ],
)
def test_bad_body_is_400_naming_the_field(
    base_url: str, sqlite_db: Database, content: bytes, field: str | None, says: str
) -> None:
    response = post_task(
        base_url, content=content, headers={"X-API-Key": KEY, "Content-Type": "application/json"}
    )
    assert response.status_code == 400
    doc = response.json()
    assert says in doc["error"]
    assert doc["detail"]["field"] == field
    assert "dry_run" in doc["detail"]["example"]  # shows a body that works
    assert run_rows(sqlite_db) == []  # nothing ran


def test_body_over_the_limit_is_413(base_url: str, sqlite_db: Database) -> None:
    body = b'{"dry_run": true, "pad": "' + b"x" * (256 * 1024) + b'"}'
    response = post_task(base_url, content=body)
    assert response.status_code == 413
    assert response.json()["detail"] == {"limit": 256 * 1024}
    assert run_rows(sqlite_db) == []
    # A body just under the limit reaches the validator (and is refused for its field).
    near = b'{"pad": "' + b"x" * (256 * 1024 - 20) + b'"}'
    assert post_task(base_url, content=near).status_code == 400


def test_dry_run_is_a_preview_recorded_as_such(served: tuple[str, Database]) -> None:
    url, db = served
    response = post_task(url, {"dry_run": True, "limit": 2})
    assert response.status_code == 200
    doc = response.json()
    assert doc["dry_run"] is True
    assert doc["counts"] == {"touch": 2}  # limit honoured
    assert "outcomes" not in doc
    assert all("outcome" not in a for a in doc["actions"])
    [row] = run_rows(db)
    assert (row.dry_run, row.trigger, row.status, row.counts) == (
        True,
        "http",
        "succeeded",
        {"touch": 2},
    )


def test_now_in_the_body_is_the_jobs_clock(served: tuple[str, Database]) -> None:
    url, db = served
    response = post_task(url, {"dry_run": True, "now": "2026-03-01T10:00:00+01:00"})
    doc = response.json()
    assert doc["now"] == "2026-03-01T09:00:00+00:00"
    assert doc["actions"][0]["reason"] == "due at 2026-03-01T09:00:00+00:00"
    [row] = run_rows(db)
    assert row.now == dt.datetime(2026, 3, 1, 9, tzinfo=dt.UTC)


# --- lock, partial, failed ---------------------------------------------------------------------


def test_a_held_lock_answers_409_with_the_holder(served: tuple[str, Database]) -> None:
    url, db = served
    assert locks.acquire(db, FAKE.name, "cron-box:4242", 600) is None
    response = post_task(url, {"dry_run": True})
    assert response.status_code == 409
    assert response.headers["x-job-status"] == "skipped"
    doc = response.json()
    assert doc["status"] == "skipped"
    assert doc["lock"]["holder"] == "cron-box:4242"
    assert "already running" in doc["error"]
    assert JOB.planned == 0
    [row] = run_rows(db)
    assert (row.status, row.trigger) == ("skipped", "http")


def test_two_concurrent_calls_one_runs_the_other_gets_409(served: tuple[str, Database]) -> None:
    url, db = served
    JOB.gate = threading.Event()
    with ThreadPoolExecutor(1) as pool:
        first = pool.submit(post_task, url, {})
        assert JOB.entered.wait(10)  # the first run holds the lock, waiting inside plan
        second = post_task(url, {})
        JOB.gate.set()
        first_response = first.result(timeout=30)
    assert second.status_code == 409
    assert first_response.status_code == 200
    assert first_response.json()["status"] == "succeeded"
    assert sorted(r.status for r in run_rows(db)) == ["skipped", "succeeded"]
    assert locks.current(db, FAKE.name) is None  # released


def test_a_partial_run_is_200_and_says_partial(served: tuple[str, Database]) -> None:
    url, _ = served
    JOB.fail_target = "item:1"
    response = post_task(url, {})
    assert response.status_code == 200
    assert response.headers["x-job-status"] == "partial"
    doc = response.json()
    assert doc["status"] == "partial"
    assert doc["outcomes"] == {"applied": 2, "failed": 1}
    failed = [a for a in doc["actions"] if a["outcome"] == "failed"]
    assert failed[0]["target"] == "item:1" and "cannot touch" in failed[0]["error"]


def test_a_failed_run_is_500_with_the_job_json(served: tuple[str, Database]) -> None:
    url, db = served
    JOB.crash = True
    response = post_task(url, {})
    assert response.status_code == 500
    doc = response.json()
    assert doc["status"] == "failed"
    assert doc["error"] == "RuntimeError: plan exploded"
    [row] = run_rows(db)
    assert row.status == "failed"
    assert locks.current(db, FAKE.name) is None


def test_every_action_failing_at_a_provider_is_502(served: tuple[str, Database]) -> None:
    # an outside service refused every action: not our bug (DESIGN §4), and found by the
    # OpenAPI property run as a 500 for `disputes monitor` against a refusing Stripe
    url, _ = served
    JOB.fail_every = ProviderError("stripe", "list disputes", "refused (HTTP 404)", status=404)
    response = post_task(url, {})
    assert response.status_code == 502
    doc = response.json()
    assert doc["status"] == "failed" and doc["failure"] == "provider"
    assert "every action failed (3 of 3)" in doc["error"]


def test_every_action_failing_for_our_own_reason_is_500(served: tuple[str, Database]) -> None:
    url, _ = served
    JOB.fail_every = ValueError("cannot touch this one")
    response = post_task(url, {})
    assert response.status_code == 500
    doc = response.json()
    assert doc["status"] == "failed" and doc["failure"] == "internal"


# --- routes come from the registry; the scheduler lives with the app --------------------------


def test_task_routes_are_generated_from_the_registry(sqlite_db: Database) -> None:
    app = create_app(settings_for(str(sqlite_db.engine.url)), db=sqlite_db)
    paths = {route.path for route in app.routes}
    assert {spec.task_path for spec in registry.JOBS} <= paths


def test_internal_scheduler_runs_for_the_life_of_the_app(
    sqlite_db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(registry, "JOBS", (FAKE,))
    cfg = settings_for(str(sqlite_db.engine.url), enable_internal_scheduler=True)
    app = create_app(cfg, db=sqlite_db, jobs=[FAKE])
    with running(app) as url:
        assert httpx.get(url + "/healthz").status_code == 200
        thread = app.state.scheduler_thread
        assert thread.is_alive() and thread.name == "faithflow-scheduler"
    assert not thread.is_alive()


def test_invalid_cron_override_stops_the_app_from_being_built(sqlite_db: Database) -> None:
    cfg = settings_for(
        str(sqlite_db.engine.url),
        enable_internal_scheduler=True,
        cron_overrides={"SUBSCRIPTION_METADATA_BACKFILL": "61 * * * *"},
    )
    with pytest.raises(ConfigError, match=r"CRON_SUBSCRIPTION_METADATA_BACKFILL='61 \* \* \* \*'"):
        create_app(cfg, db=sqlite_db)
    # Without the scheduler the expression is never used, so it does not stop the receiver.
    create_app(
        settings_for(str(sqlite_db.engine.url), cron_overrides=cfg.cron_overrides), db=sqlite_db
    )


def test_database_rows_written_by_a_task_have_one_run_each(served: tuple[str, Database]) -> None:
    url, db = served
    for _ in range(3):
        assert post_task(url, {"dry_run": True}).status_code == 200
    with db.read_session() as session:
        assert session.scalar(select(func.count()).select_from(JobRun)) == 3
