"""PagerDuty Events API v2: page a human when an incident stays unacknowledged (issue 6), and
close the page when the incident resolves. httpx with the shared retry policy.

What this relies on — PagerDuty's Events API v2 reference (developer.pagerduty.com, "Send an
Alert Event"; PagerDuty/api-schema `events-v2/openapiv3.json`):

- `POST {PAGERDUTY_API_BASE}/v2/enqueue` (default https://events.pagerduty.com), JSON
  `{routing_key, event_action: trigger|acknowledge|resolve, dedup_key, payload}`; `payload`
  (trigger only) has `summary` (≤ 1024 characters), `source`, `severity`
  (critical|error|warning|info) and optional `component`, `group`, `class`, `timestamp`,
  `custom_details`; the routing key travels in the body, there is no auth header;
- `202 {"status": "success", "message": "Event processed", "dedup_key": "…"}`;
- `400 {"status": "invalid event", "message": "Event object is invalid", "errors": […]}` — the
  event is wrong, sending it again cannot help (not retried; the message and errors are kept);
- `429` — too many events for the integration: retry with backoff; 5xx likewise.

`dedup_key` (≤ 255 characters) is the incident's stable identity: a trigger sent twice (a retry
after a lost answer) updates the same alert, and `resolve` with the same key closes it. A
resolve for a key with no open alert is accepted and ignored by PagerDuty, so resolving is safe
to repeat.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from faithflow_ops.errors import UserError
from faithflow_ops.providers._http import (
    PooledClient,
    ProviderError,
    RetryPolicy,
    call,
    parse_retry_after,
    retryable_status,
)

if TYPE_CHECKING:
    import httpx

    from faithflow_ops.config import Settings

PROVIDER = "PagerDuty"

EventAction = Literal["trigger", "acknowledge", "resolve"]
Severity = Literal["critical", "error", "warning", "info"]
SEVERITIES: tuple[Severity, ...] = ("critical", "error", "warning", "info")
MAX_SUMMARY = 1024
MAX_DEDUP_KEY = 255


@dataclass(frozen=True)
class EventAccepted:
    """PagerDuty's 202 answer."""

    dedup_key: str
    status: str
    message: str


class PagerDutyEvents(PooledClient):
    """Sends Events API v2 events with PAGERDUTY_ROUTING_KEY. Use as a context manager."""

    provider = PROVIDER

    def __init__(self, settings: Settings, policy: RetryPolicy | None = None) -> None:
        import httpx

        self.routing_key = settings.require("pagerduty_routing_key", "PAGERDUTY_ROUTING_KEY")
        self.policy = policy or RetryPolicy.from_settings(settings)
        self.url = settings.pagerduty_api_base.rstrip("/") + "/v2/enqueue"
        self._client = httpx.Client(timeout=self.policy.timeout)

    def trigger(
        self,
        dedup_key: str,
        *,
        summary: str,
        source: str,
        severity: Severity = "error",
        component: str | None = None,
        group: str | None = None,
        class_: str | None = None,
        timestamp: dt.datetime | None = None,
        custom_details: dict[str, Any] | None = None,
    ) -> EventAccepted:
        """Open (or update) the alert `dedup_key`. A summary over 1,024 characters is cut."""
        if severity not in SEVERITIES:
            raise UserError(f"severity {severity!r} is not one of: {', '.join(SEVERITIES)}")
        if not summary.strip() or not source.strip():
            raise UserError("a PagerDuty trigger needs a summary and a source")
        payload: dict[str, Any] = {
            "summary": _cut(summary.strip(), MAX_SUMMARY),
            "source": source,
            "severity": severity,
        }
        optional = {"component": component, "group": group, "class": class_}
        payload.update({k: v for k, v in optional.items() if v})
        if timestamp is not None:
            payload["timestamp"] = timestamp.astimezone(dt.UTC).isoformat()
        if custom_details:
            payload["custom_details"] = custom_details
        return self.send("trigger", dedup_key, payload)

    def acknowledge(self, dedup_key: str) -> EventAccepted:
        return self.send("acknowledge", dedup_key)

    def resolve(self, dedup_key: str) -> EventAccepted:
        return self.send("resolve", dedup_key)

    def send(
        self, action: EventAction, dedup_key: str, payload: dict[str, Any] | None = None
    ) -> EventAccepted:
        """POST one event; retried on connection errors, timeouts, 429 and 5xx."""

        if not dedup_key or len(dedup_key) > MAX_DEDUP_KEY:
            raise UserError(
                f"a PagerDuty dedup_key must be 1 to {MAX_DEDUP_KEY} characters, "
                f"got {len(dedup_key)}"
            )
        body: dict[str, Any] = {
            "routing_key": self.routing_key,
            "event_action": action,
            "dedup_key": dedup_key,
        }
        if payload is not None:
            body["payload"] = payload
        operation = f"event {action}"

        def once() -> EventAccepted:
            response = self._transport(operation, "POST", self.url, json=body)
            return _accepted(operation, response, dedup_key)

        return call(once, self.policy, provider=PROVIDER, operation=operation)


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _accepted(operation: str, response: httpx.Response, dedup_key: str) -> EventAccepted:
    try:
        doc = response.json()
    except ValueError:
        doc = None
    doc = doc if isinstance(doc, dict) else {}
    if 200 <= response.status_code < 300:
        return EventAccepted(
            dedup_key=str(doc.get("dedup_key") or dedup_key),
            status=str(doc.get("status") or "success"),
            message=str(doc.get("message") or "Event processed"),
        )
    message = str(doc.get("message") or response.text.strip()[:200] or response.reason_phrase)
    errors = doc.get("errors")
    if isinstance(errors, list) and errors:
        message += ": " + "; ".join(str(e) for e in errors[:5])
    raise ProviderError(
        PROVIDER,
        operation,
        message or "no message",
        status=response.status_code,
        retryable=retryable_status(response.status_code),
        retry_after=parse_retry_after(response.headers.get("retry-after")),
    )
