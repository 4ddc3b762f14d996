"""The generated Prometheus rules: committed in sync with ops/slo.toml, valid for promtool,
and firing (or not) on fed series as the SRE workbook's table says."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from faithflow_ops.slo import rules, spec

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "ops" / "prometheus" / "slo-rules.yml"
PROMTOOL = shutil.which("promtool")
needs_promtool = pytest.mark.skipif(
    PROMTOOL is None, reason="promtool not installed (Debian package prometheus; .ci/run)"
)


def test_committed_rules_match_the_slo_file() -> None:
    assert RULES.read_text() == rules.render(spec.load()), (
        "ops/prometheus/slo-rules.yml is stale: faithflow slo rules > ops/prometheus/slo-rules.yml"
    )


def test_burn_rate_thresholds_follow_the_workbook() -> None:
    """99.95 % → budget 0.0005: page at 14.4x (0.0072) on 1h/5m and 6x (0.003) on 6h/30m,
    ticket at 1x (0.0005) on 3d/6h; every alert links its runbook."""
    groups = {g["name"]: g["rules"] for g in rules.groups(spec.load())}
    alerts = {r["alert"]: r for r in groups["slo:webhook_ingest_availability"] if "alert" in r}
    page = alerts["WebhookIngestAvailabilityFastBurn"]["expr"]
    assert "ratio_rate1h" in page and "ratio_rate5m" in page and "> 0.0072" in page
    assert "ratio_rate6h" in page and "ratio_rate30m" in page and "> 0.003" in page
    ticket = alerts["WebhookIngestAvailabilitySlowBurn"]["expr"]
    assert "ratio_rate3d" in ticket and "ratio_rate6h" in ticket and "> 0.0005" in ticket
    for group in groups.values():
        for rule in group:
            if "alert" in rule:
                assert rule["annotations"]["runbook_url"].startswith("https://")
                assert rule["labels"]["severity"] in ("page", "ticket")


@needs_promtool
def test_promtool_accepts_the_rules() -> None:
    done = subprocess.run(
        [PROMTOOL, "check", "rules", str(RULES)], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS" in done.stdout


def _bare_rules(path: Path) -> None:
    """The generated rules without annotations: promtool compares an alert's annotations too,
    and the templated texts are not what these tests are about."""
    groups = rules.groups(spec.load())
    for group in groups:
        for rule in group["rules"]:
            rule.pop("annotations", None)
    path.write_text(json.dumps({"groups": groups}, indent=1))  # JSON is YAML


HTTP = "faithflow_http_request_duration_seconds_count"
RUNS = "faithflow_job_runs_recorded_total"
LAST = "faithflow_job_last_success_timestamp_seconds"
EVERY = "faithflow_job_schedule_interval_seconds"
RATIO_1H = 'faithflow:slo_errors:ratio_rate1h{slo="webhook_ingest_availability"}'


def stripe(status_class: str) -> str:
    return f'{HTTP}{{method="POST",route="/webhooks/stripe",status_class="{status_class}"}}'


SCENARIOS = {
    "rule_files": ["rules.yml"],
    "evaluation_interval": "1m",
    "tests": [
        {
            "name": "10 % of webhook deliveries answer 5xx: page and ticket",
            "interval": "1m",
            "input_series": [
                {
                    "series": stripe("2xx"),
                    "values": "0+90x120",
                },
                {
                    "series": stripe("5xx"),
                    "values": "0+10x120",
                },
                # refusals (bad signature) are not errors of the service
                {
                    "series": stripe("4xx"),
                    "values": "0+500x120",
                },
            ],
            "alert_rule_test": [
                {
                    "eval_time": "10m",
                    "alertname": "WebhookIngestAvailabilityFastBurn",
                    "exp_alerts": [
                        {
                            "exp_labels": {
                                "slo": "webhook_ingest_availability",
                                "severity": "page",
                            }
                        }
                    ],
                },
                {
                    "eval_time": "10m",
                    "alertname": "WebhookIngestAvailabilitySlowBurn",
                    "exp_alerts": [
                        {
                            "exp_labels": {
                                "slo": "webhook_ingest_availability",
                                "severity": "ticket",
                            }
                        }
                    ],
                },
                {"eval_time": "10m", "alertname": "TaskAvailabilityFastBurn", "exp_alerts": []},
            ],
        },
        {
            "name": "only 4xx refusals: nothing fires",
            "interval": "1m",
            "input_series": [
                {
                    "series": stripe("2xx"),
                    "values": "0+90x120",
                },
                {
                    "series": stripe("4xx"),
                    "values": "0+500x120",
                },
            ],
            "alert_rule_test": [
                {"eval_time": "60m", "alertname": name, "exp_alerts": []}
                for name in (
                    "WebhookIngestAvailabilityFastBurn",
                    "WebhookIngestAvailabilitySlowBurn",
                    "WebhookIngestLatencyFastBurn",
                )
            ],
            "promql_expr_test": [
                {
                    "expr": RATIO_1H,
                    "eval_time": "60m",
                    "exp_samples": [
                        {
                            "labels": RATIO_1H,
                            "value": 0,
                        }
                    ],
                }
            ],
        },
        {
            "name": "dunning fails 1 run in 10: 6h/30m pages (10 % > 6 %), 1h/5m would not",
            "interval": "1m",
            "input_series": [
                {
                    "series": f'{RUNS}{{job_name="dunning",status="succeeded"}}',
                    "values": "0+9x400",
                },
                {
                    "series": f'{RUNS}{{job_name="dunning",status="failed"}}',
                    "values": "0+1x400",
                },
                {
                    "series": f'{RUNS}{{job_name="health_sweep",status="succeeded"}}',
                    "values": "0+10x400",
                },
            ],
            "alert_rule_test": [
                {
                    "eval_time": "40m",
                    "alertname": "JobSuccessFastBurn",
                    "exp_alerts": [
                        {
                            "exp_labels": {
                                "slo": "job_success",
                                "severity": "page",
                                "job_name": "dunning",
                            }
                        }
                    ],
                }
            ],
        },
        {
            "name": "communications_dispatch last succeeded at t=0: stale after 2 x 1 min",
            "interval": "1m",
            "input_series": [
                {
                    "series": f'{LAST}{{job_name="communications_dispatch"}}',
                    "values": "0x10",
                },
                {
                    "series": f'{LAST}{{job_name="dunning"}}',
                    "values": "0+60x10",
                },
                {
                    "series": f'{EVERY}{{job_name="communications_dispatch"}}',
                    "values": "60x10",
                },
                {
                    "series": f'{EVERY}{{job_name="dunning"}}',
                    "values": "900x10",
                },
            ],
            "alert_rule_test": [
                {"eval_time": "2m", "alertname": "JobFreshnessStale", "exp_alerts": []},
                {
                    "eval_time": "3m",
                    "alertname": "JobFreshnessStale",
                    "exp_alerts": [
                        {
                            "exp_labels": {
                                "slo": "job_freshness",
                                "severity": "page",
                                "job_name": "communications_dispatch",
                            }
                        }
                    ],
                },
            ],
        },
        {
            "name": "a webhook waits over 5 minutes: pages once it has for 2 minutes",
            "interval": "1m",
            "input_series": [
                {"series": "faithflow_webhook_oldest_waiting_seconds", "values": "0 0 400+60x10"},
            ],
            "alert_rule_test": [
                {"eval_time": "3m", "alertname": "WebhookBacklogTooOld", "exp_alerts": []},
                {
                    "eval_time": "5m",
                    "alertname": "WebhookBacklogTooOld",
                    "exp_alerts": [{"exp_labels": {"slo": "webhook_backlog", "severity": "page"}}],
                },
            ],
        },
    ],
}


@needs_promtool
def test_alerts_fire_on_fed_series(tmp_path: Path) -> None:
    _bare_rules(tmp_path / "rules.yml")
    (tmp_path / "tests.yml").write_text(json.dumps(SCENARIOS, indent=1))
    done = subprocess.run(
        [PROMTOOL, "test", "rules", "tests.yml"],
        capture_output=True,
        text=True,
        check=False,
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_every_runbook_link_has_its_section_in_docs_slo() -> None:
    text = (ROOT / "docs" / "slo.md").read_text()
    anchors = {line[4:].strip() for line in text.splitlines() if line.startswith("### ")}
    for group in rules.groups(spec.load()):
        for rule in group["rules"]:
            if "alert" in rule:
                url = rule["annotations"]["runbook_url"]
                assert url.split("#", 1)[0].endswith("docs/slo.md")
                assert url.split("#", 1)[1] in anchors, f"{rule['alert']}: no section for {url}"
