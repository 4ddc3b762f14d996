"""Operator side of tenant domains: add (with the records to create), list, show, remove, and
runbook notes. The checks themselves are `domains automate` (jobs/domains_automate.py)."""

from __future__ import annotations

import datetime as dt
import secrets
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from faithflow_ops import audit
from faithflow_ops.config import Settings
from faithflow_ops.db import Database
from faithflow_ops.domains import hostnames
from faithflow_ops.domains.lifecycle import incident_cause
from faithflow_ops.errors import ConfigError, NotFound, UserError, one_of
from faithflow_ops.incidents.records import clear_incident
from faithflow_ops.models import DomainCheck, DomainRunbookNote, Tenant, TenantDomain
from faithflow_ops.models.platform import DOMAIN_STATUSES, RUNBOOK_STATES
from faithflow_ops.tenancy.tenants import get_tenant

TXT_PREFIX = "_faithflow-verify"
TXT_VALUE_PREFIX = "faithflow-verify="


def txt_name(hostname: str) -> str:
    return f"{TXT_PREFIX}.{hostname}"


def txt_value(domain: TenantDomain) -> str:
    return f"{TXT_VALUE_PREFIX}{domain.verification_token}"


def records_to_create(domain: TenantDomain, settings: Settings) -> list[dict[str, str]]:
    """The DNS records the church must create for this domain."""
    records = [{"type": "TXT", "name": txt_name(domain.hostname), "value": txt_value(domain)}]
    if domain.apex:
        records += [
            {"type": "A" if ":" not in ip else "AAAA", "name": domain.hostname, "value": ip}
            for ip in settings.domain_a_records
        ]
    elif settings.domain_cname_target:
        records.append(
            {"type": "CNAME", "name": domain.hostname, "value": settings.domain_cname_target}
        )
    return records


def _require_edge_target(apex: bool, settings: Settings) -> None:
    if apex and not settings.domain_a_records:
        raise ConfigError(
            "FAITHFLOW_DOMAIN_A_RECORDS is not set: an apex domain needs the edge's addresses; "
            "export FAITHFLOW_DOMAIN_A_RECORDS=… and run again"
        )
    if not apex and not settings.domain_cname_target:
        raise ConfigError(
            "FAITHFLOW_DOMAIN_CNAME_TARGET is not set: a subdomain must CNAME to the edge; "
            "export FAITHFLOW_DOMAIN_CNAME_TARGET=… and run again"
        )


def live_domain(session: Session, hostname: str) -> TenantDomain:
    """The live (not removed) record for this hostname, or NotFound."""
    host = hostnames.normalize(hostname)
    domain = session.scalar(
        select(TenantDomain).where(TenantDomain.hostname == host, TenantDomain.status != "removed")
    )
    if domain is None:
        raise NotFound(f"no domain {host}; see `faithflow domains list`")
    return domain


def add_domain(
    session: Session,
    *,
    tenant_slug: str,
    hostname: str,
    settings: Settings,
    actor: str,
    now: dt.datetime,
) -> TenantDomain:
    """Record a church's hostname with a fresh verification token; checked from `now` on."""
    tenant = get_tenant(session, tenant_slug)
    if tenant.deleted_at is not None or tenant.status == "archived":
        raise UserError(f"tenant {tenant.slug} is {tenant.status}; it cannot take a domain")
    host = hostnames.normalize(hostname)
    hostnames.refuse_platform_domains(
        host, (settings.fallback_domain, settings.domain_cname_target)
    )
    apex = hostnames.is_apex(host)
    _require_edge_target(apex, settings)
    holder = session.execute(
        select(TenantDomain, Tenant.slug)
        .join(Tenant, Tenant.id == TenantDomain.tenant_id)
        .where(TenantDomain.hostname == host, TenantDomain.status != "removed")
    ).first()
    if holder is not None:
        if holder[0].tenant_id == tenant.id:
            raise UserError(f"{host} is already added for {tenant.slug}; see `domains show {host}`")
        raise UserError(
            f"{host} is held by another tenant ({holder[1]}); it must be removed there first"
        )
    domain = TenantDomain(
        tenant_id=tenant.id,
        hostname=host,
        apex=apex,
        verification_token=secrets.token_hex(16),
        status="pending_dns",
        certificate_status="none",
        cert_warnings_sent=[],
        consecutive_failures=0,
        failover_active=False,
        next_check_at=now,
        pending_since=now,
        added_by=actor,
        created_at=now,
        updated_at=now,
    )
    session.add(domain)
    try:
        with session.begin_nested():
            session.flush()
    except IntegrityError:
        raise UserError(f"{host} was added by someone else just now; see `domains show`") from None
    audit.record(
        session,
        actor=actor,
        action="domain.add",
        entity_type="domain",
        entity_id=domain.id,
        tenant_id=tenant.id,
        after={"hostname": host, "apex": apex},
    )
    return domain


