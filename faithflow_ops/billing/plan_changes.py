"""Plan changes (`faithflow subs change-plan`, `subs changes`, `subs cancel-change`).

A change moves a tenant's live subscription to another plan or billing interval. It is worked
out in three steps, like the billing links (billing/links.py), one module each; this module
holds the commands that run them:

1. `prepare` (billing/plan_change_prepare.py) reads the database and settles everything: the
   subscription, the target plan, the kind, when it takes effect, the provider calls. Every
   refusal an operator can fix happens here (exit 2), before any call leaves the machine.
   `--dry-run` stops after this step. The rules it applies and the plain data it settles into
   (`ChangeRequest`): billing/plan_change_rules.py.
2. `execute` (billing/plan_change_calls.py) makes the provider calls, outside any database
   transaction.
3. `record` (billing/plan_change_record.py) writes the `plan_changes` row (and, for a change
   applied now, the subscription's new plan) with its audit entries, in one transaction. A
   provider refusal is recorded too: the row is `rejected` with the provider's message.

Decisions (docs/plan-changes.md explains them for operators):

- Kind: the same tier (`tier_rank`) in another interval is an `interval_change`; otherwise a
  higher tier is an `upgrade` and a lower one a `downgrade`; within a tier and interval the
  price per month decides (higher: upgrade; equal or lower: downgrade, nothing more to charge).
- `--interval`: the target is the `--to` plan when it already bills in that interval, else the
  one active plan of the same tier and currency (and Stripe product, when the plan names one)
  that does. So `--to <current plan> --interval year` is "the same plan, yearly".
- When: on Stripe upgrades now (Stripe prorates), on Paystack at the period end (Paystack does
  not prorate: an upgrade now charges the new plan in full on top of the period already paid);
  downgrades and interval changes at the period end (`current_period_end`, or `trial_end` of a
  trial with no period yet). `--at` overrides; an upgrade at the period end and anything but
  a Stripe upgrade now are not prorated.
- Refused: a subscription past due, unpaid or suspended (settle first); a tenant with no active
  or trialing subscription; a target plan inactive or in another currency; the same plan and
  interval; a change already scheduled for the subscription (`--replace` cancels it first).
- Stripe, now: `GET /v1/subscriptions/{id}` for the item, then `POST /v1/subscriptions/{id}`
  with the item's new price and `proration_behavior`. At the period end: a subscription
  schedule from the subscription, then a second phase on the new price from the current
  phase's end (released once it starts); the schedule's phase end is the effective time.
- Paystack (no in-place change): `POST /subscription/disable` of the old subscription (code +
  email token: it stops renewing) and `POST /subscription` for the customer on the new plan,
  with `start_date` = the period end (or now: Paystack charges the new plan in full at once).
  Both codes go into `provider_refs`. A change applied now also moves the local subscription
  to the new code, so the provider's later events for it land on the same row.
- Paystack, now: the unused part of the period paid on the old plan is refunded
  (`POST /refund`, `transaction` = the reference of the charge that paid the period, `amount`
  = paid × unused seconds / period seconds, rounded down, at most what was paid). The charge:
  the subscription's paid Paystack invoice with a `paystackReference` whose period covers now,
  else the newest one (its period then comes from the subscription). Unknown, or already
  refunded by an earlier change: refused (exit 2) unless `--no-refund` says the church pays
  the overlap twice. A trial with no paid charge has nothing to refund. Order: disable, create,
  then refund — the refund only once the new plan is in place, so a failed create never leaves
  a refund for a period the church keeps; a failed refund leaves the change `applied` with the
  failure on the row (`error`, `provider_refs.refund_error`) and exit 1, for an operator to
  refund by hand (the amount owed and the transaction are named).
- A change scheduled for the period end is applied locally by `faithflow subs automate`
  (`apply_plan_change`) once `effective_at` has passed; a Paystack subscription moves to the
  new code then (`move_to_new_paystack_code`, shared with a change applied now). Until then
  the webhooks hold the new code as pending and keep the old row live (webhooks/paystack.py).
- Cancel: only a `scheduled` change. Stripe: the schedule is released (the subscription keeps
  its current price). Paystack: the new subscription is disabled and the old one enabled again.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from faithflow_ops.billing.plan_change_calls import execute, undo_provider_side
from faithflow_ops.billing.plan_change_prepare import prepare
from faithflow_ops.billing.plan_change_record import cancel_row, change_doc, plan_codes, record
from faithflow_ops.billing.plan_change_rules import SECRET_SETTINGS, cancel_calls
from faithflow_ops.clock import iso
from faithflow_ops.db import utcnow
from faithflow_ops.errors import NotFound, UserError, one_of
from faithflow_ops.models import PlanChange, Subscription, Tenant
from faithflow_ops.models.billing import PLAN_CHANGE_STATUSES
from faithflow_ops.providers._http import ProviderError
from faithflow_ops.tenancy.tenants import get_tenant

if TYPE_CHECKING:
    from faithflow_ops.config import Settings
    from faithflow_ops.db import Database
    from faithflow_ops.providers._http import RetryPolicy


@dataclass(frozen=True)
class ChangeResult:
    doc: dict[str, Any]  # the `--json` document
    warnings: list[str]
    notes: list[str]
    error: ProviderError | None  # a provider refusal or outage (the row is rejected)
    refund_error: str | None = None  # the change is applied but its refund failed (exit 1)


def change_plan(
    db: Database,
    settings: Settings,
    *,
    tenant: str,
    to: str,
    actor: str,
    interval: str | None = None,
    at: str | None = None,
    dry_run: bool = False,
    replace_scheduled: bool = False,
    reason: str | None = None,
    subscription_id: int | None = None,
    no_refund: bool = False,
    policy: RetryPolicy | None = None,
    now: dt.datetime | None = None,
) -> ChangeResult:
    """`subs change-plan`: prepare (read), then unless a dry run call the provider and record."""
    now = now or utcnow()
    with db.read_session() as session:
        request = prepare(
            session,
            settings,
            tenant=tenant,
            to=to,
            actor=actor,
            interval=interval,
            at=at,
            replace_scheduled=replace_scheduled,
            reason=reason,
            subscription_id=subscription_id,
            no_refund=no_refund,
            now=now,
        )
    calls = request.calls()
    if dry_run:
        doc = {"id": None, "dry_run": True, "status": "dry_run", **request.doc()}
        doc["would_be"] = "applied" if request.at == "now" else "scheduled"
        doc["provider_calls"] = calls
        doc["provider_refs"] = {}
        doc["error"] = None
        return ChangeResult(doc, request.warnings, [], None)
    outcome = execute(settings, request, policy=policy, now=now)
    with db.session() as session:
        change, notes = record(session, request, outcome, now=now)
        doc = {"dry_run": False, **request.doc()}
        doc.update(change_doc(change, plan_codes(session), request.tenant))
    refs = outcome.provider_refs
    if doc["refund"] is not None:  # what was planned, and what came of it
        refund = {
            **doc["refund"],
            "id": refs.get("refund_id"),
            "status": refs.get("refund_status"),
            "error": refs.get("refund_error"),
        }
        if "refund_transaction" in refs:
            refund["amount_minor"] = refs.get("refund_amount")
        elif refund["amount_minor"]:
            refund["amount_minor"] = 0
            refund["note"] += "; not refunded: the change was not made"
        doc["refund"] = refund
    doc["provider_calls"] = calls
    return ChangeResult(doc, request.warnings, notes, outcome.error, outcome.refund_error)


def list_changes(
    session: Session,
    *,
    tenant: str | None = None,
    status: str | None = None,
    limit: int = 100,
) -> tuple[list[dict[str, Any]], int]:
    """Plan changes, newest first; and how many match in all."""
    if limit < 1:
        raise UserError(f"limit {limit} must be 1 or more")
    conditions = []
    if status is not None:
        conditions.append(PlanChange.status == one_of("--status", status, PLAN_CHANGE_STATUSES))
    if tenant is not None:
        conditions.append(PlanChange.tenant_id == get_tenant(session, tenant).id)
    total = session.scalar(select(func.count()).select_from(PlanChange).where(*conditions)) or 0
    rows = session.execute(
        select(PlanChange, Tenant.slug)
        .join(Tenant, Tenant.id == PlanChange.tenant_id)
        .where(*conditions)
        .order_by(PlanChange.id.desc())
        .limit(limit)
    ).tuples()
    plans = plan_codes(session)
    return [change_doc(change, plans, slug) for change, slug in rows], total


def _refuse_cancel(change: PlanChange) -> UserError:
    if change.status == "applied":
        when = iso(change.applied_at) or "?"
        return UserError(
            f"plan change {change.id} was applied at {when}; an applied change cannot be "
            "canceled — change the plan back with `faithflow subs change-plan`"
        )
    if change.status == "canceled":
        return UserError(
            f"plan change {change.id} is already canceled (at {iso(change.canceled_at)}); "
            "nothing to do"
        )
    return UserError(
        f"plan change {change.id} was rejected ({change.error or 'no error recorded'}); it never "
        "took effect, so there is nothing to cancel"
    )


def cancel_change(
    db: Database,
    settings: Settings,
    change_id: int,
    *,
    actor: str,
    reason: str | None = None,
    policy: RetryPolicy | None = None,
    now: dt.datetime | None = None,
) -> tuple[dict[str, Any], list[str]]:
    """`subs cancel-change`: undo a scheduled change at the provider, then mark it canceled."""
    now = now or utcnow()
    with db.read_session() as session:
        change = session.get(PlanChange, change_id)
        if change is None:
            raise NotFound(f"no plan change with id {change_id}; see `faithflow subs changes`")
        if change.status != "scheduled":
            raise _refuse_cancel(change)
        sub = session.get(Subscription, change.subscription_id)
        assert sub is not None
        provider, refs, tenant_id = sub.provider, dict(change.provider_refs or {}), sub.tenant_id
    if cancel_calls(provider, refs):
        settings.require(*SECRET_SETTINGS[provider])
    done = undo_provider_side(settings, provider, refs, policy=policy, now=now)
    why = reason.strip() if reason and reason.strip() else "canceled by an operator"
    with db.session() as session:
        if not cancel_row(session, change_id, actor=actor, now=now, why=why, tenant_id=tenant_id):
            current = session.get(PlanChange, change_id)
            assert current is not None
            raise UserError(
                f"plan change {change_id} became {current.status} while it was being canceled "
                f"(the provider side was undone: {'; '.join(done) or 'nothing to undo'}); check "
                "`faithflow subs changes` and the subscription"
            )
        change = session.get(PlanChange, change_id, populate_existing=True)
        assert change is not None
        slug = session.scalar(select(Tenant.slug).where(Tenant.id == tenant_id)) or ""
        doc = change_doc(change, plan_codes(session), slug)
    return doc, done
