"""Twilio's Messages API for SMS and WhatsApp (`TWILIO_*`): httpx, one request per message.

`POST {TWILIO_API_BASE}/2010-04-01/Accounts/{TWILIO_ACCOUNT_SID}/Messages.json` with the form
fields `To`, `From`, `Body` (or, for an approved WhatsApp template, `ContentSid` and
`ContentVariables` instead of `Body`: `request_form`), basic auth `sid:token`. SMS goes from
`TWILIO_FROM` to the E.164 number; WhatsApp from `whatsapp:{TWILIO_WHATSAPP_FROM}` to
`whatsapp:{number}`. A 201 answer carries the message `sid` (`SM…`) and its first `status`
(`queued`, `accepted`…). With a `status_callback` URL the form also carries `StatusCallback`:
Twilio then POSTs each later status change there, signed with `X-Twilio-Signature`
(`request_signature`/`verify_request` below; the receiver's `POST /webhooks/twilio/status`).

One attempt per call: the outbox (`comms dispatch`) schedules retries across runs, so a run
never sleeps through a backoff. Every failure is a `TwilioError` saying which kind it is:

- **permanent** for this recipient (HTTP 400 with a code about the number or the recipient:
  21211 invalid number, 21614 not a mobile, 21610 the recipient replied STOP, 21408 no
  permission for that region, 63016 WhatsApp outside the 24-hour window…; other 4xx the
  request itself is wrong): sending it again cannot help. `suppress` says when the recipient
  belongs on the suppression list (21610 → `stop`).
- **ours** (`config=True`): bad credentials (401, 20003), a `From` Twilio does not accept
  (21606, 21212, 21659, 63007), an account or number we cannot use. Not the recipient's fault:
  the message is retried once the setting is fixed.
- **transient**: 429 (with `Retry-After`), 5xx, connection errors, timeouts before the request
  got through (connect, pool, write).
- **ambiguous** (`ambiguous=True`): the request was sent but no answer came back (read timeout,
  connection dropped while waiting): Twilio may have created the message. Not retried: the
  outbox marks the message `unknown`, like a dispatcher that died after the call.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from faithflow_ops.errors import ConfigError
from faithflow_ops.providers import SignatureError
from faithflow_ops.providers._http import PooledClient, ProviderError, parse_retry_after

if TYPE_CHECKING:
    import httpx

    from faithflow_ops.config import Settings

PROVIDER = "twilio"
API_VERSION = "2010-04-01"

# Twilio error codes (https://www.twilio.com/docs/api/errors) that condemn the recipient.
RECIPIENT_CODES: dict[int, str] = {
    21211: "invalid 'To' phone number",
    21214: "'To' phone number cannot be reached",
    21217: "phone number does not appear to be valid",
    21407: "this number type is not supported",
    21408: "permission to send to this region is not enabled",
    21610: "the recipient replied STOP (unsubscribed)",
    21612: "the 'To' number cannot be reached from this 'From' number",
    21614: "'To' number is not a valid mobile number",
    21635: "'To' number cannot be reached (landline or unreachable carrier)",
    30003: "unreachable destination handset",
    30005: "unknown destination handset",
    30006: "landline or unreachable carrier",
    63003: "the WhatsApp channel could not find the recipient",
    63016: "WhatsApp: outside the 24-hour window, a pre-approved template is required",
    63024: "invalid WhatsApp message recipient",
}
# Codes that say the recipient asked not to get messages: add to the suppression list.
SUPPRESS_CODES: dict[int, str] = {21610: "stop"}
# Codes that point at our own configuration, not at the message.
CONFIG_CODES: dict[int, str] = {
    20003: "authentication failed: check TWILIO_ACCOUNT_SID and TWILIO_AUTH_TOKEN",
    20404: "the account or resource was not found: check TWILIO_ACCOUNT_SID",
    21212: "invalid 'From' number: check TWILIO_FROM / TWILIO_WHATSAPP_FROM",
    21606: "the 'From' number cannot send SMS: check TWILIO_FROM",
    21603: "a 'From' number is required: set TWILIO_FROM",
    21659: "the 'From' number is not a Twilio number: check TWILIO_FROM",
    63007: "no WhatsApp sender for 'From': check TWILIO_WHATSAPP_FROM",
    21655: "the ContentSid is not an approved template of this account: check TWILIO_CONTENT_SIDS",
}


class TwilioError(ProviderError):
    """A message Twilio did not accept; see the module docstring for the three kinds."""

    def __init__(
        self,
        operation: str,
        message: str,
        *,
        status: int | None = None,
        code: int | None = None,
        permanent: bool = False,
        config: bool = False,
        retry_after: float | None = None,
        timed_out: bool = False,
        ambiguous: bool = False,
    ) -> None:
        super().__init__(
            PROVIDER,
            operation,
            message,
            status=status,
            retryable=not (permanent or ambiguous),
            retry_after=retry_after,
            timed_out=timed_out,
        )
        self.code = code
        # The request reached Twilio but no answer came back (read timeout, connection dropped
        # while waiting): Twilio may have created the message, so sending again could send it
        # twice. The outbox records such a message `unknown`, never re-sent automatically.
        self.ambiguous = ambiguous
        self.permanent = permanent
        self.config = config
        self.suppress = SUPPRESS_CODES.get(code) if code is not None else None

    @property
    def exit_code(self) -> int:
        return 2 if self.permanent or self.config else 1

    def __str__(self) -> str:
        code = f" [Twilio {self.code}]" if self.code is not None else ""
        if self.ambiguous:
            return (
                f"twilio got {self.operation} but no answer came back ({self.message}): "
                "it may have been sent"
            )
        if self.timed_out:
            return f"twilio did not answer {self.operation} in time; will retry"
        if self.status is None:
            return f"could not reach twilio for {self.operation}: {self.message}; will retry"
        if self.permanent:
            return f"twilio refused {self.operation} (HTTP {self.status}){code}: {self.message}"
        if self.config:
            return f"twilio refused {self.operation} (HTTP {self.status}){code}: {self.message}"
        return f"twilio failed {self.operation} (HTTP {self.status}){code}: {self.message}"


@dataclass(frozen=True)
class TwilioMessage:
    sid: str
    status: str


def sender(settings: Settings, channel: str) -> str:
    """The `From` for `channel`, or ConfigError naming the variable to set."""
    if channel == "sms":
        return settings.require("twilio_from", "TWILIO_FROM")
    if channel == "whatsapp":
        number = settings.require("twilio_whatsapp_from", "TWILIO_WHATSAPP_FROM")
        return number if number.startswith("whatsapp:") else f"whatsapp:{number}"
    raise ConfigError(f"channel {channel!r} does not go through Twilio (sms, whatsapp)")


def check(settings: Settings, channel: str) -> None:
    """ConfigError unless every setting `channel` needs is present (before any claim)."""
    settings.require("twilio_account_sid", "TWILIO_ACCOUNT_SID")
    settings.require("twilio_auth_token", "TWILIO_AUTH_TOKEN")
    sender(settings, channel)


class TwilioClient(PooledClient):
    """Sends messages through one connection pool (`max_connections` at once); thread-safe.
    Use as a context manager."""

    def __init__(
        self,
        settings: Settings,
        *,
        max_connections: int = 16,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        import httpx

        sid = settings.require("twilio_account_sid", "TWILIO_ACCOUNT_SID")
        token = settings.require("twilio_auth_token", "TWILIO_AUTH_TOKEN")
        self.settings = settings
        self.path = f"/{API_VERSION}/Accounts/{sid}/Messages.json"
        limits = httpx.Limits(
            max_connections=max_connections, max_keepalive_connections=max_connections
        )
        self._client = httpx.Client(
            base_url=settings.twilio_api_base.rstrip("/"),
            auth=(sid, token),
            headers={"Accept": "application/json"},
            timeout=settings.provider_timeout,
            limits=limits,
            transport=transport,
        )

    def send(
        self,
        channel: str,
        to: str,
        body: str,
        *,
        status_callback: str | None = None,
        content_sid: str | None = None,
        content_variables: str | None = None,
    ) -> TwilioMessage:
        """Send `body` to the E.164 number `to` on `channel` (sms or whatsapp); Twilio POSTs
        the message's status changes to `status_callback` when given. With `content_sid` (an
        approved template, `HX…`) the request carries `ContentSid` and `ContentVariables`
        (a JSON object) and no `Body`: Twilio builds the text from the template."""
        import httpx

        from_ = sender(self.settings, channel)
        recipient = f"whatsapp:{to}" if channel == "whatsapp" else to
        operation = f"{channel} to {to}"
        form = request_form(
            recipient, from_, body, content_sid=content_sid, content_variables=content_variables
        )
        if status_callback:
            form["StatusCallback"] = status_callback
        try:
            response = self._client.post(self.path, data=form)
        except (httpx.ReadTimeout, httpx.ReadError, httpx.RemoteProtocolError) as exc:
            # The whole request was written; the answer never came: maybe sent.
            detail = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
            raise TwilioError(
                operation,
                detail,
                timed_out=isinstance(exc, httpx.ReadTimeout),
                ambiguous=True,
            ) from None
        except httpx.TimeoutException:  # connect/pool/write: the request never got through
            raise TwilioError(operation, "the request timed out", timed_out=True) from None
        except httpx.HTTPError as exc:
            detail = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
            raise TwilioError(operation, detail) from None
        return _answer(operation, response)


def request_form(
    to: str,
    from_: str,
    body: str,
    *,
    content_sid: str | None = None,
    content_variables: str | None = None,
) -> dict[str, str]:
    """The Messages API form: `Body`, or `ContentSid` (+ `ContentVariables`) without `Body`
    (https://www.twilio.com/docs/content/send-templates-created-with-the-content-template-builder;
    `ContentVariables` without `ContentSid` is Twilio's error 21654)."""
    if content_sid is None:
        if content_variables is not None:
            raise ValueError("ContentVariables needs a ContentSid (Twilio 21654)")
        return {"To": to, "From": from_, "Body": body}
    form = {"To": to, "From": from_, "ContentSid": content_sid}
    if content_variables is not None:
        form["ContentVariables"] = content_variables
    return form


def _answer(operation: str, response: httpx.Response) -> TwilioMessage:
    doc: Any
    try:
        doc = response.json()
    except ValueError:
        doc = None
    status = response.status_code
    if 200 <= status < 300:
        # Accepted. An answer without a sid is still an acceptance: never send it twice.
        if not isinstance(doc, dict):
            return TwilioMessage("", "accepted")
        return TwilioMessage(str(doc.get("sid") or ""), str(doc.get("status") or "queued"))
    code = doc.get("code") if isinstance(doc, dict) else None
    code = code if isinstance(code, int) else None
    text = doc.get("message") if isinstance(doc, dict) else None
    message = str(text)[:300] if text else (response.text[:200].strip() or "no message")
    if status == 429 or status >= 500:
        retry_after = parse_retry_after(response.headers.get("retry-after"))
        raise TwilioError(operation, message, status=status, code=code, retry_after=retry_after)
    if status in (401, 403) or (code is not None and code in CONFIG_CODES):
        hint = CONFIG_CODES.get(code or 0) or CONFIG_CODES[20003]
        raise TwilioError(operation, f"{message} ({hint})", status=status, code=code, config=True)
    if status == 404:
        raise TwilioError(
            operation, f"{message} ({CONFIG_CODES[20404]})", status=status, code=code, config=True
        )
    if code is not None and code in RECIPIENT_CODES and not text:
        message = RECIPIENT_CODES[code]
    raise TwilioError(operation, message, status=status, code=code, permanent=True)


def health_check(settings: Settings, *, timeout: float) -> str:
    """Reachable and authenticated? `GET /2010-04-01/Accounts/{sid}.json` (read-only, one
    attempt, `timeout` seconds); the account's `status` (`active`, `suspended`, `closed`).
    A TwilioError otherwise (401: TWILIO_ACCOUNT_SID/TWILIO_AUTH_TOKEN). For `health sweep`."""
    import httpx

    sid = settings.require("twilio_account_sid", "TWILIO_ACCOUNT_SID")
    token = settings.require("twilio_auth_token", "TWILIO_AUTH_TOKEN")
    operation = "account check"
    try:
        with httpx.Client(
            base_url=settings.twilio_api_base.rstrip("/"),
            auth=(sid, token),
            headers={"Accept": "application/json"},
            timeout=timeout,
        ) as client:
            response = client.get(f"/{API_VERSION}/Accounts/{sid}.json")
    except httpx.TimeoutException:
        raise TwilioError(operation, "the request timed out", timed_out=True) from None
    except httpx.HTTPError as exc:
        detail = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        raise TwilioError(operation, detail) from None
    if not 200 <= response.status_code < 300:
        _answer(operation, response)  # raises the error that fits the answer
    try:
        doc = response.json()
    except ValueError:
        doc = None
    return str(doc.get("status") or "unknown") if isinstance(doc, dict) else "unknown"


# --- request signatures (status callbacks) -----------------------------------------------------


def request_signature(auth_token: str, url: str, params: Iterable[tuple[str, str]]) -> str:
    """`X-Twilio-Signature` for a form POST to `url`: base64(HMAC-SHA1(auth token, url + every
    parameter's name and value, sorted by name then value, no separators)). Parameter values
    are the decoded form values; every parameter Twilio sent counts (it adds new ones without
    notice). Sources in receiver/twilio.py."""
    grouped: dict[str, set[str]] = {}
    for name, value in params:
        grouped.setdefault(name, set()).add(value)
    text = url + "".join(
        name + value for name in sorted(grouped) for value in sorted(grouped[name])
    )
    digest = hmac.new(auth_token.encode("utf-8"), text.encode("utf-8"), hashlib.sha1).digest()
    return base64.b64encode(digest).decode("ascii")


def _port_variants(url: str) -> list[str]:
    """`url`, then the same URL with its default port written out or left out: Twilio's own
    helpers accept either, since which one Twilio signed depends on how the URL was given."""
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    default = {"https": 443, "http": 80}.get(parts.scheme)
    host = parts.hostname or ""
    if ":" in host:  # IPv6 literal
        host = f"[{host}]"
    if default is None or parts.port not in (None, default):
        return [url]
    other = host if parts.port else f"{host}:{default}"
    return [url, parts._replace(netloc=other).geturl()]


def verify_request(
    url: str, params: Sequence[tuple[str, str]], header: str | None, auth_token: str
) -> None:
    """Raise SignatureError unless `header` (X-Twilio-Signature) signs `params` POSTed to
    `url` under `auth_token`; constant-time comparison."""
    if not header or not header.strip():
        raise SignatureError("missing X-Twilio-Signature header")
    given = header.strip().encode("ascii", "replace")
    for candidate in _port_variants(url):
        expected = request_signature(auth_token, candidate, params).encode("ascii")
        if hmac.compare_digest(expected, given):
            return
    raise SignatureError(
        f"X-Twilio-Signature does not verify for {url} under TWILIO_AUTH_TOKEN "
        "(is FAITHFLOW_PUBLIC_URL the base URL Twilio calls?)"
    )
