"""`faithflow audit …`: browse the audit log (who changed what, when, before and after)."""

from __future__ import annotations

from typing import Annotated

import typer

from faithflow_ops.cli import output
from faithflow_ops.cli.common import JsonOpt, LimitOpt, database, parse_now

app = typer.Typer(
    rich_markup_mode=None,
    help="The audit log: who changed what and when, with before and after.",
    no_args_is_help=True,
)


@app.command("list")
def list_(
    tenant: Annotated[
        str | None, typer.Option("--tenant", help="Only this tenant's entries (its slug).")
    ] = None,
    since: Annotated[
        str | None,
        typer.Option(
            "--since", help="Only entries from then on: 24h, 30d, 2026-03-01 or a timestamp."
        ),
    ] = None,
    action: Annotated[
        str | None,
        typer.Option(
            "--action",
            help="Only this action (plan.add), or every action of a kind (plan or plan.*).",
        ),
    ] = None,
    limit: LimitOpt = 50,
    now: Annotated[
        str | None,
        typer.Option("--now", help="What --since counts back from (default: the clock)."),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Audit entries, newest first: when, who, what, which tenant and record; --json adds the
    before and after of each."""
    from faithflow_ops.audit import list_entries
    from faithflow_ops.clock import parse_since

    start = parse_since(since, parse_now(now)) if since is not None else None
    with database().read_session() as session:
        page = list_entries(session, tenant=tenant, since=start, action=action, limit=limit)
    output.listing(
        page.entries,
        page.total,
        "audit record",
        ["id", "at", "actor", "action", "tenant", "about"],
        lambda e: [
            e["id"],
            output.minute(e["at"]),
            e["actor"],
            e["action"],
            e["tenant"],
            f"{e['entity_type']} {e['entity_id']}",
        ],
        as_json=as_json,
    )
