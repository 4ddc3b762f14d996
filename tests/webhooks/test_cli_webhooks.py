"""`faithflow webhooks …` (list, show, replay, sign) through the CLI, on SQLite and Postgres."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import pytest
from helpers import said
from sqlalchemy import select

from faithflow_ops.db import Database
from faithflow_ops.models import AuditLog, ProviderAccount, Tenant, WebhookEvent
from faithflow_ops.providers import paystack as paystack_provider
from faithflow_ops.providers import stripe as stripe_provider
from faithflow_ops.tenancy.records import column_values
from faithflow_ops.webhooks import events, inbox

T0 = dt.datetime(2026, 3, 1, 9, 0, tzinfo=dt.UTC)

LIST_FIELDS = {
    "id", "provider", "scope", "event_key", "type", "status", "delivery_count",
    "first_received_at", "last_received_at", "applied_at", "tenant_id", "tenant", "object_id",
    "outcome", "last_error",
}  # fmt: skip


def stripe_event(key: str, type_: str, obj: dict[str, Any], created: int = 1772355600) -> Any:
    return {"id": key, "type": type_, "created": created, "data": {"object": obj}}


def customer_updated(key: str, customer: str, email: str = "pay@grace.example") -> Any:
    obj = {"id": customer, "object": "customer", "email": email}
    return stripe_event(key, "customer.updated", obj)


def deliver(
    db: Database,
    payload: Any,
    *,
    provider: str = "stripe",
    scope: str = "platform",
    at: dt.datetime = T0,
) -> inbox.Received:
    """A verified delivery through the live path (what the receiver does after the signature)."""
    return inbox.receive(db, events.parse(provider, scope, payload), now=at)


def add_tenant(cli: Any, slug: str = "grace") -> int:
    result = cli("tenants", "add", slug, "--name", slug.title(), "--json")
    assert result.exit_code == 0, result.stderr
    return int(json.loads(result.stdout)["id"])


def link_directly(db: Database, tenant_id: int, customer: str) -> None:
    """Link without `tenants link` (which would handle the unmatched events itself)."""
    with db.session() as s:
        s.add(
            ProviderAccount(
                tenant_id=tenant_id,
                provider="stripe",
                kind="customer",
                external_id=customer,
                source="test",
            )
        )


def rows(db: Database) -> dict[int, WebhookEvent]:
    with db.read_session() as s:
        return {r.id: r for r in s.scalars(select(WebhookEvent))}


def snapshot(db: Database) -> list[Any]:
    with db.read_session() as s:
        return [
            [column_values(r) for r in s.scalars(select(model).order_by(model.id))]
            for model in (WebhookEvent, Tenant, AuditLog, ProviderAccount)
        ]


def as_json(result: Any) -> Any:
    assert result.exit_code == 0, result.stderr
    return json.loads(result.stdout)


@pytest.fixture
def three(db: Database, cli: Any) -> dict[str, int]:
    """An ignored, an unmatched and an applied Stripe event, received an hour apart."""
    tenant = add_tenant(cli)
    link_directly(db, tenant, "cus_Linked1")
    ignored = deliver(db, stripe_event("evt_1", "balance.available", {"id": "bal_1"}), at=T0)
    unmatched = deliver(db, customer_updated("evt_2", "cus_Nobody1"), at=T0 + dt.timedelta(hours=1))
    applied = deliver(db, customer_updated("evt_3", "cus_Linked1"), at=T0 + dt.timedelta(hours=2))
    assert (ignored.status, unmatched.status, applied.status) == ("ignored", "unmatched", "applied")
    return {"ignored": ignored.id, "unmatched": unmatched.id, "applied": applied.id}


# --- list -------------------------------------------------------------------------------------


def test_list_json_is_newest_first_with_column_names(cli, db: Database, three) -> None:
    docs = as_json(cli("webhooks", "list", "--json"))
    assert [d["id"] for d in docs] == [three["applied"], three["unmatched"], three["ignored"]]
    assert all(set(d) == LIST_FIELDS for d in docs)
    applied = docs[0]
    assert applied["provider"] == "stripe" and applied["scope"] == "platform"
    assert applied["event_key"] == "evt_3" and applied["type"] == "customer.updated"
    assert applied["status"] == "applied" and applied["delivery_count"] == 1
    assert applied["applied_at"] == (T0 + dt.timedelta(hours=2)).isoformat()
    assert applied["tenant_id"] is not None and applied["object_id"] == "cus_Linked1"
    assert applied["tenant"] == "grace" and docs[1]["tenant"] is None  # the slug, beside the id
    assert "billing email updated" in applied["outcome"] and applied["last_error"] is None


def test_list_filters(cli, db: Database, three) -> None:
    def ids(*args: str) -> list[int]:
        return [d["id"] for d in as_json(cli("webhooks", "list", "--json", *args))]

    assert ids("--status", "unmatched") == [three["unmatched"]]
    assert ids("--type", "customer.updated") == [three["applied"], three["unmatched"]]
    assert ids("--since", "2026-03-01T10:00:00Z") == [three["applied"], three["unmatched"]]
    assert ids("--since", "2026-03-01T11:00:00+01:00") == [three["applied"], three["unmatched"]]
    assert ids("--provider", "paystack") == []
    assert ids("--scope", "tenant") == []
    assert ids("--provider", "stripe", "--scope", "platform", "--limit", "1") == [three["applied"]]


def test_list_says_when_the_limit_hides_events(cli, db: Database, three) -> None:
    result = cli("webhooks", "list", "--limit", "2", "--json")
    assert len(as_json(result)) == 2
    assert "showing 2 of 3; raise --limit to see more" in said(result)


def test_list_prints_a_table(cli, db: Database, three) -> None:
    result = cli("webhooks", "list")
    assert result.exit_code == 0, result.stderr
    assert "balance.available" in result.stdout and "unmatched" in result.stdout
    assert "3 webhook events" in said(result)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--status", "done"),
         "--status 'done' is not one of: received, applied, ignored, unmatched, stale, failed"),
        (("--provider", "paypal"), "--provider 'paypal' is not one of: stripe, paystack"),
        (("--scope", "global"), "--scope 'global' is not one of: platform, tenant"),
        (("--since", "yesterday"), "--since 'yesterday' is not an ISO-8601 time"),
    ],
)  # fmt: skip
def test_list_refuses_bad_filters(cli, db: Database, args: tuple[str, ...], message: str) -> None:
    result = cli("webhooks", "list", *args)
    assert result.exit_code == 2
    assert message in said(result)
    assert result.stdout == ""


# --- show -------------------------------------------------------------------------------------


def test_show_json_has_the_row_and_its_payload(cli, db: Database, three) -> None:
    doc = as_json(cli("webhooks", "show", str(three["unmatched"]), "--json"))
    assert set(doc) >= LIST_FIELDS
    assert doc["status"] == "unmatched" and doc["type"] == "customer.updated"
    assert doc["payload"] == customer_updated("evt_2", "cus_Nobody1")
    assert doc["customer_ref"] == "cus_Nobody1"
    assert "is not linked to a tenant" in doc["outcome"]


def test_show_prints_a_record(cli, db: Database, three) -> None:
    result = cli("webhooks", "show", str(three["unmatched"]))
    assert result.exit_code == 0, result.stderr
    assert "cus_Nobody1" in result.stdout and "evt_2" in result.stdout


def test_show_an_unknown_event_exits_2(cli, db: Database) -> None:
    result = cli("webhooks", "show", "999")
    assert result.exit_code == 2
    assert "no webhook event 999; see `faithflow webhooks list`" in said(result)


# --- replay -----------------------------------------------------------------------------------


def test_replay_one_unmatched_event_after_its_customer_is_linked(cli, db: Database, three) -> None:
    tenant = add_tenant(cli, "hope")
    link_directly(db, tenant, "cus_Nobody1")
    result = cli("webhooks", "replay", str(three["unmatched"]), "--json")
    [doc] = as_json(result)
    assert doc["id"] == three["unmatched"] and doc["type"] == "customer.updated"
    assert (doc["status_before"], doc["status"]) == ("unmatched", "applied")
    assert "billing email updated" in doc["detail"]
    row = rows(db)[three["unmatched"]]
    assert row.status == "applied" and row.tenant_id == tenant
    with db.read_session() as s:
        assert s.get(Tenant, tenant).billing_email == "pay@grace.example"


def test_replay_prints_one_line_per_event(cli, db: Database, three) -> None:
    result = cli("webhooks", "replay", str(three["unmatched"]))
    assert result.exit_code == 0, result.stderr
    assert "unmatched → unmatched" in result.stdout
    assert "1 replayed: 0 applied, 1 unmatched" in said(result)


def test_replay_of_an_applied_event_changes_nothing(cli, db: Database, three) -> None:
    before = snapshot(db)
    [doc] = as_json(cli("webhooks", "replay", str(three["applied"]), "--json"))
    assert (doc["status_before"], doc["status"]) == ("applied", "applied")
    assert doc["detail"] == "already applied; nothing to replay"
    assert snapshot(db) == before


def test_replay_failed_exits_1_while_the_handler_fails_then_0(
    cli, db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    from faithflow_ops.webhooks import stripe as stripe_handlers

    tenant = add_tenant(cli)
    link_directly(db, tenant, "cus_Linked1")

    def broken(session: Any, event: Any) -> Any:
        raise RuntimeError("handler bug")

    monkeypatch.setitem(stripe_handlers.PLATFORM, "customer.updated", broken)
    first = deliver(db, customer_updated("evt_f1", "cus_Linked1"))
    second = deliver(db, customer_updated("evt_f2", "cus_Linked1", "b@grace.example"))
    assert first.status == second.status == "failed"

    result = cli("webhooks", "replay", "--failed", "--json")
    assert result.exit_code == 1
    docs = json.loads(result.stdout)
    assert [d["id"] for d in docs] == [first.id, second.id]
    assert all(d["status_before"] == d["status"] == "failed" for d in docs)
    assert "RuntimeError: handler bug" in docs[0]["detail"]

    fixed = stripe_handlers.customer_updated
    monkeypatch.setitem(stripe_handlers.PLATFORM, "customer.updated", fixed)
    result = cli("webhooks", "replay", "--failed", "--limit", "1", "--json")
    assert [(d["id"], d["status"]) for d in as_json(result)] == [(first.id, "applied")]
    assert rows(db)[second.id].status == "failed"
    assert [d["status"] for d in as_json(cli("webhooks", "replay", "--failed", "--json"))] == [
        "applied"
    ]
    result = cli("webhooks", "replay", "--failed")
    assert result.exit_code == 0
    assert "no failed webhook events to replay" in said(result)


def test_replay_unmatched_handles_every_unmatched_event(cli, db: Database, three) -> None:
    other = deliver(db, customer_updated("evt_4", "cus_Nobody2"), at=T0 + dt.timedelta(hours=3))
    tenant = add_tenant(cli, "hope")
    link_directly(db, tenant, "cus_Nobody1")
    docs = as_json(cli("webhooks", "replay", "--unmatched", "--json"))
    assert [(d["id"], d["status"]) for d in docs] == [
        (three["unmatched"], "applied"),
        (other.id, "unmatched"),
    ]


def test_replay_dry_run_changes_nothing(cli, db: Database, three) -> None:
    tenant = add_tenant(cli, "hope")
    link_directly(db, tenant, "cus_Nobody1")
    before = snapshot(db)
    result = cli("webhooks", "replay", "--unmatched", "--dry-run", "--json")
    [doc] = as_json(result)
    assert (doc["status_before"], doc["status"]) == ("unmatched", "applied")
    assert doc["detail"].startswith("would be applied")
    assert "dry run: nothing was changed" in said(result)
    assert snapshot(db) == before
    result = cli("webhooks", "replay", str(three["unmatched"]), "--dry-run")
    assert result.exit_code == 0, result.stderr
    assert snapshot(db) == before


@pytest.mark.parametrize(
    "args",
    [(), ("1", "--failed"), ("--failed", "--unmatched"), ("1", "--unmatched")],
)
def test_replay_needs_exactly_one_target(cli, db: Database, args: tuple[str, ...]) -> None:
    result = cli("webhooks", "replay", *args)
    assert result.exit_code == 2
    assert "name exactly one of: an event ID, --failed or --unmatched" in said(result)


def test_replay_an_unknown_event_exits_2(cli, db: Database) -> None:
    result = cli("webhooks", "replay", "999")
    assert result.exit_code == 2
    assert "no webhook event 999; see `faithflow webhooks list`" in said(result)


# --- sign -------------------------------------------------------------------------------------

BODY = b'{"id": "evt_sign1",  "type": "customer.updated", "created": 1772355600,\n "data": {}}'


@pytest.fixture
def body_file(tmp_path: Path) -> Path:
    path = tmp_path / "event.json"
    path.write_bytes(BODY)
    return path


def test_sign_stripe_prints_a_header_that_verifies(cli, body_file: Path) -> None:
    args = ("--provider", "stripe", "--secret", "whsec_abc", str(body_file))
    result = cli("webhooks", "sign", *args)
    assert result.exit_code == 0, result.stderr
    name, _, value = result.stdout.strip().partition(": ")
    assert name == "Stripe-Signature" and value.startswith("t=") and ",v1=" in value
    stripe_provider.verify_webhook(BODY, value, ["whsec_abc"], tolerance=300)
    hint = said(result)
    assert "curl -X POST http://127.0.0.1:8000/webhooks/stripe/platform" in hint
    assert f"-H 'Stripe-Signature: {value}'" in hint
    assert f"--data-binary @{body_file}" in hint


def test_sign_stripe_with_a_timestamp_as_json(cli, body_file: Path) -> None:
    result = cli(
        "webhooks", "sign", "--provider", "stripe", "--secret", "whsec_abc",
        "--timestamp", "1772355600", str(body_file), "--json",
    )  # fmt: skip
    doc = as_json(result)
    header = doc["headers"]["Stripe-Signature"]
    assert header.startswith("t=1772355600,v1=")
    stripe_provider.verify_webhook(BODY, header, ["whsec_abc"], tolerance=0)


def test_sign_paystack_reads_stdin_and_the_secret_from_the_environment(
    cli, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PAYSTACK_SECRET_KEY", "sk_test_first,sk_test_second")
    result = cli("webhooks", "sign", "--provider", "paystack", "-", input=BODY.decode())
    assert result.exit_code == 0, result.stderr
    name, _, value = result.stdout.strip().partition(": ")
    assert name == "x-paystack-signature"
    paystack_provider.verify_webhook(BODY, value, ["sk_test_first"])
    assert "http://127.0.0.1:8000/webhooks/paystack/platform" in said(result)


def test_sign_stripe_tenant_scope_uses_its_own_secret(
    cli, body_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("STRIPE_PLATFORM_WEBHOOK_SECRET", "whsec_platform")
    monkeypatch.setenv("STRIPE_WEBHOOK_SECRET", "whsec_connect")
    doc = as_json(cli("webhooks", "sign", "--provider", "stripe", str(body_file), "--json"))
    stripe_provider.verify_webhook(BODY, doc["headers"]["Stripe-Signature"], ["whsec_platform"], 0)
    result = cli(
        "webhooks", "sign", "--provider", "stripe", "--scope", "tenant", str(body_file), "--json"
    )
    doc = as_json(result)
    stripe_provider.verify_webhook(BODY, doc["headers"]["Stripe-Signature"], ["whsec_connect"], 0)
    assert "http://127.0.0.1:8000/webhooks/stripe " in said(result) + " "


@pytest.mark.parametrize(
    ("provider", "variable"),
    [("stripe", "STRIPE_PLATFORM_WEBHOOK_SECRET"), ("paystack", "PAYSTACK_SECRET_KEY")],
)
def test_sign_without_a_secret_exits_2_naming_option_and_variable(
    cli, body_file: Path, provider: str, variable: str
) -> None:
    result = cli("webhooks", "sign", "--provider", provider, str(body_file))
    assert result.exit_code == 2
    assert f"no secret: pass --secret or set {variable}" in said(result)
    assert result.stdout == ""


def test_sign_refuses_a_missing_file_and_a_bad_provider(cli, tmp_path: Path) -> None:
    missing = tmp_path / "nope.json"
    result = cli("webhooks", "sign", "--provider", "stripe", "--secret", "s", str(missing))
    assert result.exit_code == 2
    assert f"cannot read {missing}" in said(result)
    result = cli("webhooks", "sign", "--provider", "paypal", "--secret", "s", str(missing))
    assert result.exit_code == 2
    assert "--provider 'paypal' is not one of: stripe, paystack" in said(result)
