"""`faithflow invoices reconcile`: compare the providers' invoices with ours, fix what is safe to
fix, and report the rest (docs/invoices.md is the runbook).

What is read at the provider (read-only, through the shared retry policy, page by page):

- Stripe: `GET /v1/invoices?created[gte]=…` (every platform invoice created in the window) and
  `GET /v1/subscriptions?status=all` (each subscription's state).
- Paystack: `GET /transaction?from=…&to=…` — a subscription charge is a transaction with a plan
  (one-off payments churches take through their subaccounts carry none and are not ours to
  reconcile); `success` is a paid invoice, `failed` an unpaid one, anything else (abandoned,
  ongoing) no invoice at all. It maps to our invoice through its reference (the
  `paystackReference` the invoice webhooks record, or the provider_invoice_id of an invoice
  this job imported). And `GET /subscription` for each subscription's state. Paystack
  documents no list of subscription invoices (`INV_…` codes reach us only by webhook), so an
  open Paystack invoice with no reference yet is not checked for `missing_at_provider`.

The window is the last 35 days before `now` (`--since` moves its start). Provider objects are
read from two days before it, so an invoice recorded here just after the start is still found
at the provider; only those created inside the window are imported.

Findings, one action kind each; the first three are applied, the rest are report-only:

- `relink_customer`: a provider customer, in canonical form, is a subscription's
  provider_customer_id but has no provider_accounts row: the row is added (webhooks then
  resolve that customer's events directly).
- `missing_locally`: a provider invoice we do not have, whose customer or subscription maps to
  a tenant: imported; a paid one settles its subscription (the webhooks' rule).
- `status_mismatch`: paid at the provider, open (or draft) here: we take the paid status, then
  settle the subscription with the webhooks' rule (`effects.settle_if_paid`, audited).
- `status_conflict`: any other status disagreement (paid here but not there, void there…).
- `amount_mismatch`: amount or currency differ.
- `missing_at_provider`: ours, created in the window, unknown to the provider.
- `subscription_state_drift`: the provider's subscription state disagrees with ours (it says
  canceled; it is active while ours is past due…), unless this run's fixes settle it.
- `unmapped_customer`: provider invoices whose customer maps to no tenant (or to several).
- `provider_skipped`: a provider whose secret key is not set was not reconciled.

Which charge paid which invoice (`billing.reconcile_allocation` holds the rules):

- `reopen_invoice` (applied): a paid invoice whose paying charge is another invoice's (two
  paid invoices name one charge; or Paystack shows it unpaid and lists no successful charge
  for it; or it names no charge and the only matching one paid another invoice). It is
  reopened (open, nothing paid, the foreign reference dropped and kept under
  `metadata.reconcileReopened`), never the owner. It reactivates and suspends nobody: a
  subscription this payment settled goes past due from now only once the invoice's due date
  has passed (its dunning case then opens, so the grace period runs from now, not from the
  old due date); dunning and `subs automate` act on the reopened invoice on their next run.
- `advance_period` (applied): a Paystack subscription whose current_period_end is NULL or
  behind the period_end of its newest paid invoice: moved forward to that invoice's period.
- `charge_owner_unclear`: several paid invoices name one charge and no rule picks its owner.

These run for each provider reconciled, after its lists were read: a provider that cannot be
read fails the run before anything is applied (the rule for every finding here), and a
provider without a key is skipped whole.

apply: each fix claims its row with a condition (`UPDATE invoices SET status = 'paid' … WHERE
id = :id AND status = :seen`; `INSERT … ON CONFLICT DO NOTHING` for imports and links) and
checks the rowcount, so a rerun, or a webhook that got there first, finds nothing to do
(`stale`); every change is audited in the same transaction. A second run plans only findings.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, cast

from sqlalchemy import CursorResult, Table, func, or_, select, update
from sqlalchemy.orm import Session

from faithflow_ops import audit
from faithflow_ops.billing import lifecycle as fx
from faithflow_ops.billing import reconcile_allocation as alloc
from faithflow_ops.db import upsert_insert, utcnow
from faithflow_ops.errors import ConfigError
from faithflow_ops.jobs.base import Action, Job, JobContext, StaleAction
from faithflow_ops.jobs.options import InvoicesReconcileOptions
from faithflow_ops.models import Invoice, ProviderAccount, Subscription, SubscriptionPlan
from faithflow_ops.models.billing import PROVIDERS

if TYPE_CHECKING:
    from faithflow_ops.config import Settings

INVOICES = cast(Table, Invoice.__table__)
SUBS = cast(Table, Subscription.__table__)
ACCOUNTS = cast(Table, ProviderAccount.__table__)
PLANS = cast(Table, SubscriptionPlan.__table__)

WINDOW = dt.timedelta(days=35)
PAGE_SIZE = 100  # objects per list request (Stripe's maximum)
SLACK = dt.timedelta(days=2)  # provider objects are read from this long before the window
OPEN = fx.OPEN_INVOICE_STATUSES
SOURCE = "job:invoices_reconcile"
AUDIT_IMPORT = "invoice.reconcile_import"
AUDIT_PAID = "invoice.reconcile_paid"
AUDIT_SETTLE = "subscription.reconcile_settle"
AUDIT_LINK = "provider_account.reconcile_link"
AUDIT_REOPEN = "invoice.reconcile_reopen"
AUDIT_PAST_DUE = "subscription.reconcile_past_due"
AUDIT_PERIOD = "subscription.reconcile_period"
KEY_VARIABLES = {"stripe": "STRIPE_SECRET_KEY", "paystack": "PAYSTACK_SECRET_KEY"}

SAFE_KINDS = (
    "relink_customer",
    "missing_locally",
    "status_mismatch",
    "reopen_invoice",
    "advance_period",
)
REPORT_KINDS = (
    "charge_owner_unclear",
    "status_conflict",
    "amount_mismatch",
    "missing_at_provider",
    "subscription_state_drift",
    "unmapped_customer",
    "provider_skipped",
)
KINDS = SAFE_KINDS + REPORT_KINDS


# ---------------------------------------------------------------------------------------------
# Provider objects in our terms


@dataclass(frozen=True)
class Remote:
    """One provider invoice (Stripe) or subscription charge (Paystack), in our columns."""

    provider: str
    ref: str  # in_… (Stripe) or the transaction reference (Paystack)
    customer: str | None  # canonical form, or None when missing or malformed
    raw_customer: str | None
    subscription_ref: str | None  # sub_… (Stripe); Paystack transactions name none
    plan_code: str | None  # PLN_… (Paystack)
    status: str  # one of INVOICE_STATUSES
    amount_due: int
    amount_paid: int
    currency: str
    created: dt.datetime
    period_start: dt.datetime | None = None
    period_end: dt.datetime | None = None
    due_at: dt.datetime | None = None
    paid_at: dt.datetime | None = None
    hosted_url: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class RemoteSub:
    ref: str
    raw_status: str
    status: str | None  # ours, None when it does not map (incomplete…)


@dataclass
class Fetched:
    invoices: list[Remote]
    subscriptions: dict[str, RemoteSub]
    signals: alloc.PaystackSignals = field(default_factory=alloc.PaystackSignals)


def _text(value: object) -> str | None:
    return value if isinstance(value, str) and value.strip() else None


def _id(value: object) -> str | None:
    if isinstance(value, dict):
        value = value.get("id")
    return _text(value)


def _iso(value: dt.datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def _time(value: str | None) -> dt.datetime | None:
    return dt.datetime.fromisoformat(value) if value else None


def stripe_invoice(obj: Mapping[str, Any]) -> Remote | None:
    from faithflow_ops.webhooks.events import canonical_customer

    ref = _id(obj)
    created = fx.timestamp(obj.get("created"))
    if ref is None or created is None:
        return None
    raw_customer = _id(obj.get("customer"))
    sub_ref = _id(obj.get("subscription"))
    parent = obj.get("parent")
    details = parent.get("subscription_details") if isinstance(parent, dict) else None
    if sub_ref is None and isinstance(details, dict):
        sub_ref = _id(details.get("subscription"))
    status = str(obj.get("status") or "open")
    if status not in ("draft", "open", "paid", "uncollectible", "void"):
        status = "open"
    transitions = obj.get("status_transitions")
    paid_at = fx.timestamp(transitions.get("paid_at")) if isinstance(transitions, dict) else None
    meta: dict[str, Any] = {}
    for key, name in (("stripeChargeId", "charge"), ("stripePaymentIntentId", "payment_intent")):
        if _id(obj.get(name)):
            meta[key] = _id(obj.get(name))
    return Remote(
        provider="stripe",
        ref=ref,
        customer=canonical_customer("stripe", raw_customer),
        raw_customer=raw_customer,
        subscription_ref=sub_ref,
        plan_code=None,
        status=status,
        amount_due=fx.minor(obj.get("amount_due")),
        amount_paid=fx.minor(obj.get("amount_paid")),
        currency=fx.currency(obj.get("currency")),
        created=created,
        period_start=fx.timestamp(obj.get("period_start")),
        period_end=fx.timestamp(obj.get("period_end")),
        due_at=fx.timestamp(obj.get("due_date")),
        paid_at=paid_at if status == "paid" else None,
        hosted_url=_text(obj.get("hosted_invoice_url")),
        metadata=meta,
    )


def _paystack_plan_code(obj: Mapping[str, Any]) -> str | None:
    for name in ("plan", "plan_object"):
        value = obj.get(name)
        if isinstance(value, dict):
            value = value.get("plan_code")
        if _text(value):
            return cast(str, value).strip()
    return None


def paystack_transaction(obj: Mapping[str, Any]) -> Remote | None:
    """A subscription charge as an invoice; None for anything else."""
    from faithflow_ops.webhooks.events import canonical_customer, parse_time

    ref = _text(obj.get("reference"))
    plan_code = _paystack_plan_code(obj)
    status = {"success": "paid", "failed": "open"}.get(str(obj.get("status")))
    created = parse_time(obj.get("createdAt") or obj.get("created_at"))
    if ref is None or plan_code is None or status is None or created is None:
        return None
    customer = obj.get("customer")
    raw_customer = _text(customer.get("customer_code")) if isinstance(customer, dict) else None
    amount = fx.minor(obj.get("amount"))
    paid_at = parse_time(obj.get("paid_at") or obj.get("paidAt")) if status == "paid" else None
    return Remote(
        provider="paystack",
        ref=ref,
        customer=canonical_customer("paystack", raw_customer),
        raw_customer=raw_customer,
        subscription_ref=None,
        plan_code=plan_code,
        status=status,
        amount_due=amount,
        amount_paid=amount if status == "paid" else 0,
        currency=fx.currency(obj.get("currency"), "NGN"),
        created=created,
        paid_at=paid_at or (created if status == "paid" else None),
        metadata={"paystackReference": ref},
    )


def fetch(provider: str, settings: Settings, start: dt.datetime, end: dt.datetime) -> Fetched:
    """Every provider invoice created in [start, end] and every provider subscription."""
    if provider == "stripe":
        from faithflow_ops.providers.stripe import StripeAPI
        from faithflow_ops.webhooks.stripe import _STATUS as STRIPE_STATUS

        with StripeAPI(settings) as stripe:
            found = [
                stripe_invoice(o)
                for o in stripe.list_invoices(created_gte=start, page_size=PAGE_SIZE)
            ]
            subs = {
                ref: RemoteSub(ref, str(o.get("status")), STRIPE_STATUS.get(str(o.get("status"))))
                for o in stripe.list_subscriptions(page_size=PAGE_SIZE)
                if (ref := _id(o))
            }
        invoices = [r for r in found if r is not None and r.created <= end]
        return Fetched(invoices, subs)
    from faithflow_ops.providers.paystack import PaystackAPI
    from faithflow_ops.webhooks.paystack import _SUB_STATUS as PAYSTACK_STATUS

    with PaystackAPI(settings) as paystack:
        raw = list(paystack.list_transactions(start=start, end=end, page_size=PAGE_SIZE))
        raw_subs = list(paystack.list_subscriptions(page_size=PAGE_SIZE))
    pairs = [(o, paystack_transaction(o)) for o in raw]
    subs = {
        ref: RemoteSub(ref, str(o.get("status")), PAYSTACK_STATUS.get(str(o.get("status"))))
        for o in raw_subs
        if (ref := _text(o.get("subscription_code")))
    }
    # Charges without a plan are no invoice of ours, but a dunning retry among them may have
    # paid one (`reopen_invoice` then leaves it alone).
    signals = alloc.paystack_signals(raw_subs, [o for o, r in pairs if r is None])
    return Fetched([r for _, r in pairs if r is not None], subs, signals)


# ---------------------------------------------------------------------------------------------
# The job


class InvoicesReconcile(Job):
    name = "invoices_reconcile"
    report_only = frozenset(REPORT_KINDS)
    table_columns = ("kind", "target", "tenant", "reason")

    @classmethod
    def table_rows(cls, action: Action) -> list[tuple[Any, ...]]:
        return [(action.kind, action.target, action.data.get("tenant_id"), action.reason)]

    def check(self, ctx: JobContext) -> list[str]:
        """The same refusal from every door: a --provider whose key is missing, no provider
        configured at all, or a --since not before now (ConfigError, exit 2); a provider left
        out for want of its key is a warning (and a `provider_skipped` finding)."""
        self.window(ctx)
        _, skipped = self.selected(ctx)
        return [f"{KEY_VARIABLES[p]} is not set: {p} is skipped" for p in skipped]

    def selected(self, ctx: JobContext) -> tuple[list[str], list[str]]:
        """(providers to reconcile, providers skipped for want of a key)."""
        settings = ctx.settings
        wanted = self.options(ctx, InvoicesReconcileOptions).provider
        configured = {
            "stripe": bool(settings.stripe_secret_key),
            "paystack": bool(settings.paystack_secret_key),
        }
        if wanted is not None:
            if not configured[wanted]:
                raise ConfigError(
                    f"cannot reconcile {wanted}: {KEY_VARIABLES[wanted]} is not set; set it, "
                    "or leave out --provider to reconcile the configured providers only"
                )
            return [wanted], []
        chosen = [p for p in PROVIDERS if configured[p]]
        if not chosen:
            raise ConfigError(
                "no payment provider is configured: set STRIPE_SECRET_KEY and/or "
                "PAYSTACK_SECRET_KEY to reconcile invoices"
            )
        return chosen, [p for p in PROVIDERS if not configured[p]]

    def window(self, ctx: JobContext) -> dt.datetime:
        since = self.options(ctx, InvoicesReconcileOptions).since or ctx.now - WINDOW
        if since >= ctx.now:
            raise ConfigError(
                f"--since {since.isoformat()} is not before now ({ctx.now.isoformat()}); "
                "pick an earlier start"
            )
        return since

    def plan(self, session: Session, ctx: JobContext) -> Iterator[Action]:
        chosen, skipped = self.selected(ctx)
        since = self.window(ctx)
        actions: list[Action] = []
        for provider in skipped:
            variable = KEY_VARIABLES[provider]
            actions.append(
                Action(
                    "provider_skipped",
                    f"provider:{provider}",
                    f"{variable} is not set: {provider} was not reconciled",
                    {"provider": provider, "variable": variable},
                )
            )
        if ctx.progress is not None:
            ctx.progress.start(len(chosen))
        # Every provider is read and planned before the first action is yielded: applying
        # early actions cannot change what later findings see.
        for provider in chosen:
            fetched = fetch(provider, ctx.settings, since - SLACK, ctx.now)
            actions += _Planner(session, provider, fetched, since, ctx.now).actions()
            if ctx.progress is not None:
                ctx.progress.advance(1)
        yield from actions

    def apply(self, session: Session, ctx: JobContext, action: Action) -> None:
        handler = _APPLY.get(action.kind)
        if handler is None:
            raise ValueError(f"invoices reconcile cannot apply {action.kind!r}")
        handler(session, ctx, action.data)


JOB = InvoicesReconcile()


# ---------------------------------------------------------------------------------------------
# plan


@dataclass
class _Local:
    id: int
    tenant_id: int
    subscription_id: int | None
    ref: str | None
    status: str
    amount_due: int
    currency: str
    created_at: dt.datetime
    metadata: dict[str, Any]

    @property
    def reference(self) -> str | None:
        """The Paystack transaction reference this invoice is known by, if any."""
        found = _text(self.metadata.get("paystackReference"))
        if found:
            return found
        return self.ref if self.ref and not self.ref.startswith("INV_") else None


def _local(row: Sequence[Any]) -> _Local:
    meta = row[8] if isinstance(row[8], dict) else {}
    return _Local(row[0], row[1], row[2], row[3], row[4], row[5], row[6], row[7], meta)


@dataclass
class _Sub:
    id: int
    tenant_id: int
    plan_id: int
    status: str
    ref: str | None
    customer: str | None


class _Planner:
    """One provider's findings, from what the provider said and what we hold."""

    def __init__(
        self,
        session: Session,
        provider: str,
        fetched: Fetched,
        since: dt.datetime,
        now: dt.datetime,
    ) -> None:
        self.session, self.provider, self.fetched = session, provider, fetched
        self.since, self.now = since, now
        self.start = since - SLACK
        self._load()

    def _load(self) -> None:
        s, p = self.session, self.provider
        self.subs = [
            _Sub(*row)
            for row in s.execute(
                select(
                    SUBS.c.id,
                    SUBS.c.tenant_id,
                    SUBS.c.plan_id,
                    SUBS.c.status,
                    SUBS.c.provider_subscription_id,
                    SUBS.c.provider_customer_id,
                ).where(SUBS.c.provider == p)
            ).tuples()
        ]
        self.sub_by_ref = {sub.ref: sub for sub in self.subs if sub.ref}
        self.sub_by_id = {sub.id: sub for sub in self.subs}
        self.tenants_by_customer: dict[str, set[int]] = defaultdict(set)
        for sub in self.subs:
            if sub.customer:
                self.tenants_by_customer[sub.customer].add(sub.tenant_id)
        self.accounts = dict(
            s.execute(
                select(ACCOUNTS.c.external_id, ACCOUNTS.c.tenant_id).where(
                    ACCOUNTS.c.provider == p, ACCOUNTS.c.kind == "customer"
                )
            )
            .tuples()
            .all()
        )
        self.plan_codes = {
            plan_id: (meta or {}).get("paystackPlanCode") if isinstance(meta, dict) else None
            for plan_id, meta in s.execute(select(PLANS.c.id, PLANS.c["metadata"])).tuples()
        }
        refs = sorted({r.ref for r in self.fetched.invoices})
        self.columns = columns = (
            INVOICES.c.id,
            INVOICES.c.tenant_id,
            INVOICES.c.subscription_id,
            INVOICES.c.provider_invoice_id,
            INVOICES.c.status,
            INVOICES.c.amount_due_minor,
            INVOICES.c.currency,
            INVOICES.c.created_at,
            INVOICES.c["metadata"],
        )
        rows: dict[int, _Local] = {}
        wide = or_(INVOICES.c.created_at >= self.start, INVOICES.c.status.in_(OPEN))
        for row in s.execute(select(*columns).where(INVOICES.c.provider == p, wide)).tuples():
            rows[row[0]] = _local(row)
        # Older invoices a listed object names: by provider id, and (Paystack) by the charge
        # reference an invoice webhook recorded (a retry of an invoice from before the window).
        held = INVOICES.c["metadata"]["paystackReference"].as_string()

        def named(chunk: list[str]) -> Any:
            by_id = INVOICES.c.provider_invoice_id.in_(chunk)
            return or_(by_id, held.in_(chunk)) if p == "paystack" else by_id

        for i in range(0, len(refs), 500):
            chunk = refs[i : i + 500]
            query = select(*columns).where(INVOICES.c.provider == p, named(chunk))
            for row in s.execute(query).tuples():
                rows[row[0]] = _local(row)
        self.local = sorted(rows.values(), key=lambda inv: inv.id)
        self.local_by_ref: dict[str, _Local] = {}
        for inv in self.local:
            if inv.ref:
                self.local_by_ref[inv.ref] = inv
            if p == "paystack" and inv.reference:
                self.local_by_ref.setdefault(inv.reference, inv)

    # -- who is it about --

    def _tenant(self, remote: Remote) -> tuple[int | None, str, _Sub | None]:
        """(tenant, how it was found, the local subscription) for a provider invoice."""
        sub = self.sub_by_ref.get(remote.subscription_ref) if remote.subscription_ref else None
        customer = remote.customer
        if customer and customer in self.accounts:
            tenant = self.accounts[customer]
            return tenant, "account", sub or self._paystack_sub(tenant, remote)
        owners = self.tenants_by_customer.get(customer or "", set())
        if len(owners) == 1:
            tenant = next(iter(owners))
            return tenant, "subscription_customer", sub or self._paystack_sub(tenant, remote)
        if sub is not None:
            return sub.tenant_id, "subscription", sub
        return None, "ambiguous" if len(owners) > 1 else "none", None

    def _paystack_sub(self, tenant: int, remote: Remote) -> _Sub | None:
        """The tenant's Paystack subscription on the charge's plan (as the charge webhook picks
        it): this customer's first, else the newest."""
        if remote.plan_code is None:
            return None
        found = [
            sub
            for sub in self.subs
            if sub.tenant_id == tenant and self.plan_codes.get(sub.plan_id) == remote.plan_code
        ]
        found.sort(key=lambda sub: (sub.customer != remote.customer, -sub.id))
        return found[0] if found else None

    # -- findings --

    def actions(self) -> list[Action]:
        links: list[Action] = []
        fixes: list[Action] = []
        reports: list[Action] = []
        linked: set[str] = set()
        unmapped: dict[str, list[Remote]] = defaultdict(list)
        matched: set[int] = set()
        settling: dict[int, set[int]] = defaultdict(set)  # subscription → invoices paid now
        imports_paid: dict[int, int] = defaultdict(int)
        allocation, found = self._allocation()
        reopened = allocation.reopened
        matched |= reopened | allocation.grouped  # a shared charge is reported as such
        unreferenced = self._unreferenced_open()
        for remote in sorted(self.fetched.invoices, key=lambda r: (r.created, r.ref)):
            tenant, via, sub = self._tenant(remote)
            if via == "subscription_customer" and remote.customer not in linked:
                assert remote.customer is not None and tenant is not None
                linked.add(remote.customer)
                links.append(self._relink(remote, tenant))
            local = self.local_by_ref.get(remote.ref)
            if local is None and remote.status == "paid" and sub is not None:
                local = self._take_unreferenced(unreferenced, sub.id, remote)
            if local is not None:
                matched.add(local.id)
                if local.id in reopened:
                    continue  # paid by another's charge: `reopen_invoice` says so
                fixes_or_reports = self._compare(remote, local)
                for action in fixes_or_reports:
                    if action.kind == "status_mismatch" and local.subscription_id:
                        settling[local.subscription_id].add(local.id)
                    (fixes if action.kind in SAFE_KINDS else reports).append(action)
                continue
            if remote.created < self.since or remote.status == "draft":
                continue  # read for the slack only, or not an invoice yet
            if tenant is None:
                unmapped[remote.customer or remote.raw_customer or "?"].append(remote)
                continue
            fixes.append(self._import(remote, tenant, sub))
            if remote.status == "paid" and sub is not None:
                imports_paid[sub.id] += 1
        for finding in found:
            action = Action(finding.kind, finding.target, finding.reason, finding.data)
            (fixes if action.kind in SAFE_KINDS else reports).append(action)
        reports += self._missing_at_provider(matched)
        reports += self._unmapped(unmapped)
        reports += self._drift(settling, imports_paid)
        return links + fixes + reports

    def _allocation(self) -> tuple[alloc.Allocation, list[alloc.Finding]]:
        """Which invoice each charge paid; a charge several invoices name maps to its owner
        from here on (the others are reopened, not compared)."""

        def sub_of(charge: alloc.Charge) -> int | None:
            sub = self._tenant(cast(Remote, charge))[2]
            return sub.id if sub is not None else None

        allocation = alloc.Allocation(
            self.session,
            self.provider,
            self.fetched.invoices,
            since=self.since,
            now=self.now,
            pulled=True,
            sub_of=sub_of,
            signals=self.fetched.signals,
        )
        found = allocation.findings()
        owners = set(allocation.owner_of.values())
        missing = sorted(owners - {inv.id for inv in self.local})
        if missing:
            for row in self.session.execute(
                select(*self.columns).where(INVOICES.c.id.in_(missing))
            ).tuples():
                self.local.append(_local(row))
        by_id = {inv.id: inv for inv in self.local}
        for ref, owner in allocation.owner_of.items():
            self.local_by_ref[ref] = by_id[owner]
        return allocation, found

    def _relink(self, remote: Remote, tenant: int) -> Action:
        return Action(
            "relink_customer",
            f"customer:{self.provider}:{remote.customer}",
            f"{remote.customer} is the customer of a subscription of tenant {tenant} but has "
            "no provider_accounts row; link it",
            {
                "provider": self.provider,
                "customer": remote.customer,
                "raw_customer": remote.raw_customer,
                "tenant_id": tenant,
            },
        )

    def _unreferenced_open(self) -> dict[int, list[_Local]]:
        """Open Paystack invoices with no transaction reference yet, per subscription."""
        out: dict[int, list[_Local]] = defaultdict(list)
        if self.provider != "paystack":
            return out
        for inv in self.local:
            if inv.status in OPEN and inv.reference is None and inv.subscription_id:
                out[inv.subscription_id].append(inv)
        return out

    @staticmethod
    def _take_unreferenced(
        unreferenced: dict[int, list[_Local]], sub_id: int, remote: Remote
    ) -> _Local | None:
        """The oldest open, unreferenced invoice of the subscription with the charge's amount:
        the one the charge paid (the charge webhook pays them the same way)."""
        for inv in unreferenced.get(sub_id, []):
            if inv.amount_due == remote.amount_due and inv.currency == remote.currency:
                unreferenced[sub_id].remove(inv)
                return inv
        return None

    def _compare(self, remote: Remote, local: _Local) -> list[Action]:
        target = f"invoice:{local.id}"
        base = {
            "invoice_id": local.id,
            "tenant_id": local.tenant_id,
            "subscription_id": local.subscription_id,
            "provider": self.provider,
            "provider_ref": remote.ref,
        }
        out: list[Action] = []
        if remote.amount_due != local.amount_due or remote.currency != local.currency:
            out.append(
                Action(
                    "amount_mismatch",
                    target,
                    f"{self.provider} {remote.ref} is {remote.amount_due} {remote.currency}; "
                    f"ours is {local.amount_due} {local.currency}",
                    {
                        **base,
                        "provider_amount": remote.amount_due,
                        "provider_currency": remote.currency,
                        "local_amount": local.amount_due,
                        "local_currency": local.currency,
                    },
                )
            )
        if remote.status == local.status:
            return out
        data = {**base, "provider_status": remote.status, "local_status": local.status}
        if remote.status == "paid" and local.status in OPEN:
            data.update(
                seen_status=local.status,
                amount_paid=remote.amount_paid or remote.amount_due,
                paid_at=_iso(remote.paid_at),
                reference=remote.ref if local.reference is None else None,
            )
            out.append(
                Action(
                    "status_mismatch",
                    target,
                    f"paid at {self.provider} ({remote.ref}), {local.status} here: take paid",
                    data,
                )
            )
        else:
            out.append(
                Action(
                    "status_conflict",
                    target,
                    f"{remote.status} at {self.provider} ({remote.ref}), {local.status} here; "
                    "no safe rule picks one: check both sides",
                    data,
                )
            )
        return out

    def _import(self, remote: Remote, tenant: int, sub: _Sub | None) -> Action:
        meta = {**remote.metadata, "providerCreatedAt": remote.created.isoformat()}
        return Action(
            "missing_locally",
            f"{self.provider}:{remote.ref}",
            f"{self.provider} invoice {remote.ref} ({remote.status}, {remote.amount_due} "
            f"{remote.currency}) is not recorded here: import it for tenant {tenant}",
            {
                "provider": self.provider,
                "provider_ref": remote.ref,
                "tenant_id": tenant,
                "subscription_id": sub.id if sub else None,
                "customer": remote.customer,
                "status": remote.status,
                "amount_due": remote.amount_due,
                "amount_paid": remote.amount_paid,
                "currency": remote.currency,
                "created": remote.created.isoformat(),
                "period_start": _iso(remote.period_start),
                "period_end": _iso(remote.period_end),
                "due_at": _iso(remote.due_at),
                "paid_at": _iso(remote.paid_at),
                "hosted_invoice_url": remote.hosted_url,
                "metadata": meta,
            },
        )

    def _missing_at_provider(self, matched: set[int]) -> list[Action]:
        out = []
        for inv in self.local:
            if inv.id in matched or not (self.since <= inv.created_at <= self.now):
                continue
            if self.provider == "paystack":
                if inv.reference is None:
                    continue  # an INV_ invoice not charged yet: Paystack lists no such thing
                ref = inv.reference
            elif inv.ref is None:
                continue
            else:
                ref = inv.ref
            seen = _time(_text(inv.metadata.get("providerCreatedAt")))
            if seen is not None and seen < self.start:
                continue  # created at the provider before the window: not listed, not missing
            out.append(
                Action(
                    "missing_at_provider",
                    f"invoice:{inv.id}",
                    f"{ref} ({inv.status}, {inv.amount_due} {inv.currency}) is recorded here "
                    f"but {self.provider} does not list it",
                    {
                        "invoice_id": inv.id,
                        "tenant_id": inv.tenant_id,
                        "provider": self.provider,
                        "provider_ref": ref,
                        "status": inv.status,
                    },
                )
            )
        return out

    def _unmapped(self, unmapped: Mapping[str, list[Remote]]) -> list[Action]:
        out = []
        for customer, remotes in sorted(unmapped.items()):
            owners = sorted(self.tenants_by_customer.get(customer, set()))
            why = (
                f"is the customer of subscriptions of tenants {owners}"
                if len(owners) > 1
                else "maps to no tenant"
            )
            refs = [r.ref for r in remotes]
            out.append(
                Action(
                    "unmapped_customer",
                    f"customer:{self.provider}:{customer}",
                    f"{self.provider} customer {customer} {why}; {len(refs)} invoice(s) not "
                    f"imported ({', '.join(refs[:5])}{'…' if len(refs) > 5 else ''}); "
                    f"`faithflow tenants link SLUG {customer}` links it",
                    {
                        "provider": self.provider,
                        "customer": customer,
                        "tenants": owners,
                        "provider_refs": refs,
                    },
                )
            )
        return out

    def _drift(
        self, settling: Mapping[int, set[int]], imports_paid: Mapping[int, int]
    ) -> list[Action]:
        subs = [sub for sub in self.subs if sub.ref and sub.ref in self.fetched.subscriptions]
        candidates = [sub.id for sub in subs if sub.status in fx.SETTLEABLE_STATUSES]
        open_ids: dict[int, set[int]] = defaultdict(set)
        for i in range(0, len(candidates), 500):
            for sub_id, inv_id in self.session.execute(
                select(INVOICES.c.subscription_id, INVOICES.c.id).where(
                    INVOICES.c.subscription_id.in_(candidates[i : i + 500]),
                    INVOICES.c.status.in_(OPEN),
                )
            ).tuples():
                open_ids[sub_id].add(inv_id)
        out = []
        for sub in subs:
            remote = self.fetched.subscriptions[cast(str, sub.ref)]
            theirs = remote.status
            if theirs is None or _compatible(theirs, sub.status):
                continue
            fixed = settling.get(sub.id, set())
            settles = (
                sub.status in fx.SETTLEABLE_STATUSES
                and (fixed or imports_paid.get(sub.id))
                and not (open_ids.get(sub.id, set()) - fixed)
            )
            if theirs in ("active", "trialing") and settles:
                continue  # this run's status fixes settle it
            open_left = sorted(open_ids.get(sub.id, set()) - fixed)
            detail = f"; open invoices here: {open_left}" if open_left else ""
            out.append(
                Action(
                    "subscription_state_drift",
                    f"subscription:{sub.id}",
                    f"{self.provider} says {sub.ref} is {remote.raw_status} ({theirs}); "
                    f"ours is {sub.status}{detail}",
                    {
                        "subscription_id": sub.id,
                        "tenant_id": sub.tenant_id,
                        "provider": self.provider,
                        "provider_ref": sub.ref,
                        "provider_status": remote.raw_status,
                        "expected_status": theirs,
                        "local_status": sub.status,
                        "open_invoice_ids": open_left,
                    },
                )
            )
        return out


