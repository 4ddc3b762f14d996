"""`faithflow subs …`: list, show and record subscriptions (`subs backfill` is added from the job
registry)."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from faithflow_ops.cli import output
from faithflow_ops.cli.common import (
    JsonOpt,
    LimitOpt,
    ProviderOpt,
    actor,
    database,
    parse_now,
    settings,
)
from faithflow_ops.cli.plans import MetaOpt, parse_meta

app = typer.Typer(
    rich_markup_mode=None,
    help="Subscriptions: list, show, record one by hand, and the metadata backfill job.",
    no_args_is_help=True,
)

_TIME_HELP = "ISO-8601 time, e.g. 2026-03-01T09:00:00Z"


# column → table header for `subs list`
_LIST_COLUMNS = {
    "id": "id",
    "tenant": "tenant",
    "plan": "plan",
    "provider": "provider",
    "status": "status",
    "provider_subscription_id": "provider sub id",
    "provider_customer_id": "customer id",
    "past_due_since": "past due since",
    "current_period_end": "period ends",
}


@app.command("list")
def list_(
    status: Annotated[
        str | None,
        typer.Option(
            "--status",
            help="Only this status: trialing, active, past_due, unpaid, suspended, canceled or "
            "incomplete.",
        ),
    ] = None,
    tenant: Annotated[
        str | None, typer.Option("--tenant", help="Only this tenant's subscriptions (its slug).")
    ] = None,
    provider: ProviderOpt = None,
    limit: LimitOpt = 100,
    as_json: JsonOpt = False,
) -> None:
    """Subscriptions, oldest first, with tenant, plan and provider ids."""
    from faithflow_ops.billing.subscriptions import list_subscriptions, subscription_doc

    with database().read_session() as session:
        page = list_subscriptions(
            session, status=status, tenant=tenant, provider=provider, limit=limit
        )
        docs = [subscription_doc(s) for s in page.subscriptions]
    output.listing(
        docs,
        page.total,
        "subscription",
        list(_LIST_COLUMNS.values()),
        lambda d: [output.day(d[key]) for key in _LIST_COLUMNS],
        as_json=as_json,
    )


@app.command("show")
def show(
    subscription_id: Annotated[int, typer.Argument(metavar="ID", help="Subscription id.")],
    as_json: JsonOpt = False,
) -> None:
    """One subscription: every field, its raw metadata and its invoices."""
    from faithflow_ops.billing.subscriptions import get_subscription, subscription_details

    with database().read_session() as session:
        doc = subscription_details(session, get_subscription(session, subscription_id))
    if as_json:
        output.print_json(doc)
        return
    invoices = doc.pop("invoices")
    _render_record(doc)
    output.section(
        ["id", "provider invoice", "status", "due", "paid", "currency", "due at", "paid at"],
        [
            [
                i["id"],
                i["provider_invoice_id"],
                i["status"],
                _invoice_money(i["amount_due"], i["currency"], doc.get("provider")),
                _invoice_money(i["amount_paid"], i["currency"], doc.get("provider")),
                i["currency"],
                i["due_at"],
                i["paid_at"],
            ]
            for i in invoices
        ],
        "invoices",
        "no invoices",
    )


@app.command("add")
def add(
    tenant: Annotated[str, typer.Option("--tenant", help="The tenant's slug.")],
    plan: Annotated[str, typer.Option("--plan", help="The plan's code.")],
    provider: Annotated[str, typer.Option("--provider", help="stripe or paystack.")],
    status: Annotated[
        str,
        typer.Option(
            "--status",
            help="trialing, active, past_due, unpaid, suspended, canceled or incomplete.",
        ),
    ] = "active",
    provider_subscription_id: Annotated[
        str | None,
        typer.Option(
            "--provider-subscription-id",
            help="The provider's id: sub_… (Stripe) or SUB_… (Paystack).",
        ),
    ] = None,
    customer_id: Annotated[
        str | None,
        typer.Option(
            "--customer-id", help="The provider's customer: cus_… (Stripe) or CUS_… (Paystack)."
        ),
    ] = None,
    trial_end: Annotated[
        str | None, typer.Option("--trial-end", help=f"End of the trial; {_TIME_HELP}.")
    ] = None,
    period_end: Annotated[
        str | None,
        typer.Option("--current-period-end", help=f"End of the paid period; {_TIME_HELP}."),
    ] = None,
    past_due_since: Annotated[
        str | None,
        typer.Option(
            "--past-due-since",
            help=f"When payment became overdue (default: now, for overdue statuses); {_TIME_HELP}.",
        ),
    ] = None,
    meta: MetaOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Record a subscription for a tenant (one the provider already has, or a manual one)."""
    from faithflow_ops.billing.subscriptions import add_subscription, subscription_doc

    metadata = parse_meta(meta)
    with database().session() as session:
        sub = add_subscription(
            session,
            tenant=tenant,
            plan=plan,
            provider=provider,
            status=status,
            provider_subscription_id=provider_subscription_id,
            provider_customer_id=customer_id,
            trial_end=parse_now(trial_end, "--trial-end") if trial_end is not None else None,
            current_period_end=(
                parse_now(period_end, "--current-period-end") if period_end is not None else None
            ),
            past_due_since=(
                parse_now(past_due_since, "--past-due-since")
                if past_due_since is not None
                else None
            ),
            metadata=metadata,
            actor=actor(),
        )
        doc = subscription_doc(sub)
    if as_json:
        output.print_json(doc)
    else:
        _render_record(doc)
    output.info(
        f"added subscription {doc['id']}: {doc['tenant']} on {doc['plan']} "
        f"via {doc['provider']} ({doc['status']})"
    )


