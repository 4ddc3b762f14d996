"""`faithflow disputes monitor`: pull disputes from both providers (a missed webhook cannot
hide one) and alert the platform ops contact before evidence is due.

Action kinds (the runbook, docs/disputes.md, says why):

- `dispute_pulled`: a dispute the provider lists that we do not have, or whose state (status,
  amount, deadline, closing) differs from ours. Applied through the webhook code itself: the
  pulled object is read by the dispute handler of `webhooks.stripe` / `webhooks.paystack` (the
  tenant and every field mapped once) and written by `billing.lifecycle.write_dispute` with its
  order check — so won/lost/closed come from the provider's state exactly as from a webhook.
- `unmapped_dispute` (report-only): a pulled dispute whose tenant cannot be resolved (an
  unlinked Connect account, subaccount or customer). Not written; the reason names the link.
  A Stripe platform dispute that our stored data cannot place (no invoice holds its charge or
  payment intent: on API 2025-03-31.basil and later the invoice_payment.paid event that
  records them may be missing) is looked up at Stripe first: `GET /v1/invoice_payments` by
  its payment intent (the invoice), then `GET /v1/charges/{id}` (the customer); what was
  found travels in the action's `links` so applying it maps the same way. A look-up that
  fails (after the retries) is a `pull_failed` for that dispute.
- `evidence_due_alert`: an open dispute still waiting for our evidence whose deadline is within
  a threshold (`FAITHFLOW_DISPUTE_ALERT_DAYS`, default 3 and 1 days) with no alert recorded for
  that threshold: one alert per dispute per threshold, POSTed to `ALERT_WEBHOOK_URL` and
  e-mailed to the ops contact `FAITHFLOW_OPS_EMAIL` through `SMTP_URL` (each when configured),
  and recorded in audit_log.
- `pull_skipped` (report-only): a provider whose secret key is not set was not pulled.
- `pull_failed`: a provider list that failed after the retries; applying it records the error
  as a failed action (the run ends `partial`, exit 1) while everything else goes on.

Order of a pulled state: Stripe's dispute object carries no change time, so a pull is dated
the moment its list request started (wall clock, never `--now`): a webhook created after that
is newer, one created before is older. Paystack disputes carry `updatedAt`, which orders the
webhooks too. Closed: Stripe `won`/`lost`/`warning_closed`/`prevented` (read as
`charge.dispute.closed`), Paystack `resolved`/`archived` (read as `charge.dispute.resolve`).

plan: every provider page is read and compared with the database before the first action is
yielded, so applying early actions cannot change what later ones see; alerts see the pulled
state (a missed dispute is alerted on in the run that records it). A second run at the same
`now` plans nothing new (report-only findings repeat until fixed).

apply: an alert is claimed by inserting its `dispute_alerts` row (`ON CONFLICT DO NOTHING`,
rowcount checked) in the transaction that sends it (webhook, then e-mail); a failed send
raises, the transaction rolls back and the claim with it, so the next run retries both; a
concurrent claimer waits on the unique key and then finds it taken.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from faithflow_ops import audit
from faithflow_ops.billing import lifecycle as fx
from faithflow_ops.db import upsert_insert, utcnow
from faithflow_ops.errors import ConfigError
from faithflow_ops.jobs.base import Action, Job, JobContext, StaleAction
from faithflow_ops.models import Dispute, DisputeAlert, ProviderAccount, Tenant
from faithflow_ops.models.payments import (
    DISPUTE_CLOSED,
    PAYSTACK_DISPUTE_CLOSED,
    STRIPE_DISPUTE_CLOSED,
)
from faithflow_ops.providers._http import ProviderError
from faithflow_ops.webhooks import paystack as paystack_hooks
from faithflow_ops.webhooks import stripe as stripe_hooks
from faithflow_ops.webhooks.events import InboundEvent, parse
from faithflow_ops.webhooks.stripe import PaymentLinks

KINDS = ("dispute_pulled", "evidence_due_alert", "unmapped_dispute", "pull_skipped", "pull_failed")

# The provider's words for a dispute that is over live with the model (models/payments.py).
STRIPE_CLOSED = STRIPE_DISPUTE_CLOSED
PAYSTACK_CLOSED = PAYSTACK_DISPUTE_CLOSED
CLOSED = DISPUTE_CLOSED
# Evidence already submitted: the decision is the bank's, an alert would be noise.
AWAITING_OTHERS = frozenset({"under_review", "warning_under_review", "awaiting-bank-feedback"})

AUDIT_PULLED = "dispute.pulled"
AUDIT_ALERT = "dispute.evidence_due_alert"


class DisputesMonitor(Job):
    name = "disputes_monitor"
    report_only = frozenset({"unmapped_dispute", "pull_skipped"})
    table_columns = ("kind", "tenant", "target", "reason")

    @classmethod
    def table_rows(cls, action: Action) -> list[tuple[Any, ...]]:
        return [(action.kind, action.data.get("tenant"), action.target, action.reason)]

    def plan(self, session: Session, ctx: JobContext) -> Iterator[Action]:
        actions: list[Action] = []
        pulled: dict[tuple[str, str], _View] = {}
        with _StripeLookup(ctx) as lookup:
            for pull in _pulls(session, ctx, actions):
                action, view = _compare(session, pull, lookup)
                if action is not None:
                    actions.append(action)
                if view is not None:
                    pulled[(view.provider, view.provider_dispute_id)] = view
        actions += _alerts(session, ctx, pulled)
        if ctx.progress is not None:
            ctx.progress.start(len(actions))
        yield from actions

    def apply(self, session: Session, ctx: JobContext, action: Action) -> None:
        if action.kind == "dispute_pulled":
            _apply_pulled(session, ctx, action.data)
        elif action.kind == "evidence_due_alert":
            _apply_alert(session, ctx, action.data)
        elif action.kind == "pull_failed":
            raise RuntimeError(action.reason)
        else:
            raise ValueError(f"disputes monitor has no action kind {action.kind!r}")


JOB = DisputesMonitor()


# ---------------------------------------------------------------------------------------------
# pull


@dataclass(frozen=True)
class _Pulled:
    """One dispute a provider listed, as the webhook event its handler reads."""

    provider: str
    scope: str
    payload: dict[str, Any]  # a webhook-shaped body: events.parse reads it

    def event(self) -> InboundEvent:
        return parse(self.provider, self.scope, self.payload)


def stripe_payload(obj: dict[str, Any], account: str | None, fetched_at: int) -> dict[str, Any]:
    """A Stripe dispute from the list, shaped as the event that would carry its state."""
    closed = obj.get("status") in STRIPE_CLOSED
    payload: dict[str, Any] = {
        "id": f"pull:{obj.get('id')}:{fetched_at}",
        "object": "event",
        "type": "charge.dispute.closed" if closed else "charge.dispute.updated",
        "created": fetched_at,
        "data": {"object": obj},
    }
    if account:
        payload["account"] = account
    return payload


def paystack_payload(obj: dict[str, Any]) -> dict[str, Any]:
    """A Paystack dispute from the list, shaped as the event that would carry its state."""
    closed = obj.get("status") in PAYSTACK_CLOSED
    return {"event": "charge.dispute.resolve" if closed else "charge.dispute.remind", "data": obj}


def _pulls(session: Session, ctx: JobContext, actions: list[Action]) -> Iterator[_Pulled]:
    """Every dispute both providers list in the look-back window; skipped and failed
    providers become actions."""
    settings = ctx.settings
    since = ctx.now - dt.timedelta(days=settings.dispute_lookback_days)
    if not settings.stripe_secret_key:
        actions.append(_skipped("stripe", "STRIPE_SECRET_KEY"))
    else:
        from faithflow_ops.providers.stripe import StripeAPI

        accounts = session.scalars(
            select(ProviderAccount.external_id)
            .where(ProviderAccount.provider == "stripe", ProviderAccount.kind == "connect_account")
            .order_by(ProviderAccount.external_id)
        ).all()
        with StripeAPI(settings) as stripe_api:
            for account in (None, *accounts):
                fetched_at = int(time.time())
                scope = "tenant" if account else "platform"
                try:
                    found = list(stripe_api.list_disputes(created_gte=since, account=account))
                except ProviderError as exc:
                    actions.append(_failed("stripe", account, exc))
                    continue
                for obj in found:
                    yield _Pulled("stripe", scope, stripe_payload(obj, account, fetched_at))
    if not settings.paystack_secret_key:
        actions.append(_skipped("paystack", "PAYSTACK_SECRET_KEY"))
    else:
        from faithflow_ops.providers.paystack import PaystackAPI

        end = ctx.now + dt.timedelta(days=1)  # `to` is a day: include all of today
        with PaystackAPI(settings) as paystack_api:
            try:
                found = list(paystack_api.list_disputes(start=since, end=end))
            except ProviderError as exc:
                actions.append(_failed("paystack", None, exc))
                found = []
        for obj in found:
            payload = paystack_payload(obj)
            # A dispute on a church's subaccount is tenant scope; the platform's own charges
            # (FaithFlow billing a church) are platform scope.
            scope = "tenant" if parse("paystack", "tenant", payload).account_ref else "platform"
            yield _Pulled("paystack", scope, payload)


def _skipped(provider: str, variable: str) -> Action:
    reason = f"{variable} is not set: {provider} disputes were not pulled (webhooks only)"
    data = {"provider": provider, "missing": variable}
    return Action("pull_skipped", f"provider:{provider}", reason, data)


def _failed(provider: str, account: str | None, exc: ProviderError) -> Action:
    where = f" for {account}" if account else ""
    data = {"provider": provider, "account": account, "error": str(exc), "status": exc.status}
    return Action("pull_failed", f"provider:{provider}", f"pulling disputes{where}: {exc}", data)


class _StripeLookup:
    """The Stripe look-ups that place a platform dispute our stored data cannot (read-only,
    one client opened on first use, answers cached for the run)."""

    def __init__(self, ctx: JobContext) -> None:
        self.settings = ctx.settings
        self._api: Any = None
        self._invoices: dict[str, list[str]] = {}
        self._customers: dict[str, str | None] = {}

    def __enter__(self) -> _StripeLookup:
        return self

    def __exit__(self, *exc: object) -> None:
        if self._api is not None:
            self._api.close()

    def _client(self) -> Any:
        if self._api is None:
            from faithflow_ops.providers.stripe import StripeAPI

            self._api = StripeAPI(self.settings)
        return self._api

    def invoices_paid_by(self, payment_intent: str) -> list[str]:
        if payment_intent not in self._invoices:
            self._invoices[payment_intent] = self._client().invoices_paid_by(payment_intent)
        return self._invoices[payment_intent]

    def charge_customer(self, charge: str) -> str | None:
        if charge not in self._customers:
            self._customers[charge] = self._client().charge_customer(charge)
        return self._customers[charge]


def _stripe_links(
    session: Session, event: InboundEvent, lookup: _StripeLookup
) -> tuple[fx.DisputeState | fx.Outcome, PaymentLinks]:
    """Map an unplaced Stripe platform dispute through Stripe: the invoice its payment intent
    paid, then its charge's customer (asked only when the invoice does not place it)."""
    charge, intent = stripe_hooks.disputed_payment(event.object)
    invoices = lookup.invoices_paid_by(intent) if intent else []
    links = PaymentLinks(invoice=invoices[0] if invoices else None)
    state = stripe_hooks.dispute_state(session, event, links)
    if isinstance(state, fx.Outcome) and charge:
        links = PaymentLinks(invoice=links.invoice, customer=lookup.charge_customer(charge))
        state = stripe_hooks.dispute_state(session, event, links)
        if isinstance(state, fx.Outcome) and links.customer is None:
            state = fx.unmatched(f"{state.detail}; Stripe names no customer for {charge}")
    return state, links


