"""`faithflow security enforce` (preview: `security preview` = `enforce --dry-run`;
POST /tasks/security/enforce; CRON_SECURITY_ENFORCE): enforce tenant security policies on
sign-in sessions and staff accounts.

Action kinds (faithflow_ops/security/enforce.py has the rules; docs/security.md the runbook):
`revoke_session` (idle past the timeout, expired, password where SSO is required, no MFA where
it is required, user disabled), `warn_mfa`, `disable_user` (after `--grace-days` without MFA)
and `close_mfa_notice` (enrolled, or no longer required: re-enables a user this job disabled).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from typing import Any

from sqlalchemy.orm import Session

from faithflow_ops.jobs.base import Action, Job, JobContext
from faithflow_ops.jobs.options import SecurityEnforceOptions
from faithflow_ops.security import enforce


class SecurityEnforce(Job):
    name = "security_enforce"
    table_columns = ("kind", "target", "rule", "detail")

    @classmethod
    def table_rows(cls, action: Action) -> list[tuple[Any, ...]]:
        return enforce.table_rows(action)

    def plan(self, session: Session, ctx: JobContext) -> Iterator[Action]:
        grace = dt.timedelta(days=self.options(ctx, SecurityEnforceOptions).grace_days)
        return enforce.plan(session, ctx.now, grace, ctx.limit)

    def apply(self, session: Session, ctx: JobContext, action: Action) -> None:
        enforce.apply(session, action, ctx.now, ctx.settings)


JOB = SecurityEnforce()
