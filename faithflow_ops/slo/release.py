"""Release readiness (`faithflow release check`, docs/releases/): the pre-flight a deploy
runs before migrating and again after. A failed check means the release should not proceed:

- schema: the database is newer than this code (a rollback of code past a migration), or
  migrations are still pending once the migrate step ran (`migrated=True`);
- job locks: a job holds an unexpired lease (a run in flight; deploying now kills it
  mid-batch — wait for the lease or the run to end);
- backlogs: the webhook inbox or the outbox waits longer than its objective in ops/slo.toml
  (deploying would add a restart to an incident already in progress);
- error budget: an objective measured from the database has spent its budget over the SLO
  window (the error-budget policy: ship fixes only; `allow_spent_budget` for a fix release).

Pending migrations before the migrate step are expected: they are listed and warned about,
and a check that cannot read the old schema (a table or column a pending revision adds) warns
"not checked before migrating" instead of failing; `--migrated` runs every check in full.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from faithflow_ops.db import Database
from faithflow_ops.models import JobLock
from faithflow_ops.slo.spec import Spec

OK, WARN, FAIL = "ok", "warn", "fail"


@dataclass(frozen=True)
class Check:
    name: str
    status: str
    detail: str
    data: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "status": self.status, "detail": self.detail, **self.data}


def pending_revisions(current: str | None) -> list[str]:
    """Revisions this code has that the database lacks, oldest first."""
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    from faithflow_ops.migrate import MIGRATIONS_DIR

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    script = ScriptDirectory.from_config(cfg)
    revisions = [r.revision for r in script.iterate_revisions("heads", current or "base")]
    return list(reversed([r for r in revisions if r != current]))


def check_schema(db: Database, *, migrated: bool) -> Check:
    from faithflow_ops.migrate import current_revision, head_revision, newer_than_code

    current, head = current_revision(db.engine), head_revision()
    data: dict[str, Any] = {"current_revision": current, "head_revision": head}
    if newer_than_code(current):
        return Check(
            "schema",
            FAIL,
            f"the database is at {current}, newer than this release (head {head}): deploy the "
            "release that migrated it, or downgrade the database first (docs/releases/)",
            data,
        )
    pending = pending_revisions(current)
    data["pending"] = pending
    if not pending:
        return Check("schema", OK, f"at head {head}", data)
    if migrated:
        return Check(
            "schema", FAIL, f"{len(pending)} migration(s) still pending after migrating", data
        )
    return Check(
        "schema", WARN, f"{len(pending)} migration(s) to apply: {', '.join(pending)}", data
    )


def check_locks(session: Session, now: dt.datetime) -> Check:
    held = session.scalars(
        select(JobLock).where(JobLock.expires_at > now).order_by(JobLock.job)
    ).all()
    if not held:
        return Check("job_locks", OK, "no job is running", {"held": []})
    rows = [
        {"job": lock.job, "holder": lock.holder, "expires_at": lock.expires_at.isoformat()}
        for lock in held
    ]
    names = ", ".join(f"{r['job']} (until {r['expires_at']})" for r in rows)
    return Check("job_locks", FAIL, f"running now: {names}", {"held": rows})


def check_backlogs(session: Session, spec: Spec, now: dt.datetime) -> list[Check]:
    from faithflow_ops.slo.state import outbox_backlog
    from faithflow_ops.webhooks.applier import backlog

    checks = []
    for o in spec.objectives:
        if o.kind != "backlog":
            continue
        assert o.max_age_seconds is not None
        count, age = backlog(session, now) if o.queue == "webhook" else outbox_backlog(session, now)
        status = FAIL if age > o.max_age_seconds else OK
        checks.append(
            Check(
                f"{o.queue}_backlog",
                status,
                f"{count} waiting, oldest {round(age)} s (limit {o.max_age_seconds:g} s)",
                {"waiting": count, "oldest_seconds": round(age, 1)},
            )
        )
    return checks


def check_budgets(
    session: Session, spec: Spec, now: dt.datetime, *, allow_spent: bool
) -> list[Check]:
    from faithflow_ops.slo.report import build

    checks = []
    for line in build(session, spec, now=now, since=now - spec.window_delta):
        if line.budget is None or line.budget_left is None:
            continue
        left = line.budget_left
        spent = left <= 0
        status = (WARN if allow_spent else FAIL) if spent else OK
        checks.append(
            Check(
                f"budget:{line.name}",
                status,
                f"{left:.0%} of the error budget left over {spec.window}"
                + (" (spent: ship fixes only)" if spent else ""),
                {"budget_left": round(left, 4)},
            )
        )
    return checks


def run_checks(
    db: Database, spec: Spec, now: dt.datetime, *, migrated: bool = False, allow_spent: bool = False
) -> list[Check]:
    checks = [check_schema(db, migrated=migrated)]
    if checks[0].status == FAIL and checks[0].data.get("pending") is None:
        return checks  # a database newer than the code: its tables may not match the models
    pending = bool(checks[0].data.get("pending"))
    groups: list[tuple[str, Callable[[Session], list[Check]]]] = [
        ("job_locks", lambda session: [check_locks(session, now)]),
        ("backlogs", lambda session: check_backlogs(session, spec, now)),
        ("budgets", lambda session: check_budgets(session, spec, now, allow_spent=allow_spent)),
    ]
    for name, run in groups:
        try:
            with db.read_session() as session:  # one each: a failed read ends its transaction
                checks.extend(run(session))
        except DBAPIError as exc:
            if not pending:
                raise
            reason = str(exc.orig).strip().splitlines()[0] if exc.orig else type(exc).__name__
            checks.append(
                Check(name, WARN, f"not checked before migrating (the schema is older: {reason})")
            )
    return checks


def proceed(checks: list[Check]) -> bool:
    return all(c.status != FAIL for c in checks)