def _compatible(theirs: str, ours: str) -> bool:
    """Whether our subscription status agrees with the provider's (mapped to ours)."""
    if theirs in ("active", "trialing"):
        return ours in ("active", "trialing")
    if theirs in ("past_due", "unpaid"):
        return ours in ("past_due", "unpaid", "suspended")
    return theirs == ours


# ---------------------------------------------------------------------------------------------
# apply


def _rowcount(result: Any) -> int:
    return cast(CursorResult[Any], result).rowcount


def _settle(session: Session, ctx: JobContext, sub_id: int | None, at: dt.datetime) -> list[str]:
    """The webhooks' rule: a subscription with no open invoice left is active again."""
    if sub_id is None:
        return []
    sub = session.get(Subscription, sub_id, with_for_update=True, populate_existing=True)
    if sub is None:
        return []
    return fx.settle_if_paid(session, sub, at, ctx.actor, audit_action=AUDIT_SETTLE)


def _stamp_paid(session: Session, invoice: Invoice, provider: str, at: dt.datetime) -> None:
    """Record the paid state's time and rank as the webhooks would, so an older event that
    arrives late cannot reopen the invoice."""
    if provider == "stripe":
        from faithflow_ops.webhooks.stripe import RANKS as STRIPE_RANKS

        rank = STRIPE_RANKS["invoice.paid"]
    else:
        from faithflow_ops.webhooks.paystack import RANKS as PAYSTACK_RANKS

        rank = PAYSTACK_RANKS["invoice.update"]
    if fx.is_current(invoice, at, rank):
        fx.stamp(invoice, at, rank)


