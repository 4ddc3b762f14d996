"""Programmatic Alembic: upgrade, current revision, and the models-vs-migrations check."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import Engine

from faithflow_ops.errors import UserError

# The Alembic scripts (env.py + versions/) live in the top-level `migrations/` folder beside this
# package: in a source checkout that is `<repo>/migrations`, and the wheel installs them as the
# `migrations` package next to `faithflow_ops` in site-packages. Found by path, never by import,
# so a `migrations/` folder in the operator's working directory can never stand in for them.
MIGRATIONS_DIR = Path(__file__).resolve().parent.parent / "migrations"


def _config(engine: Engine, connection: Any = None) -> Any:
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.set_main_option("sqlalchemy.url", engine.url.render_as_string(hide_password=False))
    if connection is not None:
        cfg.attributes["connection"] = connection
    return cfg


def head_revision() -> str | None:
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    return ScriptDirectory.from_config(cfg).get_current_head()


def known_revision(revision: str) -> bool:
    """Whether this faithflow's migrations include `revision`."""
    from alembic.config import Config
    from alembic.script import ScriptDirectory
    from alembic.util import CommandError

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    try:
        return ScriptDirectory.from_config(cfg).get_revision(revision) is not None
    except CommandError:
        return False


def newer_than_code(current: str | None) -> bool:
    """A database stamped with a revision this faithflow does not have: a newer release
    migrated it, and only upgrading faithflow (not the database) can help."""
    return current is not None and not known_revision(current)


def schema_hint(current: str | None, head: str | None) -> str | None:
    """What an operator should do about the database's revision (None at head)."""
    if current == head:
        return None
    if newer_than_code(current):
        return (
            f"the database is at revision {current}, newer than this faithflow (head {head}): "
            "upgrade faithflow to the release that migrated it; `faithflow db upgrade` "
            "cannot help"
        )
    return "run `faithflow db upgrade` to apply the pending migrations"


def current_revision(engine: Engine) -> str | None:
    from alembic.runtime.migration import MigrationContext

    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def upgrade(engine: Engine, revision: str = "head") -> tuple[str | None, str | None]:
    """Upgrade to `revision`; return (before, after). A no-op when already there."""
    from alembic import command

    before = current_revision(engine)
    if newer_than_code(before):
        raise UserError(str(schema_hint(before, head_revision())))
    with engine.begin() as conn:
        command.upgrade(_config(engine, conn), revision)
    return before, current_revision(engine)


def include_object(
    obj: Any, name: str | None, type_: str, reflected: bool, compare_to: Any
) -> bool:
    """What autogenerate and `schema_diff` compare: everything but the knowledge base's
    full-text search objects, which no model can describe and migration 0008 writes by hand —
    SQLite's FTS5 table `kb_articles_fts` with its shadow tables (`kb_articles_fts_data`, …),
    and Postgres's expression GIN index `ix_kb_articles_search`. Without this, every
    comparison would report them as tables/indexes to drop."""
    from faithflow_ops.models.kb import SEARCH_INDEX, SEARCH_TABLE

    if reflected and compare_to is None and name is not None:
        if type_ == "table" and (name == SEARCH_TABLE or name.startswith(f"{SEARCH_TABLE}_")):
            return False
        if type_ == "index" and name == SEARCH_INDEX:
            return False
    return True


def schema_diff(engine: Engine) -> list[Any]:
    """Differences between the models and the migrated database ([] when they agree)."""
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext

    from faithflow_ops.models import Base

    with engine.connect() as conn:
        ctx = MigrationContext.configure(
            conn,
            opts={
                "compare_type": True,
                "compare_server_default": False,
                "include_object": include_object,
            },
        )
        return list(compare_metadata(ctx, Base.metadata))
