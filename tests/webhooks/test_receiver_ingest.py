"""The ingest path (issue 14): a verified delivery is stored and answered before it is applied.

Over real HTTP on SQLite and Postgres: hostile but verified bodies are stored (never a 500, the
same on both databases), refusals store nothing, the database going away answers 503, and
concurrent duplicates make one row. The Postgres group-commit writer is also driven directly.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
from helpers import running, wait_applied
from sqlalchemy import select, text
from test_receiver_webhooks import (
    PAYSTACK_KEY,
    WHSEC,
    WHSEC_CONNECT,
    count,
    metric,
    settings_for,
    stripe_post,
)
from webhook_support import payload, seed

from faithflow_ops.db import Database
from faithflow_ops.models import Payment, WebhookEvent
from faithflow_ops.providers.paystack import signature
from faithflow_ops.providers.stripe import signature_header
from faithflow_ops.webhooks import ingest
from faithflow_ops.webhooks.events import parse
from receiver.app import create_app


@pytest.fixture
def seeded(db: Database) -> Database:
    seed(db)
    return db


@pytest.fixture
def base(seeded: Database, db_url: str) -> Iterator[str]:
    with running(create_app(settings_for(db_url), db=seeded)) as url:
        yield url


def event_body(**changes: Any) -> tuple[dict[str, Any], bytes]:
    """An `ignored` platform event (no handler), as a document and its JSON bytes."""
    doc = payload("stripe", "platform.customer.updated")
    doc["type"] = "product.created"
    doc.update(changes)
    return doc, json.dumps(doc).encode()


def stored_row(db: Database, key: str) -> WebhookEvent:
    with db.read_session() as s:
        return s.scalars(select(WebhookEvent).filter_by(event_key=key)).one()


# --- hostile but verified: stored, never a 500 -------------------------------------------------


@pytest.mark.parametrize(
    "escape",
    [r"\u0000", r"\ud800", r"x\udfff", r"\ud800\u0000"],
    ids=["nul", "lone-high", "lone-low", "both"],
)
def test_a_nul_or_lone_surrogate_is_stored_raw_on_both_databases(
    base: str, seeded: Database, escape: str
) -> None:
    doc, _ = event_body(id=f"evt_hostile_{len(escape)}")
    # the escape sits in a customer's text, where a payer can put anything
    body = json.dumps(doc).replace('"Grace Church"', f'"Grace {escape} Church"', 1).encode()
    assert escape.encode() in body
    answer = stripe_post(base, body)
    assert answer.status_code == 200, answer.text
    assert answer.json()["status"] == "received" and answer.json()["duplicate"] is False
    row = stored_row(seeded, doc["id"])
    assert row.payload is None and row.raw_body == body  # the exact bytes, on both databases
    assert wait_applied(seeded, doc["id"]) == {doc["id"]: "ignored"}
    again = stripe_post(base, body).json()  # a retry of it is a duplicate like any other
    assert again["duplicate"] is True and again["delivery_count"] == 2


def test_a_nul_in_the_event_id_is_stored_under_an_escaped_key(base: str, seeded: Database) -> None:
    doc, _ = event_body()
    body = json.dumps(doc).replace(f'"{doc["id"]}"', r'"evt_nul\u0000id"', 1).encode()
    answer = stripe_post(base, body)
    assert answer.status_code == 200, answer.text
    assert answer.json()["event_key"] == r"evt_nul\x00id"
    assert stored_row(seeded, r"evt_nul\x00id").raw_body == body
    assert stripe_post(base, body).json()["duplicate"] is True


def test_a_nul_in_the_event_type_is_applied_and_its_outcome_stored(
    base: str, seeded: Database
) -> None:
    # Found by tests/receiver/test_openapi_fuzz.py: the outcome ("<type> is not handled")
    # quoted the type raw, and Postgres refused the NUL in it: the apply failed every time.
    doc, _ = event_body(id="evt_type_nul")
    body = json.dumps(doc).replace('"product.created"', r'"product\u0000created"', 1).encode()
    answer = stripe_post(base, body)
    assert answer.status_code == 200, answer.text
    assert wait_applied(seeded, doc["id"]) == {doc["id"]: "ignored"}
    row = stored_row(seeded, doc["id"])
    assert row.last_error is None and row.outcome is not None
    assert "\x00" not in row.outcome and r"product\x00created" in row.outcome


@pytest.mark.parametrize("created", [-99999999999999, 2**70])
def test_a_stripe_created_out_of_range_is_stored_without_a_time(
    base: str, seeded: Database, created: int
) -> None:
    doc, body = event_body(id=f"evt_created_{created}", created=created)
    answer = stripe_post(base, body)
    assert answer.status_code == 200, answer.text
    row = stored_row(seeded, doc["id"])
    assert row.occurred_at is None and row.payload == doc and row.raw_body is None
    # the worker ends it ignored, saying why, instead of failing it ten times
    wait_applied(seeded, doc["id"])
    row = stored_row(seeded, doc["id"])
    assert row.status == "ignored" and "created" in (row.outcome or "")


@pytest.mark.parametrize("literal", ["NaN", "-Infinity", "1e400", "1" * 5000])
def test_numbers_postgres_cannot_hold_are_stored_raw(
    base: str, seeded: Database, literal: str
) -> None:
    doc, _ = event_body(id=f"evt_number_{len(literal)}")
    body = json.dumps({**doc, "pending_webhooks": "@"}).replace('"@"', literal).encode()
    answer = stripe_post(base, body)
    assert answer.status_code == 200, answer.text
    row = stored_row(seeded, doc["id"])
    assert row.payload is None and row.raw_body == body


def test_json_nested_deeper_than_the_parser_reads_is_400_and_nothing_is_stored(
    base: str, seeded: Database
) -> None:
    doc, _ = event_body()
    for depth in (ingest.MAX_DEPTH + 1, 5000):
        nested = "[" * depth + "]" * depth
        body = json.dumps({**doc, "metadata": "@"}).replace('"@"', nested).encode()
        answer = stripe_post(base, body)
        assert answer.status_code == 400
        assert f"deeper than {ingest.MAX_DEPTH} levels" in answer.json()["error"]
    # a string full of brackets is not nesting
    brackets = stripe_post(base, json.dumps({**doc, "description": "[" * 5000}).encode())
    assert brackets.status_code == 200, brackets.text
    assert count(seeded, WebhookEvent) == 1


def test_a_paystack_reference_with_a_nul_is_stored(base: str, seeded: Database) -> None:
    doc = payload("paystack", "platform.subscription.create")
    doc["data"]["subscription_code"] = "SUB_\u0000x"
    body = json.dumps(doc).encode()
    answer = httpx.post(
        base + "/webhooks/paystack/platform",
        content=body,
        headers={"x-paystack-signature": signature(body, PAYSTACK_KEY)},
        timeout=30,
    )
    assert answer.status_code == 200, answer.text
    assert "\\x00" in answer.json()["event_key"]
    assert stored_row(seeded, answer.json()["event_key"]).raw_body == body


def test_a_data_error_the_scan_missed_is_stored_raw(
    base: str, seeded: Database, db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The safety net: if Postgres still refuses a value, that delivery is written alone with
    its body raw, and the rest of its batch is stored as usual."""
    if not db_url.startswith("postgresql"):
        pytest.skip("SQLite stores any JSON text; the fallback is for Postgres data errors")
    monkeypatch.setattr(ingest, "_RISKY_ESCAPE", re.compile(rb"(?!)"))  # sees nothing
    doc, _ = event_body(id="evt_slipped_past")
    hostile = json.dumps(doc).replace('"Grace Church"', r'"\u0000"', 1).encode()
    others = [event_body(id=f"evt_fine_{i}")[1] for i in range(10)]
    with ThreadPoolExecutor(11) as pool:
        answers = list(pool.map(lambda body: stripe_post(base, body), [hostile, *others]))
    assert [a.status_code for a in answers] == [200] * 11
    assert stored_row(seeded, "evt_slipped_past").raw_body == hostile
    assert count(seeded, WebhookEvent) == 11


