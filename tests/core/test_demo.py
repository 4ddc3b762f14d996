"""`faithflow demo`: seeds an empty database, refuses a populated one, previews every job.

A demo run (migrate, seed, preview every registered job) costs about a second, so the tests
that only read what it printed or seeded share one run per dialect (`demo`: `demo --json`
into a database it migrated itself; `demo_text`: the table output, into a migrated copy).
Those tests read only — the CLI commands they call list, show or refuse — so the runs are
shared within this module; a test that runs the demo with another `--now`, another setting or
another job list, or that writes, still gets a database of its own (`db`).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from helpers import said
from sqlalchemy import func, select
from sqlalchemy.engine import make_url

from faithflow_ops.cli.common import reset_database_cache
from faithflow_ops.config import normalize_database_url
from faithflow_ops.db import Database
from faithflow_ops.jobs.registry import JOBS, JobSpec
from faithflow_ops.migrate import current_revision
from faithflow_ops.models import (
    Incident,
    JobRun,
    KbArticle,
    OutboundMessage,
    SubscriptionPlan,
    SupportTicket,
    User,
)
from faithflow_ops.models.billing import SUBSCRIPTION_STATUSES

NOW = "2026-03-01T09:00:00Z"

# The shared demo runs are made once per test process: keep this file on one worker
# (`make test` distributes with --dist loadgroup).
pytestmark = pytest.mark.xdist_group("demo")

# The shared runs: `json` into an empty (never migrated) database, so the demo's own migration
# is exercised; `text` (the tables a terminal shows) into a migrated, empty copy.
_SHARED_ARGS = {"json": ("demo", "--json", "--now", NOW), "text": ("demo", "--now", NOW)}


@dataclass(frozen=True)
class Demo:
    """One shared demo run: its database (URL and an engine on it) and the CLI's result."""

    url: str
    database: Database
    result: Any


class _Demos:
    """The module's shared demo runs, one per (dialect, kind), each made by the first test
    that asks for it (through that test's `cli`, in its cleaned environment). Postgres
    databases come from the session's pools (`_templates`) and go back to them at the end of
    the module — emptied and reused, or set aside and dropped with the session's others."""

    def __init__(self, folder: Path, templates: Any) -> None:
        self.folder = folder
        self.templates = templates
        self.runs: dict[tuple[str, str], Demo] = {}
        self.taken: list[tuple[str, bool]] = []  # Postgres databases: name, migrated

    def _new_url(self, dialect: str, kind: str) -> str:
        migrated = kind != "json"
        if dialect == "sqlite":
            path = self.folder / f"{kind}.db"
            if migrated:
                self.templates.sqlite_copy(path)
            return f"sqlite:///{path}"
        name = self.templates.take_postgres() if migrated else self.templates.take_scratch()
        self.taken.append((name, migrated))
        admin = normalize_database_url(os.environ["FAITHFLOW_TEST_POSTGRES_URL"])
        return make_url(admin).set(database=name).render_as_string(hide_password=False)

    def get(self, dialect: str, kind: str, cli: Any, monkeypatch: pytest.MonkeyPatch) -> Demo:
        """The shared run; the CLI in the calling test sees its database."""
        if (dialect, kind) not in self.runs:
            url = self._new_url(dialect, kind)
            monkeypatch.setenv("FAITHFLOW_DATABASE_URL", url)
            result = cli(*_SHARED_ARGS[kind])
            self.runs[dialect, kind] = Demo(url, Database.from_url(url), result)
        demo = self.runs[dialect, kind]
        monkeypatch.setenv("FAITHFLOW_DATABASE_URL", demo.url)
        return demo

    def close(self) -> None:
        reset_database_cache()
        for demo in self.runs.values():
            demo.database.dispose()
        for name, migrated in self.taken:
            if migrated:
                self.templates.give_back_postgres(name)
            else:
                self.templates.give_back_scratch(name)


@pytest.fixture(scope="module")
def _demos(tmp_path_factory: pytest.TempPathFactory, _templates: Any) -> Iterator[_Demos]:
    demos = _Demos(tmp_path_factory.mktemp("demo"), _templates)
    yield demos
    demos.close()


@pytest.fixture(params=["sqlite", "postgres"])
def dialect(request: pytest.FixtureRequest) -> str:
    if request.param == "postgres" and not request.getfixturevalue("postgres_available"):
        pytest.skip("Postgres not configured: set FAITHFLOW_TEST_POSTGRES_URL")
    param: str = request.param
    return param


