"""The commands `faithflow demo` suggests work as printed (issue 16): the full path of the
executable and the demo database's URL, not a bare `faithflow` that may not be on PATH and would
open the default database."""

from __future__ import annotations

from pathlib import Path

from faithflow_ops.cli.demo import next_commands


def test_the_hint_names_the_database_and_the_executable(tmp_path: Path) -> None:
    exe = tmp_path / "venv" / "bin" / "faithflow"
    text = next_commands("sqlite:////tmp/demo db/ff.db", exe, cwd=tmp_path)
    first = text.splitlines()[1].strip()
    assert (
        first
        == "FAITHFLOW_DATABASE_URL='sqlite:////tmp/demo db/ff.db' venv/bin/faithflow tenants list"
    )
    assert "`faithflow " not in text


def test_an_executable_outside_the_working_directory_keeps_its_full_path(tmp_path: Path) -> None:
    text = next_commands("sqlite:///x.db", Path("/opt/ff/bin/faithflow"), cwd=tmp_path)
    assert "FAITHFLOW_DATABASE_URL=sqlite:///x.db /opt/ff/bin/faithflow subs list" in text
