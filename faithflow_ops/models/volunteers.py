"""Volunteer scheduling (issue 17): teams and their leaders, positions, people, events (services),
needs (event × position × count), assignments and blockouts.

Anchors: Planning Center Services (confirmed / unconfirmed / declined, reminders sent at 10 a.m.
local time, one condensed reminder a day, needed positions) and Rock RMS (reminder offsets per
group or member, -1 = off; schedule exclusions). docs/volunteers.md.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import CheckConstraint, Date, ForeignKey, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from faithflow_ops.db import UTCDateTime
from faithflow_ops.models.base import Base, CreatedAt, Timestamps, in_list, partial_index

ASSIGNMENT_STATUSES = ("pending", "confirmed", "declined")
CHANNELS = ("email", "sms", "whatsapp")
REPEATS = ("none", "weekly")
REMINDER_OFF = -1  # a reminder offset of -1 days: no reminders (Rock RMS)


class VolunteerPerson(Timestamps, Base):
    __tablename__ = "volunteer_people"
    __table_args__ = (
        CheckConstraint(in_list("channel", CHANNELS), name="channel_known"),
        CheckConstraint(
            "reminder_days IS NULL OR (reminder_days >= -1 AND reminder_days <= 14)",
            name="reminder_days_range",
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id"), index=True)
    name: Mapped[str] = mapped_column(String(200))
    email: Mapped[str | None] = mapped_column(String(320))
    phone: Mapped[str | None] = mapped_column(String(32))
    channel: Mapped[str] = mapped_column(String(16), default="email", server_default="email")
    # Days before an event this person is reminded; NULL = the team's, -1 = never.
    reminder_days: Mapped[int | None] = mapped_column(Integer)


class VolunteerTeam(Timestamps, Base):
    __tablename__ = "volunteer_teams"
    __table_args__ = (
        UniqueConstraint("tenant_id", "name"),
        CheckConstraint(
            "reminder_days IS NULL OR (reminder_days >= -1 AND reminder_days <= 14)",
            name="reminder_days_range",
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id"))
    name: Mapped[str] = mapped_column(String(200))
    # Days before an event its members are reminded; NULL = the default (2), -1 = never.
    reminder_days: Mapped[int | None] = mapped_column(Integer)


class VolunteerTeamLeader(CreatedAt, Base):
    __tablename__ = "volunteer_team_leaders"
    __table_args__ = (UniqueConstraint("team_id", "person_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    team_id: Mapped[int] = mapped_column(ForeignKey("volunteer_teams.id", ondelete="CASCADE"))
    person_id: Mapped[int] = mapped_column(ForeignKey("volunteer_people.id", ondelete="CASCADE"))


class VolunteerPosition(CreatedAt, Base):
    __tablename__ = "volunteer_positions"
    __table_args__ = (UniqueConstraint("team_id", "name"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id"))
    team_id: Mapped[int] = mapped_column(ForeignKey("volunteer_teams.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(200))


class VolunteerEvent(Timestamps, Base):
    __tablename__ = "volunteer_events"

    id: Mapped[int] = mapped_column(primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id"))
    name: Mapped[str] = mapped_column(String(200))
    # volunteers remind / gaps: the events still to come, by start
    starts_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), index=True)
    timezone: Mapped[str] = mapped_column(String(64))  # IANA; the tenant's when added


class VolunteerNeed(Timestamps, Base):
    __tablename__ = "volunteer_needs"
    __table_args__ = (
        UniqueConstraint("event_id", "position_id"),
        CheckConstraint("needed >= 0", name="needed_not_negative"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id"))
    event_id: Mapped[int] = mapped_column(ForeignKey("volunteer_events.id", ondelete="CASCADE"))
    position_id: Mapped[int] = mapped_column(
        ForeignKey("volunteer_positions.id", ondelete="CASCADE")
    )
    needed: Mapped[int] = mapped_column(Integer)
    # volunteers gaps: the last alert (threshold in days, gap); NULL = no open alert
    alerted_threshold: Mapped[int | None] = mapped_column(Integer)
    alerted_gap: Mapped[int | None] = mapped_column(Integer)
    alerted_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())


class VolunteerAssignment(Timestamps, Base):
    __tablename__ = "volunteer_assignments"
    __table_args__ = (
        UniqueConstraint("event_id", "position_id", "person_id"),
        CheckConstraint(in_list("status", ASSIGNMENT_STATUSES), name="status_known"),
        # volunteers remind: the assignments that may still be reminded
        partial_index(
            "ix_volunteer_assignments_remind",
            "event_id",
            where="status IN ('pending', 'confirmed')",
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id"))
    event_id: Mapped[int] = mapped_column(ForeignKey("volunteer_events.id", ondelete="CASCADE"))
    position_id: Mapped[int] = mapped_column(
        ForeignKey("volunteer_positions.id", ondelete="CASCADE")
    )
    person_id: Mapped[int] = mapped_column(
        ForeignKey("volunteer_people.id", ondelete="CASCADE"), index=True
    )
    status: Mapped[str] = mapped_column(String(16), default="pending", server_default="pending")
    decline_reason: Mapped[str | None] = mapped_column(Text)
    responded_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    confirmation_requested_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    reminded_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    # The event start the reminder (or the blockout flag) was for: a moved event re-arms it.
    reminded_for_start: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    conflict_flagged_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())


class VolunteerBlockout(CreatedAt, Base):
    """Days a person cannot serve: `starts_on`..`ends_on` (local dates, inclusive), repeated
    every week until `repeat_until` (NULL: for good) when `repeat` is weekly."""

    __tablename__ = "volunteer_blockouts"
    __table_args__ = (
        CheckConstraint(in_list("repeat", REPEATS), name="repeat_known"),
        CheckConstraint("ends_on >= starts_on", name="ends_after_start"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id"))
    person_id: Mapped[int] = mapped_column(
        ForeignKey("volunteer_people.id", ondelete="CASCADE"), index=True
    )
    starts_on: Mapped[dt.date] = mapped_column(Date)
    ends_on: Mapped[dt.date] = mapped_column(Date)
    repeat: Mapped[str] = mapped_column(String(16), default="none", server_default="none")
    repeat_until: Mapped[dt.date | None] = mapped_column(Date)
    reason: Mapped[str | None] = mapped_column(Text)
