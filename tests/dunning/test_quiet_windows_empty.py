"""An empty quiet window (`sun 06:00-06:00`) is refused by name (issue 16)."""

from __future__ import annotations

from typing import Any

import pytest
from helpers import said
from sqlalchemy import select

from faithflow_ops.db import Database
from faithflow_ops.dunning.windows import windows_from_specs
from faithflow_ops.errors import UserError
from faithflow_ops.models import DunningPreference


@pytest.mark.parametrize(
    "specs",
    [["sun 06:00-06:00"], ["daily 21:00-08:00", "mon-fri 12:30-12:30"], ["weekends 00:00-00:00"]],
)
def test_same_start_and_end_is_refused_naming_the_window(specs: list[str]) -> None:
    with pytest.raises(UserError, match="start and end at the same minute") as caught:
        windows_from_specs(specs)
    assert repr(specs[-1]) in str(caught.value)


def test_other_windows_still_parse() -> None:
    windows = windows_from_specs(["sun 06:00-14:00", "daily 21:00-08:00"])
    assert [w.describe() for w in windows] == ["sun 06:00-14:00", "daily 21:00-08:00"]


def test_the_cli_refuses_it_and_writes_nothing(cli: Any, db: Database) -> None:
    assert cli("tenants", "add", "grace-lagos", "--name", "Grace").exit_code == 0
    result = cli("dunning", "prefs", "set", "--tenant", "grace-lagos", "--quiet", "sun 06:00-06:00")
    assert result.exit_code == 2
    assert "quiet hours 'sun 06:00-06:00' start and end at the same minute (06:00)" in said(result)
    with db.read_session() as s:
        assert s.scalar(select(DunningPreference)) is None
