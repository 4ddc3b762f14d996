"""`faithflow retention …`: `retention run` (a job, generated from the registry) and legal
holds (faithflow_ops/retention/holds.py)."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from faithflow_ops.cli import output
from faithflow_ops.cli.common import JsonOpt, actor, database, parse_now

app = typer.Typer(
    rich_markup_mode=None,
    help="Data retention: the retention run (batched, resumable) and legal holds.",
    no_args_is_help=True,
)
TenantOpt = Annotated[str, typer.Option("--tenant", help="The church's slug.")]
NowOpt = Annotated[str | None, typer.Option("--now", help="When (ISO-8601; default now).")]


@app.command("hold")
def hold(
    tenant: TenantOpt,
    reason: Annotated[str, typer.Option("--reason", help="The matter or request it is for.")],
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Check only; change nothing.")] = False,
    now: NowOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Place a legal hold on a tenant: retention purges none of its data until released."""
    from faithflow_ops.retention import holds

    when = parse_now(now)
    with database().session() as session:
        row = holds.place(session, tenant, reason, actor=actor(), now=when)
        doc = holds.hold_doc(row, tenant)
        if dry_run:
            session.rollback()
    output.print_json(doc) if as_json else output.record(doc)
    output.info(f"{'would place' if dry_run else 'placed'} a legal hold on {tenant}")


@app.command("release")
def release(
    tenant: TenantOpt,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Check only; change nothing.")] = False,
    now: NowOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Release a tenant's legal hold: the next retention run purges what is due."""
    from faithflow_ops.retention import holds

    when = parse_now(now)
    with database().session() as session:
        row = holds.release(session, tenant, actor=actor(), now=when)
        doc = holds.hold_doc(row, tenant)
        if dry_run:
            session.rollback()
    output.print_json(doc) if as_json else output.record(doc)
    output.info(f"{'would release' if dry_run else 'released'} the legal hold on {tenant}")


@app.command("holds")
def list_holds(
    all_: Annotated[bool, typer.Option("--all", help="Released holds too.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Legal holds in force (or every one with --all)."""
    from faithflow_ops.retention import holds

    with database().read_session() as session:
        rows = holds.list_holds(session, include_released=all_)
    if as_json:
        output.print_json(rows)
        return
    if rows:
        output.table(
            ("tenant", "reason", "placed", "by", "released"),
            [(r["tenant"], r["reason"], r["placed_at"], r["placed_by"], r["released_at"] or "")
             for r in rows],
        )  # fmt: skip
    output.info(f"{len(rows)} legal hold(s)" if rows else "no legal holds")


@app.command("due")
def due(now: NowOpt = None, as_json: JsonOpt = False) -> None:
    """Rows due now per tenant and data class (the preview's totals; tenants on legal hold are
    left out), with the platform default periods from the settings."""
    from faithflow_ops.cli.common import settings
    from faithflow_ops.retention import purge

    when = parse_now(now)
    config = settings()
    with database().read_session() as session:
        counts = purge.due_counts(session, when, config.retention_days)
    rows: list[dict[str, Any]] = [
        {"tenant": tenant, "class": data_class, "rows": n}
        for tenant in sorted(counts, key=lambda t: (t is not None, t or ""))
        for data_class, n in sorted(counts[tenant].items())
    ]
    if as_json:
        output.print_json(rows)
        return
    if rows:
        output.table(
            ("tenant", "class", "rows"),
            [(r["tenant"] or "(platform)", r["class"], r["rows"]) for r in rows],
        )
    output.info(f"{sum(r['rows'] for r in rows)} row(s) due" if rows else "nothing is due")
