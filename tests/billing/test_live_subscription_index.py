"""Issue 16: one live subscription per tenant, held by the database (`uq_subscriptions_live_tenant`,
migration 0011), and an upgrade that meets existing duplicates stops with a message naming
them instead of a raw IntegrityError."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from helpers import said
from sqlalchemy import Engine, create_engine, inspect, text
from sqlalchemy.exc import IntegrityError

from faithflow_ops.cli.common import reset_database_cache
from faithflow_ops.db import Database
from faithflow_ops.errors import UserError
from faithflow_ops.migrate import current_revision, head_revision, upgrade
from faithflow_ops.models import Subscription, SubscriptionPlan, Tenant
from faithflow_ops.models.billing import LIVE_SUBSCRIPTION_INDEX

BEFORE = "0010"  # the revision before the index


def test_the_database_refuses_a_second_live_subscription(db: Database) -> None:
    with db.session() as s:
        tenant = Tenant(slug="grace", name="Grace")
        plan = SubscriptionPlan(
            code="basic", name="Basic", amount_minor=100, currency="USD", interval="month"
        )
        s.add_all([tenant, plan])
        s.flush()
        ids = {"tenant_id": tenant.id, "plan_id": plan.id, "provider": "stripe"}
        s.add_all([Subscription(**ids, status="canceled") for _ in range(2)])
        s.add(Subscription(**ids, status="past_due"))
    with (
        pytest.raises(IntegrityError, match=r"tenant_id|uq_subscriptions_live_tenant"),
        db.session() as s,
    ):
        s.add(Subscription(**ids, status="incomplete"))
    with db.session() as s:  # ending the live one makes room for the next
        s.execute(text("UPDATE subscriptions SET status = 'canceled' WHERE status = 'past_due'"))
        s.add(Subscription(**ids, status="active"))


@pytest.fixture
def engine(db_url: str) -> Iterator[Engine]:
    """An empty database on each dialect, migrated by the test."""
    engine = create_engine(db_url)
    yield engine
    engine.dispose()


def _seed_at_0010(engine: Engine) -> None:
    """grace: two live subscriptions (and a canceled one); bethel: two live; zion: one."""
    upgrade(engine, BEFORE)
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO tenants (id, slug, name) VALUES "
                "(1, 'grace', 'Grace'), (2, 'bethel', 'Bethel'), (3, 'zion', 'Zion')"
            )
        )
        conn.execute(
            text(
                "INSERT INTO subscription_plans (id, code, name, amount_minor, currency, interval) "
                "VALUES (1, 'basic', 'Basic', 100, 'USD', 'month')"
            )
        )
        for sub_id, tenant_id, provider, status in [
            (11, 1, "stripe", "active"),
            (12, 1, "stripe", "canceled"),
            (13, 1, "paystack", "past_due"),
            (21, 2, "stripe", "trialing"),
            (22, 2, "stripe", "incomplete"),
            (31, 3, "paystack", "active"),
        ]:
            conn.execute(
                text(
                    "INSERT INTO subscriptions (id, tenant_id, plan_id, provider, status) "
                    "VALUES (:id, :tenant, 1, :provider, :status)"
                ),
                {"id": sub_id, "tenant": tenant_id, "provider": provider, "status": status},
            )


def _has_index(engine: Engine) -> bool:
    return any(
        index["name"] == LIVE_SUBSCRIPTION_INDEX
        for index in inspect(engine).get_indexes("subscriptions")
    )


def test_an_upgrade_over_duplicates_names_them_and_changes_nothing(engine: Engine) -> None:
    _seed_at_0010(engine)
    with pytest.raises(UserError) as caught:
        upgrade(engine)
    message = str(caught.value)
    assert "one live subscription per tenant" in message
    assert "2 tenant(s) have more than one" in message
    assert "bethel: subscriptions 21 (stripe, trialing), 22 (stripe, incomplete)" in message
    assert "grace: subscriptions 11 (stripe, active), 13 (paystack, past_due)" in message
    assert "12" not in message.split("grace:")[1].split(";")[0]  # the canceled one is fine
    assert "zion" not in message
    assert "faithflow subs cancel --tenant bethel --subscription 21" in message
    assert "faithflow db upgrade" in message and "nothing was changed" in message
    assert current_revision(engine) == BEFORE
    assert not _has_index(engine)

    with engine.begin() as conn:  # the operator ends the extra ones, and runs it again
        conn.execute(text("UPDATE subscriptions SET status = 'canceled' WHERE id IN (13, 22)"))
    assert upgrade(engine) == (BEFORE, head_revision())
    assert _has_index(engine)


def test_an_upgrade_without_duplicates_adds_the_index(engine: Engine) -> None:
    upgrade(engine, BEFORE)
    assert upgrade(engine, "0011") == (BEFORE, "0011")
    [index] = [
        i
        for i in inspect(engine).get_indexes("subscriptions")
        if i["name"] == "uq_subscriptions_live_tenant"
    ]
    assert index["column_names"] == ["tenant_id"] and index["unique"]


def test_db_upgrade_over_duplicates_exits_2_with_the_message(
    cli, db_url: str, engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    _seed_at_0010(engine)
    monkeypatch.setenv("FAITHFLOW_DATABASE_URL", db_url)
    try:
        result = cli("db", "upgrade")
    finally:
        reset_database_cache()
    assert result.exit_code == 2
    message = said(result)
    assert "grace: subscriptions 11 (stripe, active), 13 (paystack, past_due)" in message
    assert "Traceback" not in result.stderr and "IntegrityError" not in result.stderr
    assert current_revision(engine) == BEFORE


def test_subs_add_racing_past_its_check_hears_the_rule_not_an_integrity_error(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    from faithflow_ops.billing import subscriptions
    from faithflow_ops.billing.plans import add_plan
    from faithflow_ops.tenancy.tenants import add_tenant

    with db.session() as s:
        add_tenant(s, slug="grace", name="Grace", actor="test")
        add_plan(s, code="basic", name="Basic", amount="9", currency="USD", interval="month",
                 actor="test")  # fmt: skip
        subscriptions.add_subscription(
            s, tenant="grace", plan="basic", provider="stripe", actor="test"
        )
    # Another `subs add` that checked before the first one committed.
    monkeypatch.setattr(subscriptions, "_refuse_second_live", lambda *args: None)
    with pytest.raises(UserError, match="recorded at the same moment") as caught, db.session() as s:
        subscriptions.add_subscription(
            s, tenant="grace", plan="basic", provider="paystack", actor="test"
        )
    assert "faithflow subs list --tenant grace" in str(caught.value)
