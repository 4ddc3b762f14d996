"""`retention run` on both databases: per data class (webhook bodies dropped with the ledger
kept; job runs deleted but each job's newest), a tenant's own period over the platform
default, legal holds (also one placed after the preview), batches, resumption after an
interruption, idempotency, and an audit_log entry per batch."""

from __future__ import annotations

import pytest
from retention_data import NOW, Data, run, z
from sqlalchemy import func, select

from faithflow_ops.errors import UserError
from faithflow_ops.models import AuditLog, JobRun, WebhookEvent
from faithflow_ops.retention import holds, purge
from faithflow_ops.tenancy.policies import set_policy


def _bodies(data: Data) -> int:
    with data.db.read_session() as session:
        return session.scalar(
            select(func.count()).where(WebhookEvent.payload.is_not(None))
        ) or 0  # fmt: skip


def test_old_finished_webhook_bodies_are_dropped_and_the_ledger_kept(data: Data) -> None:
    [old] = data.events(1, tenant=data.grace, age=91)
    [recent] = data.events(1, tenant=data.grace, age=89)
    [waiting] = data.events(1, tenant=data.grace, age=120, status="failed")
    [unmatched] = data.events(1, tenant=None, age=120, status="unmatched")
    [platform] = data.events(1, tenant=None, age=100, status="ignored")
    result = run(data.db, "retention")
    assert result.status == "succeeded", result.error
    assert dict(result.counts) == {"drop_webhook_payloads": 2}  # platform batch, grace batch
    gone = data.event(old)
    assert (gone.payload, gone.raw_body, gone.status, gone.event_type) == (
        None, None, "applied", "invoice.paid"
    )  # fmt: skip
    assert data.event(platform).payload is None
    for kept in (recent, waiting, unmatched):
        assert data.event(kept).payload is not None
    with data.db.read_session() as session:
        entries = session.scalars(
            select(AuditLog).where(AuditLog.action == "retention.purge").order_by(AuditLog.id)
        ).all()
    assert [(e.tenant_id, e.after["rows"] if e.after else None) for e in entries] == [
        (None, 1), (data.grace, 1)
    ]  # fmt: skip
    assert dict(run(data.db, "retention").counts) == {}  # a rerun purges nothing


def test_a_tenants_own_retention_period_overrides_the_platform_default(data: Data) -> None:
    with data.db.session() as session:
        set_policy(session, "hope", actor="test", data_retention_days=30)
    [hope_old] = data.events(1, tenant=data.hope, age=40)
    [grace_same_age] = data.events(1, tenant=data.grace, age=40)
    run(data.db, "retention")
    assert data.event(hope_old).payload is None
    assert data.event(grace_same_age).payload is not None  # default 90 days


def test_a_legal_hold_stops_every_purge_of_the_tenant(data: Data) -> None:
    [held] = data.events(1, tenant=data.grace, age=200)
    [other] = data.events(1, tenant=data.hope, age=200)
    with data.db.session() as session:
        holds.place(session, "grace", "litigation 2026-14", actor="test", now=z(NOW))
    preview = run(data.db, "retention", dry_run=True)
    assert [a.action.target for a in preview.actions] == ["tenant:hope"]
    run(data.db, "retention")
    assert data.event(held).payload is not None
    assert data.event(other).payload is None
    with data.db.session() as session:
        holds.release(session, "grace", actor="test", now=z(NOW))
    run(data.db, "retention")
    assert data.event(held).payload is None


def test_a_hold_placed_after_the_preview_makes_its_batches_stale(data: Data) -> None:
    [held] = data.events(1, tenant=data.grace, age=200)
    preview = run(data.db, "retention", dry_run=True)
    with data.db.session() as session:
        holds.place(session, "grace", "subpoena", actor="test", now=z(NOW))
    with data.db.session() as session, pytest.raises(purge.StaleAction, match="legal hold"):
        purge.apply(session, preview.actions[0].action)
    assert data.event(held).payload is not None


def test_work_is_batched_and_an_interrupted_run_resumes(data: Data) -> None:
    data.events(2500, tenant=data.grace, age=100)
    preview = run(data.db, "retention", dry_run=True, batch_size=1000)
    assert [a.action.data["rows"] for a in preview.actions] == [1000, 1000, 500]
    first = run(data.db, "retention", limit=1, batch_size=1000)  # a run cut short after a batch
    assert dict(first.outcomes) == {"applied": 1}
    assert _bodies(data) == 1500
    rest = run(data.db, "retention", batch_size=1000)
    assert [a.action.data["rows"] for a in rest.actions] == [1000, 500]
    assert _bodies(data) == 0


def test_old_job_runs_are_deleted_but_each_jobs_newest_is_kept(data: Data) -> None:
    old = data.job_run("sla_sweep", 120)
    newest_old_job = data.job_run("dunning", 200)  # the only run of dunning: kept
    recent = data.job_run("sla_sweep", 10)
    result = run(data.db, "retention")
    assert dict(result.counts) == {"delete_job_runs": 1}
    with data.db.read_session() as session:
        ids = set(session.scalars(select(JobRun.id)))
    assert old not in ids and {newest_old_job, recent} <= ids


def test_the_preview_changes_nothing(data: Data) -> None:
    data.events(3, tenant=data.grace, age=100)
    data.job_run("sla_sweep", 120)
    data.job_run("sla_sweep", 1)
    preview = run(data.db, "retention", dry_run=True)
    assert dict(preview.counts) == {"drop_webhook_payloads": 1, "delete_job_runs": 1}
    assert _bodies(data) == 3


def test_a_hold_needs_a_reason_and_one_at_a_time(data: Data) -> None:
    with data.db.session() as session:
        with pytest.raises(UserError, match="needs a --reason"):
            holds.place(session, "grace", " ", actor="test", now=z(NOW))
        holds.place(session, "grace", "audit", actor="test", now=z(NOW))
        with pytest.raises(UserError, match="already on legal hold"):
            holds.place(session, "grace", "again", actor="test", now=z(NOW))
        with pytest.raises(UserError, match="no active legal hold"):
            holds.release(session, "hope", actor="test", now=z(NOW))


def test_hold_commands_and_a_bad_option(data: Data, cli) -> None:  # type: ignore[no-untyped-def]
    placed = cli("retention", "hold", "--tenant", "grace", "--reason", "matter 7", "--json")
    assert placed.exit_code == 0, placed.output
    listed = cli("retention", "holds", "--json")
    assert '"matter 7"' in listed.stdout
    unknown = cli("retention", "hold", "--tenant", "nope", "--reason", "x")
    assert unknown.exit_code == 2 and "no tenant with slug 'nope'" in unknown.stderr
    bad = cli("retention", "run", "--webhook-days", "1", "--now", NOW)
    assert bad.exit_code == 2
