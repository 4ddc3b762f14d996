"""The domain lifecycle as a table (issues 16 and 22.1): every state the planner sees × every
DNS answer × every TLS probe result, the planned action kind, and — on both dialects — that
applying it never violates a constraint (`ck_tenant_domains_cert_known` above all).

TLS probe results (faithflow_ops/providers/tls.py): a definitive answer (`active`,
`expiring`, `expired`, `invalid`), `unreachable` (no certificate read: refused, timeout,
handshake failure) and `incomplete` (the first, unverified handshake read the certificate, the
verifying one then failed: `unreachable` with the certificate attached). An unreachable or
incomplete probe is a failed check from every state and never writes a certificate status.
"""

from __future__ import annotations

import datetime as dt
import itertools
from dataclasses import dataclass, replace
from typing import Any

import pytest
from sqlalchemy import select

from faithflow_ops.config import Settings
from faithflow_ops.db import Database
from faithflow_ops.domains.lifecycle import Decision, DomainState, decide
from faithflow_ops.models import Tenant, TenantDomain
from faithflow_ops.models.platform import CERTIFICATE_STATUSES, DOMAIN_STATUSES
from faithflow_ops.providers.dns import DNS_STATUSES, DnsCheck, DnsResult, caa_verdict
from faithflow_ops.providers.tls import Certificate, TlsResult

T0 = dt.datetime(2026, 3, 1, 9, 0, tzinfo=dt.UTC)
DAY = dt.timedelta(days=1)
EDGE = "edge.faithflow.test"
THRESHOLD = 3
PENDING_DAYS = 7
WARNINGS = (14, 7, 3, 1)
ISSUING_DAYS = 3
CAA_RESULTS = ("ok", "blocked", "timeout")  # checked for pending and issuing domains

TLS_KINDS = ("active", "expiring", "expired", "invalid", "unreachable", "incomplete")
FAILING_TLS = {"expired", "invalid", "unreachable", "incomplete"}
NO_ANSWER_TLS = {"unreachable", "incomplete"}  # says nothing about the certificate


def cert(host: str, *, lifetime_days: float, left_days: float) -> Certificate:
    not_after = T0 + dt.timedelta(days=left_days)
    return Certificate(
        subject=f"CN={host}",
        issuer="CN=Test CA",
        sans=(host,),
        serial="01",
        not_before=not_after - dt.timedelta(days=lifetime_days),
        not_after=not_after,
        fingerprint_sha256="00" * 32,
    )


# The certificate the edge served so far (the states below remember it).
SERVED = {"lifetime_days": 90, "left_days": 60}
EXPIRING = {"lifetime_days": 90, "left_days": 10}


def tls(kind: str, host: str, now: dt.datetime = T0) -> TlsResult | None:
    """One TLS probe result of `kind` for `host` (None: not probed)."""
    if kind == "none":
        return None
    base: dict[str, Any] = {
        "host": host,
        "port": 443,
        "connect_host": "127.0.0.1",
        "checked_at": now,
    }
    if kind == "active":
        c = cert(host, **SERVED)
        return TlsResult(
            status="active", detail="60 days left", certificate=c, chain_valid=True,
            hostname_match=True, **base,
        )  # fmt: skip
    if kind == "expiring":
        c = cert(host, **EXPIRING)
        return TlsResult(
            status="expiring", detail="expiring: 10 of 90 days left", certificate=c,
            chain_valid=True, hostname_match=True, **base,
        )  # fmt: skip
    if kind == "expired":
        c = cert(host, lifetime_days=90, left_days=-5)
        return TlsResult(
            status="expired", detail="expired 5.0 days ago", certificate=c, chain_valid=False,
            hostname_match=True, **base,
        )  # fmt: skip
    if kind == "invalid":
        c = cert("www.other.test", **SERVED)
        return TlsResult(
            status="invalid", detail=f"the certificate is for www.other.test, not {host}",
            certificate=c, chain_valid=True, hostname_match=False, **base,
        )  # fmt: skip
    if kind == "unreachable":
        return TlsResult(
            status="unreachable", detail="127.0.0.1:443 (SNI x): connection refused",
            failure="refused", **base,
        )  # fmt: skip
    if kind == "incomplete":
        # What TlsProber.probe returns when the verifying handshake fails after the first one
        # read the certificate (a flaky edge): unreachable, the certificate attached.
        return TlsResult(
            status="unreachable", detail="verifying x at 127.0.0.1:443: timed out",
            certificate=cert(host, **SERVED), failure="timeout", **base,
        )  # fmt: skip
    raise AssertionError(kind)


