"""How long each data class is kept: the platform's default per class (settings
`FAITHFLOW_RETENTION_<CLASS>_DAYS`, or the run's options) and a tenant's own period
(`tenants policy set --retention-days`, `tenant_security_policies.data_retention_days`), which
overrides the default for every class of that tenant's rows. Platform data (job runs, health
history) follows the platform default only. A tenant without a period of its own (NULL) follows
the platform default."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass, field

from sqlalchemy import select
from sqlalchemy.orm import Session

from faithflow_ops.config import RETENTION_DAYS
from faithflow_ops.models import TenantSecurityPolicy

CLASSES = tuple(RETENTION_DAYS)
TENANT_CLASSES = frozenset(
    {"support_tickets", "outbound_messages", "webhook_payloads", "deleted_tenants"}
)


@dataclass(frozen=True)
class Periods:
    days: Mapping[str, int]  # platform default per data class
    own: Mapping[int, int] = field(default_factory=dict)  # tenant id -> its own period

    @classmethod
    def load(cls, session: Session, days: Mapping[str, int]) -> Periods:
        own = {
            tenant_id: value
            for tenant_id, value in session.execute(
                select(TenantSecurityPolicy.tenant_id, TenantSecurityPolicy.data_retention_days)
            ).tuples()
            if value is not None
        }
        return cls({**RETENTION_DAYS, **days}, own)

    def period(self, data_class: str, tenant_id: int | None) -> int:
        if tenant_id is not None and data_class in TENANT_CLASSES and tenant_id in self.own:
            return self.own[tenant_id]
        return self.days[data_class]

    def cutoff(self, now: dt.datetime, data_class: str, tenant_id: int | None) -> dt.datetime:
        return now - dt.timedelta(days=self.period(data_class, tenant_id))

    def latest_cutoff(self, now: dt.datetime, data_class: str) -> dt.datetime:
        """The latest cutoff any tenant has for the class (the shortest period): one range scan
        up to it finds every candidate, each then held to its own tenant's cutoff."""
        periods = [self.days[data_class]]
        if data_class in TENANT_CLASSES:
            periods.extend(self.own.values())
        return now - dt.timedelta(days=min(periods))
