"""`faithflow billing …`: self-serve links a church pays or manages its subscription on
(Stripe Checkout / billing portal, Paystack transaction page / manage link)."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Annotated

import typer

from faithflow_ops.cli import output
from faithflow_ops.cli.common import JsonOpt, database, settings

if TYPE_CHECKING:
    from faithflow_ops.billing.links import Link

app = typer.Typer(
    rich_markup_mode=None,
    help="Self-serve billing links: checkout for a plan, the billing portal of a subscription.",
    no_args_is_help=True,
)

TenantOpt = Annotated[str, typer.Option("--tenant", help="The tenant's slug.")]


def _show(link: Link, warnings: list[str], as_json: bool) -> None:
    for message in warnings:
        output.warn(message)
    if as_json:
        output.print_json(link.doc())
        return
    sys.stdout.write(link.url + "\n")  # the URL alone on stdout: `$(faithflow billing …)`
    ref = link.session_id or link.reference or link.subscription_code
    output.info(
        f"{link.provider} {link.kind} link for {link.tenant}" + (f" ({ref})" if ref else "")
    )


def _run(make: Callable[[], tuple[Link, list[str]]]) -> tuple[Link, list[str]]:
    """Call `make()`; a provider failure leaves with its message and exit code 1 or 2."""
    from faithflow_ops.providers._http import ProviderError

    try:
        return make()
    except ProviderError as exc:
        output.abort(str(exc), exc.exit_code)


@app.command("checkout")
def checkout(
    tenant: TenantOpt,
    plan: Annotated[str, typer.Option("--plan", help="The plan's code.")],
    provider: Annotated[
        str | None,
        typer.Option(
            "--provider",
            help="stripe or paystack; needed only when the plan has both stripePriceId and "
            "paystackPlanCode.",
        ),
    ] = None,
    success_url: Annotated[
        str | None,
        typer.Option(
            "--success-url",
            help="Where the church lands after paying (default FAITHFLOW_BILLING_SUCCESS_URL; "
            "{tenant} becomes the slug). Paystack: the callback URL.",
        ),
    ] = None,
    cancel_url: Annotated[
        str | None,
        typer.Option(
            "--cancel-url",
            help="Where Stripe Checkout's back link goes (default FAITHFLOW_BILLING_CANCEL_URL).",
        ),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """A checkout link subscribing the tenant to a plan: a Stripe Checkout Session (the plan's
    stripePriceId, the tenant's existing Stripe customer reused) or a Paystack transaction
    (the plan's paystackPlanCode, the tenant's billing email). Prints the URL."""
    from faithflow_ops.billing import links

    cfg = settings()
    link, warnings = _run(
        lambda: links.checkout(
            database(cfg),
            cfg,
            tenant=tenant,
            plan=plan,
            provider=provider,
            success_url=success_url,
            cancel_url=cancel_url,
        )
    )
    _show(link, warnings, as_json)


@app.command("portal")
def portal(
    tenant: TenantOpt,
    return_url: Annotated[
        str | None,
        typer.Option(
            "--return-url",
            help="Where Stripe's portal sends the church back to (default "
            "FAITHFLOW_BILLING_RETURN_URL, else the portal's configured default).",
        ),
    ] = None,
    provider: Annotated[
        str | None,
        typer.Option(
            "--provider",
            help="stripe or paystack (default: the provider of the tenant's subscription).",
        ),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """A link to manage the tenant's subscription: a Stripe billing-portal session for its
    Stripe customer, or Paystack's manage link for its subscription code. Prints the URL."""
    from faithflow_ops.billing import links

    cfg = settings()
    link, warnings = _run(
        lambda: links.portal(
            database(cfg), cfg, tenant=tenant, provider=provider, return_url=return_url
        )
    )
    _show(link, warnings, as_json)
