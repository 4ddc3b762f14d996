"""Hostnames a church may bring, and whether one is an apex (DNS cannot CNAME an apex).

A hostname is normalised to lower-case A-labels without a trailing dot, by IDNA 2008 with the
UTS 46 mapping (what browsers and registries use: `église.org` → `xn--glise-9ra.org`, and `faß.de`
→ `xn--fa-hia.de`, not IDNA 2003's `fass.de`, which is somebody else's name); a given `xn--`
label must be a valid A-label. Refused, each with the reason: IP literals, single labels,
labels that are not LDH (letters, digits, hyphens; 1–63 characters; no leading/trailing
hyphen), names over 253 characters, the platform's own domains (FAITHFLOW_FALLBACK_DOMAIN and
FAITHFLOW_DOMAIN_CNAME_TARGET and anything under them) and bare public suffixes (`co.uk`).

Apex: the registrable domain itself (`gracechurch.org`, `grace.org.ng`), found with a built-in
list of the multi-label public suffixes our markets use (the full Public Suffix List would be a
download or a dependency; add a suffix here when a church needs one).
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable

from faithflow_ops.errors import UserError

_LABEL = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)$")

# Second-level public suffixes (registrations happen one label below these).
_SUFFIXES = """
    co.uk org.uk ac.uk gov.uk me.uk ltd.uk plc.uk net.uk sch.uk
    com.ng org.ng net.ng edu.ng gov.ng name.ng sch.ng mil.ng
    co.za org.za net.za web.za gov.za ac.za
    co.ke or.ke ne.ke ac.ke go.ke sc.ke me.ke
    com.gh org.gh edu.gh gov.gh
    co.ug or.ug ac.ug go.ug ne.ug
    co.tz or.tz ac.tz go.tz ne.tz
    co.zw org.zw ac.zw
    co.zm org.zm ac.zm
    co.rw org.rw ac.rw
    com.au org.au net.au edu.au asn.au id.au
    co.nz org.nz net.nz ac.nz
    co.in org.in net.in ac.in
    com.br org.br net.br
    com.mx org.mx
    co.jp or.jp ne.jp ac.jp
    com.sg org.sg edu.sg
    com.ph org.ph
    co.id or.id ac.id
    com.cn org.cn net.cn
"""
MULTI_LABEL_SUFFIXES = frozenset(_SUFFIXES.split())


def normalize(raw: str) -> str:
    """The canonical hostname, or UserError naming what is wrong with it."""
    value = (raw or "").strip().lower()
    if value.endswith((".", "\u3002", "\uff0e", "\uff61")):  # the root's dot, once
        value = value[:-1]
    if value.startswith(("http://", "https://")) or "/" in value:
        raise UserError(
            f"{raw!r} is a URL, not a hostname; give just the host, e.g. www.gracechurch.org"
        )
    if not value:
        raise UserError("the hostname is empty; give one such as www.gracechurch.org")
    if value.startswith("[") or _is_ip(value):
        raise UserError(
            f"{raw!r} is an IP address; a custom domain must be a hostname such as "
            "www.gracechurch.org"
        )
    if ":" in value:
        raise UserError(f"{raw!r} has a port; give just the hostname (the edge serves 443)")
    ascii_name = _to_ascii(raw, value)
    labels = ascii_name.split(".")
    if len(labels) < 2:
        raise UserError(
            f"{raw!r} is a single label; give a full hostname such as www.gracechurch.org"
        )
    if len(ascii_name) > 253:
        raise UserError(f"{raw!r} is {len(ascii_name)} characters long; DNS allows 253")
    for label in labels:
        if not _LABEL.match(label):
            raise UserError(
                f"{raw!r}: the label {label!r} is not valid (letters, digits and hyphens, "
                "1-63 characters, not starting or ending with a hyphen)"
            )
    if labels[-1].isdigit():
        raise UserError(f"{raw!r} ends in a number, which no top-level domain does")
    if ascii_name in MULTI_LABEL_SUFFIXES:
        raise UserError(f"{raw!r} is a public suffix, not a church's domain")
    return ascii_name


def is_apex(hostname: str) -> bool:
    """True for a registrable domain itself (`grace.org`, `grace.org.ng`), which needs A records."""
    labels = hostname.split(".")
    if len(labels) == 2:
        return True
    return len(labels) == 3 and ".".join(labels[1:]) in MULTI_LABEL_SUFFIXES


def refuse_platform_domains(hostname: str, platform: Iterable[str | None]) -> None:
    """UserError when `hostname` is one of the platform's own names or under one."""
    for own in platform:
        if not own:
            continue
        base = own.strip().rstrip(".").lower()
        if hostname == base or hostname.endswith("." + base):
            raise UserError(
                f"{hostname} is under the platform's own domain {base}; every tenant already "
                f"has <slug>.{base} — a custom domain must be the church's own"
            )


def _to_ascii(raw: str, value: str) -> str:
    """The A-label form: IDNA 2008 + UTS 46 (non-transitional) for a Unicode name; an ASCII name
    as it is, with each `xn--` label checked to decode (the LDH rules are checked after)."""
    import idna

    if value.isascii():
        for label in value.split("."):
            if label.startswith("xn--"):
                try:
                    idna.decode(label)
                except (idna.IDNAError, UnicodeError):
                    raise UserError(
                        f"{raw!r}: the label {label!r} is not a valid IDNA A-label; give the "
                        "name as the church types it (e.g. église.org) or its correct xn-- form"
                    ) from None
        return value
    try:
        return idna.encode(value, uts46=True).decode("ascii")
    except (idna.IDNAError, UnicodeError) as exc:
        raise UserError(
            f"{raw!r} is not a valid internationalised hostname ({exc}); check for a typo or "
            "a character no domain may hold"
        ) from None


def _is_ip(value: str) -> bool:
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return False
    return True
