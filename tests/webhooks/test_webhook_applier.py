"""The applier (issue 14): stored deliveries (`received`) applied once, in provider-time order,
by the receiver's worker and by `faithflow webhooks apply`; our own failures retried with
backoff and given up with an incident; several appliers at once apply every event once."""

from __future__ import annotations

import datetime as dt
import json
import threading
import time
from typing import Any

import pytest
from sqlalchemy import func, insert, select, text
from typer.testing import CliRunner
from webhook_support import payload, seed

from faithflow_ops.cli import app
from faithflow_ops.db import Database
from faithflow_ops.models import Incident, Payment, WebhookEvent
from faithflow_ops.webhooks import applier, inbox, stripe
from faithflow_ops.webhooks.events import parse

NOW = dt.datetime(2026, 12, 1, 9, 0, tzinfo=dt.UTC)


def store(db: Database, provider: str, name: str, doc: dict[str, Any] | None = None) -> int:
    """What the receiver's ingest writes: the verified delivery, `received`, nothing applied."""
    scope = name.split(".", 1)[0]
    event = parse(provider, scope, doc or payload(provider, name))
    with db.session() as s:
        return int(
            s.execute(
                insert(WebhookEvent)
                .values(
                    provider=event.provider,
                    scope=event.scope,
                    event_key=event.key,
                    event_type=event.type,
                    object_id=event.object_id,
                    customer_ref=event.customer_ref,
                    account_ref=event.account_ref,
                    occurred_at=event.occurred_at,
                    payload=event.payload,
                    status="received",
                    delivery_count=1,
                    first_received_at=NOW,
                    last_received_at=NOW,
                    next_attempt_at=NOW,
                )
                .returning(WebhookEvent.id)
            ).scalar_one()
        )


def row(db: Database, event_id: int) -> WebhookEvent:
    with db.read_session() as s:
        found = s.get(WebhookEvent, event_id)
        assert found is not None
        return found


def count(db: Database, model: Any, **where: Any) -> int:
    with db.read_session() as s:
        return s.scalar(select(func.count()).select_from(model).filter_by(**where)) or 0


def payment_event(n: int, verb: str = "succeeded", created: int = 1764579600) -> dict[str, Any]:
    doc = payload("stripe", f"tenant.payment_intent.{verb}")
    doc["id"] = f"evt_pay_{verb}_{n}"
    doc["created"] = created
    doc["data"]["object"]["id"] = f"pi_bench_{n}"
    return doc


@pytest.fixture
def seeded(db: Database) -> Database:
    seed(db)
    return db


def test_stored_events_are_applied_once(seeded: Database) -> None:
    ids = [
        store(seeded, "stripe", "tenant.payment_intent.succeeded", payment_event(n))
        for n in range(5)
    ]
    stats = applier.apply_waiting(seeded, now=NOW)
    assert stats.statuses == {"applied": 5}
    assert count(seeded, Payment) == 5
    assert {row(seeded, i).status for i in ids} == {"applied"}
    assert row(seeded, ids[0]).locked_by is None
    again = applier.apply_waiting(seeded, now=NOW)
    assert again.claimed == 0 and count(seeded, Payment) == 5


def test_events_of_one_object_apply_in_provider_time_order(seeded: Database) -> None:
    """Stored newest first: applied oldest first, so `processing` never undoes `succeeded`
    and nothing is stale."""
    later = store(
        seeded, "stripe", "tenant.payment_intent.succeeded", payment_event(1, created=1764579700)
    )
    earlier = store(
        seeded,
        "stripe",
        "tenant.payment_intent.processing",
        payment_event(1, "processing", 1764579600),
    )
    stats = applier.apply_waiting(seeded, now=NOW)
    assert stats.statuses == {"applied": 2}
    assert (row(seeded, earlier).status, row(seeded, later).status) == ("applied", "applied")
    with seeded.read_session() as s:
        assert s.scalars(select(Payment.status)).one() == "succeeded"


