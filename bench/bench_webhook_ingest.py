"""Webhook ingest: the real receiver (uvicorn + Postgres) against a bare signature-only endpoint.

Goal (issue 14, "acknowledge once stored"): 20,000 signed Stripe deliveries, 30% of them
duplicates, from 32 concurrent senders. The real receiver — which stores each delivery
(group commit) and answers, while its in-process applier applies the stored events — keeps
>= 50% of the bare endpoint's throughput with p99 < 50 ms; after the last answer the applier
drains the inbox (reported: drain time, sustained apply rate, stretch goal >= 1,500 events/s),
and every event is applied exactly once (effects = distinct events).

One run measures, on the same machine with the same client and the same deliveries:
  receiver — `receiver.app:app_from_env` exactly as `faithflow serve` runs it (uvicorn, one
             worker, log_config=None, no access log; JSON request logs go to a file), on a
             fresh migrated Postgres database seeded with tenants, a plan, subscriptions,
             linked customers and Connect accounts, so every event really writes a row
  bare     — a Litestar app whose POST routes read the raw body, call
             `providers.stripe.verify_webhook` (same secrets and tolerance) and answer 200;
             the routes are sync_to_thread like the receiver's (`--bare-async`: plain async)

The event mix: payment_intent.succeeded on the tenant (Connect) endpoint, each for its own
payment; invoice.paid / invoice.payment_failed on the platform endpoint, each for its own
invoice of an existing subscription. So each distinct event makes exactly one row in
`payments` or `invoices`. Duplicates are re-sends of the same event (same body, fresh
signature), shuffled into the stream so some race their original.

The load generator is a separate process: N concurrent senders, each with its own keep-alive
connection, pulling from one shared queue. `--client raw` (default) speaks HTTP/1.1 over
asyncio streams, like wrk (~0.06 ms of client CPU per request); `--client httpx` gives each
sender its own httpx.AsyncClient (~0.8 ms per request, which on 2 vCPUs caps the bare figure).
One AsyncClient shared by 32 senders is not offered: httpcore's pool costs ~2.8 ms per request
there and caps any server near 300 req/s. Bodies and signatures are made before the clock
starts (fresh timestamps; the 300 s tolerance is kept). A warm-up of 2% extra distinct events
(not timed, counted in the checks) runs first on each server. The load average at the start of
each timed run is printed: other work on the machine moves these figures.

Drain: from the last answer of the timed run, `SELECT count(*) FROM webhook_events WHERE
status IN ('received', 'failed')` is polled every 50 ms until 0 (deadline 600 s). Reported:
the backlog at the last answer, the drain time, the apply rate during the drain (backlog /
drain time) and the sustained rate over the whole run (distinct events / time from the first
request to the end of the drain), and the server's CPU per request while ingesting and per
event while draining (user + system of the server process, from /proc).
`--worker off` (FAITHFLOW_WEBHOOK_WORKER=off) measures ingest alone, then drains with
`faithflow webhooks apply`'s code (`apply_waiting`) in this process.

After the drain: every response is 200, webhook_events rows = distinct events, sum of
delivery_count = deliveries, effects (invoices + payments) = distinct events, every event
`applied`, and the number of answers saying `duplicate` = duplicates sent.

    python bench/bench_webhook_ingest.py [--events 20000] [--duplicate-share 0.3]
        [--concurrency 32] [--client raw|httpx] [--url postgresql://…] [--sqlite]
        [--worker on|off] [--py-spy FILE]

URL: --url, else FAITHFLOW_BENCH_POSTGRES_URL, else FAITHFLOW_TEST_POSTGRES_URL, else
postgresql://root@127.0.0.1:5432/test (the server's admin database; it is not written to).
The throwaway database it creates is dropped afterwards.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from _common import admin, url_from, with_database

PLATFORM_SECRET = "whsec_bench_platform_5eCr3t"
TENANT_SECRET = "whsec_bench_connect_5eCr3t"
PLATFORM_PATH = "/webhooks/stripe/platform"
TENANT_PATH = "/webhooks/stripe"
TENANTS = 50
SUBSCRIPTIONS = 400
PRICE = "price_bench_standard"
GOAL_RATIO = 0.5
GOAL_P99_MS = 50.0
GOAL_APPLY_RATE = 1500.0  # events/s, the stretch goal of the drain
DRAIN_DEADLINE = 600.0
WARMUP_SHARE = 0.02
ROOT = Path(__file__).resolve().parent.parent


# ---------------------------------------------------------------------------------------------
# World: tenants, a plan, subscriptions with linked customers, Connect accounts


def _alnum(rng: random.Random, n: int) -> str:
    return "".join(
        rng.choices("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789", k=n)
    )


@dataclass(frozen=True)
class World:
    subscriptions: list[tuple[str, str]]  # (sub_…, cus_…)
    accounts: list[str]  # acct_… (one per tenant)


def world(seed: int = 20260301) -> World:
    rng = random.Random(seed)
    subs = [
        (f"sub_{_alnum(rng, 14)}{i}", f"cus_{_alnum(rng, 14)}{i}") for i in range(SUBSCRIPTIONS)
    ]
    accounts = [f"acct_1{_alnum(rng, 15)}" for _ in range(TENANTS)]
    return World(subs, accounts)


def seed(url: str, w: World) -> None:
    from faithflow_ops.db import Database, utcnow
    from faithflow_ops.migrate import upgrade
    from faithflow_ops.models import (
        ProviderAccount,
        Subscription,
        SubscriptionPlan,
        Tenant,
    )

    db = Database.from_url(url)
    try:
        upgrade(db.engine)
        now = utcnow()
        with db.session() as s:
            plan = SubscriptionPlan(
                code="standard",
                name="Standard",
                amount_minor=4900,
                currency="USD",
                interval="month",
                metadata_={"stripePriceId": PRICE},
            )
            tenants = [Tenant(slug=f"church-{t}", name=f"Church {t}") for t in range(TENANTS)]
            s.add_all([plan, *tenants])
            s.flush()
            for i, (sub_id, cus) in enumerate(w.subscriptions):
                tenant = tenants[i % TENANTS]
                s.add(
                    Subscription(
                        tenant_id=tenant.id,
                        plan_id=plan.id,
                        provider="stripe",
                        provider_subscription_id=sub_id,
                        provider_customer_id=cus,
                        status="active",
                        current_period_start=now,
                        metadata_={},
                    )
                )
                s.add(
                    ProviderAccount(
                        tenant_id=tenant.id,
                        provider="stripe",
                        kind="customer",
                        external_id=cus,
                        source="bench",
                    )
                )
            for tenant, account in zip(tenants, w.accounts, strict=True):
                s.add(
                    ProviderAccount(
                        tenant_id=tenant.id,
                        provider="stripe",
                        kind="connect_account",
                        external_id=account,
                        source="bench",
                    )
                )
        if db.dialect == "postgresql":
            with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
                conn.exec_driver_sql("ANALYZE")
    finally:
        db.dispose()


# ---------------------------------------------------------------------------------------------
# Events: realistic Stripe bodies, one effect row each


def _event(rng: random.Random, w: World, i: int, tag: str, created: int) -> tuple[str, str]:
    """(path, JSON body) of distinct event i."""
    evt = f"evt_{tag}{_alnum(rng, 18)}{i}"
    request = {
        "id": f"req_{_alnum(rng, 14)}",
        "idempotency_key": str(uuid.UUID(int=rng.getrandbits(128))),
    }
    roll = rng.random()
    if roll < 0.5:  # a gift on a church's Connect account
        account = rng.choice(w.accounts)
        amount = rng.choice((1000, 2500, 5000, 10000, 20000))
        pi = f"pi_{tag}{_alnum(rng, 18)}{i}"
        obj: dict[str, Any] = {
            "id": pi,
            "object": "payment_intent",
            "amount": amount,
            "amount_capturable": 0,
            "amount_received": amount,
            "capture_method": "automatic",
            "client_secret": f"{pi}_secret_{_alnum(rng, 20)}",
            "confirmation_method": "automatic",
            "created": created - 3,
            "currency": "usd",
            "customer": None,
            "description": "Online giving",
            "latest_charge": f"ch_{tag}{_alnum(rng, 18)}{i}",
            "livemode": False,
            "metadata": {
                "purpose": rng.choice(("giving", "tithe", "event_fee")),
                "fund": "general",
            },
            "payment_method": f"pm_{_alnum(rng, 18)}",
            "payment_method_types": ["card"],
            "receipt_email": f"giver{i}@example.org",
            "status": "succeeded",
        }
        payload = {
            "id": evt,
            "object": "event",
            "account": account,
            "api_version": "2024-06-20",
            "created": created,
            "data": {"object": obj},
            "livemode": False,
            "pending_webhooks": 1,
            "request": request,
            "type": "payment_intent.succeeded",
        }
        return TENANT_PATH, json.dumps(payload)
    sub_id, cus = rng.choice(w.subscriptions)
    paid = roll < 0.85
    invoice = f"in_{tag}{_alnum(rng, 18)}{i}"
    obj = {
        "id": invoice,
        "object": "invoice",
        "account_country": "US",
        "amount_due": 4900,
        "amount_paid": 4900 if paid else 0,
        "amount_remaining": 0 if paid else 4900,
        "attempt_count": 1,
        "attempted": True,
        "billing_reason": "subscription_cycle",
        "charge": f"ch_{tag}{_alnum(rng, 18)}{i}",
        "collection_method": "charge_automatically",
        "created": created - 3600,
        "currency": "usd",
        "customer": cus,
        "customer_email": f"billing{i % 997}@church.example",
        "due_date": None,
        "hosted_invoice_url": f"https://invoice.stripe.com/i/acct_bench/{invoice}",
        "lines": {
            "object": "list",
            "data": [
                {
                    "id": f"il_{_alnum(rng, 18)}",
                    "object": "line_item",
                    "amount": 4900,
                    "currency": "usd",
                    "description": "1 × Standard (at $49.00 / month)",
                    "period": {"start": created - 3600, "end": created + 2_592_000},
                    "price": {"id": PRICE, "object": "price", "unit_amount": 4900},
                    "quantity": 1,
                    "subscription": sub_id,
                    "type": "subscription",
                }
            ],
            "has_more": False,
            "total_count": 1,
        },
        "livemode": False,
        "metadata": {},
        "number": f"BENCH-{i:06d}",
        "paid": paid,
        "payment_intent": f"pi_{tag}{_alnum(rng, 18)}{i}",
        "period_end": created,
        "period_start": created - 2_592_000,
        "status": "paid" if paid else "open",
        "status_transitions": {
            "finalized_at": created - 3500,
            "paid_at": created if paid else None,
        },
        "subscription": sub_id,
        "subtotal": 4900,
        "total": 4900,
    }
    payload = {
        "id": evt,
        "object": "event",
        "api_version": "2024-06-20",
        "created": created,
        "data": {"object": obj},
        "livemode": False,
        "pending_webhooks": 1,
        "request": request,
        "type": "invoice.paid" if paid else "invoice.payment_failed",
    }
    return PLATFORM_PATH, json.dumps(payload)


def deliveries(
    w: World, events: int, duplicate_share: float, tag: str, seed: int
) -> list[tuple[str, str]]:
    """`events` deliveries: distinct events plus `duplicate_share` re-sends, shuffled."""
    rng = random.Random(seed)
    duplicates = round(events * duplicate_share)
    distinct = events - duplicates
    base = int(time.time()) - 86_400
    originals = [_event(rng, w, i, tag, base + i) for i in range(distinct)]
    # A re-send follows its original at a random distance: some far behind, some racing it.
    stream = list(originals)
    for _ in range(duplicates):
        stream.append(rng.choice(originals))
    rng.shuffle(stream)
    return stream


def sign(stream: list[tuple[str, str]]) -> list[tuple[str, str, str]]:
    from faithflow_ops.providers.stripe import signature_header

    now = int(time.time())
    return [
        (
            path,
            signature_header(
                body.encode(), TENANT_SECRET if path == TENANT_PATH else PLATFORM_SECRET, now
            ),
            body,
        )
        for path, body in stream
    ]


# ---------------------------------------------------------------------------------------------
# Servers (each in its own process)


def bare_app(async_routes: bool) -> Any:
    from litestar import Litestar, Request, Response, post

    from faithflow_ops.providers import SignatureError
    from faithflow_ops.providers.stripe import verify_webhook
    from receiver.tasks import RawBody

    def route(path: str, secret: str) -> Any:
        def check(request: Request[Any, Any, Any], body: bytes) -> Response[dict[str, Any]]:
            try:
                verify_webhook(body, request.headers.get("stripe-signature"), (secret,), 300)
            except SignatureError as exc:
                return Response({"error": str(exc)}, status_code=400)
            return Response({"ok": True}, status_code=200)

        if async_routes:

            async def handler_async(
                request: Request[Any, Any, Any], body: RawBody
            ) -> Response[dict[str, Any]]:
                return check(request, body)

            return post(path, name=path)(handler_async)

        def handler(request: Request[Any, Any, Any], body: RawBody) -> Response[dict[str, Any]]:
            return check(request, body)

        return post(path, name=path, sync_to_thread=True)(handler)

    return Litestar(
        route_handlers=[route(TENANT_PATH, TENANT_SECRET), route(PLATFORM_PATH, PLATFORM_SECRET)],
        signature_namespace={"Request": Request, "Response": Response, "RawBody": RawBody},
        logging_config=None,
        debug=False,
    )


def serve(kind: str, port: int) -> None:
    """Run one server the way `faithflow serve` does (one worker, log_config=None)."""
    import uvicorn

    if kind == "receiver":
        from receiver.app import app_from_env

        app = app_from_env()
    else:
        app = bare_app(kind == "bare-async")
    uvicorn.run(app, host="127.0.0.1", port=port, log_config=None, access_log=False)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _start(kind: str, env: dict[str, str], log_path: Path) -> tuple[subprocess.Popen[bytes], str]:
    port = _free_port()
    log = log_path.open("wb")
    proc = subprocess.Popen(
        [sys.executable, __file__, "--serve", kind, str(port)],
        env=env,
        cwd=ROOT,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    log.close()
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"{kind} server exited: {log_path.read_text()[-2000:]}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return proc, base
        except OSError:
            time.sleep(0.05)
    proc.kill()
    raise SystemExit(f"{kind} server did not start in 30 s")


def _stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


# ---------------------------------------------------------------------------------------------
# Load generator (its own process): N senders sharing one keep-alive AsyncClient


def load(base: str, path: str, concurrency: int, client: str) -> None:
    """Send every delivery in `path` from `concurrency` senders; print timings as JSON.

    `raw`: each sender owns one keep-alive HTTP/1.1 connection (asyncio streams), like wrk —
    about 0.06 ms of client CPU per request. `httpx`: each sender owns an httpx.AsyncClient
    with one keep-alive connection — about 0.8 ms per request here. One AsyncClient shared by
    all senders costs about 2.8 ms per request (httpcore scans every pooled connection, with
    a socket poll each, on every request) and caps any server near 300 req/s on 2 vCPUs, so
    it would measure the client, not the server.
    """
    import asyncio

    items: list[list[str]] = json.loads(Path(path).read_text())
    latencies = [0.0] * len(items)
    statuses = [0] * len(items)
    duplicate = [False] * len(items)
    cursor = iter(range(len(items)))
    host, port = base.removeprefix("http://").split(":")

    async def raw_sender() -> None:
        reader, writer = await asyncio.open_connection(host, int(port))
        try:
            for k in cursor:
                url, signature, body = items[k]
                data = body.encode()
                request = (
                    f"POST {url} HTTP/1.1\r\nhost: {host}:{port}\r\n"
                    f"content-type: application/json\r\nstripe-signature: {signature}\r\n"
                    f"content-length: {len(data)}\r\n\r\n"
                ).encode() + data
                t0 = time.perf_counter()
                writer.write(request)
                head = await reader.readuntil(b"\r\n\r\n")
                lines = head.decode("latin-1").split("\r\n")
                fields = dict(line.lower().split(": ", 1) for line in lines[1:] if ": " in line)
                answer = await reader.readexactly(int(fields["content-length"]))
                latencies[k] = time.perf_counter() - t0
                statuses[k] = int(lines[0].split()[1])
                duplicate[k] = b'"duplicate":true' in answer
        finally:
            writer.close()

    async def httpx_sender() -> None:
        import httpx

        limits = httpx.Limits(max_connections=1, max_keepalive_connections=1)
        async with httpx.AsyncClient(base_url=base, limits=limits, timeout=60) as http:
            for k in cursor:
                url, signature, body = items[k]
                t0 = time.perf_counter()
                response = await http.post(
                    url,
                    content=body.encode(),
                    headers={"stripe-signature": signature, "content-type": "application/json"},
                )
                latencies[k] = time.perf_counter() - t0
                statuses[k] = response.status_code
                duplicate[k] = b'"duplicate":true' in response.content

    async def run() -> float:
        sender = raw_sender if client == "raw" else httpx_sender
        t0 = time.perf_counter()
        await asyncio.gather(*(sender() for _ in range(concurrency)))
        return time.perf_counter() - t0

    started_at = time.time()
    seconds = asyncio.run(run())
    codes: dict[str, int] = {}
    for code in statuses:
        codes[str(code)] = codes.get(str(code), 0) + 1
    doc = {
        "started_at": started_at,
        "finished_at": started_at + seconds,
        "seconds": seconds,
        "latencies": latencies,
        "codes": codes,
        "duplicates_answered": sum(duplicate),
    }
    print(json.dumps(doc))


def _drive(
    base: str, signed: list[tuple[str, str, str]], concurrency: int, client: str, tmp: Path
) -> Any:
    path = tmp / f"load-{uuid.uuid4().hex[:6]}.json"
    path.write_text(json.dumps(signed))
    out = subprocess.run(
        [sys.executable, __file__, "--load", base, str(path), str(concurrency), client],
        check=True,
        capture_output=True,
        text=True,
    )
    path.unlink()
    return json.loads(out.stdout.strip().splitlines()[-1])


# ---------------------------------------------------------------------------------------------
# The run


@dataclass
class Row:
    endpoint: str
    requests: int
    seconds: float
    p50_ms: float
    p99_ms: float
    codes: dict[str, int]
    exactly_once: str  # "yes", "no: …", or "—" (bare)
    notes: str = ""
    drain: Drain | None = None

    @property
    def rate(self) -> float:
        return self.requests / self.seconds


def _row(endpoint: str, doc: dict[str, Any]) -> Row:
    lat = sorted(doc["latencies"])
    q = statistics.quantiles(lat, n=100, method="inclusive")
    return Row(
        endpoint,
        len(lat),
        doc["seconds"],
        q[49] * 1000,
        q[98] * 1000,
        doc["codes"],
        "—",
    )


def _check(url: str, distinct: int, delivered: int, duplicates: int, answered: int) -> str:
    from sqlalchemy import create_engine, text

    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            rows, total = conn.execute(
                text("SELECT count(*), coalesce(sum(delivery_count), 0) FROM webhook_events")
            ).one()
            statuses: dict[str, int] = {
                str(status): int(n)
                for status, n in conn.execute(
                    text("SELECT status, count(*) FROM webhook_events GROUP BY status")
                ).all()
            }
            invoices = conn.execute(text("SELECT count(*) FROM invoices")).scalar_one()
            payments = conn.execute(text("SELECT count(*) FROM payments")).scalar_one()
    finally:
        engine.dispose()
    problems = []
    if rows != distinct:
        problems.append(f"{rows} webhook_events for {distinct} distinct events")
    if total != delivered:
        problems.append(f"sum(delivery_count) {total} for {delivered} deliveries")
    if invoices + payments != distinct:
        problems.append(f"effects {invoices}+{payments} for {distinct} distinct events")
    if statuses != {"applied": distinct}:
        problems.append(f"statuses {statuses}")
    if answered != duplicates:
        problems.append(f"{answered} answers said duplicate for {duplicates} re-sends")
    detail = (
        f"events {rows}, deliveries {total}, effects {invoices + payments} "
        f"({invoices} invoices + {payments} payments), duplicates answered {answered}"
    )
    return ("yes" if not problems else "NO: " + "; ".join(problems)) + f"  [{detail}]"


def _cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (Linux /proc; 0 elsewhere)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class Load:
    warm: list[tuple[str, str]]
    stream: list[tuple[str, str]]
    concurrency: int
    client: str
    profile: Path | None = None  # py-spy collapsed stacks of the receiver's timed run


def _py_spy(pid: int, out: Path) -> subprocess.Popen[bytes]:
    spy = Path(sys.executable).parent / "py-spy"
    return subprocess.Popen(
        [
            *(str(spy), "record", "--pid", str(pid), "--rate", "250", "--gil"),
            *("--format", "raw", "--output", str(out), "--nonblocking"),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def _backlog(url: str) -> int:
    from sqlalchemy import create_engine, text

    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return int(
                conn.execute(
                    text(
                        "SELECT count(*) FROM webhook_events WHERE status IN ('received', 'failed')"
                    )
                ).scalar_one()
            )
    finally:
        engine.dispose()


@dataclass
class Drain:
    backlog: int  # rows waiting at the last answer
    seconds: float  # last answer -> nothing waiting
    sustained: float  # distinct events / (first request -> drained)
    cpu_ms_per_event: float  # server process CPU during the drain
    done: bool

    @property
    def rate(self) -> float:
        return self.backlog / self.seconds if self.seconds > 0 else float("inf")


def _drain(
    db_url: str, pid: int | None, started_at: float, finished_at: float, distinct: int
) -> Drain:
    """Poll until no row waits (the in-process applier, or `apply_waiting` here when the
    worker is off: `pid` None)."""
    cpu0 = _cpu_seconds(pid) if pid else 0.0
    backlog = _backlog(db_url)
    if pid is None:
        from faithflow_ops.db import Database
        from faithflow_ops.webhooks.applier import apply_waiting

        db = Database.from_url(db_url)
        try:
            apply_waiting(db)
        finally:
            db.dispose()
    deadline = time.monotonic() + DRAIN_DEADLINE
    waiting = backlog
    while waiting and time.monotonic() < deadline:
        time.sleep(0.05)
        waiting = _backlog(db_url)
    end = time.time()
    cpu = (_cpu_seconds(pid) - cpu0) if pid else 0.0
    return Drain(
        backlog,
        max(end - finished_at, 0.0),
        distinct / (end - started_at),
        cpu * 1000 / backlog if backlog else 0.0,
        waiting == 0,
    )


def _measure(
    label: str,
    kind: str,
    env: dict[str, str],
    load: Load,
    tmp: Path,
    db_url: str | None = None,
) -> tuple[Row, dict[str, Any], Path]:
    """Start the server, warm it up, time the stream (and with `db_url`, wait for the drain
    while the server runs); the Row and the warm-up's answers."""
    log_path = tmp / f"{kind}-{uuid.uuid4().hex[:6]}.log"
    proc, base = _start(kind, env, log_path)
    drain = None
    try:
        warm_doc = _drive(base, sign(load.warm), load.concurrency, load.client, tmp)
        if db_url is not None:  # the warm-up is applied before the clock starts
            _drain(
                db_url,
                None if env.get("FAITHFLOW_WEBHOOK_WORKER") == "off" else proc.pid,
                time.time(),
                time.time(),
                1,
            )
        signed = sign(load.stream)
        busy = os.getloadavg()[0]
        spy = _py_spy(proc.pid, load.profile) if load.profile and kind == "receiver" else None
        cpu0 = _cpu_seconds(proc.pid)
        doc = _drive(base, signed, load.concurrency, load.client, tmp)
        cpu = _cpu_seconds(proc.pid) - cpu0
        if db_url is not None:
            worker_pid = None if env.get("FAITHFLOW_WEBHOOK_WORKER") == "off" else proc.pid
            drain = _drain(
                db_url, worker_pid, doc["started_at"], doc["finished_at"], len(set(load.stream))
            )
        if spy is not None:
            spy.send_signal(signal.SIGINT)
            spy.wait(30)
    finally:
        _stop(proc)
    row = _row(label, doc)
    row.notes = (
        f"server CPU {cpu * 1000 / len(load.stream):.2f} ms/request; "
        f"load average {busy:.2f} when the timed run started"
    )
    if doc["codes"] != {"200": len(load.stream)}:
        row.exactly_once = f"NO: answers {doc['codes']}"
    row.drain = drain
    return row, {"warm": warm_doc, "timed": doc}, log_path