# --- refusals store nothing ------------------------------------------------------------------


def test_a_non_ascii_signature_header_is_400(base: str, seeded: Database) -> None:
    _, body = event_body()
    good = signature_header(body, WHSEC)
    for header in (good.replace("v1=", "v1=\xe9"), "t=1,v1=\xe9\xe9", "\xe9"):
        answer = httpx.post(
            base + "/webhooks/stripe/platform",
            content=body,
            headers={b"Stripe-Signature": header.encode("latin-1")},
            timeout=30,
        )
        assert answer.status_code == 400, answer.text
        assert "signature" in answer.json()["error"].lower()
    paystack = httpx.post(
        base + "/webhooks/paystack/platform",
        content=body,
        headers={b"x-paystack-signature": ("\xe9" * 128).encode("latin-1")},
        timeout=30,
    )
    assert paystack.status_code == 400 and "not ASCII" in paystack.json()["error"]
    assert count(seeded, WebhookEvent) == 0
    refused = [
        line
        for line in httpx.get(base + "/metrics").text.splitlines()
        if line.startswith("faithflow_webhook_deliveries_total{") and "bad_signature" in line
    ]
    assert sum(float(line.rsplit(" ", 1)[1]) for line in refused) == 4


# --- duplicates --------------------------------------------------------------------------------


