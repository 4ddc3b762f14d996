"""What the providers' identifiers look like (`cus_…`, `CUS_…`, `SUB_…`, `AUTH_…`) and how
one raw value is checked against its format. Pure functions over plain data, low in the layers
so tenancy (linking ids), webhooks (parsing events) and billing (the backfill rules in
billing/identifiers.py) share one definition."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal, NamedTuple

Kind = Literal["customer", "subscription", "email_token", "authorization"]
KINDS: tuple[Kind, ...] = ("customer", "subscription", "email_token", "authorization")

MAX_LENGTH = 128  # subscriptions.provider_customer_id / provider_subscription_id are String(128)


@dataclass(frozen=True, slots=True)
class IdFormat:
    label: str  # "Stripe customer id"
    prefix: str  # "cus_"; "" for Paystack email tokens
    pattern: re.Pattern[str]


def _format(label: str, prefix: str) -> IdFormat:
    return IdFormat(label, prefix, re.compile(re.escape(prefix) + "[A-Za-z0-9]+"))


FORMATS: dict[tuple[str, Kind], IdFormat] = {
    ("stripe", "customer"): _format("Stripe customer id", "cus_"),
    ("stripe", "subscription"): _format("Stripe subscription id", "sub_"),
    ("paystack", "customer"): _format("Paystack customer code", "CUS_"),
    ("paystack", "subscription"): _format("Paystack subscription code", "SUB_"),
    ("paystack", "email_token"): _format("Paystack email token", ""),
    ("paystack", "authorization"): _format("Paystack authorization code", "AUTH_"),
}


# ---------------------------------------------------------------------------------------------
# Validation


class Checked(NamedTuple):
    value: str | None  # the normalised id when valid
    problem: str | None = None  # why not, when invalid


def json_type(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list | tuple):
        return "array"
    if isinstance(value, dict):
        return "object"
    return type(value).__name__


def _numeric_paystack_id(provider: str, kind: Kind) -> bool:
    return provider == "paystack" and kind in ("customer", "subscription")


def check(provider: str, kind: Kind, raw: object) -> Checked:
    """Validate one raw value as `provider`'s `kind` of identifier; trims surrounding space."""
    fmt = FORMATS.get((provider, kind))
    if fmt is None:
        raise ValueError(f"{provider!r} has no {kind} identifier")
    if type(raw) is str and len(raw) <= MAX_LENGTH and fmt.pattern.fullmatch(raw):
        return Checked(raw)  # the common case, first
    if isinstance(raw, int) and not isinstance(raw, bool):
        if _numeric_paystack_id(provider, kind):
            return Checked(None, _numeric_problem(fmt, kind))
        return Checked(None, f"a number, not a {fmt.label}")
    if not isinstance(raw, str):
        return Checked(None, f"a JSON {json_type(raw)}, not a {fmt.label}")
    text = raw.strip()
    if not text:
        return Checked(None, "empty")
    if len(text) > MAX_LENGTH:
        return Checked(None, f"longer than {MAX_LENGTH} characters")
    if fmt.pattern.fullmatch(text):
        return Checked(text)
    if any(ch.isspace() for ch in text):
        return Checked(None, "contains whitespace")
    if text.isdigit() and _numeric_paystack_id(provider, kind):
        return Checked(None, _numeric_problem(fmt, kind))
    if not text.startswith(fmt.prefix):
        return Checked(None, f"does not start with {fmt.prefix} (a {fmt.label})")
    after = f" after {fmt.prefix}" if fmt.prefix else ""
    return Checked(None, f"has characters other than letters and digits{after}")


def _numeric_problem(fmt: IdFormat, kind: Kind) -> str:
    return f"numeric: Paystack's integer {kind} id, not the {fmt.prefix}… {fmt.label.split()[-1]}"
