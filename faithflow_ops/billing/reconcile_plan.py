"""What `faithflow invoices reconcile` finds: the rules comparing what a provider listed
(billing/reconcile_remote.py) with what we hold, as actions (applied by
billing/reconcile_apply.py; the job, jobs/invoices_reconcile.py, is the glue; the runbook is
docs/invoices.md).

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
  settle the subscription with the webhooks' rule (`lifecycle.settle_if_paid`, audited).
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
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, cast

from sqlalchemy import Table, or_, select
from sqlalchemy.orm import Session

from faithflow_ops.actions import Action, decode, encode
from faithflow_ops.billing import lifecycle as fx
from faithflow_ops.billing import reconcile_allocation as alloc
from faithflow_ops.billing.reconcile_remote import Fetched, Remote
from faithflow_ops.billing.reconcile_remote import text as _text
from faithflow_ops.clock import from_iso, iso
from faithflow_ops.models import Invoice, ProviderAccount, Subscription, SubscriptionPlan, Tenant
from faithflow_ops.money import format_money

INVOICES = cast(Table, Invoice.__table__)
SUBS = cast(Table, Subscription.__table__)
ACCOUNTS = cast(Table, ProviderAccount.__table__)
PLANS = cast(Table, SubscriptionPlan.__table__)
TENANTS = cast(Table, Tenant.__table__)

WINDOW = dt.timedelta(days=35)
SLACK = dt.timedelta(days=2)  # provider objects are read from this long before the window
OPEN = fx.OPEN_INVOICE_STATUSES

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


# --- action payloads (faithflow_ops.actions.encode/decode; fields in the JSON's key order) ----


@dataclass(frozen=True)
class RelinkCustomer:
    """`relink_customer`: add the provider_accounts row linking `customer` to the tenant."""

    provider: str
    customer: str  # canonical form
    raw_customer: str | None  # as the provider wrote it
    tenant_id: int


@dataclass(frozen=True)
class MissingLocally:
    """`missing_locally`: the provider invoice to import, in our columns."""

    provider: str
    provider_ref: str
    tenant_id: int
    subscription_id: int | None
    customer: str | None
    status: str
    amount_due: int
    amount_paid: int
    currency: str
    created: dt.datetime  # at the provider
    period_start: dt.datetime | None
    period_end: dt.datetime | None
    due_at: dt.datetime | None
    paid_at: dt.datetime | None
    hosted_invoice_url: str | None
    metadata: dict[str, Any]  # the paying references and `providerCreatedAt`


@dataclass(frozen=True)
class InvoiceFinding:
    """The fields every finding about one of our invoices starts with."""

    invoice_id: int
    tenant_id: int
    subscription_id: int | None
    provider: str
    provider_ref: str


@dataclass(frozen=True)
class AmountMismatch(InvoiceFinding):
    """`amount_mismatch` (report-only)."""

    provider_amount: int
    provider_currency: str
    local_amount: int
    local_currency: str


@dataclass(frozen=True)
class StatusConflict(InvoiceFinding):
    """`status_conflict` (report-only): statuses differ and no safe rule picks one."""

    provider_status: str
    local_status: str


@dataclass(frozen=True)
class StatusMismatch(StatusConflict):
    """`status_mismatch`: paid at the provider, `seen_status` (open or draft) here."""

    seen_status: str
    amount_paid: int
    paid_at: dt.datetime | None
    reference: str | None  # the Paystack reference to record, when ours has none


@dataclass(frozen=True)
class MissingAtProvider:
    """`missing_at_provider` (report-only)."""

    invoice_id: int
    tenant_id: int
    provider: str
    provider_ref: str
    status: str


@dataclass(frozen=True)
class UnmappedCustomer:
    """`unmapped_customer` (report-only): `tenants` are the several owners, if any."""

    provider: str
    customer: str
    tenants: tuple[int, ...]
    provider_refs: tuple[str, ...]


@dataclass(frozen=True)
class SubscriptionStateDrift:
    """`subscription_state_drift` (report-only)."""

    subscription_id: int
    tenant_id: int
    provider: str
    provider_ref: str
    provider_status: str
    expected_status: str  # the provider's, in ours
    local_status: str
    open_invoice_ids: tuple[int, ...]


@dataclass(frozen=True)
class ProviderSkipped:
    """`provider_skipped` (report-only): `variable` is the unset secret key."""

    provider: str
    variable: str


# The allocation rules (billing/reconcile_allocation.py) write these kinds as plain
# `Finding.data`; the planner types them here, keys and order unchanged.


@dataclass(frozen=True)
class ReopenInvoice:
    """`reopen_invoice`: reopen `invoice_id` while it is still paid with `match` (the
    metadata values the plan saw) and its owners still hold the charge; `drop` is the
    foreign reference taken off it."""

    invoice_id: int
    tenant_id: int
    subscription_id: int | None
    provider: str
    cause: str  # shared_charge, no_reference, …
    reference: str | None
    match: dict[str, Any]
    drop: dict[str, Any]
    owner_invoice_ids: tuple[int, ...]
    amount_paid: int | None
    paid_at: dt.datetime | None
    due: dt.datetime | None
    subscription_status: str | None
    settled_by_this_payment: bool
    mark_past_due: bool


@dataclass(frozen=True)
class AdvancePeriod:
    """`advance_period`: move the subscription's period to the paid invoice's (never back)."""

    subscription_id: int
    tenant_id: int
    provider: str
    invoice_id: int
    period_start: dt.datetime | None
    period_end: dt.datetime
    current_period_start: dt.datetime | None
    current_period_end: dt.datetime | None


@dataclass(frozen=True)
class ChargeOwnerUnclear:
    """`charge_owner_unclear` (report-only): paid invoices naming one charge, no owner."""

    provider: str
    key: str  # the metadata key that names the charge
    reference: str
    invoice_ids: tuple[int, ...]
    tenant_id: int


_FINDINGS: dict[str, type[Any]] = {
    "reopen_invoice": ReopenInvoice,
    "advance_period": AdvancePeriod,
    "charge_owner_unclear": ChargeOwnerUnclear,
}


def provider_skipped(provider: str, variable: str) -> Action:
    """A provider whose secret key (`variable`) is not set, reported as not reconciled."""
    return Action(
        "provider_skipped",
        f"provider:{provider}",
        f"{variable} is not set: {provider} was not reconciled",
        encode(ProviderSkipped(provider, variable)),
    )


def plan_provider(
    session: Session, provider: str, fetched: Fetched, since: dt.datetime, now: dt.datetime
) -> list[Action]:
    """One provider's findings: links first, then fixes, then reports."""
    return _Planner(session, provider, fetched, since, now).actions()


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
        # tenants are named by slug in reasons, tables and (beside tenant_id) the JSON
        self.slugs: dict[int, str] = dict(
            s.execute(select(TENANTS.c.id, TENANTS.c.slug)).tuples().all()
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
                links.append(self._relink(remote, remote.customer, tenant))
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
            payload = decode(_FINDINGS[finding.kind], finding.data)
            action = Action(finding.kind, finding.target, finding.reason, encode(payload))
            (fixes if action.kind in SAFE_KINDS else reports).append(action)
        reports += self._missing_at_provider(matched)
        reports += self._unmapped(unmapped)
        reports += self._drift(settling, imports_paid)
        out = links + fixes + reports
        for action in out:
            tenant_id = action.data.get("tenant_id")
            if isinstance(tenant_id, int):
                action.data["tenant"] = self._slug(tenant_id)
        return out

    def _slug(self, tenant_id: int) -> str:
        return self.slugs.get(tenant_id, f"#{tenant_id}")  # deleted meanwhile: its id

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

    def _relink(self, remote: Remote, customer: str, tenant: int) -> Action:
        return Action(
            "relink_customer",
            f"customer:{self.provider}:{customer}",
            f"{customer} is the customer of a subscription of tenant {self._slug(tenant)} "
            "but has no provider_accounts row; link it",
            encode(RelinkCustomer(self.provider, customer, remote.raw_customer, tenant)),
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

    def _money(self, minor: int, currency: str) -> str:
        """An amount as the provider counts it, as people read it (`USD 79.00`)."""
        return format_money(minor, currency, provider=self.provider)

    def _compare(self, remote: Remote, local: _Local) -> list[Action]:
        target = f"invoice:{local.id}"
        base = (local.id, local.tenant_id, local.subscription_id, self.provider, remote.ref)
        out: list[Action] = []
        if remote.amount_due != local.amount_due or remote.currency != local.currency:
            out.append(
                Action(
                    "amount_mismatch",
                    target,
                    f"{self.provider} {remote.ref} is "
                    f"{self._money(remote.amount_due, remote.currency)}; "
                    f"ours is {self._money(local.amount_due, local.currency)}",
                    encode(
                        AmountMismatch(
                            *base,
                            provider_amount=remote.amount_due,
                            provider_currency=remote.currency,
                            local_amount=local.amount_due,
                            local_currency=local.currency,
                        )
                    ),
                )
            )
        if remote.status == local.status:
            return out
        statuses = (remote.status, local.status)
        if remote.status == "paid" and local.status in OPEN:
            paid = StatusMismatch(
                *base,
                *statuses,
                seen_status=local.status,
                amount_paid=remote.amount_paid or remote.amount_due,
                paid_at=remote.paid_at,
                reference=remote.ref if local.reference is None else None,
            )
            out.append(
                Action(
                    "status_mismatch",
                    target,
                    f"paid at {self.provider} ({remote.ref}), {local.status} here: take paid",
                    encode(paid),
                )
            )
        else:
            out.append(
                Action(
                    "status_conflict",
                    target,
                    f"{remote.status} at {self.provider} ({remote.ref}), {local.status} here; "
                    "no safe rule picks one: check both sides",
                    encode(StatusConflict(*base, *statuses)),
                )
            )
        return out

    def _import(self, remote: Remote, tenant: int, sub: _Sub | None) -> Action:
        meta = {**remote.metadata, "providerCreatedAt": iso(remote.created)}
        return Action(
            "missing_locally",
            f"{self.provider}:{remote.ref}",
            f"{self.provider} invoice {remote.ref} ({remote.status}, "
            f"{self._money(remote.amount_due, remote.currency)}) is not recorded here: "
            f"import it for tenant {self._slug(tenant)}",
            encode(
                MissingLocally(
                    provider=self.provider,
                    provider_ref=remote.ref,
                    tenant_id=tenant,
                    subscription_id=sub.id if sub else None,
                    customer=remote.customer,
                    status=remote.status,
                    amount_due=remote.amount_due,
                    amount_paid=remote.amount_paid,
                    currency=remote.currency,
                    created=remote.created,
                    period_start=remote.period_start,
                    period_end=remote.period_end,
                    due_at=remote.due_at,
                    paid_at=remote.paid_at,
                    hosted_invoice_url=remote.hosted_url,
                    metadata=meta,
                )
            ),
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
            seen = from_iso(_text(inv.metadata.get("providerCreatedAt")))
            if seen is not None and seen < self.start:
                continue  # created at the provider before the window: not listed, not missing
            out.append(
                Action(
                    "missing_at_provider",
                    f"invoice:{inv.id}",
                    f"{ref} ({inv.status}, {self._money(inv.amount_due, inv.currency)}) is "
                    f"recorded here but {self.provider} does not list it",
                    encode(
                        MissingAtProvider(inv.id, inv.tenant_id, self.provider, ref, inv.status)
                    ),
                )
            )
        return out

    def _unmapped(self, unmapped: Mapping[str, list[Remote]]) -> list[Action]:
        out = []
        for customer, remotes in sorted(unmapped.items()):
            owners = sorted(self.tenants_by_customer.get(customer, set()))
            why = (
                "is the customer of subscriptions of tenants "
                + ", ".join(self._slug(owner) for owner in owners)
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
                    encode(UnmappedCustomer(self.provider, customer, tuple(owners), tuple(refs))),
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
                    encode(
                        SubscriptionStateDrift(
                            subscription_id=sub.id,
                            tenant_id=sub.tenant_id,
                            provider=self.provider,
                            provider_ref=remote.ref,
                            provider_status=remote.raw_status,
                            expected_status=theirs,
                            local_status=sub.status,
                            open_invoice_ids=tuple(open_left),
                        )
                    ),
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
