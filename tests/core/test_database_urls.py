"""Database URLs an operator can get wrong: each is one clear line and exit 2, never a
traceback, and a read-only command never creates a database."""

from __future__ import annotations

from pathlib import Path

import pytest

from faithflow_ops.config import Settings
from faithflow_ops.errors import ConfigError

SUPPORTED = "sqlite:///"


@pytest.mark.parametrize(
    "url",
    ["mysql://u@db.example/app", "mysql+pymysql://u:pw@db/app", "oracle://x@y/z", "mssql://a@b/c"],
)
def test_an_unsupported_database_is_refused_naming_the_supported_urls(url: str) -> None:
    with pytest.raises(ConfigError) as caught:
        Settings.from_env({"FAITHFLOW_DATABASE_URL": url})
    message = str(caught.value)
    assert "FAITHFLOW_DATABASE_URL" in message and "not supported" in message
    assert "sqlite:///" in message and "postgresql://" in message and "postgres://" in message
    assert "pw" not in message


def test_the_cli_says_so_with_exit_2(cli, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAITHFLOW_DATABASE_URL", "mysql://u@db.example/app")
    result = cli("tenants", "list")
    assert result.exit_code == 2
    assert "not supported" in result.stderr and "Traceback" not in result.stderr


def test_a_file_that_is_not_a_database_is_named(
    cli, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    notes = tmp_path / "notes.txt"
    notes.write_text("hello, this is no database\n" * 20)
    monkeypatch.setenv("FAITHFLOW_DATABASE_URL", f"sqlite:///{notes}")
    for args in (("tenants", "list"), ("db", "upgrade"), ("db", "info")):
        result = cli(*args)
        assert result.exit_code == 2, (args, result.output)
        assert "not a SQLite database" in result.stderr and str(notes) in result.stderr
        assert "Traceback" not in result.stderr
    assert notes.read_text() == "hello, this is no database\n" * 20
