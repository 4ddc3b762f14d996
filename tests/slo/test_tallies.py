"""The receiver's request tallies (slo.tallies): counted in memory, added to request_tallies
by a flush, kept while the database is down, and read by `slo report`."""

from __future__ import annotations

import datetime as dt
import json

import httpx
import pytest
from helpers import running
from slo_world import NOW
from sqlalchemy import select

from faithflow_ops.config import Settings
from faithflow_ops.db import Database, utcnow
from faithflow_ops.models import RequestTally
from faithflow_ops.providers.stripe import signature_header
from faithflow_ops.slo import tallies
from receiver.app import create_app

WHSEC = "whsec_slo_tallies"


def _rows(db: Database) -> dict[tuple[str, str, str], int]:
    with db.read_session() as session:
        return {
            (t.route, t.status_class, t.le): t.count
            for t in session.scalars(select(RequestTally)).all()
        }


@pytest.mark.parametrize(
    ("seconds", "label"),
    [(0.001, "0.005"), (0.2, "0.25"), (0.25, "0.25"), (0.26, "0.5"), (10.0, "10.0"), (11, "+Inf")],
)
def test_an_answer_lands_in_the_smallest_bucket_it_fits(seconds: float, label: str) -> None:
    assert tallies.le_label(seconds) == label


def test_flushes_add_up_per_hour_route_class_and_bucket(db: Database) -> None:
    tally = tallies.Tally()
    for _ in range(3):
        tally.add("/webhooks/stripe", "2xx", 0.02, NOW)
    tally.add("/webhooks/stripe", "5xx", 0.3, NOW + dt.timedelta(minutes=59))
    assert tally.flush(db, NOW) == 2
    assert tally.pending == {}
    assert tally.flush(db, NOW) == 0  # nothing new: nothing written
    tally.add("/webhooks/stripe", "2xx", 0.02, NOW + dt.timedelta(minutes=5))  # same bucket
    tally.add("/webhooks/stripe", "2xx", 0.02, NOW + dt.timedelta(hours=1))  # the next hour
    tally.flush(db, NOW + dt.timedelta(hours=1))
    with db.read_session() as session:
        got = {
            (t.hour, t.status_class, t.le): t.count
            for t in session.scalars(select(RequestTally)).all()
        }
    assert got == {
        (NOW, "2xx", "0.025"): 4,
        (NOW, "5xx", "0.5"): 1,
        (NOW + dt.timedelta(hours=1), "2xx", "0.025"): 1,
    }


def test_counts_are_kept_while_the_database_is_down(db: Database) -> None:
    """The 5xx of an outage are counted when the database is back, not lost with it."""
    down = Database.from_url("postgresql+psycopg://root@127.0.0.1:1/down", create=False)
    tally = tallies.Tally()
    for _ in range(5):
        tally.add("/webhooks/stripe", "5xx", 2.0, NOW)
    try:
        with pytest.raises(Exception, match=r"(?i)connect"):
            tally.flush(down, NOW)
    finally:
        down.dispose()
    tally.add("/webhooks/stripe", "2xx", 0.01, NOW)
    assert sum(tally.pending.values()) == 6
    assert tally.flush(db, NOW + dt.timedelta(minutes=10)) == 2
    assert _rows(db) == {
        ("/webhooks/stripe", "5xx", "2.5"): 5,
        ("/webhooks/stripe", "2xx", "0.01"): 1,
    }


def test_hours_older_than_ninety_days_are_pruned_at_a_flush(db: Database) -> None:
    old = NOW - tallies.KEEP - dt.timedelta(hours=1)
    with db.session() as session:
        tallies.write(session, {(old, "/tasks/dunning", "2xx", "0.1"): 7}, old)
        tallies.write(
            session, {(NOW - dt.timedelta(days=89), "/tasks/dunning", "2xx", "0.1"): 1}, old
        )
    tally = tallies.Tally()
    tally.add("/tasks/dunning", "2xx", 0.05, NOW)
    tally.flush(db, NOW)
    with db.read_session() as session:
        hours = sorted(session.scalars(select(RequestTally.hour)).all())
    assert hours == [NOW - dt.timedelta(days=89), NOW]


def test_the_receiver_counts_its_answers_for_the_report(db: Database, db_url: str, cli) -> None:  # type: ignore[no-untyped-def]
    settings = Settings(
        database_url=db_url,
        integration_api_key="k" * 32,
        stripe_webhook_secrets=(WHSEC,),  # Paystack not configured: its deliveries get 503
        webhook_worker=False,
    )
    event = {
        "id": "evt_tally_1",
        "object": "event",
        "type": "product.created",
        "created": 1,
        "data": {"object": {"id": "prod_1", "object": "product"}},
    }
    body = json.dumps(event).encode()
    with running(create_app(settings, db=db, jobs=[])) as url:
        signed = {"Stripe-Signature": signature_header(body, WHSEC)}
        ok = httpx.post(url + "/webhooks/stripe", content=body, headers=signed)
        assert ok.status_code == 200, ok.text
        assert httpx.post(url + "/webhooks/stripe", content=b"{}").status_code == 400
        assert httpx.post(url + "/webhooks/paystack", content=b"{}").status_code == 503
        assert httpx.get(url + "/healthz").status_code == 200  # a probe: not tallied
        assert httpx.post(url + "/no/such/path").status_code == 404  # any path: not tallied
        assert _rows(db) == {}  # counted in memory until the next flush
    # the app's shutdown flushed its counts
    got = {(route, status_class): n for (route, status_class, _), n in _rows(db).items()}
    assert got == {
        ("/webhooks/stripe", "2xx"): 1,
        ("/webhooks/stripe", "4xx"): 1,
        ("/webhooks/paystack", "5xx"): 1,
    }
    later = (utcnow() + dt.timedelta(hours=1)).isoformat()
    result = cli("slo", "report", "--now", later, "--since", "1d", "--json")
    assert result.exit_code == 0, result.stderr
    lines = {o["name"]: o for o in json.loads(result.stdout)["objectives"]}
    ingest = lines["webhook_ingest_availability"]
    assert (ingest["good"], ingest["total"], ingest["status"]) == (1, 2, "breached")
    assert lines["webhook_ingest_latency"]["total"] == 2
    assert lines["task_availability"]["status"] == "no data"
