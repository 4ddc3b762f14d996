"""`security enforce` on both databases: each revocation rule (idle past the tenant's timeout,
expired, password where SSO is required, no MFA where MFA is required, disabled user), the
staff MFA ladder (warn through the outbox, disable after the grace period, restore on
enrolment), platform agents on the baseline, and idempotency: a rerun or a stale preview
changes nothing twice."""

from __future__ import annotations

from security_world import NOW, World, messages, run, z
from sqlalchemy import select

from faithflow_ops.models import AuditLog, MfaNotice


def _kinds(result) -> dict[str, int]:  # type: ignore[no-untyped-def]
    return dict(result.counts)


def test_a_session_idle_past_the_tenant_timeout_is_revoked_and_an_active_one_kept(
    world: World,
) -> None:
    ann = world.user("ann@grace.example", tenant=world.grace, mfa=True)
    idle = world.login(ann, tenant=world.grace, seen="2026-03-10T10:59:00Z")  # 61 min
    active = world.login(ann, tenant=world.grace, seen="2026-03-10T11:01:00Z")  # 59 min
    result = run(world.db, "security_enforce", NOW)
    assert result.status == "succeeded", result.error
    assert _kinds(result) == {"revoke_session": 1}
    row = world.session_row(idle)
    assert (row.revoked_at, row.revoked_reason) == (z(NOW), "idle_timeout")
    assert world.session_row(active).revoked_at is None


def test_password_sessions_are_revoked_where_sso_is_required(world: World) -> None:
    bo = world.user("bo@hope.example", tenant=world.hope)
    password = world.login(bo, tenant=world.hope, method="password", mfa=False)
    sso = world.login(bo, tenant=world.hope, method="sso", mfa=False)
    run(world.db, "security_enforce", NOW)
    assert world.session_row(password).revoked_reason == "sso_required"
    assert world.session_row(sso).revoked_at is None  # Hope does not require MFA


def test_sessions_without_mfa_are_revoked_where_mfa_is_required(world: World) -> None:
    ann = world.user("ann@grace.example", tenant=world.grace, mfa=True)
    without = world.login(ann, tenant=world.grace, mfa=False)
    with_mfa = world.login(ann, tenant=world.grace, mfa=True)
    run(world.db, "security_enforce", NOW)
    assert world.session_row(without).revoked_reason == "mfa_required"
    assert world.session_row(with_mfa).revoked_at is None


def test_expired_sessions_and_sessions_of_disabled_users_are_revoked(world: World) -> None:
    ann = world.user("ann@grace.example", tenant=world.grace, mfa=True)
    gone = world.user("gone@grace.example", tenant=world.grace, mfa=True,
                      disabled="2026-03-09T00:00:00Z")  # fmt: skip
    expired = world.login(ann, tenant=world.grace, expires="2026-03-10T11:55:00Z")
    stale = world.login(gone, tenant=world.grace)
    run(world.db, "security_enforce", NOW)
    assert world.session_row(expired).revoked_reason == "expired"
    assert world.session_row(stale).revoked_reason == "user_disabled"


def test_a_rerun_and_a_stale_preview_revoke_nothing_twice(world: World) -> None:
    ann = world.user("ann@grace.example", tenant=world.grace, mfa=True)
    world.login(ann, tenant=world.grace, mfa=False)
    preview = run(world.db, "security_enforce", NOW, dry_run=True)
    assert _kinds(preview) == {"revoke_session": 1}
    first = run(world.db, "security_enforce", NOW)
    assert [r.outcome for r in first.actions] == ["applied"]
    assert _kinds(run(world.db, "security_enforce", NOW)) == {}
    # the preview's action applied now is stale, not a second revocation
    from faithflow_ops.config import Settings
    from faithflow_ops.security import enforce

    with world.db.session() as session:
        try:
            enforce.apply(session, preview.actions[0].action, z(NOW), Settings.from_env())
        except enforce.StaleAction:
            pass
        else:
            raise AssertionError("a second revocation was applied")
    with world.db.read_session() as session:
        entries = session.scalars(
            select(AuditLog).where(AuditLog.action == "security.session.revoke")
        ).all()
        assert len(entries) == 1


def test_the_preview_changes_nothing(world: World) -> None:
    ann = world.user("ann@grace.example", tenant=world.grace)
    session_id = world.login(ann, tenant=world.grace, mfa=False)
    result = run(world.db, "security_enforce", NOW, dry_run=True)
    assert _kinds(result) == {"revoke_session": 1, "warn_mfa": 1}
    assert world.session_row(session_id).revoked_at is None
    assert messages(world.db) == []


