"""Incidents (issue 6): one unresolved incident per cause, ack/resolve, and `incidents escalate`
against the alert webhook receiver and the PagerDuty stand-in (real httpx clients). Both
dialects."""

from __future__ import annotations

import datetime as dt
import json
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from fakes.disputes import AlertReceiver, Answer
from fakes.pagerduty import PagerDutyFake
from helpers import job_document, said
from sqlalchemy import select

from faithflow_ops.db import Database
from faithflow_ops.incidents.records import clear_incident, raise_incident
from faithflow_ops.models import AuditLog, Incident

T0 = dt.datetime(2026, 3, 1, 9, 0, tzinfo=dt.UTC)
ROUTING_KEY = "r" * 32


def at(**delta: float) -> str:
    return (T0 + dt.timedelta(**delta)).isoformat()


def open_incident(db: Database, cause: str = "domain:www.grace.test", **kw: Any) -> int:
    with db.session() as s:
        return raise_incident(
            s, cause=cause, kind="domain", title=f"{cause} is broken", now=T0, **kw
        ).id


def incident(db: Database, incident_id: int) -> Incident:
    with db.read_session() as s:
        found = s.get(Incident, incident_id)
        assert found is not None
        return found


@pytest.fixture
def hooks(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[AlertReceiver, PagerDutyFake]]:
    with AlertReceiver().serve() as alerts, PagerDutyFake().serve() as pager:
        monkeypatch.setenv("ALERT_WEBHOOK_URL", alerts.url + "/hook")
        monkeypatch.setenv("PAGERDUTY_ROUTING_KEY", ROUTING_KEY)
        monkeypatch.setenv("PAGERDUTY_API_BASE", pager.url)  # type: ignore[attr-defined]
        monkeypatch.setenv("FAITHFLOW_PROVIDER_MAX_ATTEMPTS", "1")
        yield alerts, pager  # type: ignore[misc]


def escalate(cli: Any, when: str, *extra: str) -> dict[str, Any]:
    result = cli("incidents", "escalate", "--json", "--now", when, *extra)
    return job_document(result)


def test_one_unresolved_incident_per_cause(db: Database) -> None:
    first = open_incident(db)
    with db.session() as s:
        again = raise_incident(
            s, cause="domain:www.grace.test", kind="domain", title="still broken", now=T0
        )
    assert again.id == first and not again.new
    row = incident(db, first)
    assert row.occurrences == 2 and row.title == "still broken"
    with db.session() as s:
        assert clear_incident(s, "domain:www.grace.test", now=T0, by="job:test") == first
        assert clear_incident(s, "domain:www.grace.test", now=T0, by="job:test") is None
    # broken again within FAITHFLOW_INCIDENT_FLAP_MINUTES (30) of a job resolving it: a flap,
    # the same incident reopened (issue 22.2)
    assert open_incident(db) == first
    row = incident(db, first)
    assert (row.status, row.flaps, row.resolved_at, row.opened_at) == ("open", 1, None, T0)
    later = T0 + dt.timedelta(minutes=31)
    with db.session() as s:
        clear_incident(s, "domain:www.grace.test", now=T0, by="job:test")
        again = raise_incident(
            s, cause="domain:www.grace.test", kind="domain", title="broken", now=later
        )
    assert again.new and again.id != first  # broken again later: a new incident
    with db.read_session() as s:
        actions = list(s.scalars(select(AuditLog.action).order_by(AuditLog.id)))
    assert actions == [
        "incident.open",
        "incident.resolve",
        "incident.reopen",
        "incident.resolve",
        "incident.open",
    ]


def test_concurrent_raises_of_one_cause_make_one_incident(db: Database) -> None:
    ids: list[int] = []
    errors: list[BaseException] = []

    def worker() -> None:
        try:
            ids.append(open_incident(db, "health:database"))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and len(set(ids)) == 1
    assert incident(db, ids[0]).occurrences == 8


def test_ack_and_resolve_from_the_cli(db: Database, cli: Any) -> None:
    incident_id = open_incident(db, tenant_id=None)
    listed = json.loads(cli("incidents", "list", "--json", "--status", "unresolved").stdout)
    assert [i["id"] for i in listed] == [incident_id]
    assert cli("incidents", "ack", str(incident_id)).exit_code == 0
    twice = cli("incidents", "ack", str(incident_id))
    assert twice.exit_code == 2 and "only an open incident can be acknowledged" in said(twice)
    assert cli("incidents", "resolve", str(incident_id)).exit_code == 0
    again = cli("incidents", "resolve", str(incident_id))
    assert again.exit_code == 2 and "already resolved" in said(again)
    shown = json.loads(cli("incidents", "show", str(incident_id), "--json").stdout)
    assert shown["status"] == "resolved" and shown["acknowledged_by"]
    missing = cli("incidents", "show", "999")
    assert missing.exit_code == 2 and "no incident 999" in said(missing)
    bad = cli("incidents", "list", "--status", "sleeping")
    assert bad.exit_code == 2 and "is not one of" in said(bad)
    # A mistyped --kind is refused, not answered with an empty list that reads "all clear".
    kind = cli("incidents", "list", "--kind", "domains")
    assert kind.exit_code == 2 and "kind 'domains' is not one of: domain, health, job" in said(kind)
    assert json.loads(cli("incidents", "list", "--json", "--kind", "domain").stdout)


