"""Load and validate `ops/slo.toml`: every objective the rules, the dashboard and the report
are generated from. Errors name the file and line and say what to write instead
(`UserError`, exit 2); nothing is generated from a file with any error."""

from __future__ import annotations

import datetime as dt
import functools
import re
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from faithflow_ops.errors import UserError

# The checkout's ops/slo.toml; an installed package (Render's `pip install .`) is run from the
# checkout, so ./ops/slo.toml is tried next.
DEFAULT_PATH = Path(__file__).resolve().parents[2] / "ops" / "slo.toml"


def default_path() -> Path:
    for candidate in (DEFAULT_PATH, Path.cwd() / "ops" / "slo.toml"):
        if candidate.is_file():
            return candidate
    return DEFAULT_PATH


# Objectives with an error budget (burn-rate alerts) and those checked against a threshold.
RATIO_KINDS = ("availability", "latency", "apply_latency", "job_success", "outbox_delivery")
THRESHOLD_KINDS = ("freshness", "backlog")
KINDS = RATIO_KINDS + THRESHOLD_KINDS
QUEUES = ("webhook", "outbox")

# Bucket bounds of the histograms a latency objective can name (receiver/metrics.py): a
# threshold between two bounds cannot be measured from the histogram.
HTTP_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0)
APPLY_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600)

_FIELDS: dict[str, set[str]] = {
    "availability": {"routes", "objective"},
    "latency": {"routes", "objective", "threshold_seconds"},
    "apply_latency": {"objective", "threshold_seconds"},
    "job_success": {"objective", "jobs", "exclude"},
    "outbox_delivery": {"objective"},
    "freshness": {"jobs", "exclude", "factor", "max_age_seconds"},
    "backlog": {"queue", "max_age_seconds"},
}
_REQUIRED: dict[str, set[str]] = {
    "availability": {"routes", "objective"},
    "latency": {"routes", "objective", "threshold_seconds"},
    "apply_latency": {"objective", "threshold_seconds"},
    "job_success": {"objective"},
    "outbox_delivery": {"objective"},
    "freshness": set(),
    "backlog": {"queue", "max_age_seconds"},
}
_COMMON = {"name", "kind", "description"}
_NAME = re.compile(r"^[a-z][a-z0-9_]*$")
_DURATION = re.compile(r"^(\d+)([mhd])$")


@dataclass(frozen=True)
class Objective:
    name: str
    kind: str
    description: str
    objective: float | None = None  # percent, for ratio kinds
    routes: str | None = None  # regex over route templates
    threshold_seconds: float | None = None
    jobs: tuple[str, ...] = ()  # empty: every job of the registry
    exclude: tuple[str, ...] = ()  # jobs left out of "every job"
    factor: float | None = None
    max_age_seconds: float | None = None
    queue: str | None = None

    @property
    def budget(self) -> float:
        """The error budget as a ratio (99.95 % → 0.0005)."""
        assert self.objective is not None
        return round(1 - self.objective / 100, 10)

    def covers(self, job: str) -> bool:
        """Whether a per-job objective applies to `job`."""
        return (not self.jobs or job in self.jobs) and job not in self.exclude

    @property
    def has_budget(self) -> bool:
        return self.kind in RATIO_KINDS


@dataclass(frozen=True)
class Spec:
    window: str
    runbook_base: str
    objectives: tuple[Objective, ...]

    @property
    def window_delta(self) -> dt.timedelta:
        return parse_duration(self.window)

    def runbook(self, objective: Objective) -> str:
        return f"{self.runbook_base}#{objective.name.replace('_', '-')}"

    def get(self, name: str) -> Objective:
        for o in self.objectives:
            if o.name == name:
                return o
        raise UserError(f"no objective named {name!r}; known: {', '.join(self.names())}")

    def names(self) -> list[str]:
        return [o.name for o in self.objectives]


def parse_duration(text: str) -> dt.timedelta:
    """`30d`, `6h`, `5m` → a timedelta; anything else is a UserError."""
    match = _DURATION.match(text.strip())
    if not match or int(match.group(1)) == 0:
        raise UserError(f"duration {text!r} is not understood; write e.g. 30d, 6h or 5m")
    n, unit = int(match.group(1)), match.group(2)
    return dt.timedelta(**{{"m": "minutes", "h": "hours", "d": "days"}[unit]: n})


