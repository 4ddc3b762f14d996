"""Knowledge base and deflection: articles, full-text suggestions (Postgres ts_rank, SQLite
FTS5 bm25), deflect → outbox + pending, confirm → solved `deflected`, a reply reopens."""

from __future__ import annotations

import datetime as dt
import json

import pytest
from helpers import said
from sqlalchemy import select, text

from faithflow_ops.db import Database
from faithflow_ops.migrate import current_revision, schema_diff, upgrade
from faithflow_ops.models import (
    KbArticle,
    OutboundMessage,
    SupportMessage,
    SupportTicket,
    TicketKbLink,
)
from faithflow_ops.support import kb, tickets
from faithflow_ops.support.sla import Rules
from faithflow_ops.tenancy.tenants import add_tenant

T0 = dt.datetime(2026, 3, 2, 10, 0, tzinfo=dt.UTC)  # a Monday, inside business hours
ACTOR = "test"

ARTICLES = [
    (
        "card-declined",
        "Card declined when paying your invoice",
        "Your bank declined the payment. Update the card on file from the billing page, "
        "then pay the invoice again.",
        ["billing", "payments"],
    ),
    (
        "reset-password",
        "Reset a forgotten password",
        "Use the reset link on the sign-in page; the email arrives within a minute.",
        ["account", "login"],
    ),
    (
        "stream-no-audio",
        "No audio on the live stream",
        "Check the mixer output, the audio input in the encoder and the stream key.",
        ["streaming", "audio"],
    ),
    (
        "refund-policy",
        "Refunds for donations",
        "Donors can ask for a refund within 30 days; the church approves it.",
        ["giving", "payments"],
    ),
]


def _seed(db: Database) -> None:
    with db.session() as s:
        add_tenant(s, slug="grace", name="Grace Chapel", actor=ACTOR, email="office@grace.test")
        for slug, title, body, tags in ARTICLES:
            kb.add_article(
                s, slug=slug, title=title, body=body, tags=tags, publish=True, now=T0, actor=ACTOR
            )


def _ticket(db: Database, subject: str, body: str | None = None, *, at: dt.datetime = T0) -> int:
    with db.session() as s:
        ticket = tickets.open_ticket(
            s,
            Rules.load(s),
            tenant="grace",
            subject=subject,
            priority="normal",
            now=at,
            body=body,
            requester="ada@grace.test",
            requester_name="Ada",
        )
        return ticket.id


def _json(result) -> dict:
    assert result.exit_code == 0, result.stderr
    return json.loads(result.stdout)


# ---------------------------------------------------------------- articles


def test_add_show_list_publish_archive_through_the_cli(db: Database, cli) -> None:
    added = _json(
        cli(
            "support", "kb", "add", "giving-setup", "--title", "Set up online giving",
            "--body", "Connect Stripe from Settings > Giving.", "--tag", "Giving, Stripe",
            "--tag", "stripe", "--now", "2026-03-01T09:00:00Z", "--json",
        )
    )  # fmt: skip
    assert added["status"] == "draft" and added["tags"] == ["giving", "stripe"]
    assert added["published_at"] is None

    published = _json(cli("support", "kb", "publish", "giving-setup", "--json"))
    assert published["status"] == "published" and published["changed"] is True
    again = cli("support", "kb", "publish", "giving-setup")
    assert again.exit_code == 0 and "already published" in said(again)

    shown = _json(cli("support", "kb", "show", "giving-setup", "--json"))
    assert shown["body"] == "Connect Stripe from Settings > Giving."
    assert shown["suggested"] == shown["sent"] == shown["resolved_by"] == 0

    listed = _json(cli("support", "kb", "list", "--status", "published", "--json"))
    assert [a["slug"] for a in listed] == ["giving-setup"]
    found = _json(cli("support", "kb", "list", "--search", "stripe giving", "--json"))
    assert [a["slug"] for a in found] == ["giving-setup"] and found[0]["score"] > 0

    archived = _json(cli("support", "kb", "archive", "giving-setup", "--json"))
    assert archived["status"] == "archived" and archived["archived_at"] is not None
    assert _json(cli("support", "kb", "list", "--search", "stripe giving", "--json")) == []
    table = cli("support", "kb", "list")
    assert table.exit_code == 0 and "giving-setup" in table.stdout


