"""ops/slo.toml: what it declares, and how a bad file is refused (file:line, exit 2)."""

from __future__ import annotations

from pathlib import Path

import pytest

from faithflow_ops.errors import UserError
from faithflow_ops.jobs.registry import JOBS as REGISTRY
from faithflow_ops.slo import spec

JOBS = {"dunning", "support_sla_sweep", "webhooks_apply"}
GOOD = """\
window = "30d"

[[slo]]
name = "task_availability"
kind = "availability"
objective = 99.9
routes = "/tasks/.*"
"""


def test_the_committed_file_declares_the_issues_objectives() -> None:
    loaded = spec.load()
    assert loaded.get("webhook_ingest_availability").objective == 99.95
    assert loaded.get("webhook_ingest_availability").budget == pytest.approx(0.0005)
    assert loaded.get("webhook_ingest_latency").threshold_seconds == 0.25
    assert loaded.get("webhook_apply_latency").threshold_seconds == 60
    assert loaded.get("task_availability").objective == 99.9
    assert loaded.get("job_success").objective == 99.0
    assert loaded.get("outbox_delivery").objective == 99.0
    assert loaded.get("job_freshness").factor == 2.0
    assert loaded.get("sla_sweep_lag").jobs == ("support_sla_sweep",)
    assert loaded.window_delta.days == 30


def test_freshness_is_twice_each_jobs_schedule_interval() -> None:
    limits = spec.freshness_limits(spec.load().get("job_freshness"))
    assert limits["dunning"] == 2 * 15 * 60  # */15 * * * *
    assert limits["subscription_metadata_backfill"] == 2 * 86400  # 10 2 * * *
    # the catch-up cron behind the receiver's worker runs every minute (crontab.example)
    assert limits["webhooks_apply"] == 2 * 60
    assert set(limits) == {job.name for job in REGISTRY}  # every job of the registry


@pytest.mark.parametrize(
    ("text", "line", "words"),
    [
        (GOOD.replace("99.9", "100.5"), 6, "percentage below 100"),
        (GOOD.replace('kind = "availability"', 'kind = "uptime"'), 5, "not one of"),
        (GOOD.replace('routes = "/tasks/.*"', 'routes = "/tasks/(["'), 7, "not a valid regex"),
        (GOOD.replace('routes = "/tasks/.*"\n', ""), 3, "needs routes"),
        (GOOD + "threshold_seconds = 0.3\n", 8, "does not apply"),
        (GOOD.replace("30d", "a month"), 1, "30d, 6h or 5m"),
        (GOOD.replace("objective = 99.9", "objective = 99.9 99"), 6, "not valid TOML"),
        (GOOD + GOOD.split("\n", 2)[2], 9, "declared twice"),
        (
            GOOD.replace('"availability"', '"freshness"').replace(
                'objective = 99.9\nroutes = "/tasks/.*"', 'jobs = ["dunnig"]'
            ),
            6,
            "no job named 'dunnig'",
        ),
        (
            GOOD.replace('"availability"', '"latency"') + "threshold_seconds = 0.3\n",
            8,
            "not a histogram bucket",
        ),
    ],
    ids=[
        "objective",
        "kind",
        "regex",
        "missing",
        "stray-key",
        "window",
        "toml",
        "duplicate",
        "job",
        "bucket",
    ],
)
def test_a_bad_file_names_its_line_and_the_fix(text: str, line: int, words: str) -> None:
    with pytest.raises(UserError) as caught:
        spec.parse(text, "slo.toml", job_names=JOBS)
    message = str(caught.value)
    assert words in message
    assert f"slo.toml:{line}" in message or f"line {line}" in message
    assert caught.value.exit_code == 2


def test_cli_check_refuses_a_bad_file_with_exit_2(cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    bad = tmp_path / "slo.toml"
    bad.write_text(GOOD.replace("99.9", "100.5"))
    result = cli("slo", "check", "--file", str(bad))
    assert result.exit_code == 2, result.output
    assert f"{bad}:6" in result.stderr
    assert "Traceback" not in result.stderr
    result = cli("slo", "check")
    assert result.exit_code == 0, result.stderr
    assert "webhook_ingest_availability" in result.stdout


def test_a_missing_file_names_the_fix(cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    result = cli("slo", "rules", "--file", str(tmp_path / "nope.toml"))
    assert result.exit_code == 2
    assert "cannot read the SLO file" in result.stderr and "--file" in result.stderr
