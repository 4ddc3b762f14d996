"""Money as people read it: one formatter for every table, record, alert and message.

Amounts are stored as integer minor units (DESIGN §3); `format_money(minor, currency)` turns
them into text with the CLDR data Babel ships (`babel.numbers.format_currency`), with integer
arithmetic only (no floats). How many digits a minor unit has comes from ISO 4217 (the table
below), not from CLDR: CLDR's display digits round some currencies to whole units (HUF, IDR,
COP…), which would hide the minor units we store, and could not tell `500.00` from `50,000`.

Two styles, one function:

- `code=True` (the default, the operator style: CLI tables, records, alerts, job reasons):
  the ISO code, a space, the grouped amount with exactly the currency's decimals —
  `USD 79.00`, `NGN 15,000.00`, `GHS 450.00`, `KES 1,500.00`, `JPY 7,900`, `UGX 50,000`,
  `KWD 5.120`. Unambiguous with several currencies on one screen (`$` is many dollars), plain
  ASCII letters, and the same text the SMS templates send. The no-break spaces some locales
  group digits with become plain spaces, so an SMS stays GSM-7 (`XOF 250 000` in French).
- `code=False` (e-mail and WhatsApp templates): the locale's own pattern and symbol —
  `₦15,000.00`, `¥7,900`, `1 234,50 €`.

Provider exponents: what "one minor unit" means in an amount a provider sends is the
provider's choice, which mostly follows ISO 4217 — except where it does not:

- Stripe (https://docs.stripe.com/currencies, "Zero-decimal currencies" and "Special cases"):
  BIF CLP DJF GNF JPY KMF KRW MGA PYG RWF UGX VND VUV XAF XOF XPF are zero-decimal (an amount
  of 500 is ¥500, 50000 is UGX 50,000) — all ISO 0 except MGA (ISO 2, Stripe 0). ISK is ISO 0,
  but "ISK will remain a two-decimal currency in the Stripe API, and an ISK amount of `100`
  will continue to represent 1 króna" (https://support.stripe.com/questions/
  deprecation-of-fractional-isk-charges-and-refunds). HUF and TWD stay two-decimal for charges
  (zero-decimal only for payouts); BHD JOD KWD OMR TND are three-decimal (the last digit 0).
- Paystack (https://paystack.com/docs/api/#supported-currency; the PaystackOSS client docs:
  "Amount should be in kobo if currency is NGN, pesewas, if currency is GHS, and cents, if
  currency is ZAR"): NGN (kobo), GHS (pesewas), KES, ZAR and USD (cents) are all subunits of
  100 — the ISO exponent, so nothing to override.

Pass `provider=` when the amount is the one a provider sent (an invoice, a dispute, a refund).
"""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal
from functools import cache
from typing import TYPE_CHECKING

from faithflow_ops.errors import UserError

if TYPE_CHECKING:
    from babel import Locale

# ISO 4217 currencies in circulation → digits after the decimal point (the minor unit).
# Money is stored as integer minor units (DESIGN §3), so this table decides what 1.00 means.
_EXPONENT_0 = "BIF CLP DJF GNF ISK JPY KMF KRW PYG RWF UGX UYI VND VUV XAF XOF XPF"
_EXPONENT_3 = "BHD IQD JOD KWD LYD OMR TND"
_EXPONENT_4 = "CLF UYW"
_EXPONENT_2 = """
    AED AFN ALL AMD ANG AOA ARS AUD AWG AZN BAM BBD BDT BGN BMD BND BOB BOV BRL BSD BTN BWP BYN
    BZD CAD CDF CHE CHF CHW CNY COP COU CRC CUC CUP CVE CZK DKK DOP DZD EGP ERN ETB EUR FJD FKP
    GBP GEL GHS GIP GMD GTQ GYD HKD HNL HTG HUF IDR ILS INR IRR JMD KES KGS KHR KPW KYD KZT LAK
    LBP LKR LRD LSL MAD MDL MGA MKD MMK MNT MOP MRU MUR MVR MWK MXN MXV MYR MZN NAD NGN NIO NOK
    NPR NZD PAB PEN PGK PHP PKR PLN QAR RON RSD RUB SAR SBD SCR SDG SEK SGD SHP SLE SLL SOS SRD
    SSP STN SVC SYP SZL THB TJS TMT TOP TRY TTD TWD TZS UAH USD USN UYU UZS VED VES WST XCD XCG
    YER ZAR ZMW ZWG ZWL
"""
ISO_EXPONENTS: dict[str, int] = {
    code: exponent
    for exponent, codes in ((0, _EXPONENT_0), (2, _EXPONENT_2), (3, _EXPONENT_3), (4, _EXPONENT_4))
    for code in codes.split()
}