@pytest.fixture
def demo(dialect: str, cli: Any, monkeypatch: pytest.MonkeyPatch, _demos: _Demos) -> Iterator[Demo]:
    """`demo --json --now NOW` on each dialect, into a database the demo migrated itself:
    shared by the tests that only read it."""
    yield _demos.get(dialect, "json", cli, monkeypatch)
    reset_database_cache()


@pytest.fixture
def demo_text(
    dialect: str, cli: Any, monkeypatch: pytest.MonkeyPatch, _demos: _Demos
) -> Iterator[Demo]:
    """`demo --now NOW` (tables, not JSON) on each dialect, into a migrated copy: shared by
    the tests that only read its output."""
    yield _demos.get(dialect, "text", cli, monkeypatch)
    reset_database_cache()


def run_demo(cli: Any) -> dict[str, Any]:
    result = cli("demo", "--json", "--now", NOW)
    return demo_doc(result)


def demo_doc(result: Any) -> dict[str, Any]:
    assert result.exit_code == 0, result.stderr
    doc: dict[str, Any] = json.loads(result.stdout)
    return doc


def test_demo_migrates_seeds_and_previews_every_registered_job(demo: Demo) -> None:
    doc = demo_doc(demo.result)  # into an empty, never migrated database
    empty_db = demo.database
    assert current_revision(empty_db.engine) is not None
    assert doc["database"] == empty_db.engine.url.render_as_string(hide_password=False)
    assert doc["seeded"] == {
        "tenants": 8, "users": 14, "security_policies": 8, "plans": 9, "subscriptions": 10,
        "invoices": 10, "tenant_domains": 2, "dunning_cases": 3, "dunning_preferences": 2,
        "outbound_messages": 11, "suppressions": 1, "kb_articles": 5, "support_tickets": 5,
        "incidents": 1,
    }  # fmt: skip
    assert [p["job"] for p in doc["previews"]] == [spec.name for spec in JOBS]
    for preview in doc["previews"]:
        if preview["job"] == "invoices_reconcile":  # no provider key here: refused, named
            assert (preview["status"], preview["failure"]) == ("failed", "config"), preview
            assert "STRIPE_SECRET_KEY and/or PAYSTACK_SECRET_KEY" in preview["error"]
            continue
        assert preview["dry_run"] is True and preview["status"] == "succeeded", preview
        assert preview["now"] == "2026-03-01T09:00:00+00:00"
    with empty_db.read_session() as s:
        runs = s.scalars(select(JobRun)).all()
    # Every preview is recorded but the refused one (a refusal records nothing).
    assert {r.job for r in runs} == {spec.name for spec in JOBS} - {"invoices_reconcile"}
    assert all(r.dry_run and r.trigger == "cli" for r in runs)


def test_demo_subscriptions_cover_every_status_both_providers_and_many_places(
    cli, demo: Demo
) -> None:
    demo_doc(demo.result)
    db = demo.database
    subs = json.loads(cli("subs", "list", "--json").stdout)
    assert {s["status"] for s in subs} == set(SUBSCRIPTION_STATUSES)
    assert {s["provider"] for s in subs} == {"stripe", "paystack"}
    tenants = json.loads(cli("tenants", "list", "--json").stdout)
    assert len({t["timezone"] for t in tenants}) >= 5
    assert {"NGN", "GHS", "KES", "USD", "GBP"} <= {t["currency"] for t in tenants}
    plans = json.loads(cli("plans", "list", "--json").stdout)
    assert any("stripePriceId" in p["metadata"] for p in plans)
    assert any("paystackPlanCode" in p["metadata"] for p in plans)
    with db.read_session() as s:
        agents = s.scalar(select(func.count()).select_from(User).where(User.tenant_id.is_(None)))
    assert agents == 1


def test_demo_metadata_carries_every_historical_shape(cli, demo: Demo) -> None:
    demo_doc(demo.result)
    subs = json.loads(cli("subs", "list", "--json").stdout)
    keys = {key for s in subs for key in s["metadata"]}
    assert {
        "stripeCustomerId", "stripe_customer_id", "customerId", "customer", "stripe",
        "customer_code", "customerCode", "email_token", "subscription_code", "authorization_code",
    } <= keys  # fmt: skip
    customers = [s["metadata"]["customer"] for s in subs if "customer" in s["metadata"]]
    assert any(isinstance(c, str) for c in customers)
    assert any(isinstance(c, dict) and "id" in c for c in customers)
    nested = [s["metadata"]["stripe"] for s in subs if "stripe" in s["metadata"]]
    assert nested and nested[0]["customer"]["id"].startswith("cus_")


