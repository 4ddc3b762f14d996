"""The health sweep (`faithflow health sweep|status|history`, POST /tasks/health/sweep): every
check ok and failing against loopback stand-ins (Stripe/Paystack/Render HTTP fakes, the Twilio
fake, aiosmtpd with trustme TLS, the loopback DNS server), unconfigured → skipped, job freshness
at chosen `now`s, incidents opened once and resolved, previews that write nothing, uptime from a
hand-made history, and bad inputs. Database tests run on SQLite and Postgres (`db`)."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import ssl
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import trustme
from aiosmtpd.smtp import AuthResult
from fakes.dns_server import DnsServer, serve_dns
from fakes.providers import Reply, paystack_error, paystack_fake, stripe_error, stripe_fake
from fakes.render import KEY, SERVICE, RenderFake
from fakes.smtp import authenticator, free_port, smtp_server
from fakes.twilio import SID, TOKEN, TwilioFake
from helpers import running, said
from sqlalchemy import func, select

from faithflow_ops.config import Settings
from faithflow_ops.db import Database
from faithflow_ops.errors import ConfigError
from faithflow_ops.health import checks
from faithflow_ops.health.checks import job_checks
from faithflow_ops.jobs import health_sweep, registry
from faithflow_ops.jobs.base import JobContext
from faithflow_ops.jobs.runner import RunResult, run_job
from faithflow_ops.models import (
    HealthCheckResult,
    Incident,
    JobRun,
    OutboundMessage,
    WebhookEvent,
)

NOW = dt.datetime(2026, 3, 2, 10, 0, tzinfo=dt.UTC)


@pytest.fixture(scope="module")
def dns() -> Iterator[DnsServer]:
    with serve_dns() as server:
        server.zone.a("edge.faithflow.test", "203.0.113.10")
        yield server


def base_settings(dns: DnsServer, db_url: str = "sqlite://", **overrides: Any) -> Settings:
    cfg = Settings(
        database_url=db_url,
        dns_nameservers=(dns.nameserver,),
        domain_cname_target="edge.faithflow.test",
        health_timeout=2.0,
    )
    return dataclasses.replace(cfg, **overrides)


def sweep(
    db: Database, cfg: Settings, now: dt.datetime = NOW, *, dry_run: bool = False
) -> RunResult:
    ctx = JobContext(now=now, dry_run=dry_run, trigger="cli", settings=cfg)
    result = run_job(db, registry.get("health_sweep"), ctx)
    assert result.status == "succeeded", result.to_dict()
    return result


def by_check(result: RunResult) -> dict[str, dict[str, Any]]:
    return {
        a.action.data["check"]: a.action.data
        for a in result.actions
        if a.action.kind == "record_check"
    }


def count(db: Database, model: Any) -> int:
    with db.read_session() as s:
        return int(s.scalar(select(func.count()).select_from(model)) or 0)


def incidents(db: Database) -> list[Incident]:
    with db.read_session() as s:
        found = list(s.scalars(select(Incident).order_by(Incident.id)))
        s.expunge_all()
        return found


# --- provider checks --------------------------------------------------------------------------


def test_unconfigured_providers_are_skipped_naming_the_variables(dns: DnsServer) -> None:
    cfg = base_settings(dns)
    got = {r.name: r for r in map(lambda f: f(cfg), PROVIDER_FUNCS)}
    assert {n: r.status for n, r in got.items()} == dict.fromkeys(
        ("stripe", "paystack", "twilio", "render", "smtp"), "skipped"
    )
    assert got["stripe"].detail == "STRIPE_SECRET_KEY is not set: stripe is not configured"
    assert got["paystack"].data == {"missing": ["PAYSTACK_SECRET_KEY"]}
    assert "TWILIO_ACCOUNT_SID and TWILIO_AUTH_TOKEN are not set" in got["twilio"].detail
    assert got["render"].data == {"missing": ["RENDER_API_KEY", "RENDER_SERVICE_ID"]}
    assert got["smtp"].detail.startswith("SMTP_URL is not set")
    partial = checks.render_check(base_settings(dns, render_api_key="k"))
    assert partial.data == {"missing": ["RENDER_SERVICE_ID"]}


PROVIDER_FUNCS = (
    checks.stripe_check,
    checks.paystack_check,
    checks.twilio_check,
    checks.render_check,
    checks.smtp_check,
)


def test_stripe_balance_ok_then_a_refused_key_a_5xx_and_a_429(dns: DnsServer) -> None:
    with stripe_fake().serve() as fake:
        cfg = base_settings(dns, stripe_secret_key="sk_test_x", stripe_api_base=fake.url)
        ok = checks.stripe_check(cfg)
        assert ok.status == "ok" and ok.latency_ms is not None and ok.latency_ms > 0
        assert "/v1/balance authenticated" in ok.detail
        (req,) = fake.requests
        assert (req.method, req.path) == ("GET", "/v1/balance")
        assert req.headers["authorization"] == "Bearer sk_test_x"
        fake.queue("GET", "/v1/balance", stripe_error(401, "Invalid API Key provided: sk_test_x"))
        refused = checks.stripe_check(cfg)
        assert refused.status == "fail" and "HTTP 401" in refused.detail
        assert refused.data["http_status"] == 401
        fake.queue("GET", "/v1/balance", stripe_error(500, "boom", "api_error"))
        before = len(fake.requests)
        down = checks.stripe_check(cfg)
        assert down.status == "fail" and "HTTP 500" in down.detail
        assert len(fake.requests) == before + 1  # one attempt: no retries in a health probe
        fake.queue("GET", "/v1/balance", stripe_error(429, "Too many requests", "rate_limit"))
        assert checks.stripe_check(cfg).status == "warn"


def test_stripe_unreachable_and_slow_fail_within_the_health_timeout(dns: DnsServer) -> None:
    gone = base_settings(
        dns, stripe_secret_key="sk_x", stripe_api_base=f"http://127.0.0.1:{free_port()}"
    )
    result = checks.stripe_check(gone)
    assert result.status == "fail" and "could not reach stripe" in result.detail
    with stripe_fake().serve() as fake:
        fake.queue("GET", "/v1/balance", Reply(200, {"object": "balance"}, delay=1.5))
        cfg = base_settings(
            dns, stripe_secret_key="sk_x", stripe_api_base=fake.url, health_timeout=0.1
        )
        slow = checks.stripe_check(cfg)
    assert slow.status == "fail" and slow.data["timed_out"] is True
    assert slow.latency_ms is not None and slow.latency_ms < 1400


def test_paystack_balance_ok_and_a_refused_key(dns: DnsServer) -> None:
    with paystack_fake().serve() as fake:
        cfg = base_settings(dns, paystack_secret_keys=("sk_live_p",), paystack_api_base=fake.url)
        ok = checks.paystack_check(cfg)
        assert ok.status == "ok", ok.detail
        assert [(r.method, r.path) for r in fake.requests] == [("GET", "/balance")]
        assert fake.requests[0].headers["authorization"] == "Bearer sk_live_p"
        fake.queue("GET", "/balance", paystack_error(401, "Invalid key"))
        refused = checks.paystack_check(cfg)
    assert refused.status == "fail" and "Invalid key" in refused.detail


def test_twilio_account_ok_wrong_token_and_suspended(dns: DnsServer) -> None:
    fake = TwilioFake()
    with fake.serve():
        cfg = base_settings(
            dns, twilio_account_sid=SID, twilio_auth_token=TOKEN, twilio_api_base=fake.url
        )
        ok = checks.twilio_check(cfg)
        assert ok.status == "ok" and ok.data["account_status"] == "active", ok.detail
        wrong = checks.twilio_check(dataclasses.replace(cfg, twilio_auth_token="nope"))
        assert wrong.status == "fail" and "401" in wrong.detail
        assert "TWILIO_AUTH_TOKEN" in wrong.detail
        fake.account_status = "suspended"
        suspended = checks.twilio_check(cfg)
    assert suspended.status == "fail" and "suspended, not active" in suspended.detail
    assert fake.accepted == []  # nothing was sent


def test_render_service_ok_and_a_wrong_key(dns: DnsServer) -> None:
    fake = RenderFake()
    with fake.serve():
        cfg = base_settings(
            dns, render_api_key=KEY, render_service_id=SERVICE, render_api_base=fake.url
        )
        ok = checks.render_check(cfg)
        assert ok.status == "ok", ok.detail
        assert fake.requests[-1].path == f"/v1/services/{SERVICE}"
        wrong = checks.render_check(dataclasses.replace(cfg, render_api_key="rnd_wrong"))
    assert wrong.status == "fail" and "401" in wrong.detail


# --- SMTP -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
def server_tls(ca: trustme.CA, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(context)
    bundle = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(bundle))
    monkeypatch.setenv("SSL_CERT_FILE", str(bundle))  # the probe's default context trusts it
    return context


def test_smtp_plain_connect_ehlo_noop_sends_nothing(dns: DnsServer) -> None:
    with smtp_server() as server:
        result = checks.smtp_check(base_settings(dns, smtp_url=server.url()))
    assert result.status == "ok", result.detail
    assert "EHLO, NOOP" in result.detail
    assert result.data == {"host": "127.0.0.1", "port": server.port}
    assert server.handler.messages == []


def test_smtp_starttls_with_login_and_implicit_tls(
    dns: DnsServer, server_tls: ssl.SSLContext
) -> None:
    with smtp_server(
        tls_context=server_tls,
        require_starttls=True,
        authenticator=authenticator,
        auth_exclude_mechanism=["LOGIN"],
    ) as server:
        url = server.url("smtp+starttls", "ops:s3cr3t")
        ok = checks.smtp_check(base_settings(dns, smtp_url=url))
        assert ok.status == "ok", ok.detail
        assert "EHLO, STARTTLS, AUTH, NOOP" in ok.detail and "s3cr3t" not in ok.detail
    with smtp_server(ssl_context=server_tls) as tls_server:
        implicit = checks.smtp_check(base_settings(dns, smtp_url=tls_server.url("smtps")))
    assert implicit.status == "ok" and "TLS, EHLO, NOOP" in implicit.detail


def deny(server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any) -> AuthResult:
    return AuthResult(
        success=False, handled=False, message="535 5.7.8 Authentication credentials invalid"
    )


def test_smtp_failures_refused_connection_wrong_password_and_missing_starttls(
    dns: DnsServer,
) -> None:
    with smtp_server(
        authenticator=deny, auth_require_tls=False, auth_exclude_mechanism=["LOGIN"]
    ) as server:
        bad = checks.smtp_check(base_settings(dns, smtp_url=server.url("smtp", "ops:wrong")))
    assert bad.status == "fail" and "SMTP 535" in bad.detail
    assert "check the user and password in SMTP_URL" in bad.detail
    refused = checks.smtp_check(
        base_settings(dns, smtp_url=f"smtp://127.0.0.1:{free_port()}", health_timeout=1.0)
    )
    assert refused.status == "fail" and "could not reach smtp" in refused.detail
    with smtp_server() as server:
        no_tls = checks.smtp_check(base_settings(dns, smtp_url=server.url("smtp+starttls")))
    assert no_tls.status == "fail" and "STARTTLS" in no_tls.detail


# --- DNS --------------------------------------------------------------------------------------


def test_dns_resolver_answers_and_a_dead_resolver_fails() -> None:
    with serve_dns() as server:
        server.zone.a("edge.faithflow.test", "203.0.113.10")
        ok = checks.dns_check(base_settings(server))
        assert ok.status == "ok" and "edge.faithflow.test" in ok.detail, ok.detail
        assert ok.data["nameservers"] == [server.nameserver]
        server.zone.drop_all = True  # every query dropped: no answer is waited for
        dead = checks.dns_check(base_settings(server, health_timeout=0.1))
    assert dead.status == "fail" and dead.data["answer"] == "timeout"
    assert server.nameserver in dead.detail


# --- database checks (both dialects) ----------------------------------------------------------


def add_run(
    db: Database,
    job: str,
    started: dt.datetime,
    status: str = "succeeded",
    *,
    dry_run: bool = False,
    error: str | None = None,
) -> int:
    with db.session() as s:
        run = JobRun(
            job=job,
            trigger="scheduler",
            dry_run=dry_run,
            status=status,
            now=started,
            started_at=started,
            finished_at=started + dt.timedelta(seconds=20),
            counts={},
            error=error,
        )
        s.add(run)
        s.flush()
        return int(run.id)


def job_state(db: Database, dns: DnsServer, job: str, now: dt.datetime) -> checks.CheckResult:
    cfg = base_settings(dns)
    with db.read_session() as s:
        found = {r.name: r for r in job_checks(s, cfg, now, health_sweep.monitored_jobs(cfg))}
    assert set(found) == {f"job:{spec.name}" for spec in registry.JOBS}
    return found[f"job:{job}"]


def test_job_freshness_ok_late_down_in_its_own_schedule(db: Database, dns: DnsServer) -> None:
    # Healthchecks.io's cron check: expected time + grace. dunning runs */15: last success
    # 10:00 → next expected 10:15; late after the 120 s slack (10:17); down after its grace, a
    # quarter of its 15-minute period (3 min 45 s → 10:18:45) — not after the 4th missed run.
    run_id = add_run(db, "dunning", NOW)
    add_run(db, "dunning", NOW + dt.timedelta(minutes=16), dry_run=True)  # a preview: no
    add_run(db, "dunning", NOW + dt.timedelta(minutes=16, seconds=30), "skipped")  # skipped: no
    ok = job_state(db, dns, "dunning", NOW + dt.timedelta(minutes=17))
    assert ok.status == "ok", ok.detail
    assert ok.data["expected_at"] == "2026-03-02T10:15:00+00:00"
    assert ok.data["late_after"] == "2026-03-02T10:17:00+00:00"
    assert ok.data["down_after"] == "2026-03-02T10:18:45+00:00"
    late = job_state(db, dns, "dunning", NOW + dt.timedelta(minutes=18))
    assert late.status == "warn" and late.detail.startswith("late:")
    assert f"last successful run {run_id} started 2026-03-02T10:00:00+00:00" in late.detail
    down = job_state(db, dns, "dunning", NOW + dt.timedelta(minutes=19))
    assert down.status == "fail" and down.detail.startswith("down:")
    assert "expected a run at 2026-03-02T10:15:00+00:00" in down.detail
    assert down.data["last_success_run"] == run_id
    # freshness is computed at `now`: a run after `now` does not count
    add_run(db, "dunning", NOW + dt.timedelta(minutes=20))
    assert job_state(db, dns, "dunning", NOW + dt.timedelta(minutes=19)).status == "fail"
    assert job_state(db, dns, "dunning", NOW + dt.timedelta(minutes=21)).status == "ok"


def test_a_partial_run_counts_against_the_job(db: Database, dns: DnsServer) -> None:
    # issue 22.5: some actions failed — not a success, and the job's check fails on it
    ok = add_run(db, "dunning", NOW)
    partial = add_run(db, "dunning", NOW + dt.timedelta(minutes=15), "partial")
    state = job_state(db, dns, "dunning", NOW + dt.timedelta(minutes=16))
    assert state.status == "fail", state.detail
    assert f"run {partial}" in state.detail and "partial" in state.detail
    assert state.data["last_success_run"] == ok
    add_run(db, "dunning", NOW + dt.timedelta(minutes=30))  # a clean run: healthy again
    assert job_state(db, dns, "dunning", NOW + dt.timedelta(minutes=31)).status == "ok"


def test_an_abandoned_latest_run_fails_the_job_check(db: Database, dns: DnsServer) -> None:
    add_run(db, "dunning", NOW)
    dead = add_run(
        db, "dunning", NOW + dt.timedelta(minutes=15), "abandoned", error="abandoned: died"
    )
    state = job_state(db, dns, "dunning", NOW + dt.timedelta(minutes=20))
    assert state.status == "fail"
    assert f"run {dead}" in state.detail and "abandoned" in state.detail


def test_a_daily_job_is_judged_in_days_and_never_run_only_warns(
    db: Database, dns: DnsServer
) -> None:
    never = job_state(db, dns, "subscription_metadata_backfill", NOW)
    assert never.status == "warn" and never.detail.startswith("never run")
    assert "faithflow subs backfill" in never.detail
    add_run(db, "subscription_metadata_backfill", NOW.replace(hour=2, minute=10))
    # daily at 02:10: the next run is expected 03-03 02:10, grace a quarter day (6 h)
    state = job_state(db, dns, "subscription_metadata_backfill", NOW)
    assert state.status == "ok" and state.data["down_after"] == "2026-03-03T08:10:00+00:00"
    missed = dt.datetime(2026, 3, 3, tzinfo=dt.UTC)
    at = {h: missed + dt.timedelta(hours=h) for h in (2.5, 8.1, 8.2)}
    assert job_state(db, dns, "subscription_metadata_backfill", at[2.5]).status == "warn"
    assert job_state(db, dns, "subscription_metadata_backfill", at[8.1]).status == "warn"
    assert job_state(db, dns, "subscription_metadata_backfill", at[8.2]).status == "fail"


def test_a_failed_latest_run_fails_until_a_later_run_succeeds(db: Database, dns: DnsServer) -> None:
    add_run(db, "invoices_reconcile", NOW - dt.timedelta(hours=1))
    failed = add_run(
        db, "invoices_reconcile", NOW - dt.timedelta(minutes=5), "failed", error="boom\ntrace"
    )
    state = job_state(db, dns, "invoices_reconcile", NOW)
    assert state.status == "fail"
    assert f"run {failed}" in state.detail and "failed: boom" in state.detail
    assert "trace" not in state.detail
    add_run(db, "invoices_reconcile", NOW - dt.timedelta(minutes=1))
    assert job_state(db, dns, "invoices_reconcile", NOW).status == "ok"


def test_a_bad_cron_override_fails_that_job_check_naming_the_variable(
    db: Database, dns: DnsServer
) -> None:
    cfg = base_settings(dns, cron_overrides={"DUNNING": "every minute"})
    with db.read_session() as s:
        found = {r.name: r for r in job_checks(s, cfg, NOW, health_sweep.monitored_jobs(cfg))}
    assert found["job:dunning"].status == "fail"
    assert "CRON_DUNNING" in found["job:dunning"].detail


def add_message(db: Database, due: dt.datetime, status: str = "queued", n: int = 0) -> None:
    with db.session() as s:
        s.add(
            OutboundMessage(
                channel="email",
                recipient="pastor@church.example",
                template="notice",
                variables={},
                body="hello",
                status=status,
                idempotency_key=f"k-{due.isoformat()}-{status}-{n}",
                not_before=due,
                next_attempt_at=due,
            )
        )


def test_outbox_backlog_warns_at_half_the_threshold_and_fails_past_it(
    db: Database, dns: DnsServer
) -> None:
    cfg = base_settings(dns)  # 15 minutes
    add_message(db, NOW - dt.timedelta(minutes=2))  # due recently: fine
    add_message(db, NOW - dt.timedelta(hours=3), "sent")  # sent: fine
    with db.read_session() as s:
        assert checks.outbox_check(s, cfg, NOW).status == "ok"
    add_message(db, NOW - dt.timedelta(minutes=10), "scheduled")
    with db.read_session() as s:
        warn = checks.outbox_check(s, cfg, NOW)
    assert warn.status == "warn" and warn.data["overdue"] == 1
    add_message(db, NOW - dt.timedelta(minutes=40))
    with db.read_session() as s:
        fail = checks.outbox_check(s, cfg, NOW)
    assert fail.status == "fail"
    assert fail.data["over_threshold"] == 1 and fail.data["overdue"] == 2
    assert fail.data["oldest_due_at"] == "2026-03-02T09:20:00+00:00"
    assert "comms dispatch" in fail.detail


def add_events(db: Database, n: int, status: str, at: dt.datetime) -> None:
    with db.session() as s:
        for i in range(n):
            s.add(
                WebhookEvent(
                    provider="stripe",
                    scope="platform",
                    event_key=f"evt_{status}_{at.timestamp()}_{i}",
                    event_type="invoice.paid",
                    payload={},
                    status=status,
                    first_received_at=at,
                    last_received_at=at,
                )
            )


def test_webhook_failure_rate_over_the_last_hour(db: Database, dns: DnsServer) -> None:
    cfg = base_settings(dns)  # 5 % fails, 2.5 % warns, at least 10 events
    add_events(db, 2, "failed", NOW - dt.timedelta(hours=2))  # outside the hour
    add_events(db, 1, "failed", NOW - dt.timedelta(minutes=10))
    add_events(db, 2, "applied", NOW - dt.timedelta(minutes=10))
    with db.read_session() as s:
        few = checks.webhook_check(s, cfg, NOW)
    assert few.status == "warn" and "too few events" in few.detail
    assert (few.data["events"], few.data["failed"]) == (3, 1)
    add_events(db, 17, "applied", NOW - dt.timedelta(minutes=30))
    with db.read_session() as s:
        fail = checks.webhook_check(s, cfg, NOW)  # 1 of 20 = 5 %
        warn = checks.webhook_check(
            s, dataclasses.replace(cfg, health_webhook_failure_rate=10.0), NOW
        )
        ok = checks.webhook_check(
            s, dataclasses.replace(cfg, health_webhook_failure_rate=50.0), NOW
        )
    assert fail.status == "fail" and fail.data["failed_percent"] == 5.0
    assert "webhooks replay --failed" in fail.detail
    assert warn.status == "warn" and ok.status == "ok"


# --- the sweep: history and incidents ---------------------------------------------------------


def test_a_preview_writes_no_history_and_no_incident(
    db: Database, db_url: str, dns: DnsServer
) -> None:
    cfg = base_settings(
        dns, db_url, stripe_secret_key="sk", stripe_api_base=_closed(), health_failure_threshold=1
    )
    result = sweep(db, cfg, dry_run=True)
    assert result.counts["record_check"] == len(health_sweep.check_names())
    assert result.counts["open_incident"] == 1
    assert by_check(result)["stripe"]["status"] == "fail"
    assert count(db, HealthCheckResult) == 0 and count(db, Incident) == 0


def _closed() -> str:
    return f"http://127.0.0.1:{free_port()}"


def test_a_failing_check_opens_one_incident_counts_repeats_and_resolves_when_it_passes(
    db: Database, db_url: str, dns: DnsServer
) -> None:
    down = base_settings(dns, db_url, stripe_secret_key="sk", stripe_api_base=_closed())
    # one failing sweep is a blip: recorded, no incident (FAITHFLOW_HEALTH_FAILURE_THRESHOLD 2)
    blip = sweep(db, down, NOW - dt.timedelta(minutes=5))
    assert by_check(blip)["stripe"]["status"] == "fail" and "open_incident" not in blip.counts
    assert incidents(db) == []
    first = sweep(db, down)
    assert first.counts["open_incident"] == 1 and first.outcomes == {
        "applied": first.counts.total()
    }
    (incident,) = incidents(db)
    assert (incident.cause, incident.kind, incident.status) == ("health:stripe", "health", "open")
    assert incident.title == "health check stripe is failing"
    assert "could not reach stripe" in (incident.detail or "")

    second = sweep(db, down, NOW + dt.timedelta(minutes=5))
    assert "open_incident" not in second.counts  # not duplicated across sweeps
    (incident,) = incidents(db)
    assert incident.occurrences == 2 and incident.status == "open"
    with db.read_session() as s:
        linked = s.scalars(
            select(HealthCheckResult.incident_id)
            .where(HealthCheckResult.check_name == "stripe")
            .order_by(HealthCheckResult.checked_at)
        ).all()
    assert linked == [None, incident.id, incident.id]

    with stripe_fake().serve() as fake:
        up = dataclasses.replace(down, stripe_api_base=fake.url)
        third = sweep(db, up, NOW + dt.timedelta(minutes=10))
        fourth = sweep(db, up, NOW + dt.timedelta(minutes=15))
    assert third.counts["resolve_incident"] == 1
    (incident,) = incidents(db)
    assert incident.status == "resolved" and incident.resolved_by == "job:health_sweep"
    assert incident.resolved_at == NOW + dt.timedelta(minutes=10)
    assert "resolve_incident" not in fourth.counts and "open_incident" not in fourth.counts
    assert count(db, HealthCheckResult) == 5 * len(health_sweep.check_names())


def test_a_failed_job_run_opens_a_job_incident_and_a_later_success_resolves_it(
    db: Database, db_url: str, dns: DnsServer
) -> None:
    cfg = base_settings(dns, db_url, health_failure_threshold=1)
    add_run(db, "dunning", NOW - dt.timedelta(minutes=3), "failed", error="RuntimeError: x")
    first = sweep(db, cfg)
    opened = [a.action for a in first.actions if a.action.kind == "open_incident"]
    assert [a.data["cause"] for a in opened] == ["job:dunning"]
    (incident,) = incidents(db)
    assert incident.kind == "job" and incident.title.startswith("job dunning failed (run ")
    add_run(db, "dunning", NOW + dt.timedelta(minutes=1))
    second = sweep(db, cfg, NOW + dt.timedelta(minutes=2))
    assert second.counts["resolve_incident"] == 1
    assert incidents(db)[0].status == "resolved"


def test_an_open_incident_of_a_check_that_no_longer_exists_is_resolved(
    db: Database, db_url: str, dns: DnsServer
) -> None:
    from faithflow_ops.incidents.records import raise_incident

    with db.session() as s:
        raise_incident(s, cause="health:retired_check", kind="health", title="old", now=NOW)
        raise_incident(s, cause="domain:www.grace.org:dns", kind="domain", title="dns", now=NOW)
    result = sweep(db, base_settings(dns, db_url))
    resolved = [
        a.action.data["cause"] for a in result.actions if a.action.kind == "resolve_incident"
    ]
    assert resolved == ["health:retired_check"]  # another job's cause is left alone
    assert [i.status for i in incidents(db)] == ["resolved", "open"]


def test_applying_the_same_sweep_twice_records_each_check_once(
    db: Database, db_url: str, dns: DnsServer
) -> None:
    from faithflow_ops.jobs.base import StaleAction
    from faithflow_ops.jobs.health_sweep import JOB

    cfg = base_settings(dns, db_url)
    ctx = JobContext(now=NOW, dry_run=False, trigger="cli", settings=cfg)
    with db.read_session() as s:
        plan = [a for a in JOB.plan(s, ctx) if a.kind == "record_check"]
    with db.session() as s:
        JOB.apply(s, ctx, plan[0])
    with pytest.raises(StaleAction), db.session() as s:
        JOB.apply(s, ctx, plan[0])
    assert count(db, HealthCheckResult) == 1


# --- CLI --------------------------------------------------------------------------------------


def add_result(db: Database, check: str, status: str, at: dt.datetime) -> None:
    with db.session() as s:
        s.add(
            HealthCheckResult(
                check_name=check, status=status, latency_ms=3.0, detail=status, checked_at=at
            )
        )


def test_status_uptime_from_a_hand_made_history(db: Database, cli: Any) -> None:
    hour, day = dt.timedelta(hours=1), dt.timedelta(days=1)
    for n, status in enumerate(["ok", "ok", "warn", "fail", "skipped"]):  # last 24 h
        add_result(db, "database", status, NOW - (n + 1) * hour)
    for n in range(4):  # 10 days ago: four failures
        add_result(db, "database", "fail", NOW - 10 * day - n * hour)
    add_result(db, "database", "fail", NOW - 31 * day)  # outside 30 days
    add_result(db, "database", "ok", NOW + hour)  # after --now: not seen
    add_result(db, "smtp", "skipped", NOW - hour)
    result = cli("health", "status", "--json", "--now", NOW.isoformat())
    assert result.exit_code == 0, result.stderr
    docs = {d["check"]: d for d in json.loads(result.stdout)}
    assert list(docs)[: len(health_sweep.check_names())] == health_sweep.check_names()
    database = docs["database"]
    assert database["status"] == "ok"  # the latest at --now (1 h ago)
    assert database["checked_at"] == (NOW - hour).isoformat()
    assert database["uptime_24h"] == 75.0  # ok, ok, warn up; fail down; skipped not counted
    assert database["uptime_30d"] == 37.5  # 3 up of 8
    assert docs["smtp"]["status"] == "skipped"
    assert docs["smtp"]["uptime_24h"] is None and docs["smtp"]["uptime_30d"] is None
    assert docs["stripe"]["status"] is None and "not checked yet" in docs["stripe"]["detail"]
    table = cli("health", "status", "--now", NOW.isoformat())
    assert table.exit_code == 0 and "75.00%" in table.stdout and "37.50%" in table.stdout


def test_history_filters_and_bad_inputs_exit_2(db: Database, cli: Any) -> None:
    for n in range(5):
        add_result(db, "dns", "ok", NOW - n * dt.timedelta(hours=6))
    add_result(db, "database", "fail", NOW)
    now = ("--now", NOW.isoformat())
    result = cli("health", "history", "--check", "dns", "--since", "13h", "--json", *now)
    assert result.exit_code == 0, result.stderr
    rows = json.loads(result.stdout)
    assert [r["checked_at"] for r in rows] == [
        (NOW - n * dt.timedelta(hours=6)).isoformat() for n in range(3)
    ]
    limited = cli("health", "history", "--limit", "2", "--json", *now)
    assert len(json.loads(limited.stdout)) == 2 and "showing 2 of 6" in limited.stderr
    since_iso = cli("health", "history", "--since", "2026-03-02T09:00:00Z", "--json", *now)
    assert [r["check"] for r in json.loads(since_iso.stdout)] == ["database", "dns"]

    unknown = cli("health", "history", "--check", "stripes")
    assert unknown.exit_code == 2
    assert "no health check named 'stripes'; known checks: database, dns" in said(unknown)
    bad_since = cli("health", "history", "--since", "yesterday")
    assert bad_since.exit_code == 2 and "--since 'yesterday' is neither" in said(bad_since)
    bad_now = cli("health", "status", "--now", "soon")
    assert bad_now.exit_code == 2 and "--now 'soon' is not an ISO-8601 time" in said(bad_now)
    assert cli("health", "history", "--limit", "0").exit_code == 2
    assert "Traceback" not in unknown.stderr + bad_since.stderr


def test_sweep_command_previews_and_runs_with_now(
    db: Database, cli: Any, dns: DnsServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FAITHFLOW_DNS_NAMESERVERS", dns.nameserver)
    monkeypatch.setenv("FAITHFLOW_DOMAIN_CNAME_TARGET", "edge.faithflow.test")
    preview = cli("health", "sweep", "--dry-run", "--json", "--now", NOW.isoformat())
    assert preview.exit_code == 0, preview.stderr
    doc = json.loads(preview.stdout)
    assert doc["dry_run"] is True and doc["now"] == NOW.isoformat()
    assert doc["counts"] == {"record_check": len(health_sweep.check_names())}
    assert count(db, HealthCheckResult) == 0
    done = cli("health", "sweep", "--json", "--now", NOW.isoformat())
    assert done.exit_code == 0, done.stderr
    assert count(db, HealthCheckResult) == len(health_sweep.check_names())
    with db.read_session() as s:
        at = set(s.scalars(select(HealthCheckResult.checked_at)))
    assert at == {NOW}


def test_bad_health_settings_are_refused_naming_the_variable(
    db: Database, cli: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert (
        Settings.from_env(
            {"FAITHFLOW_HEALTH_WEBHOOK_FAILURE_RATE": "2.5%"}
        ).health_webhook_failure_rate
        == 2.5
    )
    for name, value in (
        ("FAITHFLOW_HEALTH_WEBHOOK_FAILURE_RATE", "0"),
        ("FAITHFLOW_HEALTH_WEBHOOK_FAILURE_RATE", "lots"),
        ("FAITHFLOW_HEALTH_OUTBOX_BACKLOG", "0"),
        ("FAITHFLOW_HEALTH_TIMEOUT", "x"),
    ):
        with pytest.raises(ConfigError, match=name):
            Settings.from_env({name: value})
    monkeypatch.setenv("FAITHFLOW_HEALTH_TIMEOUT", "soon")
    result = cli("health", "sweep", "--dry-run")
    assert result.exit_code == 2 and "FAITHFLOW_HEALTH_TIMEOUT='soon'" in said(result)


def test_task_endpoint_runs_the_sweep(db: Database, db_url: str, dns: DnsServer) -> None:
    from receiver.app import create_app

    key = "k" * 32
    cfg = base_settings(dns, db_url, integration_api_key=key)
    app = create_app(cfg, db=db)
    with running(app) as url:
        headers = {"Authorization": f"Bearer {key}"}
        body = {"dry_run": False, "now": NOW.isoformat()}
        done = httpx.post(url + "/tasks/health/sweep", json=body, headers=headers, timeout=60)
        assert done.status_code == 200, done.text
        doc = done.json()
        assert doc["job"] == "health_sweep" and doc["status"] == "succeeded"
        assert doc["counts"]["record_check"] == len(health_sweep.check_names())
        refused = httpx.post(url + "/tasks/health/sweep", json=body)
        assert refused.status_code == 401
    assert count(db, HealthCheckResult) == len(health_sweep.check_names())
    with db.read_session() as s:
        assert s.scalar(select(JobRun.trigger).where(JobRun.job == "health_sweep")) == "http"
