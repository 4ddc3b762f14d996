"""`faithflow demo`."""

from __future__ import annotations


def demo() -> None:
    """Seed a demo platform and preview every job."""
