"""`retention run` for the classes beyond webhook bodies and job runs, on both databases:
closed tickets anonymised, finished outbox messages redacted, health history deleted,
soft-deleted tenants purged to a tombstone; a legal hold stops every class; a run interrupted
after batch k resumes; reruns change nothing; the preview writes nothing and counts per tenant
and class; a replay of an event whose body retention dropped is refused."""

from __future__ import annotations

import json

import pytest
from retention_data import NOW, Data, days_ago, run, z
from sqlalchemy import func, select

from faithflow_ops.config import RETENTION_DAYS
from faithflow_ops.jobs import registry
from faithflow_ops.models import (
    AuditLog,
    Bounce,
    DomainCheck,
    HealthCheckResult,
    Incident,
    OutboundMessage,
    SupportMessage,
    SupportTicket,
    Tenant,
    User,
    WebhookEvent,
)
from faithflow_ops.retention import anonymise, holds, purge
from faithflow_ops.tenancy.policies import set_policy


def _audit(data: Data) -> list[tuple[int | None, str, int]]:
    with data.db.read_session() as session:
        return [
            (e.tenant_id, e.entity_type, e.after["rows"] if e.after else 0)
            for e in session.scalars(
                select(AuditLog).where(AuditLog.action == "retention.purge").order_by(AuditLog.id)
            )
        ]


def _count(data: Data, *where: object, model: type = OutboundMessage) -> int:
    with data.db.read_session() as session:
        return session.scalar(select(func.count()).select_from(model).where(*where)) or 0  # type: ignore[arg-type]


# --- support tickets --------------------------------------------------------------------------


def test_closed_tickets_past_the_period_are_anonymised(data: Data) -> None:
    [old] = data.tickets(1, tenant=data.grace, age=366)
    [recent] = data.tickets(1, tenant=data.grace, age=300)
    [solved] = data.tickets(1, tenant=data.grace, age=400, status="solved")
    result = run(data.db, "retention", data_class="support_tickets")
    assert dict(result.counts) == {"anonymise_tickets": 1}
    ticket, (asked, answered) = data.ticket(old)
    assert ticket.requester_name is None
    assert ticket.requester_email == anonymise.placeholder_email(old)
    assert ticket.subject == "Refund for [redacted]"
    assert ticket.anonymised_at == z(NOW)
    assert (ticket.status, ticket.priority, ticket.closed_at) == ("closed", "normal", days_ago(366))
    assert asked.author_email is None
    assert (
        asked.body
        == "I am [redacted], call me on [redacted] or [redacted]; order 2026-03-01 cost 5000"
    )
    assert (answered.author_email, answered.body) == (
        "agent@faithflow.example",
        "Hi [redacted], refunded.",
    )
    for kept in (recent, solved):
        row, _ = data.ticket(kept)
        assert (row.requester_name, row.anonymised_at) == ("Ada Obi", None)
    assert _audit(data) == [(data.grace, "support_tickets", 1)]
    assert dict(run(data.db, "retention").counts) == {}  # idempotent


def test_a_tenants_own_period_applies_to_its_tickets(data: Data) -> None:
    with data.db.session() as session:
        set_policy(session, "hope", actor="test", data_retention_days=30)
    [hope] = data.tickets(1, tenant=data.hope, age=31)
    [grace] = data.tickets(1, tenant=data.grace, age=31)
    run(data.db, "retention")
    assert data.ticket(hope)[0].anonymised_at is not None
    assert data.ticket(grace)[0].anonymised_at is None  # platform default: 365 days


# --- outbound messages ------------------------------------------------------------------------


def test_finished_messages_lose_their_bodies_and_keep_the_ledger(data: Data) -> None:
    [delivered] = data.messages(1, tenant=data.grace, age=91)
    [failed] = data.messages(1, tenant=data.grace, age=91, status="failed")
    [queued] = data.messages(1, tenant=data.grace, age=91, status="queued")
    [young] = data.messages(1, tenant=data.grace, age=80)
    [platform] = data.messages(1, tenant=None, age=91)
    result = run(data.db, "retention", data_class="outbound_messages")
    assert dict(result.counts) == {"redact_messages": 2}  # the platform batch, grace's batch
    for done in (delivered, failed, platform):
        row = data.message(done)
        assert (row.body, row.subject, row.variables, row.content_variables) == (
            "[redacted]", None, {}, None
        )  # fmt: skip
        assert (row.recipient, row.template, row.redacted_at) == (
            "ada@example.org", "dunning_notice", z(NOW)
        )  # fmt: skip
    assert data.message(failed).status == "failed"
    for kept in (queued, young):
        assert data.message(kept).body == "Dear Ada, please pay."
    assert dict(run(data.db, "retention").counts) == {}


# --- health history ---------------------------------------------------------------------------


