"""`security audit` on a seeded data set (both databases): each finding with its severity and
evidence, stored audits and `--diff` (drift over time), and exit 1 on a high finding."""

from __future__ import annotations

import json

import pytest
from security_world import NOW, World, run, z

from faithflow_ops.config import Settings
from faithflow_ops.security import audit
from faithflow_ops.tenancy.policies import set_policy

KEY = "k" * 40


def _audit(world: World, now: str = NOW, tenant: str | None = None, *, keep: bool = True,
           key: str | None = KEY) -> audit.Report:  # fmt: skip
    settings = Settings.from_env()
    settings = type(settings)(**{**settings.__dict__, "integration_api_key": key})
    with world.db.session() as session:
        report = audit.run_audit(session, settings, z(now), tenant)
        report.diff = audit.diff_with_previous(session, report)
        if keep:
            audit.store(session, report)
        return report


def _by_code(report: audit.Report) -> dict[str, audit.Finding]:
    return {f.key: f for f in report.findings}


@pytest.fixture
def seeded(world: World) -> World:
    ann = world.user("ann@grace.example", tenant=world.grace, mfa=True)
    world.user("cy@grace.example", tenant=world.grace)  # no MFA, Grace requires it
    world.user("agent@faithflow.example", tenant=None, role="platform_agent")
    bo = world.user("bo@hope.example", tenant=world.hope)
    world.login(ann, tenant=world.grace, seen="2026-03-10T09:00:00Z")  # idle 3 h > 60 min
    world.login(bo, tenant=world.hope, method="password", mfa=False)  # SSO required
    return world


def test_the_seeded_data_set_gives_each_finding_with_evidence(seeded: World) -> None:
    found = _by_code(_audit(seeded))
    assert set(found) == {
        "policy_weaker_than_baseline:tenant:hope",  # no MFA required
        "sessions_past_timeout:tenant:grace",
        "sessions_breaking_policy:tenant:hope",
        "staff_without_mfa:tenant:grace",
        "platform_agents_without_mfa:platform",
    }
    assert found["policy_weaker_than_baseline:tenant:hope"].evidence == {
        "mfa_required": {"tenant": False, "baseline": True}
    }
    idle = found["sessions_past_timeout:tenant:grace"]
    assert idle.severity == "high" and idle.evidence["count"] == 1
    assert idle.evidence["oldest_last_seen_at"] == "2026-03-10T09:00:00+00:00"
    assert found["sessions_breaking_policy:tenant:hope"].evidence["sso_required"]["count"] == 1
    staff = found["staff_without_mfa:tenant:grace"]
    assert staff.severity == "high"
    assert [u["email"] for u in staff.evidence["users"]] == ["cy@grace.example"]


def test_staff_within_the_grace_period_are_medium_and_enforcement_clears_sessions(
    seeded: World,
) -> None:
    run(seeded.db, "security_enforce", NOW)  # revokes both sessions, warns Cy and the agent
    found = _by_code(_audit(seeded, "2026-03-11T12:00:00Z"))
    assert found["staff_without_mfa:tenant:grace"].severity == "medium"
    assert found["platform_agents_without_mfa:platform"].severity == "medium"
    assert not any(k.startswith("sessions_") for k in found)


def test_a_missing_or_short_task_key_is_a_finding(world: World) -> None:
    assert "task_endpoints_without_key:platform" in _by_code(_audit(world, key=None))
    short = _by_code(_audit(world, key="short"))["task_endpoint_key_weak:platform"]
    assert short.evidence == {"length": 5, "minimum": 32}


def test_a_tenant_audit_leaves_out_other_tenants_and_the_platform(seeded: World) -> None:
    found = _by_code(_audit(seeded, tenant="grace", key=None))
    assert set(found) == {"sessions_past_timeout:tenant:grace", "staff_without_mfa:tenant:grace"}


