"""Message templates: package files per channel, rendered in the tenant's locale and time zone.

A template `NAME` (an identifier, `^[a-z][a-z0-9_]*$`: never a path) has one file per channel
it can go out on, in `comms/templates/`:

- `NAME.email.txt`: the first line is `Subject: …`, then a blank line, then the text body;
- `NAME.sms.txt`: one short text; written to fit one SMS segment (160 GSM-7 characters;
  `comms.sms`), which `check_sms_fit` checks for the dunning templates;
- `NAME.whatsapp.txt`: the WhatsApp text, word for word the template approved in Twilio's
  Content Template Builder, with `{{1}}`, `{{2}}`… where this file has its placeholders in order
  of first appearance (`comms.whatsapp`: what is sent is the Content SID and those values).

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
    """How many SMS segments `text` takes (`comms.sms.cost`: GSM-7 160 / 153, UCS-2 70 / 67)."""
    from faithflow_ops.comms.sms import segments

    return segments(text)


def placeholders(name: str, channel: str) -> list[str]:
    """The placeholders of template `name` on `channel`, in the order they first appear (a
    WhatsApp template's `{{1}}`, `{{2}}`… in the approved version: comms/whatsapp.py)."""
    template = load(name, channel)
    seen: list[str] = []
    for match in string.Template.pattern.finditer(template.body.template):
        found = match.group("named") or match.group("braced")
        if found and found not in seen:
            seen.append(found)
    return seen


# A church's name in an SMS (tenants.sms_name, or its folded name) may take this many
# characters; a dunning SMS template must leave that room in one GSM-7 segment.
SMS_NAME_ROOM = 30
# The longest values a dunning SMS carries, to measure a template with: the amount (16
# characters as `NGN 9,999,999.99`), the dates (every month: the longest in the locale), the
# number of days, an invoice number; any other placeholder gets 16 characters.
_SAMPLE: dict[str, Any] = {
    "amount_minor": 999_999_999,
    "currency": "NGN",
    "days_past_due": 999,
    "invoice_number": "INV-2026-0000001",
    "tenant_slug": "x" * 16,
}


@cache
def sms_room(name: str, locale: str = "en") -> int:
    """GSM-7 septets left for the church's name (`$tenant_name`) in one segment of template
    `name`'s SMS with the longest values in `locale` (negative: over by that many)."""
    from faithflow_ops.comms.sms import SINGLE, cost, fold

    fill = dict.fromkeys(placeholders(name, "sms"), "x" * 16)
    room = SINGLE["GSM-7"]
    for month in range(1, 13):
        at = f"2026-{month:02d}-28T12:00:00+00:00"
        # a one-letter name, then taken off: folding an empty one would join its spaces
        variables = fill | _SAMPLE | {"tenant_name": "X", "suspend_at": at, "paid_at": at}
        variables |= {key: at for key in fill if key.endswith("_at")}
        text = fold(render(name, "sms", variables, locale=locale).body)
        room = min(room, SINGLE["GSM-7"] - cost(text).units + ("tenant_name" in fill))
    return room


def check_sms_fit(name: str, locales: tuple[str, ...] = ("en",)) -> None:
    """UserError unless template `name`'s SMS leaves SMS_NAME_ROOM characters for the church's
    name in one GSM-7 segment, with the longest amount and date, in each of `locales` (a
    dunning SMS must cost one segment: comms.outbox)."""
    if "sms" not in available(name):
        return
    for locale in locales:
        room = sms_room(name, locale)
        if room < SMS_NAME_ROOM:
            raise UserError(
                f"template {name}.sms.txt does not fit one SMS segment (160 GSM-7 characters) "
                f"with a {SMS_NAME_ROOM}-character church name and the longest amount and date "
                f"in {locale}: it leaves {max(room, 0)} for the name; shorten it by "
                f"{SMS_NAME_ROOM - room} characters"
            )


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


@cache
def available(name: str) -> tuple[str, ...]:
    """The channels template `name` has a file for; UserError when it is not a name. Cached:
    the package's files do not change while it runs, and the dunning plan asks per case."""
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
