"""`faithflow domains automate` (`domains preview` = the same plan, no writes): check every
domain that is due, move it through its lifecycle, ask the edge to serve and renew it, fail
over and recover, warn before certificates expire (rules: faithflow_ops/domains/lifecycle.py,
runbook: docs/domains.md).

plan: reads the domains whose `next_check_at` has come (`ix_tenant_domains_automate_next_check`),
probes them read-only — DNS (ownership TXT for pending domains, the CNAME/A target for all)
with dnspython's async resolver, FAITHFLOW_DNS_CONCURRENCY at once; TLS for domains past
verification, connecting to the address the DNS probe found (SNI = the host) — and yields one
action per domain whose kind is what happens to it (`verify_domain`, `pending_check`,
`fail_domain`, `issuing_check`, `fail_issuance`, `activate_domain`, `check`, `check_failed`,
`degrade_domain`, `recover_domain`, `certificate_expiring`, `certificate_renewed`,
`certificate_warning`).

apply (`apply_unmanaged`, one action at a time): in one transaction, claims the row with a
conditional UPDATE (same status and same `last_checked_at` as the plan saw; else StaleAction, so
a preview taken earlier or a concurrent run never applies twice), writes the new columns and the
check history, opens/resolves incidents, audits transitions, enqueues the church's message
(domain failed) and the ops warning (certificate expiring) through the outbox. Then, after that
commit and outside any transaction (an HTTP call with retries must not hold the database's write
lock), it calls the edge (Render: add + verify, idempotent) for `add`/`renew` — only for an
action it claimed, so never twice for one plan — and records the edge's answer in a short
transaction (`edge_status`, an `edge` row in domain_checks). An edge error is recorded
(`edge_status` `error`) and the action counts as failed; `issuing_cert` and `expiring` domains
ask the edge again on a backoff (lifecycle.edge_ask_due: 15 minutes doubling to 6 hours).
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, cast

import structlog
from sqlalchemy import Row, Table, insert, select, update
from sqlalchemy.orm import Session

from faithflow_ops import audit
from faithflow_ops.actions import decode, encode
from faithflow_ops.comms import outbox
from faithflow_ops.config import Settings
from faithflow_ops.db import Database, rowcount
from faithflow_ops.domains.lifecycle import (
    Decision,
    DomainState,
    DomainStep,
    NotChecked,
    decide,
    tenant_message_key,
)
from faithflow_ops.domains.manage import revive_failed, txt_name, txt_value
from faithflow_ops.errors import ConfigError
from faithflow_ops.incidents.records import clear_incident, raise_incident
from faithflow_ops.jobs.base import Action, ActionResult, Job, JobContext, StaleAction
from faithflow_ops.jobs.runner import apply_one
from faithflow_ops.models import DomainCheck, Tenant, TenantDomain
from faithflow_ops.providers._http import ProviderError

log = structlog.get_logger("faithflow.jobs")

DOMAINS = cast(Table, TenantDomain.__table__)
CHECKS = cast(Table, DomainCheck.__table__)

KINDS = (
    "verify_domain",
    "pending_check",
    "fail_domain",
    "issuing_check",
    "fail_issuance",
    "activate_domain",
    "check",
    "check_failed",
    "degrade_domain",
    "recover_domain",
    "certificate_expiring",
    "certificate_renewed",
    "certificate_warning",
)
# Transitions an operator wants in the audit log (routine checks are in domain_checks).
AUDITED = {
    "verify_domain": "domain.verified",
    "fail_domain": "domain.failed",
    "fail_issuance": "domain.issuance_failed",
    "activate_domain": "domain.activated",
    "degrade_domain": "domain.degraded",
    "recover_domain": "domain.recovered",
    "certificate_expiring": "domain.certificate_expiring",
    "certificate_renewed": "domain.certificate_renewed",
}
_TIMES = frozenset(
    {
        "last_checked_at",
        "next_check_at",
        "verified_at",
        "active_since",
        "failed_at",
        "last_ok_at",
        "cert_not_before",
        "cert_not_after",
    }
)


def _values(changes: Mapping[str, Any]) -> dict[str, Any]:
    return {
        k: dt.datetime.fromisoformat(v) if k in _TIMES and isinstance(v, str) else v
        for k, v in changes.items()
    }


def _first_address(observed: tuple[str, ...]) -> str | None:
    for value in observed:
        if ":" not in value:
            return value
    return observed[0] if observed else None


class TenantOpsAutomate(Job):
    name = "tenant_ops_automate"
    report_only = frozenset({"not_checked"})
    table_columns = ("kind", "hostname", "tenant", "status", "certificate", "reason")

    @classmethod
    def table_rows(cls, action: Action) -> list[tuple[Any, ...]]:
        d = decode(NotChecked, action.data)  # the fields every kind has
        status = d.from_status
        if d.status != status:
            status = f"{status} → {d.status}"
        return [(action.kind, d.hostname, d.tenant, status, d.certificate_status, action.reason)]

    def plan(self, session: Session, ctx: JobContext) -> Iterator[Action]:
        query = (
            select(TenantDomain, Tenant.slug)
            .join(Tenant, Tenant.id == TenantDomain.tenant_id)
            .where(
                TenantDomain.status.not_in(("removed", "failed")),
                TenantDomain.next_check_at <= ctx.now,
            )
            .order_by(TenantDomain.next_check_at, TenantDomain.id)
        )
        if ctx.limit:
            query = query.limit(ctx.limit)
        yield from self.plan_rows(list(session.execute(query)), ctx)

    def plan_rows(
        self, rows: Sequence[Row[tuple[TenantDomain, str]]], ctx: JobContext
    ) -> Iterator[Action]:
        """Probe these (domain, tenant slug) rows and decide each (also `domains verify`)."""
        from faithflow_ops.providers.dns import DnsCheck, DnsProber, run_sync
        from faithflow_ops.providers.tls import TlsProber

        settings = ctx.settings
        if not rows:
            return
        if ctx.progress:
            ctx.progress.start(len(rows))
        checks: list[DnsCheck] = []
        unchecked: dict[int, str] = {}  # domain id → the setting it lacks
        for domain, _ in rows:
            try:
                target_check = DnsCheck.target(
                    domain.hostname,
                    cname_target=None if domain.apex else settings.domain_cname_target,
                    a_records=settings.domain_a_records if domain.apex else (),
                    key=f"target:{domain.id}",
                )
            except ConfigError as exc:  # e.g. an apex domain while no A records are set
                unchecked[domain.id] = str(exc)
                continue
            if domain.status == "pending_dns":
                checks.append(
                    DnsCheck.txt(
                        txt_name(domain.hostname), txt_value(domain), key=f"txt:{domain.id}"
                    )
                )
            checks.append(target_check)
        prober = DnsProber(settings)
        results = {r.check.key: r for r in run_sync(lambda: prober.probe_many(checks))}
        # CAA (may the edge's CA issue?) only where it decides something: issuing domains, and
        # pending ones whose TXT and target are right (about to be verified) — not the
        # thousands still waiting for their records (up to 3 queries each, climbing the tree).
        caa_checks = [
            DnsCheck.caa(domain.hostname, settings.domain_edge_cas, key=f"caa:{domain.id}")
            for domain, _ in rows
            if domain.id not in unchecked
            and (
                domain.status == "issuing_cert"
                or (
                    domain.status == "pending_dns"
                    and results[f"txt:{domain.id}"].ok
                    and results[f"target:{domain.id}"].ok
                )
            )
        ]
        if caa_checks:
            results.update(
                (r.check.key, r) for r in run_sync(lambda: prober.probe_many(caa_checks))
            )
        tls_for = [
            domain
            for domain, _ in rows
            if domain.status in ("issuing_cert", "active", "expiring", "degraded")
            and domain.id not in unchecked
        ]
        tls: dict[int, Any] = {}
        if tls_for:
            tls_prober = TlsProber(settings)
            targets = [
                (d.hostname, _first_address(results[f"target:{d.id}"].observed) or d.hostname)
                for d in tls_for
            ]
            found = run_sync(
                lambda: tls_prober.probe_many(
                    targets, concurrency=settings.dns_concurrency, now=ctx.now
                )
            )
            tls = {d.id: r for d, r in zip(tls_for, found, strict=True)}
        for domain, slug in rows:
            if domain.id in unchecked:
                yield self._unchecked(domain, slug, unchecked[domain.id])
                continue
            target = results[f"target:{domain.id}"]
            txt = results.get(f"txt:{domain.id}")
            caa = results.get(f"caa:{domain.id}")
            probe = tls.get(domain.id)
            decision = decide(
                DomainState(
                    id=domain.id,
                    hostname=domain.hostname,
                    status=domain.status,
                    certificate_status=domain.certificate_status,
                    consecutive_failures=domain.consecutive_failures,
                    failover_active=domain.failover_active,
                    pending_since=domain.pending_since,
                    cert_not_after=domain.cert_not_after,
                    cert_warnings_sent=tuple(domain.cert_warnings_sent or ()),
                    cert_not_before=domain.cert_not_before,
                    verified_at=domain.verified_at,
                    last_checked_at=domain.last_checked_at,
                    consecutive_passes=domain.consecutive_passes,
                ),
                ctx.now,
                txt=txt,
                target=target,
                tls=probe,
                threshold=settings.domain_failure_threshold,
                pending_days=settings.domain_pending_days,
                warning_days=settings.domain_cert_warning_days,
                recover_after=settings.domain_recovery_threshold,
                caa=caa,
                issuing_deadline=dt.timedelta(days=settings.domain_issuing_days),
            )
            history: list[dict[str, Any]] = []
            if txt is not None:
                history.append(
                    {
                        "kind": "txt",
                        "result": txt.status,
                        "detail": txt.detail,
                        "latency_ms": txt.latency_ms,
                    }
                )
            history.append(
                {
                    "kind": "dns",
                    "result": target.status,
                    "detail": target.detail,
                    "latency_ms": target.latency_ms,
                    "data": {"observed": list(target.observed), "cnames": list(target.cnames)},
                }
            )
            if caa is not None:
                history.append(
                    {
                        "kind": "caa",
                        "result": caa.status,
                        "detail": caa.detail,
                        "latency_ms": caa.latency_ms,
                        "data": {"records": list(caa.observed)},
                    }
                )
            if probe is not None:
                history.append(
                    {
                        "kind": "tls",
                        "result": probe.status,
                        "detail": probe.detail,
                        "latency_ms": probe.latency_ms,
                        "data": probe.as_dict(),
                    }
                )
            yield self.step_action(domain, slug, decision, history)
            if ctx.progress:
                ctx.progress.advance(1)

    @staticmethod
    def _unchecked(domain: TenantDomain, slug: str, why: str) -> Action:
        """Report-only: a domain that cannot be checked until a setting is made (the others
        in the run are checked; this one keeps its state and is planned again next run)."""
        payload = NotChecked(
            domain_id=domain.id,
            hostname=domain.hostname,
            tenant=slug,
            tenant_id=domain.tenant_id,
            from_status=domain.status,
            status=domain.status,
            certificate_status=domain.certificate_status,
            failover_active=domain.failover_active,
            consecutive_failures=domain.consecutive_failures,
        )
        return Action("not_checked", f"domain:{domain.id}", why, encode(payload))

    @staticmethod
    def step_action(
        domain: TenantDomain, slug: str, decision: Decision, history: list[dict[str, Any]]
    ) -> Action:
        changes = decision.changes
        payload = DomainStep(
            domain_id=domain.id,
            hostname=domain.hostname,
            tenant=slug,
            tenant_id=domain.tenant_id,
            from_status=domain.status,
            planned_checked_at=domain.last_checked_at,
            status=changes.get("status", domain.status),
            certificate_status=changes.get("certificate_status", domain.certificate_status),
            failover_active=changes.get("failover_active", domain.failover_active),
            consecutive_failures=changes.get("consecutive_failures", domain.consecutive_failures),
            changes=changes,
            checks=history,
            edge=decision.edge,
            warning_days=decision.warning_days,
            message_tenant=decision.message_tenant,
            raise_incidents=tuple(decision.raise_incidents),
            clear_incidents=tuple(decision.clear_incidents),
            flap=decision.flap,
        )
        return Action(decision.kind, f"domain:{domain.id}", decision.reason, encode(payload))

    def apply_unmanaged(
        self, db: Database, ctx: JobContext, actions: Sequence[Action]
    ) -> list[ActionResult]:
        return [self.apply_one(db, ctx, action) for action in actions]

    def apply_one(self, db: Database, ctx: JobContext, action: Action) -> ActionResult:
        """The action's writes in one transaction, then the edge outside it (also `domains
        verify`). A failure is the action's result, never an exception."""
        written = apply_one(db, self, ctx, action)
        if written.outcome != "applied":
            return written
        step = decode(DomainStep, action.data)
        if step.edge:
            error = self._edge(db, ctx, step)
            if error is not None:
                return ActionResult(action, "failed", error)
        return ActionResult(action, "applied")

    def apply(self, session: Session, ctx: JobContext, action: Action) -> None:
        """The action's database writes (the edge is called after they commit: apply_one)."""
        step = decode(DomainStep, action.data)
        planned = step.planned_checked_at
        seen = DOMAINS.c.last_checked_at
        claim = (
            update(DOMAINS)
            .where(
                DOMAINS.c.id == step.domain_id,
                DOMAINS.c.status == step.from_status,
                seen.is_(None) if planned is None else seen == planned,
            )
            .values(**_values(step.changes), updated_at=ctx.now)
        )
        if rowcount(session.execute(claim)) != 1:
            raise StaleAction(f"{step.hostname} changed since the plan")
        if step.checks:
            session.execute(
                insert(CHECKS),
                [
                    {
                        "domain_id": step.domain_id,
                        "checked_at": ctx.now,
                        "kind": c["kind"],
                        "result": c["result"],
                        "detail": c["detail"],
                        "latency_ms": c["latency_ms"],
                        "data": c.get("data"),
                        "created_at": ctx.now,
                    }
                    for c in step.checks
                ],
            )
        tenant_id = step.tenant_id
        for cause, severity, title in step.raise_incidents:
            raise_incident(
                session,
                cause=cause,
                kind="domain",
                title=title,
                severity=severity,
                now=ctx.now,
                tenant_id=tenant_id,
                detail=action.reason,
                flap=step.flap,
                reopen_within=dt.timedelta(minutes=ctx.settings.incident_flap_minutes),
            )
        for cause in step.clear_incidents:
            clear_incident(session, cause, now=ctx.now, by=ctx.actor)
        if action.kind in AUDITED:
            audit.record(
                session,
                actor=ctx.actor,
                action=AUDITED[action.kind],
                entity_type="domain",
                entity_id=step.domain_id,
                tenant_id=tenant_id,
                before={"status": step.from_status},
                after={
                    "status": step.status,
                    "certificate_status": step.certificate_status,
                    "failover_active": step.failover_active,
                    "reason": action.reason,
                },
            )
        self._messages(session, ctx, step, action.reason)

    @staticmethod
    def _messages(session: Session, ctx: JobContext, step: DomainStep, reason: str) -> None:
        if step.message_tenant:
            tenant = session.get(Tenant, step.tenant_id)
            if tenant is not None and tenant.billing_email:
                outbox.enqueue(
                    session,
                    channel="email",
                    recipient=tenant.billing_email,
                    template=step.message_tenant,
                    variables={
                        "hostname": step.hostname,
                        "reason": reason,
                        "days": ctx.settings.domain_issuing_days
                        if step.message_tenant == "domain_certificate_failed"
                        else ctx.settings.domain_pending_days,
                    },
                    idempotency_key=tenant_message_key(
                        step.domain_id,
                        step.message_tenant,
                        _values(step.changes).get("failed_at") or ctx.now,
                    ),
                    now=ctx.now,
                    tenant=tenant,
                    category="domains",
                    about=("domain", step.domain_id),
                )
        if step.warning_days is not None and ctx.settings.ops_email:
            not_after = step.changes.get("cert_not_after") or ""
            outbox.enqueue(
                session,
                channel="email",
                recipient=ctx.settings.ops_email,
                template="domain_certificate_expiring",
                variables={
                    "hostname": step.hostname,
                    "tenant_slug": step.tenant,
                    "days": step.warning_days,
                    "not_after_at": not_after,
                },
                idempotency_key=f"domain:{step.domain_id}:cert:{not_after}:{step.warning_days}",
                now=ctx.now,
                priority=20,
                category="domains",
                about=("domain", step.domain_id),
            )

    @staticmethod
    def _edge(db: Database, ctx: JobContext, step: DomainStep) -> str | None:
        """Ask the edge to serve (and so certify) the host, or to renew its certificate (Render
        re-verifies and re-issues on a verify call); idempotent at the edge. Called with no
        transaction open; the answer is recorded in its own short one. The error, or None."""
        settings = ctx.settings
        values: dict[str, Any]
        error: str | None = None
        started = time.perf_counter()
        if not settings.render_api_key or not settings.render_service_id:
            values = {"edge_status": "not_configured"}
            result, detail = "not_configured", "RENDER_API_KEY/RENDER_SERVICE_ID not set"
        else:
            from faithflow_ops.providers.render import RenderAPI

            try:
                with RenderAPI(settings) as api:
                    found = api.add_domain(step.hostname)
                    if step.edge == "renew" or not found.verified:
                        found = api.verify_domain(step.hostname)  # renewal: verify again
            except Exception as exc:
                error = (
                    str(exc) if isinstance(exc, ProviderError) else f"{type(exc).__name__}: {exc}"
                )
                log.warning("edge call failed", host=step.hostname, error=error)
                values = {"edge_status": "error"}
                result, detail = "error", error
            else:
                values = {"edge_status": found.verification_status, "edge_id": found.id or None}
                result = found.verification_status
                detail = f"Render {step.edge}: {found.verification_status}"
        latency = round((time.perf_counter() - started) * 1000, 2)
        with db.session() as session:
            session.execute(update(DOMAINS).where(DOMAINS.c.id == step.domain_id).values(**values))
            session.execute(
                insert(CHECKS).values(
                    domain_id=step.domain_id,
                    checked_at=ctx.now,
                    kind="edge",
                    result=result[:32],
                    detail=detail,
                    latency_ms=latency,
                    data={"ask": step.edge},
                    created_at=ctx.now,
                )
            )
        return error


JOB = TenantOpsAutomate()


def check_now(
    db: Database, settings: Settings, hostname: str, *, now: dt.datetime, actor: str
) -> ActionResult:
    """`domains verify`: probe one domain now and apply the outcome through the job's own code.
    A `failed` domain is revived first: back to `pending_dns` with a fresh window."""
    domain_id = revive_failed(db, settings, hostname, now=now, actor=actor)
    ctx = JobContext(now=now, dry_run=False, trigger="cli", settings=settings, actor=actor)
    with db.read_session() as session:
        rows = session.execute(
            select(TenantDomain, Tenant.slug)
            .join(Tenant, Tenant.id == TenantDomain.tenant_id)
            .where(TenantDomain.id == domain_id)
        ).all()
        (action,) = JOB.plan_rows(rows, ctx)
    return JOB.apply_one(db, ctx, action)