@dataclass(frozen=True)
class _View:
    """A dispute as it stands once the pull is applied: what alerts are planned on."""

    provider: str
    provider_dispute_id: str
    dispute_id: int | None  # None: not recorded yet (its dispute_pulled records it)
    tenant_id: int
    scope: str
    status: str
    evidence_due_by: dt.datetime | None
    closed_at: dt.datetime | None


_HOOKS = {"stripe": stripe_hooks, "paystack": paystack_hooks}


def _state(session: Session, event: InboundEvent) -> fx.DisputeState | fx.Outcome:
    state: fx.DisputeState | fx.Outcome = _HOOKS[event.provider].dispute_state(session, event)
    return state


def _rank(event: InboundEvent) -> int:
    ranks: Mapping[str, int] = _HOOKS[event.provider].RANKS
    return ranks[event.type]


def _target(provider: str, provider_dispute_id: str, dispute_id: int | None) -> str:
    return f"dispute:{dispute_id}" if dispute_id else f"dispute:{provider}:{provider_dispute_id}"


def _compare(
    session: Session, pull: _Pulled, lookup: _StripeLookup
) -> tuple[Action | None, _View | None]:
    """The action a pulled dispute needs (None when we already hold its state) and how it
    stands afterwards."""
    event = pull.event()
    pid = str(event.object_id or "")
    if not pid:
        return None, None
    stored = session.scalar(
        select(Dispute).where(
            Dispute.provider == event.provider, Dispute.provider_dispute_id == pid
        )
    )
    state = _state(session, event)
    links = None
    if isinstance(state, fx.Outcome) and (event.provider, event.scope) == ("stripe", "platform"):
        try:
            state, links = _stripe_links(session, event, lookup)
        except ProviderError as exc:
            failed = {
                "provider": "stripe",
                "account": None,
                "error": str(exc),
                "status": exc.status,
            }
            reason = f"looking up dispute {pid}'s invoice and customer at stripe: {exc}"
            return Action("pull_failed", _target(event.provider, pid, None), reason, failed), None
    if isinstance(state, fx.Outcome):
        if stored is not None:  # recorded by a webhook that knew the tenant: nothing to fix
            return None, None
        report = {
            "provider": event.provider,
            "scope": event.scope,
            "provider_dispute_id": pid,
            "account": event.account_ref,
            "customer": event.customer_ref,
            "status": str(event.object.get("status") or ""),
        }
        return Action(
            "unmapped_dispute", _target(event.provider, pid, None), state.detail, report
        ), None
    at, rank = event.occurred_at, _rank(event)
    if stored is not None and not fx.is_current(stored, at, rank):
        return None, _view_of(stored)
    changes = ["new"] if stored is None else fx.dispute_changes(stored, event.scope, state)
    values = fx.dispute_values(stored or Dispute(), event.scope, state)
    view = _View(
        provider=event.provider,
        provider_dispute_id=pid,
        dispute_id=stored.id if stored else None,
        tenant_id=state.tenant_id,
        scope=event.scope,
        status=values["status"],
        evidence_due_by=values["evidence_due_by"],
        closed_at=values.get("closed_at", stored.closed_at if stored else None),
    )
    if not changes:
        return None, view
    slug = session.scalar(select(Tenant.slug).where(Tenant.id == state.tenant_id))
    before = stored.status if stored else None
    if stored is None:
        reason = f"{event.provider} lists dispute {pid} ({state.status}) that no webhook recorded"
    else:
        reason = (
            f"{event.provider} says {before} -> {state.status}"
            if before != values["status"]
            else f"{event.provider} state differs in {', '.join(changes)}"
        )
    dispute_id = stored.id if stored else None
    data: dict[str, Any] = {
        "provider": event.provider,
        "scope": event.scope,
        "provider_dispute_id": pid,
        "dispute_id": dispute_id,
        "tenant_id": state.tenant_id,
        "tenant": slug,
        "status_before": before,
        "status": values["status"],
        "changes": changes,
        "payload": pull.payload,
    }
    if links is not None:  # applying maps through what the look-up found, not again at Stripe
        data["links"] = links.to_dict()
    return Action("dispute_pulled", _target(event.provider, pid, dispute_id), reason, data), view


