"""Prometheus recording and alerting rules from the objectives (`faithflow slo rules`).

Burn-rate alerts follow the Google SRE workbook, "Alerting on SLOs", Table 5-8
(https://sre.google/workbook/alerting-on-slos/): page when the 1 h and 5 m error ratios both
exceed 14.4x the budget (2 % of a 30-day budget in an hour) or the 6 h and 30 m ratios both
exceed 6x (5 % in six hours); open a ticket when the 3 d and 6 h ratios both exceed 1x (the
budget would be gone by the end of the window). The short window of each pair makes the alert
stop soon after the burn does. Freshness and backlog objectives have no budget: they alert on
their threshold.

The output is YAML written by hand (every scalar double-quoted, the JSON subset of YAML) so the
committed file is stable and no YAML library is needed at run time.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from faithflow_ops.slo.spec import Objective, Spec

# (severity, long window, short window, burn-rate factor) — the workbook's Table 5-8.
BURN_ALERTS = (
    ("page", "1h", "5m", 14.4),
    ("page", "6h", "30m", 6.0),
    ("ticket", "3d", "6h", 1.0),
)
WINDOWS = ("5m", "30m", "1h", "6h", "3d")
RATIO = "faithflow:slo_errors:ratio_rate{window}"
OBJECTIVE = "faithflow:slo_objective:ratio"
BACKLOG_FOR = "2m"  # a backlog over its age limit for this long pages (one slow pass is noise)

HTTP = "faithflow_http_request_duration_seconds"
APPLY = "faithflow_webhook_apply_latency_seconds"
JOB_RUNS = "faithflow_job_runs_recorded_total"
MESSAGES = "faithflow_outbox_messages_finished_total"
LAST_SUCCESS = "faithflow_job_last_success_timestamp_seconds"
INTERVAL = "faithflow_job_schedule_interval_seconds"
BACKLOG_AGE = {
    "webhook": "faithflow_webhook_oldest_waiting_seconds",
    "outbox": "faithflow_outbox_oldest_waiting_seconds",
}


def le(bound: float) -> str:
    """A bucket bound as prometheus_client writes its `le` label (60 → "60.0")."""
    return "+Inf" if bound == float("inf") else repr(float(bound))


def camel(name: str) -> str:
    return "".join(part.capitalize() for part in name.split("_"))


@dataclass(frozen=True)
class Ratio:
    """An objective's error ratio over a window: bad / total, each a PromQL sum."""

    bad: str  # sum over the window of bad events, `$w` for the window
    total: str
    by: str = ""  # the grouping label of a per-job objective

    def expr(self, window: str) -> str:
        bad, total = self.bad.replace("$w", window), self.total.replace("$w", window)
        # a series of bad events that never happened yet is missing, not 0: fill it with 0
        # where there was traffic, so the ratio reads 0 instead of disappearing
        return f"({bad} or ({total} * 0)) / {total}"


def _selector(**labels: str) -> str:
    parts = []
    for key, value in labels.items():
        op = "=~" if value.startswith("~") else "!=" if value.startswith("!") else "="
        parts.append(f'{key}{op}"{value.lstrip("~!")}"')
    return "{" + ",".join(parts) + "}"


def _job_selector(o: Objective, **extra: str) -> str:
    labels = dict(extra)
    parts = [_selector(**labels)[1:-1]] if labels else []
    if o.jobs:
        parts.append(f'job_name=~"{"|".join(o.jobs)}"')
    elif o.exclude:
        parts.append(f'job_name!~"{"|".join(o.exclude)}"')
    return "{" + ",".join(p for p in parts if p) + "}"


def ratio(o: Objective) -> Ratio:
    if o.kind == "availability":
        assert o.routes is not None
        bad = _selector(route="~" + o.routes, status_class="5xx")
        total = _selector(route="~" + o.routes, status_class="!4xx")
        return Ratio(f"sum(rate({HTTP}_count{bad}[$w]))", f"sum(rate({HTTP}_count{total}[$w]))")
    if o.kind == "latency":
        assert o.routes is not None and o.threshold_seconds is not None
        total = _selector(route="~" + o.routes, status_class="!4xx")
        fast = _selector(route="~" + o.routes, status_class="!4xx", le=le(o.threshold_seconds))
        count = f"sum(rate({HTTP}_count{total}[$w]))"
        return Ratio(f"({count} - sum(rate({HTTP}_bucket{fast}[$w])))", count)
    if o.kind == "apply_latency":
        assert o.threshold_seconds is not None
        count = f"sum(rate({APPLY}_count[$w]))"
        fast = _selector(le=le(o.threshold_seconds))
        return Ratio(f"({count} - sum(rate({APPLY}_bucket{fast}[$w])))", count)
    if o.kind == "job_success":
        bad = _job_selector(o, status="~failed|abandoned")
        total = _job_selector(o)
        return Ratio(
            f"sum by (job_name) (rate({JOB_RUNS}{bad}[$w]))",
            f"sum by (job_name) (rate({JOB_RUNS}{total}[$w]))",
            by="job_name",
        )
    if o.kind == "outbox_delivery":
        bad = _selector(status="~failed|unknown")
        return Ratio(f"sum(rate({MESSAGES}{bad}[$w]))", f"sum(rate({MESSAGES}[$w]))")
    raise ValueError(f"{o.kind} has no error ratio")


