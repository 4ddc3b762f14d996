"""`faithflow invoices …`: list and show invoices; `reconcile` and `preview` are the
`invoices_reconcile` job's commands (generated from the registry, with its own --provider and
--since declared in jobs/options.py)."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from faithflow_ops.cli import output
from faithflow_ops.cli.common import JsonOpt, LimitOpt, ProviderOpt, database

app = typer.Typer(
    rich_markup_mode=None,
    help="Invoices: list, show, and reconcile them with Stripe and Paystack.",
    no_args_is_help=True,
)

# column → table header for `invoices list`; amounts as faithflow_ops.money shows them
# (`GHS 450.00`, `JPY 7,900`), `--json` keeps the integer minor units
_LIST_COLUMNS = {
    "id": "id",
    "tenant": "tenant",
    "provider": "provider",
    "provider_invoice_id": "provider invoice",
    "status": "status",
    "currency": "currency",
    "amount_due_minor": "due",
    "amount_paid_minor": "paid",
    "period_end": "period ends",
    "paid_at": "paid at",
}


def _cell(doc: dict[str, Any], key: str) -> Any:
    from faithflow_ops.money import format_money

    if key.endswith("_minor"):
        return format_money(doc[key], doc["currency"], provider=doc["provider"])
    return output.day(doc[key])


@app.command("list")
def list_(
    tenant: Annotated[
        str | None, typer.Option("--tenant", help="Only this tenant's invoices (its slug).")
    ] = None,
    status: Annotated[
        str | None,
        typer.Option("--status", help="Only this status: draft, open, paid, uncollectible, void."),
    ] = None,
    provider: ProviderOpt = None,
    limit: LimitOpt = 100,
    as_json: JsonOpt = False,
) -> None:
    """Invoices, newest first: tenant, provider id, status, currency and the amounts due and
    paid (shown as GHS 450.00; --json keeps integer minor units)."""
    from faithflow_ops.billing.invoices import list_invoices

    with database().read_session() as session:
        page = list_invoices(session, tenant=tenant, status=status, provider=provider, limit=limit)
    output.listing(
        page.invoices,
        page.total,
        "invoice",
        list(_LIST_COLUMNS.values()),
        lambda d: [_cell(d, key) for key in _LIST_COLUMNS],
        as_json=as_json,
    )


@app.command("show")
def show(
    invoice_id: Annotated[int, typer.Argument(metavar="ID", help="Invoice id.")],
    as_json: JsonOpt = False,
) -> None:
    """One invoice: every field, its subscription and its audit trail."""
    from faithflow_ops.billing.invoices import invoice_details

    with database().read_session() as session:
        doc = invoice_details(session, invoice_id)
    if as_json:
        output.print_json(doc)
        return
    trail = doc.pop("audit")
    output.record(_shown(doc), title=f"invoice {invoice_id}")
    if trail:
        output.table(
            ["at", "actor", "action", "before", "after"],
            [[a["at"], a["actor"], a["action"], a["before"], a["after"]] for a in trail],
            title="audit",
        )


def _shown(doc: dict[str, Any]) -> dict[str, Any]:
    """`invoices show`'s record: the amounts as people read them, minor units beside them."""
    from faithflow_ops.money import format_money

    fields = dict(doc)
    for key in ("amount_due", "amount_paid"):
        minor = doc[f"{key}_minor"]
        shown = format_money(minor, doc["currency"], provider=doc["provider"])
        fields[key] = f"{shown} ({minor} minor units)"
        fields.pop(f"{key}_minor", None)
    return fields
