"""What every provider API client shares: the retry policy and the error an operator reads.

One implementation for Stripe and Paystack (DESIGN §8: tenacity, honouring `Retry-After`):

- retried: connection errors, timeouts, HTTP 429 and 5xx — and whatever the provider marks
  retryable (Stripe's `Stripe-Should-Retry: true`, e.g. a 409 lock timeout);
- never retried: any other 4xx (the request itself is wrong; sending it again cannot help), or a
  response the provider marks `Stripe-Should-Retry: false`;
- the wait before a retry is the provider's `Retry-After` (seconds or an HTTP date) when it sends
  one, else exponential backoff with jitter from `backoff`; either is capped at `max_wait`;
- at most `attempts` tries in all (the first included), each with `timeout` seconds.

The provider modules raise `ProviderError` for every failure (retryable or not); `call` retries
the retryable ones and re-raises the last one with the number of attempts it took.
"""

from __future__ import annotations

import datetime as dt
import email.utils
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Self, TypeVar

if TYPE_CHECKING:
    import httpx

    from faithflow_ops.config import Settings

T = TypeVar("T")


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int = 4
    timeout: float = 10.0
    backoff: float = 0.5
    max_wait: float = 30.0
    sleep: Callable[[float], None] = field(default=time.sleep, compare=False, repr=False)

    @classmethod
    def from_settings(cls, settings: Settings) -> RetryPolicy:
        return cls(
            attempts=settings.provider_max_attempts,
            timeout=settings.provider_timeout,
            backoff=settings.provider_backoff,
            max_wait=settings.provider_max_wait,
        )


class ProviderError(Exception):
    """A provider API call that did not succeed; `str(exc)` is the operator's message.

    `exit_code` is 2 when the provider refused the request (a 4xx other than 429: a bad key, an
    unknown price or plan code — something to fix before trying again) and 1 when the provider
    could not be reached or kept failing (timeouts, 429, 5xx: try again later).
    """

    def __init__(
        self,
        provider: str,
        operation: str,
        message: str,
        *,
        status: int | None = None,
        retryable: bool = False,
        retry_after: float | None = None,
        timed_out: bool = False,
        decline_code: str | None = None,
    ) -> None:
        super().__init__(message)
        self.provider = provider
        self.operation = operation
        self.message = message
        self.status = status
        self.retryable = retryable
        self.retry_after = retry_after
        self.timed_out = timed_out
        self.decline_code = decline_code  # Stripe's card decline reason (stolen_card, …)
        self.attempts = 1

    @property
    def exit_code(self) -> int:
        if self.status is not None and 400 <= self.status < 500 and not self.retryable:
            return 2
        return 1

    def __str__(self) -> str:
        tries = f" after {self.attempts} attempts" if self.attempts > 1 else ""
        if self.timed_out:
            what = f"{self.provider} did not answer {self.operation} in time{tries}"
        elif self.status is None:
            what = f"could not reach {self.provider} for {self.operation}{tries}"
        elif self.exit_code == 2:
            what = f"{self.provider} refused {self.operation} (HTTP {self.status})"
        else:
            what = f"{self.provider} failed {self.operation} (HTTP {self.status}){tries}"
        hint = "" if self.exit_code == 2 else "; try again later"
        return f"{what}: {self.message}{hint}"


def retryable_status(status: int) -> bool:
    return status == 429 or status >= 500


def parse_retry_after(value: str | None, now: dt.datetime | None = None) -> float | None:
    """`Retry-After` in seconds: a number of seconds or an HTTP date; None when absent or bad."""
    if value is None or not value.strip():
        return None
    raw = value.strip()
    try:
        seconds = float(raw)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(raw)
        except (TypeError, ValueError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=dt.UTC)
        seconds = (when - (now or dt.datetime.now(dt.UTC))).total_seconds()
    if seconds != seconds:  # nan
        return None
    return max(0.0, seconds)


def call(fn: Callable[[], T], policy: RetryPolicy, *, provider: str, operation: str) -> T:
    """Run `fn` (one request) until it succeeds, fails for good, or the attempts run out."""
    import random

    import structlog
    from tenacity import RetryCallState, Retrying, retry_if_exception, stop_after_attempt

    log = structlog.get_logger("faithflow.providers")

    def wait(state: RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome else None
        if isinstance(exc, ProviderError) and exc.retry_after is not None:
            return min(exc.retry_after, policy.max_wait)
        # Exponential backoff with jitter: backoff, 2×, 4×… plus up to one `backoff` at random
        # (so many clients that failed together do not retry together).
        delay: float = policy.backoff * 2.0 ** (state.attempt_number - 1)
        return min(delay + random.uniform(0, policy.backoff), policy.max_wait)  # noqa: S311

    def before_sleep(state: RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome else None
        log.warning(
            "provider call retried",
            provider=provider,
            operation=operation,
            attempt=state.attempt_number,
            status=getattr(exc, "status", None),
            error=getattr(exc, "message", str(exc)),
            wait_s=round(state.upcoming_sleep, 3),
        )

    retrying = Retrying(
        retry=retry_if_exception(lambda e: isinstance(e, ProviderError) and e.retryable),
        stop=stop_after_attempt(policy.attempts),
        wait=wait,
        sleep=policy.sleep,
        before_sleep=before_sleep,
        reraise=True,
    )
    attempt = 0
    try:
        for attempt_ctx in retrying:
            with attempt_ctx:
                attempt = attempt_ctx.retry_state.attempt_number
                return fn()
    except ProviderError as exc:
        exc.attempts = attempt
        raise
    raise AssertionError("unreachable: tenacity returns or raises")  # pragma: no cover


class PooledClient:
    """A provider client that owns an httpx connection pool (`self._client`): use it as a
    context manager so the pool is closed."""

    _client: httpx.Client
    provider: ClassVar[str]  # how errors name it: "paystack", "Render", …

    def _transport(self, operation: str, method: str, url: str, **kwargs: Any) -> httpx.Response:
        """One HTTP request, any answer returned; a timeout or a transport error becomes a
        retryable ProviderError (the caller judges the status and runs it through `call`)."""
        import httpx

        try:
            return self._client.request(method, url, **kwargs)
        except httpx.TimeoutException:
            raise ProviderError(
                self.provider, operation, "the request timed out", retryable=True, timed_out=True
            ) from None
        except httpx.HTTPError as exc:
            detail = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
            raise ProviderError(self.provider, operation, detail, retryable=True) from None

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._client.close()