def _view_of(row: Dispute) -> _View:
    return _View(
        provider=row.provider,
        provider_dispute_id=row.provider_dispute_id,
        dispute_id=row.id,
        tenant_id=row.tenant_id,
        scope=row.scope,
        status=row.status,
        evidence_due_by=row.evidence_due_by,
        closed_at=row.closed_at,
    )


# ---------------------------------------------------------------------------------------------
# alerts


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


def _alerts(
    session: Session, ctx: JobContext, pulled: Mapping[tuple[str, str], _View]
) -> list[Action]:
    thresholds = ctx.settings.dispute_alert_days
    if not thresholds:
        return []
    now = ctx.now
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
    views = {(r.provider, r.provider_dispute_id): _view_of(r) for r in rows}
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
        data = {
            "provider": view.provider,
            "provider_dispute_id": view.provider_dispute_id,
            "dispute_id": view.dispute_id,
            "tenant_id": view.tenant_id,
            "tenant": slugs.get(view.tenant_id),
            "scope": view.scope,
            "status": view.status,
            "evidence_due_by": view.evidence_due_by.isoformat(),
            "threshold_days": threshold,
        }
        reason = (
            f"evidence due {view.evidence_due_by.isoformat()} (in {hours:.0f} h, within "
            f"{threshold} day{'s' if threshold != 1 else ''}); status {view.status}"
        )
        target = _target(view.provider, view.provider_dispute_id, view.dispute_id)
        out.append(Action("evidence_due_alert", target, reason, data))
    return out


