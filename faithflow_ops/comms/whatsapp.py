"""WhatsApp messages go out as approved templates, or not at all.

WhatsApp takes free text only inside the 24-hour window after the church last wrote to us; a
business-initiated message outside it — every dunning message — must be a template WhatsApp
approved, else Twilio fails it with 63016. Twilio sends a template from the Content Template
Builder with `ContentSid` (`HX…`) and `ContentVariables` (a JSON object `{"1": "…", …}`) in
place of `Body` (https://www.twilio.com/docs/content/send-templates-created-with-the-content-template-builder;
https://www.twilio.com/docs/whatsapp/tutorial/send-whatsapp-notification-messages-templates).

- The SID of each outbox template per locale is configuration: `TWILIO_CONTENT_SIDS`
  (`dunning_reminder:en=HX…,dunning_reminder:fr=HX…`; `config._content_sids` validates it).
  A tenant's locale finds its exact entry (`fr_CI`), else its language's (`fr`) — never
  another language's: a French church gets the French SMS rather than an English WhatsApp.
- The values: `NAME.whatsapp.txt` is the approved text word for word, its placeholders in
  order of first appearance being `{{1}}`, `{{2}}`…; `content_variables` numbers them so.
  Meta refuses a parameter with a new line, a tab or more than four spaces in a row, so each
  value is put on one line.
- No SID for the template and locale, or no WhatsApp opt-in recorded (dunning preferences):
  the message goes by SMS, and the record says why (`unavailable`, the dunning plan).
"""

from __future__ import annotations

import json
import re
from typing import TYPE_CHECKING

from faithflow_ops.comms import templates

if TYPE_CHECKING:
    from faithflow_ops.config import Settings

MAX_VARIABLES = 100  # Twilio: up to 100 key-value pairs per request


def _locale_keys(locale: str) -> list[str]:
    tag = (locale or "en").replace("-", "_")
    lang, _, region = tag.partition("_")
    keys = [lang.lower()]
    if region:
        keys.insert(0, f"{lang.lower()}_{region.upper()}")
    return keys


def content_sid(settings: Settings | None, template: str, locale: str) -> str | None:
    """The approved template's Content SID for `template` in `locale` (exact, then its
    language), or None."""
    if settings is None:
        return None
    for key in _locale_keys(locale):
        sid = settings.twilio_content_sids.get(f"{template}:{key}")
        if sid:
            return sid
    return None


def unavailable(settings: Settings | None, template: str, locale: str) -> str | None:
    """None when a WhatsApp message of `template` can go out for a tenant in `locale`, else
    why not (the reason the dunning plan and the message record show)."""
    if content_sid(settings, template, locale) is not None:
        return None
    keys = " or ".join(f"{template}:{key}" for key in _locale_keys(locale))
    return f"no approved WhatsApp template for {keys} in TWILIO_CONTENT_SIDS"


_SPACES = re.compile(r"\s+")


def content_variables(template: str, values: dict[str, str]) -> dict[str, str]:
    """`{"1": …, "2": …}`: the values of the placeholders of `template`'s WhatsApp version, in
    the order they first appear; KeyError names a missing one."""
    names = templates.placeholders(template, "whatsapp")
    if len(names) > MAX_VARIABLES:
        raise ValueError(f"{len(names)} placeholders; Twilio takes at most {MAX_VARIABLES}")
    return {
        str(n): _SPACES.sub(" ", values[name]).strip() or "-"
        for n, name in enumerate(names, start=1)
    }


def encode_variables(variables: dict[str, str]) -> str:
    """The `ContentVariables` form field: a JSON object, keys in order."""
    return json.dumps(variables, ensure_ascii=False, separators=(",", ":"))


def approved(settings: Settings | None, template: str) -> list[str]:
    """The locales `template` has an approved WhatsApp template for (TWILIO_CONTENT_SIDS)."""
    if settings is None:
        return []
    prefix = f"{template}:"
    return sorted(k[len(prefix) :] for k in settings.twilio_content_sids if k.startswith(prefix))


def stray_sids(settings: Settings | None) -> list[str]:
    """TWILIO_CONTENT_SIDS entries no message can use: the template does not exist or has no
    WhatsApp version (a typo sends every such message by SMS), each with why."""
    if settings is None:
        return []
    names = set(templates.names())
    found = []
    for key in sorted(settings.twilio_content_sids):
        name = key.partition(":")[0]
        if name not in names:
            found.append(f"{key}: there is no template {name!r}")
        elif "whatsapp" not in templates.available(name):
            found.append(f"{key}: template {name!r} has no whatsapp version")
    return found
