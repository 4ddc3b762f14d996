"""Provider identifiers in messy metadata: where they hide, what is valid, how they resolve."""

from __future__ import annotations

import copy
import string
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from faithflow_ops.billing.identifiers import (
    CANONICAL_KEYS,
    FORMATS,
    MAX_LENGTH,
    check,
    find_identifiers,
    normalize,
)


def found(provider: str, metadata: Any) -> list[tuple[str, str | None, str]]:
    return [(f.kind, f.value, f.source) for f in find_identifiers(provider, metadata)]


# --- where identifiers hide ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("metadata", "source"),
    [
        ({"stripeCustomerId": "cus_A1"}, "metadata.stripeCustomerId"),
        ({"stripe_customer_id": "cus_A1"}, "metadata.stripe_customer_id"),
        ({"customerId": "cus_A1"}, "metadata.customerId"),
        ({"customer_id": "cus_A1"}, "metadata.customer_id"),
        ({"customer": "cus_A1"}, "metadata.customer"),
        ({"customer": {"id": "cus_A1", "object": "customer"}}, "metadata.customer.id"),
        ({"stripe": {"customer": "cus_A1"}}, "metadata.stripe.customer"),
        ({"stripe": {"customer": {"id": "cus_A1"}}}, "metadata.stripe.customer.id"),
        ({"subscription": {"id": "sub_Z", "customer": "cus_A1"}}, "metadata.subscription.customer"),
    ],
)
def test_stripe_customer_is_found_under_every_known_shape(
    metadata: dict[str, Any], source: str
) -> None:
    assert ("customer", "cus_A1", source) in found("stripe", metadata)


@pytest.mark.parametrize(
    ("metadata", "source"),
    [
        ({"stripeSubscriptionId": "sub_9x"}, "metadata.stripeSubscriptionId"),
        ({"stripe_subscription_id": "sub_9x"}, "metadata.stripe_subscription_id"),
        ({"subscriptionId": "sub_9x"}, "metadata.subscriptionId"),
        ({"subscription": "sub_9x"}, "metadata.subscription"),
        ({"subscription": {"id": "sub_9x"}}, "metadata.subscription.id"),
        ({"stripe": {"subscription": "sub_9x"}}, "metadata.stripe.subscription"),
    ],
)
def test_stripe_subscription_is_found_under_every_known_shape(
    metadata: dict[str, Any], source: str
) -> None:
    assert found("stripe", metadata) == [("subscription", "sub_9x", source)]


@pytest.mark.parametrize(
    ("metadata", "kind", "value", "source"),
    [
        ({"customer_code": "CUS_x1"}, "customer", "CUS_x1", "metadata.customer_code"),
        ({"customerCode": "CUS_x1"}, "customer", "CUS_x1", "metadata.customerCode"),
        ({"customer": "CUS_x1"}, "customer", "CUS_x1", "metadata.customer"),
        (
            {"customer": {"customer_code": "CUS_x1"}},
            "customer",
            "CUS_x1",
            "metadata.customer.customer_code",
        ),
        ({"customer": {"id": "CUS_x1"}}, "customer", "CUS_x1", "metadata.customer.id"),
        (
            {"paystack": {"customer_code": "CUS_x1"}},
            "customer",
            "CUS_x1",
            "metadata.paystack.customer_code",
        ),
        ({"email_token": "d7gofp6y"}, "email_token", "d7gofp6y", "metadata.email_token"),
        ({"emailToken": "d7gofp6y"}, "email_token", "d7gofp6y", "metadata.emailToken"),
        ({"subscription_code": "SUB_vsy"}, "subscription", "SUB_vsy", "metadata.subscription_code"),
        ({"subscriptionCode": "SUB_vsy"}, "subscription", "SUB_vsy", "metadata.subscriptionCode"),
        (
            {"subscription": {"subscription_code": "SUB_vsy"}},
            "subscription",
            "SUB_vsy",
            "metadata.subscription.subscription_code",
        ),
        (
            {"subscription": {"email_token": "d7gofp6y"}},
            "email_token",
            "d7gofp6y",
            "metadata.subscription.email_token",
        ),
        (
            {"authorization_code": "AUTH_8d"},
            "authorization",
            "AUTH_8d",
            "metadata.authorization_code",
        ),
        (
            {"authorizationCode": "AUTH_8d"},
            "authorization",
            "AUTH_8d",
            "metadata.authorizationCode",
        ),
        (
            {"authorization": {"authorization_code": "AUTH_8d"}},
            "authorization",
            "AUTH_8d",
            "metadata.authorization.authorization_code",
        ),
    ],
)
def test_paystack_identifiers_are_found_under_every_known_shape(
    metadata: dict[str, Any], kind: str, value: str, source: str
) -> None:
    assert found("paystack", metadata) == [(kind, value, source)]


