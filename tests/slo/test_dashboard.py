"""The Grafana dashboard: committed in sync with ops/slo.toml, and a well-formed dashboard of
the schema version it declares (checked here without Grafana: ids, grid, targets, queries)."""

from __future__ import annotations

import json
import re
from pathlib import Path

from faithflow_ops.slo import dashboard, rules, spec

ROOT = Path(__file__).resolve().parents[2]
BOARD = ROOT / "ops" / "grafana" / "slo-dashboard.json"
# what the receiver exports (tests/slo/test_metrics.py) plus the recorded series
EXPORTED = {
    "faithflow_job_last_success_timestamp_seconds",
    "faithflow_webhook_backlog",
    "faithflow_webhook_oldest_waiting_seconds",
    "faithflow_outbox_backlog",
    "faithflow_outbox_oldest_waiting_seconds",
}


def test_committed_dashboard_matches_the_slo_file() -> None:
    assert BOARD.read_text() == dashboard.render(spec.load()), (
        "ops/grafana/slo-dashboard.json is stale: "
        "faithflow slo dashboard > ops/grafana/slo-dashboard.json"
    )


def test_dashboard_is_a_well_formed_grafana_model() -> None:
    board = json.loads(BOARD.read_text())
    assert board["schemaVersion"] == 39 and board["uid"] and board["title"]
    assert board["templating"]["list"][0]["type"] == "datasource"
    panels = board["panels"]
    ids = [p["id"] for p in panels]
    assert len(ids) == len(set(ids)), "panel ids are unique"
    recorded = {r["record"] for g in rules.groups(spec.load()) for r in g["rules"] if "record" in r}
    occupied: set[tuple[int, int]] = set()
    for panel in panels:
        grid = panel["gridPos"]
        assert set(grid) == {"h", "w", "x", "y"}
        assert grid["x"] >= 0 and grid["x"] + grid["w"] <= 24, panel["title"]
        cells = {
            (x, y)
            for x in range(grid["x"], grid["x"] + grid["w"])
            for y in range(grid["y"], grid["y"] + grid["h"])
        }
        assert not cells & occupied, f"{panel['title']} overlaps another panel"
        occupied |= cells
        if panel["type"] == "row":
            continue
        assert panel["type"] in ("stat", "timeseries")
        assert panel["targets"], panel["title"]
        refs = [t["refId"] for t in panel["targets"]]
        assert len(refs) == len(set(refs))
        for target in panel["targets"]:
            expr = target["expr"]
            assert expr.count("(") == expr.count(")") and expr.count("{") == expr.count("}")
            names = set(re.findall(r"[a-z_]+:[a-z_]+:[a-z_0-9]+|faithflow_[a-z_]+", expr))
            assert names and names <= recorded | EXPORTED, f"{expr}: unknown {names}"


def test_every_objective_with_a_budget_has_its_row() -> None:
    board = dashboard.build(spec.load())
    rows = [p["title"] for p in board["panels"] if p["type"] == "row"]
    for objective in spec.load().objectives:
        if objective.has_budget:
            assert any(r.startswith(objective.name + ":") for r in rows)
    assert any("freshness" in r.lower() for r in rows)
    assert any("backlog" in r.lower() for r in rows)


def test_dashboard_uses_the_model_of_schema_version_39() -> None:
    """What Grafana's DashboardMigrator would otherwise rewrite on load, checked against the
    version declared (grafana/grafana public/app/features/dashboard/state/DashboardMigrator.ts;
    the JSON model: grafana.com/docs/grafana/latest/dashboards/build-dashboards/
    view-dashboard-json-model): datasource references are {type, uid} objects on every panel
    and target (schema 33 and 36), no Angular panel types (graph, singlestat, table-old), rows
    carry `collapsed` and `panels`, thresholds start at null and rise."""
    board = json.loads(BOARD.read_text())
    assert board["schemaVersion"] == dashboard.SCHEMA_VERSION == 39
    assert re.fullmatch(r"[A-Za-z0-9_-]{1,40}", board["uid"])
    assert set(board["time"]) == {"from", "to"}
    variable = "${" + board["templating"]["list"][0]["name"] + "}"
    reference = {"type": "prometheus", "uid": variable}
    for panel in board["panels"]:
        assert isinstance(panel["id"], int) and panel["id"] > 0
        assert panel["type"] not in ("graph", "singlestat", "table-old")
        if panel["type"] == "row":
            assert panel["collapsed"] is False and panel["panels"] == []
            continue
        assert panel["datasource"] == reference, panel["title"]
        assert all(t["datasource"] == reference for t in panel["targets"]), panel["title"]
        assert set(panel["fieldConfig"]) == {"defaults", "overrides"}
        steps = panel["fieldConfig"]["defaults"].get("thresholds", {}).get("steps")
        if steps:
            assert steps[0]["value"] is None
            values = [s["value"] for s in steps[1:]]
            assert values == sorted(values), panel["title"]
