"""Provider identifiers in historical subscription metadata: find them, validate them, and work
out the canonical columns and metadata keys they belong in (the rules of `faithflow subs
backfill`). Pure functions over plain data — no database — so every rule has a fast test.

Decisions an operator should know:

- The subscription's `provider` column says whose identifier a key holds: `customer` on a Stripe
  subscription is a Stripe customer, on a Paystack one the Paystack customer. Keys that name the
  other provider (`stripeCustomerId` on a Paystack subscription) are left alone.
- Surrounding whitespace (a copy-paste artefact) is trimmed and the id accepted. Whitespace
  inside, a wrong prefix (case matters: `cus_` is Stripe, `CUS_` Paystack), other characters,
  non-strings, or more than 128 characters (the column size) make a value invalid: reported,
  never written.
- Paystack's `customer.id` and subscription `id` are integers in Paystack's API, not the
  `CUS_…`/`SUB_…` codes that its manage links need. An object's `id` is read only when the object
  carries no code; a numeric id is then reported as invalid.
- Existing values win. A second, different valid value anywhere (the column, a canonical key,
  any other key) is a conflict left for a human; an existing value is only ever rewritten to
  trim whitespace from the very same id.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from faithflow_ops.providers.ids import FORMATS as FORMATS
from faithflow_ops.providers.ids import KINDS as KINDS
from faithflow_ops.providers.ids import MAX_LENGTH as MAX_LENGTH
from faithflow_ops.providers.ids import Checked as Checked
from faithflow_ops.providers.ids import IdFormat as IdFormat
from faithflow_ops.providers.ids import Kind as Kind
from faithflow_ops.providers.ids import check as check
from faithflow_ops.providers.ids import json_type

# Where a resolved identifier is written: the column (if it has one) and the canonical key.
COLUMNS: dict[Kind, str] = {
    "customer": "provider_customer_id",
    "subscription": "provider_subscription_id",
}
CANONICAL_KEYS: dict[tuple[str, Kind], str] = {
    ("stripe", "customer"): "stripeCustomerId",
    ("paystack", "customer"): "paystackCustomerCode",
    ("paystack", "subscription"): "paystackSubscriptionCode",
    ("paystack", "email_token"): "paystackEmailToken",
    ("paystack", "authorization"): "paystackAuthorizationCode",
}


def target_field(provider: str, kind: Kind) -> str:
    """The name a kind is reported under: its column, else its canonical metadata key."""
    column = COLUMNS.get(kind)
    return column if column else f"metadata.{CANONICAL_KEYS[(provider, kind)]}"


def name_of_key(key: str) -> str:
    return f"metadata.{key}"


# Per provider, in reporting order: (kind, column, canonical key, its field name, reported as).
_TARGETS: dict[str, tuple[tuple[Kind, str | None, str | None, str, str], ...]] = {
    provider: tuple(
        (
            kind,
            COLUMNS.get(kind),
            CANONICAL_KEYS.get((provider, kind)),
            name_of_key(CANONICAL_KEYS.get((provider, kind), "")),
            target_field(provider, kind),
        )
        for kind in KINDS
        if (provider, kind) in FORMATS
    )
    for provider in ("stripe", "paystack")
}


# ---------------------------------------------------------------------------------------------
# Finding identifiers in metadata


class Finding(NamedTuple):
    """One identifier-shaped value and where it was found (`metadata.customer.id`)."""

    kind: Kind
    source: str
    raw: Any
    value: str | None  # normalised id when valid
    problem: str | None = None  # why not, when invalid

    @property
    def valid(self) -> bool:
        return self.value is not None


Fields = tuple[tuple[str, Kind], ...]


@dataclass(frozen=True, slots=True)
class _Rules:
    provider: str
    keys: Fields  # keys of the metadata object (and of its namespace object)
    namespace: str  # `stripe` / `paystack`: a nested object read with the same keys
    fields: Mapping[Kind, Fields]  # fields of an object found under a key of that kind
    id_fallback: bool  # read an object's `id` only when it holds no code of its own kind
    canonical: frozenset[str]  # keys that must hold a plain string


_STRIPE = _Rules(
    provider="stripe",
    keys=(
        ("stripeCustomerId", "customer"),
        ("stripe_customer_id", "customer"),
        ("customerId", "customer"),
        ("customer_id", "customer"),
        ("customer", "customer"),
        ("stripeSubscriptionId", "subscription"),
        ("stripe_subscription_id", "subscription"),
        ("subscriptionId", "subscription"),
        ("subscription_id", "subscription"),
        ("subscription", "subscription"),
    ),
    namespace="stripe",
    fields={
        "customer": (("id", "customer"),),
        "subscription": (("id", "subscription"), ("customer", "customer")),
    },
    id_fallback=False,
    canonical=frozenset({"stripeCustomerId"}),
)

_PAYSTACK = _Rules(
    provider="paystack",
    keys=(
        ("paystackCustomerCode", "customer"),
        ("paystack_customer_code", "customer"),
        ("customer_code", "customer"),
        ("customerCode", "customer"),
        ("customerId", "customer"),
        ("customer_id", "customer"),
        ("customer", "customer"),
        ("paystackSubscriptionCode", "subscription"),
        ("paystack_subscription_code", "subscription"),
        ("subscription_code", "subscription"),
        ("subscriptionCode", "subscription"),
        ("subscriptionId", "subscription"),
        ("subscription_id", "subscription"),
        ("subscription", "subscription"),
        ("paystackEmailToken", "email_token"),
        ("paystack_email_token", "email_token"),
        ("email_token", "email_token"),
        ("emailToken", "email_token"),
        ("paystackAuthorizationCode", "authorization"),
        ("paystack_authorization_code", "authorization"),
        ("authorization_code", "authorization"),
        ("authorizationCode", "authorization"),
        ("authorization", "authorization"),
    ),
    namespace="paystack",
    fields={
        "customer": (("customer_code", "customer"), ("customerCode", "customer")),
        "subscription": (
            ("subscription_code", "subscription"),
            ("subscriptionCode", "subscription"),
            ("email_token", "email_token"),
            ("emailToken", "email_token"),
            ("customer", "customer"),
            ("authorization", "authorization"),
        ),
        "authorization": (
            ("authorization_code", "authorization"),
            ("authorizationCode", "authorization"),
        ),
    },
    id_fallback=True,
    canonical=frozenset(
        {
            "paystackCustomerCode",
            "paystackSubscriptionCode",
            "paystackEmailToken",
            "paystackAuthorizationCode",
        }
    ),
)

_RULES = {"stripe": _STRIPE, "paystack": _PAYSTACK}
# key → (position in the rules, kind): metadata is scanned by its own (few) keys.
_KEY_INDEX = {
    r.provider: {key: (i, kind) for i, (key, kind) in enumerate(r.keys)} for r in _RULES.values()
}


def _rules(provider: str) -> _Rules:
    try:
        return _RULES[provider]
    except KeyError:
        raise ValueError(f"unknown provider {provider!r}; expected stripe or paystack") from None


def find_identifiers(provider: str, metadata: object, *, root: str = "metadata") -> list[Finding]:
    """Every identifier of `provider` in a metadata object, valid or not, in a stable order.

    `root` names the object in each finding's source (`plan.metadata` for a plan's metadata).
    Absent, null and blank values are not findings.
    """
    rules = _rules(provider)
    found: list[Finding] = []
    if not isinstance(metadata, dict):
        return found
    _scan(rules, metadata, root, found, top=True)
    nested = metadata.get(rules.namespace)
    if isinstance(nested, dict):
        _scan(rules, nested, f"{root}.{rules.namespace}", found, top=False)
    return found


def _scan(rules: _Rules, obj: dict[str, Any], path: str, out: list[Finding], *, top: bool) -> None:
    index = _KEY_INDEX[rules.provider]
    hits = [key for key in obj if key in index]
    if not hits:
        return
    if len(hits) > 1:
        hits.sort(key=index.__getitem__)  # the rules' order, whatever order the keys are kept in
    for key in hits:
        kind = index[key][1]
        value = obj[key]
        where = f"{path}.{key}"
        if type(value) is str:  # the common case: a plain id (as `_read` treats a string)
            fmt = FORMATS[(rules.provider, kind)]
            if len(value) <= MAX_LENGTH and fmt.pattern.fullmatch(value):
                out.append(Finding(kind, where, value, value))
            elif value.strip():
                out.append(_finding(rules, kind, value, where))
        elif top and key in rules.canonical and isinstance(value, dict):
            # A canonical key must hold the id itself; an object there is reported, not read.
            out.append(_finding(rules, kind, value, where))
        else:
            _read(rules, kind, value, where, out)


def _read(rules: _Rules, kind: Kind, value: object, path: str, out: list[Finding]) -> None:
    if value is None or (isinstance(value, str) and not value.strip()):
        return
    if not isinstance(value, dict):
        out.append(_finding(rules, kind, value, path))
        return
    has_code = False
    for name, inner in rules.fields.get(kind, ()):
        if name in value:
            before = len(out)
            _read(rules, inner, value[name], f"{path}.{name}", out)
            has_code = has_code or (inner == kind and len(out) > before)
    if rules.id_fallback and not has_code and kind in COLUMNS and "id" in value:
        _read(rules, kind, value["id"], f"{path}.id", out)


def _finding(rules: _Rules, kind: Kind, raw: object, path: str) -> Finding:
    fmt = FORMATS[(rules.provider, kind)]
    if type(raw) is str and len(raw) <= MAX_LENGTH and fmt.pattern.fullmatch(raw):
        return Finding(kind, path, raw, raw)  # the common case, without the full check
    checked = check(rules.provider, kind, raw)
    return Finding(kind, path, raw, checked.value, checked.problem)


# ---------------------------------------------------------------------------------------------
# Resolving findings into the canonical columns and keys


def show(value: object) -> str:
    """A value as an operator reads it: `—` for nothing, bare ids, JSON for anything odd."""
    if value is None:
        return "—"
    if isinstance(value, str) and value.isprintable() and value.split() == [value]:
        return value
    return json.dumps(value, ensure_ascii=False, default=str)


class Change(NamedTuple):
    field: str  # `provider_customer_id` or `metadata.stripeCustomerId`
    old: Any
    new: str
    source: str  # where the new value was found

    def describe(self) -> str:
        return f"{self.field}: {show(self.old)} → {self.new} ({self.source})"


class Conflict(NamedTuple):
    field: str
    values: tuple[tuple[str, tuple[str, ...]], ...]  # (value, where it was found)
    note: str
    held_by: int | None = None  # the other subscription that holds this subscription id

    def describe(self) -> str:
        found = " ≠ ".join(f"{value} ({', '.join(where)})" for value, where in self.values)
        return f"{self.field}: {found}; {self.note}"


class Invalid(NamedTuple):
    field: str
    value: Any
    sources: tuple[str, ...]
    problem: str

    def describe(self) -> str:
        return f"{self.field}: {show(self.value)} at {', '.join(self.sources)}: {self.problem}"


@dataclass(slots=True)
class Normalization:
    """What the backfill would do to one subscription."""

    changes: list[Change] = field(default_factory=list)
    conflicts: list[Conflict] = field(default_factory=list)
    invalid: list[Invalid] = field(default_factory=list)
    columns: dict[str, str] = field(default_factory=dict)  # changed columns → new value
    metadata_set: dict[str, str] = field(default_factory=dict)  # canonical keys → new value
    # The one valid subscription id found (already held or not): the caller checks it is not
    # another subscription's before writing it (the column is unique per provider).
    subscription_id: str | None = None


def _same(raw: object) -> object:
    """A key under which equal raw JSON values meet (1, True and "1" stay apart)."""
    if isinstance(raw, str | int | float | bool) or raw is None:
        return (type(raw).__name__, raw)
    return json.dumps(raw, sort_keys=True, default=str)


def _blank(value: object) -> bool:
    return value is None or (isinstance(value, str) and not value.strip())


def normalize(
    provider: str,
    metadata: object,
    *,
    provider_customer_id: str | None = None,
    provider_subscription_id: str | None = None,
    plan_findings: Sequence[Finding] = (),
    taken: Mapping[str, int] | None = None,
) -> Normalization:
    """Resolve one subscription's identifiers into changes, conflicts and invalid values.

    `plan_findings` are identifiers from the plan's metadata that may apply to this
    subscription; `taken` maps subscription ids to the *other* subscription already holding
    them (a conflict, never a write). Nothing is mutated: the new metadata is the old one with
    `metadata_set` merged in, every original key kept.
    """
    result = Normalization()
    meta_is_object = metadata is None or isinstance(metadata, dict)
    meta: dict[str, Any] = metadata if isinstance(metadata, dict) else {}
    if not meta_is_object:
        result.invalid.append(
            Invalid(
                "metadata",
                metadata,
                ("metadata",),
                f"a JSON {json_type(metadata)}, not an object: canonical keys cannot be added",
            )
        )
    by_kind: dict[Kind, list[Finding]] = {}
    for f in find_identifiers(provider, meta):
        if f.kind in by_kind:
            by_kind[f.kind].append(f)
        else:
            by_kind[f.kind] = [f]
    for f in plan_findings:
        by_kind.setdefault(f.kind, []).append(f)
    for kind, column, key, key_field, name in _TARGETS[provider]:
        of_kind = by_kind.get(kind)
        existing = (
            provider_customer_id
            if column == "provider_customer_id"
            else provider_subscription_id
            if column == "provider_subscription_id"
            else None
        )
        if column is not None and not _blank(existing):
            c = check(provider, kind, existing)
            found = Finding(kind, column, existing, c.value, c.problem)
            if of_kind is None:
                of_kind = [found]
            else:
                of_kind.insert(0, found)
        if not of_kind:
            continue

        valid: dict[str, list[str]] = {}
        bad: dict[tuple[object, str], tuple[Any, list[str]]] = {}
        for f in of_kind:
            if f.value is not None:
                if f.value in valid:
                    valid[f.value].append(f.source)
                else:
                    valid[f.value] = [f.source]
            else:
                bad.setdefault((_same(f.raw), f.problem or ""), (f.raw, []))[1].append(f.source)
        for (_, problem), (raw, sources) in bad.items():
            result.invalid.append(Invalid(name, raw, tuple(sources), problem))

        if not valid:
            continue
        if len(valid) > 1:
            result.conflicts.append(
                Conflict(
                    name,
                    tuple((v, tuple(s)) for v, s in valid.items()),
                    "different valid values; left for a human",
                )
            )
            continue
        [(value, sources)] = valid.items()
        if kind == "subscription":
            result.subscription_id = value
            holder = taken.get(value) if taken else None
            if holder is not None:
                result.conflicts.append(
                    Conflict(
                        name,
                        ((value, tuple(sources)),),
                        f"already the id of subscription:{holder}; left for a human",
                        held_by=holder,
                    )
                )
                continue
        if column is not None and existing != value:
            change = _change(provider, kind, column, existing, value, sources)
            if change is not None:
                result.changes.append(change)
                result.columns[column] = value
        if key is not None and meta_is_object:
            old = meta.get(key)
            if old != value:
                change = _change(provider, kind, key_field, old, value, sources)
                if change is not None:
                    result.changes.append(change)
                    result.metadata_set[key] = value
    return result


def _change(
    provider: str, kind: Kind, target: str, old: object, new: str, sources: list[str]
) -> Change | None:
    """Fill an empty target, or trim whitespace around the same id; never replace a value."""
    if _blank(old):
        if len(sources) == 1:  # the common case: the one place it was found (or the target)
            return Change(target, old, new, sources[0])
        where = ", ".join([s for s in sources if s != target]) or target
        return Change(target, old, new, where)
    if old == new:
        return None
    if check(provider, kind, old).value == new:
        return Change(target, old, new, f"{target} (whitespace trimmed)")
    return None  # an invalid existing value: reported as invalid, left as it is


# ---------------------------------------------------------------------------------------------
# Plan metadata: the provider's price / plan a plan is sold as


# metadata key → the id it must hold (what checkout and plan changes send to the provider)
PLAN_ID_FORMATS: dict[str, IdFormat] = {
    "stripePriceId": IdFormat("Stripe price id", "price_", re.compile(r"price_[A-Za-z0-9]+")),
    "paystackPlanCode": IdFormat("Paystack plan code", "PLN_", re.compile(r"PLN_[A-Za-z0-9]+")),
}
_PLAN_ID_EXAMPLES = {"stripePriceId": "price_1PGrowth", "paystackPlanCode": "PLN_gx2wn530m0i3w3m"}


def plan_id_problems(metadata: Mapping[str, Any]) -> list[str]:
    """Why the provider ids in a plan's metadata are not valid (empty when they are), one
    sentence each naming the key, the value and the fix."""
    problems = []
    for key, fmt in PLAN_ID_FORMATS.items():
        if key not in metadata:
            continue
        raw = metadata[key]
        if (
            isinstance(raw, str)
            and len(raw) <= MAX_LENGTH
            and fmt.pattern.fullmatch(raw) is not None
        ):
            continue
        if not isinstance(raw, str):
            why = f"a JSON {json_type(raw)}"
        elif not raw.startswith(fmt.prefix):
            why = f"does not start with {fmt.prefix}"
        elif len(raw) > MAX_LENGTH:
            why = f"longer than {MAX_LENGTH} characters"
        else:
            why = f"has characters other than letters and digits after {fmt.prefix}"
        problems.append(
            f"{key} {raw!r} is not a {fmt.label} ({why}); write it as e.g. "
            f"{key}={_PLAN_ID_EXAMPLES[key]}"
        )
    return problems
