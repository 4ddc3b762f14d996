"""`faithflow disputes monitor`: pull disputes from both providers (a missed webhook cannot
hide one) and alert the platform ops contact before evidence is due. The pull and the plan;
the alerts: billing/dispute_alerts.py; the job (jobs/disputes_monitor.py) is the glue.

Action kinds (the runbook, docs/disputes.md, says why):

- `dispute_pulled`: a dispute the provider lists that we do not have, or whose state (status,
  amount, deadline, closing) differs from ours. Applied through the webhook code itself: the
  pulled object is read by the dispute handler of `webhooks.stripe` / `webhooks.paystack` (the
  tenant and every field mapped once) and written by `billing.lifecycle.write_dispute` with its
  order check — so won/lost/closed come from the provider's state exactly as from a webhook.
  The webhooks read billing, so billing does not import them: the job hands their handlers
  in as a `DisputeReader`.
- `unmapped_dispute` (report-only): a pulled dispute whose tenant cannot be resolved (an
  unlinked Connect account, subaccount or customer). Not written; the reason names the link.
  A Stripe platform dispute that our stored data cannot place (no invoice holds its charge or
  payment intent: on API 2025-03-31.basil and later the invoice_payment.paid event that
  records them may be missing) is looked up at Stripe first: `GET /v1/invoice_payments` by
  its payment intent (the invoice), then `GET /v1/charges/{id}` (the customer); what was
  found travels in the action's `links` so applying it maps the same way. A look-up that
  fails (after the retries) is a `pull_failed` for that dispute.
- `evidence_due_alert`: see billing/dispute_alerts.py.
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
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from sqlalchemy import select
from sqlalchemy.orm import Session

from faithflow_ops import audit
from faithflow_ops.actions import Action, StaleAction, decode, encode
from faithflow_ops.billing import lifecycle as fx
from faithflow_ops.billing.dispute_alerts import View, dispute_target, plan_alerts, view_of
from faithflow_ops.billing.dispute_owner import PaymentLinks, disputed_payment
from faithflow_ops.models import Dispute, ProviderAccount, Tenant
from faithflow_ops.models.payments import PAYSTACK_DISPUTE_CLOSED, STRIPE_DISPUTE_CLOSED
from faithflow_ops.providers._http import ProviderError

if TYPE_CHECKING:
    from faithflow_ops.config import Settings

KINDS = ("dispute_pulled", "evidence_due_alert", "unmapped_dispute", "pull_skipped", "pull_failed")

# The provider's words for a dispute that is over live with the model (models/payments.py).
STRIPE_CLOSED = STRIPE_DISPUTE_CLOSED
PAYSTACK_CLOSED = PAYSTACK_DISPUTE_CLOSED

AUDIT_PULLED = "dispute.pulled"


# ---------------------------------------------------------------------------------------------
# payloads: one per action kind (`Action.data` is `encode(payload)`; apply reads `decode`);
# `evidence_due_alert`'s is in billing/dispute_alerts.py


@dataclass(frozen=True)
class DisputePulled:
    provider: str
    scope: str
    provider_dispute_id: str
    dispute_id: int | None  # None: new, this action records it
    tenant_id: int
    tenant: str | None  # slug
    status_before: str | None
    status: str
    changes: list[str]  # the columns that differ (`new` for a new dispute)
    payload: dict[str, Any]  # the webhook-shaped body its handler reads
    # What the Stripe look-ups found (`PaymentLinks`); absent from `data` without one.
    links: dict[str, Any] | None = None


@dataclass(frozen=True)
class UnmappedDispute:
    """Report-only: a pulled dispute whose tenant cannot be resolved."""

    provider: str
    scope: str
    provider_dispute_id: str
    account: str | None
    customer: str | None
    status: str


@dataclass(frozen=True)
class PullSkipped:
    """Report-only: a provider not pulled, as its secret key is not set."""

    provider: str
    missing: str  # the environment variable


@dataclass(frozen=True)
class PullFailed:
    """A provider list (or a Stripe look-up) that failed after the retries."""

    provider: str
    account: str | None  # the Connect account whose list failed
    error: str
    status: int | None  # the HTTP status, when there was an answer


class DisputeEvent(fx.InboundEvent, Protocol):
    """What the pull reads of a provider event (webhooks.events.InboundEvent), beyond what the
    state machine reads."""

    @property
    def type(self) -> str: ...
    @property
    def object(self) -> Any: ...
    @property
    def customer_ref(self) -> str | None: ...
    @property
    def account_ref(self) -> str | None: ...


class DisputeReader(Protocol):
    """The webhooks' dispute handlers, as the pull uses them (the job passes them in)."""

    def event(self, provider: str, scope: str, payload: dict[str, Any]) -> DisputeEvent:
        """A webhook-shaped body as the event its handler reads."""
        ...

    def state(
        self, session: Session, event: DisputeEvent, links: PaymentLinks | None = None
    ) -> fx.DisputeState | fx.Outcome:
        """What the event says in our columns, or why its tenant is unknown (read-only)."""
        ...

    def rank(self, event: DisputeEvent) -> int:
        """The event type's place among one dispute's states (the order check's rank)."""
        ...

    def record(
        self, session: Session, event: DisputeEvent, links: PaymentLinks | None = None
    ) -> fx.Outcome:
        """Handle the event as its webhook would (mapping through `links` when given)."""
        ...


