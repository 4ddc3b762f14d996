"""What an SMS costs: its encoding and segment count, and folding text to the GSM-7 alphabet.

Carriers bill per segment (https://www.twilio.com/docs/glossary/what-sms-character-limit,
https://www.twilio.com/docs/glossary/what-is-gsm-7-character-encoding):

- **GSM-7** (3GPP TS 23.038: the basic set, plus the extension table `^ { } [ ] ~ \\ | €` and
  form feed, each of which costs two septets: an escape and the character): 160 septets in one
  segment; a longer text is split into segments of 153 (7 septets go to the concatenation
  header), and an escape is never split from its character;
- **UCS-2** as soon as one character is outside GSM-7 (an accented Yoruba vowel, a Hausa
  hooked letter, a curly quote, an emoji): 70 UTF-16 code units in one segment, 67 per
  segment beyond; a character outside the Basic Multilingual Plane (most emoji) takes two
  units and is never split.

"Ọlọ́run Ni Ọba Parish, Ìbàdàn" in a dunning SMS makes the whole text UCS-2 (3 segments for
what fits one in GSM-7). `fold` writes such a name in GSM-7 by Unicode decomposition
(`Olorun Ni Oba Parish, Ibadan`), for the names the tenants did not give a short SMS name.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

# GSM 03.38 basic character set (the escape 0x1B itself excluded) and the extension table.
GSM7_BASIC = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?¡ABCDEFGHIJKLMNOPQRSTUVWXYZ"
    "ÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
GSM7_EXTENSION = frozenset("^{}\\[~]|€\f")

SINGLE = {"GSM-7": 160, "UCS-2": 70}  # units in a text of one segment
PART = {"GSM-7": 153, "UCS-2": 67}  # units per segment of a longer one


@dataclass(frozen=True)
class Cost:
    encoding: str  # GSM-7 | UCS-2
    units: int  # septets (GSM-7) or UTF-16 code units (UCS-2)
    segments: int

    def describe(self) -> str:
        unit = "septets" if self.encoding == "GSM-7" else "UCS-2 units"
        return f"{self.segments} {self.encoding} segment(s), {self.units} {unit}"


def is_gsm7(text: str) -> bool:
    return all(c in GSM7_BASIC or c in GSM7_EXTENSION for c in text)


def _sizes(text: str) -> tuple[str, list[int]]:
    """The encoding and each character's size in its units."""
    if is_gsm7(text):
        return "GSM-7", [2 if c in GSM7_EXTENSION else 1 for c in text]
    return "UCS-2", [2 if ord(c) > 0xFFFF else 1 for c in text]


def cost(text: str) -> Cost:
    """The encoding and segment count of `text` sent as one SMS (empty text: one segment)."""
    encoding, sizes = _sizes(text)
    units = sum(sizes)
    if units <= SINGLE[encoding]:
        return Cost(encoding, units, 1)
    segments, used = 1, 0
    for size in sizes:  # an escape pair or a surrogate pair never straddles two segments
        if used + size > PART[encoding]:
            segments, used = segments + 1, 0
        used += size
    return Cost(encoding, units, segments)


def segments(text: str) -> int:
    return cost(text).segments


# Letters that do not decompose to a GSM-7 letter (hooked and open letters of Hausa, Twi/Akan,
# Ewe, Dagbani…), and the typography editors put in names.
_FOLD = {
    "ƙ": "k", "Ƙ": "K", "ɓ": "b", "Ɓ": "B", "ɗ": "d", "Ɗ": "D", "ƴ": "y", "Ƴ": "Y",
    "ɛ": "e", "Ɛ": "E", "ɔ": "o", "Ɔ": "O", "ŋ": "n", "Ŋ": "N", "ɖ": "d", "Ɖ": "D",
    "ƒ": "f", "Ƒ": "F", "ɣ": "g", "Ɣ": "G", "ʋ": "v", "Ʋ": "V", "ı": "i", "ł": "l",
    "Ł": "L", "đ": "d", "Đ": "D", "þ": "th", "Þ": "Th", "ð": "d", "Ð": "D", "œ": "oe",
    "Œ": "OE", "ĸ": "k", "ſ": "s", "ʼ": "'", "ʻ": "'", "’": "'", "‘": "'", "‚": "'",
    "“": '"', "”": '"', "„": '"', "«": '"', "»": '"', "–": "-", "—": "-", "‐": "-",
    "‑": "-", "−": "-", "…": "...", "\u00a0": " ", "\u202f": " ", "\u2009": " ", "·": ".",
}  # fmt: skip


def _fold_char(char: str) -> str:
    """One character in GSM-7 letters without its marks ('' when it has none)."""
    if char in _FOLD:
        return _FOLD[char]
    base = "".join(c for c in unicodedata.normalize("NFD", char) if not unicodedata.combining(c))
    base = "".join(_FOLD.get(c, c) for c in base)
    if base and is_gsm7(base):
        return base
    return " " if unicodedata.category(char).startswith("Z") else ""


def fold(text: str) -> str:
    """`text` in the GSM-7 alphabet, word by word: a word GSM-7 can write is kept as it is
    (`Église`), a word with one character it cannot write loses every accent and tone mark by
    canonical decomposition (`Ìbàdàn` → `Ibadan`, not a half-folded `Ibàdàn`; `Ọlọ́run` →
    `Olorun`), hooked and open letters become their plain ones (ƙ → k, ɓ → b, ɛ → e, ɔ → o),
    typographic quotes and dashes their ASCII forms; what is left (emoji, other scripts) is
    dropped, and runs of spaces become one."""
    words = []
    for word in re.split(r"(\s+)", text):
        if is_gsm7(word):
            words.append(word)
        else:
            words.append("".join(_fold_char(c) for c in word))
    return re.sub(r"\s{2,}", " ", "".join(words)).strip()


NAME_LENGTH = 30  # septets a church's SMS name may take (tenants.sms_name; templates.SMS_NAME_ROOM)


def check_name(value: str) -> str | None:
    """A church's short SMS name (`tenants set --sms-name`): one line of GSM-7, at most 30
    septets; '' clears it (None). UserError names the problem and a folded suggestion."""
    from faithflow_ops.errors import UserError

    name = " ".join(value.split())
    if not name:
        return None
    if not is_gsm7(name):
        folded = fold(name)
        hint = f"e.g. {folded[:NAME_LENGTH].strip()!r}" if folded else "Latin letters"
        raise UserError(
            f"--sms-name {value!r} has characters an SMS can only send as UCS-2 (70 characters "
            f"a segment instead of 160): use GSM-7 letters, {hint}"
        )
    size = cost(name).units
    if size > NAME_LENGTH:
        raise UserError(
            f"--sms-name {value!r} takes {size} characters in an SMS; at most {NAME_LENGTH}, so "
            "a dunning SMS stays one segment: shorten it"
        )
    return name