# ---------------------------------------------------------------------------------------------
# apply


def _apply_pulled(session: Session, ctx: JobContext, data: Mapping[str, Any]) -> None:
    pull = _Pulled(data["provider"], data["scope"], data["payload"])
    event = pull.event()
    links = PaymentLinks.from_dict(data.get("links"))
    outcome: fx.Outcome = (
        stripe_hooks.dispute_event(session, event, links)
        if links is not None
        else _HOOKS[event.provider].dispute_event(session, event)
    )
    if outcome.status != "applied":
        raise StaleAction(outcome.detail)
    dispute = session.scalar(
        select(Dispute).where(
            Dispute.provider == event.provider, Dispute.provider_dispute_id == str(event.object_id)
        )
    )
    assert dispute is not None
    audit.record(
        session,
        actor=ctx.actor,
        action=AUDIT_PULLED,
        entity_type="dispute",
        entity_id=dispute.id,
        tenant_id=dispute.tenant_id,
        before={"status": data.get("status_before")} if data.get("status_before") else None,
        after={"status": dispute.status, "changes": data.get("changes"), "detail": outcome.detail},
    )


def alert_document(
    dispute: Dispute, slug: str | None, threshold: int, now: dt.datetime
) -> dict[str, Any]:
    """The JSON the alert hook receives; `id` is stable per dispute and threshold."""
    assert dispute.evidence_due_by is not None
    hours = (dispute.evidence_due_by - now).total_seconds() / 3600
    amount = f"{dispute.amount_minor / 100:.2f} {dispute.currency}"
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


def _apply_alert(session: Session, ctx: JobContext, data: Mapping[str, Any]) -> None:
    settings = ctx.settings
    threshold = int(data["threshold_days"])
    dispute = session.scalar(
        select(Dispute).where(
            Dispute.provider == data["provider"],
            Dispute.provider_dispute_id == data["provider_dispute_id"],
        )
    )
    if dispute is None:
        raise StaleAction("the dispute is not recorded (its pull did not apply)")
    if dispute.evidence_due_by is None or not needs_evidence(dispute.status, dispute.closed_at):
        raise StaleAction(f"dispute {dispute.id} no longer waits for evidence ({dispute.status})")
    if threshold_for(dispute.evidence_due_by, ctx.now, settings.dispute_alert_days) != threshold:
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
    doc = alert_document(dispute, slug, threshold, ctx.now)
    message_id = alert_message_id(dispute.id, threshold)
    audit.record(
        session,
        actor=ctx.actor,
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
    amount = f"{doc['amount_minor'] / 100:.2f} {doc['currency']}"
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
