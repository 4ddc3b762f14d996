"""Replies that opt a number out of (or back into) our SMS and WhatsApp messages: what Twilio's
incoming message webhook (receiver/twilio.py, `POST /webhooks/twilio/inbound`) does with STOP
and START (docs/comms.md, "STOP and START").

Twilio's default opt-out handling for long codes and toll-free numbers ("Twilio support for
opt-out keywords (SMS STOP filtering)", https://help.twilio.com/hc/en-us/articles/223134027, and
"Customize users' opt-in and opt-out experience with Advanced Opt-Out",
https://www.twilio.com/docs/messaging/tutorials/advanced-opt-out): a message whose whole body
is one of the opt-out keywords (STOP, STOPALL, UNSUBSCRIBE, CANCEL, END, QUIT, and since 2025
REVOKE, OPTOUT) makes Twilio refuse every later message from that sender to the number (error
21610) until the number sends an opt-in keyword (START, YES, UNSTOP); HELP and INFO get the
help text. Twilio answers the keyword itself, and still forwards the message to the incoming
webhook — with `OptOutType` (`STOP`, `START`, `HELP`) when Advanced Opt-Out is on. Matching is
on the whole body, case-insensitive, surrounding blanks and punctuation aside ("Stop." counts,
"please stop texting" does not).

So, for the number and the channel the reply came on (`whatsapp:+234…` is WhatsApp):

- opt-out: the number goes on the suppression list (`stop`, for good) — the same entry a 21610
  refusal or callback adds — and the outbox never sends to it, `dunning prefs show` says so;
- opt-in: a `stop` entry for it is lifted (a bounce or an operator's entry is not: those are
  not the number's to lift);
- help or anything else: nothing changes (`ignored`).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from sqlalchemy.orm import Session

from faithflow_ops import audit
from faithflow_ops.comms import contacts
from faithflow_ops.comms.suppression import add_suppression, lift_suppression

OPT_OUT = frozenset({"STOP", "STOPALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT", "REVOKE", "OPTOUT"})
OPT_IN = frozenset({"START", "YES", "UNSTOP"})
HELP = frozenset({"HELP", "INFO"})
ACTOR = "twilio inbound"
INBOUND_PATH = "/webhooks/twilio/inbound"


@dataclass(frozen=True)
class InboundResult:
    """What one incoming message did: `result` is stopped, started, already, help, ignored."""

    result: str
    channel: str
    contact: str
    keyword: str | None
    note: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "result": self.result,
            "channel": self.channel,
            "keyword": self.keyword,
            "note": self.note,
        }


def keyword(body: str, opt_out_type: str | None = None) -> tuple[str | None, str | None]:
    """(`stop` | `start` | `help` | None, the keyword as matched). Twilio's own verdict
    (`OptOutType`) wins over our reading of the body."""
    kind = (opt_out_type or "").strip().upper()
    word = body.strip().strip(".!?,;:'\"").strip().upper()
    if kind in ("STOP", "START", "HELP"):
        return kind.lower(), word or kind
    if word in OPT_OUT:
        return "stop", word
    if word in OPT_IN:
        return "start", word
    if word in HELP:
        return "help", word
    return None, None


def sender(from_: str) -> tuple[str, str]:
    """(channel, normalised number) of an incoming message's `From`; UserError when it is not a
    phone number (a short code, an alphanumeric sender)."""
    raw = from_.strip()
    channel = "whatsapp" if raw.lower().startswith("whatsapp:") else "sms"
    number = raw.split(":", 1)[1] if channel == "whatsapp" else raw
    return channel, contacts.normalize(channel, number)


def record_inbound(
    session: Session,
    *,
    from_: str,
    body: str,
    opt_out_type: str | None,
    message_sid: str,
    now: dt.datetime,
) -> InboundResult:
    """Apply one incoming message (see the module docstring), in the caller's transaction."""
    channel, contact = sender(from_)
    kind, word = keyword(body, opt_out_type)
    if kind == "stop":
        added = add_suppression(
            session,
            channel=channel,
            contact=contact,
            reason="stop",
            now=now,
            note=f"replied {word} ({message_sid})",
            created_by=ACTOR,
            extend=True,
        )
        if added:
            audit.record(
                session,
                actor=ACTOR,
                action="comms.suppress",
                entity_type="comms_suppression",
                entity_id=f"{channel}:{contact}",
                after={"reason": "stop", "until": None, "note": f"replied {word}"},
            )
        return InboundResult(
            "stopped" if added else "already",
            channel,
            contact,
            word,
            f"{channel} {'added to' if added else 'already on'} the suppression list (stop)",
        )
    if kind == "start":
        lifted = lift_suppression(session, channel=channel, contact=contact, reasons=("stop",))
        if lifted:
            audit.record(
                session,
                actor=ACTOR,
                action="comms.unsuppress",
                entity_type="comms_suppression",
                entity_id=f"{channel}:{contact}",
                before={"reason": "stop"},
                after={"note": f"replied {word} ({message_sid})"},
            )
        return InboundResult(
            "started" if lifted else "already",
            channel,
            contact,
            word,
            f"{channel} STOP lifted" if lifted else f"no STOP for this number on {channel}",
        )
    if kind == "help":
        return InboundResult("help", channel, contact, word, "help: Twilio answers it")
    return InboundResult("ignored", channel, contact, None, "not an opt-out or opt-in keyword")