def test_alert_at_once_then_page_only_when_unacknowledged(
    db: Database, cli: Any, hooks: tuple[AlertReceiver, PagerDutyFake]
) -> None:
    alerts, pager = hooks
    first = open_incident(db, severity="critical")
    second = open_incident(db, "health:smtp")
    preview = escalate(cli, at(minutes=1), "--dry-run")
    assert [a["kind"] for a in preview["actions"]] == ["alert", "alert"]
    assert alerts.alerts == []  # a preview sends nothing
    done = escalate(cli, at(minutes=1))
    assert [a["outcome"] for a in done["actions"]] == ["applied", "applied"]
    assert [a["id"] for a in alerts.alerts] == [f"incident-{first}", f"incident-{second}"]
    assert ":rotating_light:" in alerts.alerts[0]["text"]
    assert escalate(cli, at(minutes=2))["actions"] == []  # alerted once
    assert cli("incidents", "ack", str(second)).exit_code == 0
    paged = escalate(cli, at(minutes=31))
    assert [(a["kind"], a["target"]) for a in paged["actions"]] == [("page", f"incident:{first}")]
    assert pager.triggers[f"faithflow-incident-{first}"] == 1
    assert escalate(cli, at(minutes=40))["actions"] == []
    assert cli("incidents", "resolve", str(first)).exit_code == 0
    closed = escalate(cli, at(minutes=41))  # resolved by hand: announced at once
    assert [a["kind"] for a in closed["actions"]] == ["alert_resolved", "page_resolve"]
    assert alerts.alerts[-1]["type"] == "incident.resolved"
    assert alerts.alerts[-1]["id"] == f"incident-{first}-resolved"
    assert pager.events[-1]["event_action"] == "resolve"
    assert pager.events[-1]["dedup_key"] == f"faithflow-incident-{first}"
    assert incident(db, first).page_resolved_at is not None


def test_a_failing_alert_hook_is_retried_with_backoff_and_fails_nothing_else(
    db: Database, cli: Any, hooks: tuple[AlertReceiver, PagerDutyFake]
) -> None:
    alerts, _ = hooks
    incident_id = open_incident(db)
    alerts.queue("/hook", Answer(500, {"error": "down"}), Answer(500, {"error": "down"}))
    failed = escalate(cli, at(minutes=1))
    # its only action failed: the run failed (issue 22.5), exit 1
    assert failed["status"] == "failed" and failed["actions"][0]["outcome"] == "failed"
    row = incident(db, incident_id)
    assert row.alerted_at is None and row.hook_attempts == 1
    assert "alert: " in (row.last_hook_error or "")
    assert row.next_hook_at == T0 + dt.timedelta(minutes=2)
    assert escalate(cli, at(minutes=1, seconds=30))["actions"] == []  # waiting
    escalate(cli, at(minutes=2))  # second failure: the wait doubles
    assert incident(db, incident_id).next_hook_at == T0 + dt.timedelta(minutes=4)
    ok = escalate(cli, at(minutes=4))
    assert ok["actions"][0]["outcome"] == "applied"
    row = incident(db, incident_id)
    assert row.alerted_at is not None and row.last_hook_error is None
    assert len(alerts.alerts) == 3


def test_without_hooks_each_open_incident_is_reported_not_escalated(db: Database, cli: Any) -> None:
    incident_id = open_incident(db)
    resolved = open_incident(db, cause="domain:old.test")
    with db.session() as s:
        clear_incident(s, "domain:old.test", now=T0, by="test")
    doc = escalate(cli, at(hours=2))
    assert doc["status"] == "succeeded"
    (action,) = doc["actions"]
    assert (action["kind"], action["target"]) == ("not_escalated", f"incident:{incident_id}")
    assert "ALERT_WEBHOOK_URL" in action["reason"] and "PAGERDUTY_ROUTING_KEY" in action["reason"]
    assert action["outcome"] == "reported"
    row = incident(db, incident_id)
    assert row.alerted_at is None and row.paged_at is None and row.hook_attempts == 0
    assert incident(db, resolved).status == "resolved"


def test_a_failed_page_is_retried_next_run_and_leaves_the_alert_backoff_alone(
    db: Database, cli: Any, hooks: tuple[AlertReceiver, PagerDutyFake]
) -> None:
    from fakes.providers import Reply

    _, pager = hooks
    incident_id = open_incident(db)
    escalate(cli, at(minutes=1))  # alerted
    pager.queue("POST", "/v2/enqueue", Reply(500, {"status": "error"}))
    failed = escalate(cli, at(minutes=31))
    assert [(a["kind"], a["outcome"]) for a in failed["actions"]] == [("page", "failed")]
    row = incident(db, incident_id)
    assert row.paged_at is None and row.hook_attempts == 0 and row.last_hook_error is None
    assert "page: " in (row.last_page_error or "") and row.page_attempts == 1
    assert row.next_page_at == T0 + dt.timedelta(minutes=32)  # a 5xx: retried after a minute
    again = escalate(cli, at(minutes=32))
    assert [(a["kind"], a["outcome"]) for a in again["actions"]] == [("page", "applied")]
    assert incident(db, incident_id).paged_at is not None