def test_demo_backfill_preview_reports_a_conflict_and_an_invalid_id(demo: Demo) -> None:
    doc = demo_doc(demo.result)
    (backfill,) = [p for p in doc["previews"] if p["job"] == "subscription_metadata_backfill"]
    assert backfill["counts"].get("conflict", 0) >= 1
    assert backfill["counts"].get("invalid", 0) >= 1
    assert backfill["actions"], "the preview lists what it would change"


def preview_of(doc: dict[str, Any], job: str) -> dict[str, Any]:
    (found,) = [p for p in doc["previews"] if p["job"] == job]
    return found


def by_tenant(preview: dict[str, Any], kind: str) -> dict[str, dict[str, Any]]:
    return {a["data"]["tenant"]: a for a in preview["actions"] if a["kind"] == kind}


def test_demo_dunning_preview_sends_holds_pauses_skips_and_opens(demo: Demo) -> None:
    dunning = preview_of(demo_doc(demo.result), "dunning")
    assert dunning["counts"] == {"open_case": 1, "skip_steps": 1, "send_step": 2, "paused": 1}
    # the safety net: a past-due subscription whose case the hook never opened
    assert set(by_tenant(dunning, "open_case")) == {"st-marks-london"}
    sends = by_tenant(dunning, "send_step")
    assert set(sends) == {"dayspring-ikeja", "living-waters-accra"}
    # due two hours ago in Lagos; 10:00 on a Sunday there is quiet: scheduled, not skipped
    lagos = sends["dayspring-ikeja"]["data"]
    assert lagos["step"] == "day0" and lagos["channels"] == ["email"]
    assert lagos["scheduled_at"] == "2026-03-01T13:00:00+00:00"
    assert lagos["held_back"] == ["quiet hours (Africa/Lagos) until 2026-03-01T13:00:00+00:00"]
    # 11 days past due: day10 by e-mail only (SMS opted out); the steps before it passed over
    accra = sends["living-waters-accra"]["data"]
    assert accra["step"] == "day10" and accra["channels"] == ["email"]
    assert accra["blocked"] == {"sms": "sms opted out"}
    skipped = by_tenant(dunning, "skip_steps")["living-waters-accra"]["data"]["steps"]
    assert [s["step"] for s in skipped] == ["day0", "day3", "day5", "day7"]
    paused = by_tenant(dunning, "paused")["cornerstone-houston"]
    assert paused["data"]["paused_until"] == "2026-03-06T09:00:00+00:00"
    assert "promised payment" in paused["reason"]


def test_demo_holds_the_lagos_step_by_quiet_hours_at_any_time(cli, db: Database) -> None:
    # Wednesday 16:00 in Lagos is outside the default quiet hours: the church's own service
    # hours (stored as its preferences) hold the e-mail back instead.
    result = cli("demo", "--json", "--now", "2026-03-04T15:00:00Z")
    assert result.exit_code == 0, result.stderr
    sends = by_tenant(preview_of(json.loads(result.stdout), "dunning"), "send_step")
    assert sends["dayspring-ikeja"]["data"]["held_back"] == [
        "quiet hours (Africa/Lagos) until 2026-03-04T18:00:00+00:00"
    ]
    prefs = json.loads(
        cli("dunning", "prefs", "show", "--tenant", "dayspring-ikeja", "--json").stdout
    )
    assert [w["text"] for w in prefs["quiet_hours"]] == [
        "daily 21:00-08:00", "sun 06:00-14:00", "wed 16:00-19:00",
    ]  # fmt: skip


def test_demo_dispatch_preview_sends_due_messages_and_suppresses_one(demo: Demo) -> None:
    dispatch = preview_of(demo_doc(demo.result), "communications_dispatch")
    assert dispatch["counts"] == {"send": 3, "suppress": 1}
    sends = [a["data"] for a in dispatch["actions"] if a["kind"] == "send"]
    assert {(d["channel"], d["template"]) for d in sends} == {
        ("email", "kb_article"), ("email", "notice"), ("sms", "notice"),
    }  # fmt: skip
    (suppressed,) = [a for a in dispatch["actions"] if a["kind"] == "suppress"]
    assert suppressed["data"]["channel"] == "sms"
    assert suppressed["data"]["suppression"] == "stop"
    with demo.database.read_session() as s:
        statuses = dict(
            s.execute(
                select(OutboundMessage.status, func.count()).group_by(OutboundMessage.status)
            ).all()
        )
    # tomorrow's maintenance notice to the seven active churches waits; nothing was sent
    assert statuses == {"queued": 3, "scheduled": 8}


