"""Issue 22 points 6 and 7: a job that misses its run is down at expected time + grace (as
Healthchecks.io judges a cron check — https://healthchecks.io/docs/configuring_checks/: "Grace
Time is the additional time to wait before sending an alert when a check is late"), and a
check needs FAITHFLOW_HEALTH_FAILURE_THRESHOLD failing sweeps in a row before an incident,
which a flapping check reopens instead of opening anew. Both dialects; `now` is an input."""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Iterator
from typing import Any

import pytest
from fakes.dns_server import DnsServer, serve_dns
from fakes.providers import stripe_fake
from fakes.smtp import free_port
from sqlalchemy import select

from faithflow_ops.config import Settings
from faithflow_ops.db import Database
from faithflow_ops.errors import ConfigError
from faithflow_ops.jobs import registry
from faithflow_ops.jobs.base import JobContext
from faithflow_ops.jobs.runner import RunResult, run_job
from faithflow_ops.models import Incident, JobRun

JOB = "subscription_metadata_backfill"  # daily at 02:10
LAST_RUN = dt.datetime(2026, 3, 2, 2, 10, tzinfo=dt.UTC)
MISSED = dt.datetime(2026, 3, 3, 2, 10, tzinfo=dt.UTC)  # the run that never came


@pytest.fixture(scope="module")
def dns() -> Iterator[DnsServer]:
    with serve_dns() as server:
        server.zone.a("edge.faithflow.test", "203.0.113.10")
        yield server


def settings(dns: DnsServer, db_url: str, **overrides: Any) -> Settings:
    cfg = Settings(
        database_url=db_url,
        dns_nameservers=(dns.nameserver,),
        domain_cname_target="edge.faithflow.test",
        health_timeout=2.0,
    )
    return dataclasses.replace(cfg, **overrides)


def sweep(db: Database, cfg: Settings, now: dt.datetime) -> RunResult:
    ctx = JobContext(now=now, dry_run=False, trigger="cli", settings=cfg)
    result = run_job(db, registry.get("health_sweep"), ctx)
    assert result.status == "succeeded", result.to_dict()
    return result


def recorded(result: RunResult, check: str) -> dict[str, Any]:
    (data,) = [
        a.action.data
        for a in result.actions
        if a.action.kind == "record_check" and a.action.data["check"] == check
    ]
    return data


def incidents(db: Database, cause: str) -> list[Incident]:
    with db.read_session() as s:
        found = list(s.scalars(select(Incident).where(Incident.cause == cause)))
        s.expunge_all()
        return found


def add_run(db: Database, job: str, started: dt.datetime) -> None:
    with db.session() as s:
        s.add(
            JobRun(
                job=job,
                trigger="scheduler",
                dry_run=False,
                status="succeeded",
                now=started,
                started_at=started,
                finished_at=started + dt.timedelta(seconds=20),
                counts={},
            )
        )


def test_a_daily_job_missing_one_run_is_down_after_its_grace_and_raises_one_incident(
    db: Database, db_url: str, dns: DnsServer
) -> None:
    add_run(db, JOB, LAST_RUN)
    cfg = settings(dns, db_url)
    cause = f"job:{JOB}"
    # missed 02:10; late (warn) within the grace, a quarter of the day: no incident
    late = sweep(db, cfg, MISSED + dt.timedelta(hours=1))
    assert recorded(late, cause)["status"] == "warn"
    assert recorded(late, cause)["detail"].startswith("late:")
    # 6 h after the missed time: down — twice in a row opens the incident, hours not days late
    first = sweep(db, cfg, MISSED + dt.timedelta(hours=6, minutes=5))
    assert recorded(first, cause)["status"] == "fail"
    assert "expected a run at 2026-03-03T02:10:00+00:00" in recorded(first, cause)["detail"]
    assert incidents(db, cause) == []
    second = sweep(db, cfg, MISSED + dt.timedelta(hours=6, minutes=10))
    assert second.counts["open_incident"] == 1
    (incident,) = incidents(db, cause)
    assert incident.status == "open" and "is down" in incident.title
    # the run comes: resolved
    add_run(db, JOB, MISSED + dt.timedelta(hours=6, minutes=12))
    sweep(db, cfg, MISSED + dt.timedelta(hours=6, minutes=15))
    assert [i.status for i in incidents(db, cause)] == ["resolved"]


def test_a_job_s_own_grace_overrides_the_share_of_its_period(
    db: Database, db_url: str, dns: DnsServer
) -> None:
    add_run(db, JOB, LAST_RUN)
    cfg = settings(dns, db_url, health_job_grace_overrides={JOB.upper(): 3600})
    at = MISSED + dt.timedelta(hours=1, minutes=5)
    assert recorded(sweep(db, cfg, at), f"job:{JOB}")["status"] == "fail"
    assert Settings.from_env(
        {f"FAITHFLOW_HEALTH_GRACE_{JOB.upper()}": "3600"}
    ).health_job_grace_overrides == {JOB.upper(): 3600}


def test_a_grace_for_no_job_and_a_bad_fraction_are_refused(
    db: Database, db_url: str, dns: DnsServer
) -> None:
    cfg = settings(dns, db_url, health_job_grace_overrides={"DUNING": 60})
    ctx = JobContext(now=MISSED, dry_run=False, trigger="cli", settings=cfg)
    with pytest.raises(ConfigError, match="FAITHFLOW_HEALTH_GRACE_DUNING names no job"):
        run_job(db, registry.get("health_sweep"), ctx)
    with db.read_session() as s:
        assert s.scalars(select(JobRun)).all() == []  # refused before anything is recorded
    with pytest.raises(ConfigError, match="FAITHFLOW_HEALTH_JOB_GRACE_FRACTION='2' is above 1"):
        Settings.from_env({"FAITHFLOW_HEALTH_JOB_GRACE_FRACTION": "2"})
    with pytest.raises(ConfigError, match="FAITHFLOW_HEALTH_FAILURE_THRESHOLD='0' is below 1"):
        Settings.from_env({"FAITHFLOW_HEALTH_FAILURE_THRESHOLD": "0"})
    with pytest.raises(ConfigError, match="FAITHFLOW_HEALTH_GRACE_DUNNING='soon'"):
        Settings.from_env({"FAITHFLOW_HEALTH_GRACE_DUNNING": "soon"})


def test_a_flapping_check_keeps_one_incident_and_counts_its_flaps(
    db: Database, db_url: str, dns: DnsServer
) -> None:
    down = settings(
        dns, db_url, stripe_secret_key="sk", stripe_api_base=f"http://127.0.0.1:{free_port()}"
    )
    t = dt.datetime(2026, 3, 2, 10, 0, tzinfo=dt.UTC)
    with stripe_fake().serve() as fake:
        up = dataclasses.replace(down, stripe_api_base=fake.url)
        # down, down, up, repeated every 5 minutes for an hour and a half
        for n in range(18):
            sweep(db, up if n % 3 == 2 else down, t + dt.timedelta(minutes=5 * n))
    (incident,) = incidents(db, "health:stripe")  # one incident for the whole flapping hour
    assert incident.opened_at == t + dt.timedelta(minutes=5)  # the 2nd failing sweep in a row
    assert incident.flaps == 5  # resolved by 6 passing sweeps, reopened by the next 5 failures
    assert incident.status == "resolved"  # the last sweep passed
    assert incident.resolved_at == t + dt.timedelta(minutes=85)
