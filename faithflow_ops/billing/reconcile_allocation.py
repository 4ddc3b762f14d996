"""Which invoice a charge paid (`faithflow invoices reconcile`, docs/invoices.md).

A charge pays one invoice. Databases that lived through the Paystack renewal bug (a
`charge.success` paid the subscription's oldest open invoice, so a December charge settled
November's failed invoice, and `invoice.update` then marked December paid as well) hold
invoices marked paid by a charge that is not theirs, and Paystack subscriptions whose
`current_period_end` never moved forward. The rules here find them; the job applies the fixes.

Read-only: the functions read the database and what the provider listed, and return
`Finding`s (plain data) for the job to turn into actions.

- **Shared charge** (local, needs no provider): two or more paid invoices of one provider
  name the same paying charge (`paystackReference`; `stripeChargeId` /
  `stripePaymentIntentId`). The charge paid at most one of them. The owner is, in order of
  strength: the invoice the provider's own record names (Stripe: the pulled invoice whose
  `charge`/`payment_intent` it is; Paystack: the invoice imported under that transaction
  reference); else, for Paystack, the one invoice whose period `[period_start, period_end)`
  holds the charge time (the pulled transaction's `paid_at`, else the latest `paid_at` the
  group recorded) and, when the transaction was pulled, whose amount, currency and plan match
  it. Stripe invoices' periods describe the period that just ended, so without the pulled
  invoice a Stripe group stays unresolved. The others are `reopen_invoice`; a group with no
  single owner is `charge_owner_unclear` (report only).
- **Paid without a payment** (Paystack, needs the pull): a paid invoice, paid inside the
  window, for which Paystack lists no successful charge — neither its reference nor a dunning
  retry for it or its customer — while Paystack shows it unpaid (its reference is a `failed`
  transaction, or a subscription lists its `INV_…` code as `open_invoice`, or in `invoices`
  with a status other than success). And a paid invoice with no paying reference whose only
  matching charges (same subscription, amount and currency, `paid_at` within a day of ours)
  are all recorded as paying other invoices.
- **Period behind** (local, Paystack): `current_period_end` is NULL or earlier than the
  `period_end` of the subscription's newest paid invoice (not counting invoices this run
  reopens): `advance_period`. Stripe is left out: a Stripe invoice's period is the one just
  billed for, not the subscription's current one, which Stripe's subscription events keep.

What Paystack documents that this reads (https://paystack.com/docs/api/transaction/#list,
https://paystack.com/docs/api/subscription/#list): a transaction's `reference`, `status`,
`paid_at`, `amount`, `currency`, `plan`, `customer.customer_code`, `metadata`; a
subscription's `subscription_code`, `open_invoice` (the `INV_…` code still unpaid, or null)
and, where present, `invoices` (`invoice_code`, `status`, `paid`). The fetch of one
subscription (`GET /subscription/:code`) carries the same `invoices`; the list is what this
job already pulls, so no request is added per subscription.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, cast

from sqlalchemy import Table, and_, func, or_, select
from sqlalchemy.orm import Session

from faithflow_ops.billing.identifiers import check
from faithflow_ops.clock import iso
from faithflow_ops.models import Invoice, Subscription, SubscriptionPlan

INVOICES = cast(Table, Invoice.__table__)
SUBS = cast(Table, Subscription.__table__)
PLANS = cast(Table, SubscriptionPlan.__table__)

PAYING_KEYS: dict[str, tuple[str, ...]] = {
    "paystack": ("paystackReference",),
    "stripe": ("stripeChargeId", "stripePaymentIntentId"),
}
MATCH_SLACK = dt.timedelta(days=1)  # a charge "matches" an invoice paid this close to it
SETTLED = ("active", "trialing")  # a subscription a wrong payment can have settled
NOTE_KEY = "reconcileReopened"  # metadata: what a reopen took away, and why


class Charge(Protocol):
    """What the job pulled for one provider invoice or subscription charge."""

    @property
    def ref(self) -> str: ...
    @property
    def status(self) -> str: ...
    @property
    def amount_due(self) -> int: ...
    @property
    def currency(self) -> str: ...
    @property
    def paid_at(self) -> dt.datetime | None: ...
    @property
    def plan_code(self) -> str | None: ...
    @property
    def customer(self) -> str | None: ...
    @property
    def metadata(self) -> dict[str, Any]: ...


@dataclass(frozen=True)
class PaystackSignals:
    """What Paystack's lists say beyond the plan charges."""

    unpaid_codes: frozenset[str] = frozenset()  # INV_… listed open / not successful
    retry_invoices: frozenset[int] = frozenset()  # our invoice ids a successful retry names
    retry_customers: frozenset[str] = frozenset()  # customers with a successful retry charge