# Where a provider's amounts count in another unit than ISO 4217's (see the module docstring).
PROVIDER_EXPONENTS: dict[str, dict[str, int]] = {
    "stripe": {"ISK": 2, "MGA": 0},
    "paystack": {},  # NGN GHS KES ZAR USD: subunits of 100, as ISO
}

# The narrow and the ordinary no-break space (French digit groups, "250 000 F CFA") are not
# GSM-7: one of them in an SMS makes the whole text UCS-2 (70 characters a segment, not 160).
_NBSP = str.maketrans({"\u202f": " ", "\u00a0": " "})


def exponent(currency: str, provider: str | None = None) -> int:
    """Digits in `currency`'s minor unit as `provider` counts it (ISO 4217 when None);
    UserError for a code that is not a currency."""
    code = currency.strip().upper()
    if code not in ISO_EXPONENTS:
        raise UserError(
            f"currency {currency!r} is not an ISO 4217 code; use three letters such as NGN, GHS, "
            "KES, USD or GBP"
        )
    overrides = PROVIDER_EXPONENTS.get(provider or "", {})
    return overrides.get(code, ISO_EXPONENTS[code])


def major(minor: int, currency: str, provider: str | None = None) -> Decimal:
    """`minor` units as an exact Decimal of major units with the currency's decimals
    (4999 USD → Decimal('49.99'), 7900 JPY → Decimal('7900'))."""
    digits = exponent(currency, provider)
    return Decimal(int(minor)).scaleb(-digits).quantize(Decimal(1).scaleb(-digits))


def to_minor(amount: Decimal | str, currency: str, provider: str | None = None) -> int:
    """Major units back to integer minor units (`Decimal('450.00')` GHS → 45000); exact."""
    return int(Decimal(str(amount)).scaleb(exponent(currency, provider)))


def iso_minor(minor: int, currency: str, provider: str) -> int:
    """An amount `provider` sent, as ISO 4217 minor units (what a plan's price and a dunning
    case hold): Stripe MGA 500 → 50000, Stripe ISK 500 → 5, NGN at Paystack unchanged. Exact
    for every amount the provider accepts (Stripe's ISK amounts are multiples of 100); a
    fraction of the ISO unit, which it refuses, rounds half up."""
    digits, iso = exponent(currency, provider), exponent(currency)
    if digits == iso:
        return int(minor)
    amount = Decimal(int(minor)).scaleb(iso - digits)
    return int(amount.to_integral_value(rounding=ROUND_HALF_UP))


@cache
def locale_of(tag: str) -> Locale:
    """The Babel Locale for a locale tag (`en_NG`, `fr-CI`), English when unknown; parsed once
    per tag (parsing reads the CLDR data files)."""
    from babel import Locale, UnknownLocaleError

    try:
        return Locale.parse(tag.replace("-", "_"))
    except (UnknownLocaleError, ValueError, TypeError, AttributeError):
        return Locale.parse("en")


def format_money(
    minor: int,
    currency: str,
    *,
    locale: str | Locale = "en",
    code: bool = True,
    provider: str | None = None,
) -> str:
    """`minor` units of `currency` as text: `GHS 450.00`, `JPY 7,900`, `UGX 50,000` (code
    style, the default) or the locale's symbol style (`code=False`: `₦15,000.00`, `¥7,900`).
    Always exactly the currency's ISO 4217 decimals (or `provider`'s, see the module doc)."""
    import copy

    from babel.numbers import format_currency

    cur = currency.strip().upper()
    if cur not in ISO_EXPONENTS:  # shown, never a crash: say what the number is
        return f"{int(minor)} {currency} (minor units)"
    digits = exponent(cur, provider)
    loc = locale_of(locale) if isinstance(locale, str) else locale
    amount = Decimal(int(minor)).scaleb(-digits)
    if code:
        pattern = "¤¤ #,##0" + ("." + "0" * digits if digits else "")
        text: str = format_currency(amount, cur, format=pattern, locale=loc, currency_digits=False)
        return text.translate(_NBSP)
    standard = copy.copy(loc.currency_formats["standard"])
    standard.frac_prec = (digits, digits)
    shown: str = standard.apply(amount, loc, currency=cur, currency_digits=False)
    return shown


def format_totals(amounts: dict[str, int], *, provider: str | None = None) -> str:
    """Sums by currency in one line, `GHS 450.00, NGN 15,000.00` (`—` when there are none)."""
    if not amounts:
        return "—"
    return ", ".join(format_money(v, c, provider=provider) for c, v in sorted(amounts.items()))