def _render_record(doc: dict[str, Any]) -> None:
    first = ("id", "tenant", "plan", "provider", "status")
    fields = {key: doc[key] for key in first}
    fields.update(
        {k: v for k, v in doc.items() if k not in first and k not in ("tenant_id", "plan_id")}
    )
    output.record(fields, title=f"subscription {doc['id']}")


# --- plan changes (billing/plan_changes.py) ----------------------------------------------------

_CHANGE_COLUMNS = {
    "id": "id",
    "tenant": "tenant",
    "subscription_id": "sub",
    "kind": "kind",
    "from_plan": "from",
    "to_plan": "to",
    "to_interval": "interval",
    "status": "status",
    "effective_at": "effective",
    "requested_by": "by",
    "error": "error",
}


def _invoice_money(amount: str | None, currency: str, provider: str | None) -> str | None:
    """An invoice amount of `subscription_details` (ISO major units, "450.00") as
    faithflow_ops.money shows it: `GHS 450.00`."""
    from faithflow_ops.money import ISO_EXPONENTS, format_money, to_minor

    if amount is None or currency not in ISO_EXPONENTS:
        return amount
    return format_money(to_minor(amount, currency), currency, provider=provider)


def _paystack_money(minor: int | None, currency: str) -> str:
    from faithflow_ops.money import format_money

    return format_money(minor or 0, currency, provider="paystack")


def _refund_text(refund: dict[str, Any]) -> str:
    """A plan change's refund in one line: how much of what was paid, of which charge."""
    amount = _paystack_money(refund.get("amount_minor"), refund["currency"])
    paid = _paystack_money(refund.get("paid_minor"), refund["currency"])
    text = f"{amount} of {paid} paid"
    if refund.get("transaction"):
        text += f" (transaction {refund['transaction']})"
    if refund.get("note"):
        text += f"; {refund['note']}"
    return text


def _provider_failure(exc: Exception) -> int:
    from faithflow_ops.providers._http import ProviderError

    return exc.exit_code if isinstance(exc, ProviderError) else 1


