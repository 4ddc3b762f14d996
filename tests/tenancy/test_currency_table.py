"""One ISO 4217 exponent table (faithflow_ops.money): tenant validation reads it, no copy."""

from __future__ import annotations

import pytest

from faithflow_ops import money
from faithflow_ops.errors import UserError
from faithflow_ops.tenancy import validation


def test_tenant_validation_uses_the_money_table_not_a_copy() -> None:
    assert not hasattr(validation, "CURRENCY_EXPONENTS")
    assert all(validation.currency_exponent(c) == e for c, e in money.ISO_EXPONENTS.items())
    assert [validation.currency_exponent(c) for c in ("ngn", "JPY", "KWD")] == [2, 0, 3]
    with pytest.raises(UserError, match="'XYZ' is not an ISO 4217 code"):
        validation.currency("XYZ")