def _apply_link(session: Session, ctx: JobContext, data: Mapping[str, Any]) -> None:
    dialect = session.get_bind().dialect.name
    inserted = session.execute(
        upsert_insert(dialect, ACCOUNTS)
        .values(
            tenant_id=data["tenant_id"],
            provider=data["provider"],
            kind="customer",
            external_id=data["customer"],
            source=SOURCE,
            created_at=utcnow(),
            updated_at=utcnow(),
        )
        .on_conflict_do_nothing(index_elements=["provider", "kind", "external_id"])
        .returning(ACCOUNTS.c.id)
    ).scalar()
    if inserted is None:
        owner = session.scalar(
            select(ACCOUNTS.c.tenant_id).where(
                ACCOUNTS.c.provider == data["provider"],
                ACCOUNTS.c.kind == "customer",
                ACCOUNTS.c.external_id == data["customer"],
            )
        )
        raise StaleAction(f"{data['customer']} is already linked (to tenant {owner})")
    audit.record(
        session,
        actor=ctx.actor,
        action=AUDIT_LINK,
        entity_type="provider_account",
        entity_id=inserted,
        tenant_id=data["tenant_id"],
        before=None,
        after={"provider": data["provider"], "kind": "customer", "external_id": data["customer"]},
    )


def _apply_import(session: Session, ctx: JobContext, data: Mapping[str, Any]) -> None:
    provider, ref = data["provider"], data["provider_ref"]
    if provider == "paystack":
        holder = session.scalar(
            select(INVOICES.c.id).where(
                INVOICES.c.provider == "paystack",
                INVOICES.c["metadata"]["paystackReference"].as_string() == ref,
            )
        )
        if holder is not None:
            raise StaleAction(f"invoice {holder} already records {ref}")
    now = utcnow()
    values = {
        "tenant_id": data["tenant_id"],
        "subscription_id": data["subscription_id"],
        "provider": provider,
        "provider_invoice_id": ref,
        "status": data["status"],
        "amount_due_minor": data["amount_due"],
        "amount_paid_minor": data["amount_paid"],
        "currency": data["currency"],
        "period_start": _time(data["period_start"]),
        "period_end": _time(data["period_end"]),
        "due_at": _time(data["due_at"]),
        "paid_at": _time(data["paid_at"]),
        "hosted_invoice_url": (data["hosted_invoice_url"] or None)
        and data["hosted_invoice_url"][:1000],
        "metadata": data["metadata"],
        "created_at": now,
        "updated_at": now,
    }
    dialect = session.get_bind().dialect.name
    invoice_id = session.execute(
        upsert_insert(dialect, INVOICES)
        .values(**values)
        .on_conflict_do_nothing(index_elements=["provider", "provider_invoice_id"])
        .returning(INVOICES.c.id)
    ).scalar()
    if invoice_id is None:
        raise StaleAction(
            f"{provider} invoice {ref} is already recorded (a webhook got there first)"
        )
    after = {k: v for k, v in values.items() if k not in ("created_at", "updated_at")}
    audit.record(
        session,
        actor=ctx.actor,
        action=AUDIT_IMPORT,
        entity_type="invoice",
        entity_id=invoice_id,
        tenant_id=data["tenant_id"],
        before=None,
        after=_jsonable(after),
    )
    if data["status"] == "paid":
        _settle(session, ctx, data["subscription_id"], _time(data["paid_at"]) or ctx.now)