def test_thirty_concurrent_deliveries_make_one_row(base: str, seeded: Database) -> None:
    doc = payload("stripe", "tenant.payment_intent.succeeded")
    body = json.dumps(doc).encode()
    header = signature_header(body, WHSEC_CONNECT)
    with ThreadPoolExecutor(30) as pool:
        answers = list(
            pool.map(
                lambda _: stripe_post(base, body, path="/webhooks/stripe", header=header),
                range(30),
            )
        )
    assert [a.status_code for a in answers] == [200] * 30
    assert sum(1 for a in answers if a.json()["duplicate"] is False) == 1
    assert sorted(a.json()["delivery_count"] for a in answers) == list(range(1, 31))
    assert stored_row(seeded, doc["id"]).delivery_count == 30
    assert wait_applied(seeded, doc["id"]) == {doc["id"]: "applied"}
    assert count(seeded, Payment) == 1
    assert metric(base, "received") == 1 and metric(base, "duplicate") == 29


# --- the database goes away --------------------------------------------------------------------


def test_database_down_is_503_and_nothing_is_stored(
    seeded: Database, db_url: str, tmp_path: Path
) -> None:
    if db_url.startswith("postgresql"):
        down = Database.from_url("postgresql+psycopg://nobody@127.0.0.1:1/nothing")
    else:  # a "database file" that is a folder: SQLite cannot open it
        down = Database.from_url(f"sqlite:///{tmp_path}")
    _doc, body = event_body()
    try:
        with running(create_app(settings_for(db_url), db=down)) as url:
            answer = stripe_post(url, body)
            assert answer.status_code == 503, answer.text
            assert answer.json()["error"] == "database unavailable; try again later"
            assert metric(url, "unavailable") == 1
    finally:
        down.dispose()
    assert count(seeded, WebhookEvent) == 0


def test_the_writer_reconnects_after_postgres_drops_it(
    base: str, seeded: Database, db_url: str
) -> None:
    if not db_url.startswith("postgresql"):
        pytest.skip("the group-commit writer is Postgres only")
    _first, first_body = event_body(id="evt_before_drop")
    assert stripe_post(base, first_body).status_code == 200
    with seeded.engine.connect() as conn:
        conn.execute(
            text(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE application_name = :name AND datname = current_database()"
            ),
            {"name": ingest.APPLICATION_NAME},
        )
        conn.commit()
        deadline = time.monotonic() + 60  # a bound for a failure, not a wait
        while conn.execute(
            text(
                "SELECT count(*) FROM pg_stat_activity WHERE application_name = :name "
                "AND datname = current_database()"
            ),
            {"name": ingest.APPLICATION_NAME},
        ).scalar_one():
            assert time.monotonic() < deadline
            time.sleep(0.02)
    second, second_body = event_body(id="evt_after_drop")
    dropped = stripe_post(base, second_body)
    assert dropped.status_code == 503  # its connection was gone: not stored, Stripe retries
    assert count(seeded, WebhookEvent, event_key=second["id"]) == 0
    retried = stripe_post(base, second_body)
    assert retried.status_code == 200 and retried.json()["duplicate"] is False


