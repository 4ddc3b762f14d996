"""structlog's console renderer honours NO_COLOR (issue 16, consistent output)."""

from __future__ import annotations

import io
import logging

import pytest

from faithflow_ops.logging import configure


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.mark.parametrize(("no_color", "coloured"), [(None, True), ("1", False), ("", True)])
def test_console_logs_are_coloured_only_without_no_color(
    monkeypatch: pytest.MonkeyPatch, no_color: str | None, coloured: bool
) -> None:
    if no_color is None:
        monkeypatch.delenv("NO_COLOR", raising=False)
    else:
        monkeypatch.setenv("NO_COLOR", no_color)
    stream = _Tty()
    configure("console", stream=stream)
    logging.getLogger("faithflow.test").warning("hello")
    assert "hello" in stream.getvalue()
    assert ("\x1b[" in stream.getvalue()) is coloured
