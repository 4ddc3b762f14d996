"""Recipients in one canonical form, so a suppression matches whatever way a number was typed.

email: trimmed, lower-cased `local@domain`. sms and whatsapp: E.164 (`+` then 8 to 15 digits);
spaces, dots, dashes and brackets are dropped, a leading `00` becomes `+`, and Twilio's
`whatsapp:` prefix is taken off (the dispatcher puts it back).
"""

from __future__ import annotations

import re

from faithflow_ops.errors import UserError

_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_E164 = re.compile(r"^\+[1-9]\d{7,14}$")
_PHONE_NOISE = re.compile(r"[\s().\-]")


def normalize(channel: str, raw: str) -> str:
    """The canonical recipient for `channel`, or UserError naming what is wrong."""
    value = (raw or "").strip()
    if channel == "email":
        if len(value) > 320 or not _EMAIL.match(value):
            raise UserError(f"{raw!r} is not an email address; use e.g. treasurer@church.org")
        return value.lower()
    if channel in ("sms", "whatsapp"):
        if value.lower().startswith("whatsapp:"):
            value = value[len("whatsapp:") :]
        value = _PHONE_NOISE.sub("", value)
        if value.startswith("00"):
            value = "+" + value[2:]
        if not _E164.match(value):
            raise UserError(
                f"{raw!r} is not a phone number in international form; use e.g. +2348012345678"
            )
        return value
    raise UserError(f"channel {channel!r} is not one of: email, sms, whatsapp")


def valid(channel: str, raw: str | None) -> str | None:
    """`normalize` or None (for optional contacts read from records)."""
    if not raw:
        return None
    try:
        return normalize(channel, raw)
    except UserError:
        return None
