"""Support center: tickets, their messages, SLA policies, the business calendar and the
append-only SLA event log (docs/support.md).

Each ticket carries three SLA clocks (METRICS). A clock runs in *episodes*: first_response has
one (from the ticket's opening to the first public agent reply), next_response starts one each
time a requester message waits for an agent reply, resolution starts one at opening and again at
each reopen. Per metric the ticket stores, for its current episode:

- `<m>_episode`       number of the current episode (0 = the clock never started)
- `<m>_started_at`    when the episode started
- `<m>_elapsed_seconds`  clock time (business or calendar, the policy's unit) consumed before
                      the current running stretch — paused stretches add nothing
- `<m>_running_since` start of the current running stretch; NULL while paused or stopped
- `<m>_due_at`        when the target is reached if the clock keeps running (NULL while paused
                      and once met: the due time stays in the `fulfilled` event); frozen once
                      breached
- `<m>_warn_at`       when the warning is due: the later of due − 15 min and the moment 80 % of
                      the target is consumed
- `<m>_warned_at`, `<m>_breached_at` (= `<m>_due_at`, never the sweep's time), `<m>_fulfilled_at`
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import (
    Boolean,
    CheckConstraint,
    ForeignKey,
    Index,
    Integer,
    SmallInteger,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from faithflow_ops.db import JSONType, UTCDateTime
from faithflow_ops.models.base import Base, CreatedAt, Timestamps, in_list, partial_index

PRIORITIES = ("low", "normal", "high", "urgent")
STATUSES = ("new", "open", "pending", "on_hold", "solved", "closed")
OPEN_STATUSES = ("new", "open", "pending", "on_hold")
METRICS = ("first_response", "next_response", "resolution")
AUTHOR_KINDS = ("requester", "agent", "system")
RESOLUTIONS = ("solved", "deflected", "duplicate", "spam", "no_response")
EVENT_KINDS = ("warning", "breach", "fulfilled")
HOURS_KINDS = ("business", "calendar")


_OPEN = text("status NOT IN ('solved', 'closed')")


def _sweep_indexes(metric: str) -> tuple[Index, Index]:
    # support_sla_sweep: the plan reads only open tickets whose clock is not yet breached
    # (breach: due_at <= now; warning: warn_at <= now and not yet warned).
    due_where = text(f"{metric}_breached_at IS NULL AND status NOT IN ('solved', 'closed')")
    warn_where = text(
        f"{metric}_warned_at IS NULL AND {metric}_breached_at IS NULL "
        "AND status NOT IN ('solved', 'closed')"
    )
    return (
        partial_index(
            f"ix_support_tickets_sla_{metric}_due",
            f"{metric}_due_at",
            where=due_where,
        ),
        partial_index(
            f"ix_support_tickets_sla_{metric}_warn",
            f"{metric}_warn_at",
            where=warn_where,
        ),
    )


class SupportTicket(Timestamps, Base):
    """A support ticket from a tenant's requester, worked by platform agents."""

    __tablename__ = "support_tickets"
    __table_args__ = (
        CheckConstraint(in_list("priority", PRIORITIES), name="priority_known"),
        CheckConstraint(in_list("status", STATUSES), name="status_known"),
        CheckConstraint(
            f"resolution IS NULL OR {in_list('resolution', RESOLUTIONS)}", name="resolution_known"
        ),
        *_sweep_indexes("first_response"),
        *_sweep_indexes("next_response"),
        *_sweep_indexes("resolution"),
        # support queue / tickets list: open tickets by status and priority, oldest first
        partial_index(
            "ix_support_tickets_open_queue",
            "status",
            "priority",
            "opened_at",
            where=_OPEN,
        ),
        # support queue (per agent load) and tickets list --assignee
        Index("ix_support_tickets_assignee", "assignee_id", "status"),
        # analytics: tickets created / solved in a window
        Index("ix_support_tickets_opened_at", "opened_at"),
        Index("ix_support_tickets_solved_at", "solved_at"),
        # retention run (anonymise_tickets): a tenant's closed tickets not yet anonymised
        partial_index(
            "ix_support_tickets_retention",
            "tenant_id",
            "id",
            where="status = 'closed' AND anonymised_at IS NULL",
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id"), index=True)
    requester_email: Mapped[str] = mapped_column(String(320))
    requester_name: Mapped[str | None] = mapped_column(String(200))
    subject: Mapped[str] = mapped_column(String(500))
    priority: Mapped[str] = mapped_column(String(16), default="normal")
    status: Mapped[str] = mapped_column(String(16), default="new")
    # A platform agent: a `users` row with no tenant.
    assignee_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    category: Mapped[str | None] = mapped_column(String(64))
    reopen_count: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    resolution: Mapped[str | None] = mapped_column(String(16))
    opened_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    status_changed_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    # The oldest requester message still waiting for an agent reply (NULL: nobody waits).
    waiting_since: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    first_responded_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    last_agent_reply_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    last_requester_message_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    solved_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    closed_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())

    first_response_episode: Mapped[int] = mapped_column(SmallInteger, default=0, server_default="0")
    first_response_started_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    first_response_elapsed_seconds: Mapped[int] = mapped_column(
        Integer, default=0, server_default="0"
    )
    first_response_running_since: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    first_response_due_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    first_response_warn_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    first_response_warned_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    first_response_breached_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    first_response_fulfilled_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())

    next_response_episode: Mapped[int] = mapped_column(SmallInteger, default=0, server_default="0")
    next_response_started_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    next_response_elapsed_seconds: Mapped[int] = mapped_column(
        Integer, default=0, server_default="0"
    )
    next_response_running_since: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    next_response_due_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    next_response_warn_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    next_response_warned_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    next_response_breached_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    next_response_fulfilled_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())

    resolution_episode: Mapped[int] = mapped_column(SmallInteger, default=0, server_default="0")
    resolution_started_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    resolution_elapsed_seconds: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    resolution_running_since: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    resolution_due_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    resolution_warn_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    resolution_warned_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    resolution_breached_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    resolution_fulfilled_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    # When `retention run` anonymised the requester's details (docs/retention.md).
    anonymised_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())