@dataclass(frozen=True)
class Finding:
    kind: str
    target: str
    reason: str
    data: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Paid:
    id: int
    tenant_id: int
    subscription_id: int | None
    ref: str | None  # provider_invoice_id
    amount_due: int
    amount_paid: int
    currency: str
    period_start: dt.datetime | None
    period_end: dt.datetime | None
    due_at: dt.datetime | None
    paid_at: dt.datetime | None
    created_at: dt.datetime
    metadata: dict[str, Any]

    def paying(self, key: str) -> str | None:
        value = self.metadata.get(key)
        return value.strip() if isinstance(value, str) and value.strip() else None

    @property
    def due(self) -> dt.datetime:
        """When payment was due: due_at, else the period's start (a Paystack renewal is
        charged then), else when the invoice was recorded."""
        return self.due_at or self.period_start or self.created_at

    def holds(self, at: dt.datetime) -> bool:
        return (
            self.period_start is not None
            and self.period_end is not None
            and self.period_start <= at < self.period_end
        )


_PAID_COLUMNS = (
    INVOICES.c.id,
    INVOICES.c.tenant_id,
    INVOICES.c.subscription_id,
    INVOICES.c.provider_invoice_id,
    INVOICES.c.amount_due_minor,
    INVOICES.c.amount_paid_minor,
    INVOICES.c.currency,
    INVOICES.c.period_start,
    INVOICES.c.period_end,
    INVOICES.c.due_at,
    INVOICES.c.paid_at,
    INVOICES.c.created_at,
    INVOICES.c["metadata"],
)


def _paid(row: Sequence[Any]) -> Paid:
    meta = row[12] if isinstance(row[12], dict) else {}
    r = row
    return Paid(r[0], r[1], r[2], r[3], r[4], r[5], r[6], r[7], r[8], r[9], r[10], r[11], meta)


@dataclass
class _Sub:
    id: int
    tenant_id: int
    status: str
    plan_code: str | None


