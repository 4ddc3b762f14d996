"""What a dispatch of the outbox would do at `now` (the plan of `faithflow comms dispatch`;
docs/comms.md). Read-only; applying it is `comms.sending`.

In this order:

- `mark_unknown`: a message still `sending` after its lease ran out. Its dispatcher died between
  the provider call and recording the outcome: it may have been sent. It becomes `unknown` and
  is never sent again automatically (`comms retry ID` is the operator's decision).
- `suppress`: a due message whose recipient has been put on the suppression list since it was
  enqueued: it becomes `suppressed`, never sent.
- `defer`: a due message of a category whose quiet hours the caller checks (`QuietRule`,
  handed in by the job: dunning's are the tenant's) while its tenant is in them: moved to the
  end of the quiet period, not sent, its attempts untouched. Every attempt is checked, so a
  transient failure retried at 21:00 in Lagos waits for 08:00.
- `send`: a due message (`queued`/`scheduled`, `next_attempt_at <= now`), lowest priority
  number first, then the longest waiting.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Collection, Iterator, Mapping
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from faithflow_ops.actions import Action, encode
from faithflow_ops.comms.suppression import MESSAGES, SUPPRESSIONS, in_force
from faithflow_ops.models.comms import PENDING_STATUSES

SEND, SUPPRESS, MARK_UNKNOWN, DEFER = "send", "suppress", "mark_unknown", "defer"
KINDS = (MARK_UNKNOWN, SUPPRESS, DEFER, SEND)


@dataclass(frozen=True)
class QuietRule:
    """Quiet hours the dispatcher re-checks on every attempt: `holds(session, now, tenant_ids)`
    answers, for the tenants in quiet hours at `now`, (when they end, why)."""

    categories: frozenset[str]
    holds: Callable[[Session, dt.datetime, Collection[int]], Mapping[int, tuple[dt.datetime, str]]]


@dataclass(frozen=True)
class MarkUnknown:
    message: int
    channel: str
    to: str  # masked
    template: str
    attempts: int
    lease_expired_at: dt.datetime


@dataclass(frozen=True)
class Send:
    message: int
    tenant_id: int | None
    channel: str
    to: str  # masked
    template: str
    priority: int
    attempts: int
    scheduled_at: dt.datetime  # due since (next_attempt_at)


@dataclass(frozen=True)
class Suppress(Send):
    suppression: str  # the reason the recipient is on the list


@dataclass(frozen=True)
class Defer(Send):
    until: dt.datetime  # the end of the tenant's quiet hours
    why: str


def mask(channel: str, recipient: str) -> str:
    """A recipient as previews and logs show it: `t***@church.org`, `+234*****5678`."""
    if channel == "email":
        local, _, domain = recipient.partition("@")
        return f"{local[:1]}***@{domain}"
    if len(recipient) <= 6:
        return "*" * len(recipient)
    return recipient[:4] + "*" * (len(recipient) - 8) + recipient[-4:]


# --- plan ---------------------------------------------------------------------------------------


def plan(
    session: Session, now: dt.datetime, limit: int | None = None, quiet: QuietRule | None = None
) -> Iterator[Action]:
    """What a dispatch at `now` would do (see the module docstring); read-only."""
    expired = session.execute(
        select(
            MESSAGES.c.id,
            MESSAGES.c.channel,
            MESSAGES.c.recipient,
            MESSAGES.c.template,
            MESSAGES.c.attempts,
            MESSAGES.c.claimed_by,
            MESSAGES.c.lease_expires_at,
        )
        .where(MESSAGES.c.status == "sending", MESSAGES.c.lease_expires_at < now)
        .order_by(MESSAGES.c.lease_expires_at, MESSAGES.c.id)
    ).all()
    for row in expired:
        yield Action(
            MARK_UNKNOWN,
            f"message:{row.id}",
            f"claimed by {row.claimed_by} and not recorded before its lease ended "
            f"({row.lease_expires_at.isoformat()}): it may have been sent; never re-sent "
            "automatically (comms retry ID)",
            encode(
                MarkUnknown(
                    row.id,
                    row.channel,
                    mask(row.channel, row.recipient),
                    row.template,
                    row.attempts,
                    row.lease_expires_at,
                )
            ),
        )
    query = (
        select(
            MESSAGES.c.id,
            MESSAGES.c.tenant_id,
            MESSAGES.c.channel,
            MESSAGES.c.recipient,
            MESSAGES.c.template,
            MESSAGES.c.priority,
            MESSAGES.c.status,
            MESSAGES.c.attempts,
            MESSAGES.c.next_attempt_at,
            MESSAGES.c.category,
            SUPPRESSIONS.c.reason.label("suppressed"),
        )
        .select_from(MESSAGES.outerjoin(SUPPRESSIONS, in_force(now)))
        .where(MESSAGES.c.status.in_(PENDING_STATUSES), MESSAGES.c.next_attempt_at <= now)
        .order_by(MESSAGES.c.priority, MESSAGES.c.next_attempt_at, MESSAGES.c.id)
    )
    if limit is not None:  # clamped: a huge --limit is "no limit", not a driver overflow
        query = query.limit(min(max(limit - len(expired), 0), 2**31 - 1))
    rows = session.execute(query).all()
    holds: Mapping[int, tuple[dt.datetime, str]] = {}
    if quiet is not None:
        tenants = {r.tenant_id for r in rows if r.tenant_id and r.category in quiet.categories}
        holds = quiet.holds(session, now, tenants) if tenants else {}
    for row in rows:
        send = Send(
            row.id,
            row.tenant_id,
            row.channel,
            mask(row.channel, row.recipient),
            row.template,
            row.priority,
            row.attempts,
            row.next_attempt_at,
        )
        if row.suppressed:
            yield Action(
                SUPPRESS,
                f"message:{row.id}",
                f"the recipient is on the {row.channel} suppression list ({row.suppressed})",
                encode(Suppress(**vars(send), suppression=row.suppressed)),
            )
        elif row.category in (quiet.categories if quiet else ()) and row.tenant_id in holds:
            until, why = holds[row.tenant_id]
            yield Action(
                DEFER,
                f"message:{row.id}",
                f"{why}: deferred to {until.isoformat()} (attempt {row.attempts + 1} waits)",
                encode(Defer(**vars(send), until=until, why=why)),
            )
        else:
            attempt = f"attempt {row.attempts + 1}" if row.attempts else "first attempt"
            yield Action(
                SEND,
                f"message:{row.id}",
                f"{row.status} and due since {row.next_attempt_at.isoformat()} ({attempt})",
                encode(send),
            )
