"""`faithflow disputes monitor`, the alerts: an open dispute still waiting for our evidence whose
deadline is within a threshold (`FAITHFLOW_DISPUTE_ALERT_DAYS`, default 3 and 1 days) with no
alert recorded for that threshold gets one alert per threshold, POSTed to `ALERT_WEBHOOK_URL`
and e-mailed to the ops contact `FAITHFLOW_OPS_EMAIL` through `SMTP_URL` (each when
configured), and recorded in audit_log. Alerts are planned on the pulled state (a missed
dispute is alerted on in the run that records it: billing/dispute_pulls.py).

apply: an alert is claimed by inserting its `dispute_alerts` row (`ON CONFLICT DO NOTHING`,
rowcount checked) in the transaction that sends it (webhook, then e-mail); a failed send
raises, the transaction rolls back and the claim with it, so the next run retries both; a
concurrent claimer waits on the unique key and then finds it taken.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from faithflow_ops import audit
from faithflow_ops.actions import Action, StaleAction, decode, encode
from faithflow_ops.db import upsert_insert, utcnow
from faithflow_ops.errors import ConfigError
from faithflow_ops.models import Dispute, DisputeAlert, Tenant
from faithflow_ops.models.payments import DISPUTE_CLOSED as CLOSED
from faithflow_ops.money import format_money

if TYPE_CHECKING:
    from faithflow_ops.config import Settings

# Evidence already submitted: the decision is the bank's, an alert would be noise.
AWAITING_OTHERS = frozenset({"under_review", "warning_under_review", "awaiting-bank-feedback"})
AUDIT_ALERT = "dispute.evidence_due_alert"


@dataclass(frozen=True)
class EvidenceDueAlert:
    """The payload of an `evidence_due_alert` action."""

    provider: str
    provider_dispute_id: str
    dispute_id: int | None  # None: its dispute_pulled of the same run records it
    tenant_id: int
    tenant: str | None  # slug
    scope: str
    status: str
    evidence_due_by: dt.datetime
    threshold_days: int


@dataclass(frozen=True)
class View:
    """A dispute as it stands once the pull is applied: what alerts are planned on."""

    provider: str
    provider_dispute_id: str
    dispute_id: int | None  # None: not recorded yet (its dispute_pulled records it)
    tenant_id: int
    scope: str
    status: str
    evidence_due_by: dt.datetime | None
    closed_at: dt.datetime | None


def dispute_target(provider: str, provider_dispute_id: str, dispute_id: int | None) -> str:
    """An action's target: the recorded dispute, else the provider's id for it."""
    return f"dispute:{dispute_id}" if dispute_id else f"dispute:{provider}:{provider_dispute_id}"


def view_of(row: Dispute) -> View:
    return View(
        provider=row.provider,
        provider_dispute_id=row.provider_dispute_id,
        dispute_id=row.id,
        tenant_id=row.tenant_id,
        scope=row.scope,
        status=row.status,
        evidence_due_by=row.evidence_due_by,
        closed_at=row.closed_at,
    )


def needs_evidence(status: str, closed_at: dt.datetime | None) -> bool:
    """An open dispute that still waits for our evidence."""
    return closed_at is None and status not in CLOSED and status not in AWAITING_OTHERS


def threshold_for(due: dt.datetime, now: dt.datetime, thresholds: tuple[int, ...]) -> int | None:
    """The tightest threshold (days) the deadline is within, None when none is reached or the
    deadline has passed. First seen with 12 h left: only the 1-day alert, not 3 and 1."""
    left = due - now
    if left <= dt.timedelta(0):
        return None
    reached = [t for t in thresholds if left <= dt.timedelta(days=t)]
    return min(reached) if reached else None


def plan_alerts(
    session: Session,
    now: dt.datetime,
    thresholds: tuple[int, ...],
    pulled: Mapping[tuple[str, str], View],
) -> list[Action]:
    """The `evidence_due_alert`s due at `now`, on the stored disputes as the pull leaves them
    (`pulled`: what it read, by provider and dispute id)."""
    if not thresholds:
        return []
    horizon = now + dt.timedelta(days=max(thresholds))
    # ix_disputes_monitor_evidence_due_by: open disputes with a deadline, by deadline
    rows = session.scalars(
        select(Dispute)
        .where(
            Dispute.closed_at.is_(None),
            Dispute.evidence_due_by.is_not(None),
            Dispute.evidence_due_by > now,
            Dispute.evidence_due_by <= horizon,
        )
        .order_by(Dispute.evidence_due_by, Dispute.id)
    ).all()
    views = {(r.provider, r.provider_dispute_id): view_of(r) for r in rows}
    views.update(pulled)  # the provider's state wins: closed ones drop out, missed ones join
    due = []
    for view in views.values():
        if view.evidence_due_by is None or not needs_evidence(view.status, view.closed_at):
            continue
        threshold = threshold_for(view.evidence_due_by, now, thresholds)
        if threshold is not None:
            due.append((view, threshold))
    ids = sorted({v.dispute_id for v, _ in due if v.dispute_id is not None})
    sent: set[tuple[int, int]] = set()
    if ids:
        sent = set(
            session.execute(
                select(DisputeAlert.dispute_id, DisputeAlert.threshold_days).where(
                    DisputeAlert.dispute_id.in_(ids)
                )
            )
            .tuples()
            .all()
        )
    slugs: dict[int, str] = {}
    if due:
        tenant_ids = sorted({v.tenant_id for v, _ in due})
        slugs = dict(
            session.execute(select(Tenant.id, Tenant.slug).where(Tenant.id.in_(tenant_ids)))
            .tuples()
            .all()
        )
    out = []
    for view, threshold in sorted(
        due, key=lambda d: (d[0].evidence_due_by, d[0].provider_dispute_id)
    ):
        if (view.dispute_id, threshold) in sent:
            continue
        assert view.evidence_due_by is not None
        hours = (view.evidence_due_by - now).total_seconds() / 3600
        alert = EvidenceDueAlert(
            view.provider,
            view.provider_dispute_id,
            view.dispute_id,
            view.tenant_id,
            slugs.get(view.tenant_id),
            view.scope,
            view.status,
            view.evidence_due_by,
            threshold,
        )
        reason = (
            f"evidence due {view.evidence_due_by.isoformat()} (in {hours:.0f} h, within "
            f"{threshold} day{'s' if threshold != 1 else ''}); status {view.status}"
        )
        target = dispute_target(view.provider, view.provider_dispute_id, view.dispute_id)
        out.append(Action("evidence_due_alert", target, reason, encode(alert)))
    return out


# ---------------------------------------------------------------------------------------------
# apply


def alert_document(
    dispute: Dispute, slug: str | None, threshold: int, now: dt.datetime
) -> dict[str, Any]:
    """The JSON the alert hook receives; `id` is stable per dispute and threshold."""
    assert dispute.evidence_due_by is not None
    hours = (dispute.evidence_due_by - now).total_seconds() / 3600
    amount = format_money(dispute.amount_minor, dispute.currency, provider=dispute.provider)
    who = slug or f"tenant {dispute.tenant_id}"
    return {
        "id": f"dispute-evidence-due:{dispute.provider}:{dispute.provider_dispute_id}:{threshold}d",
        "type": "dispute.evidence_due",
        "text": (
            f"{dispute.provider} dispute {dispute.provider_dispute_id} ({who}, {amount}, "
            f"{dispute.status}): evidence due {dispute.evidence_due_by.isoformat()}, in "
            f"{hours:.0f} h. `faithflow disputes show {dispute.id}`"
        ),
        "dispute_id": dispute.id,
        "provider": dispute.provider,
        "provider_dispute_id": dispute.provider_dispute_id,
        "tenant": slug,
        "scope": dispute.scope,
        "status": dispute.status,
        "reason": dispute.reason,
        "amount_minor": dispute.amount_minor,
        "currency": dispute.currency,
        "evidence_due_by": dispute.evidence_due_by.isoformat(),
        "threshold_days": threshold,
        "hours_left": round(hours, 1),
    }


def apply_alert(
    session: Session, settings: Settings, now: dt.datetime, actor: str, action: Action
) -> None:
    """Claim, record and send one alert (see the module docstring)."""
    alert = decode(EvidenceDueAlert, action.data)
    threshold = int(alert.threshold_days)
    dispute = session.scalar(
        select(Dispute).where(
            Dispute.provider == alert.provider,
            Dispute.provider_dispute_id == alert.provider_dispute_id,
        )
    )
    if dispute is None:
        raise StaleAction("the dispute is not recorded (its pull did not apply)")
    if dispute.evidence_due_by is None or not needs_evidence(dispute.status, dispute.closed_at):
        raise StaleAction(f"dispute {dispute.id} no longer waits for evidence ({dispute.status})")
    if threshold_for(dispute.evidence_due_by, now, settings.dispute_alert_days) != threshold:
        raise StaleAction(f"dispute {dispute.id}'s deadline moved; run again to re-plan it")
    # E-mail needs both the ops contact and a server; FAITHFLOW_OPS_EMAIL alone sends nothing.
    email_on = bool(settings.ops_email and settings.smtp_url)
    channels = [
        name for name, on in (("webhook", settings.alert_webhook_url), ("email", email_on)) if on
    ]
    if not channels:
        raise ConfigError(
            "no alert channel is configured; set ALERT_WEBHOOK_URL and/or FAITHFLOW_OPS_EMAIL "
            "with SMTP_URL and EMAIL_FROM"
        )
    if email_on:
        settings.require("email_from", "EMAIL_FROM")  # before anything is claimed or sent
    # The claim: only one transaction ever inserts this row; it commits with the sends or not at
    # all (a failed POST or e-mail raises, the claim rolls back, the next run retries both).
    claimed = session.execute(
        upsert_insert(session.get_bind().dialect.name, DisputeAlert)
        .values(
            dispute_id=dispute.id,
            threshold_days=threshold,
            sent_at=utcnow(),
            channel=",".join(channels),
            created_at=utcnow(),
        )
        .on_conflict_do_nothing(index_elements=["dispute_id", "threshold_days"])
        .returning(DisputeAlert.id)
    ).scalar_one_or_none()
    if claimed is None:
        raise StaleAction(f"the {threshold}-day alert for dispute {dispute.id} was already sent")
    slug = session.scalar(select(Tenant.slug).where(Tenant.id == dispute.tenant_id))
    doc = alert_document(dispute, slug, threshold, now)
    message_id = alert_message_id(dispute.id, threshold)
    audit.record(
        session,
        actor=actor,
        action=AUDIT_ALERT,
        entity_type="dispute",
        entity_id=dispute.id,
        tenant_id=dispute.tenant_id,
        after={
            "threshold_days": threshold,
            "channels": channels,
            "email_to": settings.ops_email if email_on else None,
            "message_id": message_id if email_on else None,
            "webhook": bool(settings.alert_webhook_url),
            "text": doc["text"],
        },
    )
    session.flush()
    if settings.alert_webhook_url:
        from faithflow_ops.providers.alerts import AlertHook

        with AlertHook(settings) as hook:
            hook.send(doc)
    if email_on:
        from faithflow_ops.providers.smtp import send_email

        assert settings.ops_email is not None
        send_email(
            settings,
            settings.ops_email,
            alert_subject(doc),
            alert_body(doc),
            message_id=message_id,
        )


def alert_message_id(dispute_id: int, threshold: int) -> str:
    """The alert e-mail's Message-ID: stable per dispute and threshold, so a resent one (after
    a failed run) is recognisable as the same message."""
    return f"<dispute-{dispute_id}-{threshold}d@faithflow>"


def alert_subject(doc: Mapping[str, Any]) -> str:
    who = doc["tenant"] or "unknown tenant"
    return (
        f"Dispute evidence due in {doc['hours_left']:.0f} h: {doc['provider']} "
        f"{doc['provider_dispute_id']} ({who})"
    )


def alert_body(doc: Mapping[str, Any]) -> str:
    amount = format_money(doc["amount_minor"], doc["currency"], provider=doc["provider"])
    lines = [
        doc["text"],
        "",
        f"Provider:        {doc['provider']} ({doc['scope']})",
        f"Dispute:         {doc['provider_dispute_id']} (faithflow id {doc['dispute_id']})",
        f"Tenant:          {doc['tenant'] or '-'}",
        f"Amount:          {amount}",
        f"Status:          {doc['status']}",
        f"Reason:          {doc['reason'] or '-'}",
        f"Evidence due by: {doc['evidence_due_by']} ({doc['hours_left']} h left)",
        f"Alert:           the {doc['threshold_days']}-day threshold",
        "",
        f"Details: faithflow disputes show {doc['dispute_id']}",
    ]
    return "\n".join(lines) + "\n"
