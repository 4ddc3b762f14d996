"""Message templates: package files per channel, rendered in the tenant's locale and time zone.

A template `NAME` (an identifier, `^[a-z][a-z0-9_]*$`: never a path) has one file per channel
it can go out on, in `comms/templates/`:

- `NAME.email.txt`: the first line is `Subject: …`, then a blank line, then the text body;
- `NAME.sms.txt`: one short text; written to fit one SMS segment (160 GSM-7 characters);
- `NAME.whatsapp.txt`: the WhatsApp text.

Placeholders are `$name` / `${name}` (string.Template: no expressions, nothing to inject). A
placeholder missing from the variables is an error at enqueue time, never a half-filled message.

Variables are stored as plain JSON and formatted here, per the tenant's locale (CLDR via Babel):

- `X_minor` with `currency` (or `X_currency`) → `$X`: money, e.g. `₦15,000.00`, `1.234,50 €`
  (`faithflow_ops.money.format_money`: the ISO 4217 decimals of the currency, always).
  SMS shows the ISO code instead of the symbol (`NGN 15,000.00`): most currency symbols are not
  GSM-7 and would force the whole text into 70-character UCS-2 segments; for the same reason
  the no-break spaces some locales group digits with become plain spaces (`XOF 250 000`).
- `X_at` (ISO-8601) → `$X_date` and `$X_time` in the tenant's time zone.
- anything else is used as it is (`str()`).
"""

from __future__ import annotations

import datetime as dt
import re
import string
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any
from zoneinfo import ZoneInfo

from faithflow_ops.clock import parse_time
from faithflow_ops.errors import UserError
from faithflow_ops.money import format_money, locale_of

CHANNELS = ("email", "sms", "whatsapp")

