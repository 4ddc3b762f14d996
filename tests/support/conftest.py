"""The support area's fixtures: `world` is the seeded support platform of
tests/support_world.py (tenants grace and hope, agents ada and ben, a tenant user), on both
databases."""

from __future__ import annotations

import pytest
from support_world import seed

from faithflow_ops.db import Database


@pytest.fixture
def world(db: Database) -> Database:
    seed(db)  # ada and ben (agents), pastor@grace.example (a tenant user)
    return db
