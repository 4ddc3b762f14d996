"""`faithflow security …`: `security enforce` (a job, generated from the registry), the staff
access gate (`access-check`, faithflow_ops/security/access.py) and the compliance audit
(`audit`, faithflow_ops/security/audit.py)."""

from __future__ import annotations

import typer

app = typer.Typer(
    rich_markup_mode=None,
    help="Security policy enforcement: sessions, the staff access gate, compliance audits.",
    no_args_is_help=True,
)
