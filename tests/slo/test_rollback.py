"""Rolling back a release's migrations (docs/releases/README.md): every revision downgrades,
so head → base → head works on both databases, and the schema at the end is the models'."""

from __future__ import annotations

from sqlalchemy import create_engine, inspect

from faithflow_ops.migrate import (
    MIGRATIONS_DIR,
    current_revision,
    head_revision,
    schema_diff,
    upgrade,
)


def test_head_downgrades_to_base_and_upgrades_again(db_url: str) -> None:
    from alembic import command
    from alembic.config import Config

    engine = create_engine(db_url)
    try:
        upgrade(engine)
        with engine.begin() as conn:
            cfg = Config()
            cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
            cfg.attributes["connection"] = conn
            command.downgrade(cfg, "base")
        assert current_revision(engine) is None
        left = set(inspect(engine).get_table_names()) - {"alembic_version"}
        assert left == set(), f"downgrade to base left tables behind: {sorted(left)}"
        assert upgrade(engine) == (None, head_revision())
        assert schema_diff(engine) == []
    finally:
        engine.dispose()
