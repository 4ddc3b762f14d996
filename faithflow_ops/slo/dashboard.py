"""The Grafana dashboard from the objectives (`faithflow slo dashboard`): one row per objective
with a budget (SLI over the window, error budget left, burn rate over 1 h and 6 h against the
page thresholds), then job freshness and the inbox/outbox backlogs. It reads the recording
rules of faithflow_ops.slo.rules, so Prometheus must load ops/prometheus/slo-rules.yml.

Plain JSON in Grafana's dashboard model, schemaVersion 39 (Grafana 10.x); the datasource is a
variable, so the file imports into any Grafana with a Prometheus datasource."""

from __future__ import annotations

import json
from typing import Any

from faithflow_ops.slo.rules import BACKLOG_AGE, LAST_SUCCESS, OBJECTIVE, RATIO
from faithflow_ops.slo.spec import Objective, Spec

SCHEMA_VERSION = 39
UID = "faithflow-slo"
DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}


class _Layout:
    def __init__(self) -> None:
        self.y = 0
        self.next_id = 1
        self.panels: list[dict[str, Any]] = []

    def row(self, title: str) -> None:
        self.panels.append(
            {
                "type": "row",
                "id": self._id(),
                "title": title,
                "collapsed": False,
                "gridPos": {"h": 1, "w": 24, "x": 0, "y": self.y},
                "panels": [],
            }
        )
        self.y += 1

    def line(self, *panels: dict[str, Any], height: int = 6) -> None:
        x = 0
        for panel in panels:
            width = panel.pop("width")
            panel["id"] = self._id()
            panel["datasource"] = DATASOURCE
            panel["gridPos"] = {"h": height, "w": width, "x": x, "y": self.y}
            x += width
            self.panels.append(panel)
        self.y += height

    def _id(self) -> int:
        self.next_id += 1
        return self.next_id - 1


def _target(expr: str, legend: str = "__auto", ref: str = "A") -> dict[str, Any]:
    return {"datasource": DATASOURCE, "expr": expr, "legendFormat": legend, "refId": ref}


def _stat(title: str, expr: str, unit: str, legend: str, steps: list[Any]) -> dict[str, Any]:
    return {
        "type": "stat",
        "title": title,
        "width": 6,
        "targets": [_target(expr, legend)],
        "fieldConfig": {
            "defaults": {
                "unit": unit,
                "decimals": 3,
                "thresholds": {"mode": "absolute", "steps": steps},
            },
            "overrides": [],
        },
        "options": {"reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False}},
    }


def _series(title: str, targets: list[dict[str, Any]], unit: str, width: int) -> dict[str, Any]:
    return {
        "type": "timeseries",
        "title": title,
        "width": width,
        "targets": targets,
        "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
        "options": {"legend": {"displayMode": "list", "placement": "bottom"}},
    }


def _slo_row(layout: _Layout, spec: Spec, o: Objective) -> None:
    sel = f'{{slo="{o.name}"}}'
    window = spec.window
    per_job = o.kind == "job_success"
    legend = "{{job_name}}" if per_job else o.name
    errors = f"{RATIO.format(window=window)}{sel}"
    budget = o.budget
    layout.row(f"{o.name}: {o.description} ({o.objective:g}% over {window})")
    layout.line(
        _stat(
            f"SLI ({window})",
            f"1 - {errors}",
            "percentunit",
            legend,
            [
                {"color": "red", "value": None},
                {"color": "green", "value": round(1 - budget, 10)},
            ],
        ),
        _stat(
            "Error budget left",
            f"1 - {errors} / on(slo) group_left() (1 - {OBJECTIVE}{sel})",
            "percentunit",
            legend,
            [
                {"color": "red", "value": None},
                {"color": "orange", "value": 0},
                {"color": "green", "value": 0.25},
            ],
        ),
        _series(
            "Burn rate (1 = budget lasts the window; page at 14.4 on 1h, 6 on 6h)",
            [
                _target(
                    f"{RATIO.format(window='1h')}{sel} / {budget:.6g}",
                    f"1h {legend}" if per_job else "1h",
                    "A",
                ),
                _target(
                    f"{RATIO.format(window='6h')}{sel} / {budget:.6g}",
                    f"6h {legend}" if per_job else "6h",
                    "B",
                ),
            ],
            "none",
            12,
        ),
    )


def build(spec: Spec) -> dict[str, Any]:
    layout = _Layout()
    for o in spec.objectives:
        if o.has_budget:
            _slo_row(layout, spec, o)
    layout.row("Job freshness: seconds since each job last succeeded")
    layout.line(
        _series(
            "Since last success",
            [_target(f"time() - {LAST_SUCCESS}", "{{job_name}}")],
            "s",
            24,
        ),
        height=8,
    )
    layout.row("Backlogs: inbox (webhooks) and outbox (messages)")
    layout.line(
        _series(
            "Waiting",
            [
                _target("faithflow_webhook_backlog", "webhook inbox", "A"),
                _target("faithflow_outbox_backlog", "outbox", "B"),
            ],
            "none",
            12,
        ),
        _series(
            "Oldest waiting",
            [
                _target(BACKLOG_AGE["webhook"], "webhook inbox", "A"),
                _target(BACKLOG_AGE["outbox"], "outbox", "B"),
            ],
            "s",
            12,
        ),
    )
    return {
        "uid": UID,
        "title": "FaithFlow SLOs",
        "description": "Generated by `faithflow slo dashboard` from ops/slo.toml.",
        "tags": ["faithflow", "slo"],
        "schemaVersion": SCHEMA_VERSION,
        "version": 1,
        "editable": True,
        "timezone": "utc",
        "time": {"from": "now-7d", "to": "now"},
        "refresh": "1m",
        "templating": {
            "list": [
                {
                    "name": "datasource",
                    "label": "Prometheus",
                    "type": "datasource",
                    "query": "prometheus",
                    "current": {},
                    "hide": 0,
                }
            ]
        },
        "annotations": {"list": []},
        "links": [],
        "panels": layout.panels,
    }


def render(spec: Spec) -> str:
    return json.dumps(build(spec), indent=2) + "\n"
