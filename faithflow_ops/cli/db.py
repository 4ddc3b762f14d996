"""`faithflow db …`: migrate the configured database and say which one it is."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

import typer

from faithflow_ops.cli import output
from faithflow_ops.cli.common import JsonOpt, database, settings
from faithflow_ops.errors import UserError

if TYPE_CHECKING:
    from faithflow_ops.config import Settings
    from faithflow_ops.db import Database

app = typer.Typer(
    rich_markup_mode=None,
    help="The database: upgrade its schema, show its revision and where it is.",
    no_args_is_help=True,
)


def _rev(revision: str | None) -> str:
    return revision or "(empty)"


@app.command("upgrade")
def upgrade(
    revision: Annotated[
        str, typer.Option("--revision", help="Target Alembic revision (default: the newest).")
    ] = "head",
) -> None:
    """Apply pending migrations; a no-op when the database is already up to date."""
    from alembic.util import CommandError

    from faithflow_ops.migrate import upgrade as run_upgrade

    cfg = settings()
    db = database(cfg, create=True)  # the one command that makes a new SQLite database
    output.info(f"database: {cfg.masked_database_url}")
    try:
        before, after = run_upgrade(db.engine, revision)
    except CommandError as exc:
        raise UserError(
            f"cannot upgrade to revision {revision!r} ({exc}); see `faithflow db current`"
        ) from None
    if before == after:
        output.info(f"already at {_rev(after)}; nothing to do")
    else:
        output.info(f"upgraded {_rev(before)} → {_rev(after)}")


@app.command("current")
def current(as_json: JsonOpt = False) -> None:
    """The database's schema revision and whether it is the newest."""
    from faithflow_ops.migrate import current_revision, head_revision, schema_hint

    now, head = current_revision(database().engine), head_revision()
    doc = {"current": now, "head": head, "is_head": now == head}
    if as_json:
        output.print_json(doc)
        return
    if now == head:
        typer.echo(f"{_rev(now)} (head)")
    else:
        typer.echo(f"{_rev(now)} (head is {head})")
        output.info(str(schema_hint(now, head)))


def database_info(cfg: Settings, db: Database) -> dict[str, Any]:
    """Where the database is (password masked), what it is, and its schema revision."""
    from faithflow_ops.migrate import current_revision, head_revision, newer_than_code

    url = db.engine.url
    now, head = current_revision(db.engine), head_revision()
    doc: dict[str, Any] = {
        "url": cfg.masked_database_url,
        "default": cfg.database_url_is_default,
        "dialect": db.dialect,
        "driver": url.drivername,
        "current_revision": now,
        "head_revision": head,
        "is_head": now == head,
        "newer_than_code": newer_than_code(now),
    }
    if db.dialect == "sqlite":
        from pathlib import Path

        doc["path"] = str(Path(url.database).resolve()) if url.database else ":memory:"
    else:
        version = db.engine.dialect.server_version_info
        doc["server_version"] = ".".join(str(part) for part in version) if version else None
        doc["host"], doc["port"], doc["database"] = url.host, url.port, url.database
    return doc


@app.command("info")
def info(as_json: JsonOpt = False) -> None:
    """The configured database: URL (password masked), dialect, path, revision."""
    cfg = settings()
    doc = database_info(cfg, database(cfg))
    if as_json:
        output.print_json(doc)
        return
    output.record(doc, title="database")
    if not doc["is_head"]:
        from faithflow_ops.migrate import schema_hint

        output.info(str(schema_hint(doc["current_revision"], doc["head_revision"])))
