"""`faithflow subs backfill`, the plan: normalise provider customer/subscription ids found in
historical metadata into the canonical columns and metadata keys (the rules of what is an id
and where it belongs: `billing.identifiers`; applying: billing/metadata_backfill_apply.py).

- Keyset pages of subscriptions, read with Core selects of just the columns the plan needs, so
  memory stays flat however many rows there are. One `normalize` action per subscription that
  needs changes; `conflict` and `invalid` findings are report-only, for a human.
- Plan metadata: a plan-level id applies to the plan's subscriptions only when one tenant uses
  the plan. On a plan shared by several tenants it is reported once (`plan:<id>`) and never
  copied: one church's customer id must not reach another church's billing portal.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple, cast

from sqlalchemy import Table, Text, distinct, func, select
from sqlalchemy.orm import Session

from faithflow_ops.actions import Action, encode
from faithflow_ops.billing.identifiers import (
    Change,
    Finding,
    Normalization,
    find_identifiers,
    normalize,
    target_field,
)
from faithflow_ops.billing.identifiers import Conflict as IdConflict
from faithflow_ops.billing.identifiers import Invalid as IdInvalid
from faithflow_ops.models import Subscription, SubscriptionPlan
from faithflow_ops.models.billing import PROVIDERS

SUBS = cast(Table, Subscription.__table__)
PLANS = cast(Table, SubscriptionPlan.__table__)
AUDIT_ACTION = "subscription.metadata_backfill"

PlanSources = Mapping[tuple[int, str], tuple[Finding, ...]]


# ---------------------------------------------------------------------------------------------
# payloads: one per action kind (`Action.data` is `encode(payload)`; apply reads `decode`)


@dataclass(frozen=True)
class FieldChange:
    """One changed field of a `normalize` action (`identifiers.Change`)."""

    field: str  # `provider_customer_id` or `metadata.stripeCustomerId`
    old: Any
    new: str
    source: str  # where the new value was found


@dataclass(frozen=True)
class Normalize:
    subscription_id: int
    tenant_id: int
    provider: str
    seen_updated_at: dt.datetime  # the row's updated_at the plan saw (the claim's condition)
    changes: list[FieldChange]
    columns: dict[str, str]  # new column values
    metadata_set: dict[str, str]  # canonical keys merged into metadata


@dataclass(frozen=True)
class ConflictValue:
    value: str
    sources: list[str]  # where it was found


@dataclass(frozen=True)
class _Reported:
    """Report-only findings name their subscription or their plan: the other's keys are
    absent from `data` (see `_finding`)."""

    subscription_id: int | None
    tenant_id: int | None
    plan_id: int | None
    plan_code: str | None
    provider: str
    field: str


@dataclass(frozen=True)
class Conflict(_Reported):
    """Report-only: one field, several values (or a plan-level id several tenants share)."""

    values: list[ConflictValue]
    note: str
    held_by_subscription_id: int | None = None  # absent from `data` when None


@dataclass(frozen=True)
class Invalid(_Reported):
    """Report-only: a value where an id belongs that is not one."""

    value: Any
    sources: list[str]
    problem: str


# What plan reads of each subscription.
_PAGE_COLUMNS = (
    SUBS.c.id,
    SUBS.c.tenant_id,
    SUBS.c.plan_id,
    SUBS.c.provider,
    SUBS.c.provider_customer_id,
    SUBS.c.provider_subscription_id,
    # JSON as text, parsed by json.loads: twice as fast as psycopg's JSONB loader
    SUBS.c["metadata"].cast(Text).label("metadata"),
    SUBS.c.updated_at,
)


def count(session: Session) -> int:
    """How many subscriptions the plan reads (a progress bar's total)."""
    return session.scalar(select(func.count()).select_from(SUBS)) or 0


def plan(
    session: Session, page_size: int, advance: Callable[[int], None] | None = None
) -> Iterator[Action]:
    """Every action of a run: the plan-level findings, then page by page (`advance` is told how
    many subscriptions each page read)."""
    sources, plan_actions = _plan_level(session)
    yield from plan_actions
    last_id = 0
    while True:
        page = (
            session.execute(
                select(*_PAGE_COLUMNS)
                .where(SUBS.c.id > last_id)
                .order_by(SUBS.c.id)
                .limit(page_size)
            )
            .tuples()
            .all()
        )
        if not page:
            return
        last_id = page[-1][0]
        yield from _plan_page(session, page, sources)
        if advance is not None:
            advance(len(page))


def _plan_level(session: Session) -> tuple[PlanSources, list[Action]]:
    """Identifiers in plans' metadata: which may feed subscriptions, and what to report."""
    found: dict[tuple[int, str], list[Finding]] = {}
    codes: dict[int, str] = {}
    for plan_id, code, metadata in session.execute(
        select(PLANS.c.id, PLANS.c.code, PLANS.c["metadata"]).order_by(PLANS.c.id)
    ):
        for provider in PROVIDERS:
            findings = find_identifiers(provider, metadata, root="plan.metadata")
            if findings:
                found[(plan_id, provider)] = findings
                codes[plan_id] = code
    if not found:
        return {}, []
    ids = sorted(codes)
    used = set(
        session.execute(
            select(SUBS.c.plan_id, SUBS.c.provider).where(SUBS.c.plan_id.in_(ids)).distinct()
        ).tuples()
    )
    tenants: dict[int, int] = {
        plan_id: count
        for plan_id, count in session.execute(
            select(SUBS.c.plan_id, func.count(distinct(SUBS.c.tenant_id)))
            .where(SUBS.c.plan_id.in_(ids))
            .group_by(SUBS.c.plan_id)
        ).tuples()
    }
    sources: dict[tuple[int, str], tuple[Finding, ...]] = {}
    actions: list[Action] = []
    for (plan_id, provider), findings in found.items():
        if (plan_id, provider) not in used:
            continue  # no subscription of this provider uses the plan: nothing to feed
        target = f"plan:{plan_id}"
        owner = _Owner(plan_id=plan_id, plan_code=codes[plan_id], provider=provider)
        own = normalize(provider, {}, plan_findings=findings)
        actions += [_finding(target, owner, bad) for bad in own.invalid]
        actions += [_finding(target, owner, clash) for clash in own.conflicts]
        clashing = {clash.field for clash in own.conflicts}
        usable = tuple(
            f for f in findings if f.valid and target_field(provider, f.kind) not in clashing
        )
        if not usable:
            continue
        if tenants.get(plan_id, 0) <= 1:
            sources[(plan_id, provider)] = usable
            continue
        by_field: dict[str, tuple[str, list[str]]] = {}
        for f in usable:
            assert f.value is not None
            by_field.setdefault(target_field(provider, f.kind), (f.value, []))[1].append(f.source)
        for name, (value, where) in by_field.items():
            shared = IdConflict(
                name,
                ((value, tuple(where)),),
                f"plan {codes[plan_id]} is used by {tenants[plan_id]} tenants; a plan-level id "
                "cannot belong to all of them, so it is not applied",
            )
            actions.append(_finding(target, owner, shared))
    return sources, actions


def _plan_page(
    session: Session, page: Sequence[tuple[Any, ...]], sources: PlanSources
) -> Iterator[Action]:
    # Keeps only what the holder check needs per row (the raw row, the subscription id it
    # would write, its actions): fewer live objects, less work for the garbage collector.
    planned: list[tuple[tuple[Any, ...], str | None, Sequence[Action]]] = []
    wanted: dict[str, set[str]] = {}
    loads = json.loads
    for raw in page:
        # _PAGE_COLUMNS; metadata is JSON text
        _id, _tenant, plan_id, provider, customer, subscription, meta, _seen = raw
        result = normalize(
            provider,
            None if meta is None else loads(meta),
            provider_customer_id=customer,
            provider_subscription_id=subscription,
            plan_findings=sources.get((plan_id, provider), ()),
        )
        writes = result.subscription_id
        if writes is not None and writes != subscription:
            wanted.setdefault(provider, set()).add(writes)
        else:
            writes = None
        planned.append((raw, writes, _actions(raw, result)))
    # provider_subscription_id is unique per provider: does another subscription hold it?
    holders: dict[tuple[str, str], int] = {}
    for provider, ids in wanted.items():  # (provider, provider_subscription_id) is indexed
        for holder, held in session.execute(
            select(SUBS.c.id, SUBS.c.provider_subscription_id).where(
                SUBS.c.provider == provider,
                SUBS.c.provider_subscription_id.in_(sorted(ids)),
            )
        ).tuples():
            holders[(provider, held)] = holder
    for raw, writes, actions in planned:
        if writes is not None and holders:
            holder = holders.get((raw[3], writes))
            if holder is not None and holder != raw[0]:
                taken = {writes: holder}
                actions = _actions(raw, _normalize(raw, sources, taken))
        yield from actions


def _normalize(
    raw: tuple[Any, ...], sources: PlanSources, taken: Mapping[str, int] | None = None
) -> Normalization:
    _id, _tenant, plan_id, provider, customer, subscription, meta, _seen = raw
    return normalize(
        provider,
        None if meta is None else json.loads(meta),
        provider_customer_id=customer,
        provider_subscription_id=subscription,
        plan_findings=sources.get((plan_id, provider), ()),
        taken=taken,
    )


def _actions(raw: tuple[Any, ...], result: Normalization) -> Sequence[Action]:
    conflicts, invalid = result.conflicts, result.invalid
    if not (conflicts or invalid):
        return (NormalizeAction(raw, result),) if result.changes else ()
    sub_id, tenant_id, provider = raw[0], raw[1], raw[3]
    target = f"subscription:{sub_id}"
    actions: list[Action] = [NormalizeAction(raw, result)] if result.changes else []
    owner = _Owner(subscription_id=sub_id, tenant_id=tenant_id, provider=provider)
    actions += [_finding(target, owner, clash) for clash in conflicts]
    actions += [_finding(target, owner, bad) for bad in invalid]
    return actions


class _Owner(NamedTuple):
    """Whose metadata a finding was in: a subscription's, or a plan's."""

    provider: str
    subscription_id: int | None = None
    tenant_id: int | None = None
    plan_id: int | None = None
    plan_code: str | None = None


# A finding names its subscription or its plan: the other's keys are absent, not null.
_ABSENT_WHEN_NONE = ("subscription_id", "tenant_id", "plan_id", "plan_code")


def _finding(target: str, owner: _Owner, finding: IdConflict | IdInvalid) -> Action:
    """The report-only action of a finding (`conflict` or `invalid`)."""
    o = owner
    head = (o.subscription_id, o.tenant_id, o.plan_id, o.plan_code, o.provider, finding.field)
    if isinstance(finding, IdConflict):
        values = [ConflictValue(value, list(where)) for value, where in finding.values]
        conflict = Conflict(*head, values, finding.note, finding.held_by)
        return FindingAction("conflict", target, finding.describe(), conflict)
    invalid = Invalid(*head, finding.value, list(finding.sources), finding.problem)
    return FindingAction("invalid", target, finding.describe(), invalid)


class FindingAction(Action):
    """A `conflict` or `invalid` action whose `data` is encoded from its payload when first
    read. As with `NormalizeAction`, a run that only reports them never reads it, and encoding
    costs several times what planning a finding does."""

    _payload: Conflict | Invalid

    def __init__(self, kind: str, target: str, reason: str, payload: Conflict | Invalid) -> None:
        # Not Action.__init__: data is left unset, for __getattr__ to fill.
        object.__setattr__(self, "kind", kind)
        object.__setattr__(self, "target", target)
        object.__setattr__(self, "reason", reason)
        object.__setattr__(self, "_payload", payload)

    def __getattr__(self, name: str) -> Any:  # only for attributes not set yet
        if name != "data":
            raise AttributeError(name)
        data = encode(self._payload)
        absent: tuple[str, ...] = _ABSENT_WHEN_NONE
        if isinstance(self._payload, Conflict):
            absent = (*absent, "held_by_subscription_id")
        for key in absent:
            if data[key] is None:
                del data[key]
        object.__setattr__(self, "data", data)
        return data


class NormalizeAction(Action):
    """A `normalize` action whose `reason` and `data` are built when first read.

    Reading them (a preview row, the JSON document, a stale message) gives what an eager
    `Action` would hold. A run that only applies never reads them: apply claims from what the
    action keeps (`claim`), so the plan does not build two strings, a list of dicts and a dict
    per changed subscription that nobody reads.
    """

    # (id, tenant id, provider, seen updated_at, changes, new columns, keys to merge): tuples
    # and dicts of plain values only, which the garbage collector stops tracking
    _fields: tuple[int, int, str, dt.datetime, tuple[Change, ...], dict[str, str], dict[str, str]]

    def __init__(self, raw: tuple[Any, ...], result: Normalization) -> None:
        # Not Action.__init__: reason and data are left unset, for __getattr__ to fill.
        sub_id, tenant_id, _plan, provider, _cus, _sub, _meta, seen = raw
        object.__setattr__(self, "kind", "normalize")
        object.__setattr__(self, "target", f"subscription:{sub_id}")
        fields = (
            sub_id,
            tenant_id,
            provider,
            seen,
            tuple(result.changes),
            result.columns,
            result.metadata_set,
        )
        object.__setattr__(self, "_fields", fields)

    def claim(self) -> Claim:
        sub_id, tenant_id, _provider, seen, changes, columns, metadata_set = self._fields
        return Claim(
            sub_id,
            tenant_id,
            seen,
            columns,
            metadata_set,
            {change.field: change.old for change in changes},
            {change.field: change.new for change in changes},
        )

    def __getattr__(self, name: str) -> Any:  # only for attributes not set yet
        if name not in ("reason", "data"):
            raise AttributeError(name)
        sub_id, tenant_id, provider, seen, changes, columns, metadata_set = self._fields
        if name == "reason":
            value: Any = "; ".join([change.describe() for change in changes])
        else:
            value = encode(
                Normalize(
                    sub_id,
                    tenant_id,
                    provider,
                    seen,
                    [FieldChange(*change) for change in changes],
                    columns,
                    metadata_set,
                )
            )
        object.__setattr__(self, name, value)
        return value


class Claim(NamedTuple):
    """What applying one `normalize` action needs: the row as planned and what to write."""

    id: int
    tenant_id: int
    seen: dt.datetime
    columns: Mapping[str, str]  # changed columns → new value
    metadata_set: Mapping[str, str]  # canonical keys merged into metadata
    before: dict[str, Any]  # the audit entry: each changed field's old value
    after: dict[str, Any]  # … and its new one
