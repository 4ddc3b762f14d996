"""Issue 22 points 5, 7, 8: `incidents escalate` against the PagerDuty Events API v2 stand-in
and the alert webhook receiver (real httpx clients).

What PagerDuty documents (developer.pagerduty.com, Events API v2 "Send an Alert Event"; the
`event_action` is trigger|acknowledge|resolve, all correlated by `dedup_key`): "acknowledge"
stops the incident's escalation; a trigger after a resolve with the same key opens a *new*
incident; 202 accepted, 400 "invalid event" (sending it again cannot help), 429 and 5xx: retry
later. Both dialects."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator
from typing import Any

import pytest
from fakes.disputes import AlertReceiver, Answer
from fakes.pagerduty import PagerDutyFake, invalid
from fakes.providers import Reply
from helpers import job_document
from sqlalchemy import select

from faithflow_ops.config import Settings
from faithflow_ops.db import Database
from faithflow_ops.health.checks import job_checks
from faithflow_ops.incidents.records import clear_incident, raise_incident
from faithflow_ops.jobs import health_sweep
from faithflow_ops.jobs.incidents_escalate import backoff
from faithflow_ops.models import AuditLog, Incident, JobRun

T0 = dt.datetime(2026, 3, 1, 9, 0, tzinfo=dt.UTC)
ROUTING_KEY = "r" * 32
CAUSE = "domain:www.grace.test"


def at(**delta: float) -> str:
    return (T0 + dt.timedelta(**delta)).isoformat()


def raise_at(db: Database, when: dt.datetime, cause: str = CAUSE) -> int:
    with db.session() as s:
        return raise_incident(
            s, cause=cause, kind="domain", title=f"{cause} is down", now=when, severity="critical"
        ).id


def clear_at(db: Database, when: dt.datetime, cause: str = CAUSE) -> None:
    with db.session() as s:
        clear_incident(s, cause, now=when, by="job:domains_automate")


def incident(db: Database, incident_id: int) -> Incident:
    with db.read_session() as s:
        found = s.get(Incident, incident_id)
        assert found is not None
        s.expunge(found)
        return found


@pytest.fixture
def hooks(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[AlertReceiver, PagerDutyFake]]:
    with AlertReceiver().serve() as alerts, PagerDutyFake().serve() as pager:
        monkeypatch.setenv("ALERT_WEBHOOK_URL", alerts.url + "/hook")
        monkeypatch.setenv("PAGERDUTY_ROUTING_KEY", ROUTING_KEY)
        monkeypatch.setenv("PAGERDUTY_API_BASE", pager.url)  # type: ignore[attr-defined]
        monkeypatch.setenv("FAITHFLOW_PROVIDER_MAX_ATTEMPTS", "1")
        yield alerts, pager  # type: ignore[misc]


def escalate(cli: Any, when: str) -> dict[str, Any]:
    return job_document(cli("incidents", "escalate", "--json", "--now", when))


def kinds(doc: dict[str, Any]) -> list[tuple[str, str | None]]:
    return [(a["kind"], a.get("outcome")) for a in doc["actions"]]


def test_a_local_ack_sends_acknowledge_with_the_same_dedup_key(
    db: Database, cli: Any, hooks: tuple[AlertReceiver, PagerDutyFake]
) -> None:
    _, pager = hooks
    incident_id = raise_at(db, T0)
    key = f"faithflow-incident-{incident_id}"
    escalate(cli, at(minutes=1))  # alerted
    assert kinds(escalate(cli, at(minutes=31))) == [("page", "applied")]
    assert pager.alerts[key] == "triggered"
    assert cli("incidents", "ack", str(incident_id), "--now", at(minutes=35)).exit_code == 0
    assert kinds(escalate(cli, at(minutes=36))) == [("page_ack", "applied")]
    assert pager.events[-1]["event_action"] == "acknowledge"
    assert pager.events[-1]["dedup_key"] == key
    assert pager.alerts[key] == "acknowledged"  # PagerDuty stops escalating it
    assert incident(db, incident_id).page_acknowledged_at == T0 + dt.timedelta(minutes=36)
    assert escalate(cli, at(minutes=37))["actions"] == []  # sent once
    assert pager.triggers[key] == 1


def test_a_400_stops_paging_with_a_note_and_keeps_the_alert_error_apart(
    db: Database, cli: Any, hooks: tuple[AlertReceiver, PagerDutyFake]
) -> None:
    alerts, pager = hooks
    incident_id = raise_at(db, T0)
    alerts.queue("/hook", *[Answer(500, {"error": "slack down"})] * 3)
    pager.queue("POST", "/v2/enqueue", invalid("'payload.source' is missing or blank"))
    # Slack 500 and PagerDuty 400 in one run: every action failed → the run failed
    first = escalate(cli, at(minutes=31))
    assert kinds(first) == [("alert", "failed"), ("page", "failed")]
    assert first["status"] == "failed" and "every action failed (2 of 2)" in first["error"]
    row = incident(db, incident_id)
    assert (row.last_hook_error or "").startswith("alert: ")  # both errors kept
    assert "Event object is invalid" in (row.last_page_error or "")
    assert "not retried" in (row.last_page_error or "")
    assert row.page_stopped_at == T0 + dt.timedelta(minutes=31) and row.paged_at is None
    with db.read_session() as s:
        note = s.scalars(select(AuditLog).where(AuditLog.action == "incident.page_stopped")).one()
    assert note.entity_id == str(incident_id) and "PAGERDUTY_ROUTING_KEY" in json.dumps(note.after)
    # the 400 is never resent; the alert keeps backing off on its own (1, then 2 minutes)
    second = escalate(cli, at(minutes=32))
    assert kinds(second) == [("alert", "failed")] and second["status"] == "failed"
    third = escalate(cli, at(minutes=34))
    assert kinds(third) == [("alert", "failed")]
    assert [e["event_action"] for e in pager.events] == []  # nothing accepted, one request
    assert len([r for r in pager.requests if r.path == "/v2/enqueue"]) == 1
    # three failed escalate runs: job:incidents_escalate fails its health check (was `ok`)
    cfg = Settings(database_url="sqlite://")
    with db.read_session() as s:
        # runs are stamped with the time they really started: judge just after the last one
        last = s.scalars(select(JobRun.started_at).order_by(JobRun.started_at.desc())).first()
        assert last is not None
        checked = job_checks(s, cfg, last, health_sweep.monitored_jobs(cfg))
        found = {r.name: r for r in checked}
    state = found["job:incidents_escalate"]
    assert state.status == "fail" and "failed: every action failed" in state.detail


def test_a_429_or_5xx_backs_off_doubling_to_a_cap(
    db: Database, cli: Any, hooks: tuple[AlertReceiver, PagerDutyFake]
) -> None:
    _, pager = hooks
    incident_id = raise_at(db, T0)
    escalate(cli, at(minutes=1))
    busy = Reply(
        429,
        {
            "status": "throttle event",
            "message": "Requests for this service are arriving too quickly.  Please retry later.",
        },
    )
    pager.queue("POST", "/v2/enqueue", busy, Reply(502, "Bad Gateway"))
    assert kinds(escalate(cli, at(minutes=31))) == [("page", "failed")]
    assert incident(db, incident_id).next_page_at == T0 + dt.timedelta(minutes=32)
    assert escalate(cli, at(minutes=31, seconds=30))["actions"] == []  # waiting
    assert kinds(escalate(cli, at(minutes=32))) == [("page", "failed")]
    row = incident(db, incident_id)
    assert (row.page_attempts, row.next_page_at) == (2, T0 + dt.timedelta(minutes=34))
    assert row.page_stopped_at is None and "HTTP 502" in (row.last_page_error or "")
    assert kinds(escalate(cli, at(minutes=34))) == [("page", "applied")]
    row = incident(db, incident_id)
    assert row.paged_at is not None and row.page_attempts == 0 and row.last_page_error is None
    assert [backoff(n) for n in (1, 2, 3, 7, 8, 50)] == [
        dt.timedelta(minutes=m) for m in (1, 2, 4, 60, 60, 60)
    ]


def test_a_job_s_resolution_settles_before_it_is_announced_and_a_flap_reopens_it(
    db: Database, cli: Any, hooks: tuple[AlertReceiver, PagerDutyFake]
) -> None:
    alerts, pager = hooks
    incident_id = raise_at(db, T0)
    key = f"faithflow-incident-{incident_id}"
    escalate(cli, at(minutes=1))
    escalate(cli, at(minutes=31))  # paged
    clear_at(db, T0 + dt.timedelta(minutes=40))
    assert escalate(cli, at(minutes=41))["actions"] == []  # settling: nothing announced yet
    assert raise_at(db, T0 + dt.timedelta(minutes=50)) == incident_id  # a flap: reopened
    row = incident(db, incident_id)
    assert (row.status, row.flaps, row.opened_at) == ("open", 1, T0)
    assert escalate(cli, at(minutes=51))["actions"] == []  # still alerted and paged: no repeat
    clear_at(db, T0 + dt.timedelta(minutes=60))
    assert escalate(cli, at(minutes=89))["actions"] == []
    done = escalate(cli, at(minutes=90))  # healthy for FAITHFLOW_INCIDENT_FLAP_MINUTES (30)
    assert kinds(done) == [("alert_resolved", "applied"), ("page_resolve", "applied")]
    assert [a["type"] for a in alerts.alerts] == ["incident.opened", "incident.resolved"]
    assert "1 flap" in alerts.alerts[-1]["text"] and "after 60 min" in alerts.alerts[-1]["text"]
    assert pager.triggers[key] == 1 and pager.alerts[key] == "resolved"
    assert escalate(cli, at(minutes=91))["actions"] == []
    # after the window a failure is a new incident (and PagerDuty would open a new one too)
    assert raise_at(db, T0 + dt.timedelta(minutes=120)) != incident_id


def test_a_resolution_older_than_a_day_is_not_announced(
    db: Database, cli: Any, hooks: tuple[AlertReceiver, PagerDutyFake]
) -> None:
    alerts, _ = hooks
    raise_at(db, T0)
    escalate(cli, at(minutes=1))  # alerted
    clear_at(db, T0 + dt.timedelta(minutes=2))  # e.g. resolved before resolutions were posted
    assert escalate(cli, at(days=2))["actions"] == []
    assert [a["type"] for a in alerts.alerts] == ["incident.opened"]