def load(path: Path | None = None, *, job_names: set[str] | None = None) -> Spec:
    """The objectives in `path` (default: `default_path()`). `job_names`: the jobs a `jobs`
    list may name (default: the registry's)."""
    path = path or default_path()
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise UserError(
            f"{path}: cannot read the SLO file ({exc.strerror}); run from the checkout or "
            "pass --file ops/slo.toml"
        ) from None
    return parse(text, str(path), job_names=job_names)


def parse(text: str, where: str = "slo.toml", *, job_names: set[str] | None = None) -> Spec:
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:  # its message carries "(at line N, column M)"
        raise UserError(f"{where}: not valid TOML: {exc}") from None
    if job_names is None:
        from faithflow_ops.jobs.registry import JOBS

        job_names = {spec.name for spec in JOBS}
    finder = _Lines(text)
    unknown = set(doc) - {"window", "runbook_base", "slo"}
    if unknown:
        key = sorted(unknown)[0]
        raise UserError(
            f"{where}:{finder.top(key)}: unknown key {key!r}; "
            "the top level has window, runbook_base and [[slo]] tables"
        )
    window = doc.get("window", "30d")
    if not isinstance(window, str):
        raise UserError(f'{where}:{finder.top("window")}: window must be a string like "30d"')
    try:
        parse_duration(window)
    except UserError as exc:
        raise UserError(f"{where}:{finder.top('window')}: {exc}") from None
    runbook_base = doc.get("runbook_base", "docs/slo.md")
    if not isinstance(runbook_base, str) or not runbook_base:
        raise UserError(
            f"{where}:{finder.top('runbook_base')}: runbook_base must be a URL or a path in "
            'this repository, e.g. "docs/slo.md"'
        )
    tables = doc.get("slo", [])
    if not isinstance(tables, list) or not tables:
        raise UserError(f"{where}: no objectives; add at least one [[slo]] table")
    objectives: list[Objective] = []
    seen: set[str] = set()
    for index, table in enumerate(tables):
        objective = _objective(table, index, finder, where, job_names)
        if objective.name in seen:
            line = finder.key(index, "name")
            raise UserError(f"{where}:{line}: objective {objective.name!r} is declared twice")
        seen.add(objective.name)
        objectives.append(objective)
    return Spec(window, runbook_base, tuple(objectives))


