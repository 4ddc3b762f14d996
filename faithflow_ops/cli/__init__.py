"""The `faithflow` command. Each command group is one module; job commands are generated from
the registry so every job has the same options (--dry-run, --now, --json, --limit).

Heavy libraries (sqlalchemy, litestar, alembic, stripe) are imported inside commands so
`faithflow --help` stays fast (STYLE 13).
"""

from __future__ import annotations

from typing import Any

import typer
from typer.core import TyperCommand, TyperGroup

from faithflow_ops import __version__
from faithflow_ops.errors import UserError

# Command groups, loaded only when used (`faithflow --help` lists them from here without
# importing them: STYLE 13). The text is each group's help; a test checks it matches the module.
GROUPS: dict[str, tuple[str, str]] = {
    "tenants": (
        "faithflow_ops.cli.tenants",
        "Tenants (churches): add, list, show, suspend, reactivate, link ids, billing grace; "
        "security policy.",
    ),
    "plans": (
        "faithflow_ops.cli.plans",
        "Subscription plans: add, list, show, and set provider ids in their metadata.",
    ),
    "subs": (
        "faithflow_ops.cli.subs",
        "Subscriptions: list, show, record one by hand, and the metadata backfill job.",
    ),
    "billing": (
        "faithflow_ops.cli.billing",
        "Self-serve billing links: checkout for a plan, the billing portal of a subscription.",
    ),
    "disputes": (
        "faithflow_ops.cli.disputes",
        "Disputes on both scopes: list, show, and the monitor job (pull + evidence alerts).",
    ),
    "dunning": (
        "faithflow_ops.cli.dunning",
        "Past-due recovery: preview, run, analytics, the ladder (policy), tenant preferences.",
    ),
    "comms": (
        "faithflow_ops.cli.comms",
        "The communications outbox: dispatch, list, show, retry, cancel, suppressions.",
    ),
    "support": (
        "faithflow_ops.cli.support",
        "Support center: tickets, agents, queue health, analytics, knowledge base, deflection.",
    ),
    "sla": (
        "faithflow_ops.cli.sla",
        "Support SLAs: the sweep (breaches, warnings), breaches, policies, calendars, analytics.",
    ),
    "domains": (
        "faithflow_ops.cli.domains",
        "Tenant custom domains: add, verify, show, runbook notes, and the automate job.",
    ),
    "incidents": (
        "faithflow_ops.cli.incidents",
        "Incidents from domains, health checks, jobs, SLAs: list, show, ack, resolve, escalate.",
    ),
    "health": (
        "faithflow_ops.cli.health",
        "Health checks: the sweep (providers, SMTP, DNS, database, job freshness), status "
        "with uptime, history.",
    ),
    "invoices": (
        "faithflow_ops.cli.invoices",
        "Invoices: list, show, and reconcile them with Stripe and Paystack.",
    ),
    "webhooks": (
        "faithflow_ops.cli.webhooks",
        "Webhook inbox: list, show, replay stored events; sign a body for a manual delivery.",
    ),
    "volunteers": (
        "faithflow_ops.cli.volunteers",
        "Volunteer scheduling: teams, people, events, needs, assignments, blockouts, roster; "
        "reminders and gap alerts.",
    ),
    "streams": (
        "faithflow_ops.cli.streams",
        "Live streaming: channels, sessions and their lifecycle; the Mux sync job.",
    ),
    "slo": (
        "faithflow_ops.cli.slo",
        "Service level objectives (ops/slo.toml): check the file, generate Prometheus rules "
        "and the Grafana dashboard, report from the database.",
    ),
    "release": (
        "faithflow_ops.cli.release",
        "Release readiness: the pre-flight check (schema, running jobs, backlogs, budgets).",
    ),
    "security": (
        "faithflow_ops.cli.security",
        "Security policy enforcement: sessions, the staff access gate, compliance audits.",
    ),
    "retention": (
        "faithflow_ops.cli.retention",
        "Data retention: the retention run (batched, resumable) and legal holds.",
    ),
    "db": (
        "faithflow_ops.cli.db",
        "The database: upgrade its schema, show its revision and where it is.",
    ),
    "audit": (
        "faithflow_ops.cli.audit",
        "The audit log: who changed what and when, with before and after.",
    ),
    "jobs": (
        "faithflow_ops.cli.jobs",
        "List jobs, their schedules and their past runs; run any job by name.",
    ),
    "scheduler": (
        "faithflow_ops.cli.scheduler",
        "Run the internal scheduler (cron loop over the job registry).",
    ),
}


# Top-level commands that may create a missing SQLite database (they migrate it at once);
# `db upgrade` asks for it itself. See cli.common.database.
CREATING_COMMANDS = frozenset({"demo"})


def load_group(name: str) -> typer.Typer:
    """The Typer app of group `name`, with the registry's job commands it does not define."""
    import importlib

    from faithflow_ops.cli import jobs
    from faithflow_ops.jobs.registry import JOBS

    group: typer.Typer = importlib.import_module(GROUPS[name][0]).app
    for spec in JOBS:
        if spec.cli_group == name and not any(
            c.name == spec.cli_verb for c in group.registered_commands
        ):
            jobs.add_job_command(group, spec)  # `<verb>` and its `<preview_verb>`
    return group


HELP_NAMES = ["-h", "--help"]
_built: dict[str, Any] = {}