def test_a_customer_key_belongs_to_the_subscriptions_own_provider() -> None:
    assert found("stripe", {"customer": "cus_A1"}) == [("customer", "cus_A1", "metadata.customer")]
    [paystack] = find_identifiers("paystack", {"customer": "cus_A1"})
    assert paystack.value is None
    assert "does not start with CUS_" in (paystack.problem or "")


def test_keys_naming_the_other_provider_are_left_alone() -> None:
    assert found("paystack", {"stripeCustomerId": "cus_A1", "stripe": {"customer": "cus_A1"}}) == []
    assert found("stripe", {"paystackCustomerCode": "CUS_x", "email_token": "abc"}) == []


def test_paystack_numeric_customer_id_is_invalid() -> None:
    [finding] = find_identifiers("paystack", {"customer": {"id": 84312, "email": "a@b.org"}})
    assert (finding.source, finding.value) == ("metadata.customer.id", None)
    assert "numeric" in (finding.problem or "")
    assert check("paystack", "customer", "84312").problem == finding.problem


def test_paystack_customer_object_id_is_ignored_when_the_object_has_its_code() -> None:
    metadata = {"customer": {"id": 84312, "customer_code": "CUS_x1"}}
    assert found("paystack", metadata) == [
        ("customer", "CUS_x1", "metadata.customer.customer_code")
    ]


def test_plan_metadata_findings_name_the_plan() -> None:
    [finding] = find_identifiers("stripe", {"customerId": "cus_P"}, root="plan.metadata")
    assert finding.source == "plan.metadata.customerId"


def test_absent_null_and_blank_values_are_not_findings() -> None:
    assert found("stripe", {"customer": None, "customerId": "  ", "stripeCustomerId": ""}) == []
    assert found("stripe", None) == []
    assert found("stripe", ["cus_A1"]) == []


# --- validation ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("provider", "kind", "raw", "value"),
    [
        ("stripe", "customer", "cus_NffrFeUfNV2Hib", "cus_NffrFeUfNV2Hib"),
        ("stripe", "subscription", "sub_1MowQVLkdIwHu7ix", "sub_1MowQVLkdIwHu7ix"),
        ("paystack", "customer", "CUS_xnxdt6s1zg1f4nx", "CUS_xnxdt6s1zg1f4nx"),
        ("paystack", "subscription", "SUB_vsyqdmlzble3uii", "SUB_vsyqdmlzble3uii"),
        ("paystack", "authorization", "AUTH_pmx3mgawyd", "AUTH_pmx3mgawyd"),
        ("paystack", "email_token", "d7gofp6yppn3qz7", "d7gofp6yppn3qz7"),
        ("stripe", "customer", "  cus_A1\n", "cus_A1"),  # a paste artefact: trimmed
        ("paystack", "customer", "\tCUS_x1 ", "CUS_x1"),
    ],
)
def test_valid_ids_are_accepted_and_surrounding_whitespace_is_trimmed(
    provider: str, kind: Any, raw: str, value: str
) -> None:
    assert check(provider, kind, raw).value == value


