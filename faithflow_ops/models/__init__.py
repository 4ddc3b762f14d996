"""All models, imported so `Base.metadata` knows every table (Alembic reads it)."""

from faithflow_ops.models.base import Base
from faithflow_ops.models.billing import (
    Invoice,
    PlanChange,
    ProviderAccount,
    Subscription,
    SubscriptionPlan,
)
from faithflow_ops.models.comms import Bounce, EarlyStatus, OutboundMessage, Suppression
from faithflow_ops.models.disputes import DisputeAlert
from faithflow_ops.models.dunning import (
    DunningAttempt,
    DunningCase,
    DunningPolicy,
    DunningPreference,
)
from faithflow_ops.models.kb import KbArticle, TicketKbLink
from faithflow_ops.models.ops import (
    AuditLog,
    HealthCheckResult,
    Incident,
    JobLock,
    JobRun,
    RequestTally,
)
from faithflow_ops.models.payments import Dispute, Payment
from faithflow_ops.models.platform import DomainCheck, DomainRunbookNote, TenantDomain
from faithflow_ops.models.retention import LegalHold
from faithflow_ops.models.security import MfaNotice, SecurityAudit, UserSession
from faithflow_ops.models.stream_moderation import (
    StreamBan,
    StreamChatMessage,
    StreamModerationAction,
    StreamSessionPolicy,
)
from faithflow_ops.models.stream_views import StreamView, StreamViewEvent
from faithflow_ops.models.streams import StreamChannel, StreamEvent, StreamSession
from faithflow_ops.models.support import (
    BusinessCalendar,
    SlaEvent,
    SlaPolicy,
    SupportMessage,
    SupportTicket,
)
from faithflow_ops.models.tenancy import Tenant, TenantSecurityPolicy, User
from faithflow_ops.models.volunteers import (
    VolunteerAssignment,
    VolunteerBlockout,
    VolunteerEvent,
    VolunteerNeed,
    VolunteerPerson,
    VolunteerPosition,
    VolunteerTeam,
    VolunteerTeamLeader,
)
from faithflow_ops.models.webhooks import WebhookEvent

__all__ = [
    "AuditLog",
    "Base",
    "Bounce",
    "BusinessCalendar",
    "Dispute",
    "DisputeAlert",
    "DomainCheck",
    "DomainRunbookNote",
    "DunningAttempt",
    "DunningCase",
    "DunningPolicy",
    "DunningPreference",
    "EarlyStatus",
    "HealthCheckResult",
    "Incident",
    "Invoice",
    "JobLock",
    "JobRun",
    "KbArticle",
    "LegalHold",
    "MfaNotice",
    "OutboundMessage",
    "Payment",
    "PlanChange",
    "ProviderAccount",
    "RequestTally",
    "SecurityAudit",
    "SlaEvent",
    "SlaPolicy",
    "StreamBan",
    "StreamChannel",
    "StreamChatMessage",
    "StreamEvent",
    "StreamModerationAction",
    "StreamSession",
    "StreamSessionPolicy",
    "StreamView",
    "StreamViewEvent",
    "Subscription",
    "SubscriptionPlan",
    "SupportMessage",
    "SupportTicket",
    "Suppression",
    "Tenant",
    "TenantDomain",
    "TenantSecurityPolicy",
    "TicketKbLink",
    "User",
    "UserSession",
    "VolunteerAssignment",
    "VolunteerBlockout",
    "VolunteerEvent",
    "VolunteerNeed",
    "VolunteerPerson",
    "VolunteerPosition",
    "VolunteerTeam",
    "VolunteerTeamLeader",
    "WebhookEvent",
]