def dns(status: str, host: str, kind: str = "target") -> DnsResult:
    check = (
        DnsCheck.txt(f"_faithflow-verify.{host}", "faithflow-verify=x", key="txt")
        if kind == "txt"
        else DnsCheck.target(host, cname_target=EDGE, key="target")
    )
    return DnsResult(check, status, f"{kind} {status}")  # type: ignore[arg-type]


@dataclass(frozen=True)
class Start:
    """A row as the planner finds it."""

    name: str
    status: str
    certificate_status: str
    consecutive_failures: int = 0
    failover_active: bool = False
    age: dt.timedelta = dt.timedelta(hours=2)  # since it was added (and verified)
    cert: dict[str, float] | None = None  # the stored certificate (SERVED/EXPIRING)
    warnings_sent: tuple[int, ...] = ()


STARTS = (
    Start("pending", "pending_dns", "none"),
    Start("pending_at_deadline", "pending_dns", "none", age=PENDING_DAYS * DAY + dt.timedelta(1)),
    Start("issuing", "issuing_cert", "pending"),
    Start(
        "issuing_at_deadline", "issuing_cert", "pending", age=ISSUING_DAYS * DAY + dt.timedelta(1)
    ),
    Start("active", "active", "active", cert=SERVED),
    Start("active_2_failed", "active", "active", THRESHOLD - 1, cert=SERVED),
    Start("active_cert_expired", "active", "expired", 1, cert=SERVED),
    Start("expiring", "expiring", "expiring", cert=EXPIRING, warnings_sent=(14,)),
    Start(
        "expiring_2_failed",
        "expiring",
        "expiring",
        THRESHOLD - 1,
        cert=EXPIRING,
        warnings_sent=(14,),
    ),
    Start("degraded", "degraded", "active", THRESHOLD, True, cert=SERVED),
    Start("degraded_cert_invalid", "degraded", "invalid", THRESHOLD + 4, True, cert=SERVED),
)


def state_of(start: Start, domain_id: int, host: str) -> DomainState:
    stored = cert(host, **start.cert) if start.cert else None
    return DomainState(
        id=domain_id,
        hostname=host,
        status=start.status,
        certificate_status=start.certificate_status,
        consecutive_failures=start.consecutive_failures,
        failover_active=start.failover_active,
        pending_since=T0 - start.age,
        cert_not_after=stored.not_after if stored else None,
        cert_warnings_sent=start.warnings_sent,
        cert_not_before=stored.not_before if stored else None,
        verified_at=None if start.status == "pending_dns" else T0 - start.age,
        last_checked_at=T0 - dt.timedelta(minutes=15),
    )


@dataclass(frozen=True)
class Case:
    start: Start
    txt: str | None  # pending domains only
    target: str
    tls: str  # a TLS_KINDS member, or "none" (not probed)
    caa: str | None = None  # pending and issuing domains only

    @property
    def label(self) -> str:
        txt = f" txt={self.txt}" if self.txt else ""
        caa = f" caa={self.caa}" if self.caa else ""
        return f"{self.start.name}{txt} dns={self.target} tls={self.tls}{caa}"


def cases() -> list[Case]:
    out: list[Case] = []
    for start in STARTS:
        if start.status == "pending_dns":  # TLS is not probed before verification
            out += [
                Case(start, txt, target, "none", caa)
                for txt, target, caa in itertools.product(DNS_STATUSES, DNS_STATUSES, CAA_RESULTS)
            ]
        elif start.status == "issuing_cert":
            out += [
                Case(start, None, target, kind, caa)
                for target, kind, caa in itertools.product(DNS_STATUSES, TLS_KINDS, CAA_RESULTS)
            ]
        else:
            out += [
                Case(start, None, target, kind)
                for target, kind in itertools.product(DNS_STATUSES, TLS_KINDS)
            ]
    return out


CASES = cases()
# Applied on both dialects: every state × TLS result, with one DNS answer of each class (the
# writes differ by DNS class only — ok, definitive, transient; every status fits the column).
DB_CASES = [
    c
    for c in CASES
    if c.target in ("ok", "nxdomain", "timeout")
    and c.txt in (None, "ok", "nxdomain", "timeout")
    and c.caa in (None, "ok", "blocked")
]


def caa(result: str | None, host: str) -> DnsResult | None:
    if result is None:
        return None
    check = DnsCheck.caa(host, ("letsencrypt.org", "pki.goog"), key="caa")
    if result == "blocked":
        records = ('0 issue "digicert.com"',)
        return caa_verdict(check, "grace.test", records)
    return DnsResult(check, result, f"caa {result}")  # type: ignore[arg-type]