def test_old_health_results_are_deleted_but_each_checks_newest_is_kept(data: Data) -> None:
    old = data.health("database", 100)
    only = data.health("outbox", 200)  # the only result of its check: kept
    recent = data.health("database", 1)
    result = run(data.db, "retention", data_class="health_checks")
    assert dict(result.counts) == {"delete_health_checks": 1}
    with data.db.read_session() as session:
        ids = set(session.scalars(select(HealthCheckResult.id)))
    assert ids == {only, recent} and old not in ids
    assert _audit(data) == [(None, "health_checks", 1)]


# --- soft-deleted tenants ---------------------------------------------------------------------


def test_a_soft_deleted_tenant_is_purged_to_a_tombstone(data: Data) -> None:
    ids = data.deleted_tenant("zion", deleted_age=31)
    gone = ids["tenant"]
    data.tickets(1, tenant=data.grace, age=1, status="open")  # another tenant's rows stay
    preview = run(data.db, "retention", dry_run=True, data_class="deleted_tenants")
    tables = [a.action.data["table"] for a in preview.actions]
    # children before parents: messages before tickets, checks before domains, tenant last
    assert tables.index("support_messages") < tables.index("support_tickets")
    assert tables.index("domain_checks") < tables.index("tenant_domains")
    assert tables[-1] == "tenants" and preview.actions[-1].action.kind == "tombstone_tenant"
    result = run(data.db, "retention", data_class="deleted_tenants")
    assert result.status == "succeeded", result.error
    assert dict(result.outcomes) == {"applied": len(tables)}
    for model in (SupportTicket, SupportMessage, OutboundMessage, WebhookEvent, User, Incident):
        assert _count(data, model.tenant_id == gone, model=model) == 0, model
    assert _count(data, model=DomainCheck) == 0
    with data.db.read_session() as session:
        tenant = session.get(Tenant, gone)
        assert tenant is not None
        assert (tenant.slug, tenant.name, tenant.billing_email, tenant.status) == (
            f"purged-{gone}", "(purged tenant)", None, "archived"
        )  # fmt: skip
        assert tenant.deleted_at == days_ago(31)
        check = session.get(HealthCheckResult, ids["health_check"])  # platform history: detached
        assert check is not None and check.incident_id is None
        bounce = session.get(Bounce, ids["bounce"])
        assert bounce is not None and bounce.message_id is None
    assert _count(data, SupportTicket.tenant_id == data.grace, model=SupportTicket) == 1
    entries = _audit(data)  # one entry per batch, with its row count
    assert len(entries) == len(tables) and {(t, c) for t, c, _ in entries} == {
        (gone, "deleted_tenants")
    }
    assert sum(rows for _, _, rows in entries) == sum(
        a.action.data["rows"] for a in preview.actions
    )
    assert dict(run(data.db, "retention", data_class="deleted_tenants").counts) == {}


def test_a_tenant_deleted_recently_or_restored_is_not_purged(data: Data) -> None:
    ids = data.deleted_tenant("zion", deleted_age=29)
    assert dict(run(data.db, "retention", data_class="deleted_tenants").counts) == {}
    preview = run(data.db, "retention", dry_run=True, now="2026-06-10T00:00:00Z",
                  data_class="deleted_tenants")  # fmt: skip
    assert preview.actions
    with data.db.session() as session:  # restored before the run
        tenant = session.get(Tenant, ids["tenant"])
        assert tenant is not None
        tenant.deleted_at = None
    with data.db.session() as session, pytest.raises(purge.StaleAction, match="no longer deleted"):
        purge.apply(session, preview.actions[0].action)


# --- legal hold, interruption, preview --------------------------------------------------------


def test_a_legal_hold_stops_every_class_of_the_tenant(data: Data) -> None:
    ids = data.deleted_tenant("zion", deleted_age=100)
    data.tickets(2, tenant=data.grace, age=400)
    data.messages(2, tenant=data.grace, age=100)
    data.events(2, tenant=data.grace, age=100)
    [hope_ticket] = data.tickets(1, tenant=data.hope, age=400)
    with data.db.session() as session:
        holds.place(session, "grace", "litigation", actor="test", now=z(NOW))
        holds.place(session, "zion", "regulator request", actor="test", now=z(NOW))
    result = run(data.db, "retention")
    assert {a.action.target for a in result.actions} == {"tenant:hope"}
    assert _count(data, SupportTicket.anonymised_at.is_not(None), model=SupportTicket) == 1
    assert data.ticket(hope_ticket)[0].anonymised_at is not None
    assert _count(data, OutboundMessage.redacted_at.is_not(None)) == 0
    with data.db.read_session() as session:
        assert session.get(Tenant, ids["tenant"]).slug == "zion"  # type: ignore[union-attr]


