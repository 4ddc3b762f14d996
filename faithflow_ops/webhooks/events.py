"""A verified delivery's body → `InboundEvent`: what the inbox stores and the handlers read.

Idempotency keys (`event_key`, unique per provider and scope):

- Stripe: the event's own `id` (`evt_…`). Stripe sends the same id on every retry.
- Paystack sends no event id, so the key is built from what the event says about its object:
  the event name, the object's own identifiers (`id`, `reference`, `subscription_code`,
  `invoice_code`, `customer_code` — for `subscription.expiring_cards`, each listed
  subscription's code and card expiry), its `status` (and `paid` for invoices) and the
  object's own last-change time (`updatedAt`, `paid_at`, `resolvedAt`, … when present). A
  retry repeats the body, so it maps to the same key; a change of state (a new status, a new
  payment time) is a different event and gets a different key. Keys longer than 255
  characters are shortened to the event name and a SHA-256 of the full key. A body with none
  of those fields falls back to the SHA-256 of its canonical JSON.
- Mux: the event's own `id` (a UUID; Mux may deliver one event more than once and says to
  dedupe on it — https://www.mux.com/docs/core/listen-for-webhooks). Its `object_id` is the
  live stream the event is about (`data.id` of a `video.live_stream.*` event,
  `data.live_stream_id` of a live stream's asset), so the applier serialises one stream's
  events; an asset of no live stream keeps its own id.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from dataclasses import dataclass
from typing import Any

from faithflow_ops.providers.ids import check

KEY_MAX = 255

# The object's own identifiers, in key order.
_PAYSTACK_ID_FIELDS = ("id", "reference", "subscription_code", "invoice_code", "customer_code")
_PAYSTACK_STATE_FIELDS = ("status", "paid")
# The object's own time of last change, most specific first.
_PAYSTACK_TIME_FIELDS = (
    "updatedAt",
    "updated_at",
    "resolvedAt",
    "resolved_at",
    "paid_at",
    "paidAt",
    "createdAt",
    "created_at",
)


def storable(value: str | None) -> str | None:
    """`value` as every database can store it in a text column: itself when it holds no NUL
    and no lone surrogate (the common case, returned as the same object), else with those
    escaped (`\\x00`, `\\ud800`). Postgres refuses both in text, psycopg cannot encode the
    second; a key escaped this way is still stable, so retries of the event dedupe."""
    if value is None or ("\x00" not in value and (value.isascii() or _encodes(value))):
        return value
    escaped = value.encode("utf-8", "backslashreplace").decode("utf-8")
    return escaped.replace("\x00", "\\x00")


def _encodes(value: str) -> bool:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _unix_time(seconds: int) -> dt.datetime | None:
    """Stripe's `created` as an aware datetime; None when it is outside the years 1–9999
    (a signed event is stored all the same, with no provider time)."""
    try:
        return dt.datetime.fromtimestamp(seconds, dt.UTC)
    except (OverflowError, OSError, ValueError):
        return None


class MalformedEvent(ValueError):
    """A verified body that is not an event of the provider's documented shape."""


@dataclass(frozen=True)
class InboundEvent:
    provider: str  # stripe | paystack | mux
    scope: str  # platform | tenant (mux: platform)
    key: str
    type: str
    object: Any  # Stripe: data.object; Paystack: data (a list for expiring_cards)
    object_id: str | None
    customer_ref: str | None  # canonical provider customer id, when the event names one
    account_ref: str | None  # Stripe Connect account / Paystack subaccount code
    occurred_at: dt.datetime | None  # the provider's time for this state of the object
    payload: dict[str, Any]


def parse(provider: str, scope: str, payload: object) -> InboundEvent:
    if not isinstance(payload, dict):
        raise MalformedEvent(f"a {provider} event is a JSON object, not a {type(payload).__name__}")
    if provider == "stripe":
        return _stripe(scope, payload)
    if provider == "mux":
        return _mux(scope, payload)
    return _paystack(scope, payload)


def _text(value: object) -> str | None:
    return value if isinstance(value, str) and value else None


