"""`faithflow subs backfill`: normalise provider customer/subscription ids found in historical
metadata into the canonical columns and metadata keys (the rules: `billing.identifiers`).

- plan: keyset pages of subscriptions, read with Core selects of just the columns it needs, so
  memory stays flat however many rows there are. One `normalize` action per subscription that
  needs changes; `conflict` and `invalid` findings are report-only, for a human.
- Plan metadata: a plan-level id applies to the plan's subscriptions only when one tenant uses
  the plan. On a plan shared by several tenants it is reported once (`plan:<id>`) and never
  copied: one church's customer id must not reach another church's billing portal.
- apply: `UPDATE … WHERE id = :id AND updated_at = :seen` (the optimistic claim), plus "no other
  subscription holds this subscription id" when one is written; the canonical keys are merged
  into the stored metadata (which the claim proves unchanged since the plan); one audit_log
  row per changed subscription in the same transaction. A row changed since the plan is
  `stale`, never overwritten. On Postgres a whole batch is one statement (one round trip).
"""

from __future__ import annotations

import datetime as dt
import functools
import json
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, NamedTuple, cast

from sqlalchemy import (
    CursorResult,
    Table,
    Text,
    bindparam,
    distinct,
    exists,
    func,
    literal_column,
    select,
    text,
    update,
)
from sqlalchemy.orm import Session
from sqlalchemy.sql.dml import Update

from faithflow_ops.audit import audit_row, record_many
from faithflow_ops.billing.identifiers import (
    Change,
    Conflict,
    Finding,
    Invalid,
    Normalization,
    find_identifiers,
    normalize,
    show,
    target_field,
)
from faithflow_ops.db import utcnow
from faithflow_ops.jobs.base import Action, Job, JobContext, Outcome, StaleAction
from faithflow_ops.models import Subscription, SubscriptionPlan
from faithflow_ops.models.billing import PROVIDERS

SUBS = cast(Table, Subscription.__table__)
PLANS = cast(Table, SubscriptionPlan.__table__)
AUDIT_ACTION = "subscription.metadata_backfill"

PlanSources = Mapping[tuple[int, str], tuple[Finding, ...]]

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


class SubscriptionMetadataBackfill(Job):
    name = "subscription_metadata_backfill"
    report_only = frozenset({"conflict", "invalid"})
    # Actions per transaction: 2000 ran ~15% faster than 500 on Postgres (fewer commits); the
    # price is that one stale row sends its whole batch through the one-by-one path.
    batch_size = 2000
    page_size = 2000  # subscriptions read per keyset page

    table_columns = ("kind", "target", "field", "old", "new", "found at / why")

    @classmethod
    def table_rows(cls, action: Action) -> list[tuple[Any, ...]]:
        """A preview row per change (field, old → new, where it was found); findings as one."""
        if action.kind == "normalize":
            return [
                (action.kind, action.target, c["field"], show(c["old"]), c["new"], c["source"])
                for c in action.data["changes"]
            ]
        return [(action.kind, action.target, action.data.get("field"), "", "", action.reason)]

    def plan(self, session: Session, ctx: JobContext) -> Iterator[Action]:
        if ctx.progress is not None:
            ctx.progress.start(session.scalar(select(func.count()).select_from(SUBS)) or 0)
        sources, plan_actions = _plan_level(session)
        yield from plan_actions
        last_id = 0
        while True:
            page = (
                session.execute(
                    select(*_PAGE_COLUMNS)
                    .where(SUBS.c.id > last_id)
                    .order_by(SUBS.c.id)
                    .limit(self.page_size)
                )
                .tuples()
                .all()
            )
            if not page:
                return
            last_id = page[-1][0]
            yield from _plan_page(session, page, sources)
            if ctx.progress is not None:
                ctx.progress.advance(len(page))

    def apply(self, session: Session, ctx: JobContext, action: Action) -> None:
        if _claim_all(session, ctx, [action]) != 1:
            raise StaleAction(_why_stale(session, action.data))

    def apply_batch(
        self, session: Session, ctx: JobContext, actions: Sequence[Action]
    ) -> list[Outcome] | None:
        if _claim_all(session, ctx, actions) != len(actions):
            return None  # some row changed since the plan: the runner rolls back, goes one by one
        return ["applied"] * len(actions)


JOB = SubscriptionMetadataBackfill()


