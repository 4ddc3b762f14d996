"""`faithflow incidents …`: what is broken and who has it; `escalate` (and `preview`) are the
`incidents_escalate` job's commands, generated from the registry by `cli.load_group`."""

from __future__ import annotations

from typing import Annotated

import typer

from faithflow_ops.cli import output
from faithflow_ops.cli.common import JsonOpt, actor, database, parse_now
from faithflow_ops.cli.jobs import NowOpt

app = typer.Typer(
    rich_markup_mode=None,
    help="Incidents from domains, health checks, jobs, SLAs: list, show, ack, resolve, escalate.",
    no_args_is_help=True,
)

IdArg = Annotated[int, typer.Argument(metavar="ID", help="Incident id (incidents list).")]

_COLUMNS = {
    "id": "id",
    "severity": "severity",
    "status": "status",
    "tenant": "tenant",
    "title": "title",
    "occurrences": "seen",
    "flaps": "flaps",
    "opened_at": "opened",
    "acknowledged_by": "ack by",
}


@app.command("list")
def list_(
    status: Annotated[
        str | None,
        typer.Option("--status", help="open, acknowledged, resolved, or unresolved (both first)."),
    ] = None,
    kind: Annotated[
        str | None, typer.Option("--kind", help="domain, health, job or support.")
    ] = None,
    limit: Annotated[int, typer.Option("--limit", min=1, help="Show at most this many.")] = 100,
    as_json: JsonOpt = False,
) -> None:
    """Incidents, newest first: severity, status, tenant, title, how often seen."""
    from faithflow_ops.incidents.records import list_incidents

    with database().read_session() as session:
        docs, total = list_incidents(session, status=status, kind=kind, limit=limit)
    if output.empty(docs, "incident", as_json=as_json):
        return
    if as_json:
        output.print_json(docs)
    else:
        output.table(
            list(_COLUMNS.values()), [[output.fmt(d[key]) for key in _COLUMNS] for d in docs]
        )
    output.list_footer(len(docs), total, "incident", as_json=as_json)


@app.command("show")
def show(incident_id: IdArg, as_json: JsonOpt = False) -> None:
    """One incident: cause, detail, times, who acknowledged or resolved it, the hooks sent."""
    from faithflow_ops.incidents.records import incident_details

    with database().read_session() as session:
        doc = incident_details(session, incident_id)
    if as_json:
        output.print_json(doc)
    else:
        output.record(doc, title=f"incident {incident_id}")


@app.command("ack")
def ack(incident_id: IdArg, now: NowOpt = None) -> None:
    """Acknowledge an open incident: you have it, so it is not paged (PagerDuty) any more."""
    from faithflow_ops.incidents.records import acknowledge

    with database().session() as session:
        acknowledge(session, incident_id, by=actor(), now=parse_now(now))
    output.info(f"incident {incident_id} acknowledged")


@app.command("resolve")
def resolve(incident_id: IdArg, now: NowOpt = None) -> None:
    """Resolve an incident by hand (a page sent for it is resolved by the next escalate run;
    if the cause is still broken, the next check opens a new incident)."""
    from faithflow_ops.incidents.records import resolve as resolve_incident

    with database().session() as session:
        resolve_incident(session, incident_id, by=actor(), now=parse_now(now))
    output.info(f"incident {incident_id} resolved")
