"""`POST /tasks/...`: one route per registered job, generated from the registry (DESIGN §4).

A task call is the HTTP face of `faithflow <group> <verb>`: same body fields as the CLI
options (`dry_run`, `now`, `limit`), same runner, same job JSON. Status codes:

- 200 — the run finished: `succeeded`, or `partial` (some actions failed; the job JSON and
  the `X-Job-Status: partial` header say so). The request itself was served, and the failed
  actions are recorded in `job_runs` and retried by the next run, so a scheduler calling us
  must not retry the whole run — alert on the header or the JSON instead.
- 409 — another run of the job holds its lock (`status: skipped`; `lock` names the holder).
- 502 — the run failed because an outside service (Stripe, Paystack…) refused or could not be
  reached (`status: failed`, `failure: provider`): not our bug, logged without a traceback.
- 500 — the run failed as a whole for a reason of ours (`failure: internal`; `error` says why).
- 503 — the job cannot run with this configuration (a setting is missing: `error` names it,
  nothing is recorded), or `INTEGRATION_API_KEY` is not set: task endpoints are never open by
  default.
- 400 bad body (a field and the fix named), 401 missing or wrong key, 413 body too large.

The body takes the fields every job has (`dry_run`, `now`, `limit`) and the job's own options
(`JobSpec.options`, e.g. `provider` and `since` for invoices reconcile), checked by the same
rules as the CLI's flags (`jobs.options.fill`).
"""

from __future__ import annotations

import functools
import hmac
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import structlog
from litestar import Response, post
from litestar.exceptions import ClientException, HTTPException, NotAuthorizedException
from litestar.openapi import ResponseSpec
from litestar.openapi.spec import OpenAPIMediaType, Operation, Reference, RequestBody, Schema
from litestar.openapi.spec.enums import OpenAPIType

from faithflow_ops.clock import shown_value
from faithflow_ops.jobs.runner import FAILED, SKIPPED

try:
    from litestar.params import RawBody as RawBody  # re-exported for receiver.webhooks
except ImportError:  # older litestar 2.x: the reserved `body` kwarg is plain bytes
    RawBody = bytes  # type: ignore[misc,assignment]

if TYPE_CHECKING:
    import datetime as dt

    from litestar.connection import ASGIConnection
    from litestar.handlers import BaseRouteHandler, HTTPRouteHandler

    from faithflow_ops.config import Settings
    from faithflow_ops.db import Database
    from faithflow_ops.jobs.registry import JobSpec
    from faithflow_ops.jobs.runner import RunResult

log = structlog.get_logger("faithflow.receiver")

DISABLED = "task endpoints are disabled: INTEGRATION_API_KEY is not set"
AUTH_HINT = "send Authorization: Bearer <INTEGRATION_API_KEY> or X-API-Key: <INTEGRATION_API_KEY>"
# A failed run's status by its `failure`; a skipped run is 409; anything else (succeeded,
# partial) is 200.
FAILURE_CODES = {"provider": 502, "config": 503, "internal": 500}

OnResult = Callable[["JobSpec", "RunResult"], None]


# ---------------------------------------------------------------------------------------------
# Auth


def _presented_keys(connection: ASGIConnection[Any, Any, Any, Any]) -> list[str]:
    keys = []
    scheme, _, credentials = connection.headers.get("authorization", "").strip().partition(" ")
    if scheme.lower() == "bearer" and credentials.strip():
        keys.append(credentials.strip())
    if api_key := connection.headers.get("x-api-key", "").strip():
        keys.append(api_key)
    return keys


def api_key_guard(settings: Settings) -> Callable[[ASGIConnection[Any, Any, Any, Any], Any], None]:
    """A guard comparing the presented key with INTEGRATION_API_KEY in constant time."""
    expected = (settings.integration_api_key or "").encode()

    def guard(connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler) -> None:
        if not expected:
            log.warning("task call refused", path=connection.url.path, reason=DISABLED)
            raise HTTPException(status_code=503, detail=DISABLED)
        keys = _presented_keys(connection)
        # Compare every presented key (no early exit) so timing says nothing about which failed.
        matches = [hmac.compare_digest(key.encode(), expected) for key in keys]
        if any(matches):
            return
        reason = "invalid API key" if keys else "missing API key"
        client = connection.client.host if connection.client else None
        log.warning("task call refused", path=connection.url.path, reason=reason, client=client)
        raise NotAuthorizedException(
            detail=f"{reason}; {AUTH_HINT}",
            headers={"WWW-Authenticate": 'Bearer realm="faithflow-tasks"'},
        )

    return guard


