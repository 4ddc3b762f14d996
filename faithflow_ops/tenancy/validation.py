"""Checks for the values an operator types about a tenant: slug, time zone, country, currency,
email and phone. Each returns the normalised value or raises UserError naming the fix.
"""

from __future__ import annotations

import re

from faithflow_ops.errors import UserError
from faithflow_ops.money import ISO_EXPONENTS

# DNS-label shaped: the slug becomes the tenant's fallback hostname (<slug>.<fallback domain>).
_SLUG = re.compile(r"^[a-z0-9](?:[a-z0-9-]{1,61})[a-z0-9]$")
_EMAIL = re.compile(r"^[^@\s]+@[^@\s.]+(?:\.[^@\s.]+)+$")
_E164 = re.compile(r"^\+[1-9][0-9]{6,14}$")
_PHONE_SEPARATORS = re.compile(r"[\s().-]")

# ISO 3166-1 alpha-2 (from the IANA tz database's iso3166.tab).
_COUNTRY_CODES = """
    AD AE AF AG AI AL AM AO AQ AR AS AT AU AW AX AZ BA BB BD BE BF BG BH BI BJ BL BM BN BO BQ BR BS
    BT BV BW BY BZ CA CC CD CF CG CH CI CK CL CM CN CO CR CU CV CW CX CY CZ DE DJ DK DM DO DZ EC EE
    EG EH ER ES ET FI FJ FK FM FO FR GA GB GD GE GF GG GH GI GL GM GN GP GQ GR GS GT GU GW GY HK HM
    HN HR HT HU ID IE IL IM IN IO IQ IR IS IT JE JM JO JP KE KG KH KI KM KN KP KR KW KY KZ LA LB LC
    LI LK LR LS LT LU LV LY MA MC MD ME MF MG MH MK ML MM MN MO MP MQ MR MS MT MU MV MW MX MY MZ NA
    NC NE NF NG NI NL NO NP NR NU NZ OM PA PE PF PG PH PK PL PM PN PR PS PT PW PY QA RE RO RS RU RW
    SA SB SC SD SE SG SH SI SJ SK SL SM SN SO SR SS ST SV SX SY SZ TC TD TF TG TH TJ TK TL TM TN TO
    TR TT TV TW TZ UA UG UM US UY UZ VA VC VE VG VI VN VU WF WS YE YT ZA ZM ZW
"""
COUNTRIES = frozenset(_COUNTRY_CODES.split())


def slug(value: str) -> str:
    raw = value.strip()
    if _SLUG.match(raw) and "--" not in raw:
        return raw
    hint = re.sub(r"[^a-z0-9-]+", "-", raw.lower()).strip("-")
    suggestion = f" (e.g. {hint!r})" if _SLUG.match(hint) and "--" not in hint else ""
    raise UserError(
        f"slug {value!r} is not valid: use 3-63 lowercase letters, digits and single hyphens, "
        f"starting and ending with a letter or digit{suggestion}"
    )


# Characters a name must not hold: C0 and C1 controls (ESC starts terminal escape sequences)
# and the bidi embeddings, overrides and isolates (U+202A-U+202E, U+2066-U+2069) that make text
# read differently from what it is ("Trojan Source").
_BIDI = frozenset(range(0x202A, 0x202F)) | frozenset(range(0x2066, 0x206A))


def unsafe_char(text: str) -> str | None:
    """The first control or bidi-override character in `text` (None when there is none)."""
    for ch in text:
        code = ord(ch)
        if code < 0x20 or 0x7F <= code <= 0x9F or code in _BIDI:
            return ch
    return None


def name(value: str, what: str = "name") -> str:
    cleaned = " ".join(value.split())
    bad = unsafe_char(cleaned)
    if bad is not None:
        raise UserError(
            f"{what} contains the control or bidi-override character U+{ord(bad):04X}; "
            "type the name as plain text (no escape sequences, no direction overrides)"
        )
    if not cleaned:
        raise UserError(f"{what} must not be empty")
    if len(cleaned) > 200:
        raise UserError(f"{what} is {len(cleaned)} characters long; keep it to 200")
    return cleaned


def timezone(value: str) -> str:
    """An IANA time zone name such as Africa/Lagos."""
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

    raw = value.strip()
    try:
        ZoneInfo(raw)
    except (ZoneInfoNotFoundError, ValueError):
        pass
    else:
        if raw:
            return raw
    tail = raw.replace(" ", "_").rsplit("/", 1)[-1].lower()
    close = sorted(z for z in available_timezones() if tail and z.lower().endswith("/" + tail))
    hint = f"did you mean {', '.join(close[:3])}?" if close else "use e.g. Africa/Lagos"
    raise UserError(f"time zone {value!r} is not an IANA time zone name; {hint}")


def country(value: str) -> str:
    code = value.strip().upper()
    if code not in COUNTRIES:
        raise UserError(
            f"country {value!r} is not an ISO 3166-1 alpha-2 code; use two letters such as NG, "
            "GH, KE, US or GB"
        )
    return code


def currency(value: str) -> str:
    code = value.strip().upper()
    if code not in ISO_EXPONENTS:  # one table: faithflow_ops.money
        raise UserError(
            f"currency {value!r} is not an ISO 4217 code; use three letters such as NGN, GHS, "
            "KES, USD or GBP"
        )
    return code


def currency_exponent(code: str) -> int:
    """Digits in the currency's minor unit (2 for NGN and USD, 0 for JPY, 3 for KWD)."""
    return ISO_EXPONENTS[currency(code)]


def email(value: str) -> str:
    raw = value.strip()
    if len(raw) > 320 or not _EMAIL.match(raw):
        raise UserError(f"email {value!r} is not an email address; use e.g. finance@church.org")
    return raw


def phone(value: str) -> str:
    """E.164 (`+2348031234567`); spaces, dots, dashes and brackets are dropped first."""
    compact = _PHONE_SEPARATORS.sub("", value)
    if not _E164.match(compact):
        raise UserError(
            f"phone {value!r} is not an E.164 number; use + and the country code, "
            "e.g. +2348031234567"
        )
    return compact
