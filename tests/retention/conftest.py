"""Fixtures of this area; the helpers are in retention_data.py (a module name of its
own, so areas run together never import another area's helpers)."""

from __future__ import annotations

import pytest
from retention_data import Data

from faithflow_ops.db import Database
from faithflow_ops.tenancy.tenants import add_tenant


@pytest.fixture
def data(db: Database) -> Data:
    with db.session() as session:
        grace = add_tenant(session, slug="grace", name="Grace Chapel", actor="test")
        hope = add_tenant(session, slug="hope", name="Hope Church", actor="test")
        return Data(db, grace.id, hope.id)