def run_receiver(label: str, db_url: str, load: Load, tmp: Path, worker: str = "on") -> Row:
    env = {
        **os.environ,
        "FAITHFLOW_DATABASE_URL": db_url,
        "FAITHFLOW_LOG_FORMAT": "json",
        "STRIPE_WEBHOOK_SECRET": TENANT_SECRET,
        "STRIPE_PLATFORM_WEBHOOK_SECRET": PLATFORM_SECRET,
        "ENABLE_INTERNAL_SCHEDULER": "0",
        "FAITHFLOW_WEBHOOK_WORKER": worker,
    }
    row, docs, log_path = _measure(label, "receiver", env, load, tmp, db_url=db_url)
    warm_doc, doc = docs["warm"], docs["timed"]
    distinct = len(set(load.warm)) + len(set(load.stream))
    delivered = len(load.warm) + len(load.stream)
    answered = warm_doc["duplicates_answered"] + doc["duplicates_answered"]
    verdict = _check(db_url, distinct, delivered, delivered - distinct, answered)
    ok_codes = doc["codes"] == {"200": len(load.stream)}
    if not ok_codes or warm_doc["codes"] != {"200": len(load.warm)}:
        verdict = f"NO: answers {doc['codes']} (warm-up {warm_doc['codes']}); " + verdict
    row.exactly_once = verdict
    lines = sum(1 for _ in log_path.open("rb"))
    row.notes += f"; server log {lines:,} lines ({log_path.stat().st_size / 2**20:.1f} MiB)"
    return row