def test_a_duplicate_slug_exits_2_and_keeps_the_first_article(db: Database, cli) -> None:
    first = cli("support", "kb", "add", "faq", "--title", "FAQ", "--body", "one")
    assert first.exit_code == 0, first.stderr
    dup = cli("support", "kb", "add", "faq", "--title", "Other", "--body", "two")
    assert dup.exit_code == 2
    assert "an article with slug 'faq' already exists" in said(dup)
    with db.read_session() as s:
        assert s.scalars(select(KbArticle.title)).all() == ["FAQ"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("show", "nope"), "no knowledge-base article 'nope'"),
        (("publish", "nope"), "no knowledge-base article 'nope'"),
        (("add", "Bad Slug!", "--title", "t", "--body", "b"), "article slug 'Bad Slug!'"),
        (("add", "empty", "--title", "  ", "--body", "b"), "the article title is empty"),
        (("add", "nobody", "--title", "t"), "an article needs a body"),
        (("update", "nope", "--title", "x"), "no knowledge-base article 'nope'"),
        (("list", "--status", "live"), "status 'live' is not one of"),
    ],
)
def test_bad_article_input_exits_2_with_a_clear_message(
    db: Database, cli, args: tuple[str, ...], message: str
) -> None:
    result = cli("support", "kb", *args)
    assert result.exit_code == 2
    assert message in said(result)
    assert "Traceback" not in result.stderr


def test_update_changes_what_search_finds(db: Database) -> None:
    """The search index follows edits (SQLite: the FTS5 triggers; Postgres: the expression)."""
    _seed(db)
    with db.read_session() as s:
        assert [m.article.slug for m in kb.search(s, "audio")] == ["stream-no-audio"]
        assert kb.search(s, "sound") == []
    with db.session() as s:
        kb.update_article(
            s,
            "stream-no-audio",
            title="No sound on the live stream",
            body="Check the mixer output and the stream key.",
            tags=["streaming"],
            now=T0,
            actor=ACTOR,
        )
    with db.read_session() as s:
        assert kb.search(s, "audio") == []
        assert [m.article.slug for m in kb.search(s, "sound")] == ["stream-no-audio"]


# ---------------------------------------------------------------- suggestions


def test_suggest_ranks_published_articles_for_the_ticket_on_both_dialects(db: Database) -> None:
    _seed(db)
    with db.session() as s:
        kb.add_article(
            s,
            slug="card-draft",
            title="Card declined payment invoice billing",
            body="card declined card declined",
            now=T0,
            actor=ACTOR,
        )  # a draft: never suggested, however well it matches
    ticket = _ticket(
        db,
        "My card was declined",
        "Hello, I tried to pay this month's invoice and the bank declined my card. Thanks!",
    )
    with db.session() as s:
        doc = kb.suggest(s, ticket, limit=3, now=T0, actor=ACTOR)
    slugs = [x["slug"] for x in doc["suggestions"]]
    assert slugs[0] == "card-declined"
    assert "card-draft" not in slugs
    assert doc["terms"][:3] == ["card", "declined", "tried"]
    assert all(x["recorded"] for x in doc["suggestions"])
    scores = [x["score"] for x in doc["suggestions"]]
    assert scores == sorted(scores, reverse=True)

    with db.session() as s:  # suggesting again records nothing new
        again = kb.suggest(s, ticket, limit=3, now=T0 + dt.timedelta(minutes=5), actor=ACTOR)
    assert [x["slug"] for x in again["suggestions"]] == slugs
    assert not any(x["recorded"] for x in again["suggestions"])
    with db.read_session() as s:
        links = s.scalars(select(TicketKbLink).where(TicketKbLink.ticket_id == ticket)).all()
    assert sorted(link.kind for link in links) == ["suggested"] * len(slugs)
    assert all(link.at == T0 for link in links)