# ---------------------------------------------------------------------------------------------
# Body

FIELDS = ("dry_run", "now", "limit")  # and the job's own options
MAX_LIMIT = 1_000_000_000  # a database LIMIT must fit 64 bits; no run plans more than this
EXAMPLE = '{"dry_run": true, "now": "2026-03-01T09:00:00Z", "limit": 100}'


@dataclass(frozen=True)
class TaskRequest:
    dry_run: bool = False
    now: dt.datetime | None = None  # None: the current time
    limit: int | None = None
    options: dict[str, Any] = field(default_factory=dict)  # the job's own, as sent


def _bad(field: str | None, message: str) -> ClientException:
    return ClientException(detail=message, extra={"field": field, "example": EXAMPLE})


_JSON_TYPES = {
    dict: "object",
    list: "array",
    str: "string",
    int: "number",
    float: "number",
    bool: "boolean",
    type(None): "null",
}


def parse_body(raw: bytes, spec: JobSpec | None = None) -> TaskRequest:
    """Validate a task body; every refusal names the field and how to fix it.

    An empty body means all defaults. `null` for a field means "not given". The job's own
    option fields (`spec.options`) are taken as sent; `options_for` checks them.
    """
    from faithflow_ops.jobs.options import fields_of

    own = tuple(f.name for f in fields_of(spec.options)) if spec is not None else ()
    if not raw.strip():
        return TaskRequest()
    try:
        doc = json.loads(raw)
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        reason = "nested too deeply" if isinstance(exc, RecursionError) else str(exc)
        raise _bad(
            None, f"request body is not valid JSON ({reason}); send an object like {EXAMPLE}"
        ) from None
    if not isinstance(doc, dict):
        raise _bad(
            None,
            f"request body must be a JSON object, not {_JSON_TYPES[type(doc)]}; "
            f"send an object like {EXAMPLE}",
        )
    unknown = sorted(set(doc) - set(FIELDS) - set(own))
    if unknown:
        raise _bad(
            unknown[0],
            f"unknown field {', '.join(map(repr, unknown))}; "
            f"the fields are {', '.join((*FIELDS, *own))}",
        )
    dry_run, now, limit = (doc.get(name) for name in FIELDS)
    if dry_run is not None and not isinstance(dry_run, bool):
        raise _bad("dry_run", f"dry_run must be true or false, not {shown_value(dry_run)}")
    when = None if now is None else _parse_time(now)
    if limit is not None and (
        isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_LIMIT
    ):
        raise _bad(
            "limit",
            f"limit must be a whole number from 1 to {MAX_LIMIT:,}, not {shown_value(limit)}",
        )
    options = {name: doc[name] for name in own if name in doc}
    return TaskRequest(dry_run=bool(dry_run), now=when, limit=limit, options=options)


def _parse_time(value: Any) -> dt.datetime:
    """`now`, by the rule `--now` follows (ISO-8601, 1970–8999)."""
    from faithflow_ops.clock import OutOfRange, parse_instant
    from faithflow_ops.errors import UserError

    try:
        return parse_instant(value, "now")
    except OutOfRange as exc:
        raise _bad("now", str(exc)) from None
    except UserError:
        raise _bad(
            "now",
            'now must be an ISO-8601 time such as "2026-03-01T09:00:00Z", '
            f"not {shown_value(value)}",
        ) from None


@functools.cache  # a class per app made the dataclass anew: 30 % of create_app
def _operation_class(spec: JobSpec) -> type[Operation]:
    """The OpenAPI operation of one task: the common body fields and the job's own options
    (the handler reads the raw body itself, so the messages for bad input are ours)."""
    from faithflow_ops.jobs.options import fields_of

    properties: dict[str, Reference | Schema] = {
        "dry_run": Schema(
            type=OpenAPIType.BOOLEAN, default=False, description="Plan only (the preview)."
        ),
        "now": Schema(
            type=OpenAPIType.STRING,
            description="Run as if it were this ISO-8601 time (1970 to 8999).",
            examples=["2026-03-01T09:00:00Z"],
        ),
        "limit": Schema(
            type=OpenAPIType.INTEGER,
            minimum=1,
            maximum=MAX_LIMIT,
            description="Stop after planning this many actions.",
        ),
    }
    for f in fields_of(spec.options):
        kind = f.info.kind
        properties[f.name] = Schema(
            type={"bool": OpenAPIType.BOOLEAN, "int": OpenAPIType.INTEGER}.get(
                kind, OpenAPIType.STRING
            ),
            enum=list(f.info.choices) or None,
            minimum=f.info.minimum,
            maximum=f.info.maximum,
            description=f.info.help,
        )

    @dataclass
    class TaskOperation(Operation):
        def __post_init__(self) -> None:
            self.request_body = RequestBody(
                required=False,
                description="All fields optional; an empty body runs the job now, for real.",
                content={
                    "application/json": OpenAPIMediaType(
                        schema=Schema(
                            type=OpenAPIType.OBJECT,
                            additional_properties=False,
                            properties=properties,
                        )
                    )
                },
            )

    return TaskOperation