# ---------------------------------------------------------------------------------------------
# plan


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
        base = {"plan_id": plan_id, "plan_code": codes[plan_id], "provider": provider}
        own = normalize(provider, {}, plan_findings=findings)
        for bad in own.invalid:
            actions.append(Action("invalid", target, bad.describe(), {**base, **bad.to_dict()}))
        for clash in own.conflicts:
            actions.append(
                Action("conflict", target, clash.describe(), {**base, **clash.to_dict()})
            )
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
            shared = Conflict(
                name,
                ((value, tuple(where)),),
                f"plan {codes[plan_id]} is used by {tenants[plan_id]} tenants; a plan-level id "
                "cannot belong to all of them, so it is not applied",
            )
            actions.append(
                Action("conflict", target, shared.describe(), {**base, **shared.to_dict()})
            )
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
        return (_Normalize(raw, result),) if result.changes else ()
    sub_id, tenant_id, provider = raw[0], raw[1], raw[3]
    target = f"subscription:{sub_id}"
    actions: list[Action] = [_Normalize(raw, result)] if result.changes else []
    findings: list[tuple[str, Conflict | Invalid]] = [
        *(("conflict", clash) for clash in conflicts),
        *(("invalid", bad) for bad in invalid),
    ]
    for kind, finding in findings:
        data = {"subscription_id": sub_id, "tenant_id": tenant_id, "provider": provider}
        data.update(finding.to_dict())
        actions.append(Action(kind, target, finding.describe(), data))
    return actions