def _objective(
    table: dict[str, Any], index: int, finder: _Lines, where: str, job_names: set[str]
) -> Objective:
    def fail(key: str | None, message: str) -> UserError:
        line = finder.key(index, key) if key else finder.header(index)
        return UserError(f"{where}:{line}: [[slo]] #{index + 1}: {message}")

    name = table.get("name")
    if not isinstance(name, str) or not _NAME.match(name):
        raise fail("name", 'name must be lower_snake_case, e.g. name = "task_availability"')
    kind = table.get("kind")
    if kind not in KINDS:
        raise fail("kind", f"{name}: kind {kind!r} is not one of {', '.join(KINDS)}")
    allowed = _COMMON | _FIELDS[kind]
    for key in table:
        if key not in allowed:
            raise fail(
                key,
                f"{name}: {key!r} does not apply to kind {kind}; "
                f"allowed: {', '.join(sorted(allowed))}",
            )
    for key in sorted(_REQUIRED[kind]):
        if key not in table:
            raise fail(None, f"{name}: kind {kind} needs {key}")
    description = table.get("description", name)
    if not isinstance(description, str):
        raise fail("description", f"{name}: description must be a string")

    def number(key: str) -> float | None:
        value = table.get(key)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
            raise fail(key, f"{name}: {key} must be a positive number, not {value!r}")
        return float(value)

    objective = number("objective")
    if objective is not None and not 0 < objective < 100:
        raise fail("objective", f"{name}: objective is a percentage below 100, e.g. 99.9")
    threshold = number("threshold_seconds")
    if threshold is not None:
        buckets = HTTP_BUCKETS if kind == "latency" else APPLY_BUCKETS
        if threshold not in buckets:
            raise fail(
                "threshold_seconds",
                f"{name}: threshold_seconds {threshold:g} is not a "
                f"histogram bucket; pick one of {', '.join(f'{b:g}' for b in buckets)}",
            )
    routes = table.get("routes")
    if routes is not None:
        if not isinstance(routes, str) or not routes.startswith("/") or '"' in routes:
            raise fail(
                "routes", f'{name}: routes is a regex over route templates, e.g. "/webhooks/.*"'
            )
        try:
            re.compile(routes)
        except re.error as exc:
            raise fail("routes", f"{name}: routes is not a valid regex ({exc})") from None
    lists: dict[str, list[str]] = {}
    for key in ("jobs", "exclude"):
        value = table.get(key, [])
        if not isinstance(value, list) or not all(isinstance(j, str) for j in value):
            raise fail(key, f'{name}: {key} is a list of job names, e.g. ["dunning"]')
        for job in value:
            if job not in job_names:
                raise fail(key, f"{name}: no job named {job!r}; `faithflow jobs list` names them")
        lists[key] = value
    factor = number("factor")
    max_age = number("max_age_seconds")
    if kind == "freshness" and factor is None and max_age is None:
        raise fail(None, f"{name}: a freshness objective needs factor or max_age_seconds")
    queue = table.get("queue")
    if queue is not None and queue not in QUEUES:
        raise fail("queue", f"{name}: queue {queue!r} is not one of {', '.join(QUEUES)}")
    return Objective(
        name=name,
        kind=kind,
        description=description,
        objective=objective,
        routes=routes,
        threshold_seconds=threshold,
        jobs=tuple(lists["jobs"]),
        exclude=tuple(lists["exclude"]),
        factor=factor,
        max_age_seconds=max_age,
        queue=queue,
    )


class _Lines:
    """Line numbers for messages: tomllib reports them for syntax errors only, so a key's
    line is found by reading the text (the Nth `[[slo]]` header, then `key =` below it)."""

    def __init__(self, text: str) -> None:
        self.lines = text.splitlines()
        self.headers = [
            i for i, line in enumerate(self.lines) if line.strip().startswith("[[slo]]")
        ]

    def top(self, key: str) -> int:
        end = self.headers[0] if self.headers else len(self.lines)
        for i in range(end):
            if re.match(rf"\s*{re.escape(key)}\s*=", self.lines[i]):
                return i + 1
        return 1

    def header(self, index: int) -> int:
        return self.headers[index] + 1 if index < len(self.headers) else 1

    def key(self, index: int, key: str) -> int:
        if index >= len(self.headers):
            return 1
        start = self.headers[index]
        end = self.headers[index + 1] if index + 1 < len(self.headers) else len(self.lines)
        for i in range(start, end):
            if re.match(rf"\s*{re.escape(key)}\s*=", self.lines[i]):
                return i + 1
        return start + 1


@functools.cache
def schedule_interval(expr: str) -> dt.timedelta:
    """The longest gap between two firings of a cron expression over a sample fortnight: the
    interval a freshness objective multiplies (`0 * * * *` → 1 h, `10 2 * * *` → 1 day)."""
    from cronsim import CronSim

    start = dt.datetime(2026, 1, 5, tzinfo=dt.UTC)  # a Monday
    it = CronSim(expr, start)
    previous = next(it)
    longest = dt.timedelta(0)
    while previous < start + dt.timedelta(days=15):
        current = next(it)
        longest = max(longest, current - previous)
        previous = current
    return longest


def freshness_limits(objective: Objective) -> dict[str, float]:
    """Seconds since the last success beyond which each job of a freshness objective is stale."""
    from faithflow_ops.jobs.registry import JOBS

    limits: dict[str, float] = {}
    for spec in JOBS:
        if not objective.covers(spec.name):
            continue
        if objective.max_age_seconds is not None:
            limits[spec.name] = objective.max_age_seconds
        else:
            assert objective.factor is not None
            seconds = schedule_interval(spec.schedule).total_seconds()
            limits[spec.name] = objective.factor * seconds
    return limits
