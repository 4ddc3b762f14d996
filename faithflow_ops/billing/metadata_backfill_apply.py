"""`faithflow subs backfill`, applying (the plan: billing/metadata_backfill.py).

`UPDATE … WHERE id = :id AND updated_at = :seen` (the optimistic claim), plus "no other
subscription holds this subscription id" when one is written; the canonical keys are merged
into the stored metadata (which the claim proves unchanged since the plan); one audit_log row
per changed subscription in the same transaction. A row changed since the plan is `stale`,
never overwritten. On Postgres a whole batch is one statement (one round trip).
"""

from __future__ import annotations

import datetime as dt
import functools
import json
from collections.abc import Sequence
from typing import Any

from sqlalchemy import Text, bindparam, exists, func, literal_column, select, text, update
from sqlalchemy.orm import Session
from sqlalchemy.sql.dml import Update

from faithflow_ops.actions import Action, decode
from faithflow_ops.audit import audit_row, record_many
from faithflow_ops.billing.metadata_backfill import (
    AUDIT_ACTION,
    SUBS,
    Claim,
    Normalize,
    NormalizeAction,
)
from faithflow_ops.db import rowcount, utcnow


def _claim(action: Action) -> Claim:
    if action.kind != "normalize":
        raise ValueError(f"{action.kind} actions are report-only; nothing to apply")
    if isinstance(action, NormalizeAction):
        return action.claim()
    p = decode(Normalize, action.data)  # an Action made elsewhere from the same data
    return Claim(
        p.subscription_id,
        p.tenant_id,
        p.seen_updated_at,
        p.columns,
        p.metadata_set,
        {change.field: change.old for change in p.changes},
        {change.field: change.new for change in p.changes},
    )


def claim_all(session: Session, actions: Sequence[Action], actor: str) -> int:
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
        params = {"rows": json.dumps(rows), "now": now, "actor": actor, "action": AUDIT_ACTION}
        return rowcount(session.execute(_POSTGRES_CLAIM, params))
    claims = [_claim(action) for action in actions]
    groups: dict[tuple[tuple[str, ...], bool], list[dict[str, Any]]] = {}
    for claim in claims:  # one executemany per shape of change
        shape = (tuple(sorted(claim.columns)), bool(claim.metadata_set))
        groups.setdefault(shape, []).append(_params(claim, now))
    claimed = sum(
        rowcount(session.execute(_sqlite_claim(*shape), params)) for shape, params in groups.items()
    )
    if claimed == len(claims):
        record_many(session, [_audit(actor, claim) for claim in claims])
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


def _params(claim: Claim, now: dt.datetime) -> dict[str, Any]:
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


def why_stale(session: Session, action: Action) -> str:
    """Re-read the row to say why the claim of a `normalize` action failed."""
    p = decode(Normalize, action.data)
    sub_id, seen = p.subscription_id, p.seen_updated_at
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
    wanted = p.columns.get("provider_subscription_id")
    if wanted is None:
        return f"subscription {sub_id} could not be claimed; run again to re-plan it"
    holder = session.execute(
        select(SUBS.c.id).where(
            SUBS.c.provider == p.provider,
            SUBS.c.provider_subscription_id == wanted,
            SUBS.c.id != sub_id,
        )
    ).scalar()
    return f"{wanted} is now the subscription id of subscription:{holder}; run again to report it"


def _audit(actor: str, claim: Claim) -> dict[str, Any]:
    return audit_row(
        actor=actor,
        action=AUDIT_ACTION,
        entity_type="subscription",
        entity_id=claim.id,
        tenant_id=claim.tenant_id,
        before=claim.before,
        after=claim.after,
    )
