"""Job leases in `job_locks` (DESIGN §8): one conditional upsert takes a lock.

`INSERT … ON CONFLICT (job) DO UPDATE … WHERE job_locks.expires_at < now` works on SQLite, on
Postgres and behind a transaction-pooling PgBouncer (session advisory locks do not). Lease times
are wall-clock time, never the job's `--now`: a crashed holder is replaced when its lease ends,
and the run it left `running` is closed as `abandoned` by the run that takes the lease over.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from faithflow_ops.db import Database, upsert_insert, utcnow
from faithflow_ops.models import JobLock, JobRun

# The status of a run whose process died holding the lease (job_runs.status).
ABANDONED = "abandoned"


@dataclass(frozen=True)
class LockInfo:
    job: str
    holder: str
    acquired_at: dt.datetime
    expires_at: dt.datetime


def acquire(db: Database, job: str, holder: str, lease_seconds: int) -> LockInfo | None:
    """Take the lease; return None when taken, else the current holder's lock."""
    with db.session() as session:
        return take(session, job, holder, lease_seconds)


def take(session: Session, job: str, holder: str, lease_seconds: int) -> LockInfo | None:
    """`acquire` in the caller's transaction (the runner records its run in the same one)."""
    now = utcnow()
    expires = now + dt.timedelta(seconds=lease_seconds)
    table = JobLock.__table__
    stmt = upsert_insert(session.get_bind().dialect.name, table).values(
        job=job, holder=holder, acquired_at=now, expires_at=expires, created_at=now
    )
    # run_id is left as it was, so RETURNING names the run of the holder whose lease expired
    # (a fresh insert returns NULL); the caller attaches its own run in the same transaction.
    stmt = stmt.on_conflict_do_update(
        index_elements=[table.c.job],
        set_={"holder": holder, "acquired_at": now, "expires_at": expires},
        where=table.c.expires_at < now,
    ).returning(table.c.holder, table.c.run_id)
    taken = session.execute(stmt).first()
    if taken is not None and taken.holder == holder:
        if taken.run_id is not None:
            _abandon(session, taken.run_id, holder, now)
        return None
    row = session.execute(select(JobLock).where(JobLock.job == job)).scalar_one()
    return LockInfo(row.job, row.holder, row.acquired_at, row.expires_at)


def _abandon(session: Session, run_id: int, taker: str, now: dt.datetime) -> None:
    """Close the run of a holder whose lease expired, if it is still `running`: its process
    died (SIGKILL, a lost machine) or stopped renewing, and the lease is ours now."""
    dead = session.scalar(select(JobRun.holder).where(JobRun.id == run_id))
    session.execute(
        update(JobRun)
        .where(JobRun.id == run_id, JobRun.status == "running")
        .values(
            status=ABANDONED,
            finished_at=now,
            error=(
                f"abandoned: its holder {dead or 'unknown'} stopped renewing the lease (the "
                f"process died or was killed); {taker} took the lease over"
            ),
        )
    )


def attach_run(session: Session, job: str, holder: str, run_id: int) -> None:
    """Name the run that holds the lease (`jobs` listings show it)."""
    session.execute(
        update(JobLock).where(JobLock.job == job, JobLock.holder == holder).values(run_id=run_id)
    )


def renew(db: Database, job: str, holder: str, lease_seconds: int) -> bool:
    """Extend our lease; False when it was lost (expired and taken by another run)."""
    with db.session() as session:
        result = session.execute(
            update(JobLock)
            .where(JobLock.job == job, JobLock.holder == holder)
            .values(expires_at=utcnow() + dt.timedelta(seconds=lease_seconds))
        )
        return bool(result.rowcount)  # type: ignore[attr-defined]


def release(db: Database, job: str, holder: str) -> None:
    with db.session() as session:
        drop(session, job, holder)


def drop(session: Session, job: str, holder: str) -> None:
    """`release` in the caller's transaction."""
    session.execute(delete(JobLock).where(JobLock.job == job, JobLock.holder == holder))


def current(db: Database, job: str) -> LockInfo | None:
    with db.read_session() as session:
        row = session.get(JobLock, job)
        if row is None or row.expires_at < utcnow():
            return None
        return LockInfo(row.job, row.holder, row.acquired_at, row.expires_at)
