"""Crash safety and several appliers (issue 14), with the real `faithflow serve` processes:

- deliveries acknowledged while the worker is paused survive `kill -9` of the receiver and
  are applied exactly once by the next receiver, or by `faithflow webhooks apply` by hand;
- two receivers on one Postgres database plus a concurrent `faithflow webhooks apply`: every
  event applied once, none twice (effects counted).
"""

from __future__ import annotations

import json
import os
import random
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select
from webhook_support import payload, seed

from faithflow_ops.db import Database
from faithflow_ops.models import Payment, WebhookEvent
from faithflow_ops.providers.stripe import signature_header

WHSEC = "whsec_crash_connect"
FAITHFLOW = str(Path(sys.executable).parent / "faithflow")


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Receiver:
    """`faithflow serve` in its own process group; `ready()` waits until /readyz answers 200.
    Starting and waiting are separate, so two receivers start side by side, and a receiver is
    in the fixture's list (stopped at the end) before it is waited on. Requests go through
    one keep-alive client per receiver."""

    def __init__(self, db_url: str, tmp: Path, *, worker: bool) -> None:
        self.port = _port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("FAITHFLOW_", "STRIPE_", "PAYSTACK_", "CRON_"))
        }
        env.update(
            FAITHFLOW_DATABASE_URL=db_url,
            STRIPE_WEBHOOK_SECRET=WHSEC,
            FAITHFLOW_WEBHOOK_WORKER="on" if worker else "off",
            FAITHFLOW_LOG_FORMAT="json",
        )
        self.log = (tmp / f"receiver-{self.port}.log").open("wb")
        self.proc = subprocess.Popen(
            [FAITHFLOW, "serve", "--host", "127.0.0.1", "--port", str(self.port)],
            env=env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.http = httpx.Client(base_url=self.url, timeout=30)
        self.terminated = False

    def ready(self) -> None:
        deadline = time.monotonic() + 60  # a bound for a failure, not a wait
        while True:
            assert self.proc.poll() is None, "faithflow serve exited early"
            try:
                if self.http.get("/readyz", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "the receiver never became ready"
            time.sleep(0.01)

    def kill9(self) -> None:
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(30)
        self.close()

    def terminate(self) -> None:
        """SIGTERM, once: a second one tells uvicorn to skip its graceful shutdown."""
        if not self.terminated and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            self.terminated = True

    def stop(self) -> None:
        self.terminate()
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(30)
        self.close()

    def close(self) -> None:
        self.http.close()
        self.log.close()


@pytest.fixture
def receivers(db_url: str, tmp_path: Path) -> Iterator[list[Receiver]]:
    started: list[Receiver] = []
    yield started
    for receiver in started:  # all stop side by side
        receiver.terminate()
    for receiver in started:
        receiver.stop()


def event(n: int) -> bytes:
    doc = payload("stripe", "tenant.payment_intent.succeeded")
    doc["id"] = f"evt_crash_{n}"
    doc["data"]["object"]["id"] = f"pi_crash_{n}"
    return json.dumps(doc).encode()


def post(receiver: Receiver, body: bytes) -> dict[str, Any]:
    answer = receiver.http.post(
        "/webhooks/stripe",
        content=body,
        headers={"Stripe-Signature": signature_header(body, WHSEC)},
    )
    assert answer.status_code == 200, answer.text
    doc: dict[str, Any] = answer.json()
    return doc


def counts(db: Database) -> dict[str, int]:
    with db.read_session() as s:
        rows = s.execute(select(WebhookEvent.status, func.count()).group_by(WebhookEvent.status))
        found = {status: int(n) for status, n in rows}
        found["payments"] = s.scalar(select(func.count()).select_from(Payment)) or 0
        return found


def wait_for(db: Database, condition: Any, what: str, seconds: float = 60) -> dict[str, int]:
    deadline = time.monotonic() + seconds
    while True:
        now = counts(db)
        if condition(now):
            return now
        assert time.monotonic() < deadline, f"{what}: {now}"
        time.sleep(0.02)


N = 40


def _deliver_then_kill(
    db: Database, db_url: str, tmp_path: Path, receivers: list[Receiver]
) -> None:
    seed(db)
    paused = Receiver(db_url, tmp_path, worker=False)
    receivers.append(paused)
    paused.ready()
    answers = [post(paused, event(n)) for n in range(N)]
    assert {a["status"] for a in answers} == {"received"}
    assert not any(a["duplicate"] for a in answers)
    assert counts(db) == {"received": N, "payments": 0}
    paused.kill9()


def test_acknowledged_deliveries_survive_kill_9_and_apply_once_on_restart(
    db: Database, db_url: str, tmp_path: Path, receivers: list[Receiver]
) -> None:
    _deliver_then_kill(db, db_url, tmp_path, receivers)
    receivers.append(Receiver(db_url, tmp_path, worker=True))
    receivers[-1].ready()
    done = wait_for(db, lambda c: c.get("applied") == N, "the restarted receiver's worker")
    assert done == {"applied": N, "payments": N}


def test_with_the_worker_off_webhooks_apply_catches_up(
    db: Database, db_url: str, tmp_path: Path, receivers: list[Receiver], cli: Any
) -> None:
    _deliver_then_kill(db, db_url, tmp_path, receivers)
    env = {**os.environ, "FAITHFLOW_DATABASE_URL": db_url}
    run = subprocess.run(
        [FAITHFLOW, "webhooks", "apply", "--json"], env=env, capture_output=True, timeout=120
    )
    assert run.returncode == 0, run.stderr.decode()
    doc = json.loads(run.stdout)
    assert doc["counts"] == {"apply_event": N} and doc["status"] == "succeeded"
    assert counts(db) == {"applied": N, "payments": N}
    again = cli("webhooks", "apply", "--json")  # nothing left: in-process is enough
    assert json.loads(again.stdout)["counts"] == {}


def test_two_receivers_and_a_cron_apply_each_event_once(
    db: Database, db_url: str, tmp_path: Path, receivers: list[Receiver]
) -> None:
    if not db_url.startswith("postgresql"):
        pytest.skip("several receivers on one database is a Postgres deployment")
    seed(db)
    receivers.extend(Receiver(db_url, tmp_path, worker=True) for _ in range(2))
    for receiver in receivers:  # both were started before either is waited on
        receiver.ready()
    distinct = 150
    bodies = [(n, event(n)) for n in range(distinct)]
    rng = random.Random(14)
    deliveries = bodies + [rng.choice(bodies) for _ in range(distinct * 3 // 10)]
    rng.shuffle(deliveries)
    stop = threading.Event()
    env = {**os.environ, "FAITHFLOW_DATABASE_URL": db_url}

    def cron() -> None:
        while not stop.is_set():
            subprocess.run(
                [FAITHFLOW, "webhooks", "apply", "--json"],
                env=env,
                capture_output=True,
                timeout=120,
            )

    cron_thread = threading.Thread(target=cron)
    cron_thread.start()
    try:
        with ThreadPoolExecutor(16) as pool:
            answers = list(
                pool.map(
                    lambda item: post(receivers[item[0] % 2], item[1][1]), enumerate(deliveries)
                )
            )
        wait_for(db, lambda c: c.get("applied") == distinct, "two receivers and cron")
    finally:
        stop.set()
        cron_thread.join(120)
    assert sum(1 for a in answers if not a["duplicate"]) == distinct
    with db.read_session() as s:
        assert s.scalar(select(func.sum(WebhookEvent.delivery_count))) == len(deliveries)
        assert s.scalar(select(func.count()).select_from(Payment)) == distinct
        assert s.scalar(select(func.max(WebhookEvent.attempts))) == 0  # nothing failed, ever
