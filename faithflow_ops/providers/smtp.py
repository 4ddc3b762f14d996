"""Outgoing e-mail over SMTP (`SMTP_URL`, `EMAIL_FROM`): stdlib smtplib, one message per call.

`SMTP_URL` (parsed by `config.parse_smtp_url`):

- `smtp://[user:pass@]host[:port]` (587 by default): STARTTLS when the server offers it, else
  plain (credentials included: use `smtp+starttls://` or `smtps://` off a trusted network);
- `smtp+starttls://…`: STARTTLS required (a server without it is refused, exit code 2);
- `smtps://…` (465 by default): implicit TLS.

TLS verifies the server's certificate and host name against the system CAs. One attempt per
call, `FAITHFLOW_PROVIDER_TIMEOUT` seconds for each socket operation: the callers retry by
running again, and the caller's stable `Message-ID` lets a mailbox recognise a resent message.

Errors are `ProviderError`s (provider "smtp"): a permanent refusal (SMTP 5xx, e.g. the
recipient rejected; a server without STARTTLS or AUTH when they are needed) has exit code 2; a
connection problem, timeout or a temporary refusal (SMTP 4xx) exit code 1.
"""

from __future__ import annotations

import email.utils
import smtplib
import ssl
from email.message import EmailMessage
from typing import TYPE_CHECKING

from faithflow_ops.config import parse_smtp_url
from faithflow_ops.providers._http import ProviderError

if TYPE_CHECKING:
    from faithflow_ops.config import Settings

PROVIDER = "smtp"


class SmtpError(ProviderError):
    """A ProviderError carrying the SMTP reply code (not an HTTP status)."""

    def __init__(
        self,
        operation: str,
        message: str,
        *,
        smtp_code: int | None = None,
        permanent: bool = False,
        timed_out: bool = False,
    ) -> None:
        super().__init__(PROVIDER, operation, message, timed_out=timed_out)
        self.smtp_code = smtp_code
        self.permanent = permanent or (smtp_code is not None and 500 <= smtp_code < 600)

    @property
    def exit_code(self) -> int:
        return 2 if self.permanent else 1

    def __str__(self) -> str:
        code = f" (SMTP {self.smtp_code})" if self.smtp_code is not None else ""
        if self.timed_out:
            what = f"{self.provider} did not answer {self.operation} in time"
        elif self.permanent:
            what = f"{self.provider} refused {self.operation}{code}"
        elif self.smtp_code is None:
            what = f"could not reach {self.provider} for {self.operation}"
        else:
            what = f"{self.provider} deferred {self.operation}{code}"
        hint = "" if self.permanent else "; try again later"
        return f"{what}: {self.message}{hint}"


def send_email(
    settings: Settings,
    to: str,
    subject: str,
    body: str,
    *,
    message_id: str,
    context: ssl.SSLContext | None = None,
) -> None:
    """Send one plain-text message to `to`; raise `SmtpError` unless the server accepted it.

    `message_id` (`<…@…>`) is the caller's stable id for this message; `context` overrides the
    default TLS context (tests pass one trusting their own CA)."""
    url = parse_smtp_url(settings.require("smtp_url", "SMTP_URL"))
    msg = EmailMessage()
    msg["From"] = settings.require("email_from", "EMAIL_FROM")
    msg["To"] = to
    msg["Subject"] = subject
    msg["Date"] = email.utils.formatdate(usegmt=True)
    msg["Message-ID"] = message_id
    msg.set_content(body)
    operation = f"sending {message_id} to {to}"
    tls = context or ssl.create_default_context()
    timeout = settings.provider_timeout
    try:
        client: smtplib.SMTP
        if url.scheme == "smtps":
            client = smtplib.SMTP_SSL(url.host, url.port, timeout=timeout, context=tls)
        else:
            client = smtplib.SMTP(url.host, url.port, timeout=timeout)
        with client:
            client.ehlo()
            if url.scheme == "smtp+starttls" or (
                url.scheme == "smtp" and client.has_extn("starttls")
            ):
                client.starttls(context=tls)
                client.ehlo()
            if url.username:
                client.login(url.username, url.password or "")
            client.send_message(msg)
    except smtplib.SMTPRecipientsRefused as exc:
        code, text = next(iter(exc.recipients.values()))
        raise SmtpError(operation, _text(text), smtp_code=code) from None
    except smtplib.SMTPResponseException as exc:  # sender refused, data refused, auth failed…
        raise SmtpError(operation, _text(exc.smtp_error), smtp_code=exc.smtp_code) from None
    except smtplib.SMTPNotSupportedError as exc:  # no STARTTLS / AUTH where SMTP_URL needs it
        raise SmtpError(operation, str(exc), permanent=True) from None
    except TimeoutError:
        raise SmtpError(operation, "the connection timed out", timed_out=True) from None
    except (OSError, smtplib.SMTPException) as exc:  # refused, reset, TLS failure, hung up
        detail = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        raise SmtpError(operation, detail) from None


def _text(raw: bytes | str) -> str:
    text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else raw
    return text.strip()[:200] or "no message"
