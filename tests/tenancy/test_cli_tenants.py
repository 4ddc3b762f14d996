"""`faithflow tenants …` through the CLI, on SQLite and Postgres."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import pytest
from helpers import said
from sqlalchemy import delete, select, update

from faithflow_ops.db import Database
from faithflow_ops.models import AuditLog, Tenant, TenantSecurityPolicy

LAGOS = (
    "tenants", "add", "grace-lagos", "--name", "Grace Assembly Lagos",
    "--timezone", "Africa/Lagos", "--country", "NG", "--currency", "NGN",
    "--email", "finance@grace.example", "--phone", "+2348031234567",
)  # fmt: skip


def show(cli: Any, slug: str) -> dict[str, Any]:
    result = cli("tenants", "show", slug, "--json")
    assert result.exit_code == 0, result.stderr
    doc: dict[str, Any] = json.loads(result.stdout)
    return doc


def audit_rows(db: Database, action: str) -> list[AuditLog]:
    with db.read_session() as s:
        return list(
            s.scalars(select(AuditLog).where(AuditLog.action == action).order_by(AuditLog.id))
        )


def test_add_creates_an_active_tenant_whose_json_uses_column_names(cli, db: Database) -> None:
    result = cli(*LAGOS)
    assert result.exit_code == 0, result.stderr
    assert "added tenant grace-lagos" in said(result)
    doc = show(cli, "grace-lagos")
    assert doc["slug"] == "grace-lagos"
    assert doc["name"] == "Grace Assembly Lagos"
    assert doc["status"] == "active"
    assert doc["timezone"] == "Africa/Lagos"
    assert doc["country"] == "NG"
    assert doc["currency"] == "NGN"
    assert doc["billing_email"] == "finance@grace.example"
    assert doc["billing_phone"] == "+2348031234567"
    assert doc["suspended_at"] is None and doc["deleted_at"] is None
    assert doc["security_policy"]["stored"] is True
    assert doc["security_policy"]["mfa_required"] is False
    assert doc["subscriptions"] == [] and doc["users"] == 0


def test_add_json_prints_the_new_tenant(cli, db: Database) -> None:
    result = cli(*LAGOS, "--json")
    assert result.exit_code == 0, result.stderr
    doc = json.loads(result.stdout)
    assert doc["slug"] == "grace-lagos" and isinstance(doc["id"], int)


def test_add_normalises_country_currency_and_phone(cli, db: Database) -> None:
    result = cli(
        "tenants", "add", "hope-nairobi", "--name", "  Hope   Fellowship ", "--country", "ke",
        "--currency", "kes", "--phone", "+254 (712) 345-678", "--timezone", "Africa/Nairobi",
    )  # fmt: skip
    assert result.exit_code == 0, result.stderr
    doc = show(cli, "hope-nairobi")
    assert (doc["name"], doc["country"], doc["currency"], doc["billing_phone"]) == (
        "Hope Fellowship", "KE", "KES", "+254712345678",
    )  # fmt: skip


def test_add_defaults_to_utc_and_usd(cli, db: Database) -> None:
    assert cli("tenants", "add", "grace", "--name", "Grace").exit_code == 0
    doc = show(cli, "grace")
    assert (doc["timezone"], doc["currency"], doc["country"]) == ("UTC", "USD", None)


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (("--slug-is", "Grace-Lagos"), "slug 'Grace-Lagos' is not valid"),
        (("--slug-is", "ab"), "slug 'ab' is not valid: use 3-63 lowercase letters"),
        (("--slug-is", "grace_lagos"), "(e.g. 'grace-lagos')"),
        (("--slug-is", "grace-"), "starting and ending with a letter or digit"),
        (("--slug-is", "g" * 64), "is not valid"),
        (
            ("--timezone", "Lagos"),
            "time zone 'Lagos' is not an IANA time zone name; did you mean Africa/Lagos?",
        ),
        (("--timezone", "Mars/Olympus"), "use e.g. Africa/Lagos"),
        (("--country", "XX"), "country 'XX' is not an ISO 3166-1 alpha-2 code"),
        (("--country", "NGA"), "country 'NGA' is not an ISO 3166-1 alpha-2 code"),
        (("--currency", "NAIRA"), "currency 'NAIRA' is not an ISO 4217 code"),
        (("--currency", "XYZ"), "currency 'XYZ' is not an ISO 4217 code"),
        (("--email", "finance.grace.example"), "email 'finance.grace.example' is not an email"),
        (("--email", "finance@localhost"), "is not an email address"),
        (("--phone", "08031234567"), "phone '08031234567' is not an E.164 number"),
        (("--phone", "+0123456789"), "is not an E.164 number; use + and the country code"),
        (("--name", "   "), "name must not be empty"),
    ],
)
def test_add_refuses_bad_input_with_a_message_and_exit_2(
    cli, db: Database, extra: tuple[str, str], message: str
) -> None:
    option, value = extra
    slug = value if option == "--slug-is" else "grace-lagos"
    args = ["tenants", "add", slug, "--name", "Grace"]
    if option != "--slug-is":
        args += [option, value]
    result = cli(*args)
    assert result.exit_code == 2
    assert message in said(result)
    assert "Traceback" not in result.stderr
    assert json.loads(cli("tenants", "list", "--json").stdout) == []


def test_a_duplicate_slug_is_refused_and_the_first_tenant_kept(cli, db: Database) -> None:
    assert cli(*LAGOS).exit_code == 0
    result = cli("tenants", "add", "grace-lagos", "--name", "Another Grace")
    assert result.exit_code == 2
    assert "a tenant with slug 'grace-lagos' already exists" in said(result)
    tenants = json.loads(cli("tenants", "list", "--json").stdout)
    assert [t["name"] for t in tenants] == ["Grace Assembly Lagos"]


def test_add_writes_an_audit_entry_with_the_cli_actor(cli, db: Database) -> None:
    assert cli(*LAGOS).exit_code == 0
    (row,) = audit_rows(db, "tenant.add")
    assert row.actor.startswith("cli:")
    assert row.entity_type == "tenant" and row.tenant_id is not None
    assert row.after is not None and row.after["slug"] == "grace-lagos"


def test_list_filters_by_status_and_hides_soft_deleted_tenants(cli, db: Database) -> None:
    for slug in ("alpha-church", "beta-church", "gamma-church"):
        assert cli("tenants", "add", slug, "--name", slug).exit_code == 0
    suspended = cli("tenants", "suspend", "beta-church", "--reason", "non-payment", "--yes")
    assert suspended.exit_code == 0
    with db.session() as s:
        s.execute(
            update(Tenant)
            .where(Tenant.slug == "gamma-church")
            .values(deleted_at=dt.datetime(2026, 1, 1, tzinfo=dt.UTC))
        )
    listed = json.loads(cli("tenants", "list", "--json").stdout)
    assert [t["slug"] for t in listed] == ["alpha-church", "beta-church"]
    everything = json.loads(cli("tenants", "list", "--include-deleted", "--json").stdout)
    assert [t["slug"] for t in everything] == ["alpha-church", "beta-church", "gamma-church"]
    suspended = json.loads(cli("tenants", "list", "--status", "suspended", "--json").stdout)
    assert [t["slug"] for t in suspended] == ["beta-church"]
    table = cli("tenants", "list")
    assert table.exit_code == 0 and "alpha-church" in table.stdout
    assert "2 tenants" in said(table)


def test_list_refuses_an_unknown_status(cli, db: Database) -> None:
    result = cli("tenants", "list", "--status", "frozen")
    assert result.exit_code == 2
    assert "status 'frozen' is not one of: active, suspended, archived" in said(result)


def test_suspend_records_reason_time_and_audit_and_is_idempotent(cli, db: Database) -> None:
    assert cli(*LAGOS).exit_code == 0
    reason = "non-payment [overdue 45 days]"
    first = cli("tenants", "suspend", "grace-lagos", "--reason", reason, "--yes")
    assert first.exit_code == 0, first.stderr
    assert "suspended tenant grace-lagos: non-payment [overdue 45 days]" in said(first)
    doc = show(cli, "grace-lagos")
    assert doc["status"] == "suspended"
    assert doc["suspension_reason"] == "non-payment [overdue 45 days]"
    assert doc["suspended_at"] is not None

    again = cli("tenants", "suspend", "grace-lagos", "--reason", "something else", "--yes")
    assert again.exit_code == 0
    assert "already suspended" in said(again) and "nothing changed" in said(again)
    assert show(cli, "grace-lagos")["suspension_reason"] == "non-payment [overdue 45 days]"
    (row,) = audit_rows(db, "tenant.suspend")
    assert row.before == {"status": "active", "suspension_reason": None, "suspended_at": None}
    assert row.after is not None and row.after["status"] == "suspended"


def test_suspend_needs_a_reason(cli, db: Database) -> None:
    assert cli(*LAGOS).exit_code == 0
    result = cli("tenants", "suspend", "grace-lagos")
    assert result.exit_code == 2
    assert "--reason" in result.stderr
    blank = cli("tenants", "suspend", "grace-lagos", "--reason", " ", "--yes")
    assert blank.exit_code == 2
    assert "the suspension reason must not be empty" in said(blank)


def test_reactivate_clears_the_suspension_and_is_idempotent(cli, db: Database) -> None:
    assert cli(*LAGOS).exit_code == 0
    suspended = cli("tenants", "suspend", "grace-lagos", "--reason", "non-payment", "--yes")
    assert suspended.exit_code == 0
    result = cli("tenants", "reactivate", "grace-lagos")
    assert result.exit_code == 0, result.stderr
    assert "reactivated tenant grace-lagos" in said(result)
    doc = show(cli, "grace-lagos")
    assert (doc["status"], doc["suspension_reason"], doc["suspended_at"]) == ("active", None, None)
    again = cli("tenants", "reactivate", "grace-lagos")
    assert again.exit_code == 0
    assert "already active; nothing changed" in said(again)
    assert len(audit_rows(db, "tenant.reactivate")) == 1


@pytest.mark.parametrize("verb", ["suspend", "reactivate"])
def test_an_archived_tenant_cannot_be_suspended_or_reactivated(
    cli, db: Database, verb: str
) -> None:
    assert cli(*LAGOS).exit_code == 0
    with db.session() as s:
        s.execute(update(Tenant).values(status="archived"))
    args = ["tenants", verb, "grace-lagos"] + (["--reason", "x"] if verb == "suspend" else [])
    result = cli(*args)
    assert result.exit_code == 2
    assert "tenant 'grace-lagos' is archived; an archived tenant cannot be" in said(result)
    assert show(cli, "grace-lagos")["status"] == "archived"


def test_a_soft_deleted_tenant_cannot_be_suspended(cli, db: Database) -> None:
    assert cli(*LAGOS).exit_code == 0
    with db.session() as s:
        s.execute(update(Tenant).values(deleted_at=dt.datetime(2026, 1, 1, tzinfo=dt.UTC)))
    result = cli("tenants", "suspend", "grace-lagos", "--reason", "x", "--yes")
    assert result.exit_code == 2
    assert "was deleted at 2026-01-01" in said(result)


@pytest.mark.parametrize(
    "args",
    [
        ("tenants", "show", "nope"),
        ("tenants", "suspend", "nope", "--reason", "x"),
        ("tenants", "reactivate", "nope"),
        ("tenants", "policy", "show", "nope"),
        ("tenants", "policy", "set", "nope", "--mfa-required"),
    ],
)
def test_an_unknown_tenant_exits_2_naming_the_slug(cli, db: Database, args: tuple[str]) -> None:
    result = cli(*args)
    assert result.exit_code == 2
    assert "no tenant with slug 'nope'" in said(result)


def test_show_prints_tables_with_the_policy(cli, db: Database) -> None:
    assert cli(*LAGOS).exit_code == 0
    result = cli("tenants", "show", "grace-lagos")
    assert result.exit_code == 0, result.stderr
    assert "grace-lagos" in result.stdout and "session_timeout_minutes" in result.stdout
    assert "no subscriptions" in said(result)


def test_policy_show_has_the_defaults(cli, db: Database) -> None:
    assert cli(*LAGOS).exit_code == 0
    result = cli("tenants", "policy", "show", "grace-lagos", "--json")
    assert result.exit_code == 0, result.stderr
    doc = json.loads(result.stdout)
    assert doc["tenant"] == "grace-lagos"
    assert doc["mfa_required"] is False and doc["sso_required"] is False
    assert doc["session_timeout_minutes"] == 720 and doc["data_retention_days"] is None


def test_policy_show_without_a_stored_policy_says_so(cli, db: Database) -> None:
    assert cli(*LAGOS).exit_code == 0
    with db.session() as s:
        s.execute(delete(TenantSecurityPolicy))
    result = cli("tenants", "policy", "show", "grace-lagos")
    assert result.exit_code == 0
    assert "no policy saved for this tenant; showing the defaults" in said(result)
    assert (
        json.loads(cli("tenants", "policy", "show", "grace-lagos", "--json").stdout)["stored"]
        is False
    )


def test_policy_set_changes_only_the_named_settings_and_audits_them(cli, db: Database) -> None:
    assert cli(*LAGOS).exit_code == 0
    result = cli(
        "tenants", "policy", "set", "grace-lagos", "--mfa-required", "--session-timeout", "240",
        "--retention-days", "365", "--json",
    )  # fmt: skip
    assert result.exit_code == 0, result.stderr
    doc = json.loads(result.stdout)
    assert doc["mfa_required"] is True and doc["sso_required"] is False
    assert doc["session_timeout_minutes"] == 240 and doc["data_retention_days"] == 365
    assert "updated grace-lagos's policy" in said(result)
    (row,) = audit_rows(db, "tenant.policy.set")
    assert row.before == {
        "mfa_required": False, "session_timeout_minutes": 720, "data_retention_days": None,
    }  # fmt: skip
    assert row.after == {
        "mfa_required": True, "session_timeout_minutes": 240, "data_retention_days": 365,
    }  # fmt: skip

    same = cli("tenants", "policy", "set", "grace-lagos", "--mfa-required")
    assert same.exit_code == 0
    assert "already had those values; nothing changed" in said(same)
    assert len(audit_rows(db, "tenant.policy.set")) == 1

    cleared = cli("tenants", "policy", "set", "grace-lagos", "--default-retention",
                  "--no-mfa-required", "--json")  # fmt: skip
    doc = json.loads(cleared.stdout)
    assert doc["data_retention_days"] is None and doc["mfa_required"] is False
    shown = cli("tenants", "policy", "show", "grace-lagos")
    assert shown.exit_code == 0 and "platform defaults" in shown.stdout


def test_keep_forever_is_refused_pointing_at_a_legal_hold(cli, db: Database) -> None:
    # It once said "never purge" while retention applied the platform defaults to such tenants.
    assert cli(*LAGOS).exit_code == 0
    assert cli("tenants", "policy", "set", "grace-lagos", "--retention-days", "365").exit_code == 0
    with db.read_session() as s:
        before = s.scalars(select(TenantSecurityPolicy.data_retention_days)).all()
    result = cli("tenants", "policy", "set", "grace-lagos", "--keep-forever")
    assert result.exit_code == 2 and result.stdout == ""
    assert "--keep-forever is gone" in said(result)
    assert "faithflow retention hold --tenant grace-lagos" in said(result)
    with db.read_session() as s:
        assert s.scalars(select(TenantSecurityPolicy.data_retention_days)).all() == before == [365]


def test_policy_set_creates_a_policy_when_none_was_stored(cli, db: Database) -> None:
    assert cli(*LAGOS).exit_code == 0
    with db.session() as s:
        s.execute(delete(TenantSecurityPolicy))
    result = cli("tenants", "policy", "set", "grace-lagos", "--sso-required", "--json")
    assert result.exit_code == 0, result.stderr
    doc = json.loads(result.stdout)
    assert doc["stored"] is True and doc["sso_required"] is True


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--session-timeout", "2"), "session timeout 2 is out of range; use 5 to 43200 minutes"),
        (("--session-timeout", "50000"), "session timeout 50000 is out of range"),
        (("--retention-days", "7"), "retention 7 is out of range; use 30 to 3650 days"),
        (("--retention-days", "365", "--default-retention"), "not both"),
        ((), "nothing to change: give at least one policy setting"),
    ],
)
def test_policy_set_refuses_bad_values(
    cli, db: Database, args: tuple[str, ...], message: str
) -> None:
    assert cli(*LAGOS).exit_code == 0
    result = cli("tenants", "policy", "set", "grace-lagos", *args)
    assert result.exit_code == 2
    assert message in said(result)
    assert audit_rows(db, "tenant.policy.set") == []


# --- link / unlink provider ids ----------------------------------------------------------------


def link(cli: Any, slug: str, external_id: str) -> dict[str, Any]:
    result = cli("tenants", "link", slug, external_id, "--json")
    assert result.exit_code == 0, result.stderr
    doc: dict[str, Any] = json.loads(result.stdout)
    return doc


@pytest.mark.parametrize(
    ("external_id", "provider", "kind"),
    [
        ("cus_Q1w2E3r4", "stripe", "customer"),
        ("acct_1Nv0FGQ9RKHgCVdK", "stripe", "connect_account"),
        ("CUS_xnxdt6s1zg1f4nx", "paystack", "customer"),
        ("ACCT_8f4s1eq7ml6rlzj", "paystack", "subaccount"),
    ],
)
def test_link_infers_provider_and_kind_and_show_lists_the_id(
    cli, db: Database, external_id: str, provider: str, kind: str
) -> None:
    assert cli(*LAGOS).exit_code == 0
    result = cli("tenants", "link", "grace-lagos", f" {external_id} ", "--json")
    assert result.exit_code == 0, result.stderr
    doc = json.loads(result.stdout)
    assert (doc["tenant"], doc["provider"], doc["kind"], doc["external_id"]) == (
        "grace-lagos", provider, kind, external_id,
    )  # fmt: skip
    assert doc["changed"] is True and doc["handled"] == []
    assert doc["source"].startswith("cli:")
    assert f"linked {provider}" in said(result)
    [account] = show(cli, "grace-lagos")["provider_accounts"]
    assert (account["provider"], account["kind"], account["external_id"]) == (
        provider, kind, external_id,
    )  # fmt: skip
    [entry] = audit_rows(db, "tenant.link_account")
    assert entry.actor.startswith("cli:") and entry.tenant_id == doc["tenant_id"]
    assert entry.after == {"provider": provider, "kind": kind, "external_id": external_id}
    table = cli("tenants", "show", "grace-lagos")
    assert external_id in table.stdout


def test_linking_the_same_pair_again_is_a_no_op(cli, db: Database) -> None:
    assert cli(*LAGOS).exit_code == 0
    link(cli, "grace-lagos", "cus_Q1w2E3r4")
    result = cli("tenants", "link", "grace-lagos", "cus_Q1w2E3r4")
    assert result.exit_code == 0
    assert "cus_Q1w2E3r4 is already linked to grace-lagos; nothing changed" in said(result)
    assert len(show(cli, "grace-lagos")["provider_accounts"]) == 1
    assert len(audit_rows(db, "tenant.link_account")) == 1


def test_an_id_linked_to_another_tenant_is_refused_naming_it(cli, db: Database) -> None:
    assert cli(*LAGOS).exit_code == 0
    assert cli("tenants", "add", "hope", "--name", "Hope").exit_code == 0
    link(cli, "hope", "cus_Q1w2E3r4")
    result = cli("tenants", "link", "grace-lagos", "cus_Q1w2E3r4")
    assert result.exit_code == 2
    assert "cus_Q1w2E3r4 is already linked to tenant hope" in said(result)
    assert "faithflow tenants unlink hope cus_Q1w2E3r4" in said(result)
    assert show(cli, "grace-lagos")["provider_accounts"] == []


def test_a_customer_on_another_tenants_subscription_is_refused(cli, db: Database) -> None:
    assert cli(*LAGOS).exit_code == 0
    assert cli("tenants", "add", "hope", "--name", "Hope").exit_code == 0
    plan = cli("plans", "add", "basic", "--name", "Basic", "--amount", "10", "--currency", "USD",
               "--interval", "month")  # fmt: skip
    assert plan.exit_code == 0, plan.stderr
    added = cli(
        "subs", "add", "--tenant", "hope", "--plan", "basic", "--provider", "stripe",
        "--customer-id", "cus_Q1w2E3r4",
    )  # fmt: skip
    assert added.exit_code == 0, added.stderr
    result = cli("tenants", "link", "grace-lagos", "cus_Q1w2E3r4")
    assert result.exit_code == 2
    assert "cus_Q1w2E3r4 is the customer of tenant hope's subscription" in said(result)


@pytest.mark.parametrize(
    ("external_id", "message"),
    [
        ("sub_123", "'sub_123' is not an id `tenants link` knows; use cus_… (Stripe customer), "
         "acct_… (Stripe Connect account), CUS_… (Paystack customer) or ACCT_… (Paystack "
         "subaccount)"),
        ("Cus_123", "use cus_… (Stripe customer)"),
        ("cus_12-3", "'cus_12-3' is not a Stripe customer id: has characters other than letters "
         "and digits after cus_"),
        ("acct_", "'acct_' is not a Stripe Connect account id"),
        ("ACCT_a b", "is not a Paystack subaccount code: contains whitespace"),
    ],
)  # fmt: skip
def test_link_refuses_malformed_ids(cli, db: Database, external_id: str, message: str) -> None:
    assert cli(*LAGOS).exit_code == 0
    result = cli("tenants", "link", "grace-lagos", external_id)
    assert result.exit_code == 2
    assert message in said(result)
    assert audit_rows(db, "tenant.link_account") == []


def test_link_an_unknown_tenant_exits_2(cli, db: Database) -> None:
    result = cli("tenants", "link", "nobody", "cus_Q1w2E3r4")
    assert result.exit_code == 2
    assert "no tenant with slug 'nobody'" in said(result)


def test_unlink_removes_the_id_and_audits_it(cli, db: Database) -> None:
    assert cli(*LAGOS).exit_code == 0
    link(cli, "grace-lagos", "acct_1Nv0FGQ9RKHgCVdK")
    result = cli("tenants", "unlink", "grace-lagos", "acct_1Nv0FGQ9RKHgCVdK")
    assert result.exit_code == 0, result.stderr
    assert "unlinked stripe connect_account acct_1Nv0FGQ9RKHgCVdK from grace-lagos" in said(result)
    assert show(cli, "grace-lagos")["provider_accounts"] == []
    [entry] = audit_rows(db, "tenant.unlink_account")
    assert entry.before == {
        "provider": "stripe", "kind": "connect_account", "external_id": "acct_1Nv0FGQ9RKHgCVdK",
    }  # fmt: skip


def test_unlink_an_id_that_is_not_linked_exits_2(cli, db: Database) -> None:
    assert cli(*LAGOS).exit_code == 0
    assert cli("tenants", "add", "hope", "--name", "Hope").exit_code == 0
    link(cli, "hope", "CUS_xnxdt6s1zg1f4nx")
    result = cli("tenants", "unlink", "grace-lagos", "CUS_xnxdt6s1zg1f4nx")
    assert result.exit_code == 2
    assert "CUS_xnxdt6s1zg1f4nx is not linked to grace-lagos (it is linked to hope)" in said(result)
    result = cli("tenants", "unlink", "grace-lagos", "cus_Other1")
    assert result.exit_code == 2
    assert "cus_Other1 is not linked to grace-lagos" in said(result)
    assert len(show(cli, "hope")["provider_accounts"]) == 1


def test_linking_a_customer_handles_its_unmatched_webhook_events(cli, db: Database) -> None:
    from faithflow_ops.models import WebhookEvent
    from faithflow_ops.webhooks import events, inbox

    assert cli(*LAGOS).exit_code == 0
    payload = {
        "id": "evt_link1",
        "type": "customer.updated",
        "created": 1772355600,
        "data": {
            "object": {"id": "cus_Q1w2E3r4", "object": "customer", "email": "new@grace.example"}
        },
    }
    received = inbox.receive(db, events.parse("stripe", "platform", payload))
    assert received.status == "unmatched"
    result = cli("tenants", "link", "grace-lagos", "cus_Q1w2E3r4", "--json")
    assert result.exit_code == 0, result.stderr
    doc = json.loads(result.stdout)
    [handled] = doc["handled"]
    assert (handled["id"], handled["status"]) == (received.id, "applied")
    assert "1 unmatched webhook event handled: 1 applied" in said(result)
    with db.read_session() as s:
        assert s.get(WebhookEvent, received.id).status == "applied"
        tenant = s.scalar(select(Tenant).where(Tenant.slug == "grace-lagos"))
        assert tenant.billing_email == "new@grace.example"


def test_linking_a_connect_account_handles_its_unmatched_webhook_events(cli, db: Database) -> None:
    from faithflow_ops.models import WebhookEvent
    from faithflow_ops.webhooks import events, inbox

    assert cli(*LAGOS).exit_code == 0
    payload = {
        "id": "evt_link2",
        "type": "payment_intent.succeeded",
        "created": 1772355600,
        "account": "acct_1Nv0FGQ9RKHgCVdK",
        "data": {"object": {"id": "pi_1", "object": "payment_intent", "amount": 5000,
                            "amount_received": 5000, "currency": "ngn", "status": "succeeded"}},
    }  # fmt: skip
    received = inbox.receive(db, events.parse("stripe", "tenant", payload))
    assert received.status == "unmatched", received.detail
    doc = link(cli, "grace-lagos", "acct_1Nv0FGQ9RKHgCVdK")
    assert [(h["id"], h["status"]) for h in doc["handled"]] == [(received.id, "applied")]
    with db.read_session() as s:
        assert s.get(WebhookEvent, received.id).status == "applied"


def test_set_changes_the_billing_contact_and_audits_it(cli: Any, db: Database) -> None:
    assert cli("tenants", "add", "grace-lagos", "--name", "Grace").exit_code == 0
    result = cli(
        "tenants", "set", "grace-lagos", "--email", "Pay@Grace.example", "--phone",
        "+2348031234567", "--json",
    )  # fmt: skip
    assert result.exit_code == 0, result.stderr
    doc = json.loads(result.stdout)
    assert doc["billing_phone"] == "+2348031234567"
    assert doc["billing_email"].lower() == "pay@grace.example"
    assert "updated grace-lagos's billing contact" in said(result)
    again = cli("tenants", "set", "grace-lagos", "--phone", "+2348031234567")
    assert again.exit_code == 0 and "nothing changed" in said(again)
    with db.read_session() as session:
        entries = list(
            session.scalars(select(AuditLog).where(AuditLog.action == "tenant.set_billing_contact"))
        )
    assert len(entries) == 1
    assert entries[0].before == {"billing_email": None, "billing_phone": None}


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((), "nothing to change: give --email, --phone and/or --sms-name"),
        (("--email", "not-an-email"), "email"),
        (("--phone", "0803"), "phone"),
    ],
)
def test_set_refuses_bad_input(cli: Any, db: Database, args: tuple[str, ...], message: str) -> None:
    assert cli("tenants", "add", "grace-lagos", "--name", "Grace").exit_code == 0
    result = cli("tenants", "set", "grace-lagos", *args)
    assert result.exit_code == 2
    assert message in said(result)


def test_set_unknown_tenant(cli: Any, db: Database) -> None:
    result = cli("tenants", "set", "nobody", "--email", "a@b.example")
    assert result.exit_code == 2
    assert "no tenant with slug 'nobody'" in said(result)
