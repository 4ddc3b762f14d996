"""The staff access gate as a decision table (both databases): who is allowed into which
church, why a denial is denied, and how an allowed user must sign in."""

from __future__ import annotations

import json

import pytest
from security_world import NOW, World, run, z

from faithflow_ops.errors import NotFound
from faithflow_ops.security.access import Decision, check_access


def _check(world: World, user: str, tenant: str | None = None, now: str = NOW) -> Decision:
    with world.db.read_session() as session:
        return check_access(session, user, tenant, now=z(now))


@pytest.fixture
def people(world: World) -> World:
    world.user("ann@grace.example", tenant=world.grace, role="admin", mfa=True)
    world.user("cy@grace.example", tenant=world.grace)  # no MFA; Grace requires it
    world.user("vol@grace.example", tenant=world.grace, role="volunteer", mfa=True)
    world.user("bo@hope.example", tenant=world.hope)  # Hope requires SSO, not MFA
    world.user("off@hope.example", tenant=world.hope, disabled="2026-02-01T00:00:00Z")
    world.user("agent@faithflow.example", tenant=None, role="platform_agent", mfa=True)
    world.user("lax@faithflow.example", tenant=None, role="platform_agent")
    world.user("odd@faithflow.example", tenant=None, role="staff", mfa=True)
    return world


TABLE = [
    # user, --tenant, summary
    ("ann@grace.example", None, "allowed (sign-in must pass MFA)"),
    ("cy@grace.example", None,
     "denied: MFA required by tenant policy since 2026-03-01; the user has not enrolled"),
    ("vol@grace.example", None, "denied: role volunteer has no staff access"),
    ("bo@hope.example", None,
     "allowed (SSO only: password sign-in refused by tenant policy)"),
    ("bo@hope.example", "grace", "denied: not a member of grace (belongs to hope)"),
    ("off@hope.example", None, "denied: disabled since 2026-02-01"),
    ("agent@faithflow.example", None, "allowed (sign-in must pass MFA)"),
    ("agent@faithflow.example", "hope",
     "allowed (sign-in must pass MFA; SSO only: password sign-in refused by the platform "
     "baseline and hope's policy)"),
    ("lax@faithflow.example", None,
     "denied: MFA required by the platform baseline; the user has not enrolled"),
    ("odd@faithflow.example", None, "denied: no tenant and role staff is not a platform role"),
]  # fmt: skip


@pytest.mark.parametrize(("user", "tenant", "summary"), TABLE)
def test_access_decision_table(people: World, user: str, tenant: str | None, summary: str) -> None:
    assert _check(people, user, tenant).summary == summary


def test_within_the_mfa_grace_period_access_is_allowed_with_the_deadline(people: World) -> None:
    run(people.db, "security_enforce", NOW)  # warns Cy: disabled after 2026-03-17 12:00
    decision = _check(people, "cy@grace.example", now="2026-03-12T12:00:00Z")
    assert decision.allowed
    assert "grace period until 2026-03-17 12:00Z" in decision.summary
    run(people.db, "security_enforce", "2026-03-17T12:00:00Z")  # disables Cy
    after = _check(people, "CY@grace.example", now="2026-03-18T00:00:00Z")
    assert after.summary.startswith(
        "denied: disabled since 2026-03-17 for not enrolling in MFA (enrolling restores access)"
    )


def test_an_unknown_user_or_tenant_is_a_clear_error(people: World) -> None:
    with pytest.raises(NotFound, match="give the user's e-mail address or numeric id"):
        _check(people, "nobody@example.com")
    with pytest.raises(NotFound, match="no tenant with slug 'nope'"):
        _check(people, "ann@grace.example", "nope")


def test_access_check_command_exits_1_on_a_denial_and_prints_json(people: World, cli) -> None:  # type: ignore[no-untyped-def]
    allowed = cli("security", "access-check", "--user", "ann@grace.example", "--json",
                  "--now", NOW)  # fmt: skip
    assert allowed.exit_code == 0, allowed.output
    assert json.loads(allowed.stdout)["decision"] == "allowed"
    denied = cli("security", "access-check", "--user", "cy@grace.example", "--now", NOW)
    assert denied.exit_code == 1
    assert "MFA required by tenant policy since 2026-03-01" in denied.stdout
    unknown = cli("security", "access-check", "--user", "ghost@x.example")
    assert unknown.exit_code == 2
    assert "no user 'ghost@x.example'" in unknown.stderr