def test_a_session_seen_again_since_the_plan_is_not_revoked_for_idleness(world: World) -> None:
    ann = world.user("ann@grace.example", tenant=world.grace, mfa=True)
    sid = world.login(ann, tenant=world.grace, seen="2026-03-10T10:00:00Z")
    preview = run(world.db, "security_enforce", NOW, dry_run=True)
    with world.db.session() as session:
        from faithflow_ops.models import UserSession

        row = session.get(UserSession, sid)
        assert row is not None
        row.last_seen_at = z("2026-03-10T11:59:00Z")
    from faithflow_ops.config import Settings
    from faithflow_ops.security import enforce

    with world.db.session() as session:
        try:
            enforce.apply(session, preview.actions[0].action, z(NOW), Settings.from_env())
        except enforce.StaleAction as exc:
            assert "no longer breaks" in str(exc)
        else:
            raise AssertionError("an active session was revoked")
    assert world.session_row(sid).revoked_at is None


def test_staff_without_mfa_are_warned_then_disabled_after_grace_then_restored(
    world: World,
) -> None:
    cy = world.user("cy@grace.example", tenant=world.grace, role="admin")
    world.user("vol@grace.example", tenant=world.grace, role="volunteer")  # not staff
    world.user("bo@hope.example", tenant=world.hope)  # Hope does not require MFA
    warned = run(world.db, "security_enforce", NOW)
    assert _kinds(warned) == {"warn_mfa": 1}
    [m] = messages(world.db)
    assert (m.channel, m.recipient) == ("email", "cy@grace.example")
    assert "2026-03-17 12:00 UTC" in m.body and "tenant:grace" in m.body
    assert _kinds(run(world.db, "security_enforce", "2026-03-12T12:00:00Z")) == {}
    assert world.user_row(cy).disabled_at is None  # still within the grace period

    late = "2026-03-17T12:00:00Z"
    live = world.login(cy, tenant=world.grace, mfa=True, seen="2026-03-17T11:59:00Z")
    disabled = run(world.db, "security_enforce", late)
    assert _kinds(disabled) == {"disable_user": 1}
    assert world.user_row(cy).disabled_at == z(late)
    assert world.session_row(live).revoked_reason == "user_disabled"
    assert len(messages(world.db)) == 2  # told it is disabled
    assert _kinds(run(world.db, "security_enforce", "2026-03-18T12:00:00Z")) == {}

    with world.db.session() as session:
        from faithflow_ops.models import User

        user = session.get(User, cy)
        assert user is not None
        user.mfa_enabled = True
    restored = run(world.db, "security_enforce", "2026-03-19T12:00:00Z")
    assert _kinds(restored) == {"close_mfa_notice": 1}
    assert world.user_row(cy).disabled_at is None
    with world.db.read_session() as session:
        notice = session.scalar(select(MfaNotice).where(MfaNotice.user_id == cy))
        assert notice is not None and notice.resolution == "enrolled in MFA"
        actions = [a.action for a in session.scalars(select(AuditLog).order_by(AuditLog.id))]
        assert actions[-3:] == ["security.mfa.warn", "security.user.disable",
                                "security.mfa.resolve"]  # fmt: skip


def test_a_grace_period_option_shortens_the_ladder(world: World) -> None:
    world.user("cy@grace.example", tenant=world.grace)
    result = run(world.db, "security_enforce", NOW, grace_days=1)
    assert "2026-03-11 12:00" in result.actions[0].action.reason


def test_a_user_disabled_by_someone_else_is_neither_warned_nor_restored(world: World) -> None:
    world.user("old@grace.example", tenant=world.grace, disabled="2026-01-01T00:00:00Z")
    assert _kinds(run(world.db, "security_enforce", NOW)) == {}


def test_platform_agents_follow_the_platform_baseline(world: World) -> None:
    agent = world.user("agent@faithflow.example", tenant=None, role="platform_agent")
    on_platform = world.login(agent, tenant=None, mfa=False)
    result = run(world.db, "security_enforce", NOW)
    assert _kinds(result) == {"revoke_session": 1, "warn_mfa": 1}
    assert world.session_row(on_platform).revoked_reason == "mfa_required"
    [m] = messages(world.db)
    assert m.recipient == "agent@faithflow.example" and "platform baseline" in m.body


def test_mfa_no_longer_required_closes_the_notice(world: World) -> None:
    world.user("cy@grace.example", tenant=world.grace)
    run(world.db, "security_enforce", NOW)
    from faithflow_ops.tenancy.policies import set_policy

    with world.db.session() as session:
        set_policy(session, "grace", actor="test", mfa_required=False)
    result = run(world.db, "security_enforce", "2026-03-11T12:00:00Z")
    assert _kinds(result) == {"close_mfa_notice": 1}
    assert "no longer required" in result.actions[0].action.reason
