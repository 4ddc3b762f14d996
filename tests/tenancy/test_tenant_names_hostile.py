"""Names that would drive the operator's terminal (issue 16, "Hostile input"): refused at
`tenants add`, and any such value already stored is shown escaped by every table and record."""

from __future__ import annotations

from typing import Any

import pytest
from helpers import said
from sqlalchemy import func, select

from faithflow_ops.cli.output import safe
from faithflow_ops.db import Database
from faithflow_ops.models import Tenant

HOSTILE = [
    ("Grace\x1b[2J\x1b[31mChapel", "U+001B"),  # ESC: clear screen, red
    ("Grace\x1b]8;;https://evil.example\x07link", "U+001B"),  # OSC 8 hyperlink
    ("Grace \u202eleppahC", "U+202E"),  # right-to-left override
    ("Grace \u2066isolate\u2069", "U+2066"),
    ("Grace\x9b31m", "U+009B"),  # C1 CSI
    ("Grace\x00", "U+0000"),
    ("Grace\x7f", "U+007F"),
]


@pytest.mark.parametrize(("name", "code"), HOSTILE)
def test_add_refuses_control_and_bidi_characters(
    cli: Any, db: Database, name: str, code: str
) -> None:
    result = cli("tenants", "add", "grace", "--name", name)
    assert result.exit_code == 2
    assert f"name contains the control or bidi-override character {code}" in said(result)
    assert "\x1b" not in result.stderr and "\u202e" not in result.stderr
    with db.read_session() as s:
        assert s.scalar(select(func.count()).select_from(Tenant)) == 0


def test_plain_names_with_accents_and_scripts_still_pass(cli: Any, db: Database) -> None:
    for slug, name in (("eglise", "Église Évangélique"), ("kanisa", "Kanisa la Neema 教会 كنيسة")):
        result = cli("tenants", "add", slug, "--name", name)
        assert result.exit_code == 0, result.stderr


def test_a_stored_hostile_name_is_shown_escaped(cli: Any, db: Database) -> None:
    with db.session() as s:  # written before this check existed, or by another tool
        s.add(Tenant(slug="grace", name="Grace\x1b[2J\u202eevil\x9b"))
    for args in (("tenants", "show", "grace"), ("tenants", "list")):
        result = cli(*args)
        assert result.exit_code == 0, result.stderr
        assert "\x1b" not in result.stdout and "\u202e" not in result.stdout
        assert "\x9b" not in result.stdout
        assert "Grace\\x1b[2J\\u202eevil\\x9b" in result.stdout


def test_safe_keeps_text_tabs_and_newlines() -> None:
    assert safe("Église\tA\nB") == "Église\tA\nB"
    assert safe("a\x1bb\u2069c\x85") == "a\\x1bb\\u2069c\\x85"
