"""The `alert_route` check (issue 16): a sweep with neither ALERT_WEBHOOK_URL nor
PAGERDUTY_ROUTING_KEY warns that no incident can reach a human; either one set is ok."""

from __future__ import annotations

from faithflow_ops.config import Settings
from faithflow_ops.health import checks
from faithflow_ops.jobs import health_sweep


def test_no_alert_route_warns_naming_both_settings() -> None:
    result = checks.alert_route_check(Settings(database_url="sqlite://"))
    assert (result.name, result.status) == ("alert_route", "warn")
    assert "no alert route configured" in result.detail
    assert "ALERT_WEBHOOK_URL" in result.detail and "PAGERDUTY_ROUTING_KEY" in result.detail


def test_either_hook_is_an_alert_route() -> None:
    webhook = Settings(database_url="sqlite://", alert_webhook_url="https://hooks.test/x")
    pager = Settings(database_url="sqlite://", pagerduty_routing_key="r" * 32)
    assert checks.alert_route_check(webhook).status == "ok"
    assert checks.alert_route_check(pager).status == "ok"
    assert "https://hooks.test" not in checks.alert_route_check(webhook).detail  # no secrets


def test_the_sweep_runs_the_alert_route_check() -> None:
    assert "alert_route" in health_sweep.check_names()