def _click_group(name: str) -> Any:
    """Group `name` as a click command, built once per process: Typer's conversion reads every
    command's signature and evaluates its annotations (~0.1 s for a large group), and the
    commands hold no state, so a process that runs several commands (the tests, the e2e
    flows, `faithflow serve`) converts each group once."""
    if name not in _built:
        command = typer.main.get_group(load_group(name))
        command.name = name
        command.help = GROUPS[name][1]
        _built[name] = command
    return _built[name]


class _Group(TyperGroup):
    """The root command: loads command groups on first use, and turns operator mistakes into
    one-line messages and exit 2, never a traceback."""

    def list_commands(self, ctx: Any) -> list[str]:
        return [*super().list_commands(ctx), *(n for n in GROUPS if n not in self.commands)]

    def get_command(self, ctx: Any, cmd_name: str) -> Any:
        from faithflow_ops.cli import common

        common.allow_creating(cmd_name in CREATING_COMMANDS)
        command = super().get_command(ctx, cmd_name)
        if command is None and cmd_name in GROUPS:
            command = _click_group(cmd_name)
            self.add_command(command, cmd_name)
        return command

    def format_commands(self, ctx: Any, formatter: Any) -> None:
        """As click's, but an unloaded group's line comes from GROUPS (no import for --help)."""
        names = self.list_commands(ctx)
        if not names:
            return
        limit = formatter.width - 6 - max(len(n) for n in names)
        rows = []
        for name in names:
            if name in self.commands:
                command = self.commands[name]
                if command.hidden:
                    continue
                rows.append((name, command.get_short_help_str(limit)))
            else:
                stand_in = TyperCommand(name=name, help=GROUPS[name][1])
                rows.append((name, stand_in.get_short_help_str(limit)))
        with formatter.section("Commands"):
            formatter.write_dl(rows)

    def invoke(self, ctx: Any) -> Any:  # click.Context (vendored by newer Typer)
        try:
            return super().invoke(ctx)
        except UserError as exc:
            from faithflow_ops.cli.output import abort

            abort(str(exc), exc.exit_code)
        except Exception as exc:
            message = _database_problem(exc)
            if message is None:
                raise
            from faithflow_ops.cli.output import abort

            abort(message, 2)


def _database_problem(exc: Exception) -> str | None:
    """A clear message for the database errors an operator can fix."""
    module = type(exc).__module__
    if not module.startswith("sqlalchemy"):
        return None
    text = str(getattr(exc, "orig", exc)).strip().splitlines()[0] if str(exc) else ""
    lowered = text.lower()
    if "file is not a database" in lowered or "file is encrypted" in lowered:
        return (
            f"the database file {_database_path()} is not a SQLite database ({text}); point "
            "FAITHFLOW_DATABASE_URL at faithflow's database file, or at a new path and run "
            "`faithflow db upgrade`"
        )
    schema = "no such table" in lowered or ("relation" in lowered and "does not exist" in lowered)
    column = "no such column" in lowered or ("column" in lowered and "does not exist" in lowered)
    if (schema or column) and (newer := _newer_database()):
        return f"{newer} ({text})"
    if schema:
        return f"the database is not migrated ({text}); run `faithflow db upgrade`"
    if column:
        return (
            f"the database is behind this version of faithflow ({text}); run `faithflow db upgrade`"
        )
    if type(exc).__name__ == "OperationalError":
        return (
            f"cannot reach the database ({text}); check FAITHFLOW_DATABASE_URL "
            "and that the server is running"
        )
    return None


def _newer_database() -> str | None:
    """The message for a database a newer faithflow migrated, else None (also when the
    revision cannot be read)."""
    try:
        from faithflow_ops.cli.common import database
        from faithflow_ops.migrate import current_revision, head_revision, newer_than_code

        current = current_revision(database().engine)
        if newer_than_code(current):
            return (
                f"the database is at revision {current}, newer than this faithflow (head "
                f"{head_revision()}): upgrade faithflow to the release that migrated it"
            )
    except Exception:  # the original error is the one to report then
        return None
    return None


def _database_path() -> str:
    """Where the configured database is, for a message (the URL, password masked)."""
    try:
        from faithflow_ops.config import Settings

        url = Settings.from_env().masked_database_url
    except UserError:
        return "(unknown)"
    return url.split(":///", 1)[1] if url.startswith("sqlite") and ":///" in url else url


app = typer.Typer(
    rich_markup_mode=None,
    cls=_Group,
    name="faithflow",
    help="FaithFlow Ops: preview and run the platform's scheduled jobs, and fix what they touch.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
    context_settings={"help_option_names": HELP_NAMES},
    add_completion=False,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"faithflow {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    """FaithFlow Ops: preview and run the platform's scheduled jobs, and fix what they touch.

    Configuration comes from the environment (FAITHFLOW_DATABASE_URL, INTEGRATION_API_KEY, …);
    see the README's configuration table.
    """
    from faithflow_ops.logging import configure

    try:
        from faithflow_ops.config import Settings

        configure(Settings.from_env().log_format)
    except UserError:
        configure(None)  # the command itself reports the bad setting


def _register() -> None:
    from faithflow_ops.cli import demo, serve

    app.command("demo")(demo.demo)
    app.command("serve")(serve.serve)


_register()


def main() -> None:
    import gc

    # Everything imported so far lives for the whole process: keep it out of the collector's
    # scans (a 50k-row backfill spent 1.3 s in gc without this, 0.4 s with it).
    gc.freeze()
    app()