def test_stored_audits_show_drift_and_the_diff(seeded: World) -> None:
    first = _audit(seeded)
    assert first.stored_id is not None and first.diff is not None
    assert first.diff["previous_id"] is None
    with seeded.db.session() as session:
        set_policy(session, "grace", actor="test", mfa_required=False)
    second = _audit(seeded, "2026-03-11T12:00:00Z")
    found = _by_code(second)
    weakened = found["policy_weakened:tenant:grace"]
    assert weakened.evidence["changes"] == {"mfa_required": {"before": True, "after": False}}
    assert second.diff is not None and second.diff["previous_id"] == first.stored_id
    new = {f"{f['code']}:{f['subject']}" for f in second.diff["new"]}
    resolved = {f"{f['code']}:{f['subject']}" for f in second.diff["resolved"]}
    assert "policy_weakened:tenant:grace" in new
    assert "staff_without_mfa:tenant:grace" in resolved  # MFA no longer required


def test_audit_command_exits_1_on_high_findings_and_dry_run_stores_nothing(
    seeded: World,
    cli,  # type: ignore[no-untyped-def]
) -> None:
    result = cli("security", "audit", "--json", "--now", NOW, "--dry-run")
    assert result.exit_code == 1
    doc = json.loads(result.stdout)
    assert doc["counts"]["high"] == 4 and doc["stored_id"] is None
    stored = cli("security", "audit", "--json", "--now", NOW, "--diff")
    assert stored.exit_code == 1
    assert json.loads(stored.stdout)["diff"]["previous_id"] is None  # the dry run was not kept


def test_a_clean_platform_exits_0(world: World, cli, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("INTEGRATION_API_KEY", KEY)
    result = cli("security", "audit", "--tenant", "grace", "--now", NOW)
    assert result.exit_code == 0, result.output
    unknown = cli("security", "audit", "--tenant", "nope")
    assert unknown.exit_code == 2 and "no tenant with slug 'nope'" in unknown.stderr


def test_retention_overdue_is_a_finding_until_the_retention_run_catches_up(world: World) -> None:
    from faithflow_ops.models import WebhookEvent

    at = z("2025-11-01T00:00:00Z")  # 129 days before NOW: due since 39 days
    with world.db.session() as session:
        session.add(
            WebhookEvent(provider="stripe", scope="tenant", event_key="evt_old",
                         event_type="invoice.paid", tenant_id=world.grace, payload={"id": "x"},
                         status="applied", first_received_at=at, last_received_at=at)
        )  # fmt: skip
    late = _by_code(_audit(world))["retention_overdue:tenant:grace"]
    assert late.evidence["rows"] == {"webhook_payloads": 1}
    run(world.db, "retention", NOW)
    assert "retention_overdue:tenant:grace" not in _by_code(_audit(world))


def test_retention_overdue_follows_the_configured_periods(world: World, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    # The audit used the built-in defaults (90 days for webhook bodies) even where the
    # platform keeps them longer: a finding for rows `retention run` rightly keeps.
    from faithflow_ops.models import WebhookEvent

    at = z("2025-11-01T00:00:00Z")  # 129 days before NOW
    with world.db.session() as session:
        session.add(
            WebhookEvent(provider="stripe", scope="tenant", event_key="evt_kept",
                         event_type="invoice.paid", tenant_id=world.grace, payload={"id": "x"},
                         status="applied", first_received_at=at, last_received_at=at)
        )  # fmt: skip
    monkeypatch.setenv("FAITHFLOW_RETENTION_WEBHOOK_PAYLOADS_DAYS", "365")
    assert "retention_overdue:tenant:grace" not in _by_code(_audit(world))
    monkeypatch.setenv("FAITHFLOW_RETENTION_WEBHOOK_PAYLOADS_DAYS", "100")
    late = _by_code(_audit(world))["retention_overdue:tenant:grace"]
    assert late.evidence["rows"] == {"webhook_payloads": 1}
