"""Shared setup for the support/SLA tests: a tenant, two agents, JSON CLI calls."""

from __future__ import annotations

import json
from typing import Any

from helpers import job_document

from faithflow_ops.db import Database
from faithflow_ops.models import Tenant, User

MONDAY_9 = "2026-03-02T09:00:00Z"  # a Monday; the default calendar is Mon–Fri 09–17 UTC


def seed(db: Database) -> None:
    with db.session() as s:
        s.add(Tenant(slug="grace", name="Grace Chapel", billing_email="office@grace.example"))
        s.add(User(email="ada@faithflow.example", name="Ada"))  # platform agents: no tenant
        s.add(User(email="ben@faithflow.example", name="Ben"))
        s.flush()
        tenant_id = s.query(Tenant.id).filter_by(slug="grace").scalar()
        s.add(User(email="pastor@grace.example", name="Pastor", tenant_id=tenant_id))


def call(cli: Any, *args: str) -> Any:
    result = cli(*args, "--json")
    assert result.exit_code == 0, result.stderr
    return json.loads(result.stdout)


def open_ticket(cli: Any, priority: str = "normal", now: str = MONDAY_9, **opts: str) -> Any:
    args = ["support", "tickets", "open", "--tenant", "grace", "--subject", "Giving page down"]
    args += ["--priority", priority, "--body", "It shows an error", "--now", now]
    for key, value in opts.items():
        args += [f"--{key.replace('_', '-')}", value]
    return call(cli, *args)


def sweep(cli: Any, now: str, *extra: str) -> Any:
    result = cli("sla", "sweep", "--now", now, *extra, "--json")
    return job_document(result)