# GSM 03.38 basic set plus the extension table (each extension character costs two septets).
_GSM7 = set(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?¡ABCDEFGHIJKLMNOPQRSTUVWXYZ"
    "ÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
_GSM7_EXT = set("^{}\\[~]|€\f")


@dataclass(frozen=True)
class Rendered:
    subject: str | None
    body: str


@dataclass(frozen=True)
class Template:
    name: str
    channel: str
    subject: string.Template | None
    body: string.Template

    def fill(self, values: dict[str, str]) -> tuple[str | None, str]:
        """(subject, body) with the placeholders replaced; KeyError names a missing one,
        ValueError a malformed `$`."""
        subject = fill_template(self.subject, values) if self.subject is not None else None
        return subject, fill_template(self.body, values)


def fill_template(template: string.Template, values: dict[str, str]) -> str:
    form = _format_string(template.template)
    return template.substitute(values) if form is None else form.format_map(values)


@cache
def _format_string(source: str) -> str | None:
    """`source` as a str.format string (filled in C, several times faster than `substitute`,
    with the same result and the same KeyError), or None when it has a malformed `$` (then
    `substitute` raises its own ValueError)."""
    parts: list[str] = []
    last = 0
    for match in string.Template.pattern.finditer(source):
        if match.group("invalid") is not None:
            return None
        parts.append(source[last : match.start()].replace("{", "{{").replace("}", "}}"))
        name = match.group("named") or match.group("braced")
        parts.append("$" if name is None else "{" + name + "}")
        last = match.end()
    parts.append(source[last:].replace("{", "{{").replace("}", "}}"))
    return "".join(parts)


def sms_segments(text: str) -> int:
    """How many SMS segments `text` takes (GSM-7: 160 / 153 per part; else UCS-2: 70 / 67)."""
    if all(c in _GSM7 or c in _GSM7_EXT for c in text):
        septets = sum(2 if c in _GSM7_EXT else 1 for c in text)
        return 1 if septets <= 160 else -(-septets // 153)
    units = sum(2 if ord(c) > 0xFFFF else 1 for c in text)
    return 1 if units <= 70 else -(-units // 67)


_NAME = re.compile(r"[a-z][a-z0-9_]*")


def check_name(name: str) -> str:
    """`name` when it is a template name (`^[a-z][a-z0-9_]*$`: never a path, so no file
    outside the package is read), else UserError listing the templates there are."""
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise UserError(
            f"{name!r} is not a template name (lower-case letters, digits and _); templates: "
            f"{', '.join(names())}"
        )
    return name


def available(name: str) -> tuple[str, ...]:
    """The channels template `name` has a file for; UserError when it is not a name."""
    check_name(name)
    return tuple(c for c in CHANNELS if _source(name, c) is not None)


def names() -> list[str]:
    """Every template in the package."""
    found = set()
    for entry in resources.files("faithflow_ops.comms").joinpath("templates").iterdir():
        parts = entry.name.split(".")
        if len(parts) == 3 and parts[1] in CHANNELS and parts[2] == "txt":
            found.add(parts[0])
    return sorted(found)


def _source(name: str, channel: str) -> str | None:
    check_name(name)
    path = resources.files("faithflow_ops.comms").joinpath("templates", f"{name}.{channel}.txt")
    return path.read_text(encoding="utf-8") if path.is_file() else None


@cache
def load(name: str, channel: str) -> Template:
    """The template `name` for `channel`, or UserError when there is no such file."""
    if channel not in CHANNELS:
        raise UserError(f"channel {channel!r} is not one of: {', '.join(CHANNELS)}")
    check_name(name)
    text = _source(name, channel)
    if text is None:
        have = ", ".join(available(name)) or "none"
        raise UserError(
            f"template {name!r} has no {channel} version (channels: {have}); "
            f"add faithflow_ops/comms/templates/{name}.{channel}.txt"
        )
    subject = None
    if channel == "email":
        first, _, rest = text.partition("\n")
        if not first.startswith("Subject:"):
            raise UserError(f"template {name}.email.txt must start with a 'Subject: …' line")
        subject = string.Template(first[len("Subject:") :].strip())
        text = rest.lstrip("\n")
    return Template(name, channel, subject, string.Template(text.rstrip("\n") + "\n"))


def subject_variables(name: str) -> set[str]:
    """The placeholders the e-mail subject of template `name` uses (none without one)."""
    try:
        template = load(name, "email")
    except UserError:
        return set()
    return set(template.subject.get_identifiers()) if template.subject is not None else set()


def render(
    name: str,
    channel: str,
    variables: dict[str, Any],
    *,
    locale: str = "en",
    timezone: str = "UTC",
) -> Rendered:
    """Fill template `name` for `channel`; UserError names a missing variable."""
    template = load(name, channel)
    values = context(variables, locale=locale, timezone=timezone, channel=channel)
    try:
        subject, body = template.fill(values)
    except KeyError as exc:
        raise UserError(
            f"template {name}.{channel}.txt needs the variable {exc.args[0]!r}, which was not given"
        ) from None
    except ValueError as exc:
        raise UserError(f"template {name}.{channel}.txt is malformed ({exc})") from None
    if channel != "email":
        body = body.strip()
    return Rendered(subject, body)


def context(
    variables: dict[str, Any], *, locale: str, timezone: str, channel: str
) -> dict[str, str]:
    """The placeholder values: the variables as given plus their formatted forms."""
    from babel.dates import format_date, format_time

    loc = babel_locale(locale)
    zone = _zone(timezone)
    values = {key: "" if value is None else str(value) for key, value in variables.items()}
    for key, value in variables.items():
        if key.endswith("_minor") and value is not None:
            stem = key[: -len("_minor")]
            currency = str(variables.get(f"{stem}_currency") or variables.get("currency") or "USD")
            values[stem] = money(int(value), currency, loc, code=channel == "sms")
        elif key.endswith("_at") and value:
            when = _instant(value).astimezone(zone)
            values[f"{key}_date"] = format_date(when.date(), "medium", locale=loc)
            values[f"{key}_time"] = format_time(when.time(), "short", locale=loc)
    return values


def babel_locale(tag: str) -> Any:
    """The Babel Locale for a tenant's locale tag (`en_NG`, `fr-CI`), English when unknown;
    parsed once per tag (parsing reads the CLDR data files)."""
    return locale_of(tag)


@cache
def _zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (KeyError, ValueError, TypeError):
        return ZoneInfo("UTC")


def money(minor: int, currency: str, locale: Any, *, code: bool = False) -> str:
    """`minor` units of `currency` as the locale writes them (`faithflow_ops.money`: ISO 4217
    decimals, integer arithmetic). `code=True` (SMS): the ISO code instead of the symbol, and
    plain spaces, so it stays GSM-7."""
    return format_money(minor, currency, locale=locale, code=code)


def _instant(value: Any) -> dt.datetime:
    """A `*_at` variable: a datetime or ISO-8601 text (naive means UTC)."""
    if isinstance(value, dt.datetime):
        return value if value.tzinfo else value.replace(tzinfo=dt.UTC)
    return parse_time(str(value))