@pytest.mark.parametrize(
    ("subject", "body", "best"),
    [
        ("Forgot my password", "I cannot sign in, the reset email never came", "reset-password"),
        ("Live stream has no sound", "Our Sunday stream audio was silent", "stream-no-audio"),
        ("Donation refund", "A donor wants a refund for a gift", "refund-policy"),
    ],
)
def test_suggest_puts_the_matching_article_first(
    db: Database, subject: str, body: str, best: str
) -> None:
    _seed(db)
    ticket = _ticket(db, subject, body)
    with db.session() as s:
        doc = kb.suggest(s, ticket, limit=5, record=False, now=T0, actor=ACTOR)
    assert doc["suggestions"][0]["slug"] == best
    assert not any(x["recorded"] for x in doc["suggestions"])


def test_suggest_cli_prints_ranked_json_and_nothing_for_no_terms(db: Database, cli) -> None:
    _seed(db)
    ticket = _ticket(db, "Reset password please")
    doc = _json(cli("support", "kb", "suggest", str(ticket), "--json", "--no-record"))
    assert doc["suggestions"][0]["slug"] == "reset-password"
    quiet = _ticket(db, "Hi there, thanks")
    doc = _json(cli("support", "kb", "suggest", str(quiet), "--json"))
    assert doc["terms"] == [] and doc["suggestions"] == []
    table = cli("support", "kb", "suggest", str(ticket))
    assert table.exit_code == 0 and "reset-password" in table.stdout


def test_search_text_cannot_change_the_query_syntax(db: Database) -> None:
    _seed(db)
    with db.read_session() as s:
        hits = kb.search(s, "card\" OR title:* NEAR( ) | ! & :* 'declined")
    assert hits and hits[0].article.slug == "card-declined"


# ---------------------------------------------------------------- deflection


def test_deflect_queues_the_article_by_email_and_sets_the_ticket_pending(db: Database, cli) -> None:
    _seed(db)
    ticket = _ticket(db, "Card declined", "The bank declined my card")
    doc = _json(
        cli(
            "support", "kb", "deflect", str(ticket), "card-declined",
            "--now", "2026-03-02T10:20:00Z", "--json",
        )
    )  # fmt: skip
    assert doc["created"] is True and doc["ticket_status"] == "pending"
    assert doc["recipient"] == "ada@grace.test" and doc["message_status"] == "queued"
    with db.read_session() as s:
        message = s.get(OutboundMessage, doc["message_id"])
        row = s.get(SupportTicket, ticket)
        links = s.scalars(select(TicketKbLink.kind).where(TicketKbLink.ticket_id == ticket)).all()
        views = s.scalar(select(KbArticle.views).where(KbArticle.slug == "card-declined"))
    assert message is not None and row is not None
    assert (message.channel, message.template, message.recipient) == (
        "email",
        "kb_article",
        "ada@grace.test",
    )
    assert (message.about_type, message.about_id) == ("support_ticket", str(ticket))
    assert message.subject == f"Re: Card declined [ticket #{ticket}]"
    assert "Hello Ada," in message.body
    assert "Update the card on file from the billing page" in message.body
    assert "Card declined when paying your invoice" in message.body
    assert row.status == "pending"
    # the article answered the requester: it counts as the first response
    assert row.first_responded_at == dt.datetime(2026, 3, 2, 10, 20, tzinfo=dt.UTC)
    assert links == ["sent"]
    assert views == 1

    again = _json(cli("support", "kb", "deflect", str(ticket), "card-declined", "--json"))
    assert again["created"] is False and again["message_id"] == doc["message_id"]
    with db.read_session() as s:
        assert s.scalar(select(text("count(*)")).select_from(OutboundMessage)) == 1


