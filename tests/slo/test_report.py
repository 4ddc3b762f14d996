"""`faithflow slo report` from the database alone: SLI, budget left and worst offenders of
each objective over a window, as of a given `now`."""

from __future__ import annotations

import datetime as dt
import json

from slo_world import NOW, answers, delivery, message, run

from faithflow_ops.db import Database
from faithflow_ops.jobs.registry import JOBS
from faithflow_ops.slo import spec
from faithflow_ops.slo.report import build

AGO = NOW - dt.timedelta(days=1)


def _world(db: Database) -> None:
    with db.session() as session:
        # dunning: 99 good runs and 1 failure = 99 %, exactly the objective; health: 2 of 10
        for i in range(98):
            run(session, "dunning", "succeeded", AGO + dt.timedelta(minutes=i))
        run(session, "dunning", "partial", NOW - dt.timedelta(minutes=5))
        run(session, "dunning", "failed", AGO, error="ProviderError: Stripe 500")
        for i in range(8):
            run(session, "health_sweep", "succeeded", AGO + dt.timedelta(minutes=i))
        run(session, "health_sweep", "abandoned", AGO)
        run(session, "health_sweep", "failed", AGO, error="dns timeout")
        run(session, "dunning", "failed", AGO, dry_run=True)  # a preview: never counted
        run(session, "dunning", "failed", NOW - dt.timedelta(days=40))  # before the window
        # task endpoints: 3 http runs, 1 failed (counted by job_success)
        run(session, "health_sweep", "succeeded", AGO, trigger="http")
        run(session, "health_sweep", "succeeded", AGO, trigger="http")
        run(session, "dunning", "failed", AGO, trigger="http")
        # the receiver's answers: tasks 2 good and 1 502; webhooks 997 fast, 2 slow (0.3 s),
        # 1 503, and 40 refusals (4xx: not counted); an hour before the window is left out
        answers(session, "/tasks/dunning", "2xx", 2, AGO)
        answers(session, "/tasks/dunning", "5xx", 1, AGO)
        answers(session, "/webhooks/stripe", "2xx", 997, AGO)
        answers(session, "/webhooks/stripe", "2xx", 2, AGO, seconds=0.3)
        answers(session, "/webhooks/paystack", "5xx", 1, AGO + dt.timedelta(hours=2))
        answers(session, "/webhooks/stripe", "4xx", 40, AGO, seconds=2.0)
        answers(session, "/webhooks/stripe", "5xx", 500, NOW - dt.timedelta(days=31))
        answers(session, "/webhooks/stripe", "5xx", 70, NOW)  # the hour of `now`: not over
        # webhooks: 3 applied fast, 1 applied late (90 s), 1 waiting for 10 min, 1 just in
        for _ in range(3):
            delivery(session, "applied", AGO)
        delivery(session, "applied", AGO, applied_after=90, event_type="charge.dispute.created")
        delivery(session, "received", NOW - dt.timedelta(minutes=10), provider="paystack")
        delivery(session, "received", NOW - dt.timedelta(seconds=5))
        # outbox: 8 sent or delivered, 1 failed sms, 1 unknown; suppressed does not count
        for i in range(8):
            message(session, "delivered" if i % 2 else "sent", AGO)
        message(session, "failed", AGO, channel="sms", template="volunteer_reminder")
        message(session, "unknown", AGO)
        message(session, "suppressed", AGO)
        message(session, "queued", NOW - dt.timedelta(minutes=20))  # waiting 20 min


def _by_name(db: Database) -> dict[str, dict[str, object]]:
    with db.read_session() as session:
        lines = build(session, spec.load(), now=NOW, since=NOW - dt.timedelta(days=30))
    return {line.name: line.to_dict() for line in lines}


