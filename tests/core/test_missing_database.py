"""A command never creates a database by accident: on a missing SQLite path only `db upgrade`
(and `demo`, which migrates) create it; everything else says so with exit 2. An empty
FAITHFLOW_DATABASE_URL is a mistake, never the default database."""

from __future__ import annotations

from pathlib import Path

import pytest

from faithflow_ops.config import Settings
from faithflow_ops.errors import ConfigError


@pytest.mark.parametrize("args", [("tenants", "list"), ("db", "info"), ("jobs", "runs")])
def test_a_command_on_a_missing_sqlite_path_creates_nothing(
    cli, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, args: tuple[str, ...]
) -> None:
    path = tmp_path / "nowhere" / "deep" / "faithflow.db"
    monkeypatch.setenv("FAITHFLOW_DATABASE_URL", f"sqlite:///{path}")
    result = cli(*args)
    assert result.exit_code == 2, result.output
    assert f"no database at {path}" in result.stderr
    assert "faithflow db upgrade" in result.stderr
    assert not (tmp_path / "nowhere").exists()


def test_the_default_database_is_not_created_by_a_listing(cli, tmp_path: Path) -> None:
    result = cli("tenants", "list")
    assert result.exit_code == 2
    assert "no database at" in result.stderr
    assert not (tmp_path / "xdg" / "faithflow").exists()


def test_db_upgrade_creates_it(cli, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    path = tmp_path / "new" / "faithflow.db"
    monkeypatch.setenv("FAITHFLOW_DATABASE_URL", f"sqlite:///{path}")
    assert cli("db", "upgrade").exit_code == 0
    assert path.exists()
    assert cli("tenants", "list").exit_code == 0


@pytest.mark.parametrize("name", ["FAITHFLOW_DATABASE_URL", "DATABASE_URL"])
def test_an_empty_database_url_is_refused_naming_the_variable(name: str) -> None:
    with pytest.raises(ConfigError) as caught:
        Settings.from_env({name: "  "})
    assert f"{name} is set but empty" in str(caught.value)
