"""The generated Prometheus rules: committed in sync with ops/slo.toml, valid for promtool,
and firing (or not) on fed series as the SRE workbook's table says."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from faithflow_ops.errors import UserError
from faithflow_ops.slo import rules, spec

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "ops" / "prometheus" / "slo-rules.yml"
PROMTOOL = shutil.which("promtool")
GOOD_TASKS = """
[[slo]]
name = "task_availability"
kind = "availability"
objective = 99.9
routes = "/tasks/.*"
"""
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
                assert rule["annotations"]["runbook_url"]
                assert rule["labels"]["severity"] in ("page", "ticket")


def _anchors(markdown: str) -> set[str]:
    """GitHub's heading anchors: lower case, punctuation dropped, spaces as dashes."""
    out = set()
    for line in markdown.splitlines():
        if line.startswith("#"):
            title = line.lstrip("#").strip().lower()
            out.add(re.sub(r"[^\w\- ]", "", title).replace(" ", "-"))
    return out


def test_every_runbook_link_resolves_to_a_committed_section() -> None:
    """Each alert's runbook_url is a file of this repository and a heading in it, in the
    committed rules file as in a fresh render."""
    links = re.findall(r'runbook_url: "([^"]+)"', RULES.read_text())
    alerts = [r for g in rules.groups(spec.load()) for r in g["rules"] if "alert" in r]
    assert links and len(links) == len(alerts)
    for link in links:
        path, _, anchor = link.partition("#")
        target = ROOT / path
        assert target.is_file(), f"{link}: no file {path} in the repository"
        assert anchor in _anchors(target.read_text()), f"{link}: no heading #{anchor} in {path}"


def test_the_runbook_base_is_a_path_or_a_url() -> None:
    loaded = spec.parse('runbook_base = "docs/slo.md"\n' + GOOD_TASKS, job_names=set())
    assert loaded.runbook(loaded.objectives[0]) == "docs/slo.md#task-availability"
    with pytest.raises(UserError, match=r"slo.toml:1: runbook_base must be a URL or a path"):
        spec.parse('runbook_base = ""\n' + GOOD_TASKS, job_names=set())


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