def test_report_measures_each_objective_from_stored_rows(db: Database) -> None:
    _world(db)
    got = _by_name(db)

    jobs = got["job_success"]  # every trigger counts: the 3 task runs too
    assert (jobs["good"], jobs["total"]) == (99 + 8 + 2, 100 + 10 + 3)
    assert jobs["status"] == "breached"  # 109/113 = 96.5 % < 99 %
    # 2 bad runs each; health_sweep's are 2 of 12, dunning's 2 of 101
    assert [w["job"] for w in jobs["worst"]] == ["health_sweep", "dunning"]
    assert jobs["worst"][0]["last_error"] == "dns timeout"

    tasks = got["task_availability"]
    assert (tasks["good"], tasks["total"]) == (2, 3)
    assert tasks["worst"] == [{"route": "/tasks/dunning", "5xx": 1, "requests": 3}]

    ingest = got["webhook_ingest_availability"]  # 1 5xx in 1000 = 99.9 % < 99.95 %
    assert (ingest["good"], ingest["total"]) == (999, 1000)
    assert ingest["status"] == "breached" and ingest["budget_left"] == -1.0
    assert ingest["worst"] == [{"route": "/webhooks/paystack", "5xx": 1, "requests": 1}]
    latency = got["webhook_ingest_latency"]  # the 2 answers over 0.25 s (the 503 was fast)
    assert (latency["good"], latency["total"]) == (998, 1000)
    assert latency["status"] == "ok" and latency["worst"][0]["slow"] == 2

    apply = got["webhook_apply_latency"]
    assert (apply["good"], apply["total"]) == (3, 5)  # the 5-second-old one is not decided
    assert {w["event_type"] for w in apply["worst"]} == {"charge.dispute.created", "invoice.paid"}

    outbox = got["outbox_delivery"]
    assert (outbox["good"], outbox["total"]) == (8, 10)
    assert outbox["budget_left"] == -19.0  # 20 % failed against a 1 % budget
    assert outbox["worst"][0]["unsent"] == 1

    assert got["outbox_backlog"]["status"] == "breached"  # 20 min > 10 min
    assert got["webhook_backlog"]["status"] == "breached"  # 10 min > 5 min

    fresh = got["job_freshness"]
    stale = {w["job"] for w in fresh["worst"]}
    assert "dunning" not in stale  # partial 5 minutes ago, limit 30 min
    assert fresh["status"] == "breached"
    assert fresh["total"] == len(JOBS)


def test_a_healthy_window_keeps_its_budget(db: Database) -> None:
    with db.session() as session:
        for i in range(50):
            run(session, "dunning", "succeeded", AGO + dt.timedelta(minutes=i))
        message(session, "sent", AGO)
    got = _by_name(db)
    assert got["job_success"]["status"] == "ok"
    assert got["job_success"]["budget_left"] == 1.0
    assert got["outbox_delivery"]["budget_left"] == 1.0
    assert got["task_availability"]["status"] == "no data"


def test_cli_report_json_and_table(db: Database, cli) -> None:  # type: ignore[no-untyped-def]
    _world(db)
    result = cli("slo", "report", "--since", "30d", "--now", NOW.isoformat(), "--json")
    assert result.exit_code == 0, result.stderr
    doc = json.loads(result.stdout)
    assert doc["since"] == (NOW - dt.timedelta(days=30)).isoformat()
    assert {o["name"] for o in doc["objectives"]} == set(spec.load().names())
    table = cli("slo", "report", "--now", NOW.isoformat())
    assert table.exit_code == 0, table.stderr
    assert "job_success" in table.stdout and "breached" in table.stdout
    bad = cli("slo", "report", "--since", "a while")
    assert bad.exit_code == 2 and "Traceback" not in bad.stderr


def test_the_worst_jobs_last_error_is_the_latest_message_not_a_later_silent_run(
    db: Database,
) -> None:
    """An abandoned run records no error: it must not hide the message of the failure before
    it, and runs that finished at the same instant are told apart by their order."""
    with db.session() as session:
        for i in range(3):
            run(session, "health_sweep", "succeeded", AGO + dt.timedelta(minutes=i))
        run(session, "health_sweep", "failed", AGO, error="older failure")
        run(session, "health_sweep", "failed", AGO + dt.timedelta(hours=1), error="dns timeout")
        run(session, "health_sweep", "abandoned", AGO + dt.timedelta(hours=2))
        run(session, "dunning", "failed", AGO, error="first")
        run(session, "dunning", "failed", AGO, error="second, same instant")
    worst = {w["job"]: w for w in _by_name(db)["job_success"]["worst"]}
    assert worst["health_sweep"]["last_error"] == "dns timeout"
    assert worst["dunning"]["last_error"] == "second, same instant"
