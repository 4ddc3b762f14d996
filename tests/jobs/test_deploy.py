"""crontab.example and render.yaml stay in step with the registry."""

from __future__ import annotations

from pathlib import Path

from faithflow_ops.deploy import crontab_text, render_yaml
from faithflow_ops.jobs.registry import JOBS

ROOT = Path(__file__).resolve().parents[2]


def test_crontab_example_lists_every_job_at_its_schedule() -> None:
    text = (ROOT / "crontab.example").read_text()
    for spec in JOBS:
        assert f"{spec.schedule}  {spec.cli_command} --json" in text, spec.name
    assert text == crontab_text(), (
        "crontab.example is stale: faithflow jobs crontab > crontab.example"
    )


def test_render_yaml_has_a_cron_job_per_registered_job() -> None:
    text = (ROOT / "render.yaml").read_text()
    for spec in JOBS:
        assert f"name: faithflow-{spec.name.replace('_', '-')}" in text, spec.name
        assert f'schedule: "{spec.schedule}"' in text
        assert f"startCommand: {spec.cli_command} --json" in text
    assert text == render_yaml(), "render.yaml is stale: faithflow jobs render-yaml > render.yaml"


def test_generated_crontab_lines_parse_as_five_field_cron() -> None:
    from faithflow_ops.jobs.registry import validate_cron

    for line in crontab_text().splitlines():
        if line and not line.startswith("#") and "=" not in line.split()[0]:
            validate_cron(" ".join(line.split()[:5]), "crontab.example")
