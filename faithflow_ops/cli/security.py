"""`faithflow security …`: `security enforce` (a job, generated from the registry), the staff
access gate (`access-check`, faithflow_ops/security/access.py) and the compliance audit
(`audit`, faithflow_ops/security/audit.py)."""

from __future__ import annotations

from typing import Annotated

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
