"""`faithflow security audit`: the compliance audit — findings with severity and evidence,
stored (`security_audits`) so drift shows over time.

Findings (code, severity):

- `policy_weaker_than_baseline` (medium): a tenant's policy is below the platform baseline
  (MFA not required; a longer session timeout);
- `policy_weakened` (medium) / `policy_changed` (low): a tenant's policy changed since the
  last stored audit of the same scope (weaker / otherwise);
- `sessions_past_timeout` (high): live sessions idle past their timeout or expired —
  `security enforce` is not running or is behind;
- `sessions_breaking_policy` (high): live password sessions where SSO is required, sessions
  without MFA where MFA is required, sessions of disabled users;
- `staff_without_mfa` (high; medium while every one is within the grace period `security
  enforce` granted): staff of a tenant requiring MFA who have not enrolled;
- `platform_agents_without_mfa` (high): platform agents (the baseline requires MFA);
- `retention_overdue` (medium): rows `retention run` should have purged more than a day ago
  at the default periods (90 days) or the tenant's own — the job is not running or behind;
- `task_endpoints_without_key` (medium): INTEGRATION_API_KEY is not set, so every
  POST /tasks/* is refused and HTTP-triggered jobs (enforcement included) cannot run;
  `task_endpoint_key_weak` (medium): a key shorter than 32 characters.

Platform findings (agents, task key) are part of a full audit, not of a `--tenant` audit.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from sqlalchemy import select
from sqlalchemy.orm import Session

from faithflow_ops.actions import decode
from faithflow_ops.models import MfaNotice, SecurityAudit, Tenant, User, UserSession
from faithflow_ops.retention import purge
from faithflow_ops.security.enforce import gated, session_violation
from faithflow_ops.security.policy import BASELINE, Policy, for_user, policies_by_tenant
from faithflow_ops.tenancy.tenants import get_tenant

if TYPE_CHECKING:
    from faithflow_ops.config import Settings

Severity = Literal["high", "medium", "low"]
SEVERITIES: tuple[Severity, ...] = ("high", "medium", "low")
MIN_KEY_LENGTH = 32
SAMPLE = 10  # ids listed as evidence, at most


@dataclass(frozen=True)
class Finding:
    code: str
    severity: Severity
    subject: str  # "tenant:grace", "platform"
    title: str
    evidence: dict[str, Any] = field(default_factory=dict)

    @property
    def key(self) -> str:
        return f"{self.code}:{self.subject}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "severity": self.severity,
            "code": self.code,
            "subject": self.subject,
            "title": self.title,
            "evidence": self.evidence,
        }


@dataclass
class Report:
    audited_at: dt.datetime
    tenant: str | None  # None = the whole platform
    findings: list[Finding]
    policies: dict[str, dict[str, Any]]  # slug -> policy values, for the next drift check
    previous_id: int | None = None
    stored_id: int | None = None
    diff: dict[str, Any] | None = None

    @property
    def counts(self) -> dict[str, int]:
        return {s: sum(1 for f in self.findings if f.severity == s) for s in SEVERITIES}

    def to_dict(self) -> dict[str, Any]:
        doc: dict[str, Any] = {
            "audited_at": self.audited_at.isoformat(),
            "scope": f"tenant:{self.tenant}" if self.tenant else "platform",
            "counts": self.counts,
            "findings": [f.to_dict() for f in self.findings],
            "stored_id": self.stored_id,
            "previous_id": self.previous_id,
        }
        if self.diff is not None:
            doc["diff"] = self.diff
        return doc


def _values(policy: Policy) -> dict[str, Any]:
    return {
        "mfa_required": policy.mfa_required,
        "sso_required": policy.sso_required,
        "session_timeout_minutes": policy.session_timeout_minutes,
    }


def _weaker(before: dict[str, Any], after: dict[str, Any]) -> list[str]:
    """Fields of `after` weaker than `before` (MFA or SSO dropped, longer timeout)."""
    out = [f for f in ("mfa_required", "sso_required") if before.get(f) and not after.get(f)]
    if after["session_timeout_minutes"] > before.get("session_timeout_minutes", 0):
        out.append("session_timeout_minutes")
    return out


def run_audit(
    session: Session, settings: Settings, now: dt.datetime, tenant_slug: str | None = None
) -> Report:
    only = get_tenant(session, tenant_slug) if tenant_slug else None
    policies = policies_by_tenant(session)
    tenants = {
        t.id: t
        for t in session.scalars(select(Tenant).order_by(Tenant.slug))
        if t.deleted_at is None and (only is None or t.id == only.id)
    }
    findings: list[Finding] = []
    snapshot = {t.slug: _values(policies[t.id]) for t in tenants.values()}

    base = _values(BASELINE)
    for tenant in tenants.values():
        weaker = _weaker(base, snapshot[tenant.slug])
        if weaker:
            findings.append(
                Finding(
                    "policy_weaker_than_baseline",
                    "medium",
                    f"tenant:{tenant.slug}",
                    f"{tenant.slug}'s policy is weaker than the platform baseline: "
                    + ", ".join(weaker),
                    {f: {"tenant": snapshot[tenant.slug][f], "baseline": base[f]} for f in weaker},
                )
            )

    previous = session.scalar(
        select(SecurityAudit)
        .where(
            SecurityAudit.tenant_id.is_(None)
            if only is None
            else SecurityAudit.tenant_id == only.id
        )
        .order_by(SecurityAudit.audited_at.desc(), SecurityAudit.id.desc())
        .limit(1)
    )
    if previous is not None:
        findings.extend(_drift(previous, snapshot))

    findings.extend(_sessions(session, tenants, policies, now, platform=only is None))
    findings.extend(_staff(session, tenants, policies, now, platform=only is None))
    findings.extend(
        _retention(session, now, tenants, settings.retention_days, platform=only is None)
    )
    if only is None:
        findings.extend(_task_key(settings))

    order = {s: i for i, s in enumerate(SEVERITIES)}
    findings.sort(key=lambda f: (order[f.severity], f.code, f.subject))
    return Report(now, only.slug if only else None, findings, snapshot,
                  previous.id if previous else None)  # fmt: skip


def _drift(previous: SecurityAudit, snapshot: dict[str, dict[str, Any]]) -> list[Finding]:
    out = []
    for slug, now_values in snapshot.items():
        before = (previous.policies or {}).get(slug)
        if before is None or before == now_values:
            continue
        changed = {
            f: {"before": before.get(f), "after": v}
            for f, v in now_values.items()
            if before.get(f) != v
        }
        weaker = _weaker(before, now_values)
        since = f"since the audit of {previous.audited_at:%Y-%m-%d %H:%M}Z"
        evidence = {"changes": changed, "previous_audit": previous.id}
        if weaker:
            out.append(Finding("policy_weakened", "medium", f"tenant:{slug}",
                               f"{slug}'s policy was weakened {since}: {', '.join(weaker)}",
                               evidence))  # fmt: skip
        else:
            out.append(Finding("policy_changed", "low", f"tenant:{slug}",
                               f"{slug}'s policy changed {since}: {', '.join(changed)}",
                               evidence))  # fmt: skip
    return out


def _subject(tenant_id: int | None, tenants: dict[int, Tenant]) -> str | None:
    if tenant_id is None:
        return "platform"
    tenant = tenants.get(tenant_id)
    return f"tenant:{tenant.slug}" if tenant is not None else None


def _sessions(
    session: Session,
    tenants: dict[int, Tenant],
    policies: dict[int, Policy],
    now: dt.datetime,
    *,
    platform: bool,
) -> list[Finding]:
    timed_out: dict[str, list[UserSession]] = defaultdict(list)
    breaking: dict[str, dict[str, list[int]]] = defaultdict(lambda: defaultdict(list))
    rows = session.execute(
        select(UserSession, User)
        .join(User, User.id == UserSession.user_id)
        .where(UserSession.revoked_at.is_(None))
        .order_by(UserSession.last_seen_at)
    )
    for row, user in rows:
        subject = _subject(row.tenant_id if row.tenant_id is not None else user.tenant_id,
                           tenants)  # fmt: skip
        if subject is None or (subject == "platform" and not platform):
            continue
        found = session_violation(row, user, for_user(user, policies, row.tenant_id), now)
        if found is None:
            continue
        reason = found[0]
        if reason in ("idle_timeout", "expired"):
            timed_out[subject].append(row)
        else:
            breaking[subject][reason].append(row.id)
    out = []
    for subject, sessions in timed_out.items():
        oldest = sessions[0].last_seen_at
        out.append(
            Finding(
                "sessions_past_timeout",
                "high",
                subject,
                f"{len(sessions)} live session(s) past their timeout or expiry (oldest last "
                f"seen {oldest:%Y-%m-%d %H:%M}Z): is `security enforce` running?",
                {
                    "count": len(sessions),
                    "oldest_last_seen_at": oldest.isoformat(),
                    "session_ids": [s.id for s in sessions[:SAMPLE]],
                },
            )
        )
    for subject, by_reason in breaking.items():
        total = sum(len(ids) for ids in by_reason.values())
        out.append(
            Finding(
                "sessions_breaking_policy",
                "high",
                subject,
                f"{total} live session(s) break the policy: "
                + ", ".join(f"{len(ids)} {reason}" for reason, ids in sorted(by_reason.items())),
                {
                    reason: {"count": len(ids), "session_ids": ids[:SAMPLE]}
                    for reason, ids in sorted(by_reason.items())
                },
            )
        )
    return out


def _staff(
    session: Session,
    tenants: dict[int, Tenant],
    policies: dict[int, Policy],
    now: dt.datetime,
    *,
    platform: bool,
) -> list[Finding]:
    notices = {n.user_id: n for n in session.scalars(select(MfaNotice))}
    missing: dict[str, list[dict[str, Any]]] = defaultdict(list)
    overdue: dict[str, bool] = defaultdict(bool)
    users = session.scalars(
        select(User).where(User.mfa_enabled.is_(False), User.disabled_at.is_(None))
        .order_by(User.id)
    )  # fmt: skip
    for user in users:
        subject = _subject(user.tenant_id, tenants)
        if subject is None or (subject == "platform" and not platform) or not gated(user):
            continue
        if not for_user(user, policies).mfa_required:
            continue
        notice = notices.get(user.id)
        open_notice = notice if notice is not None and notice.resolved_at is None else None
        in_grace = open_notice is not None and now < open_notice.disable_after
        overdue[subject] = overdue[subject] or not in_grace
        missing[subject].append(
            {
                "user_id": user.id,
                "email": user.email,
                "role": user.role,
                "warned_at": open_notice.warned_at.isoformat() if open_notice else None,
                "disable_after": open_notice.disable_after.isoformat() if open_notice else None,
            }
        )
    out = []
    for subject, people in missing.items():
        agents = subject == "platform"
        out.append(
            Finding(
                "platform_agents_without_mfa" if agents else "staff_without_mfa",
                "high" if overdue[subject] else "medium",
                subject,
                f"{len(people)} {'platform agent(s)' if agents else 'staff member(s)'} without "
                "MFA where it is required"
                + ("" if overdue[subject] else " (all within the grace period)"),
                {"users": people[:SAMPLE], "count": len(people)},
            )
        )
    return out


def _retention(
    session: Session,
    now: dt.datetime,
    tenants: dict[int, Tenant],
    days: Mapping[str, int],
    *,
    platform: bool,
) -> list[Finding]:
    """What `retention run` (the configured periods, FAITHFLOW_RETENTION_<CLASS>_DAYS) would
    still purge as of a day ago."""
    late: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    overdue_at = now - dt.timedelta(days=1)
    for action in purge.plan(session, overdue_at, days, batch_size=100_000):
        batch = decode(purge.PurgeBatch, action.data)
        subject = _subject(batch.tenant_id, tenants)
        if subject is None or (subject == "platform" and not platform):
            continue
        late[subject][batch.data_class] += batch.rows
    return [
        Finding(
            "retention_overdue",
            "medium",
            subject,
            f"{sum(rows.values())} row(s) past their retention period by over a day: "
            + ", ".join(f"{n} {c}" for c, n in sorted(rows.items()))
            + " (is `retention run` running?)",
            {"rows": dict(sorted(rows.items())), "as_of": overdue_at.isoformat()},
        )
        for subject, rows in late.items()
    ]


def _task_key(settings: Settings) -> list[Finding]:
    key = settings.integration_api_key
    if not key:
        return [
            Finding(
                "task_endpoints_without_key",
                "medium",
                "platform",
                "INTEGRATION_API_KEY is not set: every POST /tasks/* is refused, so jobs "
                "triggered over HTTP (security enforce included) cannot run",
                {"INTEGRATION_API_KEY": "unset"},
            )
        ]
    if len(key) < MIN_KEY_LENGTH:
        return [
            Finding(
                "task_endpoint_key_weak",
                "medium",
                "platform",
                f"INTEGRATION_API_KEY is {len(key)} characters; use at least {MIN_KEY_LENGTH} "
                "random ones (e.g. `openssl rand -hex 32`)",
                {"length": len(key), "minimum": MIN_KEY_LENGTH},
            )
        ]
    return []


def store(session: Session, report: Report) -> int:
    tenant_id = get_tenant(session, report.tenant).id if report.tenant else None
    counts = report.counts
    row = SecurityAudit(
        audited_at=report.audited_at,
        tenant_id=tenant_id,
        high=counts["high"],
        medium=counts["medium"],
        low=counts["low"],
        findings=[f.to_dict() for f in report.findings],
        policies=report.policies,
    )
    session.add(row)
    session.flush()
    report.stored_id = row.id
    return row.id


def diff_with_previous(session: Session, report: Report) -> dict[str, Any]:
    """Findings new since the previous stored audit of the same scope, resolved since, and
    those whose severity changed."""
    if report.previous_id is None:
        return {"previous_id": None, "new": [f.to_dict() for f in report.findings],
                "resolved": [], "changed": []}  # fmt: skip
    previous = session.get(SecurityAudit, report.previous_id)
    assert previous is not None
    before = {f"{f['code']}:{f['subject']}": f for f in previous.findings or []}
    after = {f.key: f.to_dict() for f in report.findings}
    return {
        "previous_id": previous.id,
        "previous_audited_at": previous.audited_at.isoformat(),
        "new": [after[k] for k in after if k not in before],
        "resolved": [before[k] for k in before if k not in after],
        "changed": [
            {**after[k], "severity_before": before[k]["severity"]}
            for k in after
            if k in before and before[k]["severity"] != after[k]["severity"]
        ],
    }