class SupportMessage(CreatedAt, Base):
    """One message on a ticket: a public reply (requester or agent) or an internal note.
    `created_at` is the `--now` of the command that added it."""

    __tablename__ = "support_messages"
    __table_args__ = (
        CheckConstraint(in_list("author_kind", AUTHOR_KINDS), name="author_kind_known"),
        Index("ix_support_messages_ticket", "ticket_id", "created_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    ticket_id: Mapped[int] = mapped_column(ForeignKey("support_tickets.id", ondelete="CASCADE"))
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id"))
    author_kind: Mapped[str] = mapped_column(String(16))
    author_user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    author_email: Mapped[str | None] = mapped_column(String(320))
    public: Mapped[bool] = mapped_column(Boolean, default=True, server_default="1")
    body: Mapped[str] = mapped_column(Text)


class SlaPolicy(Timestamps, Base):
    """One target: a priority's goal for one metric. No row = the built-in default
    (support/policies.py DEFAULT_TARGETS)."""

    __tablename__ = "sla_policies"
    __table_args__ = (
        CheckConstraint(in_list("priority", PRIORITIES), name="priority_known"),
        CheckConstraint(in_list("metric", METRICS), name="metric_known"),
        CheckConstraint(in_list("hours", HOURS_KINDS), name="hours_known"),
        CheckConstraint("target_minutes > 0", name="target_positive"),
        UniqueConstraint("priority", "metric"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    priority: Mapped[str] = mapped_column(String(16))
    metric: Mapped[str] = mapped_column(String(16))
    target_minutes: Mapped[int] = mapped_column(Integer)
    hours: Mapped[str] = mapped_column(String(16))  # business | calendar
    # Ticket statuses in which this clock stops counting (e.g. ["pending", "on_hold"]).
    pause_statuses: Mapped[list[str]] = mapped_column(JSONType, default=list)
    updated_by: Mapped[str | None] = mapped_column(String(200))


class BusinessCalendar(Timestamps, Base):
    """Support's working hours (one row, name `default`; no row = the built-in default)."""

    __tablename__ = "business_calendars"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    timezone: Mapped[str] = mapped_column(String(64))  # IANA, e.g. Africa/Lagos
    # {"mon": [["09:00", "17:00"]], …, "sun": []}: local wall-clock intervals per weekday
    weekly_hours: Mapped[dict[str, list[list[str]]]] = mapped_column(JSONType)
    # [{"date": "2026-12-25", "name": "Christmas Day"}, …]: whole local days off
    holidays: Mapped[list[dict[str, Any]]] = mapped_column(JSONType, default=list)
    updated_by: Mapped[str | None] = mapped_column(String(200))


class SlaEvent(CreatedAt, Base):
    """Append-only: a clock's warning, breach or fulfilment, once per ticket, metric, episode.
    `occurred_at` is when it happened (a breach: the due time), `created_at` when it was
    recorded."""

    __tablename__ = "sla_events"
    __table_args__ = (
        CheckConstraint(in_list("metric", METRICS), name="metric_known"),
        CheckConstraint(in_list("kind", EVENT_KINDS), name="kind_known"),
        UniqueConstraint("ticket_id", "metric", "episode", "kind"),
        # sla breaches --since / analytics: events by kind and time
        Index("ix_sla_events_kind_occurred", "kind", "occurred_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    ticket_id: Mapped[int] = mapped_column(ForeignKey("support_tickets.id", ondelete="CASCADE"))
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id"))
    metric: Mapped[str] = mapped_column(String(16))
    episode: Mapped[int] = mapped_column(SmallInteger)
    kind: Mapped[str] = mapped_column(String(16))
    priority: Mapped[str] = mapped_column(String(16))
    occurred_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    started_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    due_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    target_minutes: Mapped[int | None] = mapped_column(Integer)
    hours: Mapped[str | None] = mapped_column(String(16))
    # fulfilled: clock time used (policy unit) and wall-clock time since the episode started
    elapsed_seconds: Mapped[int | None] = mapped_column(Integer)
    calendar_seconds: Mapped[int | None] = mapped_column(Integer)
    # fulfilled: met the target (no breach in this episode)
    within_target: Mapped[bool | None] = mapped_column(Boolean)
    assignee_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    # notifications: outbox message id, alert hook result or error
    data: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
