"""Each tenant's dunning preferences: channels allowed, contact overrides, quiet hours in the
tenant's time zone, SMS/WhatsApp opt-outs and a pause until a promised payment.

No `dunning_preferences` row (or a NULL field) means the default: every channel, the tenant's
billing email and phone, the default quiet hours (21:00-08:00 every day and Sunday 06:00-14:00),
no opt-out, no pause. `preferences_for` reads a whole run's tenants in two queries.

WhatsApp needs the church's opt-in for the number it is sent to (Meta's business policy), so
the WhatsApp number is never the phone by default: it is the number given with `--whatsapp`,
and WhatsApp is blocked until an opt-in is recorded for it with where it came from
(`--whatsapp-consent 'signed form, 2026-11-02'`) and when. Changing the number forgets the
opt-in. A blocked WhatsApp step goes by SMS (the dunning plan says so).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from faithflow_ops import audit
from faithflow_ops.clock import jsonable
from faithflow_ops.comms import contacts
from faithflow_ops.db import upsert_insert, utcnow
from faithflow_ops.dunning import quiet
from faithflow_ops.dunning.windows import DEFAULT_QUIET_HOURS, QuietWindow
from faithflow_ops.errors import UserError
from faithflow_ops.models import DunningPreference, Tenant

CHANNELS = ("email", "sms", "whatsapp")
_MAX_PAUSE = dt.timedelta(days=366)  # a pause is a promised payment, not a way to stop dunning
_CHUNK = 5000  # ids per IN (…) list: far below SQLite's and Postgres's bind-parameter limits


@dataclass(frozen=True)
class Preferences:
    tenant_id: int
    timezone: str  # the tenant's IANA zone
    channels: frozenset[str]  # channels allowed by the tenant (opt-outs NOT yet removed)
    email: str | None  # effective, normalised contacts: override, else tenants.billing_email
    phone: str | None  # override, else tenants.billing_phone
    whatsapp: str | None  # override, else the phone
    quiet_hours: tuple[QuietWindow, ...]
    sms_opt_out: bool
    whatsapp_opt_out: bool
    paused_until: dt.datetime | None
    pause_note: str | None = None
    whatsapp_opt_in_at: dt.datetime | None = None  # the opt-in for `whatsapp`, recorded when
    whatsapp_opt_in_source: str | None = None  # and where it came from
    # On the comms suppression list (a STOP reply, a bounce): (channel, why) — `with_suppressions`
    suppressed: tuple[tuple[str, str], ...] = ()
    locale: str = "en"  # the tenant's: which approved WhatsApp template (comms/whatsapp.py)

    def contact(self, channel: str) -> str | None:
        """The recipient on `channel` (normalised like a message's recipient), or None."""
        return {"email": self.email, "sms": self.phone, "whatsapp": self.whatsapp}.get(channel)

    def blocked(self, channel: str) -> str | None:
        """None when a dunning message may go out on `channel`, else why not."""
        if channel not in CHANNELS:
            return f"unknown channel {channel!r}"
        if channel not in self.channels:
            return "channel not allowed by the tenant"
        if channel == "sms" and self.sms_opt_out:
            return "sms opted out"
        if channel == "whatsapp" and self.whatsapp_opt_out:
            return "whatsapp opted out"
        if self.contact(channel) is None:
            return {
                "email": "no email address",
                "sms": "no phone number",
                "whatsapp": "no whatsapp number (the phone is not used without an opt-in)",
            }[channel]
        why = dict(self.suppressed).get(channel)
        if why is not None:
            return why
        if channel == "whatsapp" and self.whatsapp_opt_in_at is None:
            return "no whatsapp opt-in recorded (dunning prefs set --whatsapp-consent SOURCE)"
        return None

    def paused(self, now: dt.datetime) -> bool:
        """Dunning is paused for this tenant at `now` (a promised payment)."""
        return self.paused_until is not None and self.paused_until > now


def _windows(stored: list[dict[str, Any]] | None) -> tuple[QuietWindow, ...]:
    if stored is None:
        return DEFAULT_QUIET_HOURS
    return tuple(QuietWindow.from_dict(doc) for doc in stored)


def _build(
    tenant_id: int,
    timezone: str,
    billing_email: str | None,
    billing_phone: str | None,
    row: DunningPreference | None,
    locale: str = "en",
) -> Preferences:
    email = contacts.valid("email", (row.email if row else None) or billing_email)
    phone = contacts.valid("sms", (row.phone if row else None) or billing_phone)
    # never the phone by default: WhatsApp needs an opt-in for its number
    whatsapp = contacts.valid("whatsapp", row.whatsapp) if row and row.whatsapp else None
    allowed = row.channels if row is not None and row.channels is not None else CHANNELS
    return Preferences(
        tenant_id=tenant_id,
        timezone=timezone,
        channels=frozenset(c for c in allowed if c in CHANNELS),
        email=email,
        phone=phone,
        whatsapp=whatsapp,
        quiet_hours=_windows(row.quiet_hours if row is not None else None),
        sms_opt_out=bool(row and row.sms_opt_out),
        whatsapp_opt_out=bool(row and row.whatsapp_opt_out),
        paused_until=row.paused_until if row is not None else None,
        pause_note=row.pause_note if row is not None else None,
        whatsapp_opt_in_at=row.whatsapp_opt_in_at if row is not None and whatsapp else None,
        whatsapp_opt_in_source=row.whatsapp_opt_in_source if row is not None else None,
        locale=locale,
    )


def preferences_for(
    session: Session, tenant_ids: Iterable[int], now: dt.datetime | None = None
) -> dict[int, Preferences]:
    """The preferences of these tenants (unknown ids are left out): one query for the tenants
    and one for their preference rows per 5,000 ids, and one for their contacts' suppressions
    (`with_suppressions`: those in force at `now`; without `now`, only those for good)."""
    ids = sorted(set(tenant_ids))
    found: dict[int, Preferences] = {}
    for offset in range(0, len(ids), _CHUNK):
        chunk = ids[offset : offset + _CHUNK]
        tenants = session.execute(
            select(
                Tenant.id,
                Tenant.timezone,
                Tenant.billing_email,
                Tenant.billing_phone,
                Tenant.locale,
            ).where(Tenant.id.in_(chunk))
        ).all()
        rows = {
            row.tenant_id: row
            for row in session.scalars(
                select(DunningPreference).where(DunningPreference.tenant_id.in_(chunk))
            )
        }
        for t in tenants:
            found[t.id] = _build(
                t.id, t.timezone, t.billing_email, t.billing_phone, rows.get(t.id), t.locale
            )
    return with_suppressions(session, found, now)


# what save_preferences accepts, and the stored field each one sets
_FIELDS = (
    "channels",
    "email",
    "phone",
    "whatsapp",
    "quiet_hours",
    "sms_opt_out",
    "whatsapp_opt_out",
    "paused_until",
    "pause_note",
    "whatsapp_opt_in_at",
    "whatsapp_opt_in_source",
)
# what save_preferences takes besides the stored fields: the WhatsApp opt-in's source (it sets
# whatsapp_opt_in_source and whatsapp_opt_in_at = now; '' or None withdraws it)
_INPUTS = (*(f for f in _FIELDS if not f.startswith("whatsapp_opt_in")), "whatsapp_consent")
_CONSENT_LENGTH = 200  # String(200)


def _contact(channel: str, value: Any) -> str | None:
    if value is None or str(value).strip() == "":
        return None  # clear the override: back to the tenant's billing contact
    return contacts.normalize(channel, str(value))


def _validated(changes: dict[str, Any], now: dt.datetime) -> dict[str, Any]:
    unknown = sorted(set(changes) - set(_INPUTS))
    if unknown:
        raise UserError(f"unknown preference {unknown[0]!r}; preferences: {', '.join(_INPUTS)}")
    values: dict[str, Any] = {}
    for key, value in changes.items():
        if key == "channels":
            if value is None:
                values[key] = None
                continue
            chosen = [str(c).strip().lower() for c in value if str(c).strip()]
            bad = [c for c in chosen if c not in CHANNELS]
            if bad:
                raise UserError(f"channel {bad[0]!r} is not one of: {', '.join(CHANNELS)}")
            if not chosen:
                raise UserError(
                    "allow at least one channel (email, sms, whatsapp); to stop dunning "
                    "messages for a while use --pause-until DATE"
                )
            values[key] = [c for c in CHANNELS if c in chosen]
        elif key == "email":
            values[key] = _contact("email", value)
        elif key in ("phone", "whatsapp"):
            values[key] = _contact("sms" if key == "phone" else key, value)
        elif key == "quiet_hours":
            if value is None:
                values[key] = None
                continue
            windows = tuple(value)
            quiet.check_week(windows)
            values[key] = [w.to_dict() for w in windows]
        elif key == "whatsapp_consent":
            source = " ".join(str(value).split()) if value is not None else ""
            if len(source) > _CONSENT_LENGTH:
                raise UserError(
                    f"--whatsapp-consent is {len(source)} characters; at most {_CONSENT_LENGTH}: "
                    "say where the opt-in came from, e.g. 'signed form, 2026-11-02'"
                )
            values["whatsapp_opt_in_source"] = source or None
            values["whatsapp_opt_in_at"] = now if source else None
        elif key in ("sms_opt_out", "whatsapp_opt_out"):
            values[key] = bool(value)
        elif key == "paused_until":
            if value is not None:
                if value.tzinfo is None:
                    raise UserError("the pause must end at a time with a zone (or a date)")
                if value <= now:
                    raise UserError(
                        f"--pause-until {value.isoformat()} is not in the future; give a later "
                        "date, or --resume to end a pause"
                    )
                if value > now + _MAX_PAUSE:
                    raise UserError(
                        f"--pause-until {value.isoformat()} is more than a year away; "
                        "a pause holds dunning for a promised payment: give a date within "
                        "a year (cancel the subscription to stop dunning for good)"
                    )
                value = value.astimezone(dt.UTC)
            values[key] = value
        else:  # pause_note
            note = " ".join(str(value).split()) if value is not None else ""
            values[key] = note or None
    pausing = values.get("paused_until") is not None
    if pausing and not values.get("pause_note"):
        raise UserError(
            "say why dunning is paused with --note (e.g. 'treasurer promised payment on the 5th')"
        )
    if "paused_until" in values and values["paused_until"] is None:
        values["pause_note"] = None  # resuming forgets the promise
    return values


def _stored(row: DunningPreference) -> dict[str, Any]:
    return jsonable({key: getattr(row, key) for key in _FIELDS})


def save_preferences(
    session: Session,
    tenant_slug: str,
    *,
    actor: str,
    now: dt.datetime | None = None,
    **changes: Any,
) -> Preferences:
    """Change a tenant's preferences (`channels`, `email`, `phone`, `whatsapp` ('' or None
    clears an override), `quiet_hours` (QuietWindows; None = the defaults, () = none),
    `sms_opt_out`, `whatsapp_opt_out`, `paused_until` + `pause_note`), audited; values already
    held change nothing; `whatsapp_consent` (where the church's WhatsApp opt-in came from)
    records it for the WhatsApp number now (a new number without it forgets the old opt-in).
    UserError names a bad value."""
    from faithflow_ops.tenancy.tenants import ensure_writable, get_tenant

    if not changes:
        raise UserError(
            "nothing to change: give --channels, --email, --phone, --whatsapp, "
            "--whatsapp-consent, --quiet, --sms-opt-out/--sms-opt-in, "
            "--whatsapp-opt-out/--whatsapp-opt-in, --pause-until or --resume"
        )
    now = now or utcnow()
    tenant = get_tenant(session, tenant_slug)
    ensure_writable(tenant, "changed")
    values = _validated(changes, now)
    dialect = session.get_bind().dialect.name
    session.execute(
        upsert_insert(dialect, DunningPreference)
        .values(tenant_id=tenant.id, sms_opt_out=False, whatsapp_opt_out=False)
        .on_conflict_do_nothing(index_elements=["tenant_id"])
    )
    row = session.scalars(
        select(DunningPreference)
        .where(DunningPreference.tenant_id == tenant.id)
        .with_for_update()
        .execution_options(populate_existing=True)
    ).one()
    before = _stored(row)
    if (
        "whatsapp" in values
        and values["whatsapp"] != row.whatsapp
        and "whatsapp_consent" not in (changes)
    ):
        # the opt-in was for the old number
        values |= {"whatsapp_opt_in_at": None, "whatsapp_opt_in_source": None}
    number = values.get("whatsapp", row.whatsapp)
    if values.get("whatsapp_opt_in_at") is not None and not number:
        raise UserError(
            "--whatsapp-consent records the opt-in for the church's WhatsApp number, and it has "
            "none: give it with --whatsapp +234… (the phone is not assumed)"
        )
    changed = {key: value for key, value in values.items() if getattr(row, key) != value}
    if changed:
        for key, value in changed.items():
            setattr(row, key, value)
        row.updated_by = actor
        row.updated_at = now
        session.flush()
        after = _stored(row)
    prefs = _build(
        tenant.id, tenant.timezone, tenant.billing_email, tenant.billing_phone, row, tenant.locale
    )
    if changed:
        held = hold_pending(session, prefs, now=now, retime=bool(set(changed) & _RETIME))
        audit.record(
            session,
            actor=actor,
            action="dunning.prefs.set",
            entity_type="tenant",
            entity_id=tenant.id,
            tenant_id=tenant.id,
            before={key: before[key] for key in changed},
            after={key: after[key] for key in changed} | held,
        )
    return prefs


# Changes that can make a waiting dunning message's send time wrong (it may only move later).
_RETIME = frozenset({"paused_until", "quiet_hours"})


def hold_pending(
    session: Session, prefs: Preferences, *, now: dt.datetime, retime: bool = True
) -> dict[str, int]:
    """Bring the tenant's dunning messages still waiting in the outbox (queued/scheduled) in
    line with `prefs`, in the caller's transaction: a message on a channel the tenant now blocks
    (opt-out, channel no longer allowed, contact cleared) is canceled; with `retime`, one due
    during a pause or in the quiet hours is moved to the first allowed minute after them —
    later only, never earlier, never dropped. Without this a reminder scheduled before a pause
    (or an opt-out) would still go out. Counts: `messages_canceled`, `messages_rescheduled`."""
    from faithflow_ops.models import OutboundMessage
    from faithflow_ops.models.comms import PENDING_STATUSES

    counts = {"messages_canceled": 0, "messages_rescheduled": 0}
    waiting = session.scalars(
        select(OutboundMessage)
        .where(
            OutboundMessage.tenant_id == prefs.tenant_id,
            OutboundMessage.category == "dunning",  # dunning.cases.CATEGORY
            OutboundMessage.status.in_(PENDING_STATUSES),
        )
        .order_by(OutboundMessage.id)
        .with_for_update()
    ).all()
    for message in waiting:
        why = prefs.blocked(message.channel)
        if why is not None:
            message.status = "canceled"
            message.canceled_at = now
            message.last_error = f"canceled: {why} (dunning preferences changed)"
            message.updated_at = now
            counts["messages_canceled"] += 1
            continue
        if not retime:
            continue
        due = max(message.next_attempt_at, now)
        at = due
        if prefs.paused(now):
            assert prefs.paused_until is not None
            at = max(at, prefs.paused_until)
        at = quiet.first_allowed(at, prefs.timezone, prefs.quiet_hours)
        if at > due:
            message.status = "scheduled"
            message.next_attempt_at = at
            message.not_before = max(message.not_before, at)
            message.updated_at = now
            counts["messages_rescheduled"] += 1
    session.flush()
    return counts


def preferences_doc(session: Session, tenant_slug: str, *, now: dt.datetime) -> dict[str, Any]:
    """What `dunning prefs show` prints: stored values, effective values and why a channel is
    blocked."""
    from faithflow_ops.tenancy.tenants import get_tenant

    tenant = get_tenant(session, tenant_slug)
    row = session.scalar(select(DunningPreference).where(DunningPreference.tenant_id == tenant.id))
    prefs = _build(
        tenant.id, tenant.timezone, tenant.billing_email, tenant.billing_phone, row, tenant.locale
    )
    prefs = with_suppressions(session, {tenant.id: prefs}, now)[tenant.id]
    return prefs_document(tenant, row, prefs, now=now)


def prefs_document(
    tenant: Tenant, row: DunningPreference | None, prefs: Preferences, *, now: dt.datetime
) -> dict[str, Any]:
    return {
        "tenant": tenant.slug,
        "tenant_id": tenant.id,
        "timezone": prefs.timezone,
        "stored": row is not None,
        "channels": [c for c in CHANNELS if c in prefs.channels],
        "contacts": {c: prefs.contact(c) for c in CHANNELS},
        "overrides": {
            "email": row.email if row else None,
            "phone": row.phone if row else None,
            "whatsapp": row.whatsapp if row else None,
        },
        "blocked": {c: prefs.blocked(c) for c in CHANNELS},
        "suppressed": dict(prefs.suppressed),
        "quiet_hours": [w.to_dict() | {"text": w.describe()} for w in prefs.quiet_hours],
        "quiet_hours_default": row is None or row.quiet_hours is None,
        "sms_opt_out": prefs.sms_opt_out,
        "whatsapp_opt_out": prefs.whatsapp_opt_out,
        "whatsapp_opt_in": {
            "at": prefs.whatsapp_opt_in_at,
            "source": prefs.whatsapp_opt_in_source,
        }
        if prefs.whatsapp_opt_in_at is not None
        else None,
        "paused_until": prefs.paused_until,
        "pause_note": prefs.pause_note,
        "paused": prefs.paused(now),
        "updated_by": row.updated_by if row else None,
        "updated_at": row.updated_at if row else None,
    }


_SUPPRESSED_BECAUSE = {
    "stop": "the number replied STOP",
    "bounce": "the address bounced",
    "complaint": "a spam complaint",
    "unsubscribe": "unsubscribed",
}


def with_suppressions(
    session: Session, found: dict[int, Preferences], now: dt.datetime | None
) -> dict[int, Preferences]:
    """`found` with each channel whose contact is on the comms suppression list (in force at
    `now`; without `now`, only entries for good) marked blocked, saying why and what lifts it:
    a STOP reply shows in `dunning prefs show` and the ladder falls back past it."""
    from dataclasses import replace

    from faithflow_ops.comms.suppression import suppressions_of

    wanted = {
        (channel, contact)
        for prefs in found.values()
        for channel in CHANNELS
        if (contact := prefs.contact(channel)) is not None
    }
    held = suppressions_of(session, sorted(wanted), now)
    if not held:
        return found
    out = dict(found)
    for tenant_id, prefs in found.items():
        marks = []
        for channel in CHANNELS:
            entry = held.get((channel, prefs.contact(channel) or ""))
            if entry is None:
                continue
            because = _SUPPRESSED_BECAUSE.get(entry["reason"], entry["reason"])
            since = entry["since"].date().isoformat() if entry["since"] else "?"
            until = f", until {entry['until'].date().isoformat()}" if entry["until"] else ""
            lift = (
                "a START reply lifts it"
                if entry["reason"] == "stop"
                else "`faithflow comms suppress remove` lifts it"
            )
            marks.append((channel, f"suppressed: {because} (since {since}{until}); {lift}"))
        if marks:
            out[tenant_id] = replace(prefs, suppressed=tuple(marks))
    return out