@pytest.mark.parametrize(
    ("provider", "kind", "raw", "problem"),
    [
        ("stripe", "customer", "cus_ A1", "contains whitespace"),
        ("stripe", "customer", "CUS_A1", "does not start with cus_"),
        ("paystack", "customer", "cus_a1", "does not start with CUS_"),
        ("stripe", "customer", "acct_1", "does not start with cus_"),
        ("stripe", "subscription", "sub_sched_1", "characters other than letters and digits"),
        ("stripe", "customer", "cus_", "characters other than letters and digits"),
        ("paystack", "email_token", "tok-1", "characters other than letters and digits"),
        ("paystack", "customer", 84312, "numeric"),
        ("paystack", "subscription", "9238", "numeric"),
        ("stripe", "customer", 42, "a number"),
        ("stripe", "customer", True, "a JSON boolean"),
        ("stripe", "customer", ["cus_A1"], "a JSON array"),
        ("stripe", "customer", "cus_" + "a" * MAX_LENGTH, "longer than"),
        ("stripe", "customer", "", "empty"),
    ],
)
def test_invalid_ids_say_what_is_wrong(provider: str, kind: Any, raw: Any, problem: str) -> None:
    checked = check(provider, kind, raw)
    assert checked.value is None
    assert problem in (checked.problem or "")


def test_an_unknown_provider_or_kind_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown provider"):
        find_identifiers("paypal", {})
    with pytest.raises(ValueError, match="no email_token"):
        check("stripe", "email_token", "abc")


# --- resolution ------------------------------------------------------------------------------


def test_normalize_fills_the_column_and_canonical_key_and_keeps_original_keys() -> None:
    metadata = {"customer": {"id": "cus_A1"}, "note": "migrated 2019"}
    before = copy.deepcopy(metadata)
    result = normalize("stripe", metadata)
    assert [c.describe() for c in result.changes] == [
        "provider_customer_id: — → cus_A1 (metadata.customer.id)",
        "metadata.stripeCustomerId: — → cus_A1 (metadata.customer.id)",
    ]
    assert result.columns == {"provider_customer_id": "cus_A1"}
    assert result.metadata_set == {"stripeCustomerId": "cus_A1"}  # merged in; nothing removed
    assert metadata == before  # the input is never mutated
    assert result.conflicts == result.invalid == []


def test_normalize_fills_every_paystack_canonical_key() -> None:
    result = normalize(
        "paystack",
        {
            "customer": {"id": 1173, "customer_code": "CUS_x1"},
            "subscription_code": "SUB_s1",
            "email_token": "tok1",
            "authorization": {"authorization_code": "AUTH_a1"},
        },
    )
    assert result.columns == {
        "provider_customer_id": "CUS_x1",
        "provider_subscription_id": "SUB_s1",
    }
    assert result.metadata_set == {
        "paystackCustomerCode": "CUS_x1",
        "paystackSubscriptionCode": "SUB_s1",
        "paystackEmailToken": "tok1",
        "paystackAuthorizationCode": "AUTH_a1",
    }


def test_sources_agreeing_on_one_value_are_fine() -> None:
    result = normalize("stripe", {"customer": "cus_A1", "customerId": "cus_A1"})
    assert result.conflicts == []
    assert result.changes[0].source == "metadata.customerId, metadata.customer"


def test_two_different_valid_values_are_a_conflict_and_nothing_is_written() -> None:
    result = normalize("stripe", {"customer": "cus_A1", "stripeCustomerId": "cus_B2"})
    assert result.changes == [] and result.metadata_set == {}
    [conflict] = result.conflicts
    assert conflict.field == "provider_customer_id"
    assert dict(conflict.values) == {
        "cus_B2": ("metadata.stripeCustomerId",),
        "cus_A1": ("metadata.customer",),
    }