def test_a_sent_link_made_by_hand_does_not_stop_a_deflection(db: Database, cli) -> None:
    # `kb link --kind sent`: the agent sent the article some other way; nothing was queued, so
    # a deflection afterwards still queues it, sets the ticket pending and can be confirmed
    _seed(db)
    ticket = _ticket(db, "Forgot my password", "Cannot sign in")
    linked = _json(
        cli(
            "support", "kb", "link", str(ticket), "reset-password", "--kind", "sent",
            "--now", "2026-03-02T10:05:00Z", "--json",
        )
    )  # fmt: skip
    assert linked["created"] is True
    doc = _json(
        cli(
            "support", "kb", "deflect", str(ticket), "reset-password",
            "--now", "2026-03-02T10:10:00Z", "--json",
        )
    )  # fmt: skip
    assert doc["created"] is True and doc["ticket_status"] == "pending"
    assert isinstance(doc["message_id"], int) and doc["message_status"] == "queued"
    with db.read_session() as s:
        message = s.get(OutboundMessage, doc["message_id"])
        links = s.scalars(select(TicketKbLink).where(TicketKbLink.ticket_id == ticket)).all()
        views = s.scalar(select(KbArticle.views).where(KbArticle.slug == "reset-password"))
    assert message is not None and message.idempotency_key.startswith(f"kb-deflect:{ticket}:")
    # still one `sent` link, now carrying the deflection's time (what `confirm` compares)
    assert [(lk.kind, lk.at) for lk in links] == [
        ("sent", dt.datetime(2026, 3, 2, 10, 10, tzinfo=dt.UTC))
    ]
    assert views == 1
    confirmed = _json(
        cli("support", "kb", "confirm", str(ticket), "--now", "2026-03-02T11:00:00Z", "--json")
    )
    assert (confirmed["ticket_status"], confirmed["resolution"]) == ("solved", "deflected")
    assert confirmed["article"] == "reset-password"
    with db.read_session() as s:
        row = s.get(SupportTicket, ticket)
    assert row is not None and (row.status, row.resolution) == ("solved", "deflected")


def test_deflecting_twice_sends_once_and_names_the_first_message(db: Database, cli) -> None:
    _seed(db)
    ticket = _ticket(db, "Card declined", "The bank declined my card")
    first = _json(
        cli(
            "support", "kb", "deflect", str(ticket), "card-declined",
            "--now", "2026-03-02T10:20:00Z", "--json",
        )
    )  # fmt: skip
    assert first["created"] is True
    again = cli(
        "support", "kb", "deflect", str(ticket), "card-declined", "--now", "2026-03-02T10:30:00Z"
    )
    assert again.exit_code == 0, again.stderr
    assert (
        f"article card-declined was already sent for ticket {ticket} "
        f"(message {first['message_id']}); nothing sent again"
    ) in said(again)
    assert "None" not in said(again)
    doc = _json(cli("support", "kb", "deflect", str(ticket), "card-declined", "--json"))
    assert doc["created"] is False and doc["message_id"] == first["message_id"]
    assert doc["message_status"] == "queued"
    with db.read_session() as s:
        assert s.scalar(select(text("count(*)")).select_from(OutboundMessage)) == 1
        replies = s.scalar(
            select(text("count(*)"))
            .select_from(SupportMessage)
            .where(SupportMessage.ticket_id == ticket, SupportMessage.author_kind == "agent")
        )
        link_at = s.scalar(select(TicketKbLink.at).where(TicketKbLink.ticket_id == ticket))
        views = s.scalar(select(KbArticle.views).where(KbArticle.slug == "card-declined"))
    assert replies == 1 and views == 1
    assert link_at == dt.datetime(2026, 3, 2, 10, 20, tzinfo=dt.UTC)  # the first sending's