# ---------------------------------------------------------------------------------------------
# Routes

RESPONSES = {
    code: ResponseSpec(data_container=dict[str, Any], description=text, generate_examples=False)
    for code, text in {
        400: "The body is invalid; `error` names the field and the fix.",
        401: "Missing or wrong API key.",
        409: "Another run holds the job's lock: the job JSON with `status: skipped` and `lock`.",
        413: "The body is over the size limit.",
        500: "The run failed for a reason of ours: the job JSON with `status: failed`, "
        "`failure: internal` and `error`.",
        502: "An outside service refused or could not be reached: the job JSON with "
        "`status: failed`, `failure: provider` and `error`.",
        503: "A setting the job needs is missing (`error` names it), or INTEGRATION_API_KEY is "
        "not set, so task endpoints are disabled.",
    }.items()
}


def run_task(
    db: Database, settings: Settings, spec: JobSpec, raw: bytes, on_result: OnResult | None = None
) -> Response[dict[str, Any]]:
    """Parse the body, run the job through the shared runner, answer with the job JSON."""
    from faithflow_ops.db import utcnow
    from faithflow_ops.errors import ConfigError, UserError
    from faithflow_ops.jobs.base import JobContext
    from faithflow_ops.jobs.options import OptionError, fill
    from faithflow_ops.jobs.runner import run_job

    request = parse_body(raw, spec)
    now = request.now or utcnow()
    try:
        options = fill(spec.options, request.options, now, "json")
    except OptionError as exc:
        raise _bad(exc.field, str(exc)) from None
    ctx = JobContext(
        now=now,
        dry_run=request.dry_run,
        trigger="http",
        settings=settings,
        limit=request.limit,
        actor="http",
        options=options,
    )
    try:
        result = run_job(db, spec, ctx)
    except ConfigError as exc:  # refused before it started; nothing recorded
        log.warning("task refused", job=spec.name, error=str(exc))
        raise HTTPException(status_code=503, detail=str(exc)) from None
    except UserError as exc:
        raise _bad(None, str(exc)) from None
    if on_result is not None:
        on_result(spec, result)
    status = 200
    if result.status == SKIPPED:
        status = 409
    elif result.status == FAILED:
        status = FAILURE_CODES[result.failure or "internal"]
    return Response(result.to_dict(), status_code=status, headers={"X-Job-Status": result.status})


def task_handlers(
    jobs: Sequence[JobSpec], db: Database, settings: Settings, on_result: OnResult | None = None
) -> list[HTTPRouteHandler]:
    """One `POST <task_path>` per job spec."""
    guard = api_key_guard(settings)

    def handler_for(spec: JobSpec) -> HTTPRouteHandler:
        def handler(body: RawBody) -> Response[dict[str, Any]]:
            return run_task(db, settings, spec, body, on_result)

        return post(
            spec.task_path,
            guards=[guard],
            sync_to_thread=True,
            name=f"task:{spec.name}",
            operation_id=f"run_{spec.name}",
            summary=spec.summary,
            description=(
                f"Runs `{spec.name}` like `{spec.cli_command}` (default schedule "
                f"`{spec.schedule}`, override with `{spec.cron_variable}`). Answers with the job "
                "JSON: 200 succeeded or partial, 409 when another run holds the lock, "
                "502 when an outside service failed it, 500 when it failed otherwise."
            ),
            tags=["tasks"],
            status_code=200,
            operation_class=_operation_class(spec),
            security=[{"bearer": []}, {"apiKey": []}],
            responses=RESPONSES,
        )(handler)

    return [handler_for(spec) for spec in jobs]