class Allocation:
    """One provider's charge-allocation and period findings."""

    def __init__(
        self,
        session: Session,
        provider: str,
        charges: Sequence[Charge],
        *,
        since: dt.datetime,
        now: dt.datetime,
        pulled: bool,
        sub_of: Callable[[Charge], int | None] = lambda charge: None,
        signals: PaystackSignals | None = None,
    ) -> None:
        self.session, self.provider, self.charges = session, provider, charges
        self.since, self.now, self.pulled = since, now, pulled
        self.sub_of = sub_of
        self.signals = signals or PaystackSignals()
        self.keys = PAYING_KEYS[provider]
        self.by_ref: dict[str, Charge] = {c.ref: c for c in charges}
        self.by_paying: dict[tuple[str, str], list[Charge]] = defaultdict(list)
        for charge in charges:
            for key in self.keys:
                value = charge.metadata.get(key)
                if isinstance(value, str) and value:
                    self.by_paying[(key, value)].append(charge)
        self._subs: dict[int, _Sub] = {}
        # Results the job reads after `findings()`.
        self.reopened: set[int] = set()
        self.owner_of: dict[str, int] = {}  # charge reference → the invoice that owns it
        self.grouped: set[int] = set()  # invoices in a shared-charge group

    # -- reads --

    def _subscriptions(self, ids: Iterable[int | None]) -> dict[int, _Sub]:
        wanted = sorted({i for i in ids if i is not None} - set(self._subs))
        for i in range(0, len(wanted), 500):
            rows = self.session.execute(
                select(SUBS.c.id, SUBS.c.tenant_id, SUBS.c.status, PLANS.c["metadata"])
                .join(PLANS, PLANS.c.id == SUBS.c.plan_id)
                .where(SUBS.c.id.in_(wanted[i : i + 500]))
            ).tuples()
            for sub_id, tenant_id, status, meta in rows:
                code = meta.get("paystackPlanCode") if isinstance(meta, dict) else None
                self._subs[sub_id] = _Sub(sub_id, tenant_id, status, code)
        return self._subs

    def _shared_groups(self) -> list[tuple[str, str, list[Paid]]]:
        """(key, charge reference, the paid invoices naming it) for every charge named by
        more than one paid invoice of this provider, over all history."""
        out = []
        seen: set[frozenset[int]] = set()
        for key in self.keys:
            member = INVOICES.c["metadata"][key].as_string()
            paid = and_(INVOICES.c.provider == self.provider, INVOICES.c.status == "paid")
            refs = [
                ref
                for ref in self.session.scalars(
                    select(member)
                    .where(paid, member.is_not(None), member != "")
                    .group_by(member)
                    .having(func.count() > 1)
                    .order_by(member)
                )
                if ref
            ]
            for i in range(0, len(refs), 500):
                groups: dict[str, list[Paid]] = defaultdict(list)
                query = (
                    select(member, *_PAID_COLUMNS)
                    .where(paid, member.in_(refs[i : i + 500]))
                    .order_by(INVOICES.c.id)
                )
                for row in self.session.execute(query).tuples():
                    groups[row[0]].append(_paid(row[1:]))
                for ref in refs[i : i + 500]:
                    members = groups.get(ref, [])
                    ids = frozenset(m.id for m in members)
                    if len(members) > 1 and ids not in seen:  # Stripe: charge and PI agree
                        seen.add(ids)
                        out.append((key, ref, members))
        return out

    # -- findings --

    def findings(self) -> list[Finding]:
        out: list[Finding] = []
        for key, ref, members in self._shared_groups():
            out += self._shared(key, ref, members)
        if self.provider == "paystack" and self.pulled:
            out += self._paid_without_payment()
        if self.provider == "paystack":
            out += self._periods_behind()
        return out

    def _owner(
        self, key: str, ref: str, members: list[Paid]
    ) -> tuple[Paid | None, str, list[Paid]]:
        """(owner or None, the evidence, the members still in the running)."""
        if self.provider == "stripe":
            named = [c for c in self.by_paying.get((key, ref), []) if c.status == "paid"]
            owners = [m for m in members if any(c.ref == m.ref for c in named)]
            if len(owners) == 1:
                return owners[0], f"Stripe invoice {owners[0].ref} names {ref} as its payment", []
            return None, "Stripe lists no single invoice paid by it in the window", members
        imported = [m for m in members if m.ref == ref]
        if len(imported) == 1:
            return imported[0], f"invoice {imported[0].id} was imported under {ref}", []
        charge = self.by_ref.get(ref)
        candidates = members
        if charge is not None and charge.status == "paid":
            subs = self._subscriptions(m.subscription_id for m in members)
            candidates = [
                m
                for m in members
                if m.amount_due == charge.amount_due
                and m.currency == charge.currency
                and (
                    charge.plan_code is None
                    or m.subscription_id is None
                    or subs[m.subscription_id].plan_code in (None, charge.plan_code)
                )
            ]
            at = charge.paid_at
            source = f"Paystack's transaction {ref} (paid {iso(at)})"
        else:
            times = [m.paid_at for m in members if m.paid_at is not None]
            at = max(times) if times else None
            source = f"the recorded payment time {iso(at)}"
        if at is not None:
            holding = [m for m in candidates if m.holds(at)]
            if len(holding) == 1:
                owner = holding[0]
                return owner, f"{source} falls in invoice {owner.id}'s period", candidates
        if (
            charge is not None
            and len(candidates) == 1
            and not any(m.period_start or m.period_end for m in members)
        ):
            owner = candidates[0]
            return owner, f"only invoice {owner.id} matches {ref}'s amount and plan", candidates
        return None, f"no single invoice's period holds {source}", candidates

    def _shared(self, key: str, ref: str, members: list[Paid]) -> list[Finding]:
        self.grouped.update(m.id for m in members)
        owner, evidence, _ = self._owner(key, ref, members)
        if owner is None:
            ids = [m.id for m in members]
            return [
                Finding(
                    "charge_owner_unclear",
                    f"charge:{self.provider}:{ref}",
                    f"paid invoices {ids} all name {self.provider} charge {ref}, which paid at "
                    f"most one of them; {evidence}: check the provider's dashboard, then "
                    "`faithflow invoices show ID`",
                    {
                        "provider": self.provider,
                        "key": key,
                        "reference": ref,
                        "invoice_ids": ids,
                        "tenant_id": members[0].tenant_id,
                    },
                )
            ]
        self.owner_of[ref] = owner.id
        out = []
        for m in members:
            if m.id == owner.id:
                continue
            drop = {
                k: m.paying(k)
                for k in self.keys
                if m.paying(k) is not None and m.paying(k) == owner.paying(k)
            }
            out.append(
                self._reopen(
                    m,
                    why=f"charge {ref} is invoice {owner.id}'s ({evidence}), not this one's",
                    cause="shared_charge",
                    reference=ref,
                    owners=[owner.id],
                    drop=drop,
                    keep={key: ref},
                )
            )
        return out

    def _paid_without_payment(self) -> list[Finding]:
        rows = [
            _paid(row)
            for row in self.session.execute(
                select(*_PAID_COLUMNS)
                .where(
                    INVOICES.c.provider == "paystack",
                    INVOICES.c.status == "paid",
                    INVOICES.c.paid_at >= self.since,
                    INVOICES.c.paid_at <= self.now,
                )
                .order_by(INVOICES.c.id)
            ).tuples()
        ]
        rows = [r for r in rows if r.id not in self.grouped]
        subs = self._subscriptions(r.subscription_id for r in rows)
        customers = self._customers(r.subscription_id for r in rows)
        out = []
        for inv in rows:
            if inv.id in self.signals.retry_invoices:
                continue  # a dunning retry paid it
            customer = customers.get(inv.subscription_id or -1)
            if customer is not None and customer in self.signals.retry_customers:
                continue  # a retry for this customer may have paid it: not ours to judge
            ref = inv.paying("paystackReference") or (
                inv.ref if inv.ref and not inv.ref.startswith("INV_") else None
            )
            if ref is not None:
                charge = self.by_ref.get(ref)
                if charge is not None and charge.status == "paid":
                    continue
                failed = charge is not None and charge.status == "open"
                listed_unpaid = inv.ref is not None and inv.ref in self.signals.unpaid_codes
                if not (failed or listed_unpaid):
                    continue  # no sign it was unpaid (`missing_at_provider` reports a gap)
                shown = (
                    f"Paystack's transaction {ref} failed"
                    if failed
                    else f"Paystack lists {inv.ref} as unpaid"
                )
                out.append(
                    self._reopen(
                        inv,
                        why=f"{shown} and lists no successful charge for it in the window",
                        cause="no_payment",
                        reference=ref,
                        owners=[],
                        drop={},
                        keep={"paystackReference": ref} if inv.paying("paystackReference") else {},
                    )
                )
                continue
            if inv.subscription_id is None or inv.paid_at is None:
                continue
            paid_at = inv.paid_at
            matching = [
                c
                for c in self.charges
                if c.status == "paid"
                and c.amount_due == inv.amount_due
                and c.currency == inv.currency
                and c.paid_at is not None
                and abs(c.paid_at - paid_at) <= MATCH_SLACK
                and self.sub_of(c) == inv.subscription_id
            ]
            holders = self._holders(c.ref for c in matching)
            owners = {self.owner_of.get(c.ref, holders.get(c.ref)) for c in matching}
            if not matching or None in owners or inv.id in owners:
                continue  # no evidence, or a charge nobody owns yet (it may be this one's)
            ids = sorted(cast(set[int], owners))
            refs = ", ".join(c.ref for c in matching)
            sub = subs.get(inv.subscription_id)
            plan = f" on {sub.plan_code}" if sub and sub.plan_code else ""
            out.append(
                self._reopen(
                    inv,
                    why=f"it names no paying charge, and the only matching charge{plan} "
                    f"({refs}) paid invoice(s) {ids}",
                    cause="no_reference",
                    reference=None,
                    owners=ids,
                    drop={},
                    keep={},
                )
            )
        return out

    def _holders(self, refs: Iterable[str]) -> dict[str, int]:
        """The paid invoice recorded as paid by each charge reference (its paystackReference,
        or the provider id it was imported under)."""
        wanted = sorted(set(refs))
        member = INVOICES.c["metadata"]["paystackReference"].as_string()
        out: dict[str, int] = {}
        for i in range(0, len(wanted), 500):
            chunk = wanted[i : i + 500]
            for inv_id, ref, held in self.session.execute(
                select(INVOICES.c.id, INVOICES.c.provider_invoice_id, member)
                .where(
                    INVOICES.c.provider == "paystack",
                    INVOICES.c.status == "paid",
                    or_(member.in_(chunk), INVOICES.c.provider_invoice_id.in_(chunk)),
                )
                .order_by(INVOICES.c.id)
            ).tuples():
                for value in (held, ref):
                    if value in chunk:
                        out.setdefault(value, inv_id)
        return out

    def _customers(self, ids: Iterable[int | None]) -> dict[int, str]:
        wanted = sorted({i for i in ids if i is not None})
        out: dict[int, str] = {}
        for i in range(0, len(wanted), 500):
            for sub_id, customer in self.session.execute(
                select(SUBS.c.id, SUBS.c.provider_customer_id).where(
                    SUBS.c.id.in_(wanted[i : i + 500])
                )
            ).tuples():
                if customer:
                    out[sub_id] = customer
        return out

    def _reopen(
        self,
        inv: Paid,
        *,
        why: str,
        cause: str,
        reference: str | None,
        owners: list[int],
        drop: Mapping[str, str | None],
        keep: Mapping[str, str],
    ) -> Finding:
        self.reopened.add(inv.id)
        sub = self._subscriptions([inv.subscription_id]).get(inv.subscription_id or -1)
        overdue = inv.due <= self.now
        past_due = sub is not None and sub.status in SETTLED and overdue
        if sub is None:
            follow = "no subscription to act on"
        elif past_due:
            follow = (
                f"subscription {sub.id} ({sub.status}, settled by this payment) goes past due "
                f"from now (the invoice was due {inv.due.date().isoformat()}); the dunning job "
                "chases the reopened invoice on its next run"
            )
        elif sub.status in SETTLED:
            follow = (
                f"subscription {sub.id} stays {sub.status} until the invoice falls due "
                f"({inv.due.date().isoformat()}); dunning and subs automate act on it then"
            )
        else:
            follow = (
                f"subscription {sub.id} stays {sub.status}; the dunning and subs automate jobs "
                "act on the reopened invoice on their next run"
            )
        what = f"invoice {inv.id} ({inv.ref or 'no provider id'}) is paid here but {why}"
        return Finding(
            "reopen_invoice",
            f"invoice:{inv.id}",
            f"{what}: reopen it (nobody is reactivated or suspended by this); {follow}",
            {
                "invoice_id": inv.id,
                "tenant_id": inv.tenant_id,
                "subscription_id": inv.subscription_id,
                "provider": self.provider,
                "cause": cause,
                "reference": reference,
                "match": dict(keep),  # the claim: these metadata values still hold
                "drop": {k: v for k, v in drop.items() if v},
                "owner_invoice_ids": owners,
                "amount_paid": inv.amount_paid,
                "paid_at": iso(inv.paid_at),
                "due": iso(inv.due),
                "subscription_status": sub.status if sub else None,
                "settled_by_this_payment": bool(sub and sub.status in SETTLED),
                "mark_past_due": past_due,
            },
        )

    def _periods_behind(self) -> list[Finding]:
        behind = or_(
            SUBS.c.current_period_end.is_(None),
            INVOICES.c.period_end > SUBS.c.current_period_end,
        )
        # ix_invoices_automate_paid_period_end (subscription_id, period_end WHERE paid)
        rows = self.session.execute(
            select(
                INVOICES.c.id,
                INVOICES.c.subscription_id,
                INVOICES.c.period_start,
                INVOICES.c.period_end,
                SUBS.c.tenant_id,
                SUBS.c.status,
                SUBS.c.current_period_start,
                SUBS.c.current_period_end,
            )
            .join(SUBS, SUBS.c.id == INVOICES.c.subscription_id)
            .where(
                INVOICES.c.status == "paid",
                INVOICES.c.period_end.is_not(None),
                SUBS.c.provider == self.provider,
                SUBS.c.status != "canceled",
                behind,
            )
            .order_by(INVOICES.c.subscription_id, INVOICES.c.period_end.desc(), INVOICES.c.id)
        ).tuples()
        newest: dict[int, tuple[Any, ...]] = {}
        for row in rows:
            if row[0] in self.reopened or row[1] in newest:
                continue
            newest[row[1]] = tuple(row)
        out = []
        for sub_id, (inv_id, _, start, end, tenant, status, cur_start, cur_end) in sorted(
            newest.items()
        ):
            was = cur_end.date().isoformat() if cur_end else "not set"
            out.append(
                Finding(
                    "advance_period",
                    f"subscription:{sub_id}",
                    f"subscription {sub_id} ({status}) ends its period {was}, but paid invoice "
                    f"{inv_id} covers it to {end.date().isoformat()}: move the period forward",
                    {
                        "subscription_id": sub_id,
                        "tenant_id": tenant,
                        "provider": self.provider,
                        "invoice_id": inv_id,
                        "period_start": iso(start),
                        "period_end": iso(end),
                        "current_period_start": iso(cur_start),
                        "current_period_end": iso(cur_end),
                    },
                )
            )
        return out


