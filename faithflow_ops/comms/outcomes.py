"""What a provider's answer means for an outbox message: an SMTP or Twilio error (or any other
exception raised while sending) becomes an `Outcome` — sent, retry later, failed, or unknown.

- accepted: `sent`, with Twilio's message sid;
- Twilio got the request but its answer never came: `unknown` — it may have sent it, so the
  message is never sent again automatically (`comms retry ID` is the operator's decision);
- a permanent refusal: `failed` at once; a bounced address or a STOP reply also adds the
  recipient to the suppression list;
- anything else (a transient failure, a setting that went missing, an unexpected error): back
  to `scheduled` after an exponential backoff (FAITHFLOW_COMMS_RETRY_BACKOFF × 2^(attempts-1),
  capped at FAITHFLOW_COMMS_RETRY_MAX_BACKOFF, never before the provider's Retry-After), or
  `failed` once it has had FAITHFLOW_COMMS_MAX_ATTEMPTS attempts.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import TYPE_CHECKING

from faithflow_ops.comms.bounces import HARD, MESSAGE, BounceNote, classify
from faithflow_ops.errors import UserError

if TYPE_CHECKING:
    from faithflow_ops.config import Settings
    from faithflow_ops.providers.smtp import SmtpError


@dataclass(frozen=True)
class Claimed:
    """An outbox message claimed for sending (the row as the claim returned it)."""

    id: int
    channel: str
    recipient: str
    subject: str | None
    body: str
    attempts: int  # this attempt included
    idempotency_key: str
    content_sid: str | None = None  # WhatsApp: the approved template (comms/whatsapp.py)
    content_variables: dict[str, str] | None = None


@dataclass
class Outcome:
    """What happened to one claimed message."""

    status: str  # sent | scheduled | failed | unknown (the provider may have sent it)
    provider_message_id: str | None = None
    error: str | None = None
    retry_at: dt.datetime | None = None
    suppress: str | None = None  # add the recipient to the suppression list for this reason
    bounce: BounceNote | None = None  # an e-mail refusal to record (comms.bounces)


def retry_delay(settings: Settings, attempts: int, retry_after: float | None = None) -> float:
    """Seconds before attempt `attempts + 1`: backoff × 2^(attempts-1), capped; never sooner
    than the provider's Retry-After."""
    delay = min(
        settings.comms_retry_backoff * 2.0 ** max(attempts - 1, 0),
        float(settings.comms_retry_max_backoff),
    )
    if retry_after is not None:
        delay = max(delay, retry_after)
    return delay


def from_error(settings: Settings, now: dt.datetime, msg: Claimed, exc: Exception) -> Outcome:
    """What `exc`, raised while sending `msg`, means for it (see the module docstring)."""
    from faithflow_ops.providers.smtp import SmtpError
    from faithflow_ops.providers.twilio import TwilioError

    if isinstance(exc, SmtpError):
        return _smtp(settings, now, msg, exc)
    if isinstance(exc, TwilioError):
        if exc.ambiguous:  # maybe sent: never sent again automatically
            return Outcome(
                "unknown",
                error=f"outcome unknown: {exc}; check with the provider, then "
                f"`faithflow comms retry {msg.id}` to send it again",
            )
        if exc.permanent:
            return Outcome("failed", error=str(exc), suppress=exc.suppress)
        return transient(settings, now, msg, str(exc), exc.retry_after)
    if isinstance(exc, UserError):  # a setting went missing between the check and the send
        return transient(settings, now, msg, str(exc), None)
    # a bug or an unexpected library error: keep the message safe
    return transient(settings, now, msg, f"{type(exc).__name__}: {exc}", None)


def transient(
    settings: Settings, now: dt.datetime, msg: Claimed, error: str, retry_after: float | None
) -> Outcome:
    """A failure worth another attempt: `scheduled` after the backoff, or `failed` when the
    message has had its attempts."""
    if msg.attempts >= settings.comms_max_attempts:
        return Outcome("failed", error=f"{error} (gave up after {msg.attempts} attempts)")
    at = now + dt.timedelta(seconds=retry_delay(settings, msg.attempts, retry_after))
    return Outcome("scheduled", error=error, retry_at=at)


def _smtp(settings: Settings, now: dt.datetime, msg: Claimed, exc: SmtpError) -> Outcome:
    """An SMTP refusal, by its RFC 3463 status (comms.bounces): a hard bounce or a message
    that cannot go as it is fails; a soft bounce or a policy refusal (ours) is retried; each
    is recorded as a bounce, and settling the run decides suppressions and incidents."""
    if exc.config or exc.smtp_code is None:  # our settings, or no answer at all: retry
        if exc.permanent and not exc.config:  # the message cannot be built: no retry helps
            return Outcome("failed", error=str(exc))
        return transient(settings, now, msg, str(exc), None)
    kind = classify(exc.smtp_code, exc.enhanced, stage=exc.stage)
    if kind is None:
        if exc.permanent and exc.stage == "session":
            return Outcome("failed", error=str(exc))
        return transient(settings, now, msg, str(exc), None)
    note = BounceNote(kind, exc.smtp_code, exc.enhanced, exc.message)
    error = f"{exc} [{kind} bounce]" if kind in (HARD, "soft") else f"{exc} [{kind}]"
    if kind in (HARD, MESSAGE):
        return Outcome("failed", error=error, bounce=note)
    retry = transient(settings, now, msg, error, None)
    retry.bounce = note
    return retry
