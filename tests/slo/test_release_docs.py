"""docs/releases/ and docs/slo.md: a runbook per module with its four parts, and every
`faithflow …` command they tell an operator to run exists (a renamed command fails here, not
during an incident)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
RELEASES = ROOT / "docs" / "releases"
MODULES = ("billing", "platform-ops", "streaming", "support", "receiver")
RUNBOOKS = [*sorted(RELEASES.glob("*.md")), ROOT / "docs" / "slo.md"]


def test_each_module_has_a_release_runbook_with_its_four_parts() -> None:
    index = (RELEASES / "README.md").read_text()
    for part in ("Pre-flight", "Deploy order on Render", "Smoke checks", "Rolling back"):
        assert re.search(rf"^## .*{re.escape(part)}", index, re.M), f"README.md: no {part}"
    for module in MODULES:
        assert f"]({module}.md)" in index, f"README.md does not link {module}.md"
        text = (RELEASES / f"{module}.md").read_text()
        for part in ("**Pre-flight**", "**Deploy**", "**Smoke**", "**Rollback**"):
            assert part in text, f"{module}.md has no {part} paragraph"


def _commands() -> list[tuple[str, tuple[str, ...]]]:
    found = set()
    for path in RUNBOOKS:
        for match in re.finditer(r"faithflow((?: [a-z][a-z0-9-]*)+)", path.read_text()):
            words = tuple(match.group(1).split())
            found.add((path.name, words[:3]))
    return sorted(found)


@pytest.mark.parametrize(("doc", "words"), _commands())
def test_every_command_a_runbook_names_exists(doc: str, words: tuple[str, ...], cli) -> None:  # type: ignore[no-untyped-def]
    # the longest prefix that is a command (`streams sessions list`, or `db info` + prose)
    for n in range(len(words), 0, -1):
        if cli(*words[:n], "--help").exit_code == 0:
            assert n >= min(2, len(words)), f"{doc}: faithflow {' '.join(words)} is no command"
            return
    pytest.fail(f"{doc}: faithflow {' '.join(words)} is no command")
