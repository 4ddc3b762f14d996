"""`faithflow security …`: `security enforce` (a job, generated from the registry), the staff
access gate (`access-check`, faithflow_ops/security/access.py) and the compliance audit
(`audit`, faithflow_ops/security/audit.py)."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from faithflow_ops.cli import output
from faithflow_ops.cli.common import JsonOpt, database, parse_now

app = typer.Typer(
    rich_markup_mode=None,
    help="Security policy enforcement: sessions, the staff access gate, compliance audits.",
    no_args_is_help=True,
)


@app.command("access-check")
def access_check(
    user: Annotated[str, typer.Option("--user", help="The user's e-mail address or id.")],
    tenant: Annotated[
        str | None,
        typer.Option("--tenant", help="The church (slug) to check against (default: the user's)."),
    ] = None,
    now: Annotated[
        str | None, typer.Option("--now", help="As of this time (ISO-8601; default now).")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """The staff access gate: allowed, or denied with every reason (exit 0 allowed, 1 denied)."""
    from faithflow_ops.security.access import check_access

    when = parse_now(now)
    with database().read_session() as session:
        decision = check_access(session, user, tenant, now=when)
    if as_json:
        output.print_json(decision.to_dict())
    else:
        doc = decision.to_dict()
        output.record({k: doc[k] for k in ("summary", "user", "tenant", "policy", "methods")})
    if not decision.allowed:
        raise typer.Exit(1)


@app.command("audit")
def audit_command(
    tenant: Annotated[
        str | None, typer.Option("--tenant", help="Audit one church (slug); default: all.")
    ] = None,
    diff: Annotated[
        bool,
        typer.Option("--diff", help="Show what is new, resolved or changed since the last audit."),
    ] = False,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Audit without storing the result.")
    ] = False,
    now: Annotated[
        str | None, typer.Option("--now", help="As of this time (ISO-8601; default now).")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Compliance audit: findings with severity and evidence, stored for drift (exit 1 on any
    high-severity finding)."""
    from faithflow_ops.cli.common import settings
    from faithflow_ops.security import audit

    when = parse_now(now)
    cfg = settings()
    with database(cfg).session() as session:
        report = audit.run_audit(session, cfg, when, tenant)
        if diff:
            report.diff = audit.diff_with_previous(session, report)
        if not dry_run:
            audit.store(session, report)
    if as_json:
        output.print_json(report.to_dict())
    else:
        _render(report)
    if report.counts["high"]:
        raise typer.Exit(1)


def _render(report: Any) -> None:
    rows = [(f.severity, f.code, f.subject, f.title) for f in report.findings]
    if rows:
        output.table(("severity", "finding", "subject", "detail"), rows)
    if report.diff is not None:
        d = report.diff
        for label in ("new", "resolved", "changed"):
            for f in d[label]:
                output.info(f"{label}: [{f['severity']}] {f['code']} {f['subject']}")
        if d["previous_id"] is None:
            output.info("no earlier audit of this scope to compare with")
    counts = report.counts
    stored = f"stored as audit {report.stored_id}" if report.stored_id else "not stored (--dry-run)"
    output.info(f"{counts['high']} high, {counts['medium']} medium, {counts['low']} low; {stored}")