def groups(spec: Spec) -> list[dict[str, Any]]:
    """The rule groups, one per objective, as plain data (what `render` writes)."""
    out = []
    for o in spec.objectives:
        labels = {"slo": o.name}
        rules: list[dict[str, Any]] = []
        if o.has_budget:
            r = ratio(o)
            for window in WINDOWS:
                rules.append(
                    {
                        "record": RATIO.format(window=window),
                        "expr": r.expr(window),
                        "labels": labels,
                    }
                )
            # the whole SLO window, for the dashboard's SLI and budget left
            rules.append(
                {
                    "record": RATIO.format(window=spec.window),
                    "expr": r.expr(spec.window),
                    "labels": labels,
                }
            )
            assert o.objective is not None
            rules.append(
                {"record": OBJECTIVE, "expr": f"vector({o.objective / 100:.6g})", "labels": labels}
            )
            budget = o.budget
            for severity in ("page", "ticket"):
                pairs = [a for a in BURN_ALERTS if a[0] == severity]
                clauses = []
                for _, long, short, factor in pairs:
                    limit = f"{factor * budget:.6g}"
                    long_rule = f'{RATIO.format(window=long)}{{slo="{o.name}"}}'
                    short_rule = f'{RATIO.format(window=short)}{{slo="{o.name}"}}'
                    clauses.append(f"({long_rule} > {limit} and {short_rule} > {limit})")
                windows = ", ".join(f"{a[1]}/{a[2]} at {a[3]:g}x" for a in pairs)
                who = " for {{ $labels.job_name }}" if r.by else ""
                speed = "FastBurn" if severity == "page" else "SlowBurn"
                rules.append(
                    {
                        "alert": f"{camel(o.name)}{speed}",
                        "expr": " or ".join(clauses),
                        "labels": {**labels, "severity": severity},
                        "annotations": {
                            "summary": f"{o.name}{who}: error budget burning ({windows})",
                            "description": f"{o.description}: objective {o.objective:g}% "
                            f"over {spec.window}; the error ratio is "
                            "{{ $value | humanizePercentage }}"
                            f" (budget {budget:.6g}).",
                            "runbook_url": spec.runbook(o),
                        },
                    }
                )
        elif o.kind == "freshness":
            since = f"(time() - {LAST_SUCCESS}{_job_selector(o)})"
            if o.max_age_seconds is not None:
                expr = f"{since} > {o.max_age_seconds:g}"
            else:
                assert o.factor is not None
                limit = f"{o.factor:g} * {INTERVAL}{_job_selector(o)}"
                expr = f"{since} > on(job_name) ({limit})"
            rules.append(
                {
                    "alert": f"{camel(o.name)}Stale",
                    "expr": expr,
                    "labels": {**labels, "severity": "page"},
                    "annotations": {
                        "summary": f"{o.name}: {{{{ $labels.job_name }}}} has not succeeded for "
                        "{{ $value | humanizeDuration }}",
                        "description": o.description + ".",
                        "runbook_url": spec.runbook(o),
                    },
                }
            )
        elif o.kind == "backlog":
            assert o.queue is not None and o.max_age_seconds is not None
            rules.append(
                {
                    "alert": f"{camel(o.name)}TooOld",
                    "expr": f"{BACKLOG_AGE[o.queue]} > {o.max_age_seconds:g}",
                    "for": BACKLOG_FOR,
                    "labels": {**labels, "severity": "page"},
                    "annotations": {
                        "summary": f"{o.name}: the oldest waiting {o.queue} item is "
                        "{{ $value | humanizeDuration }} old",
                        "description": o.description + ".",
                        "runbook_url": spec.runbook(o),
                    },
                }
            )
        out.append({"name": f"slo:{o.name}", "rules": rules})
    return out


def _q(text: str) -> str:
    return json.dumps(text, ensure_ascii=False)


def render(spec: Spec) -> str:
    """The rules file (Prometheus rule-file YAML)."""
    lines = [
        "# Generated by `faithflow slo rules` from ops/slo.toml: do not edit by hand.",
        "# Burn-rate alerts: Google SRE workbook, Alerting on SLOs, Table 5-8.",
        "groups:",
    ]
    for group in groups(spec):
        lines.append(f"  - name: {_q(group['name'])}")
        lines.append("    rules:")
        for rule in group["rules"]:
            first = True
            for key in ("record", "alert", "expr", "for", "labels", "annotations"):
                if key not in rule:
                    continue
                lead = "      - " if first else "        "
                first = False
                value = rule[key]
                if isinstance(value, dict):
                    lines.append(f"{lead}{key}:")
                    lines.extend(f"          {k}: {_q(v)}" for k, v in value.items())
                else:
                    lines.append(f"{lead}{key}: {_q(value)}")
    return "\n".join(lines) + "\n"
