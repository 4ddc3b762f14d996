"""The alert hook (`ALERT_WEBHOOK_URL`): a JSON POST through httpx with the shared retry policy
(connection errors, timeouts, 429 and 5xx retried, `Retry-After` honoured; other 4xx not).

The receiver may see one alert twice (a retry after a lost answer): every alert carries a
stable `id` to deduplicate on.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from faithflow_ops.providers._http import (
    PooledClient,
    ProviderError,
    RetryPolicy,
    call,
    parse_retry_after,
    retryable_status,
)

if TYPE_CHECKING:
    from faithflow_ops.config import Settings

PROVIDER = "alert webhook"


class AlertHook(PooledClient):
    """POSTs alerts to `ALERT_WEBHOOK_URL`. Use as a context manager (it owns a pool)."""

    provider = PROVIDER

    def __init__(self, settings: Settings, policy: RetryPolicy | None = None) -> None:
        import httpx

        self.url = settings.require("alert_webhook_url", "ALERT_WEBHOOK_URL")
        self.policy = policy or RetryPolicy.from_settings(settings)
        self._client = httpx.Client(timeout=self.policy.timeout)

    def send(self, alert: dict[str, Any]) -> None:
        """POST `alert` as JSON; any 2xx is success, anything else a ProviderError."""

        operation = str(alert.get("type") or "alert")

        def once() -> None:
            response = self._transport(operation, "POST", self.url, json=alert)
            if response.status_code >= 300:
                text = response.text.strip()[:200] or response.reason_phrase or "no message"
                raise ProviderError(
                    PROVIDER,
                    operation,
                    text,
                    status=response.status_code,
                    retryable=retryable_status(response.status_code),
                    retry_after=parse_retry_after(response.headers.get("retry-after")),
                )

        call(once, self.policy, provider=PROVIDER, operation=operation)
