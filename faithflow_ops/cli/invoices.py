"""`faithflow invoices …`: list and show invoices, and `reconcile` (the `invoices_reconcile`
job, with its own --provider and --since on top of the options every job command has)."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from faithflow_ops.cli import output
from faithflow_ops.cli.common import JsonOpt, actor, database, parse_now, settings
from faithflow_ops.cli.jobs import DryRunOpt, LimitOpt, NowOpt
from faithflow_ops.errors import UserError, one_of

app = typer.Typer(
    rich_markup_mode=None,
    help="Invoices: list, show, and reconcile them with Stripe and Paystack.",
    no_args_is_help=True,
)

# column → table header for `invoices list`
_LIST_COLUMNS = {
    "id": "id",
    "tenant": "tenant",
    "provider": "provider",
    "provider_invoice_id": "provider invoice",
    "status": "status",
    "amount_due": "due",
    "amount_paid": "paid",
    "period_end": "period ends",
    "paid_at": "paid at",
}


@app.command("list")
def list_(
    tenant: Annotated[
        str | None, typer.Option("--tenant", help="Only this tenant's invoices (its slug).")
    ] = None,
    status: Annotated[
        str | None,
        typer.Option("--status", help="Only this status: draft, open, paid, uncollectible, void."),
    ] = None,
    provider: Annotated[
        str | None, typer.Option("--provider", help="Only stripe or only paystack.")
    ] = None,
    limit: Annotated[int, typer.Option("--limit", min=1, help="Show at most this many.")] = 100,
    as_json: JsonOpt = False,
) -> None:
    """Invoices, newest first, with tenant, provider id, status and amounts."""
    from faithflow_ops.billing.invoices import list_invoices

    with database().read_session() as session:
        page = list_invoices(session, tenant=tenant, status=status, provider=provider, limit=limit)
    if as_json:
        output.print_json(page.invoices)
    else:
        output.table(
            list(_LIST_COLUMNS.values()),
            [[output.day(d[key]) for key in _LIST_COLUMNS] for d in page.invoices],
        )
    if page.total > len(page.invoices):
        output.info(f"showing {len(page.invoices)} of {page.total}; raise --limit to see more")
    elif not as_json:
        output.info(f"{page.total} invoice{'s' if page.total != 1 else ''}")


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
    output.record(doc, title=f"invoice {invoice_id}")
    if trail:
        output.table(
            ["at", "actor", "action", "before", "after"],
            [[a["at"], a["actor"], a["action"], a["before"], a["after"]] for a in trail],
            title="audit",
        )


@app.command("reconcile")
def reconcile(
    provider: Annotated[
        str | None,
        typer.Option(
            "--provider", help="Only stripe or only paystack (default: every configured one)."
        ),
    ] = None,
    since: Annotated[
        str | None,
        typer.Option(
            "--since",
            help="Start of the window (ISO-8601; default: 35 days before --now).",
        ),
    ] = None,
    dry_run: DryRunOpt = False,
    now: NowOpt = None,
    as_json: JsonOpt = False,
    limit: LimitOpt = None,
) -> None:
    """Compare provider invoices with ours; import missing ones, take paid statuses.

    Preview with --dry-run first. Safe fixes (relink_customer, missing_locally, status_mismatch)
    are applied once; the other findings are reported for a human. Runs under the job's lock
    (exit 75 when another run holds it). Schedule: see `faithflow jobs list`
    (CRON_INVOICES_RECONCILE); also POST /tasks/invoices/reconcile.
    """
    from faithflow_ops.jobs import registry
    from faithflow_ops.jobs.base import JobContext, parse_time
    from faithflow_ops.jobs.invoices_reconcile import KEY_VARIABLES, InvoicesReconcile
    from faithflow_ops.models.billing import PROVIDERS

    if provider is not None:
        one_of("--provider", provider, PROVIDERS)
    since_at = None
    if since is not None:
        try:
            since_at = parse_time(since)
        except ValueError:
            raise UserError(
                f"--since {since!r} is not an ISO-8601 time; use e.g. --since 2026-02-01"
            ) from None
    if limit is not None and limit < 1:
        raise UserError(f"--limit {limit} must be 1 or more")
    cfg = settings()
    when = parse_now(now)
    job = InvoicesReconcile([provider] if provider else None, since_at)
    job.window(when)
    _, skipped = job.selected(cfg, require_one=True)  # exit 2 naming the variables if none
    for name in skipped:
        output.warn(f"{KEY_VARIABLES[name]} is not set: {name} is skipped")
    spec = registry.get(job.name)
    result = _run(spec, job, JobContext(
        now=when, dry_run=dry_run, trigger="cli", settings=cfg, limit=limit, actor=actor()
    ), as_json)  # fmt: skip
    if result.status == "skipped":
        output.abort(result.error or "already running", 75)
    if job.provider_error is not None and job.provider_error.exit_code == 2:
        raise typer.Exit(2)
    raise typer.Exit(result.exit_code)


def _run(spec: Any, job: Any, ctx: Any, as_json: bool) -> Any:
    """`jobs.execute` for a job instance carrying this command's own options."""
    import dataclasses

    from faithflow_ops.cli.jobs import TABLE_ROWS, _Bar, _run_streaming_json, render_run
    from faithflow_ops.jobs.base import ActionResult
    from faithflow_ops.jobs.runner import run_job

    db = database(ctx.settings)
    if as_json:
        return _run_streaming_json(db, spec, ctx, job)
    shown: list[ActionResult] = []

    def keep(item: ActionResult) -> None:
        if len(shown) < TABLE_ROWS:
            shown.append(item)

    if output.is_terminal():
        with _Bar(spec.name) as bar:
            ctx = dataclasses.replace(ctx, progress=bar)
            result = run_job(db, spec, ctx, on_action=keep, collect_actions=False, job=job)
    else:
        result = run_job(db, spec, ctx, on_action=keep, collect_actions=False, job=job)
    render_run(result, shown, type(job))
    return result