def bench(args: argparse.Namespace) -> bool:
    admin_url = url_from(args)
    tag = uuid.uuid4().hex[:8]
    w = world()
    stream = deliveries(w, args.events, args.duplicate_share, "b", seed=1)
    warm_n = max(32, round(args.events * WARMUP_SHARE))
    load = Load(
        deliveries(w, warm_n, args.duplicate_share, "w", seed=2),
        stream,
        args.concurrency,
        args.client,
        Path(args.py_spy).resolve() if args.py_spy else None,
    )
    distinct = len(set(stream))
    print(
        f"webhook ingest benchmark on {admin_url.split('@')[-1]} (python "
        f"{sys.version.split()[0]}, {os.cpu_count()} CPUs, client {args.client})\n"
        f"{len(stream):,} deliveries = {distinct:,} distinct events + "
        f"{len(stream) - distinct:,} re-sends; {args.concurrency} concurrent senders; "
        f"warm-up {len(load.warm):,} deliveries (untimed)"
    )
    rows: list[Row] = []
    name = f"ff_bench_{tag}_webhooks"
    with tempfile.TemporaryDirectory(prefix="ff-bench-webhooks-") as tmpdir:
        tmp = Path(tmpdir)
        bare_kind = "bare-async" if args.bare_async else "bare"
        rows.append(_measure(bare_kind, bare_kind, dict(os.environ), load, tmp)[0])
        try:
            admin(admin_url, f'CREATE DATABASE "{name}"')
            db_url = with_database(admin_url, name)
            seed(db_url, w)
            label = f"receiver (pg, worker {args.worker})"
            rows.append(run_receiver(label, db_url, load, tmp, args.worker))
        finally:
            admin(admin_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        if args.sqlite:
            db_url = f"sqlite:///{tmp / 'webhooks.db'}"
            seed(db_url, w)
            rows.append(run_receiver("receiver (sqlite)", db_url, load, tmp, args.worker))
    return _report(rows)


def _report(rows: list[Row]) -> bool:
    """Print the table; False when a check failed (a missed speed goal is only reported)."""
    bare = rows[0]
    header = (
        f"{'endpoint':<20} {'requests':>9} {'seconds':>8} {'req/s':>8} {'p50 ms':>7} "
        f"{'p99 ms':>7} {'vs bare':>8}  exactly-once"
    )
    print(header)
    print("-" * len(header))
    ok = True
    for row in rows:
        ratio = row.rate / bare.rate
        print(
            f"{row.endpoint:<20} {row.requests:>9,} {row.seconds:>8.2f} {row.rate:>8,.0f} "
            f"{row.p50_ms:>7.1f} {row.p99_ms:>7.1f} {ratio:>7.0%}  {row.exactly_once}"
        )
        if row.notes:
            print(f"{'':<20} {row.notes}")
        if row.drain is not None:
            d = row.drain
            print(
                f"{'':<20} drain: {d.backlog:,} waiting at the last answer, applied in "
                f"{d.seconds:.2f} s ({d.rate:,.0f} events/s"
                + (f", server CPU {d.cpu_ms_per_event:.2f} ms/event" if d.cpu_ms_per_event else "")
                + f"); sustained {d.sustained:,.0f} events/s from the first request"
                + ("" if d.done else f"; NOT drained after {DRAIN_DEADLINE:.0f} s")
            )
            print(
                f"{'':<20} stretch goal >= {GOAL_APPLY_RATE:,.0f} events/s sustained: "
                f"{'met' if d.sustained >= GOAL_APPLY_RATE else 'missed'}"
            )
        if row is not bare:
            correct = row.exactly_once.startswith("yes")
            meets = correct and ratio >= GOAL_RATIO and row.p99_ms < GOAL_P99_MS
            ok = ok and correct
            print(
                f"{'':<20} {'meets' if meets else 'MISSES'} the goal: >= {GOAL_RATIO:.0%} of "
                f"bare ({ratio:.0%}), p99 < {GOAL_P99_MS:.0f} ms ({row.p99_ms:.1f}), exactly once"
            )
        elif not row.exactly_once.startswith("—"):
            ok = False
    return ok


def main() -> None:
    if len(sys.argv) == 4 and sys.argv[1] == "--serve":
        serve(sys.argv[2], int(sys.argv[3]))
        return
    if len(sys.argv) == 6 and sys.argv[1] == "--load":
        load(sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5])
        return
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--url", help="Postgres server URL (a database to connect to as admin)")
    parser.add_argument("--events", type=int, default=20_000, help="deliveries (timed)")
    parser.add_argument("--duplicate-share", type=float, default=0.3, help="share of re-sends")
    parser.add_argument("--concurrency", type=int, default=32, help="concurrent senders")
    parser.add_argument("--sqlite", action="store_true", help="also run against a SQLite file")
    parser.add_argument(
        "--client",
        choices=("raw", "httpx"),
        default="raw",
        help="load generator: raw asyncio HTTP/1.1 (wrk-like, cheap) or httpx (see load())",
    )
    parser.add_argument(
        "--py-spy",
        metavar="FILE",
        help="record where the receiver spends CPU (py-spy --gil, pip install py-spy) in its "
        "timed run, as collapsed stacks in FILE",
    )
    parser.add_argument(
        "--bare-async", action="store_true", help="bare routes async instead of sync_to_thread"
    )
    parser.add_argument(
        "--worker",
        choices=("on", "off"),
        default="on",
        help="the receiver's in-process applier (off: ingest alone, then apply_waiting here)",
    )
    args = parser.parse_args()
    sys.exit(0 if bench(args) else 1)


if __name__ == "__main__":
    main()
