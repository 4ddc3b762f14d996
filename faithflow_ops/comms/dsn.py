"""Bounces that come later: a delivery status notification (DSN) for an e-mail the relay
accepted, applied to the original outbox message with the same RFC 3463 rules as a refusal at
RCPT (comms/bounces.py; docs/comms.md, "Bounces").

A DSN is a message of its own (RFC 3464, https://www.rfc-editor.org/rfc/rfc3464; container RFC
6522 `multipart/report; report-type=delivery-status`): a human-readable part, a
`message/delivery-status` part — one block of per-message fields (`Reporting-MTA`,
`Arrival-Date`, …), then one block per recipient with `Final-Recipient: rfc822; x@y`,
`Action: failed | delayed | delivered | relayed | expanded`, `Status: 5.1.1` (required),
`Diagnostic-Code: smtp; 550 5.1.1 …` — and the original message or its headers
(`message/rfc822` or `text/rfc822-headers`). The relay sends it to the envelope sender
(EMAIL_FROM's mailbox); that mailbox hands it to the receiver (`POST /webhooks/email/dsn`,
INTEGRATION_API_KEY), e.g. a Postfix pipe or a fetchmail/procmail rule running `curl`.

The original is found by its `Message-ID`, which the dispatcher makes
`<outbox.{id}.{digest}@domain>` with the digest of the message's idempotency key
(`sending.email_message_id`): a DSN whose Message-ID is not one of ours, or whose digest does
not match, changes nothing (`unmatched`). For the first recipient block with `Action: failed`:

- the bounce is classified (`bounces.classify`, stage `dsn`) and recorded (source `dsn`), and
  settled at once: a hard bounce suppresses the recipient, soft ones count towards the limit,
  a policy bounce raises the incident — the same rules as at RCPT;
- the message, if still `sent`, becomes `failed` (hard, message) or goes back to `scheduled`
  after the backoff (soft, policy; `failed` once it has had its attempts). A DSN delivered
  twice finds it no longer `sent`: nothing more happens (`duplicate`).

`delayed` (the relay is still trying), `delivered`, `relayed` and `expanded` change nothing.
"""

from __future__ import annotations

import datetime as dt
import email
import email.policy
import hashlib
import re
from dataclasses import dataclass, field
from email.message import Message
from email.parser import HeaderParser
from typing import TYPE_CHECKING, Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from faithflow_ops.comms.bounces import HARD, MESSAGE, BounceNote, classify, record, settle
from faithflow_ops.comms.outcomes import retry_delay
from faithflow_ops.comms.suppression import MESSAGES
from faithflow_ops.db import rowcount
from faithflow_ops.errors import UserError

if TYPE_CHECKING:
    from faithflow_ops.config import Settings

DSN_PATH = "/webhooks/email/dsn"
_OUR_ID = re.compile(r"<outbox\.(\d{1,18})\.([0-9a-f]{12})@[^>]+>")
_SMTP_CODE = re.compile(r"^\s*smtp\s*;\s*([245]\d\d)\b(.*)$", re.IGNORECASE | re.DOTALL)


class NotADsn(UserError):
    """The body is not a delivery status notification we can read (answered 400)."""


@dataclass(frozen=True)
class RecipientStatus:
    final_recipient: str
    action: str
    status: str | None
    smtp_code: int | None
    diagnostic: str


@dataclass(frozen=True)
class Report:
    message_id: str | None  # the original's Message-ID
    recipients: list[RecipientStatus] = field(default_factory=list)


def _address(value: str) -> str:
    """`rfc822; x@y` → `x@y`."""
    kind, sep, rest = value.partition(";")
    return (rest if sep else kind).strip().strip("<>").lower()


def _blocks(part: Message) -> list[Message]:
    payload = part.get_payload()
    if isinstance(payload, list):
        return [b for b in payload if isinstance(b, Message)]
    # Some parsers leave the part as text: parse the blocks (separated by blank lines).
    text = payload if isinstance(payload, str) else ""
    return [HeaderParser().parsestr(block) for block in re.split(r"\r?\n\r?\n", text) if block]


def parse(raw: bytes) -> Report:
    """The report in a DSN message; NotADsn naming what is missing."""
    try:
        return _parse(raw)
    except NotADsn:
        raise
    except Exception as exc:  # a message the email package cannot take apart
        raise NotADsn(
            f"not a readable delivery status notification ({type(exc).__name__})"
        ) from None


