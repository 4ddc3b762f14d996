"""Rows the SLO metrics and report read: job runs, outbound messages, webhook deliveries."""

from __future__ import annotations

import datetime as dt
import itertools

from sqlalchemy.orm import Session

from faithflow_ops.models import JobRun, OutboundMessage, WebhookEvent

NOW = dt.datetime(2026, 3, 31, 12, 0, tzinfo=dt.UTC)
_ids = itertools.count(1)


def run(
    session: Session,
    job: str,
    status: str,
    finished: dt.datetime,
    *,
    seconds: float = 2.0,
    dry_run: bool = False,
    trigger: str = "cli",
    error: str | None = None,
) -> JobRun:
    started = finished - dt.timedelta(seconds=seconds)
    row = JobRun(
        job=job,
        trigger=trigger,
        dry_run=dry_run,
        status=status,
        now=started,
        started_at=started,
        finished_at=finished,
        counts={},
        error=error,
    )
    session.add(row)
    return row


def message(
    session: Session,
    status: str,
    when: dt.datetime,
    *,
    channel: str = "email",
    template: str = "dunning_notice",
    error: str | None = None,
) -> OutboundMessage:
    row = OutboundMessage(
        channel=channel,
        recipient="treasurer@example.org" if channel == "email" else "+2348012345678",
        template=template,
        variables={},
        body="hello",
        status=status,
        idempotency_key=f"slo-test-{next(_ids)}",
        not_before=when,
        next_attempt_at=when,
        last_error=error,
        sent_at=when if status in ("sent", "delivered") else None,
        created_at=when,
        updated_at=when,  # when it reached its status: the report's window reads this
    )
    session.add(row)
    return row


def delivery(
    session: Session,
    status: str,
    received: dt.datetime,
    *,
    applied_after: float | None = 1.0,
    provider: str = "stripe",
    event_type: str = "invoice.paid",
    error: str | None = None,
) -> WebhookEvent:
    row = WebhookEvent(
        provider=provider,
        scope="platform",
        event_key=f"evt_slo_{next(_ids)}",
        event_type=event_type,
        payload={},
        status=status,
        first_received_at=received,
        last_received_at=received,
        applied_at=(
            received + dt.timedelta(seconds=applied_after)
            if applied_after is not None and status != "received"
            else None
        ),
        next_attempt_at=received,
        last_error=error,
    )
    session.add(row)
    return row


def answers(
    session: Session,
    route: str,
    status_class: str,
    count: int,
    at: dt.datetime,
    *,
    seconds: float = 0.02,
) -> None:
    """`count` answers of the receiver on `route`, as its request tallies record them."""
    from faithflow_ops.slo import tallies

    key = (tallies.hour_of(at), route, status_class, tallies.le_label(seconds))
    tallies.write(session, {key: count}, at)
