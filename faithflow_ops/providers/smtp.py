"""Outgoing e-mail over SMTP (`SMTP_URL`, `EMAIL_FROM`): stdlib smtplib. `send_email` sends one
message on a connection of its own; `Mailer` keeps one connection for many (the outbox).

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

import contextlib
import email.utils
import functools
import os
import re
import smtplib
import ssl
from email.message import EmailMessage
from typing import TYPE_CHECKING

from faithflow_ops.config import parse_smtp_url
from faithflow_ops.providers._http import ProviderError

if TYPE_CHECKING:
    from faithflow_ops.config import Settings

PROVIDER = "smtp"

# An RFC 3463 enhanced status code at the start of a reply's text (RFC 2034: `550 5.1.1 User
# unknown`): class 2/4/5, subject 0-999, detail 0-999.
_ENHANCED = re.compile(r"^\s*([245])\.(\d{1,3})\.(\d{1,3})(?!\S)")


def enhanced_status(text: str | None) -> str | None:
    """The RFC 3463 status (`5.1.1`) a reply text starts with, or None."""
    match = _ENHANCED.match(text or "")
    return ".".join(match.groups()) if match else None


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
        recipient_refused: bool = False,
        data_refused: bool = False,
        config: bool = False,
    ) -> None:
        super().__init__(PROVIDER, operation, message, timed_out=timed_out)
        self.smtp_code = smtp_code
        # The RFC 3463 status the server's reply started with (`5.7.1`), if it gave one.
        self.enhanced = enhanced_status(message) if smtp_code is not None else None
        # Where the server refused: at RCPT (this recipient), at DATA (this message), or
        # elsewhere (connection, MAIL FROM, login: not about the recipient).
        self.stage = "rcpt" if recipient_refused else "data" if data_refused else "session"
        self.permanent = permanent or (smtp_code is not None and 500 <= smtp_code < 600)
        # The server refused this recipient for good (5xx at RCPT): the address bounces.
        self.bounced = recipient_refused and self.permanent
        # The problem is our setting (login, EMAIL_FROM, STARTTLS), not the message.
        self.config = config

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


def default_context() -> ssl.SSLContext:
    """The client TLS context trusting the system store, made once per process: loading the
    CA bundle costs about 20 ms of CPU, and every sending thread of every dispatch run built
    its own. One context serves any number of connections and threads. Keyed on
    SSL_CERT_FILE / SSL_CERT_DIR, which OpenSSL reads when the store is loaded."""
    return _context_for(os.environ.get("SSL_CERT_FILE"), os.environ.get("SSL_CERT_DIR"))


@functools.lru_cache(maxsize=4)
def _context_for(cert_file: str | None, cert_dir: str | None) -> ssl.SSLContext:
    return ssl.create_default_context()


class Mailer:
    """One SMTP connection reused for many messages (the outbox sends a run's mail through
    it); opened on the first `send`, re-opened when the server dropped it between messages.
    Not thread-safe: one Mailer per thread. Use as a context manager (QUIT on exit)."""

    def __init__(self, settings: Settings, *, context: ssl.SSLContext | None = None) -> None:
        self.url = parse_smtp_url(settings.require("smtp_url", "SMTP_URL"))
        self.sender = settings.require("email_from", "EMAIL_FROM")
        self.timeout = settings.provider_timeout
        self.tls = context or default_context()
        self._client: smtplib.SMTP | None = None
        self.connections = 0  # how many times a connection was opened (tests, benchmarks)

    def __enter__(self) -> Mailer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            try:
                client.quit()
            except (OSError, smtplib.SMTPException):
                client.close()

    def _drop(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            client.close()

    def _connect(self) -> smtplib.SMTP:
        url = self.url
        client: smtplib.SMTP
        if url.scheme == "smtps":
            client = smtplib.SMTP_SSL(url.host, url.port, timeout=self.timeout, context=self.tls)
        else:
            client = smtplib.SMTP(url.host, url.port, timeout=self.timeout)
        try:
            client.ehlo()
            if url.scheme == "smtp+starttls" or (
                url.scheme == "smtp" and client.has_extn("starttls")
            ):
                client.starttls(context=self.tls)
                client.ehlo()
            if url.username:
                client.login(url.username, url.password or "")
        except BaseException:
            client.close()
            raise
        self.connections += 1
        return client

    def send(
        self,
        to: str,
        subject: str,
        body: str,
        *,
        message_id: str,
        headers: dict[str, str] | None = None,
    ) -> None:
        """Send one plain-text message to `to`; raise `SmtpError` unless the server accepted
        it. `message_id` (`<…@…>`) is the caller's stable id for this message."""
        operation = f"sending {message_id} to {to}"
        try:
            msg = EmailMessage()
            msg["From"] = self.sender
            msg["To"] = to
            msg["Subject"] = subject
            msg["Date"] = email.utils.formatdate(usegmt=True)
            msg["Message-ID"] = message_id
            for name, value in (headers or {}).items():
                msg[name] = value
            msg.set_content(body)
        except (ValueError, TypeError) as exc:  # a CR/LF in a header: no retry can fix it
            raise SmtpError(
                operation, f"the message cannot be sent as it is: {exc}", permanent=True
            ) from None
        try:
            reused = self._client is not None
            if self._client is None:
                self._client = self._connect()
            try:
                self._client.send_message(msg)
            except smtplib.SMTPServerDisconnected:
                # An idle connection the server closed before MAIL FROM: open a new one, once.
                self._drop()
                if not reused:
                    raise
                self._client = self._connect()
                self._client.send_message(msg)
        except smtplib.SMTPRecipientsRefused as exc:  # smtplib sent RSET: the connection lives
            code, text = next(iter(exc.recipients.values()))
            raise SmtpError(
                operation, _text(text), smtp_code=code, recipient_refused=True
            ) from None
        except smtplib.SMTPAuthenticationError as exc:
            self._drop()
            raise SmtpError(
                operation,
                _text(exc.smtp_error) + " (check the user and password in SMTP_URL)",
                smtp_code=exc.smtp_code,
                config=True,
            ) from None
        except smtplib.SMTPSenderRefused as exc:
            raise SmtpError(
                operation,
                _text(exc.smtp_error) + " (check EMAIL_FROM)",
                smtp_code=exc.smtp_code,
                config=exc.smtp_code >= 500,
            ) from None
        except smtplib.SMTPResponseException as exc:  # data refused, connect refused…
            data = isinstance(exc, smtplib.SMTPDataError)
            if not data:
                self._drop()
            raise SmtpError(
                operation, _text(exc.smtp_error), smtp_code=exc.smtp_code, data_refused=data
            ) from None
        except smtplib.SMTPNotSupportedError as exc:  # no STARTTLS / AUTH where SMTP_URL needs it
            self._drop()
            raise SmtpError(operation, str(exc), permanent=True, config=True) from None
        except TimeoutError:
            self._drop()
            raise SmtpError(operation, "the connection timed out", timed_out=True) from None
        except (OSError, smtplib.SMTPException) as exc:  # refused, reset, TLS failure, hung up
            self._drop()
            detail = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
            raise SmtpError(operation, detail) from None