def test_an_interrupted_run_resumes_where_it_stopped(
    data: Data, monkeypatch: pytest.MonkeyPatch
) -> None:
    data.messages(25, tenant=data.grace, age=100)
    data.tickets(7, tenant=data.hope, age=400)
    real = purge.apply
    applied = 0

    def crash_after_three(session, action):  # type: ignore[no-untyped-def]
        nonlocal applied
        if applied == 3:
            raise KeyboardInterrupt  # the process dies mid-run (not a failed action)
        real(session, action)
        applied += 1

    monkeypatch.setattr(purge, "apply", crash_after_three)
    with pytest.raises(KeyboardInterrupt):
        run(data.db, "retention", batch_size=5)
    monkeypatch.setattr(purge, "apply", real)
    # batches 1-3 landed whole (tickets come first: 5 + 2, then 5 messages), nothing else
    assert _count(data, SupportTicket.anonymised_at.is_not(None), model=SupportTicket) == 7
    assert _count(data, OutboundMessage.redacted_at.is_not(None)) == 5
    assert [rows for _, _, rows in _audit(data)] == [5, 2, 5]
    rest = run(data.db, "retention", batch_size=5)
    assert [a.action.data["rows"] for a in rest.actions] == [5, 5, 5, 5]
    assert dict(rest.outcomes) == {"applied": 4}
    assert _count(data, OutboundMessage.redacted_at.is_(None)) == 0
    assert dict(run(data.db, "retention", batch_size=5).counts) == {}


def test_the_preview_writes_nothing_and_counts_per_tenant_and_class(data: Data, cli) -> None:  # type: ignore[no-untyped-def]
    data.tickets(3, tenant=data.grace, age=400)
    data.messages(4, tenant=data.hope, age=100)
    data.health("database", 100)
    data.health("database", 1)
    before = _count(data, model=AuditLog)
    preview = run(data.db, "retention", dry_run=True)
    assert dict(preview.counts) == {
        "anonymise_tickets": 1, "redact_messages": 1, "delete_health_checks": 1
    }  # fmt: skip
    assert _count(data, model=AuditLog) == before
    assert _count(data, SupportTicket.anonymised_at.is_not(None), model=SupportTicket) == 0
    with data.db.read_session() as session:
        counts = purge.due_counts(session, z(NOW), RETENTION_DAYS)
    assert counts == {
        "grace": {"support_tickets": 3}, "hope": {"outbound_messages": 4},
        None: {"health_checks": 1},
    }  # fmt: skip
    due = cli("retention", "due", "--now", NOW, "--json")
    assert due.exit_code == 0, due.output
    assert json.loads(due.stdout) == [
        {"tenant": None, "class": "health_checks", "rows": 1},
        {"tenant": "grace", "class": "support_tickets", "rows": 3},
        {"tenant": "hope", "class": "outbound_messages", "rows": 4},
    ]
    shown = cli("retention", "preview", "--now", NOW)
    assert shown.exit_code == 0, shown.output
    assert "support_tickets" in shown.stdout and "tenant:grace" in shown.stdout


def test_settings_give_the_platform_defaults(data: Data, monkeypatch: pytest.MonkeyPatch) -> None:
    data.messages(1, tenant=data.grace, age=40)
    assert dict(run(data.db, "retention", dry_run=True).counts) == {}
    monkeypatch.setenv("FAITHFLOW_RETENTION_OUTBOUND_MESSAGES_DAYS", "30")
    assert dict(run(data.db, "retention", dry_run=True).counts) == {"redact_messages": 1}
    assert dict(run(data.db, "retention", dry_run=True, message_days=60).counts) == {}


def test_bad_retention_settings_and_options_are_refused(data: Data, cli) -> None:  # type: ignore[no-untyped-def]
    before = _count(data, model=AuditLog)
    bad = cli("retention", "run", "--data-class", "tickets", "--now", NOW)
    assert bad.exit_code == 2 and "--data-class" in bad.stderr
    days = cli("retention", "run", "--ticket-days", "3", "--now", NOW)
    assert days.exit_code == 2 and "--ticket-days" in days.stderr
    assert _count(data, model=AuditLog) == before
    assert registry.get("retention").name == "retention"


def test_replaying_an_event_whose_body_retention_dropped_is_refused(data: Data, cli) -> None:  # type: ignore[no-untyped-def]
    [event_id] = data.events(1, tenant=data.grace, age=100)
    run(data.db, "retention")
    assert data.event(event_id).payload is None
    replay = cli("webhooks", "replay", str(event_id))
    assert replay.exit_code == 2
    assert "data retention dropped it" in replay.stderr and "Traceback" not in replay.output
    assert data.event(event_id).status == "applied"


def test_a_bad_retention_setting_names_the_variable() -> None:
    from faithflow_ops.config import Settings
    from faithflow_ops.errors import ConfigError

    with pytest.raises(ConfigError, match="FAITHFLOW_RETENTION_JOB_RUNS_DAYS='3' is below 7"):
        Settings.from_env({"FAITHFLOW_RETENTION_JOB_RUNS_DAYS": "3"})
    assert Settings.from_env({}).retention_days == RETENTION_DAYS