@app.command("change-plan")
def change_plan(
    tenant: Annotated[str, typer.Option("--tenant", help="The tenant's slug.")],
    to: Annotated[str, typer.Option("--to", help="The target plan's code.")],
    interval: Annotated[
        str | None,
        typer.Option(
            "--interval",
            help="month or year: the --to plan's variant billed per this interval (--to "
            "<current plan> --interval year = the same plan, yearly).",
        ),
    ] = None,
    at: Annotated[
        str | None,
        typer.Option(
            "--at",
            help="now or period_end (default: a Stripe upgrade now with proration; Paystack "
            "upgrades, downgrades and interval changes at the period end). Paystack does not "
            "prorate: --at now charges the new plan in full and refunds the unused part of the "
            "period paid on the old plan (POST /refund on the charge that paid it).",
        ),
    ] = None,
    no_refund: Annotated[
        bool,
        typer.Option(
            "--no-refund",
            help="Paystack --at now only: refund nothing, so the church pays the overlap twice "
            "(when no paid charge of the period is recorded and the church wants the change now).",
        ),
    ] = False,
    dry_run: Annotated[
        bool,
        typer.Option(
            "--dry-run", help="Check every rule and print what would be done; call nothing."
        ),
    ] = False,
    replace: Annotated[
        bool, typer.Option("--replace", help="Cancel a change already scheduled, then this one.")
    ] = False,
    reason: Annotated[
        str | None, typer.Option("--reason", help="Why (kept on the change and in the audit log).")
    ] = None,
    subscription: Annotated[
        int | None,
        typer.Option(
            "--subscription",
            help="The subscription id, when the tenant has more than one live subscription.",
        ),
    ] = None,
    now: Annotated[
        str | None,
        typer.Option(
            "--now",
            help=f"The time to work from (timing, the unused part of the period refunded); "
            f"default: the clock; {_TIME_HELP}.",
        ),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Move the tenant's subscription to another plan or interval: upgrade, downgrade or
    interval change, at the provider (Stripe price update or schedule; Paystack disable + new
    subscription, and for a change now a refund of the unused period) and recorded in
    `subs changes`."""
    from faithflow_ops.billing.plan_changes import change_plan as run
    from faithflow_ops.providers._http import ProviderError

    cfg = settings()
    try:
        result = run(
            database(cfg),
            cfg,
            tenant=tenant,
            to=to,
            actor=actor(),
            interval=interval,
            at=at,
            dry_run=dry_run,
            replace_scheduled=replace,
            reason=reason,
            subscription_id=subscription,
            no_refund=no_refund,
            now=parse_now(now),
        )
    except ProviderError as exc:  # --replace could not undo the scheduled change: nothing done
        output.abort(str(exc), exc.exit_code)
    for message in result.warnings:
        output.warn(message)
    doc = result.doc
    if as_json:
        output.print_json(doc)
    else:
        calls = doc.pop("provider_calls")
        fields = dict(doc)
        if doc.get("refund"):
            fields["refund"] = _refund_text(doc["refund"])
        title = "plan change (dry run)" if dry_run else f"plan change {doc['id']}"
        output.record(fields, title=title)
        for line in calls:
            output.info(("would call: " if dry_run else "called: ") + line)
    for note in result.notes:
        output.info(note)
    if result.error is not None:
        output.abort(
            f"plan change {doc['id']} rejected: {result.error}", _provider_failure(result.error)
        )
    if result.refund_error is not None:
        output.abort(f"plan change {doc['id']} applied, but {result.refund_error}", 1)
    refund = doc.get("refund") or {}
    if refund.get("id"):
        output.info(
            f"refunded {_paystack_money(refund['amount_minor'], refund['currency'])} of "
            f"{refund['transaction']}: Paystack refund {refund['id']} ({refund['status']})"
        )
    what = f"{doc['kind']} {doc['from_plan']} -> {doc['to_plan']} for {doc['tenant']}"
    if dry_run:
        output.info(f"dry run: {what} would be {doc['would_be']}; nothing was sent or written")
    elif doc["status"] == "applied":
        output.info(f"plan change {doc['id']} applied: {what}")
    else:
        output.info(f"plan change {doc['id']} scheduled: {what}, effective {doc['effective_at']}")


@app.command("changes")
def changes(
    tenant: Annotated[
        str | None, typer.Option("--tenant", help="Only this tenant's changes (its slug).")
    ] = None,
    status: Annotated[
        str | None,
        typer.Option("--status", help="Only this status: scheduled, applied, rejected, canceled."),
    ] = None,
    limit: LimitOpt = 100,
    as_json: JsonOpt = False,
) -> None:
    """Plan changes, newest first: kind, plans, status, when, who asked, any provider error."""
    from faithflow_ops.billing.plan_changes import list_changes

    with database().read_session() as session:
        docs, total = list_changes(session, tenant=tenant, status=status, limit=limit)
    output.listing(
        docs,
        total,
        "plan change",
        list(_CHANGE_COLUMNS.values()),
        lambda d: [d[key] for key in _CHANGE_COLUMNS],
        as_json=as_json,
    )


@app.command("cancel-change")
def cancel_change(
    change_id: Annotated[int, typer.Argument(metavar="ID", help="Plan change id.")],
    reason: Annotated[str | None, typer.Option("--reason", help="Why (for the audit log).")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Cancel a scheduled plan change: release its Stripe schedule, or disable the new Paystack
    subscription and enable the old one again."""
    from faithflow_ops.billing.plan_changes import cancel_change as run
    from faithflow_ops.providers._http import ProviderError

    cfg = settings()
    try:
        doc, done = run(database(cfg), cfg, change_id, actor=actor(), reason=reason)
    except ProviderError as exc:
        output.abort(f"plan change {change_id} is still scheduled: {exc}", exc.exit_code)
    if as_json:
        output.print_json(doc)
    else:
        output.record(doc, title=f"plan change {doc['id']}")
    for line in done:
        output.info(line)
    output.info(f"plan change {change_id} canceled")


@app.command("cancel")
def cancel(
    tenant: Annotated[str, typer.Option("--tenant", help="The tenant's slug.")],
    at_period_end: Annotated[
        bool,
        typer.Option(
            "--at-period-end",
            help="Let it run to the end of the paid period, then end (default: end it now).",
        ),
    ] = False,
    subscription: Annotated[
        int | None,
        typer.Option(
            "--subscription", help="The subscription id, when the tenant has more than one live."
        ),
    ] = None,
    reason: Annotated[str | None, typer.Option("--reason", help="Why (for the audit log).")] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Check and print what would be done; change nothing.")
    ] = False,
    yes: Annotated[
        bool, typer.Option("--yes", "-y", help="Do not ask for confirmation (for scripts).")
    ] = False,
    now: Annotated[
        str | None, typer.Option("--now", help=f"When it is canceled; default: now; {_TIME_HELP}.")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Cancel the tenant's live subscription: at the provider (Stripe: DELETE the subscription,
    or cancel_at_period_end; Paystack: disable), then recorded here and audited. Asks first;
    not on a terminal it needs --yes."""
    from faithflow_ops.billing.cancellation import cancel as run
    from faithflow_ops.providers._http import ProviderError

    cfg = settings()
    when = parse_now(now)
    mode = "at the period end" if at_period_end else "now"
    options: dict[str, Any] = {
        "tenant": tenant,
        "actor": actor(),
        "now": when,
        "at_period_end": at_period_end,
        "subscription_id": subscription,
        "reason": reason,
    }
    try:
        result = run(database(cfg), cfg, dry_run=True, **options)  # every check, first
        if not dry_run:
            calls = "; ".join(result.calls) or "no provider call"
            output.confirm(
                f"cancel subscription {result.doc['id']} of {result.doc['tenant']} {mode} "
                f"({calls})?",
                yes=yes,
            )
            result = run(database(cfg), cfg, **options)
    except ProviderError as exc:  # nothing recorded: our record is as it was
        output.abort(f"not canceled, nothing recorded: {exc}", exc.exit_code)
    if as_json:
        output.print_json({**result.doc, "provider_calls": result.calls, "dry_run": dry_run})
    else:
        _render_record(result.doc)
    for line in result.calls:
        output.info(("would call: " if dry_run else "called: ") + line)
    for note in result.notes:
        output.info(note)
    doc = result.doc
    if dry_run:
        output.info(
            f"dry run: subscription {doc['id']} of {doc['tenant']} would be canceled {mode}; "
            "nothing was sent or written"
        )
    else:
        output.info(f"subscription {doc['id']} of {doc['tenant']} canceled {mode}")
