"""Small helpers shared by the CLI tests."""

from __future__ import annotations

from typing import Any


def said(result: Any) -> str:
    """stderr with any line wrapping undone, for matching whole messages."""
    return " ".join(result.stderr.split())