def remove_domain(session: Session, hostname: str, *, actor: str, now: dt.datetime) -> TenantDomain:
    """Stop serving and checking the hostname; the record stays, status `removed`. Its open
    incidents (degraded, certificate, issuance) are resolved: nothing checks a removed domain
    again, so nothing else would ever resolve them."""
    domain = live_domain(session, hostname)
    before = {"status": domain.status, "failover_active": domain.failover_active}
    domain.status = "removed"
    domain.removed_at = now
    domain.failover_active = False
    domain.updated_at = now
    for part in (None, "certificate", "issuance"):
        clear_incident(session, incident_cause(domain.hostname, part), now=now, by=actor)
    audit.record(
        session,
        actor=actor,
        action="domain.remove",
        entity_type="domain",
        entity_id=domain.id,
        tenant_id=domain.tenant_id,
        before=before,
        after={"status": "removed"},
    )
    return domain


def add_runbook_note(
    session: Session, hostname: str, *, state: str, note: str, actor: str, now: dt.datetime
) -> DomainRunbookNote:
    domain = live_domain(session, hostname)
    one_of("runbook state", state, RUNBOOK_STATES)
    text = " ".join(note.split())
    if not text:
        raise UserError("the note is empty; say what was done or seen, e.g. --note 'asked …'")
    row = DomainRunbookNote(domain_id=domain.id, state=state, note=text, actor=actor, at=now)
    session.add(row)
    session.flush()
    audit.record(
        session,
        actor=actor,
        action="domain.runbook",
        entity_type="domain",
        entity_id=domain.id,
        tenant_id=domain.tenant_id,
        after={"state": state, "note": text},
    )
    return row


def domain_doc(domain: TenantDomain, tenant_slug: str, settings: Settings) -> dict[str, Any]:
    return {
        "id": domain.id,
        "hostname": domain.hostname,
        "tenant": tenant_slug,
        "apex": domain.apex,
        "status": domain.status,
        "certificate_status": domain.certificate_status,
        "failover_active": domain.failover_active,
        "fallback_hostname": (
            f"{tenant_slug}.{settings.fallback_domain}" if settings.fallback_domain else None
        ),
        "txt_result": domain.txt_result,
        "dns_result": domain.dns_result,
        "dns_detail": domain.dns_detail,
        "tls_detail": domain.tls_detail,
        "certificate": {
            "not_before": domain.cert_not_before,
            "not_after": domain.cert_not_after,
            "issuer": domain.cert_issuer,
            "names": domain.cert_names,
            "warnings_sent": domain.cert_warnings_sent,
        },
        "edge_status": domain.edge_status,
        "consecutive_failures": domain.consecutive_failures,
        "last_checked_at": domain.last_checked_at,
        "last_ok_at": domain.last_ok_at,
        "next_check_at": domain.next_check_at,
        "verified_at": domain.verified_at,
        "active_since": domain.active_since,
        "failed_at": domain.failed_at,
        "failure_reason": domain.failure_reason,
        "removed_at": domain.removed_at,
        "created_at": domain.created_at,
        "verification_record": {
            "type": "TXT",
            "name": txt_name(domain.hostname),
            "value": txt_value(domain),
        },
        "records_to_create": records_to_create(domain, settings),
    }


def domain_details(
    session: Session, hostname: str, settings: Settings, *, history: int = 20
) -> dict[str, Any]:
    """`domains show`: the record, the records to create, recent checks and runbook notes."""
    domain = live_domain_or_removed(session, hostname)
    slug = session.scalar(select(Tenant.slug).where(Tenant.id == domain.tenant_id)) or "?"
    doc = domain_doc(domain, slug, settings)
    checks = session.scalars(
        select(DomainCheck)
        .where(DomainCheck.domain_id == domain.id)
        .order_by(DomainCheck.checked_at.desc(), DomainCheck.id.desc())
        .limit(history)
    )
    doc["checks"] = [
        {
            "checked_at": c.checked_at,
            "kind": c.kind,
            "result": c.result,
            "detail": c.detail,
            "latency_ms": c.latency_ms,
        }
        for c in checks
    ]
    notes = session.scalars(
        select(DomainRunbookNote)
        .where(DomainRunbookNote.domain_id == domain.id)
        .order_by(DomainRunbookNote.at.desc(), DomainRunbookNote.id.desc())
    )
    doc["runbook"] = [
        {"at": n.at, "state": n.state, "note": n.note, "actor": n.actor} for n in notes
    ]
    return doc


