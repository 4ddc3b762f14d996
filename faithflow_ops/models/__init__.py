"""All models, imported so `Base.metadata` knows every table (Alembic reads it)."""

from faithflow_ops.models.base import Base
from faithflow_ops.models.billing import Invoice, Subscription, SubscriptionPlan
from faithflow_ops.models.ops import AuditLog, JobLock, JobRun
from faithflow_ops.models.tenancy import Tenant, TenantSecurityPolicy, User

__all__ = [
    "AuditLog",
    "Base",
    "Invoice",
    "JobLock",
    "JobRun",
    "Subscription",
    "SubscriptionPlan",
    "Tenant",
    "TenantSecurityPolicy",
    "User",
]
