"""E-mail bounces: what an SMTP refusal or a delivery status notification (DSN) means for the
recipient, classified by its RFC 3463 enhanced status code (docs/comms.md, "Bounces").

RFC 3463 (https://www.rfc-editor.org/rfc/rfc3463, the IANA "SMTP Enhanced Status Codes"
registry) gives a status as class.subject.detail: class 4 is a persistent transient failure,
5 a permanent one; the subject says whose problem it is. So:

| status                              | kind      | the message         | the recipient        |
| ----------------------------------- | --------- | ------------------- | -------------------- |
| 5.1.x (bad mailbox or domain; not   | `hard`    | failed              | suppressed (for      |
| 5.1.7/5.1.8, which are our sender)  |           |                     | good)                |
| 5.2.x mailbox (5.2.2 full, 5.2.1    | `soft`    | retried (backoff,   | suppressed only after|
| disabled), 5.3.x, 5.4.x, 4.X.X,     |           | up to the attempts) | N soft bounces in D  |
| a 5xx at RCPT without a status      |           |                     | days, for some days  |
| 5.7.x security/policy (relay denied,| `policy`  | retried             | never: an incident   |
| blocklisted, SPF/DMARC), 5.5.x      |           |                     | (our sending is      |
| protocol, 5.1.7/5.1.8, 5.3.5        |           |                     | refused, not them)   |
| 5.2.3, 5.3.4 too large, 5.6.x media | `message` | failed              | nothing              |
| 4.7.x (greylisting, rate limits),   | —         | retried             | nothing recorded     |
| a refusal outside RCPT/DATA         |           |                     |                      |

Each bounce is a `comms_bounces` row, written with the message's outcome (`record`). The
dispatcher settles a run's bounces once its batch is sent (`settle`): hard → suppression
without end; soft → suppression for FAITHFLOW_COMMS_SOFT_BOUNCE_SUPPRESS_DAYS once the
recipient has FAITHFLOW_COMMS_SOFT_BOUNCE_LIMIT soft bounces within
FAITHFLOW_COMMS_SOFT_BOUNCE_WINDOW_DAYS; policy → incident `comms:email:policy`. A burst —
at least FAITHFLOW_COMMS_BOUNCE_BURST_MIN recipients bounced and more than
FAITHFLOW_COMMS_BOUNCE_BURST_SHARE of the run's e-mails — suppresses nobody and raises incident
`comms:email:bounce-burst`: a relay refusing everything is our problem, not every church's.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

from sqlalchemy import Table, func, or_, select, update
from sqlalchemy.orm import Session

from faithflow_ops.comms.suppression import add_suppression
from faithflow_ops.models import Bounce

if TYPE_CHECKING:
    from faithflow_ops.config import Settings

BOUNCES = cast(Table, Bounce.__table__)

HARD, SOFT, POLICY, MESSAGE = "hard", "soft", "policy", "message"
POLICY_CAUSE = "comms:email:policy"
BURST_CAUSE = "comms:email:bounce-burst"
ACTOR = "comms bounces"


@dataclass(frozen=True)
class BounceNote:
    """One classified refusal, as the outcome of a send carries it."""

    kind: str  # hard | soft | policy | message
    smtp_code: int | None
    status: str | None  # RFC 3463, e.g. 5.1.1
    diagnostic: str

    def describe(self) -> str:
        code = " ".join(str(p) for p in (self.smtp_code, self.status) if p is not None)
        return f"{code} {self.diagnostic}".strip() if code else self.diagnostic


def _parts(status: str) -> tuple[int, int, int] | None:
    try:
        klass, subject, detail = (int(p) for p in status.split("."))
    except ValueError:
        return None
    return klass, subject, detail


def classify(smtp_code: int | None, status: str | None, *, stage: str) -> str | None:
    """The kind of a refusal (see the module docstring's table), or None when it says nothing
    about the recipient or the message (retry it, record nothing). `stage`: `rcpt`, `data`
    (refused for this recipient or this message), `dsn` (a bounce reported later), or
    `session` (connection, MAIL FROM, login)."""
    if stage == "session":
        return None
    parts = _parts(status) if status else None
    if parts is not None and parts[0] in (4, 5):
        klass, subject, detail = parts
        if subject == 7:  # security or policy
            return POLICY if klass == 5 else None  # 4.7.x: greylisting, rate limit: retry
        if klass == 4:
            return SOFT
        if subject == 1:
            return POLICY if detail in (7, 8) else HARD  # 5.1.7/5.1.8: our sender address
        if subject == 2:
            return MESSAGE if detail == 3 else SOFT  # 5.2.3: message too large
        if subject == 3:
            if detail == 4:
                return MESSAGE  # message too big for the system
            return POLICY if detail == 5 else SOFT  # 5.3.5: system incorrectly configured
        if subject == 5:
            return POLICY  # protocol: our client or relay
        if subject == 6:
            return MESSAGE  # media / content
        return SOFT  # 5.0.x, 5.4.x routing and others: not proof the mailbox is gone
    if smtp_code is None:
        return None
    if 400 <= smtp_code < 600:
        # No enhanced status: a refusal of this recipient or message without saying why.
        # Never enough to suppress for good: it counts as a soft bounce.
        return SOFT
    return None


# --- recording ---------------------------------------------------------------------------------


def record(
    session: Session,
    *,
    message_id: int | None,
    channel: str,
    recipient: str,
    note: BounceNote,
    source: str,
    now: dt.datetime,
    run: str | None = None,
) -> int:
    """A `comms_bounces` row for this refusal, in the caller's transaction (not yet settled)."""
    return int(
        session.execute(
            BOUNCES.insert()
            .values(
                message_id=message_id,
                channel=channel,
                recipient=recipient,
                kind=note.kind,
                smtp_code=note.smtp_code,
                status=note.status,
                diagnostic=note.diagnostic[:2000],
                source=source,
                run=run,
                occurred_at=now,
                created_at=now,
                updated_at=now,
            )
            .returning(BOUNCES.c.id)
        ).scalar_one()
    )


# --- settling ----------------------------------------------------------------------------------


@dataclass
class Settled:
    """What settling a run's bounces did."""

    suppressed: list[str]  # recipients put on the list
    counted: int  # soft bounces below the limit
    incidents: list[str]  # causes raised
    burst: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {
            "suppressed": len(self.suppressed),
            "counted": self.counted,
            "incidents": self.incidents,
            "burst": self.burst,
        }


def _pending(session: Session, now: dt.datetime, run: str | None, ids: Sequence[int]) -> list[Any]:
    """The unsettled bounces to settle: these ids, this run's, and any a dispatch left
    unsettled (it stopped before settling) over an hour ago."""
    stale = now - dt.timedelta(hours=1)
    where = [BOUNCES.c.occurred_at < stale]
    if run is not None:
        where.append(BOUNCES.c.run == run)
    if ids:
        where.append(BOUNCES.c.id.in_(list(ids)))
    return list(
        session.execute(
            select(BOUNCES)
            .where(BOUNCES.c.settled_at.is_(None), or_(*where))
            .order_by(BOUNCES.c.id)
            .with_for_update()
        ).all()
    )


def settle(
    session: Session,
    settings: Settings,
    now: dt.datetime,
    *,
    run: str | None = None,
    emails: int = 0,
    accepted: int = 0,
    ids: Sequence[int] = (),
) -> Settled:
    """Decide what this run's bounces (or the bounces `ids`) do, in the caller's transaction
    (see the module docstring). `emails`: how many e-mails the run handed to the server (the
    burst rule's denominator); 0 turns the burst rule off (a single DSN). `accepted`: how many
    the server took: a run that got e-mail through with no policy refusal resolves the
    policy incident (the relay takes our mail again)."""
    from faithflow_ops.incidents.records import clear_incident, raise_incident

    rows = _pending(session, now, run, ids)
    done = Settled([], 0, [])
    if accepted > 0 and not any(r.kind == POLICY and r.run == run for r in rows):
        clear_incident(session, POLICY_CAUSE, now=now, by=ACTOR)
    if not rows:
        return done
    outcomes: dict[int, str] = {}
    this_run = [r for r in rows if run is not None and r.run == run]
    bounced = {(r.channel, r.recipient) for r in this_run if r.kind in (HARD, SOFT)}
    if (
        emails > 0
        and len(bounced) >= settings.comms_bounce_burst_min
        and len(bounced) > settings.comms_bounce_burst_share * emails
    ):
        done.burst = True
        sample = "; ".join(sorted({_describe(r) for r in this_run if r.kind in (HARD, SOFT)})[:3])
        raise_incident(
            session,
            cause=BURST_CAUSE,
            kind="comms",
            title=f"{len(bounced)} of {emails} e-mails in one dispatch bounced: nobody was "
            "suppressed",
            severity="critical",
            detail=(
                f"a burst of bounces ({len(bounced)} recipients, over "
                f"{settings.comms_bounce_burst_share:.0%} of the run) looks like our relay or "
                f"our domain, not the churches' addresses; e.g. {sample}. Fix the relay, then "
                "`faithflow comms retry --status failed --since 1d --dry-run`"
            ),
            now=now,
        )
        done.incidents.append(BURST_CAUSE)
        for r in this_run:
            if r.kind in (HARD, SOFT):
                outcomes[r.id] = "burst: not suppressed (incident comms:email:bounce-burst)"
    policy = [r for r in rows if r.kind == POLICY]
    if policy:
        raise_incident(
            session,
            cause=POLICY_CAUSE,
            kind="comms",
            title="the mail server refuses our e-mail by policy: " + _describe(policy[-1])[:120],
            severity="critical",
            detail=(
                f"{len(policy)} e-mail(s) refused for a reason of ours (RFC 3463 X.7.x "
                "security/policy, X.5.x protocol, or our sender address): relay access, "
                "a blocklisted IP, SPF/DKIM/DMARC. The recipients were NOT suppressed; the "
                f"messages are retried with backoff. Last: {_describe(policy[-1])}"
            ),
            now=now,
        )
        done.incidents.append(POLICY_CAUSE)
        for r in policy:
            outcomes[r.id] = "policy: incident comms:email:policy, recipient not suppressed"
    window = now - dt.timedelta(days=settings.comms_soft_bounce_window_days)
    for r in rows:
        if r.id in outcomes:
            continue
        if r.kind == HARD:
            added = add_suppression(
                session,
                channel=r.channel,
                contact=r.recipient,
                reason="bounce",
                now=now,
                until=None,
                note=f"hard bounce ({r.source}): {_describe(r)}"
                + (f" (message {r.message_id})" if r.message_id else ""),
                created_by=ACTOR,
                extend=True,
            )
            outcomes[r.id] = "suppressed (hard bounce)" if added else "already suppressed"
            if added:
                done.suppressed.append(r.recipient)
        elif r.kind == SOFT:
            count = session.scalar(
                select(func.count())
                .select_from(BOUNCES)
                .where(
                    BOUNCES.c.channel == r.channel,
                    BOUNCES.c.recipient == r.recipient,
                    BOUNCES.c.kind == SOFT,
                    BOUNCES.c.occurred_at >= window,
                    BOUNCES.c.occurred_at <= now,
                    or_(BOUNCES.c.outcome.is_(None), ~BOUNCES.c.outcome.like("burst:%")),
                )
            )
            limit = settings.comms_soft_bounce_limit
            if (count or 0) >= limit:
                days = settings.comms_soft_bounce_suppress_days
                added = add_suppression(
                    session,
                    channel=r.channel,
                    contact=r.recipient,
                    reason="bounce",
                    now=now,
                    until=now + dt.timedelta(days=days),
                    note=f"{count} soft bounces in {settings.comms_soft_bounce_window_days} "
                    f"days ({r.source}); last: {_describe(r)}",
                    created_by=ACTOR,
                    extend=True,
                )
                outcomes[r.id] = (
                    f"suppressed for {days} days ({count} soft bounces)"
                    if added
                    else "already suppressed"
                )
                if added:
                    done.suppressed.append(r.recipient)
            else:
                outcomes[r.id] = f"counted: soft bounce {count} of {limit}"
                done.counted += 1
        else:  # message
            outcomes[r.id] = "message refused: recipient not suppressed"
    for row_id, outcome in outcomes.items():
        session.execute(
            update(BOUNCES)
            .where(BOUNCES.c.id == row_id, BOUNCES.c.settled_at.is_(None))
            .values(settled_at=now, outcome=outcome[:200], updated_at=now)
        )
    return done


def _describe(row: Any) -> str:
    return BounceNote(row.kind, row.smtp_code, row.status, row.diagnostic or "").describe()


def recipient_bounces(
    session: Session, *, channel: str, recipient: str, limit: int = 20
) -> list[dict[str, Any]]:
    """The latest bounces of one recipient (for `comms show` and the operator)."""
    rows = session.execute(
        select(BOUNCES)
        .where(BOUNCES.c.channel == channel, BOUNCES.c.recipient == recipient)
        .order_by(BOUNCES.c.occurred_at.desc(), BOUNCES.c.id.desc())
        .limit(limit)
    ).all()
    return [
        {
            "kind": r.kind,
            "status": r.status,
            "smtp_code": r.smtp_code,
            "diagnostic": r.diagnostic,
            "source": r.source,
            "message": r.message_id,
            "occurred_at": r.occurred_at,
            "outcome": r.outcome,
        }
        for r in rows
    ]
