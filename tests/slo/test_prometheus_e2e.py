"""A real Prometheus (Debian's 2.42) on loopback scrapes a running receiver with the committed
rules loaded; traffic with some 5xx shows up in the recording rules, read over Prometheus's
HTTP API. Skipped where the prometheus binary is missing (.ci/run installs it)."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from helpers import running

from faithflow_ops.config import Settings
from faithflow_ops.db import Database
from faithflow_ops.providers.stripe import signature_header
from receiver.app import create_app

ROOT = Path(__file__).resolve().parents[2]
PROMETHEUS = shutil.which("prometheus")
pytestmark = pytest.mark.skipif(PROMETHEUS is None, reason="prometheus not installed")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.fixture
def receiver(tmp_path: Path) -> Iterator[str]:
    from faithflow_ops.migrate import upgrade

    db = Database.from_url(f"sqlite:///{tmp_path / 'receiver.db'}")
    upgrade(db.engine)
    # Stripe tenant webhooks configured (unsigned → 400), Paystack not (→ 503: our 5xx)
    settings = Settings(
        database_url=str(db.engine.url),
        integration_api_key="k" * 32,
        stripe_webhook_secrets=("whsec_e2e",),
        webhook_worker=False,
    )
    with running(create_app(settings, db=db, jobs=[])) as url:
        yield url
    db.dispose()


@pytest.fixture
def prometheus(tmp_path: Path, receiver: str) -> Iterator[str]:
    assert PROMETHEUS is not None
    port = _free_port()
    target = receiver.removeprefix("http://")
    config = tmp_path / "prometheus.yml"
    config.write_text(
        "global: {scrape_interval: 1s, evaluation_interval: 1s}\n"
        f"rule_files: [{ROOT / 'ops' / 'prometheus' / 'slo-rules.yml'}]\n"
        "scrape_configs:\n"
        f"  - job_name: faithflow\n    static_configs: [{{targets: ['{target}']}}]\n"
    )
    log = (tmp_path / "prometheus.log").open("w")
    process = subprocess.Popen(
        [
            PROMETHEUS,
            f"--config.file={config}",
            f"--storage.tsdb.path={tmp_path / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        _wait(lambda: _ready(url), "prometheus to start", tmp_path)
        yield url
    finally:
        process.terminate()
        process.wait(15)
        log.close()


def _ready(url: str) -> bool:
    try:
        return httpx.get(url + "/-/ready", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def _wait(condition, what: str, tmp_path: Path | None = None, timeout: float = 60) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            extra = (tmp_path / "prometheus.log").read_text()[-2000:] if tmp_path else ""
            pytest.fail(f"timed out waiting for {what}\n{extra}")
        time.sleep(0.2)  # polling a condition, not waiting for luck


def _query(url: str, expr: str) -> list[dict[str, object]]:
    doc = httpx.get(url + "/api/v1/query", params={"query": expr}, timeout=5).json()
    assert doc["status"] == "success", doc
    result: list[dict[str, object]] = doc["data"]["result"]
    return result


EVENT = json.dumps(
    {
        "id": "evt_e2e_slow",
        "object": "event",
        "type": "product.created",
        "created": 1,
        "data": {"object": {"id": "prod_e2e", "object": "product"}},
    }
).encode()


def _slow_delivery(receiver: str) -> None:
    """A signed delivery whose body arrives in two parts 0.3 s apart (a slow client): the
    receiver answers 200 after more than the 0.25 s the latency objective allows."""

    def body() -> Iterator[bytes]:
        yield EVENT[:20]
        time.sleep(0.3)  # the slowness under test, not a wait for an effect
        yield EVENT[20:]

    headers = {
        "Stripe-Signature": signature_header(EVENT, "whsec_e2e"),
        "Content-Length": str(len(EVENT)),
    }
    answer = httpx.post(receiver + "/webhooks/stripe", content=body(), headers=headers)
    assert answer.status_code == 200, answer.text


def _value(url: str, expr: str) -> float:
    result = _query(url, expr)
    return float(result[0]["value"][1]) if result else 0.0  # type: ignore[index]


def test_recording_rules_see_the_receivers_5xx_and_slow_answers(
    receiver: str, prometheus: str
) -> None:
    def drive() -> None:
        for _ in range(3):
            assert httpx.post(receiver + "/webhooks/paystack", content=b"{}").status_code == 503
        assert httpx.post(receiver + "/webhooks/stripe", content=b"{}").status_code == 400
        _slow_delivery(receiver)

    ratio = 'faithflow:slo_errors:ratio_rate5m{slo="webhook_ingest_availability"}'
    slow = 'faithflow:slo_errors:ratio_rate5m{slo="webhook_ingest_latency"}'

    def recorded() -> bool:
        drive()  # keep traffic flowing until two scrapes have seen it
        return _value(prometheus, ratio) > 0 and _value(prometheus, slow) > 0

    _wait(recorded, "the 5m error ratios to be recorded")
    # of each 4 non-4xx webhook answers 3 were 503s (fast) and 1 a slow 200; the 400s do not
    # count. Rates over a window read a ratio near these, not exactly (scrapes fall mid-burst).
    assert 0.5 < _value(prometheus, ratio) < 1.0
    assert 0.0 < _value(prometheus, slow) < 0.5
    objective = _query(
        prometheus, 'faithflow:slo_objective:ratio{slo="webhook_ingest_availability"}'
    )
    assert float(objective[0]["value"][1]) == pytest.approx(0.9995)  # type: ignore[index]
    rules = httpx.get(prometheus + "/api/v1/rules", timeout=5).json()["data"]["groups"]
    assert {g["name"] for g in rules} >= {"slo:webhook_ingest_availability", "slo:job_success"}
    broken = [r["name"] for g in rules for r in g["rules"] if r["health"] == "err"]
    assert broken == [], f"rules failed to evaluate: {broken}"
