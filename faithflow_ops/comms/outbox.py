"""The one way any module sends a message: `enqueue` (or `enqueue_many` for a batch), in the
same transaction as its decision.

The message is rendered at enqueue time (what is stored is what is sent), keyed by the caller's
idempotency key (`UNIQUE`: enqueueing the same key again returns the first message and changes
nothing), and checked against the suppression list (a suppressed recipient gets a row with
status `suppressed`, so the decision is visible, and is never sent). `not_before` in the future
makes it `scheduled`; `comms dispatch` sends it at that minute or later, never earlier.

`enqueue_many` does the same for a batch with a fixed number of statements: one suppression
query for every recipient, one multi-row `INSERT … ON CONFLICT (idempotency_key) DO NOTHING
RETURNING id, idempotency_key`, and one look-up of the keys that were already used. Every
message is checked and rendered before anything is written: one bad recipient or template is a
UserError naming that message, and nothing of the batch is inserted. `enqueue` is a batch of one.

WhatsApp and SMS (issue 21):

- a WhatsApp message is stored with the approved template it goes out as (`content_sid`,
  `content_variables`: comms/whatsapp.py); with no approved template for its template and
  locale in TWILIO_CONTENT_SIDS it becomes an SMS to the same number, `note` saying why;
- an SMS names the church by its short SMS name, else its name folded to GSM-7, and stores
  its encoding and segment count (comms/sms.py). A dunning SMS is kept to GSM-7 (folded if a
  value is not); one still longer than a segment goes out, with a `note` and a warning naming
  the fix (a shorter `--sms-name`): the church is told, at the cost of a second segment.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

import structlog
from sqlalchemy import Table, and_, or_, select, update
from sqlalchemy.orm import Session

from faithflow_ops.bulk import insert_rows
from faithflow_ops.comms import contacts, sms, templates, whatsapp
from faithflow_ops.db import rowcount
from faithflow_ops.errors import UserError
from faithflow_ops.models import OutboundMessage, Suppression, Tenant
from faithflow_ops.models.comms import PENDING_STATUSES

if TYPE_CHECKING:
    from faithflow_ops.config import Settings

log = structlog.get_logger("faithflow.comms")

_MESSAGES = cast(Table, OutboundMessage.__table__)
_LOOKUP_CHUNK = 5000  # keys per `IN (…)` when looking up keys that were already used
# Column sizes (models/comms.py): refused with a UserError, not a database error on Postgres.
_KEY_LENGTH = 255  # String(255)
_SUBJECT_LENGTH = 500  # String(500)


@dataclass(frozen=True)
class Enqueued:
    id: int
    status: str
    created: bool  # False: the idempotency key was already used; nothing changed


@dataclass(frozen=True)
class Message:
    """One message for `enqueue_many` (the arguments of `enqueue`, but `now`)."""

    channel: str
    recipient: str
    template: str
    variables: dict[str, Any]
    idempotency_key: str
    tenant: Tenant | None = None
    not_before: dt.datetime | None = None
    priority: int = 50
    category: str = "general"
    about: tuple[str, int | str] | None = None
    note: str | None = None  # why it is not what was asked (a channel standing in for another)


def suppression_for(
    session: Session, channel: str, recipient: str, now: dt.datetime
) -> Suppression | None:
    """The suppression in force for this (normalised) recipient on `channel`, if any."""
    return session.scalars(
        select(Suppression).where(
            Suppression.contact == recipient,
            Suppression.channel == channel,
            or_(Suppression.until.is_(None), Suppression.until > now),
        )
    ).first()


def enqueue(
    session: Session,
    *,
    channel: str,
    recipient: str,
    template: str,
    variables: dict[str, Any],
    idempotency_key: str,
    now: dt.datetime,
    tenant: Tenant | None = None,
    not_before: dt.datetime | None = None,
    priority: int = 50,
    category: str = "general",
    about: tuple[str, int | str] | None = None,
    settings: Settings | None = None,
    note: str | None = None,
) -> Enqueued:
    """Add one message to the outbox (see the module docstring). UserError: a bad recipient,
    an unknown template or a variable the template needs and did not get. `settings`: where
    the approved WhatsApp templates are (TWILIO_CONTENT_SIDS); without, WhatsApp goes by SMS."""
    message = Message(
        channel=channel,
        recipient=recipient,
        template=template,
        variables=variables,
        idempotency_key=idempotency_key,
        tenant=tenant,
        not_before=not_before,
        priority=priority,
        category=category,
        about=about,
        note=note,
    )
    (result,) = enqueue_many(session, [message], now=now, settings=settings)
    return result


def enqueue_many(
    session: Session,
    messages: Sequence[Message],
    *,
    now: dt.datetime,
    settings: Settings | None = None,
) -> list[Enqueued]:
    """Add a batch of messages to the outbox; one `Enqueued` per message, in order, exactly as
    `enqueue` would answer them one after the other (a key used twice in the batch: the first
    is created, the second answers `created=False` with the first one's id and status).

    UserError (nothing inserted): a bad recipient, an unknown template or a missing variable,
    naming the message (its position and idempotency key) when the batch has more than one."""
    if not messages:
        return []
    rows = [
        _prepare(message, now, n, len(messages), settings) for n, message in enumerate(messages)
    ]
    suppressed = _suppressions(session, rows, now)
    for row in rows:
        reason = suppressed.get((row["channel"], row["recipient"]))
        if reason is not None:
            row["status"], row["last_error"] = "suppressed", f"suppressed: {reason}"
    first: dict[str, dict[str, Any]] = {}
    for row in rows:
        first.setdefault(row["idempotency_key"], row)
    inserted = insert_rows(
        session,
        _MESSAGES,
        list(first.values()),
        conflict=["idempotency_key"],
        returning=[_MESSAGES.c.idempotency_key, _MESSAGES.c.id],
    )
    created: dict[str, int] = {key: message_id for key, message_id in inserted}
    existing = _existing(session, [key for key in first if key not in created])
    results = []
    for row in rows:
        key = row["idempotency_key"]
        if key in created:
            is_first = first[key] is row
            results.append(Enqueued(created[key], first[key]["status"], is_first))
        else:
            message_id, status = existing[key]
            results.append(Enqueued(message_id, status, False))
    return results


def _prepare(
    message: Message, now: dt.datetime, n: int, total: int, settings: Settings | None
) -> dict[str, Any]:
    """The outbound_messages row of one message (rendered, status before suppressions)."""
    try:
        if len(message.idempotency_key) > _KEY_LENGTH:
            raise UserError(
                f"the idempotency key is {len(message.idempotency_key)} characters; at most "
                f"{_KEY_LENGTH}"
            )
        problem = control_character(message.recipient)
        if problem:
            raise UserError(
                f"the recipient {message.recipient!r} contains a control character ({problem}); "
                "an address or a number is one line: remove it"
            )
        to = contacts.normalize(message.channel, message.recipient)
        tenant = message.tenant
        locale = tenant.locale if tenant is not None else "en"
        timezone = tenant.timezone if tenant is not None else "UTC"
        channel, note, sid = message.channel, message.note, None
        if channel == "whatsapp":
            # Only an approved template reaches WhatsApp outside the 24-hour window (63016):
            # without one the message goes by SMS to the same number, and says so.
            sid = whatsapp.content_sid(settings, message.template, locale)
            if sid is None:
                why = whatsapp.unavailable(settings, message.template, locale)
                if "sms" not in templates.available(message.template):
                    raise UserError(
                        f"template {message.template} cannot go by WhatsApp ({why}) and has no "
                        f"sms version to go by instead: add the Content SID, or "
                        f"faithflow_ops/comms/templates/{message.template}.sms.txt"
                    )
                channel, note = "sms", f"sms instead of whatsapp: {why}"
                note = "; ".join(part for part in (message.note, note) if part)
        variables = message.variables
        if tenant is not None:
            name = sms_name(tenant) if channel == "sms" else tenant.name
            variables = {"tenant_name": name, "tenant_slug": tenant.slug, **variables}
        rendered = templates.render(
            message.template, channel, variables, locale=locale, timezone=timezone
        )
        if rendered.subject is not None:
            _check_subject(message.template, rendered.subject, variables)
        if rendered.subject is not None and len(rendered.subject) > _SUBJECT_LENGTH:
            raise UserError(
                f"the subject is {len(rendered.subject)} characters; at most {_SUBJECT_LENGTH} "
                f"(template {message.template}: shorten the values it puts in the subject)"
            )
        body = rendered.body
        content: dict[str, str] | None = None
        if sid is not None:
            values = templates.context(
                variables, locale=locale, timezone=timezone, channel="whatsapp"
            )
            content = whatsapp.content_variables(message.template, values)
        cost = None
        if channel == "sms":
            body, cost, warning = _sms_cost(message, body)
            note = "; ".join(part for part in (note, warning) if part) or None
    except UserError as exc:
        if total == 1:
            raise
        raise UserError(
            f"message {n + 1} of {total} (idempotency key {message.idempotency_key!r}): {exc}; "
            "nothing of the batch was queued"
        ) from None
    due = max(message.not_before or now, now)
    about = message.about
    return {
        "tenant_id": tenant.id if tenant is not None else None,
        "channel": channel,
        "recipient": to,
        "template": message.template,
        "variables": variables,
        "locale": locale,
        "subject": rendered.subject,
        "body": body,
        "content_sid": sid,
        "content_variables": content,
        "sms_encoding": cost.encoding if cost is not None else None,
        "sms_segments": cost.segments if cost is not None else None,
        "note": note,
        "category": message.category,
        "priority": message.priority,
        "status": "scheduled" if due > now else "queued",
        "idempotency_key": message.idempotency_key,
        "attempts": 0,
        "not_before": due,
        "next_attempt_at": due,
        "last_error": None,
        "about_type": about[0] if about else None,
        "about_id": str(about[1]) if about else None,
        "created_at": now,
        "updated_at": now,
    }


# Categories whose SMS must stay one GSM-7 segment: folded to GSM-7 when a value (a date in
# the tenant's language, an invoice number) is not, and flagged when still longer.
ONE_SEGMENT_CATEGORIES = frozenset({"dunning"})


def sms_name(tenant: Tenant) -> str:
    """The church's name in an SMS: the short name it set (`tenants set --sms-name`), else its
    name folded to GSM-7 (`Ọlọ́run Ni Ọba Parish, Ìbàdàn` → `Olorun Ni Oba Parish, Ibadan`),
    else its slug (a name in a script GSM-7 cannot write at all)."""
    return tenant.sms_name or sms.fold(tenant.name) or tenant.slug


def _sms_cost(message: Message, body: str) -> tuple[str, sms.Cost, str | None]:
    """(body, its cost, a warning): a one-segment category's body is folded to GSM-7, and a
    warning names what to do when it still takes more than one segment."""
    cost = sms.cost(body)
    if message.category not in ONE_SEGMENT_CATEGORIES:
        return body, cost, None
    if cost.encoding != "GSM-7":
        body = sms.fold(body)
        cost = sms.cost(body)
    if cost.segments == 1:
        return body, cost, None
    fix = (
        f"set a shorter SMS name with `faithflow tenants set {message.tenant.slug} --sms-name …`"
        if message.tenant is not None
        else "shorten the values it carries"
    )
    warning = (
        f"{cost.describe()} (one is {sms.SINGLE[cost.encoding]}): template "
        f"{message.template} does not fit one SMS; {fix}"
    )
    log.warning("sms over one segment", template=message.template, note=warning)
    return body, cost, warning


# C0 and C1 controls, DEL, and the Unicode line and paragraph separators: none may be in a
# header value (a CR/LF would start a header of the sender's choosing: `Bcc: …`).
_CONTROL_NAMES = {0: "NUL", 9: "TAB", 10: "LF", 13: "CR", 0x7F: "DEL"}


def control_character(value: str) -> str | None:
    """The first character of `value` that may not be in an e-mail header (`CR`, `LF`, `NUL`,
    `U+2028`…), or None."""
    for char in value:
        code = ord(char)
        if code < 0x20 or 0x7F <= code < 0xA0 or code in (0x2028, 0x2029):
            return _CONTROL_NAMES.get(code) or f"U+{code:04X}"
    return None


def _check_subject(template: str, subject: str, variables: dict[str, Any]) -> None:
    """UserError naming the variable that put a control character into the subject."""
    problem = control_character(subject)
    if problem is None:
        return
    used = templates.subject_variables(template)
    for name, value in variables.items():
        found = control_character("" if value is None else str(value))
        if found and (name in used or not used):
            raise UserError(
                f"the variable {name!r} contains a control character ({found}) and goes into "
                f"the e-mail subject (template {template}); a header is one line: remove it"
            )
    raise UserError(
        f"the subject of template {template} contains a control character ({problem}); a "
        "header is one line: fix the template or the values it uses"
    )


def _suppressions(
    session: Session, rows: Sequence[dict[str, Any]], now: dt.datetime
) -> dict[tuple[str, str], str]:
    """(channel, recipient) → reason, for the suppressions in force: one query."""
    by_channel: dict[str, set[str]] = defaultdict(set)
    for row in rows:
        by_channel[row["channel"]].add(row["recipient"])
    found = session.execute(
        select(Suppression.channel, Suppression.contact, Suppression.reason).where(
            or_(
                *(
                    and_(Suppression.channel == channel, Suppression.contact.in_(sorted(to)))
                    for channel, to in by_channel.items()
                )
            ),
            or_(Suppression.until.is_(None), Suppression.until > now),
        )
    )
    return {(channel, contact): reason for channel, contact, reason in found}


def _existing(session: Session, keys: Sequence[str]) -> dict[str, tuple[int, str]]:
    """key → (id, status) of messages already in the outbox."""
    found: dict[str, tuple[int, str]] = {}
    for start in range(0, len(keys), _LOOKUP_CHUNK):
        chunk = keys[start : start + _LOOKUP_CHUNK]
        for key, message_id, status in session.execute(
            select(
                OutboundMessage.idempotency_key, OutboundMessage.id, OutboundMessage.status
            ).where(OutboundMessage.idempotency_key.in_(chunk))
        ):
            found[key] = (message_id, status)
    return found


def cancel_pending(
    session: Session,
    about: Iterable[tuple[str, int | str]],
    *,
    now: dt.datetime,
    reason: str,
) -> int:
    """Cancel the queued/scheduled messages about these records (what they were about no longer
    holds: a paid invoice, a solved ticket). Messages already sending or sent are left alone."""
    count = 0
    for about_type, about_id in about:
        result = session.execute(
            update(OutboundMessage)
            .where(
                OutboundMessage.about_type == about_type,
                OutboundMessage.about_id == str(about_id),
                OutboundMessage.status.in_(PENDING_STATUSES),
            )
            .values(status="canceled", canceled_at=now, last_error=reason, updated_at=now)
            .execution_options(synchronize_session=False)
        )
        count += rowcount(result)
    return count