def run(case: Case, domain_id: int = 1, host: str = "www.grace.test") -> Decision:
    return decide(
        state_of(case.start, domain_id, host),
        T0,
        txt=dns(case.txt, host, "txt") if case.txt else None,
        target=dns(case.target, host),
        tls=tls(case.tls, host),
        threshold=THRESHOLD,
        pending_days=PENDING_DAYS,
        warning_days=WARNINGS,
        caa=caa(case.caa, host),
        issuing_deadline=ISSUING_DAYS * DAY,
    )


def expected_kind(case: Case) -> str:
    """The rules of docs/domains.md, written out once more, independently of lifecycle.py."""
    start, target_ok = case.start, case.target == "ok"
    if start.status == "pending_dns":
        if case.txt == "ok" and target_ok and case.caa != "blocked":
            return "verify_domain"
        definitive = (
            case.txt not in ("ok", "timeout", "servfail")
            or case.target not in ("ok", "timeout", "servfail")
            or case.caa == "blocked"
        )
        return "fail_domain" if start.age >= PENDING_DAYS * DAY and definitive else "pending_check"
    if start.status == "issuing_cert":
        if case.tls in ("active", "expiring") and target_ok:
            return "activate_domain"
        return "fail_issuance" if start.age >= ISSUING_DAYS * DAY else "issuing_check"
    if not target_ok or case.tls in FAILING_TLS:
        failures = start.consecutive_failures + 1
        if start.status != "degraded" and failures >= THRESHOLD:
            return "degrade_domain"
        return "check_failed"
    if start.status == "degraded":
        return "recover_domain"
    now_status = "expiring" if case.tls == "expiring" else "active"
    if start.status != now_status:
        return "certificate_expiring" if now_status == "expiring" else "certificate_renewed"
    return "check"


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.label)
def test_every_state_and_probe_result_plans_the_rule_s_action(case: Case) -> None:
    decision = run(case)
    assert decision.kind == expected_kind(case), decision.reason
    changes = decision.changes
    assert changes.get("status", case.start.status) in DOMAIN_STATUSES
    assert changes.get("certificate_status", case.start.certificate_status) in (
        CERTIFICATE_STATUSES
    )
    if case.tls in NO_ANSWER_TLS:
        # No certificate status, no certificate fields and no certificate incident from a
        # probe that did not finish: it says nothing about the certificate.
        for column in ("certificate_status", "cert_not_after", "cert_not_before", "cert_names"):
            assert column not in changes, column
        assert not decision.raise_incidents or all(
            not cause.endswith(":certificate") for cause, _, _ in decision.raise_incidents
        )
        assert not any(c.endswith(":certificate") for c in decision.clear_incidents)
        if case.start.status not in ("pending_dns", "issuing_cert"):
            assert changes["consecutive_failures"] == case.start.consecutive_failures + 1
            assert "TLS unreachable" in decision.reason


def test_an_incomplete_probe_on_a_degraded_domain_never_recovers_it() -> None:
    """Issue 22.1: on a degraded domain the incomplete probe planned `recover_domain`."""
    degraded = next(s for s in STARTS if s.name == "degraded")
    decision = run(Case(degraded, None, "ok", "incomplete"))
    assert decision.kind == "check_failed" and decision.changes.get("status") is None
    assert decision.changes["consecutive_failures"] == THRESHOLD + 1


def test_an_expiring_domain_whose_tls_becomes_unreachable_is_not_renewed() -> None:
    """Issue 16: planned `certificate_renewed`, then the write broke the constraint."""
    expiring = next(s for s in STARTS if s.name == "expiring")
    for kind in ("unreachable", "incomplete"):
        decision = run(Case(expiring, None, "ok", kind))
        assert decision.kind == "check_failed", kind
        assert "status" not in decision.changes and decision.edge != "renew"


def test_a_caa_record_excluding_the_edge_s_ca_is_shown_with_the_fix() -> None:
    pending = next(s for s in STARTS if s.name == "pending")
    blocked = run(Case(pending, "ok", "ok", "none", "blocked"))
    assert blocked.kind == "pending_check" and "status" not in blocked.changes
    assert "CAA at grace.test allows only digicert.com" in blocked.reason
    assert 'fix: add grace.test. CAA 0 issue "letsencrypt.org"' in blocked.reason
    late = next(s for s in STARTS if s.name == "pending_at_deadline")
    failed = run(Case(late, "ok", "ok", "none", "blocked"))
    assert failed.kind == "fail_domain" and 'CAA 0 issue "letsencrypt.org"' in failed.reason
    # A CAA lookup that timed out says nothing: it verifies.
    assert run(Case(pending, "ok", "ok", "none", "timeout")).kind == "verify_domain"