def test_demo_sla_sweep_preview_warns_and_breaches(cli, demo: Demo) -> None:
    doc = demo_doc(demo.result)
    sweep = preview_of(doc, "support_sla_sweep")
    assert sweep["counts"] == {"sla_breach": 1, "sla_warning": 1}
    found = {a["kind"]: a["data"] for a in sweep["actions"]}
    assert found["sla_breach"]["metric"] == found["sla_warning"]["metric"] == "first_response"
    with demo.database.read_session() as s:
        statuses = sorted(s.scalars(select(SupportTicket.status)).all())
        published = s.scalar(
            select(func.count()).select_from(KbArticle).where(KbArticle.status == "published")
        )
    assert statuses == ["new", "open", "open", "pending", "solved"]
    assert published == 4
    assert json.loads(cli("sla", "calendar", "show", "--json").stdout)["timezone"] == "Africa/Lagos"


def test_demo_escalates_the_open_incident_through_a_demo_route_without_hooks(
    demo: Demo,
) -> None:
    doc = demo_doc(demo.result)
    escalate = preview_of(doc, "incidents_escalate")  # issue 16: not "nothing to do"
    assert escalate["counts"] == {"alert": 1}
    assert escalate["actions"][0]["data"]["cause"] == "health:outbox_backlog"
    with demo.database.read_session() as s:
        (incident,) = s.scalars(select(Incident)).all()
    assert (incident.cause, incident.status) == ("health:outbox_backlog", "open")
    # the backlog still fails at `now`: the sweep counts it against the same incident
    health = preview_of(doc, "health_sweep")
    (backlog,) = [a for a in health["actions"] if a["target"] == "check:outbox_backlog"]
    assert (backlog["data"]["status"], backlog["data"]["incident"]) == ("fail", "ongoing")
    assert "open_incident" not in health["counts"]
    # only escalation's preview gets the demo route: the sweep still says none is set
    (route,) = [a for a in health["actions"] if a["target"] == "check:alert_route"]
    assert route["data"]["status"] == "warn"