def plan(
    session: Session, settings: Settings, now: dt.datetime, reader: DisputeReader
) -> list[Action]:
    """Every action of a run (see the module docstring)."""
    actions: list[Action] = []
    pulled: dict[tuple[str, str], View] = {}
    with StripeLookup(settings) as lookup:
        for pull in _pulls(session, settings, now, reader, actions):
            action, view = _compare(session, pull, lookup, reader)
            if action is not None:
                actions.append(action)
            if view is not None:
                pulled[(view.provider, view.provider_dispute_id)] = view
    actions += plan_alerts(session, now, settings.dispute_alert_days, pulled)
    return actions


# ---------------------------------------------------------------------------------------------
# pull


@dataclass(frozen=True)
class _Pulled:
    """One dispute a provider listed, as the webhook event its handler reads."""

    provider: str
    scope: str
    payload: dict[str, Any]  # a webhook-shaped body: events.parse reads it

    def event(self, reader: DisputeReader) -> DisputeEvent:
        return reader.event(self.provider, self.scope, self.payload)


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


def _pulls(
    session: Session,
    settings: Settings,
    now: dt.datetime,
    reader: DisputeReader,
    actions: list[Action],
) -> Iterator[_Pulled]:
    """Every dispute both providers list in the look-back window; skipped and failed
    providers become actions."""
    since = now - dt.timedelta(days=settings.dispute_lookback_days)
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

        end = now + dt.timedelta(days=1)  # `to` is a day: include all of today
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
            scope = (
                "tenant" if reader.event("paystack", "tenant", payload).account_ref else "platform"
            )
            yield _Pulled("paystack", scope, payload)


def _skipped(provider: str, variable: str) -> Action:
    reason = f"{variable} is not set: {provider} disputes were not pulled (webhooks only)"
    skipped = PullSkipped(provider, variable)
    return Action("pull_skipped", f"provider:{provider}", reason, encode(skipped))


def _failed(provider: str, account: str | None, exc: ProviderError) -> Action:
    where = f" for {account}" if account else ""
    failed = PullFailed(provider, account, str(exc), exc.status)
    reason = f"pulling disputes{where}: {exc}"
    return Action("pull_failed", f"provider:{provider}", reason, encode(failed))