def send_email(
    settings: Settings,
    to: str,
    subject: str,
    body: str,
    *,
    message_id: str,
    context: ssl.SSLContext | None = None,
) -> None:
    """Send one plain-text message to `to` over a connection of its own; raise `SmtpError`
    unless the server accepted it.

    `message_id` (`<…@…>`) is the caller's stable id for this message; `context` overrides the
    default TLS context (tests pass one trusting their own CA)."""
    with Mailer(settings, context=context) as mailer:
        mailer.send(to, subject, body, message_id=message_id)


def make_message_id(key: str, domain_of: str) -> str:
    """A stable `Message-ID` for `key` (the same on every attempt): `<key@domain>`, the domain
    taken from the address in `domain_of` (EMAIL_FROM)."""
    _, address = email.utils.parseaddr(domain_of)
    domain = address.rpartition("@")[2] or "faithflow.invalid"
    return f"<{key}@{domain}>"


def _text(raw: bytes | str) -> str:
    text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else raw
    return text.strip()[:200] or "no message"


def health_check(
    settings: Settings, *, timeout: float, context: ssl.SSLContext | None = None
) -> str:
    """Can we talk to the server? Connect (implicit TLS for `smtps://`), EHLO, STARTTLS as
    SMTP_URL asks (`smtp://` when offered, `smtp+starttls://` always), AUTH when SMTP_URL has a
    user, NOOP, QUIT — no message is sent. The steps done (`"EHLO, STARTTLS, AUTH, NOOP"`), or
    an `SmtpError`. For `health sweep` (one attempt, `timeout` seconds per socket operation)."""
    url = parse_smtp_url(settings.require("smtp_url", "SMTP_URL"))
    tls = context or default_context()
    operation = f"health check of {url.host}:{url.port}"
    steps: list[str] = []
    client: smtplib.SMTP | None = None
    try:
        if url.scheme == "smtps":
            client = smtplib.SMTP_SSL(url.host, url.port, timeout=timeout, context=tls)
            steps.append("TLS")
        else:
            client = smtplib.SMTP(url.host, url.port, timeout=timeout)
        code, reply = client.ehlo()
        if code != 250:
            raise smtplib.SMTPResponseException(code, reply)
        steps.append("EHLO")
        if url.scheme == "smtp+starttls" or (url.scheme == "smtp" and client.has_extn("starttls")):
            client.starttls(context=tls)
            client.ehlo()
            steps.append("STARTTLS")
        if url.username:
            client.login(url.username, url.password or "")
            steps.append("AUTH")
        code, reply = client.noop()
        if code != 250:
            raise smtplib.SMTPResponseException(code, reply)
        steps.append("NOOP")
        # The check passed; a server that hangs up at QUIT is no failure.
        with contextlib.suppress(OSError, smtplib.SMTPException):
            client.quit()
        client = None
    except smtplib.SMTPAuthenticationError as exc:
        raise SmtpError(
            operation,
            _text(exc.smtp_error) + " (check the user and password in SMTP_URL)",
            smtp_code=exc.smtp_code,
            config=True,
        ) from None
    except smtplib.SMTPResponseException as exc:
        raise SmtpError(operation, _text(exc.smtp_error), smtp_code=exc.smtp_code) from None
    except smtplib.SMTPNotSupportedError as exc:  # no STARTTLS / AUTH where SMTP_URL needs it
        raise SmtpError(operation, str(exc), permanent=True, config=True) from None
    except TimeoutError:
        raise SmtpError(operation, "the connection timed out", timed_out=True) from None
    except (OSError, smtplib.SMTPException) as exc:  # refused, reset, TLS failure, hung up
        detail = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        raise SmtpError(operation, detail) from None
    finally:
        if client is not None:
            client.close()
    return ", ".join(steps)