def test_an_existing_column_that_differs_is_a_conflict() -> None:
    result = normalize("stripe", {"customer": "cus_NEW"}, provider_customer_id="cus_OLD")
    assert result.changes == []
    [conflict] = result.conflicts
    assert conflict.values[0] == ("cus_OLD", ("provider_customer_id",))


def test_an_existing_column_fills_a_missing_canonical_key() -> None:
    result = normalize("stripe", {}, provider_customer_id="cus_A1")
    assert [c.describe() for c in result.changes] == [
        "metadata.stripeCustomerId: — → cus_A1 (provider_customer_id)"
    ]


def test_whitespace_around_an_existing_value_is_trimmed_not_treated_as_different() -> None:
    result = normalize("stripe", {"stripeCustomerId": " cus_A1 "}, provider_customer_id="cus_A1")
    assert result.conflicts == []
    assert [c.describe() for c in result.changes] == [
        'metadata.stripeCustomerId: " cus_A1 " → cus_A1 (metadata.stripeCustomerId (whitespace '
        "trimmed))"
    ]


def test_an_invalid_existing_value_is_reported_and_never_overwritten() -> None:
    result = normalize("stripe", {"stripeCustomerId": "cus_ A1", "customer": "cus_A1"})
    assert result.columns == {"provider_customer_id": "cus_A1"}
    assert result.metadata_set == {}  # the canonical key keeps its (bad) value for a human
    [bad] = result.invalid
    assert (bad.field, bad.value, bad.sources) == (
        "provider_customer_id",
        "cus_ A1",
        ("metadata.stripeCustomerId",),
    )
    assert bad.describe() == (
        'provider_customer_id: "cus_ A1" at metadata.stripeCustomerId: contains whitespace'
    )


def test_an_object_under_a_canonical_key_is_invalid() -> None:
    result = normalize("stripe", {"stripeCustomerId": {"id": "cus_A1"}})
    assert [b.problem for b in result.invalid] == ["a JSON object, not a Stripe customer id"]


def test_a_subscription_id_held_by_another_subscription_is_a_conflict() -> None:
    metadata = {"subscription": "sub_9x", "customer": "cus_A1"}
    free = normalize("stripe", metadata)
    assert free.subscription_id == "sub_9x"
    held = normalize("stripe", metadata, taken={"sub_9x": 12})
    assert "provider_subscription_id" not in held.columns
    assert held.columns == {"provider_customer_id": "cus_A1"}
    [conflict] = held.conflicts
    assert conflict.held_by == 12
    assert "already the id of subscription:12" in conflict.describe()


def test_plan_findings_feed_the_subscription() -> None:
    plan = find_identifiers("stripe", {"customerId": "cus_P"}, root="plan.metadata")
    result = normalize("stripe", {}, plan_findings=plan)
    assert (
        result.changes[0].describe() == "provider_customer_id: — → cus_P (plan.metadata.customerId)"
    )


def test_null_metadata_gets_the_canonical_keys_and_non_object_metadata_is_reported() -> None:
    assert normalize("stripe", None, provider_customer_id="cus_A1").metadata_set == {
        "stripeCustomerId": "cus_A1"
    }
    result = normalize("stripe", ["cus_A1"], provider_customer_id="cus_A1")
    assert result.metadata_set == {}
    assert [b.field for b in result.invalid] == ["metadata"]


# --- properties ------------------------------------------------------------------------------

FORMAT_KEYS = sorted(FORMATS)
ALNUM = string.ascii_letters + string.digits
KNOWN_KEYS = [
    "stripeCustomerId", "stripe_customer_id", "customerId", "customer_id", "customer",
    "stripeSubscriptionId", "subscriptionId", "subscription", "stripe", "paystack", "id",
    "customer_code", "customerCode", "paystackCustomerCode", "subscription_code",
    "paystackSubscriptionCode", "email_token", "emailToken", "paystackEmailToken",
    "authorization", "authorization_code", "paystackAuthorizationCode", "note",
]  # fmt: skip