class StripeLookup:
    """The Stripe look-ups that place a platform dispute our stored data cannot (read-only,
    one client opened on first use, answers cached for the run)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._api: Any = None
        self._invoices: dict[str, list[str]] = {}
        self._customers: dict[str, str | None] = {}

    def __enter__(self) -> StripeLookup:
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
    session: Session, event: DisputeEvent, lookup: StripeLookup, reader: DisputeReader
) -> tuple[fx.DisputeState | fx.Outcome, PaymentLinks]:
    """Map an unplaced Stripe platform dispute through Stripe: the invoice its payment intent
    paid, then its charge's customer (asked only when the invoice does not place it)."""
    charge, intent = disputed_payment(event.object)
    invoices = lookup.invoices_paid_by(intent) if intent else []
    links = PaymentLinks(invoice=invoices[0] if invoices else None)
    state = reader.state(session, event, links)
    if isinstance(state, fx.Outcome) and charge:
        links = PaymentLinks(invoice=links.invoice, customer=lookup.charge_customer(charge))
        state = reader.state(session, event, links)
        if isinstance(state, fx.Outcome) and links.customer is None:
            state = fx.unmatched(f"{state.detail}; Stripe names no customer for {charge}")
    return state, links


def _compare(
    session: Session, pull: _Pulled, lookup: StripeLookup, reader: DisputeReader
) -> tuple[Action | None, View | None]:
    """The action a pulled dispute needs (None when we already hold its state) and how it
    stands afterwards."""
    event = pull.event(reader)
    pid = str(event.object_id or "")
    if not pid:
        return None, None
    stored = session.scalar(
        select(Dispute).where(
            Dispute.provider == event.provider, Dispute.provider_dispute_id == pid
        )
    )
    state = reader.state(session, event)
    links = None
    if isinstance(state, fx.Outcome) and (event.provider, event.scope) == ("stripe", "platform"):
        try:
            state, links = _stripe_links(session, event, lookup, reader)
        except ProviderError as exc:
            failed = PullFailed("stripe", None, str(exc), exc.status)
            reason = f"looking up dispute {pid}'s invoice and customer at stripe: {exc}"
            target = dispute_target(event.provider, pid, None)
            return Action("pull_failed", target, reason, encode(failed)), None
    if isinstance(state, fx.Outcome):
        if stored is not None:  # recorded by a webhook that knew the tenant: nothing to fix
            return None, None
        report = UnmappedDispute(
            event.provider,
            event.scope,
            pid,
            event.account_ref,
            event.customer_ref,
            str(event.object.get("status") or ""),
        )
        target = dispute_target(event.provider, pid, None)
        return Action("unmapped_dispute", target, state.detail, encode(report)), None
    at, rank = event.occurred_at, reader.rank(event)
    if stored is not None and not fx.is_current(stored, at, rank):
        return None, view_of(stored)
    changes = ["new"] if stored is None else fx.dispute_changes(stored, event.scope, state)
    values = fx.dispute_values(stored or Dispute(), event.scope, state)
    view = View(
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
    pulled = DisputePulled(
        event.provider,
        event.scope,
        pid,
        dispute_id,
        state.tenant_id,
        slug,
        before,
        values["status"],
        changes,
        pull.payload,
        # applying maps through what the look-up found, not again at Stripe
        links.to_dict() if links is not None else None,
    )
    data = encode(pulled)
    if pulled.links is None:
        del data["links"]  # absent, not null, without a look-up (as the document always read)
    return Action(
        "dispute_pulled", dispute_target(event.provider, pid, dispute_id), reason, data
    ), view


# ---------------------------------------------------------------------------------------------
# apply


def apply_pulled(session: Session, actor: str, action: Action, reader: DisputeReader) -> None:
    """Write a pulled dispute through its webhook handler, and audit it."""
    pulled = decode(DisputePulled, action.data)
    pull = _Pulled(pulled.provider, pulled.scope, pulled.payload)
    event = pull.event(reader)
    links = PaymentLinks.from_dict(pulled.links)
    outcome = reader.record(session, event, links)
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
        actor=actor,
        action=AUDIT_PULLED,
        entity_type="dispute",
        entity_id=dispute.id,
        tenant_id=dispute.tenant_id,
        before={"status": pulled.status_before} if pulled.status_before else None,
        after={"status": dispute.status, "changes": pulled.changes, "detail": outcome.detail},
    )