def _apply_paid(session: Session, ctx: JobContext, data: Mapping[str, Any]) -> None:
    invoice_id, seen = data["invoice_id"], data["seen_status"]
    paid_at = _time(data["paid_at"]) or ctx.now
    claimed = session.execute(
        update(INVOICES)
        .where(INVOICES.c.id == invoice_id, INVOICES.c.status == seen)
        .values(
            status="paid",
            amount_paid_minor=data["amount_paid"],
            paid_at=func.coalesce(INVOICES.c.paid_at, paid_at),
            updated_at=utcnow(),
        )
    )
    if _rowcount(claimed) != 1:
        current = session.scalar(select(INVOICES.c.status).where(INVOICES.c.id == invoice_id))
        if current is None:
            raise StaleAction(f"invoice {invoice_id} no longer exists")
        raise StaleAction(f"invoice {invoice_id} is {current} now, not {seen}: nothing to do")
    invoice = session.get(Invoice, invoice_id, populate_existing=True)
    assert invoice is not None
    if data.get("reference"):
        invoice.metadata_ = {**(invoice.metadata_ or {}), "paystackReference": data["reference"]}
    _stamp_paid(session, invoice, data["provider"], paid_at)
    session.flush()
    audit.record(
        session,
        actor=ctx.actor,
        action=AUDIT_PAID,
        entity_type="invoice",
        entity_id=invoice_id,
        tenant_id=invoice.tenant_id,
        before={"status": seen},
        after={
            "status": "paid",
            "amount_paid_minor": data["amount_paid"],
            "provider_ref": data["provider_ref"],
        },
    )
    _settle(session, ctx, invoice.subscription_id, paid_at)