class _Normalize(Action):
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

    def claim(self) -> _Claim:
        sub_id, tenant_id, _provider, seen, changes, columns, metadata_set = self._fields
        return _Claim(
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
            value = {
                "subscription_id": sub_id,
                "tenant_id": tenant_id,
                "provider": provider,
                "seen_updated_at": seen.isoformat(),
                "changes": [change.to_dict() for change in changes],
                "columns": columns,  # new column values
                "metadata_set": metadata_set,  # canonical keys merged into metadata
            }
        object.__setattr__(self, name, value)
        return value


# ---------------------------------------------------------------------------------------------
# apply


class _Claim(NamedTuple):
    """What applying one `normalize` action needs: the row as planned and what to write."""

    id: int
    tenant_id: int
    seen: dt.datetime
    columns: Mapping[str, str]  # changed columns → new value
    metadata_set: Mapping[str, str]  # canonical keys merged into metadata
    before: dict[str, Any]  # the audit entry: each changed field's old value
    after: dict[str, Any]  # … and its new one


def _claim(action: Action) -> _Claim:
    if action.kind != "normalize":
        raise ValueError(f"{action.kind} actions are report-only; nothing to apply")
    if isinstance(action, _Normalize):
        return action.claim()
    data = action.data  # an Action made elsewhere from the same data
    before, after = _before_after(data)
    return _Claim(
        data["subscription_id"],
        data["tenant_id"],
        dt.datetime.fromisoformat(data["seen_updated_at"]),
        data["columns"],
        data["metadata_set"],
        before,
        after,
    )


def _claim_all(session: Session, ctx: JobContext, actions: Sequence[Action]) -> int:
    """Claim and change every action's row, audit each one; return how many were claimed."""
    now = utcnow()
    if session.get_bind().dialect.name == "postgresql":
        rows = [
            (
                c.id,
                c.seen.isoformat(),
                c.columns.get("provider_customer_id"),
                c.columns.get("provider_subscription_id"),
                c.metadata_set or None,
                c.before,
                c.after,
            )
            for c in map(_claim, actions)
        ]
        params = {"rows": json.dumps(rows), "now": now, "actor": ctx.actor, "action": AUDIT_ACTION}
        return _rowcount(session.execute(_POSTGRES_CLAIM, params))
    claims = [_claim(action) for action in actions]
    groups: dict[tuple[tuple[str, ...], bool], list[dict[str, Any]]] = {}
    for claim in claims:  # one executemany per shape of change
        shape = (tuple(sorted(claim.columns)), bool(claim.metadata_set))
        groups.setdefault(shape, []).append(_params(claim, now))
    claimed = sum(
        _rowcount(session.execute(_sqlite_claim(*shape), params))
        for shape, params in groups.items()
    )
    if claimed == len(claims):
        record_many(session, [_audit(ctx, claim) for claim in claims])
    return claimed


# Postgres: a batch in one statement and one round trip. Each row of :rows is a JSON array
# [id, seen updated_at, new provider_customer_id or null, new provider_subscription_id or
# null, canonical keys to merge or null, audit before, audit after].
# Claim each row (same id + updated_at, and no other subscription holding a subscription id
# being written), merge the canonical keys into its metadata, and insert one audit_log row
# per claimed row (the columns `audit.audit_row` fills). The rowcount is the number claimed.
# Two rows of one batch writing the same subscription id fail the unique constraint: the
# runner then retries one by one, and the second is stale.
_POSTGRES_CLAIM = text(
    """
WITH incoming AS (
    SELECT CAST(r ->> 0 AS integer) AS id, CAST(r ->> 1 AS timestamptz) AS seen,
        r ->> 2 AS customer_id, r ->> 3 AS subscription_id,
        NULLIF(r -> 4, 'null') AS metadata_set, r -> 5 AS before, r -> 6 AS after
    FROM jsonb_array_elements(CAST(:rows AS jsonb)) AS r
), claimed AS (
    UPDATE subscriptions AS s SET
        provider_customer_id = COALESCE(i.customer_id, s.provider_customer_id),
        provider_subscription_id = COALESCE(i.subscription_id, s.provider_subscription_id),
        metadata = CASE
            WHEN i.metadata_set IS NULL THEN s.metadata
            WHEN jsonb_typeof(s.metadata) = 'object' THEN s.metadata || i.metadata_set
            ELSE i.metadata_set END,
        updated_at = :now
    FROM incoming AS i
    WHERE s.id = i.id AND s.updated_at = i.seen
      AND (i.subscription_id IS NULL OR NOT EXISTS (
          SELECT 1 FROM subscriptions AS other
          WHERE other.provider = s.provider
            AND other.provider_subscription_id = i.subscription_id
            AND other.id <> s.id))
    RETURNING s.id, s.tenant_id, i.before, i.after
)
INSERT INTO audit_log
    (tenant_id, actor, action, entity_type, entity_id, before, after, at, created_at)
SELECT tenant_id, :actor, :action, 'subscription', CAST(id AS text), before, after, :now, :now
FROM claimed
"""
)


@functools.cache
def _sqlite_claim(columns: tuple[str, ...], with_metadata: bool) -> Update:
    """The claiming UPDATE for one shape of change; all bind parameters (executemany-able)."""
    values: dict[Any, Any] = {
        SUBS.c[name]: bindparam(f"new_{name}", type_=SUBS.c[name].type) for name in columns
    }
    if with_metadata:  # the keys merged in; json_patch treats a non-object as {}
        values[SUBS.c["metadata"]] = func.json_patch(
            func.coalesce(SUBS.c["metadata"], literal_column("'{}'")),
            bindparam("new_metadata", type_=Text),
        )
    values[SUBS.c.updated_at] = bindparam("new_updated_at", type_=SUBS.c.updated_at.type)
    stmt = (
        update(SUBS)
        .where(
            SUBS.c.id == bindparam("claim_id"),
            SUBS.c.updated_at == bindparam("claim_seen", type_=SUBS.c.updated_at.type),
        )
        .values(values)
    )
    if "provider_subscription_id" in columns:
        other = SUBS.alias("other")
        stmt = stmt.where(
            ~exists().where(
                other.c.provider == SUBS.c.provider,
                other.c.provider_subscription_id
                == bindparam(
                    "new_provider_subscription_id", type_=SUBS.c.provider_subscription_id.type
                ),
                other.c.id != SUBS.c.id,
            )
        )
    return stmt


def _params(claim: _Claim, now: dt.datetime) -> dict[str, Any]:
    params: dict[str, Any] = {
        "claim_id": claim.id,
        "claim_seen": claim.seen,
        "new_updated_at": now,
    }
    for name, value in claim.columns.items():
        params[f"new_{name}"] = value
    if claim.metadata_set:
        params["new_metadata"] = json.dumps(claim.metadata_set)
    return params


def _rowcount(result: Any) -> int:
    return cast(CursorResult[Any], result).rowcount


def _why_stale(session: Session, data: Mapping[str, Any]) -> str:
    """Re-read the row to say why the claim failed."""
    sub_id = data["subscription_id"]
    seen = dt.datetime.fromisoformat(data["seen_updated_at"])
    current = session.execute(
        select(SUBS.c.updated_at).where(SUBS.c.id == sub_id)
    ).scalar_one_or_none()
    if current is None:
        return f"subscription {sub_id} no longer exists"
    if current != seen:
        return (
            f"subscription {sub_id} changed since the plan (updated_at {current.isoformat()}, "
            f"the plan saw {seen.isoformat()}); run again to re-plan it"
        )
    wanted = data["columns"].get("provider_subscription_id")
    if wanted is None:
        return f"subscription {sub_id} could not be claimed; run again to re-plan it"
    holder = session.execute(
        select(SUBS.c.id).where(
            SUBS.c.provider == data["provider"],
            SUBS.c.provider_subscription_id == wanted,
            SUBS.c.id != sub_id,
        )
    ).scalar()
    return f"{wanted} is now the subscription id of subscription:{holder}; run again to report it"


def _before_after(data: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """The audit entry's before/after: each changed field's old and new value."""
    changes = data["changes"]
    return (
        {change["field"]: change["old"] for change in changes},
        {change["field"]: change["new"] for change in changes},
    )


def _audit(ctx: JobContext, claim: _Claim) -> dict[str, Any]:
    return audit_row(
        actor=ctx.actor,
        action=AUDIT_ACTION,
        entity_type="subscription",
        entity_id=claim.id,
        tenant_id=claim.tenant_id,
        before=claim.before,
        after=claim.after,
    )