def test_a_failing_handler_backs_off_then_raises_an_incident(
    seeded: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(session: Any, event: Any) -> Any:
        raise RuntimeError("our bug")

    monkeypatch.setitem(stripe.TENANT, "payment_intent.succeeded", broken)
    event_id = store(seeded, "stripe", "tenant.payment_intent.succeeded", payment_event(7))
    now = NOW
    waits = []
    for attempt in range(1, inbox.MAX_ATTEMPTS + 1):
        stats = applier.apply_waiting(seeded, now=now)
        assert stats.statuses == {"failed": 1}, attempt
        stored = row(seeded, event_id)
        assert (stored.status, stored.attempts) == ("failed", attempt)
        assert "RuntimeError: our bug" in (stored.last_error or "")
        if stored.next_attempt_at is None:
            break
        waits.append(stored.next_attempt_at - now)
        # not due a second before its time
        assert (
            applier.apply_waiting(
                seeded, now=stored.next_attempt_at - dt.timedelta(seconds=1)
            ).claimed
            == 0
        )
        now = stored.next_attempt_at
    minutes = [w.total_seconds() / 60 for w in waits]
    assert minutes == [1, 2, 4, 8, 16, 32, 60, 60, 60]
    assert row(seeded, event_id).attempts == inbox.MAX_ATTEMPTS
    assert applier.apply_waiting(seeded, now=now + dt.timedelta(days=1)).claimed == 0
    with seeded.read_session() as s:
        incident = s.scalars(select(Incident).filter_by(cause=applier.INCIDENT_CAUSE)).one()
        assert incident.status == "open" and str(event_id) in (incident.detail or "")
    # the bug is fixed: a replay applies it
    monkeypatch.undo()
    assert inbox.replay(seeded, event_id, now=now).status == "applied"
    assert count(seeded, Payment) == 1


def test_a_lease_keeps_other_workers_off_until_it_expires(seeded: Database) -> None:
    event_id = store(seeded, "stripe", "tenant.payment_intent.succeeded", payment_event(3))
    taken = applier.claim(seeded, "crashed-worker", NOW, 10)
    assert [c.id for c in taken] == [event_id]
    assert applier.apply_waiting(seeded, now=NOW, worker="other").claimed == 0
    later = NOW + applier.LEASE + dt.timedelta(seconds=1)
    assert applier.apply_waiting(seeded, now=later, worker="other").statuses == {"applied": 1}
    # the crashed worker coming back finds nothing of its own to apply
    assert applier.apply_one(seeded, taken[0], "crashed-worker", later) is None
    assert count(seeded, Payment) == 1


def test_concurrent_appliers_apply_every_event_once(seeded: Database) -> None:
    """Fifty events for one new payment and a hundred for others, three appliers at once: no
    create-create race on the new payment, no event applied twice."""
    for n in range(100):
        store(seeded, "stripe", "tenant.payment_intent.succeeded", payment_event(n))
    for n in range(50):
        doc = payment_event(999, created=1764579600 + n)
        doc["id"] = f"evt_same_{n}"
        store(seeded, "stripe", "tenant.payment_intent.succeeded", doc)
    results: list[applier.ApplyStats] = []
    errors: list[BaseException] = []

    def run(name: str) -> None:
        try:
            results.append(applier.apply_waiting(seeded, now=NOW, worker=name, batch=20))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(f"w{i}",)) for i in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors
    total: dict[str, int] = {}
    for stats in results:
        for status, n in stats.statuses.items():
            total[status] = total.get(status, 0) + n
    assert total.get("failed", 0) == 0
    assert sum(total.values()) == 150
    assert count(seeded, Payment) == 101
    assert count(seeded, WebhookEvent, status="received") == 0


def test_the_job_previews_then_applies(seeded: Database) -> None:
    for n in range(3):
        store(seeded, "stripe", "tenant.payment_intent.succeeded", payment_event(n))
    runner = CliRunner()
    when = NOW.isoformat()
    preview = runner.invoke(app, ["webhooks", "apply", "--dry-run", "--now", when, "--json"])
    assert preview.exit_code == 0, preview.output
    doc = json.loads(preview.stdout)
    assert doc["counts"] == {"apply_event": 3} and count(seeded, Payment) == 0
    run = runner.invoke(app, ["webhooks", "apply", "--now", when, "--json"])
    assert run.exit_code == 0, run.output
    assert json.loads(run.stdout)["status"] == "succeeded"
    assert count(seeded, Payment) == 3
    again = runner.invoke(app, ["webhooks", "apply", "--now", when, "--json"])
    assert json.loads(again.stdout)["counts"] == {}


def test_backlog_counts_waiting_rows_and_their_age(seeded: Database) -> None:
    store(seeded, "stripe", "tenant.payment_intent.succeeded", payment_event(1))
    with seeded.read_session() as s:
        assert applier.backlog(s, NOW + dt.timedelta(minutes=6)) == (1, 360.0)
    applier.apply_waiting(seeded, now=NOW)
    with seeded.read_session() as s:
        assert applier.backlog(s, NOW) == (0, 0.0)


