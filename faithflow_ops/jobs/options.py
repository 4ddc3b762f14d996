"""A job's own options (DESIGN §2): one frozen dataclass per job, declared once.

The CLI turns its fields into flags (`--provider`), the task endpoint into body fields
(`"provider"`, documented in the OpenAPI schema), and the scheduler runs with the defaults. All
three fill it through `fill`, so a value is checked by one rule whatever door it came through;
the job reads it typed from `JobContext.options`.

Kept light (imported by the registry, which `faithflow --help` reads): dataclasses only.

    @dataclass(frozen=True)
    class InvoicesReconcileOptions:
        provider: str | None = option(help="Only stripe or only paystack.",
                                      choices=("stripe", "paystack"))
        since: dt.datetime | None = option(help="Start of the window.", kind="since")
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from faithflow_ops.errors import UserError

Kind = Literal["text", "choice", "since", "time", "int", "bool"]
Style = Literal["cli", "json"]  # how a field is named in messages: --since or "since"


@dataclass(frozen=True)
class OptionInfo:
    help: str
    kind: Kind = "text"
    choices: tuple[str, ...] = ()
    minimum: int | None = None
    maximum: int | None = None


@dataclass(frozen=True)
class OptionField:
    """One declared option, as the CLI and the OpenAPI schema describe it."""

    name: str
    info: OptionInfo
    default: Any

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")

    def label(self, style: Style) -> str:
        return self.flag if style == "cli" else self.name


class OptionError(UserError):
    """A bad option value; `field` names it as the caller gave it (flag or body field)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


def option(
    default: Any = None,
    *,
    help: str,
    kind: Kind | None = None,
    choices: tuple[str, ...] = (),
    minimum: int | None = None,
    maximum: int | None = None,
) -> Any:
    """A dataclass field declaring one option (kind "choice" when `choices` are given)."""
    info = OptionInfo(
        help=help,
        kind=kind or ("choice" if choices else "text"),
        choices=choices,
        minimum=minimum,
        maximum=maximum,
    )
    return dataclasses.field(default=default, metadata={"option": info})


@dataclass(frozen=True)
class NoOptions:
    """The options of a job that has none beyond the common ones."""


def fields_of(cls: type[Any]) -> tuple[OptionField, ...]:
    return tuple(
        OptionField(f.name, f.metadata["option"], f.default)
        for f in dataclasses.fields(cls)
        if "option" in f.metadata
    )


def fill(cls: type[Any], values: Mapping[str, Any], now: dt.datetime, style: Style) -> Any:
    """An options instance from raw values (CLI strings or JSON values; None = not given).

    Raises OptionError naming the field and the fix. Unknown names are the caller's check.
    """
    from faithflow_ops.clock import parse_instant, parse_since, shown_value

    given: dict[str, Any] = {}
    for f in fields_of(cls):
        value = values.get(f.name)
        if value is None:
            continue
        label, info = f.label(style), f.info
        try:
            if info.kind == "since":
                value = parse_since(value, now, label)
            elif info.kind == "time":
                value = parse_instant(value, label)
        except UserError as exc:
            raise OptionError(f.name, str(exc)) from None
        if info.kind == "choice" and value not in info.choices:
            shown = repr(value) if isinstance(value, str) else shown_value(value)
            raise OptionError(f.name, f"{label} {shown} is not one of: {', '.join(info.choices)}")
        if info.kind == "text" and not isinstance(value, str):
            raise OptionError(f.name, f"{label} must be a string, not {shown_value(value)}")
        if info.kind == "bool" and not isinstance(value, bool):
            raise OptionError(f.name, f"{label} must be true or false, not {shown_value(value)}")
        if info.kind == "int":
            low = info.minimum if info.minimum is not None else -(2**63)
            high = info.maximum if info.maximum is not None else 2**63 - 1
            if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
                raise OptionError(
                    f.name, f"{label} must be a whole number from {low:,} to {high:,}, "
                    f"not {shown_value(value)}"
                )  # fmt: skip
        given[f.name] = value
    return cls(**given)


# ---------------------------------------------------------------------------------------------
# The jobs' options (declared here, beside the registry that names them, so the CLI and the
# OpenAPI schema need not import a job to describe it).

PROVIDERS = ("stripe", "paystack")


@dataclass(frozen=True)
class InvoicesReconcileOptions:
    provider: str | None = option(
        help="Only stripe or only paystack (default: every configured one).", choices=PROVIDERS
    )
    since: dt.datetime | None = option(
        help="Start of the window: a duration back from --now (35d, 24h) or an ISO-8601 "
        "date/time (default: 35 days before --now).",
        kind="since",
    )


@dataclass(frozen=True)
class VolunteerGapOptions:
    horizon_days: int = option(
        14,
        help="Look at events starting within this many days of --now (default 14).",
        kind="int",
        minimum=1,
        maximum=90,
    )


@dataclass(frozen=True)
class SecurityEnforceOptions:
    grace_days: int = option(
        7,
        help="Days staff warned to enrol in MFA have before they are disabled (default 7).",
        kind="int",
        minimum=0,
        maximum=90,
    )


def _days(what: str, variable: str, default: int) -> Any:
    return option(
        help=f"Days {what} (default: {variable}, else {default}).",
        kind="int",
        minimum=7,
        maximum=3650,
    )


@dataclass(frozen=True)
class RetentionOptions:
    # The platform defaults for this run; None = the settings (FAITHFLOW_RETENTION_<CLASS>_DAYS).
    # A tenant's own data retention (`tenants policy set --retention-days`) overrides the
    # tenant-owned classes for its rows.
    ticket_days: int | None = _days(
        "after closing before a ticket's requester is anonymised",
        "FAITHFLOW_RETENTION_SUPPORT_TICKETS_DAYS",
        365,
    )
    message_days: int | None = _days(
        "finished outbox messages keep their bodies",
        "FAITHFLOW_RETENTION_OUTBOUND_MESSAGES_DAYS",
        90,
    )
    webhook_days: int | None = _days(
        "finished webhook events keep their bodies", "FAITHFLOW_RETENTION_WEBHOOK_PAYLOADS_DAYS", 90
    )
    job_run_days: int | None = _days(
        "job runs are kept (each job's newest always is)", "FAITHFLOW_RETENTION_JOB_RUNS_DAYS", 90
    )
    health_days: int | None = _days(
        "health check results are kept (each check's newest always is)",
        "FAITHFLOW_RETENTION_HEALTH_CHECKS_DAYS",
        90,
    )
    deleted_tenant_days: int | None = _days(
        "after a tenant's deletion before all its data is purged",
        "FAITHFLOW_RETENTION_DELETED_TENANTS_DAYS",
        30,
    )
    data_class: str | None = option(
        help="Only this data class.",
        choices=(
            "support_tickets",
            "outbound_messages",
            "webhook_payloads",
            "job_runs",
            "health_checks",
            "deleted_tenants",
        ),
    )
    batch_size: int | None = option(
        help="Rows per batch, one transaction each (default: FAITHFLOW_RETENTION_BATCH_SIZE, "
        "else 5000).",
        kind="int",
        minimum=1,
        maximum=100_000,
    )