ids = st.one_of(
    st.builds(
        lambda prefix, body, pad: pad[0] + prefix + body + pad[1],
        st.sampled_from(["cus_", "sub_", "CUS_", "SUB_", "AUTH_", "", "acct_"]),
        st.text(ALNUM, min_size=0, max_size=6),
        st.tuples(st.sampled_from(["", " ", "\n"]), st.sampled_from(["", " ", "\t"])),
    ),
    st.sampled_from(["cus_A 1", "84312", "CUS_x1", "cus_A1", "sub_1", "SUB_1", "tok1"]),
    st.integers(min_value=0, max_value=10**6),
    st.text(max_size=8),
    st.none(),
    st.booleans(),
)
json_values = st.recursive(
    ids,
    lambda inner: st.one_of(
        st.lists(inner, max_size=2),
        st.dictionaries(st.sampled_from(KNOWN_KEYS), inner, max_size=4),
    ),
    max_leaves=12,
)
metadatas = st.dictionaries(st.sampled_from(KNOWN_KEYS), json_values, max_size=6)
providers = st.sampled_from(["stripe", "paystack"])
columns = st.one_of(st.none(), st.sampled_from(["cus_A1", "CUS_x1", " cus_A1", "84312", ""]))


@given(st.sampled_from(FORMAT_KEYS), st.one_of(st.text(), ids))
def test_an_accepted_value_always_matches_its_format_and_has_no_whitespace(
    key: tuple[str, Any], raw: Any
) -> None:
    value = check(key[0], key[1], raw).value
    if value is not None:
        assert FORMATS[key].pattern.fullmatch(value)
        assert not any(ch.isspace() for ch in value)
        assert len(value) <= MAX_LENGTH


@given(
    st.sampled_from(FORMAT_KEYS),
    st.text(ALNUM, min_size=1, max_size=20),
    st.text(ALNUM, min_size=1, max_size=5),
    st.sampled_from([" ", "\t", "\n", "\u00a0", "\u2003"]),
)
def test_whitespace_inside_an_id_is_never_accepted(
    key: tuple[str, Any], head: str, tail: str, space: str
) -> None:
    fmt = FORMATS[key]
    assert check(key[0], key[1], fmt.prefix + head).value == fmt.prefix + head
    assert check(key[0], key[1], f" {fmt.prefix}{head}{space}").value == fmt.prefix + head
    assert check(key[0], key[1], fmt.prefix + head + space + tail).value is None


@given(providers, metadatas)
def test_every_valid_finding_revalidates(provider: str, metadata: dict[str, Any]) -> None:
    for f in find_identifiers(provider, metadata):
        assert (f.value is None) != (f.problem is None)
        if f.value is not None:
            assert check(provider, f.kind, f.value).value == f.value


@settings(max_examples=300)
@given(providers, metadatas, columns, columns)
def test_normalize_is_idempotent_and_never_replaces_a_value(
    provider: str, metadata: dict[str, Any], customer: str | None, subscription: str | None
) -> None:
    before = copy.deepcopy(metadata)
    first = normalize(
        provider, metadata, provider_customer_id=customer, provider_subscription_id=subscription
    )
    assert metadata == before
    current = {"provider_customer_id": customer, "provider_subscription_id": subscription}
    for change in first.changes:
        old = change.old
        assert old is None or not str(old).strip() or str(old).strip() == change.new
    new_meta = {**metadata, **first.metadata_set}
    for key, value in before.items():  # original keys stay; only blank canonical keys filled
        assert key in new_meta  # and whitespace trimmed from the very same id
        if new_meta[key] != value:
            assert key in CANONICAL_KEYS.values()
            assert isinstance(value, str) and value.strip() in ("", new_meta[key])
    current.update(first.columns)
    second = normalize(
        provider,
        new_meta,
        provider_customer_id=current["provider_customer_id"],
        provider_subscription_id=current["provider_subscription_id"],
    )
    assert second.changes == []
    assert second.conflicts == first.conflicts
    assert len(second.invalid) == len(first.invalid)