def _integer(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _shown(value: object) -> str:
    """A wrong id's type for a message (never the value: it may be long or hostile)."""
    if value is None:
        return "null"
    if value == "":
        return "empty"
    return f"a {'boolean' if isinstance(value, bool) else type(value).__name__}"


def canonical_customer(provider: str, raw: object) -> str | None:
    """A customer id as `subs backfill` writes it (trimmed, validated), or None."""
    if isinstance(raw, dict):  # Paystack nests the customer object
        raw = raw.get("customer_code")
    return check(provider, "customer", raw).value if raw is not None else None


# ---------------------------------------------------------------------------------------------
# Stripe


def _stripe(scope: str, payload: dict[str, Any]) -> InboundEvent:
    event_id = _text(payload.get("id"))
    event_type = _text(payload.get("type"))
    created = payload.get("created")
    data = payload.get("data")
    obj = data.get("object") if isinstance(data, dict) else None
    missing = [
        name
        for name, ok in (
            ("id", event_id),
            ("type", event_type),
            ("created", isinstance(created, int) and not isinstance(created, bool)),
            ("data.object", isinstance(obj, dict)),
        )
        if not ok
    ]
    if missing:
        raise MalformedEvent(f"not a Stripe event: missing or wrong {', '.join(missing)}")
    assert event_id and event_type and isinstance(obj, dict) and isinstance(created, int)
    event_id = storable(event_id) or event_id
    if len(event_id) > KEY_MAX:
        raise MalformedEvent(f"Stripe event id is longer than {KEY_MAX} characters")
    if "id" in obj and not _text(obj["id"]):
        raise MalformedEvent(
            f"Stripe event {event_id}: data.object.id is {_shown(obj['id'])}, not a string id"
        )
    object_id = _text(obj.get("id"))
    if obj.get("object") == "customer":
        customer = canonical_customer("stripe", object_id)
    else:
        customer = canonical_customer("stripe", obj.get("customer"))
    return InboundEvent(
        provider="stripe",
        scope=scope,
        key=event_id,
        type=event_type,
        object=obj,
        object_id=object_id,
        customer_ref=customer,
        account_ref=_text(payload.get("account")),
        occurred_at=_unix_time(created),
        payload=payload,
    )


# ---------------------------------------------------------------------------------------------
# Mux


def _mux(scope: str, payload: dict[str, Any]) -> InboundEvent:
    """Mux's webhook envelope (https://www.mux.com/webhook-spec.json): `type`, `id`,
    `created_at` (ISO 8601), `object` {`type`, `id`}, `environment`, `data` (the live stream
    or asset as the API returns it)."""
    event_id = _text(payload.get("id"))
    event_type = _text(payload.get("type"))
    created = parse_time(payload.get("created_at"))
    data = payload.get("data")
    missing = [
        name
        for name, ok in (
            ("id", event_id),
            ("type", event_type),
            ("created_at", created is not None),
            ("data", isinstance(data, dict)),
        )
        if not ok
    ]
    if missing:
        raise MalformedEvent(f"not a Mux event: missing or wrong {', '.join(missing)}")
    assert event_id and event_type and isinstance(data, dict)
    event_id = storable(event_id) or event_id
    if len(event_id) > KEY_MAX:
        raise MalformedEvent(f"Mux event id is longer than {KEY_MAX} characters")
    for name in ("id", "live_stream_id"):
        if (name == "id" or data.get(name) is not None) and not _text(data.get(name)):
            raise MalformedEvent(
                f"Mux {event_type} event {event_id}: data.{name} is {_shown(data.get(name))}, "
                "not a string id"
            )
    if event_type.startswith("video.live_stream."):
        object_id = _text(data.get("id"))
    else:
        object_id = _text(data.get("live_stream_id")) or _text(data.get("id"))
    return InboundEvent(
        provider="mux",
        scope=scope,
        key=event_id,
        type=event_type,
        object=data,
        object_id=object_id,
        customer_ref=None,
        account_ref=None,
        occurred_at=created,
        payload=payload,
    )


# ---------------------------------------------------------------------------------------------
# Paystack


def _paystack(scope: str, payload: dict[str, Any]) -> InboundEvent:
    event_type = _text(payload.get("event"))
    data = payload.get("data")
    if not event_type or not isinstance(data, dict | list):
        raise MalformedEvent("not a Paystack event: it needs an `event` name and a `data` object")
    first = data if isinstance(data, dict) else (data[0] if data else {})
    if not isinstance(first, dict):
        raise MalformedEvent("not a Paystack event: `data` holds something other than objects")
    object_id = None
    for name in ("subscription_code", "invoice_code", "reference", "id"):
        value = first.get(name)
        if value is None:  # absent or null: the handlers treat both as "not given"
            continue
        if not (_text(value) or (name == "id" and _integer(value))):
            kind = "an integer or a string" if name == "id" else "a string"
            raise MalformedEvent(
                f"Paystack {event_type} event: data.{name} is {_shown(value)}, not {kind}"
            )
        object_id = object_id or str(value)
    subaccount = first.get("subaccount")
    if not isinstance(subaccount, dict):  # disputes nest it in the transaction
        transaction = first.get("transaction")
        subaccount = transaction.get("subaccount") if isinstance(transaction, dict) else None
    account = _text(subaccount.get("subaccount_code")) if isinstance(subaccount, dict) else None
    return InboundEvent(
        provider="paystack",
        scope=scope,
        key=paystack_event_key(event_type, data),
        type=event_type,
        object=data,
        object_id=object_id,
        customer_ref=canonical_customer("paystack", first.get("customer")),
        account_ref=account,
        occurred_at=_paystack_time(first),
        payload=payload,
    )


def json_object(value: object) -> dict[str, Any]:
    """A nested object, or JSON text of one (Paystack sends `metadata` either way)."""
    if isinstance(value, str) and value.strip().startswith("{"):
        try:
            value = json.loads(value)
        except ValueError:
            return {}
    return value if isinstance(value, dict) else {}


def _has_plan(data: dict[str, Any]) -> bool:
    plan = data.get("plan")
    if isinstance(plan, dict):
        return bool(plan.get("plan_code") or plan.get("id"))
    return isinstance(plan, str) and plan.strip() != ""


def paystack_scope(payload: object, default: str) -> str:
    """Which of our scopes a Paystack event belongs to, read from its content.

    Paystack posts every event of an integration to one URL, and both of our endpoints share
    PAYSTACK_SECRET_KEY, so the URL an event came to says little. Platform (FaithFlow billing
    a church): `subscription.*`, `invoice.*`, a charge with a `plan` (or our `metadata.plan`),
    a dunning retry (`metadata.dunning_case`). Tenant (a church's own payments): a charge on a
    subaccount, or naming `metadata.tenant` without any of the platform marks. A dispute is
    read through the transaction it disputes. Anything else keeps the URL's scope (`default`).
    """
    if not isinstance(payload, dict):
        return default
    event = payload.get("event")
    if isinstance(event, str) and event.startswith(("subscription.", "invoice.")):
        return "platform"
    data = payload.get("data")
    if not isinstance(data, dict):
        return default
    dispute = isinstance(event, str) and event.startswith("charge.dispute.")
    if dispute:
        data = json_object(data.get("transaction"))
    meta = json_object(data.get("metadata"))
    if _has_plan(data) or meta.get("plan") or meta.get("dunning_case") is not None:
        return "platform"
    subaccount = data.get("subaccount")
    if (isinstance(subaccount, dict) and subaccount.get("subaccount_code")) or meta.get("tenant"):
        return "tenant"
    # A church's own payments always name their subaccount or tenant: a dispute on a charge
    # that names neither is on one of the platform's own charges.
    return "platform" if dispute else default


def _scalar(value: object) -> str | None:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str | int) and value != "":
        return str(value)
    return None


