"""`faithflow jobs …` and the generated per-job commands (`faithflow subs backfill`, …)."""

from __future__ import annotations

import functools
import gc
import inspect
import sys
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Annotated, Any

import typer

from faithflow_ops.cli import output
from faithflow_ops.cli.common import JsonOpt, actor, database, parse_now, settings
from faithflow_ops.errors import UserError, one_of
from faithflow_ops.jobs import registry

if TYPE_CHECKING:
    from faithflow_ops.jobs.base import ActionResult, Job
    from faithflow_ops.jobs.options import OptionField
    from faithflow_ops.jobs.registry import JobSpec
    from faithflow_ops.jobs.runner import RunResult

app = typer.Typer(
    rich_markup_mode=None,
    help="List jobs, their schedules and their past runs; run any job by name.",
    no_args_is_help=True,
)

DryRunOpt = Annotated[
    bool, typer.Option("--dry-run", "--preview", help="Plan only: print what would be done.")
]
NowOpt = Annotated[
    str | None,
    typer.Option(
        "--now", help="Run as if it were this time (ISO-8601, e.g. 2026-03-01T09:00:00Z)."
    ),
]
LimitOpt = Annotated[
    int | None,
    typer.Option(
        "--limit", min=1, max=1_000_000_000, help="Stop after planning this many actions."
    ),
]

TABLE_ROWS = 200  # a terminal table shows this many actions; --json has them all


class _Bar:
    """A Rich progress bar on stderr, shown only on a terminal."""

    def __init__(self, label: str) -> None:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

        self._progress = Progress(
            "[progress.description]{task.description}",
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=output.stderr_console(),
            transient=True,
        )
        self._label = label
        self._task: Any = None

    def __enter__(self) -> _Bar:
        self._progress.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self._progress.__exit__(None, None, None)

    def start(self, total: int | None) -> None:
        self._task = self._progress.add_task(self._label, total=total)

    def advance(self, n: int) -> None:
        if self._task is not None:
            self._progress.advance(self._task, n)


def execute(
    spec: JobSpec,
    *,
    dry_run: bool,
    now: str | None,
    as_json: bool,
    limit: int | None,
    options: Mapping[str, Any] | None = None,
) -> None:
    """Run one job from the CLI and render it; exits with the job contract's code.

    `options` are the job's own (`JobSpec.options`) as the command line gave them."""
    if limit is not None and limit < 1:
        raise UserError(f"--limit {limit} must be 1 or more")
    # The imports here (runner, models, database driver, the job) make ~100,000 objects that
    # live as long as the process: no collections while they load, then out of the collector's
    # scans, as main() does for the CLI itself (a 100,000-assignment volunteers preview spent a
    # fifth of its CPU time in gc, rescanning them as the plan grew). Frozen once per process:
    # a host that runs many jobs (the tests, in one process) must not freeze its garbage too.
    gc.disable()
    try:
        from faithflow_ops.jobs.base import JobContext
        from faithflow_ops.jobs.options import fill
        from faithflow_ops.jobs.runner import Terminated, run_job, stop_on_signals

        cfg = settings()
        when = parse_now(now)
        db = database(cfg)
        job = spec.load()
    finally:
        _freeze_once()
        gc.enable()
    bar = _Bar(spec.name) if output.is_terminal() and not as_json else None
    ctx = JobContext(
        now=when,
        dry_run=dry_run,
        trigger="cli",
        settings=cfg,
        limit=limit,
        actor=actor(),
        progress=bar,
        options=fill(spec.options, options or {}, when, "cli"),
    )
    # SIGTERM (cron, Render on shutdown) and Ctrl-C stop the run cleanly: recorded as failed,
    # lease released, exit 143 / 130 (runner.stop_on_signals).
    try:
        with stop_on_signals():
            if as_json:
                result = _run_streaming_json(db, spec, ctx, job)
            else:
                shown: list[ActionResult] = []

                def keep(item: ActionResult) -> None:
                    if len(shown) < TABLE_ROWS:
                        shown.append(item)

                if bar is not None:
                    with bar:
                        result = run_job(
                            db, spec, ctx, on_action=keep, collect_actions=False, job=job
                        )
                else:
                    result = run_job(db, spec, ctx, on_action=keep, collect_actions=False, job=job)
                render_run(result, shown, type(job))
    except Terminated as exc:  # before the run was recorded, or after it was
        output.abort(f"{spec.name}: {exc}", exc.exit_code)
    for warning in result.warnings:
        output.warn(warning)
    if result.status == "skipped":
        output.abort(result.error or "already running", 75)
    raise typer.Exit(result.exit_code)