def test_confirm_solves_the_ticket_as_deflected_and_credits_the_article(db: Database, cli) -> None:
    _seed(db)
    ticket = _ticket(db, "Forgot my password", "Cannot sign in")
    sent = cli(
        "support", "kb", "deflect", str(ticket), "reset-password", "--now", "2026-03-02T11:00Z"
    )
    assert sent.exit_code == 0, sent.stderr
    assert "is pending until" in said(sent)
    doc = _json(
        cli("support", "kb", "confirm", str(ticket), "--now", "2026-03-02T12:00:00Z", "--json")
    )
    assert doc == {
        "ticket_id": ticket,
        "ticket_status": "solved",
        "resolution": "deflected",
        "article": "reset-password",
        "article_id": doc["article_id"],
    }
    with db.read_session() as s:
        row = s.get(SupportTicket, ticket)
        kinds = s.scalars(
            select(TicketKbLink.kind).where(TicketKbLink.ticket_id == ticket).order_by("kind")
        ).all()
    assert row is not None
    assert (row.status, row.resolution) == ("solved", "deflected")
    assert row.solved_at == dt.datetime(2026, 3, 2, 12, tzinfo=dt.UTC)
    assert list(kinds) == ["resolved_by", "sent"]
    shown = _json(cli("support", "kb", "show", "reset-password", "--json"))
    assert (shown["sent"], shown["resolved_by"]) == (1, 1)

    twice = cli("support", "kb", "confirm", str(ticket))
    assert twice.exit_code == 2 and "not awaiting confirmation" in said(twice)


def test_a_requester_reply_reopens_the_normal_flow(db: Database, cli) -> None:
    _seed(db)
    ticket = _ticket(db, "Stream has no audio", "Silent stream on Sunday")
    sent = cli("support", "kb", "deflect", str(ticket), "stream-no-audio", "--now", T0.isoformat())
    assert sent.exit_code == 0, sent.stderr
    with db.session() as s:
        tickets.reply(
            s,
            Rules.load(s),
            ticket,
            author="requester",
            body="Still silent after checking the mixer.",
            now=T0 + dt.timedelta(hours=2),
        )
    with db.read_session() as s:
        row = s.get(SupportTicket, ticket)
    assert row is not None and row.status == "open" and row.resolution is None
    refused = cli("support", "kb", "confirm", str(ticket))
    assert refused.exit_code == 2
    assert f"ticket {ticket} is open, not awaiting confirmation" in said(refused)
    with db.read_session() as s:
        kinds = s.scalars(select(TicketKbLink.kind).where(TicketKbLink.ticket_id == ticket)).all()
    assert kinds == ["sent"]


def test_deflecting_with_an_article_that_is_not_published_exits_2(db: Database, cli) -> None:
    _seed(db)
    ticket = _ticket(db, "Card declined")
    assert cli("support", "kb", "add", "drafty", "--title", "D", "--body", "d").exit_code == 0
    draft = cli("support", "kb", "deflect", str(ticket), "drafty")
    assert draft.exit_code == 2
    assert "article 'drafty' is draft; only a published article can be sent" in said(draft)
    assert cli("support", "kb", "archive", "card-declined").exit_code == 0
    archived = cli("support", "kb", "deflect", str(ticket), "card-declined")
    assert archived.exit_code == 2 and "is archived" in said(archived)
    with db.read_session() as s:
        assert s.scalar(select(text("count(*)")).select_from(OutboundMessage)) == 0
        assert s.get(SupportTicket, ticket).status == "new"  # type: ignore[union-attr]


@pytest.mark.parametrize(
    "args",
    [
        ("deflect", "999", "card-declined"),
        ("suggest", "999"),
        ("confirm", "999"),
        ("link", "999", "card-declined"),
    ],
)
def test_an_unknown_ticket_exits_2(db: Database, cli, args: tuple[str, ...]) -> None:
    _seed(db)
    result = cli("support", "kb", *args)
    assert result.exit_code == 2
    assert "no ticket 999" in said(result)


def test_deflect_with_an_unknown_article_exits_2_and_sends_nothing(db: Database, cli) -> None:
    _seed(db)
    ticket = _ticket(db, "Card declined")
    result = cli("support", "kb", "deflect", str(ticket), "no-such-article")
    assert result.exit_code == 2
    assert "no knowledge-base article 'no-such-article'" in said(result)
    with db.read_session() as s:
        assert s.scalar(select(text("count(*)")).select_from(OutboundMessage)) == 0


