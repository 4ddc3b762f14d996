"""Anonymising a closed support ticket: the requester's name and e-mail leave the ticket, and
the text of the ticket and its messages loses what identifies a person — e-mail addresses,
phone numbers and the requester's name — so the support history (categories, SLA clocks,
what was asked and answered) stays usable. Requester-authored messages also lose their
`author_email`. Agents' addresses (platform staff) stay."""

from __future__ import annotations

import re

REDACTED = "[redacted]"
ANONYMISED_DOMAIN = "anonymised.invalid"  # RFC 2606: never deliverable

_EMAIL = re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+")
# International or local numbers: 7+ digits with the usual separators (+234 801 234 5678,
# (0801) 234-5678); dates (2026-03-01, 01/03/2026) and short amounts stay.
_PHONE = re.compile(r"(?<![\w+])\+?\d[\d ().-]{5,}\d(?!\w)")
_MIN_NAME_PART = 3  # parts shorter than this ("Jo", "Li") are too common words to replace


PLACEHOLDER_PREFIX, PLACEHOLDER_SUFFIX = "ticket-", f"@{ANONYMISED_DOMAIN}"


def placeholder_email(ticket_id: int) -> str:
    """What replaces a requester's e-mail (the column is NOT NULL): unique, never deliverable."""
    return f"{PLACEHOLDER_PREFIX}{ticket_id}{PLACEHOLDER_SUFFIX}"


_DATE = re.compile(r"\d{4}-\d{2}-\d{2}|\d{1,2}[./-]\d{1,2}[./-]\d{2,4}")


def _is_phone(text: str) -> bool:
    return sum(ch.isdigit() for ch in text) >= 7 and not _DATE.fullmatch(text.strip())


def _name_parts(name: str | None) -> frozenset[str]:
    if not name:
        return frozenset()
    return frozenset(
        w.casefold() for w in re.split(r"[\s,]+", name.strip()) if len(w) >= _MIN_NAME_PART
    )


def scrubber(name: str | None) -> Scrubber:
    return Scrubber(_name_parts(name))


_WORD = re.compile(r"\w+")
_RUNS = re.compile(rf"{re.escape(REDACTED)}(?:[ ,.]+{re.escape(REDACTED)})+")


class Scrubber:
    """Rewrites one ticket's texts: no regular expression is compiled per ticket (a batch holds
    thousands); the requester's name is matched word by word, case-insensitively, and a run of
    redacted words ("Ada Obi") becomes one `[redacted]`."""

    def __init__(self, names: frozenset[str]) -> None:
        self.names = names

    def _word(self, match: re.Match[str]) -> str:
        return REDACTED if match.group(0).casefold() in self.names else match.group(0)

    def __call__(self, text: str) -> str:
        text = _EMAIL.sub(REDACTED, text)
        text = _PHONE.sub(lambda m: REDACTED if _is_phone(m.group(0)) else m.group(0), text)
        if self.names:
            text = _RUNS.sub(REDACTED, _WORD.sub(self._word, text))
        return text
