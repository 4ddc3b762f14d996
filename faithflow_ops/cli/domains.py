"""`faithflow domains …`: tenant custom domains (`domains automate` is the job)."""

from __future__ import annotations

from typing import Annotated

import typer

from faithflow_ops.cli import jobs, output
from faithflow_ops.cli.common import JsonOpt, actor, database, parse_now, settings

app = typer.Typer(
    rich_markup_mode=None,
    help="Tenant custom domains: add, verify, show, runbook notes, and the automate job.",
    no_args_is_help=True,
)

HostArg = Annotated[str, typer.Argument(metavar="HOST", help="The hostname, e.g. www.grace.org.")]
NowOpt = jobs.NowOpt

_LIST_COLUMNS = {
    "hostname": "hostname",
    "tenant": "tenant",
    "status": "status",
    "certificate_status": "certificate",
    "failover_active": "failover",
    "dns_result": "dns",
    "consecutive_failures": "failures",
    "last_checked_at": "checked",
    "next_check_at": "next check",
}


def _records(records: list[dict[str, str]]) -> None:
    output.table(
        ["type", "name", "value"],
        [[r["type"], r["name"], r["value"]] for r in records],
        title="records the church must create at its DNS host",
    )


@app.command("add")
def add(
    host: HostArg,
    tenant: Annotated[str, typer.Option("--tenant", help="The tenant's slug.")],
    now: NowOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Add a church's hostname and print the DNS records it must create (ownership TXT, and
    CNAME for a subdomain or A records for an apex). `domains automate` takes it from there."""
    from faithflow_ops.domains.manage import add_domain, domain_doc

    cfg = settings()
    with database(cfg).session() as session:
        domain = add_domain(
            session,
            tenant_slug=tenant,
            hostname=host,
            settings=cfg,
            actor=actor(),
            now=parse_now(now),
        )
        doc = domain_doc(domain, tenant, cfg)
    if as_json:
        output.print_json(doc)
        return
    output.info(f"added {doc['hostname']} for {tenant} (status pending_dns)")
    _records(doc["records_to_create"])


@app.command("list")
def list_(
    tenant: Annotated[str | None, typer.Option("--tenant", help="Only this tenant's.")] = None,
    status: Annotated[
        str | None,
        typer.Option(
            "--status",
            help="pending_dns, issuing_cert, active, expiring, degraded, failed or removed.",
        ),
    ] = None,
    include_removed: Annotated[
        bool, typer.Option("--include-removed", help="Also list removed domains.")
    ] = False,
    limit: Annotated[int, typer.Option("--limit", min=1, help="Show at most this many.")] = 200,
    as_json: JsonOpt = False,
) -> None:
    """Domains by hostname: status, certificate, failover, last DNS result, next check."""
    from faithflow_ops.domains.manage import list_domains

    cfg = settings()
    with database(cfg).read_session() as session:
        docs, total = list_domains(
            session,
            cfg,
            tenant=tenant,
            status=status,
            include_removed=include_removed,
            limit=limit,
        )
    if as_json:
        output.print_json(docs)
    else:
        output.table(
            list(_LIST_COLUMNS.values()),
            [[output.fmt(d[key]) for key in _LIST_COLUMNS] for d in docs],
        )
    if total > len(docs):
        output.info(f"showing {len(docs)} of {total}; raise --limit to see more")


@app.command("show")
def show(host: HostArg, as_json: JsonOpt = False) -> None:
    """One domain: status, certificate, failover, last results, the records to create, and the
    history of checks and runbook notes."""
    from faithflow_ops.domains.manage import domain_details

    cfg = settings()
    with database(cfg).read_session() as session:
        doc = domain_details(session, host, cfg)
    if as_json:
        output.print_json(doc)
        return
    checks, notes, records = doc.pop("checks"), doc.pop("runbook"), doc.pop("records_to_create")
    doc.pop("verification_record")
    cert = doc.pop("certificate")
    doc.update({f"certificate {k}": v for k, v in cert.items()})
    output.record(doc, title=f"domain {doc['hostname']}")
    _records(records)
    if checks:
        output.table(
            ["checked", "kind", "result", "ms", "detail"],
            [
                [c["checked_at"], c["kind"], c["result"], output.fmt(c["latency_ms"]), c["detail"]]
                for c in checks
            ],
            title="recent checks",
        )
    if notes:
        output.table(
            ["at", "state", "by", "note"],
            [[n["at"], n["state"], n["actor"], n["note"]] for n in notes],
            title="runbook",
        )


@app.command("verify")
def verify(host: HostArg, now: NowOpt = None, as_json: JsonOpt = False) -> None:
    """Check one domain now and apply the outcome (what `domains automate` would do for it,
    whenever its next check is due). A `failed` domain gets a fresh verification window."""
    from faithflow_ops.actions import decode
    from faithflow_ops.domains.lifecycle import NotChecked
    from faithflow_ops.jobs.domains_automate import check_now

    cfg = settings()
    result = check_now(database(cfg), cfg, host, now=parse_now(now), actor=actor())
    if as_json:
        output.print_json(result.to_dict())
        return
    checked = decode(NotChecked, result.action.data)  # the fields every kind carries
    output.record(
        {
            "hostname": host,
            "outcome": result.action.kind,
            "status": checked.status,
            "certificate": checked.certificate_status,
            "failover_active": checked.failover_active,
            "reason": result.action.reason,
        },
        title="checked",
    )
    if result.error:
        output.abort(f"applying the outcome failed: {result.error}", 1)


@app.command("remove")
def remove(
    host: HostArg,
    now: NowOpt = None,
    keep_edge: Annotated[
        bool, typer.Option("--keep-edge", help="Do not ask the edge (Render) to drop the host.")
    ] = False,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Check and print what would be done; change nothing.")
    ] = False,
    yes: Annotated[
        bool, typer.Option("--yes", "-y", help="Do not ask for confirmation (for scripts).")
    ] = False,
) -> None:
    """Stop checking and serving the hostname (status `removed`; history is kept). Asks first;
    not on a terminal it needs --yes."""
    from faithflow_ops.domains.manage import remove_with_edge

    cfg = settings()
    when = parse_now(now)
    plan = remove_with_edge(
        database(cfg), cfg, host, now=when, actor=actor(), keep_edge=keep_edge, dry_run=True
    )
    if dry_run:
        output.info(f"dry run: {plan}; nothing was sent or written")
        return
    output.confirm(f"{plan}?", yes=yes)
    note = remove_with_edge(database(cfg), cfg, host, now=when, actor=actor(), keep_edge=keep_edge)
    output.info(note)


@app.command("runbook")
def runbook(
    host: HostArg,
    state: Annotated[
        str,
        typer.Option("--state", help="investigating, waiting_on_customer, escalated or resolved."),
    ],
    note: Annotated[str, typer.Option("--note", help="What was done or seen.")],
    now: NowOpt = None,
) -> None:
    """Record the human side of a domain problem; `domains show` prints the notes."""
    from faithflow_ops.domains.manage import add_runbook_note

    with database().session() as session:
        add_runbook_note(session, host, state=state, note=note, actor=actor(), now=parse_now(now))
    output.info(f"noted on {host}: {state}")