def test_confirm_before_any_article_was_sent_exits_2(db: Database, cli) -> None:
    _seed(db)
    ticket = _ticket(db, "Card declined")
    result = cli("support", "kb", "confirm", str(ticket))
    assert result.exit_code == 2
    assert "no article was sent to the requester" in said(result)


def test_deflecting_a_solved_ticket_exits_2(db: Database, cli) -> None:
    _seed(db)
    ticket = _ticket(db, "Card declined")
    with db.session() as s:
        tickets.set_status(s, Rules.load(s), ticket, "solved", now=T0 + dt.timedelta(hours=1))
    result = cli("support", "kb", "deflect", str(ticket), "card-declined")
    assert result.exit_code == 2
    assert f"ticket {ticket} is solved" in said(result)


def test_link_by_hand_records_once_and_refuses_a_draft_as_sent(db: Database, cli) -> None:
    _seed(db)
    ticket = _ticket(db, "Card declined")
    first = _json(cli("support", "kb", "link", str(ticket), "card-declined", "--json"))
    assert first["created"] is True and first["kind"] == "suggested"
    second = cli("support", "kb", "link", str(ticket), "card-declined")
    assert second.exit_code == 0 and "already linked" in said(second)
    bad_kind = cli("support", "kb", "link", str(ticket), "card-declined", "--kind", "liked")
    assert bad_kind.exit_code == 2 and "link kind 'liked' is not one of" in said(bad_kind)
    assert cli("support", "kb", "add", "drafty", "--title", "D", "--body", "d").exit_code == 0
    draft = cli("support", "kb", "link", str(ticket), "drafty", "--kind", "sent")
    assert draft.exit_code == 2 and "only a published article" in said(draft)


# ---------------------------------------------------------------- schema


def test_the_search_objects_survive_a_downgrade_and_upgrade(db: Database) -> None:
    """0008's hand-written FTS objects go away with it and come back; models still agree."""
    _seed(db)
    upgrade(db.engine, "head")
    from alembic import command

    from faithflow_ops.migrate import _config

    with db.engine.begin() as conn:
        command.downgrade(_config(db.engine, conn), "0007")
    assert current_revision(db.engine) == "0007"
    upgrade(db.engine)
    assert schema_diff(db.engine) == []
    with db.session() as s:
        kb.add_article(
            s, slug="again", title="Password again", body="b", publish=True, now=T0, actor=ACTOR
        )
    with db.read_session() as s:
        assert [m.article.slug for m in kb.search(s, "password")] == ["again"]


def test_deflect_computes_the_clocks_with_the_configured_warning(
    db: Database, cli, monkeypatch: pytest.MonkeyPatch
) -> None:
    # resolution keeps running while pending (no pausing status): its warning time is set at
    # the deflection, with FAITHFLOW_SLA_WARNING_MINUTES, not the built-in 15 minutes
    _seed(db)
    monkeypatch.setenv("FAITHFLOW_SLA_WARNING_MINUTES", "120")
    paused = cli("sla", "policy", "set", "--metric", "resolution", "--pause", "")
    assert paused.exit_code == 0, paused.stderr
    ticket = _ticket(db, "Card declined", "The bank declined my card")
    sent = cli(
        "support", "kb", "deflect", str(ticket), "card-declined", "--now", "2026-03-02T10:20:00Z"
    )
    assert sent.exit_code == 0, sent.stderr
    with db.read_session() as s:
        row = s.get(SupportTicket, ticket)
    assert row is not None and row.status == "pending"
    # normal resolution: 3 business days from Mon 10:00 → Thu 10:00; warning 2 h before
    assert row.resolution_due_at == dt.datetime(2026, 3, 5, 10, 0, tzinfo=dt.UTC)
    assert row.resolution_warn_at == dt.datetime(2026, 3, 5, 8, 0, tzinfo=dt.UTC)