def _run_streaming_json(db: Any, spec: JobSpec, ctx: Any, job: Any) -> RunResult:
    """Stream the job document: actions are written as they are planned, so memory stays flat
    however many there are; the summary fields follow once the run has finished."""
    from faithflow_ops.jobs.runner import run_job

    out = sys.stdout
    first = True
    reader_gone = False

    def emit(text: str) -> None:
        # A reader that went away (`| head`) must not fail the run: the work goes on, and
        # only the output stops.
        nonlocal reader_gone
        if reader_gone:
            return
        try:
            out.write(text)
        except BrokenPipeError:
            reader_gone = True

    def write(item: ActionResult) -> None:
        nonlocal first
        emit(("\n  " if first else ",\n  ") + output.dumps(item.to_dict()))
        first = False

    emit('{"actions": [')
    result = run_job(db, spec, ctx, on_action=write, collect_actions=False, job=job)
    emit("\n]" if not first else "]")
    for key, value in result.summary().items():
        emit(f",\n{output.dumps(key)}: {output.dumps(value)}")
    emit("}\n")
    try:
        out.flush()
    except BrokenPipeError:
        reader_gone = True
    if reader_gone:
        output.silence_stdout()
    return result


def render_run(
    result: RunResult, shown: list[ActionResult], layout: type[Job] | None = None
) -> None:
    """A run on a terminal: a table of (up to TABLE_ROWS) actions, then a counts line.

    The job's class decides the columns and rows (`Job.table_rows`); a run adds each action's
    outcome.
    """
    from faithflow_ops.jobs.base import Job

    job = layout or Job
    total = sum(result.counts.values())
    if shown:
        columns = [*job.table_columns] + ([] if result.dry_run else ["outcome"])
        rows = []
        for item in shown:
            for n, cells in enumerate(job.table_rows(item.action)):
                row: list[Any] = list(cells)
                if not result.dry_run:
                    outcome = item.outcome if not item.error else f"{item.outcome}: {item.error}"
                    row.append(outcome if n == 0 else "")
                rows.append(row)
        mode = "preview" if result.dry_run else "run"
        output.table(columns, rows, title=f"{result.job} {mode} at {result.now.isoformat()}")
        if total > len(shown):
            output.info(f"… and {total - len(shown)} more actions; use --json to see them all")
    counts = ", ".join(f"{k}={v}" for k, v in sorted(result.counts.items())) or "nothing to do"
    verb = "would do" if result.dry_run else "did"
    line = f"{result.job}: {result.status}; {verb}: {counts}"
    if not result.dry_run and result.outcomes:
        line += " (" + ", ".join(f"{k}={v}" for k, v in sorted(result.outcomes.items())) + ")"
    if result.run_id is not None:
        line += f" [run {result.run_id}]"
    output.info(line)
    if result.error and result.status != "skipped":
        output.error(result.error)


def add_job_command(group: typer.Typer, spec: JobSpec) -> None:
    """Register `faithflow <group> <verb>` for a job, with the options every job has and the
    job's own (`JobSpec.options`), and its preview alias `<group> <preview_verb>`."""
    where = (
        f"Schedule: {spec.schedule} (override with {spec.cron_variable}); "
        f"also POST {spec.task_path}."
    )
    run_doc = (
        f"{spec.summary}.\n\nPreview with --dry-run (or `{spec.cli_group} {spec.preview_verb}`) "
        "first. Runs under the job's lock (exit 75 when another run holds it). " + where
    )
    preview_doc = (
        f"What `{spec.cli_command}` would do now, changing nothing "
        f"(= `{spec.cli_command} --dry-run`).\n\n{spec.preview_detail} {where}"
    ).replace("\n\n ", "\n\n")
    group.command(spec.cli_verb)(_job_command(spec, run_doc, preview=False))
    if not any(c.name == spec.preview_verb for c in group.registered_commands):
        group.command(spec.preview_verb)(_job_command(spec, preview_doc, preview=True))


