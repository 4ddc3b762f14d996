"""Payment retries that a treasurer can trust (issue 21, "Also"): a Paystack retry first asks
Paystack whether the invoice was already paid (GET /transaction/verify/:reference,
https://paystack.com/docs/api/transaction/#verify) and records that payment instead of charging;
a hard decline (Stripe decline_code, https://docs.stripe.com/declines/codes; Paystack's
gateway_response) stops the case's later retries — on SQLite and Postgres, `now` pinned."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator

import pytest
from fakes.providers import FakeAPI, Reply, paystack_fake, stripe_error, stripe_fake
from sqlalchemy import update
from test_dunning_job import NOW, World, kinds, run, settings

from faithflow_ops.db import Database
from faithflow_ops.models import Invoice

D = dt.timedelta(days=1)
AUTH = {"paystackAuthorizationCode": "AUTH_72btv547ic"}


@pytest.fixture
def world(db: Database) -> World:
    return World(db)


@pytest.fixture
def paystack_api() -> Iterator[FakeAPI]:
    with paystack_fake().serve() as fake:
        yield fake


@pytest.fixture
def stripe_api() -> Iterator[FakeAPI]:
    with stripe_fake().serve() as fake:
        yield fake


def retry_rows(world: World, case_id: int) -> list[tuple[str, str | None, str | None]]:
    return [
        (a.step, a.retry_outcome, a.detail)
        for a in world.attempts(case_id)
        if a.channel == "payment_retry"
    ]


def test_a_paystack_retry_records_a_payment_paystack_already_has_and_charges_nothing(
    world: World, paystack_api: FakeAPI
) -> None:
    cfg = settings(
        PAYSTACK_SECRET_KEY="sk_test_p",
        PAYSTACK_API_BASE=paystack_api.url,
        FAITHFLOW_DUNNING_WINDOW_HOURS="0",
    )
    _, case_id = world.past_due("lagos", NOW - 3 * D, invoice="INV_lagos1", metadata=AUTH)
    with world.db.session() as s:  # the invoice's own charge: paid by transfer, webhook in flight
        s.execute(update(Invoice).values(metadata_={"paystackReference": "T_transfer_1"}))
    paystack_api.objects["transactions"] = [
        {
            "reference": "T_transfer_1",
            "status": "success",
            "amount": 4900,
            "currency": "NGN",
            "gateway_response": "Approved",
            "channel": "bank_transfer",
            "paid_at": "2026-03-02T08:30:00.000Z",
        }
    ]
    run(world.db, cfg=cfg)
    paths = [(r.method, r.path) for r in paystack_api.requests]
    assert ("GET", "/transaction/verify/T_transfer_1") in paths
    assert ("POST", "/transaction/charge_authorization") not in paths
    [(step, outcome, detail)] = retry_rows(world, case_id)
    assert (step, outcome) == ("day3", "succeeded")
    assert "already has a successful charge T_transfer_1" in (detail or "")


def test_a_paystack_retry_checks_the_cases_earlier_retry_before_charging(
    world: World, paystack_api: FakeAPI
) -> None:
    cfg = settings(
        PAYSTACK_SECRET_KEY="sk_test_p",
        PAYSTACK_API_BASE=paystack_api.url,
        FAITHFLOW_DUNNING_WINDOW_HOURS="0",
    )
    _, case_id = world.past_due("lagos", NOW - 3 * D, invoice="INV_lagos1", metadata=AUTH)
    declined = {"status": "failed", "gateway_response": "Insufficient Funds", "reference": "x"}
    paystack_api.queue(
        "POST",
        "/transaction/charge_authorization",
        Reply(200, {"status": True, "message": "Charge attempted", "data": declined}),
    )
    run(world.db, cfg=cfg)  # day 3: declined (a soft decline: retries go on)
    run(world.db, NOW + 4 * D, cfg=cfg)  # day 7: checks day 3's reference first, then charges
    paths = [(r.method, r.path) for r in paystack_api.requests]
    verify = ("GET", f"/transaction/verify/ff-dunning-{case_id}-day3")
    charge = ("POST", "/transaction/charge_authorization")
    assert paths.index(verify) < len(paths) - 1 and paths[-1] == charge
    assert [o for _, o, _ in retry_rows(world, case_id)] == ["failed", "succeeded"]


def test_a_paystack_hard_decline_stops_the_later_retries(
    world: World, paystack_api: FakeAPI
) -> None:
    cfg = settings(
        PAYSTACK_SECRET_KEY="sk_test_p",
        PAYSTACK_API_BASE=paystack_api.url,
        FAITHFLOW_DUNNING_WINDOW_HOURS="0",
    )
    _, case_id = world.past_due("lagos", NOW - 3 * D, invoice="INV_lagos1", metadata=AUTH)
    stolen = {"status": "failed", "gateway_response": "Stolen Card", "reference": "x"}
    paystack_api.queue(
        "POST",
        "/transaction/charge_authorization",
        Reply(200, {"status": True, "message": "Charge attempted", "data": stolen}),
    )
    run(world.db, cfg=cfg)
    [(_, outcome, detail)] = retry_rows(world, case_id)
    assert outcome == "failed" and (detail or "").startswith("hard decline (Stolen Card)")

    day7 = run(world.db, NOW + 4 * D, cfg=cfg)
    assert not kinds(day7, "retry_payment")
    reasons = [a.reason for a in kinds(day7, "skip_steps")]
    assert "day7: no payment retry after a hard decline (Stolen Card) at step day3" in reasons
    assert [a.data["step"] for a in kinds(day7, "send_step")] == ["day7"]
    charges = [r for r in paystack_api.requests if r.path == "/transaction/charge_authorization"]
    assert len(charges) == 1
    assert [(s, o) for s, o, _ in retry_rows(world, case_id)] == [
        ("day3", "failed"),
        ("day7", "skipped"),
    ]


def test_a_stripe_stolen_card_decline_stops_the_later_retries(
    world: World, stripe_api: FakeAPI
) -> None:
    cfg = settings(
        STRIPE_SECRET_KEY="sk_test_x",
        STRIPE_API_BASE=stripe_api.url,
        FAITHFLOW_DUNNING_WINDOW_HOURS="0",
    )
    _, case_id = world.past_due(
        "grace", NOW - 3 * D, provider="stripe", currency="USD", invoice="in_stolen"
    )
    stripe_api.queue(
        "POST",
        "/v1/invoices/in_stolen/pay",
        stripe_error(
            402,
            "Your card was declined.",
            "card_error",
            code="card_declined",
            decline_code="stolen_card",
        ),
    )
    run(world.db, cfg=cfg)
    [(_, outcome, detail)] = retry_rows(world, case_id)
    assert outcome == "failed" and (detail or "").startswith("hard decline (stolen_card)")
    day7 = run(world.db, NOW + 4 * D, cfg=cfg)
    assert not kinds(day7, "retry_payment")
    pays = [r for r in stripe_api.requests if r.path == "/v1/invoices/in_stolen/pay"]
    assert len(pays) == 1
