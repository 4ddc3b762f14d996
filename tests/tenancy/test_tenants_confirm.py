"""`tenants suspend` previews (`--dry-run`) and asks first (`--yes` for scripts; no terminal
and no --yes is refused, exit 2): issue 16. On SQLite and Postgres."""

from __future__ import annotations

from typing import Any

import pytest
from helpers import said
from sqlalchemy import func, select

from faithflow_ops.cli import output
from faithflow_ops.db import Database
from faithflow_ops.models import AuditLog, Tenant


@pytest.fixture
def grace(cli: Any, db: Database) -> Database:
    result = cli("tenants", "add", "grace-lagos", "--name", "Grace")
    assert result.exit_code == 0, result.stderr
    return db


def _state(db: Database) -> tuple[str, int]:
    with db.read_session() as s:
        status = s.scalar(select(Tenant.status))
        audits = s.scalar(select(func.count()).where(AuditLog.action == "tenant.suspend"))
        return str(status), int(audits or 0)


def test_dry_run_writes_nothing(cli: Any, grace: Database) -> None:
    result = cli("tenants", "suspend", "grace-lagos", "--reason", "non-payment", "--dry-run")
    assert result.exit_code == 0, result.stderr
    assert "dry run: tenant grace-lagos (active) would be suspended (non-payment)" in said(result)
    assert _state(grace) == ("active", 0)


def test_without_a_terminal_it_needs_yes(cli: Any, grace: Database) -> None:
    result = cli("tenants", "suspend", "grace-lagos", "--reason", "non-payment")
    assert result.exit_code == 2
    assert "not confirmed (no terminal to ask on); pass --yes" in said(result)
    assert _state(grace) == ("active", 0)
    done = cli("tenants", "suspend", "grace-lagos", "--reason", "non-payment", "--yes")
    assert done.exit_code == 0 and _state(grace) == ("suspended", 1)


def test_on_a_terminal_it_asks(cli: Any, grace: Database, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(output, "stdin_is_terminal", lambda: True)
    no = cli("tenants", "suspend", "grace-lagos", "--reason", "x", input="n\n")
    assert no.exit_code == 1 and "suspend tenant grace-lagos (now active)?" in said(no)
    assert _state(grace) == ("active", 0)
    yes = cli("tenants", "suspend", "grace-lagos", "--reason", "x", input="y\n")
    assert yes.exit_code == 0 and _state(grace) == ("suspended", 1)


def test_already_suspended_needs_no_confirmation(cli: Any, grace: Database) -> None:
    assert cli("tenants", "suspend", "grace-lagos", "--reason", "x", "--yes").exit_code == 0
    again = cli("tenants", "suspend", "grace-lagos", "--reason", "x")
    assert again.exit_code == 0 and "already suspended" in said(again)


def test_a_blank_reason_is_refused_before_asking(cli: Any, grace: Database) -> None:
    result = cli("tenants", "suspend", "grace-lagos", "--reason", " ")
    assert result.exit_code == 2 and "not confirmed" not in said(result)
    assert "suspension reason" in said(result)