def test_issuance_past_its_deadline_fails_with_an_incident_and_a_message() -> None:
    late = next(s for s in STARTS if s.name == "issuing_at_deadline")
    decision = run(Case(late, None, "ok", "unreachable", "blocked"))
    assert decision.kind == "fail_issuance" and decision.changes["status"] == "failed"
    assert decision.message_tenant == "domain_certificate_failed"
    assert decision.edge is None
    ((cause, severity, title),) = decision.raise_incidents
    assert cause == "domain:www.grace.test:issuance" and severity == "warning"
    assert "not issued in 3 days" in title
    assert 'fix: add grace.test. CAA 0 issue "letsencrypt.org"' in decision.reason


# --- applying every planned action on both dialects -------------------------------------------


def history(case: Case, host: str) -> list[dict[str, Any]]:
    """The check rows the plan records with the action (what `domains show` lists)."""
    rows: list[dict[str, Any]] = [
        {"kind": "dns", "result": case.target, "detail": "", "latency_ms": 1.0, "data": None}
    ]
    probe = tls(case.tls, host)
    if probe is not None:
        rows.append(
            {
                "kind": "tls",
                "result": probe.status,
                "detail": probe.detail,
                "latency_ms": 1.0,
                "data": probe.as_dict(),
            }
        )
    return rows


def test_applying_every_planned_action_keeps_every_constraint(db: Database) -> None:
    """Each case gets its own domain row in its starting state; its action is applied through
    the job's own apply (claim, check history, incidents, audit, outbox) under its own
    savepoint. A constraint violation, or a row that does not end where the action says, is
    collected and reported with the case's label."""
    from faithflow_ops.jobs.base import JobContext
    from faithflow_ops.jobs.domains_automate import JOB

    settings = replace(Settings.from_env(), ops_email="ops@faithflow.test")
    ctx = JobContext(now=T0, dry_run=False, trigger="cli", settings=settings, actor="test")
    problems: list[str] = []
    with db.session() as s:
        tenant = Tenant(slug="grace", name="Grace Chapel", billing_email="office@grace.test")
        s.add(tenant)
        s.flush()
        rows: list[tuple[Case, TenantDomain]] = []
        for i, case in enumerate(DB_CASES):
            host = f"d{i}.grace.test"
            start = case.start
            stored = cert(host, **start.cert) if start.cert else None
            row = TenantDomain(
                tenant_id=tenant.id,
                hostname=host,
                verification_token="t" * 32,
                status=start.status,
                certificate_status=start.certificate_status,
                consecutive_failures=start.consecutive_failures,
                failover_active=start.failover_active,
                pending_since=T0 - start.age,
                verified_at=None if start.status == "pending_dns" else T0 - start.age,
                next_check_at=T0,
                last_checked_at=T0 - dt.timedelta(minutes=15),
                cert_not_before=stored.not_before if stored else None,
                cert_not_after=stored.not_after if stored else None,
                cert_warnings_sent=list(start.warnings_sent),
                added_by="test",
            )
            s.add(row)
            rows.append((case, row))
        s.flush()
        for case, row in rows:
            decision = run(case, row.id, row.hostname)
            action = JOB.step_action(row, "grace", decision, history(case, row.hostname))
            try:
                with s.begin_nested():
                    JOB.apply(s, ctx, action)
            except Exception as exc:  # collected: every failing case is named at once
                first = str(exc).splitlines()[0]
                problems.append(f"{case.label}: {type(exc).__name__}: {first}")
        s.expire_all()
        for case, row in rows:
            want = (
                case.start.status
                if any(p.startswith(case.label + ":") for p in problems)
                else run(case).changes.get("status", case.start.status)
            )
            if row.status != want:
                problems.append(f"{case.label}: status {row.status}, planned {want}")
            if case.tls in NO_ANSWER_TLS and row.certificate_status != (
                case.start.certificate_status
            ):
                problems.append(f"{case.label}: certificate status {row.certificate_status}")
        statuses = set(s.scalars(select(TenantDomain.certificate_status)))
    assert not problems, f"{len(problems)} of {len(DB_CASES)} cases:\n" + "\n".join(problems[:40])
    assert statuses <= set(CERTIFICATE_STATUSES)
