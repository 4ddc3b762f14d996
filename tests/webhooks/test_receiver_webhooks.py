"""The webhook endpoints over real HTTP (uvicorn on loopback, httpx), with real signatures: the
seed's `webhook-idempotency` and `paystack-webhook-idempotency` suites, on SQLite and Postgres.

The receiver answers once a delivery is stored (`received`, or the status of a duplicate); the
applier inside the app applies it afterwards, so tests wait for the row to leave `received`
(`helpers.wait_applied`) before they look at effects."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest
from helpers import running, wait_applied
from sqlalchemy import func, select
from webhook_support import payload, seed

from faithflow_ops.config import Settings
from faithflow_ops.db import Database
from faithflow_ops.models import AuditLog, Payment, ProviderAccount, Subscription, WebhookEvent
from faithflow_ops.providers.paystack import signature
from faithflow_ops.providers.stripe import signature_header
from faithflow_ops.webhooks import inbox
from receiver.app import create_app

WHSEC = "whsec_test_platform"
WHSEC_CONNECT = "whsec_test_connect"
PAYSTACK_KEY = "sk_test_paystack"


def settings_for(url: str, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "database_url": url,
        "stripe_platform_webhook_secrets": (WHSEC,),
        "stripe_webhook_secrets": (WHSEC_CONNECT,),
        "paystack_secret_keys": (PAYSTACK_KEY,),
    }
    values.update(overrides)
    return Settings(**values)


@pytest.fixture
def seeded(db: Database) -> Database:
    seed(db)
    return db


@pytest.fixture
def base(seeded: Database, db_url: str) -> Iterator[str]:
    with running(create_app(settings_for(db_url), db=seeded)) as url:
        yield url


def body_of(doc: dict[str, Any]) -> bytes:
    return json.dumps(doc).encode()


def stripe_post(
    url: str,
    doc: dict[str, Any] | bytes,
    *,
    path: str = "/webhooks/stripe/platform",
    secret: str = WHSEC,
    timestamp: int | None = None,
    header: str | None = None,
) -> httpx.Response:
    body = doc if isinstance(doc, bytes) else body_of(doc)
    sig = header or signature_header(body, secret, timestamp)
    return httpx.post(url + path, content=body, headers={"Stripe-Signature": sig}, timeout=30)


def paystack_post(
    url: str,
    doc: dict[str, Any],
    *,
    path: str = "/webhooks/paystack/platform",
    key: str = PAYSTACK_KEY,
    headers: dict[str, str] | None = None,
) -> httpx.Response:
    body = body_of(doc)
    sent = {"x-paystack-signature": signature(body, key), **(headers or {})}
    return httpx.post(url + path, content=body, headers=sent, timeout=30)


def count(db: Database, model: Any, **where: Any) -> int:
    with db.read_session() as s:
        return s.scalar(select(func.count()).select_from(model).filter_by(**where)) or 0


def metric(url: str, result: str) -> float:
    for line in httpx.get(url + "/metrics").text.splitlines():
        if line.startswith("faithflow_webhook_deliveries_total{") and f'result="{result}"' in line:
            return float(line.rsplit(" ", 1)[1])
    return 0.0


# --- exactly once ------------------------------------------------------------------------------


def test_a_sequential_duplicate_is_answered_200_with_no_second_effect(
    base: str, seeded: Database
) -> None:
    doc = payload("stripe", "tenant.payment_intent.succeeded")
    first = stripe_post(base, doc, path="/webhooks/stripe", secret=WHSEC_CONNECT)
    second = stripe_post(base, doc, path="/webhooks/stripe", secret=WHSEC_CONNECT)
    assert (first.status_code, second.status_code) == (200, 200)
    assert first.json()["status"] == "received" and not first.json()["duplicate"]
    assert second.json()["duplicate"] and second.json()["delivery_count"] == 2
    assert wait_applied(seeded, doc["id"]) == {doc["id"]: "applied"}
    assert count(seeded, Payment) == 1


def test_twenty_concurrent_deliveries_of_one_event_apply_once(base: str, seeded: Database) -> None:
    # the checkout that records the subscription, then one failed payment sent 20 times at once
    earlier = [
        payload("stripe", "platform.checkout.session.completed"),
        payload("stripe", "platform.customer.subscription.updated"),
    ]
    for event in earlier:
        assert stripe_post(base, event).is_success
    wait_applied(seeded, *(event["id"] for event in earlier))
    doc = payload("stripe", "platform.invoice.payment_failed")
    body = body_of(doc)
    header = signature_header(body, WHSEC)
    audits_before = count(seeded, AuditLog, action="subscription.webhook_update")

    def send(_: int) -> httpx.Response:
        return stripe_post(base, body, header=header)

    with ThreadPoolExecutor(20) as pool:
        answers = list(pool.map(send, range(20)))
    assert [a.status_code for a in answers] == [200] * 20
    assert sum(1 for a in answers if not a.json()["duplicate"]) == 1
    assert sorted(a.json()["delivery_count"] for a in answers) == list(range(1, 21))
    assert wait_applied(seeded, doc["id"]) == {doc["id"]: "applied"}
    assert count(seeded, AuditLog, action="subscription.webhook_update") == audits_before + 1
    with seeded.read_session() as s:
        row = s.scalars(select(WebhookEvent).filter_by(event_key=doc["id"])).one()
        assert (row.delivery_count, row.status) == (20, "applied")
        sub = s.scalars(select(Subscription)).one()
        assert sub.status == "past_due"


def test_twenty_concurrent_paystack_deliveries_write_one_payment(
    base: str, seeded: Database
) -> None:
    doc = payload("paystack", "tenant.charge.success")
    with ThreadPoolExecutor(20) as pool:
        answers = list(
            pool.map(lambda _: paystack_post(base, doc, path="/webhooks/paystack"), range(20))
        )
    assert [a.status_code for a in answers] == [200] * 20
    assert sum(1 for a in answers if not a.json()["duplicate"]) == 1
    wait_applied(seeded, answers[0].json()["event_key"])
    assert count(seeded, Payment) == 1
    assert count(seeded, WebhookEvent) == 1


def test_reversed_order_over_http_keeps_the_newest_state(base: str, seeded: Database) -> None:
    statuses = {}
    for name in (  # each applied before the next arrives: the older state comes last
        "platform.checkout.session.completed",
        "platform.customer.subscription.updated",
        "platform.customer.subscription.created",
    ):
        doc = payload("stripe", name)
        answer = stripe_post(base, doc)
        assert answer.status_code == 200 and answer.json()["status"] == "received"
        statuses[name] = wait_applied(seeded, doc["id"])[doc["id"]]
    assert statuses["platform.customer.subscription.updated"] == "applied"
    assert statuses["platform.customer.subscription.created"] == "stale"
    with seeded.read_session() as s:
        assert s.scalars(select(Subscription)).one().status == "active"


# --- verification ------------------------------------------------------------------------------


def test_tampered_body_is_400_and_nothing_is_stored(base: str, seeded: Database) -> None:
    doc = payload("stripe", "platform.customer.updated")
    body = body_of(doc)
    header = signature_header(body, WHSEC)
    tampered = body.replace(b"finance@", b"thief@")
    answer = stripe_post(base, tampered, header=header)
    assert answer.status_code == 400
    assert "signature does not verify" in answer.json()["error"]
    assert count(seeded, WebhookEvent) == 0
    assert metric(base, "bad_signature") == 1


def test_wrong_secret_missing_header_and_expired_timestamp_are_400(
    base: str, seeded: Database
) -> None:
    doc = payload("stripe", "platform.customer.updated")
    wrong = stripe_post(base, doc, secret="whsec_someone_else")
    assert wrong.status_code == 400
    missing = httpx.post(base + "/webhooks/stripe/platform", content=body_of(doc))
    assert missing.status_code == 400 and "missing Stripe-Signature" in missing.json()["error"]
    expired = stripe_post(base, doc, timestamp=int(time.time()) - 301)
    assert expired.status_code == 400
    assert "older than the 300 s tolerance" in expired.json()["error"]
    assert count(seeded, WebhookEvent) == 0


def test_a_second_secret_verifies_during_rotation(seeded: Database, db_url: str) -> None:
    settings = settings_for(db_url, stripe_platform_webhook_secrets=("whsec_old", "whsec_new"))
    doc = payload("stripe", "platform.customer.updated")
    body = body_of(doc)
    with running(create_app(settings, db=seeded)) as url:
        assert stripe_post(url, body, secret="whsec_new").status_code == 200
        # Stripe signs with every active secret: one v1 per secret, any may match
        ts = int(time.time())
        unknown = signature_header(body, "whsec_unknown", ts).split(",")[1]
        both = f"{signature_header(body, 'whsec_old', ts)},{unknown}"
        assert stripe_post(url, body, header=both).json()["duplicate"] is True
        assert stripe_post(url, body, secret="whsec_retired").status_code == 400


def test_signed_non_json_and_non_events_are_400(base: str, seeded: Database) -> None:
    not_json = stripe_post(base, b"this is not json")
    assert not_json.status_code == 400 and not_json.json()["error"] == "signed body is not JSON"
    not_event = stripe_post(base, {"hello": "world"})
    assert not_event.status_code == 400 and "not a Stripe event" in not_event.json()["error"]
    assert count(seeded, WebhookEvent) == 0


def test_oversized_body_is_413(base: str) -> None:
    huge = b'{"pad": "' + b"x" * (300 * 1024) + b'"}'
    answer = stripe_post(base, huge)
    assert answer.status_code == 413 and "larger than" in answer.json()["error"]


def test_unknown_type_is_stored_as_ignored(base: str, seeded: Database) -> None:
    doc = payload("stripe", "platform.customer.updated")
    doc["id"], doc["type"] = "evt_product_created", "product.created"
    answer = stripe_post(base, doc)
    assert answer.status_code == 200 and answer.json()["status"] == "received"
    assert wait_applied(seeded, doc["id"]) == {doc["id"]: "ignored"}
    assert count(seeded, WebhookEvent, status="ignored") == 1


def test_missing_secret_is_503_naming_the_variable(seeded: Database, db_url: str) -> None:
    settings = settings_for(db_url, stripe_webhook_secrets=(), paystack_secret_keys=())
    with running(create_app(settings, db=seeded)) as url:
        stripe = stripe_post(
            url,
            payload("stripe", "tenant.payment_intent.succeeded"),
            path="/webhooks/stripe",
            secret=WHSEC_CONNECT,
        )
        assert stripe.status_code == 503 and "STRIPE_WEBHOOK_SECRET" in stripe.json()["error"]
        paystack = paystack_post(url, payload("paystack", "tenant.charge.success"))
        assert paystack.status_code == 503 and "PAYSTACK_SECRET_KEY" in paystack.json()["error"]


def test_paystack_signature_is_checked(base: str, seeded: Database) -> None:
    doc = payload("paystack", "platform.subscription.create")
    assert paystack_post(base, doc, key="sk_wrong").status_code == 400
    good = paystack_post(base, doc)
    assert good.status_code == 200 and good.json()["status"] == "received"
    key = good.json()["event_key"]
    assert wait_applied(seeded, key) == {key: "applied"}
    again = paystack_post(base, doc).json()
    assert again["duplicate"] is True and again["status"] == "applied"


def test_paystack_source_allowlist_and_trusted_proxies(seeded: Database, db_url: str) -> None:
    from faithflow_ops.config import _networks

    allow = _networks({"X": "52.31.139.75,52.49.173.169,52.214.14.220"}, "X")
    doc = payload("paystack", "tenant.charge.success")
    forwarded = {"X-Forwarded-For": "52.31.139.75"}
    with running(create_app(settings_for(db_url, paystack_allowed_ips=allow), db=seeded)) as url:
        refused = paystack_post(url, doc, path="/webhooks/paystack")
        assert refused.status_code == 403 and "127.0.0.1" in refused.json()["error"]
        # X-Forwarded-For is not believed unless the peer is a trusted proxy
        spoofed = paystack_post(url, doc, path="/webhooks/paystack", headers=forwarded)
        assert spoofed.status_code == 403
        assert metric(url, "forbidden_address") == 2
    proxied = settings_for(
        db_url, paystack_allowed_ips=allow, trusted_proxies=_networks({"X": "127.0.0.1"}, "X")
    )
    with running(create_app(proxied, db=seeded)) as url:
        ok = paystack_post(url, doc, path="/webhooks/paystack", headers=forwarded)
        assert ok.status_code == 200
        wait_applied(seeded, ok.json()["event_key"])
        other = {"X-Forwarded-For": "52.31.139.75, 203.0.113.9"}  # the last hop is not Paystack
        assert paystack_post(url, doc, path="/webhooks/paystack", headers=other).status_code == 403


# --- recovery ----------------------------------------------------------------------------------


def test_unknown_tenant_then_replay_after_linking_applies_once(db: Database, db_url: str) -> None:
    seed(db, link=False)
    doc = payload("stripe", "tenant.payment_intent.succeeded")
    with running(create_app(settings_for(db_url), db=db)) as url:
        first = stripe_post(url, doc, path="/webhooks/stripe", secret=WHSEC_CONNECT)
        assert first.status_code == 200 and first.json()["status"] == "received"
        assert wait_applied(db, doc["id"]) == {doc["id"]: "unmatched"}
        with db.session() as s:
            grace_id = s.scalar(select(func.min(ProviderAccount.id)))  # none yet
            assert grace_id is None
            from faithflow_ops.models import Tenant

            grace = s.scalars(select(Tenant).filter_by(slug="grace")).one()
            s.add(
                ProviderAccount(
                    tenant_id=grace.id,
                    provider="stripe",
                    kind="connect_account",
                    external_id="acct_1QGraceConnect",
                    source="test",
                )
            )
        assert inbox.replay(db, first.json()["id"]).status == "applied"
        again = stripe_post(url, doc, path="/webhooks/stripe", secret=WHSEC_CONNECT)
        assert again.json()["duplicate"] is True and again.json()["status"] == "applied"
    assert inbox.replay(db, first.json()["id"]).duplicate
    assert count(db, Payment) == 1


def test_database_down_is_503_then_the_retry_applies_once(seeded: Database, db_url: str) -> None:
    doc = payload("stripe", "tenant.payment_intent.succeeded")
    down = Database.from_url("postgresql+psycopg://nobody@127.0.0.1:1/nothing")
    try:
        with running(create_app(settings_for(db_url), db=down)) as url:
            answer = stripe_post(url, doc, path="/webhooks/stripe", secret=WHSEC_CONNECT)
            assert answer.status_code == 503
            assert answer.json()["error"] == "database unavailable; try again later"
    finally:
        down.dispose()
    assert count(seeded, WebhookEvent) == 0
    with running(create_app(settings_for(db_url), db=seeded)) as url:
        for _ in range(2):  # the provider's retries
            retry = stripe_post(url, doc, path="/webhooks/stripe", secret=WHSEC_CONNECT)
            assert retry.status_code == 200
        assert wait_applied(seeded, doc["id"]) == {doc["id"]: "applied"}
    assert count(seeded, Payment) == 1


def test_handler_failure_is_kept_as_failed_and_replayed_once(
    base: str, seeded: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    from faithflow_ops.webhooks import stripe as handlers

    def broken(*args: Any) -> Any:
        raise RuntimeError("handler bug")

    monkeypatch.setitem(handlers.TENANT, "payment_intent.succeeded", broken)
    doc = payload("stripe", "tenant.payment_intent.succeeded")
    answer = stripe_post(base, doc, path="/webhooks/stripe", secret=WHSEC_CONNECT)
    # stored and acknowledged: our bug is the applier's to record, not the provider's to retry
    assert answer.status_code == 200 and answer.json()["status"] == "received"
    assert wait_applied(seeded, doc["id"]) == {doc["id"]: "failed"}
    with seeded.read_session() as s:
        row = s.scalars(select(WebhookEvent).filter_by(event_key=doc["id"])).one()
        assert row.last_error is not None and "handler bug" in row.last_error
    assert count(seeded, WebhookEvent, status="failed") == 1 and count(seeded, Payment) == 0
    monkeypatch.undo()
    assert inbox.replay(seeded, answer.json()["id"]).status == "applied"
    assert stripe_post(base, doc, path="/webhooks/stripe", secret=WHSEC_CONNECT).json()["duplicate"]
    assert count(seeded, Payment) == 1


def test_the_openapi_document_lists_the_webhook_routes(base: str) -> None:
    paths = httpx.get(base + "/docs/openapi.json").json()["paths"]
    for path in (
        "/webhooks/stripe",
        "/webhooks/stripe/platform",
        "/webhooks/paystack",
        "/webhooks/paystack/platform",
    ):
        assert "post" in paths[path]
        # what the provider sends, documented (and drawn by tests/receiver/test_openapi_fuzz.py)
        operation = paths[path]["post"]
        header = "Stripe-Signature" if "stripe" in path else "x-paystack-signature"
        assert [(p["name"], p["in"]) for p in operation["parameters"]] == [(header, "header")]
        body = operation["requestBody"]["content"]["application/json"]["schema"]
        assert body["type"] == "object" and set(body["required"]) >= {"data"}


def test_secrets_and_signatures_are_never_logged(base: str) -> None:
    import io
    import logging

    from faithflow_ops.logging import configure

    stream = io.StringIO()
    root = logging.getLogger()
    saved = root.handlers[:]
    configure("json", stream=stream)
    doc = payload("stripe", "platform.customer.updated")
    body = body_of(doc)
    header = signature_header(body, WHSEC)
    try:
        stripe_post(base, body, header=header)
        stripe_post(base, body, secret="whsec_wrong_one")
        paystack_post(base, payload("paystack", "platform.subscription.create"), key="sk_bad")
        deadline = time.monotonic() + 60  # a bound for a failure, not a wait
        while stream.getvalue().count('"event": "request"') < 3:
            assert time.monotonic() < deadline
            time.sleep(0.01)
    finally:
        root.handlers[:] = saved
    out = stream.getvalue()
    lines = [json.loads(line) for line in out.splitlines()]
    events = [line["event"] for line in lines]
    assert events.count("webhook refused") == 2
    # one line per accepted delivery: the request line carries the webhook's fields
    accepted = [line for line in lines if line.get("event_key") == doc["id"]]
    assert len(accepted) == 1 and accepted[0]["event"] == "request"
    assert accepted[0]["result"] == "received" and accepted[0]["status"] == 200
    for secret in (WHSEC, "whsec_wrong_one", PAYSTACK_KEY, "sk_bad", header.split("v1=")[1]):
        assert secret not in out
