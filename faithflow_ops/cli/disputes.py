"""`faithflow disputes …`: list and show disputes (`disputes monitor` is added from the job
registry)."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from faithflow_ops.cli import output
from faithflow_ops.cli.common import JsonOpt, database

app = typer.Typer(
    rich_markup_mode=None,
    help="Disputes on both scopes: list, show, and the monitor job (pull + evidence alerts).",
    no_args_is_help=True,
)

# column → table header for `disputes list`
_LIST_COLUMNS = {
    "id": "id",
    "tenant": "tenant",
    "scope": "scope",
    "provider": "provider",
    "provider_dispute_id": "provider id",
    "status": "status",
    "amount_minor": "amount",  # as faithflow_ops.money shows it; --json keeps minor units
    "currency": "currency",
    "reason": "reason",
    "evidence_due_by": "evidence due",
    "closed_at": "closed",
}


def _cell(doc: dict[str, Any], key: str) -> Any:
    from faithflow_ops.money import format_money

    if key == "amount_minor":
        return format_money(doc[key], doc["currency"], provider=doc["provider"])
    return output.minute(doc[key])


@app.command("list")
def list_(
    open_only: Annotated[
        bool, typer.Option("--open", help="Only disputes still open (not won, lost or closed).")
    ] = False,
    tenant: Annotated[
        str | None, typer.Option("--tenant", help="Only this tenant's disputes (its slug).")
    ] = None,
    scope: Annotated[
        str | None,
        typer.Option(
            "--scope", help="platform (FaithFlow's invoices) or tenant (a church's payments)."
        ),
    ] = None,
    limit: Annotated[int, typer.Option("--limit", min=1, help="Show at most this many.")] = 100,
    as_json: JsonOpt = False,
) -> None:
    """Disputes, soonest evidence deadline first, with tenant, status and amount (shown as
    UGX 50,000; --json keeps integer minor units)."""
    from faithflow_ops.billing.disputes import list_disputes

    with database().read_session() as session:
        page = list_disputes(session, open_only=open_only, tenant=tenant, scope=scope, limit=limit)
    if output.empty(page.disputes, "dispute", as_json=as_json):
        return
    if as_json:
        output.print_json(page.disputes)
    else:
        output.table(
            list(_LIST_COLUMNS.values()),
            [[_cell(d, key) for key in _LIST_COLUMNS] for d in page.disputes],
        )
    output.list_footer(len(page.disputes), page.total, "dispute", as_json=as_json)


@app.command("show")
def show(
    dispute_id: Annotated[int, typer.Argument(metavar="ID", help="Dispute id (disputes list).")],
    as_json: JsonOpt = False,
) -> None:
    """One dispute: every field, its metadata and the evidence-due alerts sent for it."""
    from faithflow_ops.billing.disputes import dispute_details
    from faithflow_ops.money import format_money

    with database().read_session() as session:
        doc = dispute_details(session, dispute_id)
    if as_json:
        output.print_json(doc)
        return
    alerts = doc.pop("alerts")
    first = ("id", "tenant", "scope", "provider", "provider_dispute_id", "status", "open")
    fields = {key: doc[key] for key in first}
    fields.update({k: v for k, v in doc.items() if k not in first and k != "tenant_id"})
    shown = format_money(doc["amount_minor"], doc["currency"], provider=doc["provider"])
    fields["amount_minor"] = f"{shown} ({doc['amount_minor']} minor units)"
    fields = {("amount" if k == "amount_minor" else k): v for k, v in fields.items()}
    output.record(fields, title=f"dispute {doc['id']}")
    if alerts:
        output.table(
            ["threshold (days)", "sent at", "channel"],
            [[a["threshold_days"], a["sent_at"], a["channel"]] for a in alerts],
            title="evidence-due alerts",
        )
    else:
        output.info("no evidence-due alerts sent")
