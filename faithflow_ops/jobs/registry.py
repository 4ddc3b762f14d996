"""Every scheduled job, its default schedule and where it is reachable — the whole schedule in
one place (STYLE 2). Read by the CLI, the receiver's task routes, the scheduler,
`faithflow jobs list`, crontab.example and render.yaml.

Kept free of heavy imports: a job's code is imported only when it runs (`JobSpec.load`).
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from faithflow_ops.errors import ConfigError, UserError
from faithflow_ops.jobs.options import (
    InvoicesReconcileOptions,
    NoOptions,
    RetentionOptions,
    SecurityEnforceOptions,
    VolunteerGapOptions,
)

if TYPE_CHECKING:
    from faithflow_ops.jobs.base import Job


@dataclass(frozen=True)
class JobSpec:
    name: str  # snake_case; CRON_<NAME> overrides the schedule
    summary: str
    cli_group: str
    cli_verb: str
    task_path: str
    schedule: str
    module: str
    lease_seconds: int = 600
    # The job's own options (jobs/options.py): CLI flags, task body fields, scheduler defaults.
    options: type[Any] = NoOptions
    # `faithflow <group> <preview_verb>` = `<cli_verb> --dry-run` (a group with two jobs names
    # each preview after its job).
    preview_verb: str = "preview"
    preview_detail: str = ""  # what the preview shows, for its --help

    @property
    def cron_variable(self) -> str:
        return f"CRON_{self.name.upper()}"

    @property
    def cli_command(self) -> str:
        return f"faithflow {self.cli_group} {self.cli_verb}"

    def load(self) -> Job:
        job: Job = importlib.import_module(self.module).JOB
        return job


JOBS: tuple[JobSpec, ...] = (
    JobSpec(
        name="subscription_metadata_backfill",
        summary="Normalise provider customer/subscription ids from historical metadata",
        cli_group="subs",
        cli_verb="backfill",
        task_path="/tasks/subscriptions/metadata-backfill",
        schedule="10 2 * * *",
        module="faithflow_ops.jobs.subs_backfill",
        preview_verb="preview-backfill",
    ),
    JobSpec(
        name="subscriptions_automate",
        summary="Trial notices, past due, suspension for non-payment, cancellations, plan changes",
        cli_group="subs",
        cli_verb="automate",
        task_path="/tasks/subscriptions/automate",
        schedule="*/30 * * * *",
        module="faithflow_ops.jobs.subs_automate",
        preview_verb="preview-automate",
    ),
    JobSpec(
        name="invoices_reconcile",
        summary="Compare provider invoices with ours; import missing ones, take paid statuses",
        cli_group="invoices",
        cli_verb="reconcile",
        task_path="/tasks/invoices/reconcile",
        schedule="17 * * * *",
        module="faithflow_ops.jobs.invoices_reconcile",
        options=InvoicesReconcileOptions,
    ),
    JobSpec(
        name="disputes_monitor",
        summary="Pull disputes from Stripe and Paystack; alert before evidence is due",
        cli_group="disputes",
        cli_verb="monitor",
        task_path="/tasks/disputes/monitor",
        schedule="0 * * * *",
        module="faithflow_ops.jobs.disputes_monitor",
    ),
    JobSpec(
        name="dunning",
        summary="Past-due recovery ladder: reminders by email/SMS/WhatsApp, payment retries",
        cli_group="dunning",
        cli_verb="run",
        task_path="/tasks/subscriptions/dunning",
        schedule="*/15 * * * *",
        module="faithflow_ops.jobs.dunning_run",
        preview_detail="Per open case: tenant, amount, days past due, the step now due, its "
        "channels (blocked ones with the reason), the send time after quiet hours and the "
        "20-hour window, and why anything is held back; also payment retries, hand-overs, and "
        "cases to open or close.",
    ),
    JobSpec(
        name="communications_dispatch",
        summary="Send due outbox messages (SMTP, Twilio SMS/WhatsApp) with retries",
        cli_group="comms",
        cli_verb="dispatch",
        task_path="/tasks/communications/dispatch",
        schedule="* * * * *",
        module="faithflow_ops.jobs.comms_dispatch",
        lease_seconds=300,
    ),
    JobSpec(
        name="tenant_ops_automate",
        summary="Tenant domains: verify DNS, serve at the edge, watch certificates, fail over",
        cli_group="domains",
        cli_verb="automate",
        task_path="/tasks/tenant-ops/automate",
        schedule="*/15 * * * *",
        module="faithflow_ops.jobs.domains_automate",
        preview_detail="Every due domain with its DNS and TLS results and the transition it "
        "would make.",
    ),
    JobSpec(
        name="incidents_escalate",
        summary="Send incidents to ALERT_WEBHOOK_URL, page PagerDuty when unacknowledged",
        cli_group="incidents",
        cli_verb="escalate",
        task_path="/tasks/incidents/escalate",
        schedule="* * * * *",
        module="faithflow_ops.jobs.incidents_escalate",
        lease_seconds=300,
    ),
    JobSpec(
        name="webhooks_apply",
        summary="Apply stored webhook deliveries (catch-up, or all of it with the worker off)",
        cli_group="webhooks",
        cli_verb="apply",
        task_path="/tasks/webhooks/apply",
        schedule="* * * * *",
        module="faithflow_ops.jobs.webhooks_apply",
        lease_seconds=300,
    ),
    JobSpec(
        name="support_sla_sweep",
        summary="Mark SLA breaches when they happen, warn before them, e-mail each agent a digest",
        cli_group="sla",
        cli_verb="sweep",
        task_path="/tasks/support/sla",
        schedule="*/5 * * * *",
        module="faithflow_ops.jobs.sla_sweep",
        lease_seconds=300,
    ),
    JobSpec(
        name="health_sweep",
        summary="Health checks: database, DNS, SMTP, provider APIs, job freshness, backlogs",
        cli_group="health",
        cli_verb="sweep",
        task_path="/tasks/health/sweep",
        schedule="*/5 * * * *",
        module="faithflow_ops.jobs.health_sweep",
        lease_seconds=300,
    ),
    JobSpec(
        name="volunteer_reminders",
        summary="Remind volunteers before they serve: one message a day, 10:00 local time",
        cli_group="volunteers",
        cli_verb="remind",
        task_path="/tasks/volunteers/reminders",
        schedule="0 * * * *",
        module="faithflow_ops.jobs.volunteer_reminders",
        preview_verb="preview-remind",
        preview_detail="Per volunteer and local day: the assignments condensed into one "
        "reminder (pending ones ask to accept or decline), the channel and the send time; and "
        "assignments whose person is blocked out (their leaders are told instead).",
    ),
    JobSpec(
        name="volunteer_gap_alerts",
        summary="Alert team leaders to unfilled positions 7, 3 and 1 days before an event",
        cli_group="volunteers",
        cli_verb="gaps",
        task_path="/tasks/volunteers/gap-alerts",
        schedule="30 * * * *",
        module="faithflow_ops.jobs.volunteer_gap_alerts",
        options=VolunteerGapOptions,
        preview_verb="preview-gaps",
        preview_detail="Per position short of confirmed people: needed, confirmed, tentative "
        "(pending), the gap and the threshold reached; and filled gaps to close.",
    ),
    JobSpec(
        name="security_enforce",
        summary="Revoke sessions that break tenant policy; warn, disable, restore staff on MFA",
        cli_group="security",
        cli_verb="enforce",
        task_path="/tasks/security/enforce",
        schedule="*/15 * * * *",
        module="faithflow_ops.jobs.security_enforce",
        options=SecurityEnforceOptions,
        preview_detail="Sessions to revoke (idle past the timeout, expired, password where SSO "
        "is required, no MFA where required) and staff to warn, disable or restore over MFA.",
    ),
    JobSpec(
        name="retention",
        summary="Apply data retention per tenant and data class (anonymise, redact, delete, "
        "purge deleted tenants); legal holds",
        cli_group="retention",
        cli_verb="run",
        task_path="/tasks/retention/run",
        schedule="40 3 * * *",
        module="faithflow_ops.jobs.retention_run",
        lease_seconds=3600,
        options=RetentionOptions,
        preview_detail="Batches (key ranges of at most --batch-size rows) per tenant, data "
        "class and table, with the cutoff each follows; tenants on legal hold are left out. "
        "Totals per tenant and class: `faithflow retention due`.",
    ),
    JobSpec(
        name="streams_sync",
        summary=(
            "Sync stream sessions with Mux: live, interrupted, ended, recordings, missed starts"
        ),
        cli_group="streams",
        cli_verb="sync",
        task_path="/tasks/streams/sync",
        schedule="* * * * *",
        module="faithflow_ops.jobs.streams_sync",
        preview_detail="Per session on a Mux channel: the status its live stream calls for "
        "(live, interrupted, ended after the reconnect window), the recording to take in "
        "(processing, ready with URL and duration, failed), and missed starts to alert.",
    ),
    JobSpec(
        name="streams_moderate",
        summary="Apply each session's chat policy: hide, hold or flag new messages",
        cli_group="streams",
        cli_verb="moderate",
        task_path="/tasks/streams/moderate",
        schedule="*/2 * * * *",
        module="faithflow_ops.jobs.streams_moderate",
        preview_verb="preview-moderate",
        preview_detail="Per unmoderated chat message: hide, hold, flag or allow, with the rule "
        "that hit (ban, blocked term, max length, slow mode, link, first-time chatter, flagged "
        "term); per session, its counts.",
    ),
)

_BY_NAME = {spec.name: spec for spec in JOBS}


def get(name: str) -> JobSpec:
    key = name.strip().lower().replace("-", "_")
    try:
        return _BY_NAME[key]
    except KeyError:
        known = ", ".join(sorted(_BY_NAME))
        raise UserError(f"no job named {name!r}; known jobs: {known}") from None


def schedule_for(spec: JobSpec, overrides: Mapping[str, str]) -> str:
    """The job's cron expression: `CRON_<NAME>` when set, else the registry default.

    An invalid expression is refused with the variable named.
    """
    expr = overrides.get(spec.name.upper(), spec.schedule)
    validate_cron(expr, spec.cron_variable if spec.name.upper() in overrides else spec.name)
    return expr


def validate_cron(expr: str, where: str) -> None:
    import datetime as dt

    from cronsim import CronSim, CronSimError

    try:
        CronSim(expr, dt.datetime(2026, 1, 1, tzinfo=dt.UTC))
    except (CronSimError, ValueError) as exc:
        raise ConfigError(
            f"{where}={expr!r} is not a valid cron expression ({exc}); "
            "use five fields, e.g. '*/5 * * * *'"
        ) from None


def unknown_overrides(overrides: Mapping[str, str]) -> list[str]:
    """CRON_* variables that name no registered job (a typo keeps the default: warn about it)."""
    return sorted(f"CRON_{key}" for key in overrides if key.lower() not in _BY_NAME)


def validate_schedules(overrides: Mapping[str, str]) -> None:
    """Every `CRON_<NAME>` valid and naming a registered job, else a ConfigError naming it —
    checked at start-up whether or not this process schedules (cron and Render read the same
    variables)."""
    for spec in JOBS:
        schedule_for(spec, overrides)
    unknown = unknown_overrides(overrides)
    if unknown:
        known = ", ".join(spec.cron_variable for spec in JOBS)
        raise ConfigError(f"{', '.join(unknown)} names no job; unset it or use one of: {known}")
