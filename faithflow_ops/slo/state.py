"""What the database says about the SLOs' stored inputs right now: recorded job runs per job
and status, each job's last success, finished outbound messages, the outbox backlog. The
receiver exports these at each scrape (receiver.metrics.StoredState)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from faithflow_ops.models import JobRun, OutboundMessage
from faithflow_ops.models.comms import PENDING_STATUSES

# Runs that count toward a job's success ratio; `partial` (some actions failed, the run went
# on) is a success of the job, `failed` and `abandoned` (the process died) are not.
GOOD_RUNS = ("succeeded", "partial")
BAD_RUNS = ("failed", "abandoned")
# Outbound messages that are finished for the delivery objective (suppressed and canceled
# were never meant to be sent; `unknown` may or may not have been, so it counts as bad).
SENT_MESSAGES = ("sent", "delivered")
UNSENT_MESSAGES = ("failed", "unknown")


@dataclass
class StoredCounts:
    runs: dict[tuple[str, str], int] = field(default_factory=dict)
    last_success: dict[str, float] = field(default_factory=dict)  # unix seconds
    messages: dict[tuple[str, str], int] = field(default_factory=dict)
    outbox_count: int = 0
    outbox_age: float = 0.0


def read_counts(session: Session, now: dt.datetime) -> StoredCounts:
    state = StoredCounts()
    recorded = (*GOOD_RUNS, *BAD_RUNS)
    for job, status, count in session.execute(
        select(JobRun.job, JobRun.status, func.count())
        .where(JobRun.dry_run.is_(False), JobRun.status.in_(recorded))
        .group_by(JobRun.job, JobRun.status)
    ):
        state.runs[(job, status)] = int(count)
    for job, finished in session.execute(
        select(JobRun.job, func.max(JobRun.finished_at))
        .where(JobRun.dry_run.is_(False), JobRun.status.in_(GOOD_RUNS))
        .group_by(JobRun.job)
    ):
        if finished is not None:
            state.last_success[job] = _aware(finished).timestamp()
    for channel, status, count in session.execute(
        select(OutboundMessage.channel, OutboundMessage.status, func.count())
        .where(OutboundMessage.status.in_((*SENT_MESSAGES, *UNSENT_MESSAGES)))
        .group_by(OutboundMessage.channel, OutboundMessage.status)
    ):
        state.messages[(channel, status)] = int(count)
    count, oldest = outbox_backlog(session, now)
    state.outbox_count, state.outbox_age = count, oldest
    return state


def outbox_backlog(session: Session, now: dt.datetime) -> tuple[int, float]:
    """Messages due and waiting (queued or scheduled, next attempt reached) and how long the
    oldest has been due, in seconds (0 with none). Reads ix_outbound_messages_dispatch_due."""
    count, oldest = session.execute(
        select(func.count(), func.min(OutboundMessage.next_attempt_at)).where(
            OutboundMessage.status.in_(PENDING_STATUSES), OutboundMessage.next_attempt_at <= now
        )
    ).one()
    age = max((now - _aware(oldest)).total_seconds(), 0.0) if oldest is not None else 0.0
    return int(count or 0), age


def _aware(value: dt.datetime) -> dt.datetime:
    return value if value.tzinfo is not None else value.replace(tzinfo=dt.UTC)