def test_a_lock_held_elsewhere_fails_the_delivery_with_503_instead_of_hanging(
    seeded: Database, db_url: str
) -> None:
    """The group-commit writer's own psycopg connection carries lock and statement timeouts
    (FAITHFLOW_INGEST_LOCK_TIMEOUT, default 2 s; FAITHFLOW_INGEST_STATEMENT_TIMEOUT, 5 s): a
    table lock held by another session fails the batch with 503 (the provider retries) instead
    of holding every acknowledgement until the lock goes. Before, it waited for ever (here:
    the client's 30 s timeout)."""
    if not db_url.startswith("postgresql"):
        pytest.skip("the group-commit writer is Postgres only")
    import psycopg

    _doc, body = event_body(id="evt_behind_a_lock")
    app = create_app(settings_for(db_url, ingest_lock_timeout=0.5), db=seeded)
    with running(app) as base, psycopg.connect(ingest.conninfo(seeded)) as holder:
        holder.execute("LOCK TABLE webhook_events IN SHARE ROW EXCLUSIVE MODE")  # stays open
        try:
            locked = stripe_post(base, body)
        finally:
            holder.rollback()
        retried = stripe_post(base, body)  # the lock is gone: the provider's retry is stored
    assert locked.status_code == 503
    assert retried.status_code == 200 and retried.json()["duplicate"] is False


# --- Postgres: group commit and NOTIFY ---------------------------------------------------------


def _delivery(key: str) -> tuple[ingest.Delivery, bytes]:
    _doc, body = event_body(id=key)
    parsed = ingest.read_body(body)
    return ingest.delivery(parse("stripe", "platform", parsed.payload), body, parsed), body


def test_group_commit_writes_many_deliveries_in_few_statements(db: Database, db_url: str) -> None:
    if not db_url.startswith("postgresql"):
        pytest.skip("the group-commit writer is Postgres only")
    woken = []

    async def scenario() -> list[ingest.Stored]:
        writer = ingest.GroupWriter(ingest.conninfo(db), on_stored=lambda: woken.append(1))
        await writer.start()
        try:
            items = [_delivery(f"evt_group_{i % 40}") for i in range(100)]  # 60 re-sends
            answers = await asyncio.gather(*(writer.store(item, body) for item, body in items))
        finally:
            await writer.stop()
        assert writer.rows == 100 and writer.batches < 100
        assert len(woken) == writer.batches
        return answers

    answers = asyncio.run(scenario())
    assert sum(1 for a in answers if not a.duplicate) == 40
    assert {a.status for a in answers} == {"received"}
    with db.read_session() as s:
        counts = s.execute(select(WebhookEvent.event_key, WebhookEvent.delivery_count)).all()
    assert len(counts) == 40 and sum(n for _, n in counts) == 100
    by_key: dict[str, list[int]] = {}
    for answer in answers:
        by_key.setdefault(answer.event_key, []).append(answer.delivery_count)
    assert all(sorted(seen) == list(range(1, len(seen) + 1)) for seen in by_key.values())


def test_a_stored_delivery_notifies_other_replicas(
    base: str, seeded: Database, db_url: str
) -> None:
    if not db_url.startswith("postgresql"):
        pytest.skip("LISTEN/NOTIFY is Postgres only")
    import psycopg

    with psycopg.connect(ingest.conninfo(seeded), autocommit=True) as listener:
        listener.execute(f"LISTEN {ingest.CHANNEL}")
        _, body = event_body(id="evt_notify")
        assert stripe_post(base, body).status_code == 200
        got = list(listener.notifies(timeout=10, stop_after=1))
    assert [n.channel for n in got] == [ingest.CHANNEL]


# --- reading bodies ----------------------------------------------------------------------------


def test_read_body_rules() -> None:
    assert ingest.read_body(b'{"a": "caf\xc3\xa9"}').text == '{"a": "café"}'
    assert ingest.read_body(b'\xef\xbb\xbf{"a": 1}').text == '{"a": 1}'  # a BOM is dropped
    assert ingest.read_body(rb'{"a": "\ud83d\ude00"}').text is not None  # a pair is fine
    assert ingest.read_body(rb'{"a": "\\ud800"}').text is not None  # an escaped backslash
    assert ingest.read_body(rb'{"a": "\ud800"}').text is None
    utf16 = '{"a": 1}'.encode("utf-16")
    assert ingest.read_body(utf16) == ingest.Body({"a": 1}, None)
    for bad in (b"nope", b'{"a": }', b"\xff\xfe\x00"):
        with pytest.raises(ingest.NotAnEvent) as refused:
            ingest.read_body(bad)
        assert refused.value.result == "not_json"
