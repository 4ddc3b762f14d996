"""Plan changes, step 2 (`execute`): the provider calls a settled `ChangeRequest` makes, made
outside any database transaction — Stripe's price change or subscription schedule, Paystack's
disable + create (+ refund) — and `undo_provider_side`, which takes back a scheduled change's
calls (`subs cancel-change`, `--replace`). A provider refusal comes back as a `rejected`
`Outcome` for `record` to write. The order of the calls and why: billing/plan_changes.py."""

from __future__ import annotations

import datetime as dt
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from faithflow_ops.billing.plan_change_rules import ChangeRequest, Outcome
from faithflow_ops.clock import iso
from faithflow_ops.money import format_money
from faithflow_ops.providers._http import ProviderError

if TYPE_CHECKING:
    from faithflow_ops.config import Settings
    from faithflow_ops.providers._http import RetryPolicy
    from faithflow_ops.providers.paystack import PaystackAPI


def undo_provider_side(
    settings: Settings,
    provider: str,
    refs: dict[str, Any],
    *,
    policy: RetryPolicy | None = None,
    now: dt.datetime | None = None,
) -> list[str]:
    """Take back what a scheduled change set up at the provider; what was done, as text."""
    done: list[str] = []
    if provider == "stripe":
        from faithflow_ops.providers.stripe import StripeAPI

        schedule = refs.get("stripe_schedule")
        if schedule:
            with StripeAPI(settings, policy) as api:
                api.release_schedule(str(schedule), now=now)
            done.append(f"released Stripe schedule {schedule}")
        return done
    from faithflow_ops.providers.paystack import PaystackAPI

    new, new_token = refs.get("paystack_new_subscription"), refs.get("paystack_new_email_token")
    old, old_token = refs.get("paystack_old_subscription"), refs.get("paystack_old_email_token")
    with PaystackAPI(settings, policy) as paystack:
        if new and new_token:
            paystack.disable_subscription(str(new), str(new_token))
            done.append(f"disabled Paystack subscription {new}")
        elif new:
            raise ProviderError(
                "paystack",
                "subscription disable",
                f"no email token was recorded for {new}; disable it on the Paystack dashboard",
            )
        if old and old_token:
            paystack.enable_subscription(str(old), str(old_token))
            done.append(f"enabled Paystack subscription {old} again")
    return done


def execute(
    settings: Settings,
    request: ChangeRequest,
    *,
    policy: RetryPolicy | None = None,
    now: dt.datetime | None = None,
) -> Outcome:
    """Make the provider calls; a provider failure comes back as a `rejected` outcome."""
    refs: dict[str, Any] = {}
    replaced = False
    try:
        if request.replaces is not None:
            undo_provider_side(
                settings, request.provider, request.replaces.provider_refs, policy=policy, now=now
            )
            replaced = True
        if request.provider == "stripe":
            outcome = _stripe(settings, request, refs, policy, now)
        else:
            outcome = _paystack(settings, request, refs, policy)
    except ProviderError as exc:
        refs.setdefault("failed_operation", exc.operation)
        if request.replaces is not None and not replaced:
            raise  # nothing changed: the old change stays scheduled, no new row
        return Outcome("rejected", request.effective_at, refs, exc, replaced)
    return replace(outcome, replaced_canceled=replaced)


def _stripe(
    settings: Settings,
    request: ChangeRequest,
    refs: dict[str, Any],
    policy: RetryPolicy | None,
    now: dt.datetime | None,
) -> Outcome:
    from faithflow_ops.providers.stripe import StripeAPI

    refs["stripe_subscription"] = request.provider_subscription_id
    refs["to_price"] = request.to_provider_plan
    with StripeAPI(settings, policy) as api:
        item = api.subscription_item(request.provider_subscription_id)
        refs.update(stripe_item=item.item_id, from_price=item.price_id)
        if request.at == "now":
            assert request.proration_behavior is not None
            refs["proration_behavior"] = request.proration_behavior
            api.change_subscription_price(
                item,
                price_id=request.to_provider_plan,
                proration_behavior=request.proration_behavior,
                now=now,
            )
            return Outcome("applied", request.effective_at, refs)
        made = api.schedule_price_change(item, price_id=request.to_provider_plan, now=now)
    refs["stripe_schedule"] = made.schedule_id
    if made.effective_at != request.effective_at:
        refs["recorded_period_end"] = iso(request.effective_at)
    return Outcome("scheduled", made.effective_at, refs)


def _paystack(
    settings: Settings,
    request: ChangeRequest,
    refs: dict[str, Any],
    policy: RetryPolicy | None,
) -> Outcome:
    from faithflow_ops.providers.paystack import PaystackAPI

    assert request.email_token is not None and request.customer is not None
    old = request.provider_subscription_id
    refs.update(paystack_old_subscription=old, to_plan_code=request.to_provider_plan)
    start = None if request.at == "now" else iso(request.effective_at)
    with PaystackAPI(settings, policy) as paystack:
        paystack.disable_subscription(old, request.email_token)
        refs["paystack_old_email_token"] = request.email_token
        refs["paystack_old_disabled"] = True
        try:
            made = paystack.create_subscription(
                customer=request.customer, plan_code=request.to_provider_plan, start_date=start
            )
        except ProviderError as exc:
            # Do not leave the church without a subscription: renew the old one again.
            try:
                paystack.enable_subscription(old, request.email_token)
                refs["paystack_old_disabled"] = False
                exc.message += f" ({old} was enabled again)"
            except ProviderError as again:
                exc.message += (
                    f" ({old} is disabled and enabling it again failed: {again.message}; enable "
                    "it on the Paystack dashboard)"
                )
            raise
        refs["paystack_new_subscription"] = made.code
        if made.email_token:
            refs["paystack_new_email_token"] = made.email_token
        if start:
            refs["start_date"] = start
        # Only now that the new plan is in place: a refund before it could leave the church
        # refunded for a period it keeps when the create fails.
        refund_error = _refund(paystack, request, refs)
    status = "applied" if request.at == "now" else "scheduled"
    return Outcome(status, request.effective_at, refs, refund_error=refund_error)


def _refund(paystack: PaystackAPI, request: ChangeRequest, refs: dict[str, Any]) -> str | None:
    """The refund of a Paystack change now (its refs), or the message of its failure: the
    change stands either way (the new subscription exists and has been charged)."""
    plan = request.refund
    if plan is None or plan.call() is None or plan.transaction is None:
        return None
    refs.update(
        refund_transaction=plan.transaction,
        refund_amount=plan.amount_minor,
        refund_currency=plan.currency,
    )
    note = (
        f"faithflow plan change {request.from_plan} -> {request.to_plan}: unused "
        f"{plan.unused_seconds}s of {plan.period_seconds}s"
    )
    try:
        made = paystack.refund(plan.transaction, plan.amount_minor, merchant_note=note)
    except ProviderError as exc:
        status = f" (HTTP {exc.status})" if exc.status is not None else ""
        tries = f" after {exc.attempts} attempts" if exc.attempts > 1 else ""
        owed = format_money(plan.amount_minor, plan.currency, provider="paystack")
        message = (
            f"the refund of {owed} of transaction {plan.transaction} failed{status}{tries}: "
            f"{exc.message}; the new plan is in place and charged, so the church is owed this "
            f"amount — refund it on the Paystack dashboard (transaction {plan.transaction}, "
            f"amount {owed})"
        )
        refs["refund_error"] = message
        return message
    refs.update(refund_id=made.id, refund_status=made.status, refund_amount=made.amount)
    return None
