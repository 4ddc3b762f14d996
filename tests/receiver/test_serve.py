"""`faithflow serve`: settings are checked before anything listens; the real command serves."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn

from faithflow_ops.db import Database


@pytest.fixture
def uvicorn_calls(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """Replace uvicorn.run: record how serve would start the server, never listen."""
    monkeypatch.delenv("PORT", raising=False)  # a developer's own $PORT must not leak in
    calls: list[dict[str, Any]] = []

    def fake_run(app: Any, **kwargs: Any) -> None:
        calls.append({"app": app, **kwargs})

    monkeypatch.setattr(uvicorn, "run", fake_run)
    return calls


def test_invalid_cron_with_the_internal_scheduler_exits_2_naming_the_variable(
    cli: Any, monkeypatch: pytest.MonkeyPatch, uvicorn_calls: list[dict[str, Any]]
) -> None:
    monkeypatch.setenv("ENABLE_INTERNAL_SCHEDULER", "1")
    monkeypatch.setenv("CRON_SUBSCRIPTION_METADATA_BACKFILL", "every night")
    result = cli("serve")
    assert result.exit_code == 2
    assert "CRON_SUBSCRIPTION_METADATA_BACKFILL='every night' is not a valid cron" in result.stderr
    assert "Traceback" not in result.output
    assert uvicorn_calls == []  # refused before listening


def test_invalid_cron_with_more_workers_exits_2_too(
    cli: Any, monkeypatch: pytest.MonkeyPatch, uvicorn_calls: list[dict[str, Any]]
) -> None:
    monkeypatch.setenv("ENABLE_INTERNAL_SCHEDULER", "1")
    monkeypatch.setenv("CRON_SUBSCRIPTION_METADATA_BACKFILL", "61 * * * *")
    result = cli("serve", "--workers", "2")
    assert result.exit_code == 2
    assert "CRON_SUBSCRIPTION_METADATA_BACKFILL" in result.stderr
    assert uvicorn_calls == []


@pytest.mark.parametrize("workers", ["1", "2"])
def test_a_bad_cron_exits_2_even_with_the_scheduler_off(
    cli: Any, monkeypatch: pytest.MonkeyPatch, uvicorn_calls: list[dict[str, Any]], workers: str
) -> None:
    """The help promises exit 2 for a bad CRON_*: cron and Render read the same variables, so
    a typo is refused at start-up whether or not this process schedules (issue 16)."""
    monkeypatch.setenv("CRON_DUNNING", "bogus")
    result = cli("serve", "--workers", workers)
    assert result.exit_code == 2
    assert "CRON_DUNNING='bogus' is not a valid cron expression" in result.stderr
    assert uvicorn_calls == []


def test_an_unknown_cron_variable_exits_2_naming_it_and_the_known_ones(
    cli: Any, monkeypatch: pytest.MonkeyPatch, uvicorn_calls: list[dict[str, Any]]
) -> None:
    monkeypatch.setenv("CRON_DUNING", "*/15 * * * *")
    result = cli("serve")
    assert result.exit_code == 2
    assert "CRON_DUNING names no job" in result.stderr
    assert "CRON_DUNNING" in result.stderr  # the known names are listed
    assert uvicorn_calls == []


def test_a_bad_boolean_setting_exits_2(
    cli: Any, monkeypatch: pytest.MonkeyPatch, uvicorn_calls: list[dict[str, Any]]
) -> None:
    monkeypatch.setenv("ENABLE_INTERNAL_SCHEDULER", "maybe")
    result = cli("serve")
    assert result.exit_code == 2
    assert "ENABLE_INTERNAL_SCHEDULER='maybe' is not a boolean" in result.stderr
    assert uvicorn_calls == []


def test_port_defaults_to_dollar_port_and_the_option_wins(
    cli: Any, monkeypatch: pytest.MonkeyPatch, uvicorn_calls: list[dict[str, Any]]
) -> None:
    assert cli("serve").exit_code == 0
    monkeypatch.setenv("PORT", "10000")  # what Render sets
    assert cli("serve", "--host", "0.0.0.0").exit_code == 0
    assert cli("serve", "--port", "9001").exit_code == 0
    assert [(c["host"], c["port"]) for c in uvicorn_calls] == [
        ("127.0.0.1", 8000),
        ("0.0.0.0", 10000),
        ("127.0.0.1", 9001),
    ]
    assert all(c["log_config"] is None for c in uvicorn_calls)  # our structlog handlers
    # X-Forwarded-For is believed only from FAITHFLOW_TRUSTED_PROXIES, never by uvicorn itself
    assert all(c["proxy_headers"] is False for c in uvicorn_calls)


@pytest.mark.parametrize("port", ["http", "0", "70000"])
def test_a_bad_port_exits_2(
    cli: Any, monkeypatch: pytest.MonkeyPatch, uvicorn_calls: list[dict[str, Any]], port: str
) -> None:
    monkeypatch.setenv("PORT", port)
    result = cli("serve")
    assert result.exit_code == 2
    assert "PORT" in result.stderr
    assert uvicorn_calls == []


def test_more_workers_use_the_app_factory(cli: Any, uvicorn_calls: list[dict[str, Any]]) -> None:
    assert cli("serve", "--workers", "3").exit_code == 0
    [call] = uvicorn_calls
    assert (call["app"], call["factory"], call["workers"]) == ("receiver.app:app_from_env", True, 3)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_faithflow_serve_answers_over_http_and_stops_on_sigterm(sqlite_db: Database) -> None:
    port = _free_port()  # sqlite_db: at the head revision, so /readyz says ready
    env = {
        **os.environ,
        "FAITHFLOW_DATABASE_URL": str(sqlite_db.engine.url),
        "INTEGRATION_API_KEY": "serve-test-key-123",
        "FAITHFLOW_LOG_FORMAT": "json",
    }
    command = [str(Path(sys.executable).with_name("faithflow")), "serve", "--port", str(port)]
    proc = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    url = f"http://127.0.0.1:{port}"
    try:
        # A bound for a failure, not a wait: a new process compiles and imports the whole app,
        # which took over 20 s at load 10.
        deadline = time.monotonic() + 120
        while True:
            assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else ""
            try:
                response = httpx.get(url + "/healthz", timeout=1)
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline, "faithflow serve did not answer in 120 s"
                time.sleep(0.01)  # refused at once until it listens: look often
        assert response.json() == {"status": "ok"}
        assert httpx.get(url + "/readyz").status_code == 200
        refused = httpx.post(
            url + "/tasks/subscriptions/metadata-backfill", headers={"X-API-Key": "not-the-key"}
        )
        assert refused.status_code == 401
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    log = err.decode()
    # uvicorn shuts down gracefully, then re-raises the signal it caught (exit -15).
    assert proc.returncode in (0, -signal.SIGTERM), log
    assert "Application shutdown complete" in log
    assert '"event": "task call refused"' in log
    assert "serve-test-key-123" not in log and "not-the-key" not in log
