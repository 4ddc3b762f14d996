"""Fixtures of this area; the helpers are in security_world.py (a module name of its
own, so areas run together never import another area's helpers)."""

from __future__ import annotations

import pytest
from security_world import World, seed

from faithflow_ops.db import Database


@pytest.fixture
def world(db: Database) -> World:
    return seed(db)