def _meta_is(key: str, value: str | None) -> Any:
    member = INVOICES.c["metadata"][key].as_string()
    return member.is_(None) if value is None else member == value


def _apply_reopen(session: Session, ctx: JobContext, data: Mapping[str, Any]) -> None:
    """Reopen an invoice paid by a charge that is not its own: only while it is still paid
    with the references the plan saw, and (shared charge) while its owner still holds it."""
    invoice_id = data["invoice_id"]
    match: dict[str, str | None] = dict(data.get("match") or {})
    if data["cause"] == "no_reference":
        match = dict.fromkeys(alloc.PAYING_KEYS[data["provider"]])
    for owner in data.get("owner_invoice_ids") or []:
        holds = [INVOICES.c.id == owner, INVOICES.c.status == "paid"]
        if data["cause"] == "shared_charge":
            holds += [_meta_is(key, value) for key, value in match.items()]
        if session.scalar(select(INVOICES.c.id).where(*holds)) is None:
            raise StaleAction(
                f"invoice {owner} no longer holds the charge as paid: invoice {invoice_id} is "
                "left as it is; run the reconcile again"
            )
    claimed = session.execute(
        update(INVOICES)
        .where(
            INVOICES.c.id == invoice_id,
            INVOICES.c.status == "paid",
            *(_meta_is(key, value) for key, value in match.items()),
        )
        .values(status="open", amount_paid_minor=0, paid_at=None, updated_at=utcnow())
    )
    if _rowcount(claimed) != 1:
        current = session.scalar(select(INVOICES.c.status).where(INVOICES.c.id == invoice_id))
        if current is None:
            raise StaleAction(f"invoice {invoice_id} no longer exists")
        raise StaleAction(
            f"invoice {invoice_id} is {current} now, or names another charge: nothing to do"
        )
    invoice = session.get(Invoice, invoice_id, populate_existing=True)
    assert invoice is not None
    meta = dict(invoice.metadata_ or {})
    dropped = {k: v for k, v in (data.get("drop") or {}).items() if meta.get(k) == v}
    for key in dropped:
        meta.pop(key)
    note = {
        "at": ctx.now.isoformat(),
        "cause": data["cause"],
        "reference": data.get("reference"),
        "dropped": dropped,
        "ownerInvoiceIds": data.get("owner_invoice_ids") or [],
        "amountPaid": data.get("amount_paid"),
        "paidAt": data.get("paid_at"),
    }
    meta[alloc.NOTE_KEY] = [*(meta.get(alloc.NOTE_KEY) or []), note]
    invoice.metadata_ = meta
    session.flush()
    audit.record(
        session,
        actor=ctx.actor,
        action=AUDIT_REOPEN,
        entity_type="invoice",
        entity_id=invoice_id,
        tenant_id=invoice.tenant_id,
        before={
            "status": "paid",
            "amount_paid_minor": data.get("amount_paid"),
            "paid_at": data.get("paid_at"),
            **dropped,
        },
        after={"status": "open", "amount_paid_minor": 0, "paid_at": None, "note": note},
    )
    if data.get("mark_past_due") and invoice.subscription_id is not None:
        _past_due(session, ctx, invoice.subscription_id, _time(data.get("due")))


