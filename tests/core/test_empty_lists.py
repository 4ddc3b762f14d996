"""Every `list` command says an empty result the same way (issue 16): one `no <things>` line on
stderr, no empty table on stdout, and `[]` with --json. On SQLite and Postgres."""

from __future__ import annotations

import json
from typing import Any

import pytest

from faithflow_ops.cli import output
from faithflow_ops.db import Database

NOW = ("--now", "2026-03-01T09:00:00Z")

LISTS = [
    (("tenants", "list"), "no tenants"),
    (("plans", "list"), "no plans"),
    (("subs", "list"), "no subscriptions"),
    (("subs", "changes"), "no plan changes"),
    (("invoices", "list"), "no invoices"),
    (("disputes", "list"), "no disputes"),
    (("webhooks", "list"), "no webhook events"),
    (("incidents", "list"), "no incidents"),
    (("health", "history", *NOW), "no results"),
    (("support", "tickets", "list", *NOW), "no tickets"),
    (("support", "agents", "list"), "no agents"),
    (("support", "kb", "list"), "no articles"),
    (("sla", "breaches", *NOW), "no breaches"),
    (("jobs", "runs"), "no job runs"),
    (("audit", "list"), "no audit records"),
    (("comms", "list"), "no messages"),
]


@pytest.mark.parametrize(("args", "line"), LISTS, ids=[" ".join(a[:2]) for a, _ in LISTS])
def test_an_empty_list_is_one_line_on_stderr_and_an_empty_json_array(
    cli: Any, db: Database, args: tuple[str, ...], line: str
) -> None:
    shown = cli(*args)
    assert shown.exit_code == 0, shown.stderr
    assert shown.stdout == ""
    assert shown.stderr.strip() == line
    as_json = cli(*args, "--json")
    assert as_json.exit_code == 0, as_json.stderr
    assert json.loads(as_json.stdout) == []
    assert as_json.stderr.strip() == line


def test_plural_nouns() -> None:
    assert [output.plural(n) for n in ("invoice", "breach", "entry", "day", "plan change")] == [
        "invoices",
        "breaches",
        "entries",
        "days",
        "plan changes",
    ]
