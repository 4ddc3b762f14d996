"""The domain lifecycle rules, as a pure function of a domain's state and what the probes saw
(`domains automate` plans with it; tests drive it directly). The runbook is docs/domains.md.

States: `pending_dns` → `issuing_cert` → `active` ⇄ `expiring`; `degraded` (failover to the
fallback hostname), `failed` (needs a human), `removed`.

- pending_dns: verified when the TXT ownership record and the CNAME/A records are both right →
  `issuing_cert` (the edge is asked to serve the host). Otherwise re-checked on a backoff —
  every 15 minutes during the first day, hourly after — and `failed` once
  FAITHFLOW_DOMAIN_PENDING_DAYS (7) have passed, with a message to the church, at a check that
  answered definitively (a timeout or SERVFAIL at the deadline is asked again an hour later).
  A CAA record set that excludes the edge's certificate authorities (FAITHFLOW_DOMAIN_EDGE_CAS)
  keeps it pending, the reason naming the record to add.
- issuing_cert: `active` (or `expiring`) as soon as the served certificate is valid for the host.
  The edge is asked again on a backoff (15 minutes doubling to 6 hours). No certificate after
  FAITHFLOW_DOMAIN_ISSUING_DAYS (3) → `failed` (`fail_issuance`): a warning incident for the
  certificate and a message to the church (`domain_certificate_failed`), naming the CAA fix
  when a CAA record set blocks it.
- active / expiring / degraded: a check fails when the DNS target is not `ok` (any result,
  transient included) or the certificate is unreachable, expired or invalid. One failure never
  changes the state: FAITHFLOW_DOMAIN_FAILURE_THRESHOLD (3) consecutive failures degrade an
  active domain (failover on, incident opened); FAITHFLOW_DOMAIN_RECOVERY_THRESHOLD (3)
  passing checks in a row recover a degraded one (failover off, incident resolved). A failure
  before that keeps it degraded and counts a flap on the same incident. Both are audited. An
  expired/invalid certificate alone fails over under the certificate's incident, not a second.
- Certificate status follows each definitive TLS answer at once (`active|expiring|expired|
  invalid`); an unreachable probe leaves it as it was. `expired`/`invalid` open an incident for
  the certificate at once. `expiring` = renewal is due (a third of the lifetime left,
  cert-manager's default): the edge is asked to renew, then again on a backoff (`edge_ask_due`:
  15 minutes doubling to EDGE_ASK_CAP), not at every check.
- Expiry warnings go out only once renewal is overdue (a sixth of the lifetime left: half the
  renewal window passed without a new certificate), once per threshold (14/7/3/1 days) per
  certificate: when several are crossed at once, one warning (the nearest) and all crossed
  thresholds are marked sent. A healthy short-lived certificate (6 days) never warns.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from faithflow_ops.providers.dns import DnsResult
from faithflow_ops.providers.tls import TlsResult

CHECK_EVERY = dt.timedelta(minutes=15)
PENDING_FAST_FOR = dt.timedelta(days=1)
PENDING_SLOW_EVERY = dt.timedelta(hours=1)
# Asking the edge again (to issue or renew) backs off: 15 minutes, doubling, at most this.
EDGE_ASK_FIRST = CHECK_EVERY
EDGE_ASK_CAP = dt.timedelta(hours=6)
# A verified domain's certificate must be served within this (FAITHFLOW_DOMAIN_ISSUING_DAYS).
ISSUING_DEADLINE = dt.timedelta(days=3)
SERVING = ("active", "expiring", "degraded")


@dataclass(frozen=True)
class DomainState:
    """What the rules read of a domain (a row, or a test's made-up one)."""

    id: int
    hostname: str
    status: str
    certificate_status: str
    consecutive_failures: int
    failover_active: bool
    pending_since: dt.datetime  # when it was added (or revived by `domains verify`)
    cert_not_after: dt.datetime | None = None
    cert_warnings_sent: tuple[int, ...] = ()
    cert_not_before: dt.datetime | None = None
    verified_at: dt.datetime | None = None  # issuing_cert since (the issuance deadline's start)
    last_checked_at: dt.datetime | None = None  # the previous check (edge asks back off from it)
    consecutive_passes: int = 0  # passing checks in a row while degraded


@dataclass
class Decision:
    """One domain's outcome: the action kind, why, the new column values, and side effects."""

    kind: str
    reason: str
    changes: dict[str, Any] = field(default_factory=dict)
    edge: str | None = None  # "add" (serve the host) | "renew" (ask for a certificate)
    warning_days: int | None = None  # send a certificate expiry warning for this threshold
    message_tenant: str | None = None  # template to send the church (domain failed)
    raise_incidents: list[tuple[str, str, str]] = field(default_factory=list)  # cause, sev, title
    clear_incidents: list[str] = field(default_factory=list)
    flap: bool = False  # a degraded domain failing again mid-recovery: count a flap


# --- action payloads (`domains automate`; faithflow_ops.actions.encode/decode) ---------------


@dataclass(frozen=True)
class NotChecked:
    """`not_checked` (report-only): a domain that cannot be checked until a setting is made;
    it keeps its state. Also the fields every kind's table row shows."""

    domain_id: int
    hostname: str
    tenant: str  # the tenant's slug
    tenant_id: int
    from_status: str
    status: str
    certificate_status: str
    failover_active: bool
    consecutive_failures: int


@dataclass(frozen=True)
class DomainStep:
    """The payload of every decided kind (`verify_domain`, `pending_check`, `fail_domain`,
    `issuing_check`, `fail_issuance`, `activate_domain`, `check`, `check_failed`, `degrade_domain`,
    `recover_domain`, `certificate_expiring`, `certificate_renewed`, `certificate_warning`):
    the kind is the Decision's outcome, the data the same for all, so one class serves them.

    apply claims the row while its status is still `from_status` and its last check still the
    one the plan saw (`planned_checked_at`), writes `changes`, the `checks` history, the
    incidents, the audit row and the messages; `edge` is then asked of the edge."""

    domain_id: int
    hostname: str
    tenant: str  # the tenant's slug
    tenant_id: int
    from_status: str
    planned_checked_at: dt.datetime | None
    status: str  # after the step
    certificate_status: str
    failover_active: bool
    consecutive_failures: int
    changes: dict[str, Any]  # the new column values (Decision.changes; times as ISO-8601)
    checks: list[dict[str, Any]]  # domain_checks rows: kind, result, detail, latency_ms, data
    edge: str | None
    warning_days: int | None
    message_tenant: str | None
    raise_incidents: tuple[tuple[str, str, str], ...]  # cause, severity, title
    clear_incidents: tuple[str, ...]
    flap: bool = False  # Decision.flap: the raised incidents count a flap


def edge_ask_due(since: dt.datetime, last: dt.datetime | None, now: dt.datetime) -> bool:
    """Is an ask of the edge due at this check? Asks are due at `since` (the phase began:
    verified, or renewal due), then at intervals of 15 minutes, 30, 1 h, 2 h … doubling up to
    EDGE_ASK_CAP and every EDGE_ASK_CAP after; one is due when such a time falls after the
    previous check (`last`) and not after `now`. No state beyond the check times. A phase
    stuck for 3 days asks 16 times, for 90 days ~365, instead of 288 and 8,640."""
    if now < since:
        return False
    if last is None or last < since:
        return True
    offset, step, seen_after, upto = dt.timedelta(0), EDGE_ASK_FIRST, last - since, now - since
    while offset <= upto:
        if offset > seen_after:
            return True
        if step >= EDGE_ASK_CAP:  # evenly spaced from here: jump to the next point after last
            skipped = (seen_after - offset) // EDGE_ASK_CAP + 1
            return offset + skipped * EDGE_ASK_CAP <= upto
        offset += step
        step = min(step * 2, EDGE_ASK_CAP)
    return False


def incident_cause(hostname: str, part: str | None = None) -> str:
    return f"domain:{hostname}" + (f":{part}" if part else "")


def tenant_message_key(domain_id: int, template: str, failed_at: dt.datetime) -> str:
    """The outbox key of a message to the church about a domain failure: one per failure
    episode, which `failed_at` (when this failure started) names. A domain revived by
    `domains verify` that fails again is a new episode and tells the church again; the same
    episode never sends twice."""
    stamp = failed_at.astimezone(dt.UTC).strftime("%Y%m%dT%H%M%S.%fZ")
    return f"domain:{domain_id}:{template}:{stamp}"


def decide(
    domain: DomainState,
    now: dt.datetime,
    *,
    txt: DnsResult | None,
    target: DnsResult,
    tls: TlsResult | None,
    threshold: int,
    pending_days: int,
    warning_days: Sequence[int],
    recover_after: int = 1,
    caa: DnsResult | None = None,
    issuing_deadline: dt.timedelta = ISSUING_DEADLINE,
) -> Decision:
    """The rules of the module docstring, for one domain at `now` (`recover_after`: passing
    checks in a row that end a degradation, FAITHFLOW_DOMAIN_RECOVERY_THRESHOLD; `caa`: may the
    edge's CA issue for it (pending and issuing domains; None: not checked); `issuing_deadline`:
    FAITHFLOW_DOMAIN_ISSUING_DAYS)."""
    base: dict[str, Any] = {
        "last_checked_at": now,
        "dns_result": target.status,
        "dns_detail": target.detail,
    }
    if txt is not None:
        base["txt_result"] = txt.status
    if domain.status not in ("pending_dns", "issuing_cert", *SERVING):
        raise ValueError(f"{domain.hostname} is {domain.status}: nothing to decide")
    if domain.status == "pending_dns":
        return _pending(domain, now, txt, target, caa, pending_days, base)
    if domain.status == "issuing_cert":
        return _issuing(domain, now, target, tls, caa, issuing_deadline, base)
    return _serving(domain, now, target, tls, threshold, warning_days, base, recover_after)


def _pending(
    domain: DomainState,
    now: dt.datetime,
    txt: DnsResult | None,
    target: DnsResult,
    caa: DnsResult | None,
    pending_days: int,
    changes: dict[str, Any],
) -> Decision:
    txt_ok = txt is not None and txt.ok
    # A CAA record set that excludes the edge's CA would block issuance: not verified until
    # the church fixes it (the detail names the record to add). A CAA timeout does not block.
    caa_blocks = caa_blocked(caa)
    if txt_ok and target.ok and not caa_blocks:
        changes.update(
            status="issuing_cert",
            verified_at=now,
            certificate_status="pending",
            last_ok_at=now,
            consecutive_failures=0,
            next_check_at=now + CHECK_EVERY,
        )
        return Decision("verify_domain", "ownership TXT and DNS target are right", changes, "add")
    missing = []
    if not txt_ok:
        missing.append(f"TXT {txt.status if txt else 'not checked'}")
    if not target.ok:
        missing.append(f"target {target.status}")
    if caa_blocks and caa is not None:
        missing.append(caa.detail)
    age = now - domain.pending_since
    # Only a definitive answer that a record is wrong may fail it: a timeout or SERVFAIL says
    # nothing about the records, so at the deadline it is asked again (hourly) instead.
    definitive = (
        (txt is not None and not txt.ok and not txt.transient)
        or (not target.ok and not target.transient)
        or caa_blocks
    )
    if age >= dt.timedelta(days=pending_days) and definitive:
        changes.update(
            status="failed",
            failed_at=now,
            failure_reason=f"not verified in {pending_days} days ({', '.join(missing)})",
        )
        return Decision(
            "fail_domain",
            f"still unverified after {pending_days} days: {', '.join(missing)}",
            changes,
            message_tenant="domain_failed",
        )
    step = CHECK_EVERY if age < PENDING_FAST_FOR else PENDING_SLOW_EVERY
    changes["next_check_at"] = now + step
    return Decision("pending_check", f"waiting for DNS: {', '.join(missing)}", changes)


def answered(tls: TlsResult | None) -> bool:
    """Did the TLS probe give a definitive answer about the certificate? Not when it was not
    probed, was `unreachable`, or was incomplete: the first (unverified) handshake read the
    certificate and the verifying one then failed — the probe returns `unreachable` with the
    certificate attached for the record, but its status is no certificate status, and a
    flaky edge must count as failing (issues 16, 22.1)."""
    return tls is not None and tls.status != "unreachable" and tls.certificate is not None


def _cert_changes(tls: TlsResult, domain: DomainState, changes: dict[str, Any]) -> None:
    """Certificate fields from a definitive TLS answer (unreachable or incomplete: nothing
    changes)."""
    if not answered(tls) or tls.certificate is None:
        return
    cert = tls.certificate
    changes.update(
        certificate_status=tls.status,
        cert_not_before=cert.not_before,
        cert_not_after=cert.not_after,
        cert_issuer=cert.issuer,
        cert_names=list(cert.sans),
        tls_detail=tls.detail,
    )
    if domain.cert_not_after != cert.not_after:
        changes["cert_warnings_sent"] = []  # a new certificate: its warnings start afresh


def caa_blocked(caa: DnsResult | None) -> bool:
    """A definitive CAA answer that the edge's CA may not issue (providers/dns.py)."""
    return caa is not None and not caa.ok and not caa.transient


def _issuing(
    domain: DomainState,
    now: dt.datetime,
    target: DnsResult,
    tls: TlsResult | None,
    caa: DnsResult | None,
    deadline: dt.timedelta,
    changes: dict[str, Any],
) -> Decision:
    changes["next_check_at"] = now + CHECK_EVERY
    if tls is not None:
        changes["tls_detail"] = tls.detail
    if answered(tls) and tls is not None and tls.status in ("active", "expiring") and target.ok:
        _cert_changes(tls, domain, changes)
        changes.update(status=tls.status, active_since=now, last_ok_at=now, consecutive_failures=0)
        decision = Decision("activate_domain", f"certificate served ({tls.status})", changes)
        decision.clear_incidents.append(incident_cause(domain.hostname, "issuance"))
        return decision
    why = [caa.detail] if caa_blocked(caa) and caa is not None else []
    if not target.ok:
        why.append(f"DNS target {target.status} ({target.detail})")
    why.append(tls.detail if tls is not None else "TLS not probed")
    since = domain.verified_at or domain.pending_since
    if now - since >= deadline:
        days = deadline.total_seconds() / 86400
        reason = f"no certificate {days:g} days after verification: {'; '.join(why)}"
        changes.update(status="failed", failed_at=now, failure_reason=reason)
        decision = Decision(
            "fail_issuance", reason, changes, message_tenant="domain_certificate_failed"
        )
        decision.raise_incidents.append(
            (
                incident_cause(domain.hostname, "issuance"),
                "warning",
                f"certificate for {domain.hostname} not issued in {days:g} days",
            )
        )
        return decision
    # The edge is asked again on a backoff from verification (15 min doubling to 6 h), not at
    # every check: a blocked issuance does not become a request every 15 minutes for ever.
    ask = "add" if edge_ask_due(since, domain.last_checked_at, now) else None
    left = since + deadline - now
    return Decision(
        "issuing_check",
        f"waiting for the certificate ({left.days}d {left.seconds // 3600}h before it fails): "
        + "; ".join(why),
        changes,
        ask,
    )


def _serving(
    domain: DomainState,
    now: dt.datetime,
    target: DnsResult,
    tls: TlsResult | None,
    threshold: int,
    warning_days: Sequence[int],
    changes: dict[str, Any],
    recover_after: int = 1,
) -> Decision:
    changes["next_check_at"] = now + CHECK_EVERY
    decision = Decision("check", "", changes)
    cert_status = domain.certificate_status
    seen = answered(tls)
    if tls is not None:
        _cert_changes(tls, domain, changes)
        if seen:
            cert_status = tls.status
        else:
            changes["tls_detail"] = tls.detail
    # The certificate's incident follows what a finished probe saw; an unreachable or
    # incomplete one neither raises nor clears it (it saw no verdict).
    cert_cause = incident_cause(domain.hostname, "certificate")
    if seen and cert_status in ("expired", "invalid"):
        detail = tls.detail if tls is not None else cert_status
        decision.raise_incidents.append(
            (cert_cause, "critical", f"certificate {cert_status} for {domain.hostname}: {detail}")
        )
    elif seen and cert_status in ("active", "expiring"):
        decision.clear_incidents.append(cert_cause)
    problems = []
    if not target.ok:
        problems.append(f"DNS target {target.status} ({target.detail})")
    if not seen:
        problems.append(f"TLS unreachable ({tls.detail if tls else 'not probed'})")
    elif cert_status in ("expired", "invalid"):
        problems.append(f"certificate {cert_status}")
    # An expired or invalid certificate alone is the certificate's incident (raised above):
    # failing over for it raises no second critical incident, so it pages once (issue 22.8).
    domain_cause = [] if problems == [f"certificate {cert_status}"] else [domain.hostname]
    if problems:
        failures = domain.consecutive_failures + 1
        changes.update(consecutive_failures=failures, consecutive_passes=0)
        if domain.status == "degraded" and domain.consecutive_passes > 0:
            # Failing again before recovering (issue 22.2): the same incident, one more flap.
            decision.flap = True
            decision.raise_incidents.extend(
                (incident_cause(host), "critical", f"{host} degraded, flapping: {problems[0]}")
                for host in domain_cause
            )
        if domain.status != "degraded" and failures >= threshold:
            changes.update(status="degraded", failover_active=True)
            decision.kind = "degrade_domain"
            decision.reason = (
                f"{failures} failed checks in a row: {'; '.join(problems)}; serving the fallback"
            )
            decision.raise_incidents.extend(
                (
                    incident_cause(host),
                    "critical",
                    f"{host} degraded, failover on: {'; '.join(problems)}",
                )
                for host in domain_cause
            )
        else:
            decision.kind = "check_failed"
            left = max(threshold - failures, 0)
            decision.reason = f"{'; '.join(problems)} (failure {failures}" + (
                f"; {left} more before failover)" if domain.status != "degraded" else "; degraded)"
            )
        return decision
    changes.update(consecutive_failures=0, last_ok_at=now)
    new_status = "expiring" if cert_status == "expiring" else "active"
    if domain.status == "degraded":
        passes = domain.consecutive_passes + 1
        if passes < recover_after:  # a flapping edge stays failed over (issue 22.2)
            changes["consecutive_passes"] = passes
            decision.reason = (
                f"checks pass ({passes} of {recover_after} in a row before failover ends)"
            )
            return decision
        changes.update(status=new_status, failover_active=False, consecutive_passes=0)
        decision.kind = "recover_domain"
        decision.reason = "checks pass again; failover off"
        decision.clear_incidents.append(incident_cause(domain.hostname))
    elif domain.status != new_status:
        changes["status"] = new_status
        decision.kind = (
            "certificate_expiring" if new_status == "expiring" else "certificate_renewed"
        )
        decision.reason = (
            f"certificate ends {tls.certificate.not_after:%Y-%m-%d}"
            if seen and tls is not None and tls.certificate is not None
            else f"certificate {cert_status}"
        )
    else:
        decision.reason = "DNS and certificate OK"
    served = tls.certificate if seen and tls is not None else None
    if new_status == "expiring" and (
        domain.status != "expiring"  # it just turned expiring (or recovered so): ask at once
        or served is None
        or edge_ask_due(served.renewal_due_at(), domain.last_checked_at, now)
    ):
        decision.edge = "renew"
    overdue = served is not None and now >= served.renewal_overdue_at()
    if overdue and tls is not None and tls.days_left is not None:
        sent = set(changes.get("cert_warnings_sent", domain.cert_warnings_sent))
        crossed = [d for d in warning_days if tls.days_left <= d and d not in sent]
        if crossed:
            decision.warning_days = min(crossed)
            changes["cert_warnings_sent"] = sorted(sent | set(crossed), reverse=True)
            if decision.kind == "check":
                decision.kind = "certificate_warning"
                decision.reason = (
                    f"certificate ends in {tls.days_left:.1f} days, renewal overdue "
                    f"(warning at {decision.warning_days})"
                )
    return decision
