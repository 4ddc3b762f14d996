"""Chat moderation rules as tables (no database): each rule, their order, Unicode folding and
whole-word matching, link detection, policy validation and the tightening rule."""

from __future__ import annotations

import pytest

from faithflow_ops.streams import moderation_policy as policies
from faithflow_ops.streams.moderation import Context, decide, find_link, find_term

STRICT = policies.effective(
    policies.parse(
        {
            "blocked_terms": ["damn", "free money"],
            "flagged_terms": ["pray for me"],
            "block_links": True,
            "max_length": 40,
            "slow_mode_s": 10,
            "hold_first_time": True,
        }
    )
)
OPEN = policies.effective(policies.Policy())
KNOWN = Context(first_time=False)


@pytest.mark.parametrize(
    ("body", "ctx", "kind", "rule"),
    [
        ("Amen!", KNOWN, "allow", None),
        ("Amen!", Context(banned="from the channel"), "hide", "ban"),
        ("this is DAMN boring", KNOWN, "hide", "blocked_term"),
        ("ｄａｍｎ it", KNOWN, "hide", "blocked_term"),  # full-width letters
        ("dámn it", KNOWN, "hide", "blocked_term"),  # an accent
        ("da\u200bmn it", KNOWN, "hide", "blocked_term"),  # a zero-width space
        ("Damnation is a sermon topic", KNOWN, "allow", None),  # not a whole word
        ("get FREE   money now", KNOWN, "hide", "blocked_term"),  # a phrase, any spacing
        ("x" * 41, KNOWN, "hide", "max_length"),
        ("x" * 40, KNOWN, "allow", None),
        ("Hallelujah", Context(since_previous_s=3), "hide", "slow_mode"),
        ("Hallelujah", Context(since_previous_s=10), "allow", None),
        ("see https://example.org/x", KNOWN, "hold", "link"),
        ("go to www.example.org", KNOWN, "hold", "link"),
        ("bit.ly/abc for prizes", KNOWN, "hold", "link"),
        ("grace.church", KNOWN, "hold", "link"),
        ("John 3.16 and 1 Cor. 13", KNOWN, "allow", None),  # verses are no links
        ("mail me at ann@example.com", KNOWN, "allow", None),  # an address is no link
        ("Good morning!", Context(first_time=True), "hold", "first_time"),
        ("please pray for me", KNOWN, "flag", "flagged_term"),
        # the first rule that hits decides: ban, term, length, slow mode, link, first time
        ("damn", Context(banned="from this session"), "hide", "ban"),
        ("damn " + "x" * 50, KNOWN, "hide", "blocked_term"),
        ("https://x.com/" + "x" * 40, KNOWN, "hide", "max_length"),
        ("https://x.com", Context(since_previous_s=1), "hide", "slow_mode"),
        ("https://x.com", Context(first_time=True), "hold", "link"),
        ("pray for me", Context(first_time=True), "hold", "first_time"),
    ],
)
def test_each_rule(body: str, ctx: Context, kind: str, rule: str | None) -> None:
    verdict = decide(body, STRICT, ctx)
    assert (verdict.kind, verdict.rule) == (kind, rule), verdict.detail


@pytest.mark.parametrize(
    "ctx", [KNOWN, Context(first_time=True), Context(since_previous_s=0)]
)  # fmt: skip
def test_an_empty_policy_allows_everything_but_bans(ctx: Context) -> None:
    assert decide("damn https://x.com " + "x" * 5000, OPEN, ctx).kind == "allow"
    assert decide("hi", OPEN, Context(banned="from the channel")).rule == "ban"


def test_terms_and_links_are_found_and_shown() -> None:
    assert find_term("You are a DÄMN fool", ("damn",)) == "damn"
    assert find_term("anything", ()) is None
    assert find_link("see HTTP://Example.org/path?q=1 ok") == "HTTP://Example.org/path?q=1"
    assert find_link("no link here. none.") is None


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        ({"block_link": True}, "unknown key 'block_link'; known keys: blocked_terms"),
        ({"slow_mode_s": -5}, "slow_mode_s -5 is out of range; give 0 to 3600"),
        ({"slow_mode_s": "10"}, "slow_mode_s must be a whole number"),
        ({"max_length": 0}, "max_length 0 is out of range; give 1 to 10000"),
        ({"block_links": "yes"}, "block_links must be true or false"),
        ({"blocked_terms": "damn"}, "blocked_terms must be a list"),
        ({"blocked_terms": ["ok", "  "]}, "blocked_terms holds an empty term"),
        ([1, 2], "policy must be a JSON object"),
    ],
)
def test_policy_validation(doc: object, message: str) -> None:
    with pytest.raises(policies.PolicyError) as err:
        policies.parse(doc)
    assert message in str(err.value)


def test_terms_are_folded_deduplicated_and_sorted() -> None:
    parsed = policies.parse({"blocked_terms": ["Spam", "SPAM", "Free  Money"]})
    assert parsed.blocked_terms == ("free money", "spam")
    assert parsed.to_doc() == {"blocked_terms": ["free money", "spam"]}


CHANNEL = policies.parse(
    {"blocked_terms": ["damn"], "block_links": True, "max_length": 300, "slow_mode_s": 10,
     "hold_first_time": True}
)  # fmt: skip


@pytest.mark.parametrize(
    ("session", "message"),
    [
        ({"block_links": False}, "the channel blocks links"),
        ({"hold_first_time": False}, "the channel holds first-time chatters"),
        ({"max_length": 500}, "--max-length 500 is over the channel's 300"),
        ({"slow_mode_s": 5}, "--slow-mode 5 is under the channel's 10 s"),
        ({"slow_mode_s": 0}, "--slow-mode 0 is under the channel's 10 s"),
    ],
)
def test_a_session_may_not_loosen_its_channel(session: dict[str, object], message: str) -> None:
    with pytest.raises(policies.PolicyError) as err:
        policies.check_tightens(CHANNEL, policies.parse(session), 7)
    assert str(err.value).startswith("session 7 may only tighten its channel's policy: ")
    assert message in str(err.value)


def test_a_session_may_tighten_and_the_tighter_wins() -> None:
    own = policies.parse(
        {"blocked_terms": ["boring"], "max_length": 100, "slow_mode_s": 30, "block_links": True}
    )
    policies.check_tightens(CHANNEL, own, 7)
    merged = policies.effective(CHANNEL, own)
    assert merged.to_doc() == {
        "blocked_terms": ["boring", "damn"],
        "flagged_terms": [],
        "block_links": True,
        "max_length": 100,
        "slow_mode_s": 30,
        "hold_first_time": True,
    }
    # a channel that later tightens past the session's override still wins
    tighter = policies.parse({"max_length": 50, "slow_mode_s": 60})
    later = policies.effective(tighter, own)
    assert (later.max_length, later.slow_mode_s) == (50, 60)