def paystack_signals(
    subscriptions: Iterable[Mapping[str, Any]], retries: Iterable[Mapping[str, Any]]
) -> PaystackSignals:
    """What the subscription list says is unpaid, and which successful charges without a plan
    were dunning retries (`metadata.invoice` / `metadata.dunning_case`, dunning/retry.py)."""
    import json

    unpaid: set[str] = set()
    for sub in subscriptions:
        code = sub.get("open_invoice")
        if isinstance(code, str) and code.startswith("INV_"):
            unpaid.add(code)
        for entry in sub.get("invoices") or []:
            if not isinstance(entry, dict):
                continue
            code = entry.get("invoice_code")
            paid = entry.get("paid") in (True, 1) or entry.get("status") == "success"
            if isinstance(code, str) and code and not paid:
                unpaid.add(code)
    invoices: set[int] = set()
    customers: set[str] = set()
    for txn in retries:
        if txn.get("status") != "success":
            continue
        meta = txn.get("metadata")
        if isinstance(meta, str):
            try:
                meta = json.loads(meta)
            except ValueError:
                meta = None
        if not isinstance(meta, dict):
            continue
        if meta.get("invoice") is None and meta.get("dunning_case") is None:
            continue
        invoice = str(meta.get("invoice") or "")
        if invoice.isdigit():
            invoices.add(int(invoice))
        customer = txn.get("customer")
        raw = customer.get("customer_code") if isinstance(customer, dict) else None
        code = check("paystack", "customer", raw).value if raw is not None else None
        if code:
            customers.add(code)
    return PaystackSignals(frozenset(unpaid), frozenset(invoices), frozenset(customers))