def live_domain_or_removed(session: Session, hostname: str) -> TenantDomain:
    """The live record, else the most recently removed one (so `show` explains a removal)."""
    host = hostnames.normalize(hostname)
    domain = session.scalar(
        select(TenantDomain)
        .where(TenantDomain.hostname == host)
        .order_by((TenantDomain.status == "removed").asc(), TenantDomain.id.desc())
        .limit(1)
    )
    if domain is None:
        raise NotFound(f"no domain {host}; see `faithflow domains list`")
    return domain


def list_domains(
    session: Session,
    settings: Settings,
    *,
    tenant: str | None = None,
    status: str | None = None,
    include_removed: bool = False,
    limit: int = 200,
) -> tuple[list[dict[str, Any]], int]:
    query = select(TenantDomain, Tenant.slug).join(Tenant, Tenant.id == TenantDomain.tenant_id)
    count = select(func.count()).select_from(TenantDomain)
    conds = []
    if tenant:
        conds.append(TenantDomain.tenant_id == get_tenant(session, tenant).id)
    if status:
        one_of("status", status, DOMAIN_STATUSES)
        conds.append(TenantDomain.status == status)
    elif not include_removed:
        conds.append(TenantDomain.status != "removed")
    for cond in conds:
        query, count = query.where(cond), count.where(cond)
    rows = session.execute(query.order_by(TenantDomain.hostname).limit(limit))
    total = session.scalar(count) or 0
    return [domain_doc(d, slug, settings) for d, slug in rows], total


def revive_failed(
    db: Database, settings: Settings, hostname: str, *, now: dt.datetime, actor: str
) -> int:
    """`domains verify`, before the check: a `failed` domain goes back to `pending_dns` with a
    fresh window. Returns the domain's id; the check itself is the job's
    (`jobs.tenant_ops_automate.check_now`)."""
    with db.session() as session:
        domain = live_domain(session, hostname)
        _require_edge_target(domain.apex, settings)  # before anything is revived
        if domain.status == "failed":
            domain.status = "pending_dns"
            domain.pending_since = now
            domain.failed_at = None
            domain.failure_reason = None
            domain.consecutive_failures = 0
            domain.next_check_at = now
            domain.updated_at = now
            audit.record(
                session,
                actor=actor,
                action="domain.revived",
                entity_type="domain",
                entity_id=domain.id,
                tenant_id=domain.tenant_id,
                before={"status": "failed"},
                after={"status": "pending_dns", "pending_since": now.isoformat()},
            )
        return domain.id


def remove_with_edge(
    db: Database,
    settings: Settings,
    hostname: str,
    *,
    now: dt.datetime,
    actor: str,
    keep_edge: bool = False,
    dry_run: bool = False,
) -> str:
    """`domains remove`: ask the edge to drop the host (when configured), then mark it removed.
    An edge error stops before anything changes here, so the two never disagree. `dry_run`:
    every check, no call, no write; the answer says what would be done."""
    with db.read_session() as session:
        domain = live_domain(session, hostname)
        host = domain.hostname
        tenant = session.scalar(select(Tenant.slug).where(Tenant.id == domain.tenant_id))
    edge = "the edge was not asked (--keep-edge)" if keep_edge else "no edge configured"
    use_edge = not keep_edge and settings.render_api_key and settings.render_service_id
    if dry_run:
        ask = "ask Render to drop it" if use_edge else edge
        return f"remove {host} of tenant {tenant} (stop serving and checking it; {ask})"
    if use_edge:
        from faithflow_ops.providers.render import RenderAPI

        with RenderAPI(settings) as api:
            gone = api.delete_domain(host)
        edge = "Render dropped it" if gone else "Render did not have it"
    with db.session() as session:
        remove_domain(session, host, actor=actor, now=now)
    return f"removed {host}; {edge}"