def _job_command(spec: JobSpec, doc: str, *, preview: bool) -> Callable[..., None]:
    """A Typer command whose parameters are the common options plus the job's own: Typer reads
    `__signature__` and `__annotations__`, so the flags come from the one declaration."""
    from faithflow_ops.jobs.options import fields_of

    own = fields_of(spec.options)

    def command(**kwargs: Any) -> None:
        dry_run = True if preview else kwargs.pop("dry_run")
        execute(
            spec,
            dry_run=dry_run,
            now=kwargs.pop("now"),
            as_json=kwargs.pop("as_json"),
            limit=kwargs.pop("limit"),
            options=kwargs,
        )

    common: dict[str, Any] = {"now": NowOpt, "as_json": JsonOpt, "limit": LimitOpt}
    if not preview:
        common = {"dry_run": DryRunOpt, **common}
    defaults = {"dry_run": False, "now": None, "as_json": False, "limit": None}
    keyword = inspect.Parameter.KEYWORD_ONLY
    params = [
        inspect.Parameter(name, keyword, default=defaults[name], annotation=annotation)
        for name, annotation in common.items()
    ]
    for f in own:
        params.append(
            inspect.Parameter(f.name, keyword, default=None, annotation=_option_annotation(f))
        )
    command.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
    command.__annotations__ = {p.name: p.annotation for p in params}
    command.__doc__ = doc
    return command


def _option_annotation(f: OptionField) -> Any:
    """How Typer reads one job option: every value arrives as given (a string, or an int or a
    flag) and `jobs.options.fill` checks it, the same check the task body gets."""
    help_text = f.info.help
    if f.info.choices:
        help_text += f" One of: {', '.join(f.info.choices)}."
    if f.info.kind == "bool":
        return Annotated[bool | None, typer.Option(f"{f.flag}/--no-{f.flag[2:]}", help=help_text)]
    if f.info.kind == "int":
        return Annotated[int | None, typer.Option(f.flag, help=help_text)]
    return Annotated[str | None, typer.Option(f.flag, help=help_text)]


def _parse_assignments(spec: JobSpec, pairs: list[str]) -> dict[str, Any]:
    """`--option NAME=VALUE` pairs for `jobs run`/`jobs preview`, by the job's declaration."""
    from faithflow_ops.jobs.options import fields_of

    own = {f.name: f for f in fields_of(spec.options)}
    values: dict[str, Any] = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        key = name.strip().lstrip("-").replace("-", "_")
        if not sep or key not in own:
            known = ", ".join(f"{n}=…" for n in own) or "none"
            raise UserError(
                f"--option {pair!r} is not NAME=VALUE for one of {spec.name}'s options "
                f"(its options: {known})"
            )
        kind = own[key].info.kind
        if kind == "int":
            try:
                values[key] = int(value)
            except ValueError:
                raise UserError(f"--option {pair!r}: {key} must be a whole number") from None
        elif kind == "bool":
            values[key] = value.strip().lower() in ("1", "true", "yes", "on")
        else:
            values[key] = value
    return values


@app.command("list")
def list_jobs(as_json: JsonOpt = False) -> None:
    """Every registered job: schedule, what it means, next run, CLI command, task path."""
    from faithflow_ops.scheduler import describe_schedule, next_run

    cfg = settings()
    now = parse_now(None)
    rows = []
    for spec in registry.JOBS:
        expr = registry.schedule_for(spec, cfg.cron_overrides)
        rows.append(
            {
                "name": spec.name,
                "schedule": expr,
                "explanation": describe_schedule(expr),
                "next_run": next_run(expr, now).isoformat(),
                "cli": spec.cli_command,
                "task_path": spec.task_path,
                "cron_variable": spec.cron_variable,
                "summary": spec.summary,
            }
        )
    if as_json:
        output.print_json(rows)
        return
    output.table(
        ["name", "schedule", "meaning", "next run (UTC)", "CLI", "task"],
        [
            [r["name"], r["schedule"], r["explanation"], r["next_run"], r["cli"], r["task_path"]]
            for r in rows
        ],
    )