def _past_due(session: Session, ctx: JobContext, sub_id: int, due: dt.datetime | None) -> None:
    """A subscription the wrong payment settled owes the reopened invoice again: past due from
    now (so the dunning grace runs from today), if it is still active and the invoice is due."""
    sub = session.get(Subscription, sub_id, with_for_update=True, populate_existing=True)
    if sub is None or sub.status not in alloc.SETTLED or due is None or due > ctx.now:
        return
    fx.set_subscription_status(
        session, sub, "past_due", ctx.now, ctx.actor, audit_action=AUDIT_PAST_DUE
    )


def _apply_period(session: Session, ctx: JobContext, data: Mapping[str, Any]) -> None:
    """Move a subscription's period forward to its newest paid invoice's (never back)."""
    sub_id, invoice_id = data["subscription_id"], data["invoice_id"]
    start, end = _time(data["period_start"]), _time(data["period_end"])
    assert end is not None
    still_paid = (
        select(INVOICES.c.id)
        .where(
            INVOICES.c.id == invoice_id,
            INVOICES.c.status == "paid",
            INVOICES.c.period_end == end,
        )
        .exists()
    )
    claimed = session.execute(
        update(SUBS)
        .where(
            SUBS.c.id == sub_id,
            or_(SUBS.c.current_period_end.is_(None), SUBS.c.current_period_end < end),
            still_paid,
        )
        .values(
            current_period_end=end,
            current_period_start=start if start is not None else SUBS.c.current_period_start,
            updated_at=utcnow(),
        )
    )
    if _rowcount(claimed) != 1:
        raise StaleAction(
            f"subscription {sub_id}'s period already reaches {end.isoformat()}, or invoice "
            f"{invoice_id} is no longer paid for it: nothing to do"
        )
    audit.record(
        session,
        actor=ctx.actor,
        action=AUDIT_PERIOD,
        entity_type="subscription",
        entity_id=sub_id,
        tenant_id=data["tenant_id"],
        before={
            "current_period_start": data.get("current_period_start"),
            "current_period_end": data.get("current_period_end"),
        },
        after={
            "current_period_start": data["period_start"] or data.get("current_period_start"),
            "current_period_end": data["period_end"],
            "invoice_id": invoice_id,
        },
    )


def _jsonable(doc: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v.isoformat() if isinstance(v, dt.datetime) else v for k, v in doc.items()}


_APPLY = {
    "relink_customer": _apply_link,
    "missing_locally": _apply_import,
    "status_mismatch": _apply_paid,
    "reopen_invoice": _apply_reopen,
    "advance_period": _apply_period,
}
