"""providers/pagerduty.py against the loopback Events API v2 stand-in (tests/fakes/pagerduty.py):
trigger/acknowledge/resolve with one dedup_key, 400 kept with its errors, 429 and 5xx retried."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator

import pytest
from fakes.pagerduty import ROUTING_KEY, PagerDutyFake
from fakes.providers import Reply

from faithflow_ops.config import Settings
from faithflow_ops.errors import ConfigError, UserError
from faithflow_ops.providers._http import ProviderError, RetryPolicy
from faithflow_ops.providers.pagerduty import PagerDutyEvents

SLEEPS: list[float] = []
POLICY = RetryPolicy(attempts=3, timeout=2.0, backoff=0.01, max_wait=0.05, sleep=SLEEPS.append)
KEY = "faithflow:incident:domain_tls:www.grace.test"


@pytest.fixture
def pd() -> Iterator[PagerDutyFake]:
    SLEEPS.clear()
    with PagerDutyFake().serve() as fake:
        yield fake  # type: ignore[misc]


def events(fake: PagerDutyFake, routing_key: str = ROUTING_KEY) -> PagerDutyEvents:
    settings = Settings.from_env(
        {"PAGERDUTY_ROUTING_KEY": routing_key, "PAGERDUTY_API_BASE": fake.url}
    )
    return PagerDutyEvents(settings, POLICY)


def test_trigger_then_resolve_with_the_same_dedup_key(pd: PagerDutyFake) -> None:
    at = dt.datetime(2026, 11, 25, 9, 30, tzinfo=dt.UTC)
    with events(pd) as client:
        accepted = client.trigger(
            KEY,
            summary="www.grace.test: certificate expired",
            source="faithflow-ops",
            severity="critical",
            component="domains",
            group="tenant:grace",
            timestamp=at,
            custom_details={"incident": 7, "days_left": -2},
        )
        assert accepted.dedup_key == KEY and accepted.status == "success"
        assert pd.alerts[KEY] == "triggered"
        assert client.resolve(KEY).message == "Event processed"
    assert pd.alerts[KEY] == "resolved"
    trigger, resolve = (r.json() for r in pd.requests)
    assert trigger == {
        "routing_key": ROUTING_KEY,
        "event_action": "trigger",
        "dedup_key": KEY,
        "payload": {
            "summary": "www.grace.test: certificate expired",
            "source": "faithflow-ops",
            "severity": "critical",
            "component": "domains",
            "group": "tenant:grace",
            "timestamp": "2026-11-25T09:30:00+00:00",
            "custom_details": {"incident": 7, "days_left": -2},
        },
    }
    assert resolve == {"routing_key": ROUTING_KEY, "event_action": "resolve", "dedup_key": KEY}
    assert pd.requests[0].path == "/v2/enqueue"


def test_acknowledge(pd: PagerDutyFake) -> None:
    with events(pd) as client:
        client.trigger(KEY, summary="s", source="faithflow-ops")
        client.acknowledge(KEY)
    assert pd.alerts[KEY] == "acknowledged"


def test_a_repeated_trigger_updates_one_alert(pd: PagerDutyFake) -> None:
    with events(pd) as client:
        client.trigger(KEY, summary="first", source="faithflow-ops")
        client.trigger(KEY, summary="second", source="faithflow-ops")
    assert pd.triggers[KEY] == 2 and list(pd.alerts) == [KEY]


def test_a_long_summary_is_cut_to_pagerdutys_limit(pd: PagerDutyFake) -> None:
    with events(pd) as client:
        client.trigger(KEY, summary="x" * 5000, source="faithflow-ops")
    summary = pd.requests[0].json()["payload"]["summary"]
    assert len(summary) == 1024 and summary.endswith("…")


def test_400_is_permanent_with_the_errors(pd: PagerDutyFake) -> None:
    with events(pd, routing_key="short") as client, pytest.raises(ProviderError) as info:
        client.trigger(KEY, summary="s", source="faithflow-ops")
    exc = info.value
    assert exc.status == 400 and exc.exit_code == 2 and exc.attempts == 1
    assert "Event object is invalid" in str(exc) and "routing_key" in str(exc)
    assert len(pd.requests) == 1 and SLEEPS == []


def test_429_is_retried(pd: PagerDutyFake) -> None:
    pd.queue("POST", "/v2/enqueue", Reply(429, ""), Reply(429, "", {"Retry-After": "0.03"}))
    with events(pd) as client:
        assert client.resolve(KEY).status == "success"
    assert len(pd.requests) == 3 and len(SLEEPS) == 2 and SLEEPS[1] == 0.03


def test_5xx_until_the_attempts_run_out(pd: PagerDutyFake) -> None:
    pd.queue("POST", "/v2/enqueue", *[Reply(503, "unavailable")] * 3)
    with events(pd) as client, pytest.raises(ProviderError) as info:
        client.trigger(KEY, summary="s", source="faithflow-ops")
    assert info.value.status == 503 and info.value.attempts == 3 and info.value.exit_code == 1
    assert "try again later" in str(info.value)


def test_a_timeout_is_retried(pd: PagerDutyFake) -> None:
    pd.queue("POST", "/v2/enqueue", Reply(202, {"status": "success"}, delay=0.6))
    quick = RetryPolicy(attempts=3, timeout=0.2, backoff=0.01, max_wait=0.05, sleep=SLEEPS.append)
    settings = Settings.from_env(
        {"PAGERDUTY_ROUTING_KEY": ROUTING_KEY, "PAGERDUTY_API_BASE": pd.url}
    )
    with PagerDutyEvents(settings, quick) as client:
        assert client.resolve(KEY).dedup_key == KEY
    assert len(SLEEPS) == 1


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"summary": "s", "source": "x", "severity": "fatal"}, "severity"),
        ({"summary": " ", "source": "x"}, "summary and a source"),
    ],
)
def test_bad_events_are_refused_before_sending(
    pd: PagerDutyFake, kwargs: dict[str, str], message: str
) -> None:
    with events(pd) as client, pytest.raises(UserError, match=message):
        client.trigger(KEY, **kwargs)  # type: ignore[arg-type]
    with events(pd) as client, pytest.raises(UserError, match="dedup_key"):
        client.resolve("k" * 256)
    assert pd.requests == []


def test_missing_routing_key_names_the_variable() -> None:
    with pytest.raises(ConfigError, match="PAGERDUTY_ROUTING_KEY"):
        PagerDutyEvents(Settings.from_env({}))