@functools.cache
def _freeze_once() -> None:
    gc.freeze()


RUN_STATUSES = ("running", "succeeded", "partial", "failed", "skipped", "abandoned")


@app.command("runs")
def runs(
    job: Annotated[str | None, typer.Option("--job", help="Only this job.")] = None,
    status: Annotated[
        str | None,
        typer.Option(
            "--status",
            help="running, succeeded, partial, failed, skipped or abandoned (its process died "
            "holding the lease; the next run closed it).",
        ),
    ] = None,
    limit: Annotated[int, typer.Option("--limit", min=1, help="How many, newest first.")] = 20,
    as_json: JsonOpt = False,
) -> None:
    """Past runs from job_runs, newest first."""
    from sqlalchemy import select

    from faithflow_ops.models import JobRun

    if status is not None:
        one_of("--status", status, RUN_STATUSES)
    name = registry.get(job).name if job else None
    with database().read_session() as session:
        query = select(JobRun).order_by(JobRun.started_at.desc(), JobRun.id.desc()).limit(limit)
        if name:
            query = query.where(JobRun.job == name)
        if status:
            query = query.where(JobRun.status == status)
        found = session.scalars(query).all()
        docs: list[dict[str, Any]] = [
            {
                "id": r.id,
                "job": r.job,
                "trigger": r.trigger,
                "dry_run": r.dry_run,
                "status": r.status,
                "now": r.now,
                "started_at": r.started_at,
                "finished_at": r.finished_at,
                "counts": r.counts,
                "failed_actions": r.failed_actions,
                "error": r.error,
            }
            for r in found
        ]
    if output.empty(docs, "job run", as_json=as_json):
        return
    if as_json:
        output.print_json(docs)
        return
    output.table(
        ["id", "job", "trigger", "dry run", "status", "started", "counts", "error"],
        [
            [
                d["id"],
                d["job"],
                d["trigger"],
                d["dry_run"],
                d["status"],
                d["started_at"],
                ", ".join(f"{k}={v}" for k, v in d["counts"].items()) or "—",
                d["error"],
            ]
            for d in docs
        ],
    )


OptionsOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--option",
        "-o",
        metavar="NAME=VALUE",
        help="One of the job's own options (as its command's flags, e.g. -o provider=stripe); "
        "repeat for more.",
    ),
]


JobNameArg = Annotated[str, typer.Argument(help="Job name, as in `faithflow jobs list`.")]


@app.command("run")
def run(
    name: JobNameArg,
    dry_run: DryRunOpt = False,
    now: NowOpt = None,
    as_json: JsonOpt = False,
    limit: LimitOpt = None,
    option: OptionsOpt = None,
) -> None:
    """Run any job by name, with the same options as its own command."""
    spec = registry.get(name)
    options = _parse_assignments(spec, option or [])
    execute(spec, dry_run=dry_run, now=now, as_json=as_json, limit=limit, options=options)


@app.command("preview")
def preview(
    name: JobNameArg,
    now: NowOpt = None,
    as_json: JsonOpt = False,
    limit: LimitOpt = None,
    option: OptionsOpt = None,
) -> None:
    """What any job would do now, changing nothing (= `jobs run NAME --dry-run`)."""
    run(name, dry_run=True, now=now, as_json=as_json, limit=limit, option=option)


@app.command("crontab")
def crontab(
    log_dir: Annotated[
        str, typer.Option("--log-dir", help="Where each job's cron log goes.")
    ] = "/var/log/faithflow",
) -> None:
    """Print a crontab with every job at its default schedule (as in crontab.example)."""
    from faithflow_ops.deploy import crontab_text

    sys.stdout.write(crontab_text(log_dir))


@app.command("render-yaml")
def render_yaml() -> None:
    """Print the Render blueprint: the receiver plus one cron job per registered job."""
    from faithflow_ops.deploy import render_yaml as text

    sys.stdout.write(text())
