"""`security enforce`: the rules and appliers (the job module is glue).

Sessions (`user_sessions`, written by the main application) are revoked — `revoked_at` and
`revoked_reason` — when they break the policy they follow (security/policy.py):

- `user_disabled`: the user is disabled or deleted;
- `sso_required`: a password session in a tenant that requires SSO;
- `mfa_required`: a session that did not pass MFA where MFA is required;
- `expired`: past its `expires_at`;
- `idle_timeout`: not seen for longer than the session timeout.

Staff (owner, admin, staff) of a tenant that requires MFA, and platform agents (the platform
baseline requires it), who have not enrolled are warned by e-mail through the outbox
(`warn_mfa`), disabled when the grace period (default 7 days) ends without enrolment
(`disable_user`, which also revokes their live sessions), and restored once they enrol or MFA
is no longer required (`close_mfa_notice`; only a user this job disabled is re-enabled).

Every apply re-reads its rows under a write lock and re-checks the rule with the current
policy, so a rerun or a stale preview changes nothing twice (StaleAction); every change is
written to `audit_log`.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from faithflow_ops import audit
from faithflow_ops.actions import Action, StaleAction, decode, encode
from faithflow_ops.comms import outbox
from faithflow_ops.db import rowcount
from faithflow_ops.models import MfaNotice, Tenant, User, UserSession
from faithflow_ops.security.policy import (
    PLATFORM_ROLES,
    STAFF_ROLES,
    Policy,
    for_user,
    policies_by_tenant,
)

if TYPE_CHECKING:
    from faithflow_ops.config import Settings

ACTOR = "job:security_enforce"
KINDS = ("revoke_session", "warn_mfa", "disable_user", "close_mfa_notice")


@dataclass(frozen=True)
class RevokeSession:  # kind "revoke_session"
    session_id: int
    user_id: int
    tenant_id: int | None
    reason: str
    detail: str


@dataclass(frozen=True)
class WarnMfa:  # kind "warn_mfa"
    user_id: int
    tenant_id: int | None
    policy: str
    disable_after: dt.datetime


@dataclass(frozen=True)
class DisableUser:  # kind "disable_user"
    user_id: int
    notice_id: int
    tenant_id: int | None
    policy: str


@dataclass(frozen=True)
class CloseMfaNotice:  # kind "close_mfa_notice"
    user_id: int
    notice_id: int
    restore: bool  # re-enable the user (this job disabled them)
    resolution: str


def session_violation(
    row: UserSession, user: User, policy: Policy, now: dt.datetime
) -> tuple[str, str] | None:
    """(reason, detail) the session must be revoked for, the most serious first; None = keep."""
    if user.deleted_at is not None or user.disabled_at is not None:
        when = user.deleted_at or user.disabled_at
        return (
            "user_disabled",
            f"user {'deleted' if user.deleted_at else 'disabled'} {when:%Y-%m-%d %H:%M}Z",
        )
    if policy.sso_required and row.auth_method == "password":
        return "sso_required", f"password session; {policy.source} requires SSO"
    if policy.mfa_required and not row.mfa_passed:
        return "mfa_required", f"session without MFA; {policy.source} requires MFA"
    if row.expires_at is not None and row.expires_at <= now:
        return "expired", f"expired {row.expires_at:%Y-%m-%d %H:%M}Z"
    idle = now - row.last_seen_at
    if idle >= policy.timeout:
        return "idle_timeout", (
            f"idle {_span(idle)} (last seen {row.last_seen_at:%Y-%m-%d %H:%M}Z); "
            f"{policy.source} times out after {policy.session_timeout_minutes} min"
        )
    return None


def _span(delta: dt.timedelta) -> str:
    minutes = int(delta.total_seconds() // 60)
    if minutes < 120:
        return f"{minutes} min"
    hours = minutes // 60
    return f"{hours} h" if hours < 48 else f"{hours // 24} d"


def gated(user: User) -> bool:
    """Whether the staff MFA rule applies to the user (tenant staff and platform agents)."""
    if user.deleted_at is not None:
        return False
    if user.tenant_id is None:
        return user.role in PLATFORM_ROLES
    return user.role in STAFF_ROLES


def plan(
    session: Session, now: dt.datetime, grace: dt.timedelta, limit: int | None = None
) -> Iterator[Action]:
    for count, action in enumerate(_plan(session, now, grace)):
        if limit is not None and count >= limit:
            return
        yield action


def _plan(session: Session, now: dt.datetime, grace: dt.timedelta) -> Iterator[Action]:
    policies = policies_by_tenant(session)
    live = session.execute(
        select(UserSession, User)
        .join(User, User.id == UserSession.user_id)
        .where(UserSession.revoked_at.is_(None))
        .order_by(UserSession.id)
    )
    for row, user in live:
        policy = for_user(user, policies, row.tenant_id)
        found = session_violation(row, user, policy, now)
        if found is None:
            continue
        reason, detail = found
        yield Action(
            "revoke_session",
            f"session:{row.id}",
            f"{reason}: {detail}",
            encode(RevokeSession(row.id, user.id, row.tenant_id, reason, detail)),
        )

    notices = {n.user_id: n for n in session.scalars(select(MfaNotice))}
    for user in session.scalars(select(User).order_by(User.id)):
        yield from _mfa_actions(user, notices.get(user.id), for_user(user, policies), now, grace)


def _mfa_actions(
    user: User, notice: MfaNotice | None, policy: Policy, now: dt.datetime, grace: dt.timedelta
) -> Iterator[Action]:
    open_notice = notice if notice is not None and notice.resolved_at is None else None
    needs = gated(user) and policy.mfa_required and not user.mfa_enabled
    target = f"user:{user.id}"
    if needs:
        if open_notice is None:
            if user.disabled_at is None:  # someone else disabled them: nothing to warn about
                until = now + grace
                yield Action(
                    "warn_mfa",
                    target,
                    f"{user.email} has no MFA; {policy.source} requires it: warn, disable "
                    f"after {until:%Y-%m-%d %H:%M}Z",
                    encode(WarnMfa(user.id, user.tenant_id, policy.source, until)),
                )
        elif (
            open_notice.disabled_at is None
            and now >= open_notice.disable_after
            and user.disabled_at is None
        ):
            yield Action(
                "disable_user",
                target,
                f"{user.email} still has no MFA after the grace period (warned "
                f"{open_notice.warned_at:%Y-%m-%d %H:%M}Z, due "
                f"{open_notice.disable_after:%Y-%m-%d %H:%M}Z): disable until enrolled",
                encode(DisableUser(user.id, open_notice.id, user.tenant_id, policy.source)),
            )
        return
    if open_notice is not None:
        why = "enrolled in MFA" if user.mfa_enabled else "MFA is no longer required"
        if user.deleted_at is not None:
            why = "user deleted"
        restore = (
            open_notice.disabled_at is not None
            and user.disabled_at == open_notice.disabled_at
            and user.deleted_at is None
        )
        yield Action(
            "close_mfa_notice",
            target,
            f"{user.email}: {why}" + ("; re-enable the user" if restore else ""),
            encode(CloseMfaNotice(user.id, open_notice.id, restore, why)),
        )


# ---------------------------------------------------------------------------------------------
# apply


def apply(session: Session, action: Action, now: dt.datetime, settings: Settings | None) -> None:
    if action.kind == "revoke_session":
        _revoke(session, decode(RevokeSession, action.data), now)
    elif action.kind == "warn_mfa":
        _warn(session, decode(WarnMfa, action.data), now, settings)
    elif action.kind == "disable_user":
        _disable(session, decode(DisableUser, action.data), now, settings)
    elif action.kind == "close_mfa_notice":
        _close(session, decode(CloseMfaNotice, action.data), now)
    else:
        raise ValueError(f"unknown action kind {action.kind!r}")


def _locked_user(session: Session, user_id: int) -> User:
    user = session.scalar(select(User).where(User.id == user_id).with_for_update())
    if user is None:
        raise StaleAction(f"user:{user_id} is gone")
    return user


def _policy_now(session: Session, user: User, tenant_id: int | None) -> Policy:
    return for_user(user, policies_by_tenant(session), tenant_id)


def _revoke(session: Session, payload: RevokeSession, now: dt.datetime) -> None:
    row = session.scalar(
        select(UserSession).where(UserSession.id == payload.session_id).with_for_update()
    )
    if row is None or row.revoked_at is not None:
        raise StaleAction(f"session:{payload.session_id} is already revoked")
    user = _locked_user(session, row.user_id)
    found = session_violation(row, user, _policy_now(session, user, row.tenant_id), now)
    if found is None:
        raise StaleAction(f"session:{row.id} no longer breaks its policy")
    reason, detail = found
    _mark_revoked(session, [row.id], reason, now)
    audit.record(
        session,
        actor=ACTOR,
        action="security.session.revoke",
        entity_type="user_session",
        entity_id=row.id,
        tenant_id=row.tenant_id,
        before={"revoked_at": None},
        after={
            "revoked_at": now.isoformat(),
            "reason": reason,
            "detail": detail,
            "user_id": user.id,
        },
    )


def _mark_revoked(session: Session, ids: list[int], reason: str, now: dt.datetime) -> int:
    if not ids:
        return 0
    return rowcount(
        session.execute(
            update(UserSession)
            .where(UserSession.id.in_(ids), UserSession.revoked_at.is_(None))
            .values(revoked_at=now, revoked_reason=reason, updated_at=now)
        )
    )


def _notify(
    session: Session,
    user: User,
    *,
    headline: str,
    text: str,
    policy: str,
    key: str,
    now: dt.datetime,
    settings: Settings | None,
) -> None:
    tenant = session.get(Tenant, user.tenant_id) if user.tenant_id is not None else None
    outbox.enqueue(
        session,
        channel="email",
        recipient=user.email,
        template="security_mfa_notice",
        variables={
            "headline": headline,
            "user_name": user.name,
            "text": text,
            "policy": policy,
            "sender": tenant.name if tenant is not None else "FaithFlow",
        },
        idempotency_key=key,
        now=now,
        tenant=tenant,
        priority=20,
        category="security",
        about=("user", user.id),
        settings=settings,
    )


def _warn(session: Session, payload: WarnMfa, now: dt.datetime, settings: Settings | None) -> None:
    user = _locked_user(session, payload.user_id)
    policy = _policy_now(session, user, None)
    if not (gated(user) and policy.mfa_required and not user.mfa_enabled):
        raise StaleAction(f"user:{user.id} enrolled in MFA or it is no longer required")
    if user.disabled_at is not None:
        raise StaleAction(f"user:{user.id} was disabled since the plan")
    notice = session.scalar(select(MfaNotice).where(MfaNotice.user_id == user.id).with_for_update())
    if notice is None:
        notice = MfaNotice(user_id=user.id, tenant_id=user.tenant_id, warned_at=now,
                           disable_after=payload.disable_after)  # fmt: skip
        session.add(notice)
    elif notice.resolved_at is None:
        raise StaleAction(f"user:{user.id} was already warned {notice.warned_at:%Y-%m-%d}")
    else:  # re-armed: they fell out of compliance again
        notice.tenant_id = user.tenant_id
        notice.warned_at = now
        notice.disable_after = payload.disable_after
        notice.disabled_at = None
        notice.resolved_at = None
        notice.resolution = None
    session.flush()
    due = f"{payload.disable_after:%Y-%m-%d %H:%M} UTC"
    _notify(
        session,
        user,
        headline="Action needed: enrol in multi-factor authentication",
        text=f"Your account must use multi-factor authentication (MFA). Enrol before {due}: "
        "until then you can sign in as before; after that your account is disabled until you "
        "enrol.",
        policy=policy.source,
        key=f"security:mfa-warning:{user.id}:{now.isoformat()}",
        now=now,
        settings=settings,
    )
    audit.record(
        session,
        actor=ACTOR,
        action="security.mfa.warn",
        entity_type="user",
        entity_id=user.id,
        tenant_id=user.tenant_id,
        after={
            "warned_at": now.isoformat(),
            "disable_after": payload.disable_after.isoformat(),
            "policy": policy.source,
        },
    )


def _disable(
    session: Session, payload: DisableUser, now: dt.datetime, settings: Settings | None
) -> None:
    user = _locked_user(session, payload.user_id)
    notice = session.scalar(
        select(MfaNotice).where(MfaNotice.id == payload.notice_id).with_for_update()
    )
    policy = _policy_now(session, user, None)
    if (
        notice is None
        or notice.resolved_at is not None
        or notice.disabled_at is not None
        or now < notice.disable_after
    ):
        raise StaleAction(f"user:{user.id}: the MFA notice was closed or already acted on")
    if not (gated(user) and policy.mfa_required and not user.mfa_enabled):
        raise StaleAction(f"user:{user.id} enrolled in MFA or it is no longer required")
    if user.disabled_at is not None:
        raise StaleAction(f"user:{user.id} is already disabled")
    user.disabled_at = now
    notice.disabled_at = now
    live = list(
        session.scalars(
            select(UserSession.id).where(
                UserSession.user_id == user.id, UserSession.revoked_at.is_(None)
            )
        )
    )
    revoked = _mark_revoked(session, live, "user_disabled", now)
    session.flush()
    _notify(
        session,
        user,
        headline="Your account is disabled until you enrol in multi-factor authentication",
        text=f"You were asked on {notice.warned_at:%Y-%m-%d} to enrol in multi-factor "
        "authentication (MFA) and have not yet. Your account is disabled; enrol in MFA (ask an "
        "administrator of your church for help) and it is re-enabled at the next check.",
        policy=policy.source,
        key=f"security:mfa-disabled:{user.id}:{now.isoformat()}",
        now=now,
        settings=settings,
    )
    audit.record(
        session,
        actor=ACTOR,
        action="security.user.disable",
        entity_type="user",
        entity_id=user.id,
        tenant_id=user.tenant_id,
        before={"disabled_at": None},
        after={
            "disabled_at": now.isoformat(),
            "reason": "mfa_required",
            "policy": policy.source,
            "sessions_revoked": revoked,
        },
    )


def _close(session: Session, payload: CloseMfaNotice, now: dt.datetime) -> None:
    user = _locked_user(session, payload.user_id)
    notice = session.scalar(
        select(MfaNotice).where(MfaNotice.id == payload.notice_id).with_for_update()
    )
    if notice is None or notice.resolved_at is not None:
        raise StaleAction(f"user:{user.id}: the MFA notice is already closed")
    if gated(user) and _policy_now(session, user, None).mfa_required and not user.mfa_enabled:
        raise StaleAction(f"user:{user.id} still needs MFA")
    restored = False
    if (
        notice.disabled_at is not None
        and user.disabled_at == notice.disabled_at
        and user.deleted_at is None
    ):
        user.disabled_at = None
        restored = True
    notice.resolved_at = now
    notice.resolution = payload.resolution
    session.flush()
    audit.record(
        session,
        actor=ACTOR,
        action="security.mfa.resolve",
        entity_type="user",
        entity_id=user.id,
        tenant_id=user.tenant_id,
        before={"disabled_at": notice.disabled_at.isoformat()}
        if restored and notice.disabled_at
        else None,
        after={"resolution": payload.resolution, "restored": restored},
    )


def table_rows(action: Action) -> list[tuple[Any, ...]]:
    reason, _, detail = action.reason.partition(": ")
    if action.kind == "revoke_session":
        return [(action.kind, action.target, reason, detail)]
    return [(action.kind, action.target, "mfa", action.reason)]