def test_demo_escalation_uses_the_configured_route_when_there_is_one(
    cli, db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ALERT_WEBHOOK_URL", "https://hooks.example.org/faithflow")
    result = cli("demo", "--json", "--now", NOW)
    assert result.exit_code == 0, result.stderr
    doc = json.loads(result.stdout)
    assert preview_of(doc, "incidents_escalate")["counts"] == {"alert": 1}
    assert "escalation previews through" not in said(result)
    health = preview_of(doc, "health_sweep")
    (route,) = [a for a in health["actions"] if a["target"] == "check:alert_route"]
    assert route["data"]["status"] == "ok"


def test_demo_walks_two_custom_domains_through_verification_on_loopback_dns(
    cli, demo: Demo
) -> None:
    """Issue 16: the demo shows domains. Their DNS is answered by a server on loopback (the
    names are under .example, which no public resolver answers): one church published its
    ownership TXT record and is verified, the other is still waiting for it."""
    result = demo.result  # `demo --json --now NOW`
    assert result.exit_code == 0, result.stderr
    domains = preview_of(json.loads(result.stdout), "tenant_ops_automate")
    assert domains["counts"] == {"verify_domain": 1, "pending_check": 1}
    found = {a["data"]["hostname"]: a for a in domains["actions"]}
    verified = found["live.graceassembly.example"]
    assert (verified["kind"], verified["data"]["tenant"]) == ("verify_domain", "grace-lagos")
    assert verified["data"]["status"] == "issuing_cert"
    waiting = found["watch.stmarks.example"]
    assert (waiting["kind"], waiting["data"]["tenant"]) == ("pending_check", "st-marks-london")
    assert waiting["reason"] == "waiting for DNS: TXT nxdomain"
    assert "DNS server on loopback (127.0.0.1:" in said(result)
    shown = json.loads(cli("domains", "list", "--json").stdout)
    assert {(d["hostname"], d["status"]) for d in shown} == {
        ("live.graceassembly.example", "pending_dns"),  # a preview changes nothing
        ("watch.stmarks.example", "pending_dns"),
    }


def test_demo_prints_a_table_per_job_and_a_counts_line(demo_text: Demo) -> None:
    result = demo_text.result  # `demo --now NOW`
    assert result.exit_code == 0, result.stderr
    assert "seeded" in result.stdout
    for spec in JOBS:
        if spec.name == "invoices_reconcile":
            refused = "invoices_reconcile: not run here; no payment provider is configured"
            assert refused in said(result)
            continue
        assert f"{spec.name}: succeeded; would do:" in said(result)
    assert said(result).count("database: ") == 1  # issue 16: said once


def test_demo_keeps_job_log_lines_off_its_tables(demo_text: Demo) -> None:
    """Issue 16: each job's `job run` log line landed between the demo's tables on a terminal;
    the demo's own summary line per job says the same. Tables on stdout, the rest on stderr."""
    result = demo_text.result  # `demo --now NOW`
    assert result.exit_code == 0, result.stderr
    assert "job run" not in result.stdout and "job run" not in result.stderr
    assert '"event"' not in result.stdout  # no log line of any kind among the tables
    assert "tenant_ops_automate preview at" in result.stdout
    assert "tenant_ops_automate: succeeded; would do:" in said(result)


def test_demo_refuses_a_database_that_already_holds_tenants(cli, db: Database) -> None:
    assert cli("tenants", "add", "real-church", "--name", "A Real Church").exit_code == 0
    result = cli("demo")
    assert result.exit_code == 2
    message = said(result)
    assert "already holds 1 tenant; the demo only seeds an empty database" in message
    assert "FAITHFLOW_DATABASE_URL" in message
    with db.read_session() as s:
        assert s.scalar(select(func.count()).select_from(SubscriptionPlan)) == 0
        assert s.scalar(select(func.count()).select_from(JobRun)) == 0


def test_demo_run_twice_refuses_the_second_time(cli, demo: Demo) -> None:
    demo_doc(demo.result)  # the first time; a refusal changes nothing, so it may be shared
    again = cli("demo")
    assert again.exit_code == 2
    assert "already holds 8 tenants" in said(again)


def test_demo_is_deterministic_for_a_given_now(
    cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, _templates: Any, _demos: _Demos
) -> None:
    def seen(doc: dict[str, Any]) -> tuple[list[Any], Any]:
        subs = json.loads(cli("subs", "list", "--json").stdout)
        return [_unmeasured(p) for p in doc["previews"]], subs

    once = seen(demo_doc(_demos.get("sqlite", "json", cli, monkeypatch).result))  # shared run
    _templates.sqlite_copy(tmp_path / "two.db")  # migrated and empty
    monkeypatch.setenv("FAITHFLOW_DATABASE_URL", f"sqlite:///{tmp_path / 'two.db'}")
    again = seen(run_demo(cli))
    reset_database_cache()
    assert once == again


def _unmeasured(preview: dict[str, Any]) -> list[Any]:
    """A preview's actions without what is measured at run time (the health checks' latencies,
    which their details quote): everything else must be the same for the same `now`."""
    if preview["job"] == "tenant_ops_automate":  # the probes' latencies
        return [
            {**a, "data": {**a["data"], "checks": [
                {k: v for k, v in c.items() if k != "latency_ms"} for c in a["data"]["checks"]
            ]}}
            for a in preview["actions"]
        ]  # fmt: skip
    if preview["job"] != "health_sweep":
        return list(preview["actions"])
    return [
        (a["kind"], a["target"], a["data"]["status"], a["data"]["incident"])
        for a in preview["actions"]
    ]


def test_a_job_that_cannot_load_fails_its_preview_and_the_demo_exits_1(
    cli, db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    broken = JobSpec(
        name="broken_job", summary="Broken", cli_group="jobs", cli_verb="broken",
        task_path="/tasks/broken", schedule="0 * * * *", module="faithflow_ops.jobs.no_such_job",
    )  # fmt: skip
    monkeypatch.setattr("faithflow_ops.demo.JOBS", (*JOBS, broken))
    result = cli("demo", "--json", "--now", NOW)
    assert result.exit_code == 1
    doc = json.loads(result.stdout)
    (failed,) = [p for p in doc["previews"] if p["job"] == "broken_job"]
    assert failed["status"] == "failed"
    assert "cannot load faithflow_ops.jobs.no_such_job" in failed["error"]
    assert "preview failed for: broken_job" in said(result)