def test_the_worker_applies_what_it_is_woken_for(seeded: Database) -> None:
    worker = applier.Worker(seeded, poll=30.0)
    worker.start()
    try:
        event_id = store(seeded, "stripe", "tenant.payment_intent.succeeded", payment_event(5))
        worker.wake()
        deadline = threading.Event()
        for _ in range(200):
            if row(seeded, event_id).status == "applied":
                break
            deadline.wait(0.05)
        assert row(seeded, event_id).status == "applied"
    finally:
        worker.stop()
    assert worker.passes >= 1


def test_health_flags_a_backlog_older_than_five_minutes(seeded: Database) -> None:
    from faithflow_ops.health.checks import webhook_backlog_check

    with seeded.read_session() as s:
        assert webhook_backlog_check(s, NOW).status == "ok"
    store(seeded, "stripe", "tenant.payment_intent.succeeded", payment_event(1))
    with seeded.read_session() as s:
        assert webhook_backlog_check(s, NOW + dt.timedelta(minutes=4)).status == "ok"
        degraded = webhook_backlog_check(s, NOW + dt.timedelta(minutes=6))
        assert degraded.status == "warn" and "webhooks list --status received" in degraded.detail
        assert webhook_backlog_check(s, NOW + dt.timedelta(minutes=31)).status == "fail"


def test_the_worker_setting_reads_on_and_off() -> None:
    from faithflow_ops.config import Settings
    from faithflow_ops.errors import ConfigError

    assert Settings.from_env({}).webhook_worker is True
    assert Settings.from_env({"FAITHFLOW_WEBHOOK_WORKER": "off"}).webhook_worker is False
    assert Settings.from_env({"FAITHFLOW_WEBHOOK_WORKER": "ON"}).webhook_worker is True
    with pytest.raises(ConfigError, match="FAITHFLOW_WEBHOOK_WORKER='sometimes' is not on or off"):
        Settings.from_env({"FAITHFLOW_WEBHOOK_WORKER": "sometimes"})


def test_the_jobs_fallback_apply_handles_one_event_in_the_runners_transaction(
    seeded: Database,
) -> None:
    from faithflow_ops.actions import Action, StaleAction
    from faithflow_ops.jobs.webhooks_apply import JOB

    event_id = store(seeded, "stripe", "tenant.payment_intent.succeeded", payment_event(9))
    action = Action("apply_event", f"webhook_event:{event_id}", "", {"id": event_id})
    ctx: Any = type("Ctx", (), {"now": NOW})()
    with seeded.session() as s:
        JOB.apply(s, ctx, action)
    assert row(seeded, event_id).status == "applied" and count(seeded, Payment) == 1
    with seeded.session() as s, pytest.raises(StaleAction):
        JOB.apply(s, ctx, action)


def test_a_notify_from_another_replica_wakes_the_worker_and_stop_ends_the_listener(
    seeded: Database,
) -> None:
    """On Postgres the worker also LISTENs: a delivery another replica stored (its NOTIFY)
    is applied without waiting for the poll (here a minute, far past the bound below), and
    `stop()` ends the listener, which waits on its socket and on stop() at once."""
    if seeded.dialect != "postgresql":
        pytest.skip("LISTEN/NOTIFY is Postgres's; SQLite has one process storing and applying")
    worker = applier.Worker(seeded, poll=60.0, name="listening")
    worker.start()
    try:
        wait_for(lambda: worker.passes >= 1 and listening(seeded), "the worker's first pass")
        event_id = store(seeded, "stripe", "tenant.payment_intent.succeeded", payment_event(7))
        with seeded.engine.connect() as conn:  # what another replica's ingest does
            conn.execute(text(f"SELECT pg_notify('{applier.CHANNEL}', '')"))
            conn.commit()
        wait_for(lambda: row(seeded, event_id).status == "applied", "the notified event")
    finally:
        worker.stop(timeout=20)
    assert not [t.name for t in threading.enumerate() if t.name.startswith("webhook-")]
    # The listener closed its connection as its thread ended; the server drops the backend
    # from pg_stat_activity a moment after the client's Terminate, so wait for that.
    wait_for(lambda: not listening(seeded), "the listener's backend to end")


def listening(db: Database) -> bool:
    with db.read_session() as s:
        return bool(
            s.scalar(
                text(
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
                    f" AND query = 'LISTEN {applier.CHANNEL}'"
                )
            )
        )


def wait_for(condition: Any, what: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout  # a bound for a failure, not a wait
    while not condition():
        assert time.monotonic() < deadline, f"{what}: not within {timeout} s"
        time.sleep(0.01)
