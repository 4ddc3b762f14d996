"""`faithflow_ops.money`: one formatter for every amount shown, by ISO 4217 exponents and the
providers' own (Stripe's zero-decimal and special cases, Paystack's subunits)."""

from __future__ import annotations

from decimal import Decimal

import pytest

from faithflow_ops import money
from faithflow_ops.errors import UserError

# The operator style (tables, records, alerts, job reasons): ISO code, space, the amount with
# exactly the currency's decimals.
SHOWN = [
    (7900, "USD", "USD 79.00"),
    (1500000, "NGN", "NGN 15,000.00"),
    (45000, "GHS", "GHS 450.00"),
    (150000, "KES", "KES 1,500.00"),
    (7900, "JPY", "JPY 7,900"),
    (50000, "UGX", "UGX 50,000"),
    (5120, "KWD", "KWD 5.120"),  # three decimals
    (1045, "HUF", "HUF 10.45"),  # ISO 2 (CLDR would round it to HUF 10)
    (10000000, "IDR", "IDR 100,000.00"),  # ISO 2 (CLDR shows whole rupiah)
    (0, "GHS", "GHS 0.00"),
    (-45000, "GHS", "-GHS 450.00"),
    (7900, "jpy", "JPY 7,900"),  # as a provider spells it
]


@pytest.mark.parametrize(("minor", "currency", "expected"), SHOWN)
def test_operator_style(minor: int, currency: str, expected: str) -> None:
    assert money.format_money(minor, currency) == expected


@pytest.mark.parametrize(
    ("minor", "currency", "locale", "expected"),
    [
        (1500000, "NGN", "en_NG", "₦15,000.00"),
        (7900, "JPY", "en", "¥7,900"),
        (7900, "USD", "en", "$79.00"),
        (45000, "GHS", "en_GH", "GH₵450.00"),
        (50000, "UGX", "en_UG", "USh50,000"),
        (123450, "EUR", "fr_FR", "1\u202f234,50\xa0€"),
        (1045, "HUF", "hu", "10,45\xa0Ft"),
    ],
)
def test_locale_style(minor: int, currency: str, locale: str, expected: str) -> None:
    assert money.format_money(minor, currency, locale=locale, code=False) == expected


def test_code_style_has_plain_spaces_for_gsm7() -> None:
    assert money.format_money(25000000, "XOF", locale="fr_CI") == "XOF 25 000 000"


def test_stripe_exponents_differ_where_stripe_says_so() -> None:
    # ISK: ISO 0, but two-decimal in Stripe's API (100 = 1 króna).
    assert money.format_money(500, "ISK") == "ISK 500"
    assert money.format_money(500, "ISK", provider="stripe") == "ISK 5.00"
    # MGA: ISO 2, zero-decimal at Stripe.
    assert money.format_money(500, "MGA", provider="stripe") == "MGA 500"
    # UGX and JPY: zero-decimal at Stripe, as in ISO.
    assert money.format_money(50000, "UGX", provider="stripe") == "UGX 50,000"
    assert money.format_money(7900, "JPY", provider="stripe") == "JPY 7,900"
    # Paystack: NGN GHS KES ZAR USD in subunits of 100.
    for cur in ("NGN", "GHS", "KES", "ZAR", "USD"):
        assert money.exponent(cur, "paystack") == 2


def test_exact_conversions_without_floats() -> None:
    assert money.major(4999, "USD") == Decimal("49.99")
    assert money.major(7900, "JPY") == Decimal("7900")
    assert money.to_minor("450.00", "GHS") == 45000
    assert money.to_minor(Decimal("7900"), "JPY") == 7900
    big = 10**17 + 1
    assert money.format_money(big, "NGN") == "NGN 1,000,000,000,000,000.01"


def test_an_unknown_currency_is_shown_not_a_crash() -> None:
    assert money.format_money(1234, "XYZ") == "1234 XYZ (minor units)"
    with pytest.raises(UserError, match="not an ISO 4217 code"):
        money.exponent("XYZ")


def test_totals_by_currency() -> None:
    assert money.format_totals({"NGN": 1500000, "GHS": 45000}) == "GHS 450.00, NGN 15,000.00"
    assert money.format_totals({}) == "—"


# Stripe's lists, https://docs.stripe.com/currencies#zero-decimal ("Zero-decimal currencies":
# the amount is the charge, no multiplication) and #special-cases (ISK stays two-decimal in the
# API, multiples of 100 — https://support.stripe.com/questions/deprecation-of-fractional-isk-
# charges-and-refunds: "an ISK amount of `100` will continue to represent 1 króna"; HUF and TWD
# are zero-decimal only for payouts, two-decimal for charges), and "Three-decimal currencies".
STRIPE_ZERO_DECIMAL = [
    "BIF", "CLP", "DJF", "GNF", "JPY", "KMF", "KRW", "MGA",
    "PYG", "RWF", "UGX", "VND", "VUV", "XAF", "XOF", "XPF",
]  # fmt: skip
STRIPE_THREE_DECIMAL = ["BHD", "JOD", "KWD", "OMR", "TND"]


@pytest.mark.parametrize("currency", STRIPE_ZERO_DECIMAL)
def test_every_stripe_zero_decimal_amount_is_whole_units(currency: str) -> None:
    assert money.exponent(currency, "stripe") == 0
    assert money.major(500, currency.lower(), "stripe") == Decimal("500")
    assert money.to_minor(Decimal("500"), currency, "stripe") == 500


@pytest.mark.parametrize(
    ("minor", "currency", "major"),
    [
        (500, "ISK", Decimal("5.00")),  # two-decimal in the API, whole krónur (x100)
        (1045, "HUF", Decimal("10.45")),  # charges are two-decimal
        (1045, "TWD", Decimal("10.45")),
        *((5120, cur, Decimal("5.120")) for cur in STRIPE_THREE_DECIMAL),
    ],
)
def test_stripe_special_cases(minor: int, currency: str, major: Decimal) -> None:
    assert money.major(minor, currency, "stripe") == major
    assert money.to_minor(major, currency, "stripe") == minor


def test_a_provider_amount_as_iso_minor_units() -> None:
    assert money.iso_minor(500, "MGA", "stripe") == 50000  # MGA 500: ISO has 2 decimals
    assert money.iso_minor(500, "ISK", "stripe") == 5  # 5 krónur: ISO has none
    assert money.iso_minor(7900, "USD", "stripe") == 7900
    assert money.iso_minor(1500000, "NGN", "paystack") == 1500000
    assert money.iso_minor(550, "ISK", "stripe") == 6  # a legacy fraction rounds half up