def _key_parts(obj: dict[str, Any]) -> list[str]:
    parts = []
    for name in (*_PAYSTACK_ID_FIELDS, *_PAYSTACK_STATE_FIELDS):
        value = _scalar(obj.get(name))
        if value is not None:
            parts.append(f"{name}={value}")
    for name in _PAYSTACK_TIME_FIELDS:
        value = _scalar(obj.get(name))
        if value is not None:
            parts.append(f"{name}={value}")
            break
    return parts


def paystack_event_key(event: str, data: object) -> str:
    """The stable key of a Paystack event (the rule is in this module's docstring)."""
    parts: list[str] = []
    if isinstance(data, dict):
        parts = _key_parts(data)
    elif isinstance(data, list):  # subscription.expiring_cards: one entry per subscription
        entries = []
        for entry in data:
            if not isinstance(entry, dict):
                continue
            sub = entry.get("subscription")
            code = _scalar(sub.get("subscription_code")) if isinstance(sub, dict) else None
            entries.append(f"{code}@{_scalar(entry.get('expiry_date'))}")
        parts = sorted(entries)
    if not parts:
        canonical = json.dumps(data, sort_keys=True, separators=(",", ":"), default=str)
        return _hashed(event, hashlib.sha256(canonical.encode()).hexdigest())
    key = ":".join([event, *parts])
    if len(key) > KEY_MAX:
        return _hashed(event, hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest())
    return storable(key) or key


def _hashed(event: str, digest: str) -> str:
    """`<event>:sha256=<digest>`, the event name cut so the whole key fits KEY_MAX."""
    suffix = f":sha256={digest}"
    return f"{(storable(event) or '')[: KEY_MAX - len(suffix)]}{suffix}"


def parse_time(value: object) -> dt.datetime | None:
    """Paystack's ISO-8601 times (`2026-03-01T09:00:00.000Z`) → aware UTC; None if absent/bad."""
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed.replace(tzinfo=dt.UTC) if parsed.tzinfo is None else parsed.astimezone(dt.UTC)


def _paystack_time(obj: dict[str, Any]) -> dt.datetime | None:
    for name in _PAYSTACK_TIME_FIELDS:
        parsed = parse_time(obj.get(name))
        if parsed is not None:
            return parsed
    return None