def _parse(raw: bytes) -> Report:
    if not raw.strip():
        raise NotADsn("the body is empty: POST the bounce message as it arrived (RFC 5322)")
    message = email.message_from_bytes(raw, policy=email.policy.compat32)
    if message.get_content_type() != "multipart/report":
        raise NotADsn(
            f"not a delivery status notification: Content-Type is "
            f"{message.get_content_type()}, not multipart/report (RFC 3464)"
        )
    status_part = original = None
    for part in message.walk():
        kind = part.get_content_type()
        if kind == "message/delivery-status" and status_part is None:
            status_part = part
        elif kind in ("message/rfc822", "text/rfc822-headers") and original is None:
            original = part
    if status_part is None:
        raise NotADsn("the report has no message/delivery-status part (RFC 3464)")
    blocks = _blocks(status_part)
    recipients = []
    for block in blocks[1:] if len(blocks) > 1 else blocks:
        final = block.get("Final-Recipient") or block.get("Original-Recipient")
        if not final:
            continue
        diagnostic = " ".join(str(block.get("Diagnostic-Code") or "").split())
        code = None
        match = _SMTP_CODE.match(diagnostic)
        if match:
            code = int(match.group(1))
            diagnostic = match.group(2).strip() or diagnostic
        status = str(block.get("Status") or "").strip().split(" ")[0] or None
        recipients.append(
            RecipientStatus(
                _address(str(final)),
                str(block.get("Action") or "").strip().lower(),
                status,
                code,
                diagnostic,
            )
        )
    if not recipients:
        raise NotADsn("the delivery-status part names no recipient (Final-Recipient)")
    return Report(_original_id(original), recipients)


def _original_id(part: Message | None) -> str | None:
    if part is None:
        return None
    payload = part.get_payload()
    if isinstance(payload, list) and payload and isinstance(payload[0], Message):
        headers: Message = payload[0]
    else:
        headers = HeaderParser().parsestr(payload if isinstance(payload, str) else "")
    value = headers.get("Message-ID")
    return str(value).strip() if value else None


@dataclass(frozen=True)
class DsnResult:
    result: str  # applied | duplicate | ignored | unmatched
    message_id: int | None
    status: str | None
    note: str
    kind: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "result": self.result,
            "message": self.message_id,
            "status": self.status,
            "kind": self.kind,
            "note": self.note,
        }


def apply(session: Session, settings: Settings, report: Report, now: dt.datetime) -> DsnResult:
    """Apply a parsed DSN to its outbox message (see the module docstring)."""
    failed = next((r for r in report.recipients if r.action == "failed"), None)
    if failed is None:
        actions = ", ".join(sorted({r.action or "(none)" for r in report.recipients}))
        return DsnResult("ignored", None, None, f"no failed recipient (Action: {actions})")
    match = _OUR_ID.search(report.message_id or "")
    row = None
    if match:
        row = session.execute(
            select(
                MESSAGES.c.id,
                MESSAGES.c.status,
                MESSAGES.c.channel,
                MESSAGES.c.recipient,
                MESSAGES.c.attempts,
                MESSAGES.c.idempotency_key,
            )
            .where(MESSAGES.c.id == int(match.group(1)), MESSAGES.c.channel == "email")
            .with_for_update()
        ).first()
    digest = hashlib.sha256(row.idempotency_key.encode("utf-8")).hexdigest()[:12] if row else None
    if row is None or match is None or digest != match.group(2):
        return DsnResult(
            "unmatched",
            None,
            None,
            f"the bounced message ({report.message_id or 'no Message-ID'}) is not one the "
            "outbox sent: nothing changed",
        )
    kind = classify(failed.smtp_code, failed.status, stage="dsn") or "soft"
    note = BounceNote(kind, failed.smtp_code, failed.status, failed.diagnostic or "bounced")
    error = (
        f"bounced later (DSN from the relay, {failed.final_recipient}): {note.describe()} [{kind}]"
    )
    if kind in (HARD, MESSAGE) or row.attempts >= settings.comms_max_attempts:
        values: dict[str, Any] = {"status": "failed", "failed_at": now, "last_error": error}
    else:
        at = now + dt.timedelta(seconds=retry_delay(settings, row.attempts))
        values = {"status": "scheduled", "next_attempt_at": at, "last_error": error}
    changed = session.execute(
        update(MESSAGES)
        .where(MESSAGES.c.id == row.id, MESSAGES.c.status == "sent")
        .values(**values, updated_at=now)
    )
    if rowcount(changed) != 1:
        return DsnResult(
            "duplicate",
            row.id,
            row.status,
            f"message {row.id} is {row.status}, not sent: this bounce was applied already "
            "(or the message changed since)",
            kind,
        )
    bounce_id = record(
        session,
        message_id=row.id,
        channel="email",
        recipient=row.recipient,
        note=note,
        source="dsn",
        now=now,
    )
    settled = settle(session, settings, now, ids=[bounce_id])
    effect = (
        "recipient suppressed"
        if settled.suppressed
        else f"incident {', '.join(settled.incidents)}"
        if settled.incidents
        else "recipient not suppressed"
    )
    return DsnResult(
        "applied",
        row.id,
        values["status"],
        f"{kind} bounce ({note.describe()}): message {row.id} is {values['status']}; {effect}",
        kind,
    )
