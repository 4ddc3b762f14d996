"""`faithflow subs backfill` on messy historical metadata, on SQLite and Postgres."""

from __future__ import annotations

import copy
import datetime as dt
import json
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from faithflow_ops.config import Settings
from faithflow_ops.db import Database
from faithflow_ops.jobs import registry
from faithflow_ops.jobs.base import Action, JobContext
from faithflow_ops.jobs.runner import RunResult, run_job
from faithflow_ops.jobs.subs_backfill import (
    JOB,
    SubscriptionMetadataBackfill,
)
from faithflow_ops.models import AuditLog, JobRun, Subscription, SubscriptionPlan, Tenant

SPEC = registry.get("subscription_metadata_backfill")
NOW = dt.datetime(2026, 3, 1, 2, 10, tzinfo=dt.UTC)


def ctx(dry_run: bool = False, **kw: Any) -> JobContext:
    return JobContext(
        now=NOW,
        dry_run=dry_run,
        trigger="cli",
        settings=Settings.from_env({}),
        actor="test:ops",
        **kw,
    )


class World:
    """Tenants, plans and subscriptions made with the ORM, as the platform stores them."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self.tenants: dict[str, int] = {}
        self.plans: dict[str, int] = {}

    def tenant(self, slug: str) -> int:
        if slug not in self.tenants:
            with self.db.session() as s:
                t = Tenant(slug=slug, name=slug.title())
                s.add(t)
                s.flush()
                self.tenants[slug] = t.id
        return self.tenants[slug]

    def plan(self, code: str, metadata: dict[str, Any] | None = None) -> int:
        if code not in self.plans:
            with self.db.session() as s:
                p = SubscriptionPlan(
                    code=code,
                    name=code.title(),
                    amount_minor=5000,
                    currency="USD",
                    interval="month",
                    metadata_=metadata or {},
                )
                s.add(p)
                s.flush()
                self.plans[code] = p.id
        return self.plans[code]

    def sub(
        self,
        provider: str,
        metadata: Any,
        *,
        tenant: str = "grace",
        plan: str = "basic",
        **columns: Any,
    ) -> int:
        tenant_id, plan_id = self.tenant(tenant), self.plan(plan)
        with self.db.session() as s:
            sub = Subscription(
                tenant_id=tenant_id,
                plan_id=plan_id,
                provider=provider,
                status="active",
                metadata_=metadata,
                **columns,
            )
            s.add(sub)
            s.flush()
            return sub.id

    def get(self, sub_id: int) -> Subscription:
        with self.db.read_session() as s:
            sub = s.get(Subscription, sub_id)
            assert sub is not None
            s.expunge(sub)
            return sub


@pytest.fixture
def world(db: Database) -> World:
    return World(db)


def run(db: Database, dry_run: bool = False, job: Any = None, **kw: Any) -> RunResult:
    result = run_job(db, SPEC, ctx(dry_run, **kw), job=job)
    assert result.status == "succeeded", result.error
    return result


def by_target(result: RunResult, kind: str | None = None) -> dict[str, list[Action]]:
    out: dict[str, list[Action]] = {}
    for item in result.actions:
        if kind is None or item.action.kind == kind:
            out.setdefault(item.action.target, []).append(item.action)
    return out


def audit_rows(db: Database) -> list[AuditLog]:
    with db.read_session() as s:
        return list(s.scalars(select(AuditLog).order_by(AuditLog.id)))


# ---------------------------------------------------------------------------------------------


def test_every_known_shape_is_normalised_into_columns_and_canonical_keys(world: World) -> None:
    shapes = {  # one tenant each: a tenant has one live subscription
        "customer_object": {"customer": {"id": "cus_Obj1", "object": "customer"}},
        "customer_string": {"customer": "cus_Str1"},
        "camel": {"customerId": "cus_Camel1"},
        "snake": {"stripe_customer_id": "cus_Snake1"},
        "nested": {"stripe": {"customer": "cus_Nest1"}},
        "nested_object": {"stripe": {"customer": {"id": "cus_NestObj1"}}},
        "with_sub": {"stripeCustomerId": "cus_Has1", "subscription": "sub_Has1"},
    }
    stripe = {n: world.sub("stripe", m, tenant=n.replace("_", "-")) for n, m in shapes.items()}
    paystack = world.sub(
        "paystack",
        {
            "customer": {"id": 1173, "customer_code": "CUS_xnxdt6s1zg1f4nx", "email": "a@b.org"},
            "subscription_code": "SUB_vsyqdmlzble3uii",
            "email_token": "d7gofp6yppn3qz7",
            "authorization": {"authorization_code": "AUTH_pmx3mgawyd"},
            "legacy": True,
        },
        tenant="bethel",
    )
    result = run(world.db)
    assert result.outcomes == {"applied": 8}
    expected = {
        "customer_object": "cus_Obj1",
        "customer_string": "cus_Str1",
        "camel": "cus_Camel1",
        "snake": "cus_Snake1",
        "nested": "cus_Nest1",
        "nested_object": "cus_NestObj1",
        "with_sub": "cus_Has1",
    }
    for name, sub_id in stripe.items():
        sub = world.get(sub_id)
        assert sub.provider_customer_id == expected[name], name
        assert sub.metadata_["stripeCustomerId"] == expected[name], name
    assert world.get(stripe["with_sub"]).provider_subscription_id == "sub_Has1"
    assert world.get(stripe["nested"]).metadata_["stripe"] == {"customer": "cus_Nest1"}

    p = world.get(paystack)
    assert (p.provider_customer_id, p.provider_subscription_id) == (
        "CUS_xnxdt6s1zg1f4nx",
        "SUB_vsyqdmlzble3uii",
    )
    assert p.metadata_ == {  # every original key kept, canonical keys added
        "customer": {"id": 1173, "customer_code": "CUS_xnxdt6s1zg1f4nx", "email": "a@b.org"},
        "subscription_code": "SUB_vsyqdmlzble3uii",
        "email_token": "d7gofp6yppn3qz7",
        "authorization": {"authorization_code": "AUTH_pmx3mgawyd"},
        "legacy": True,
        "paystackCustomerCode": "CUS_xnxdt6s1zg1f4nx",
        "paystackSubscriptionCode": "SUB_vsyqdmlzble3uii",
        "paystackEmailToken": "d7gofp6yppn3qz7",
        "paystackAuthorizationCode": "AUTH_pmx3mgawyd",
    }


def test_preview_lists_every_change_and_writes_nothing(world: World) -> None:
    sub_id = world.sub("stripe", {"customer": {"id": "cus_123"}})
    before = world.get(sub_id)
    result = run(world.db, dry_run=True)
    [item] = result.actions
    assert item.outcome is None
    assert item.action.kind == "normalize"
    assert item.action.target == f"subscription:{sub_id}"
    assert item.action.reason == (
        "provider_customer_id: — → cus_123 (metadata.customer.id); "
        "metadata.stripeCustomerId: — → cus_123 (metadata.customer.id)"
    )
    data = item.action.data
    assert data["subscription_id"] == sub_id
    assert data["tenant_id"] == world.tenants["grace"]
    assert dt.datetime.fromisoformat(data["seen_updated_at"]) == before.updated_at
    assert data["changes"] == [
        {"field": "provider_customer_id", "old": None, "new": "cus_123",
         "source": "metadata.customer.id"},
        {"field": "metadata.stripeCustomerId", "old": None, "new": "cus_123",
         "source": "metadata.customer.id"},
    ]  # fmt: skip
    assert data["columns"] == {"provider_customer_id": "cus_123"}
    assert data["metadata_set"] == {"stripeCustomerId": "cus_123"}
    json.dumps(result.to_dict(), default=str)  # plain data

    after = world.get(sub_id)
    assert (after.provider_customer_id, after.metadata_, after.updated_at) == (
        None,
        {"customer": {"id": "cus_123"}},
        before.updated_at,
    )
    assert audit_rows(world.db) == []


def test_a_second_run_plans_only_the_conflicts_and_invalid_values_again(world: World) -> None:
    world.sub("stripe", {"customer": "cus_A1"})
    world.sub("stripe", {"customer": "cus_A1", "customerId": "cus_B2"}, tenant="bethel")
    world.sub("paystack", {"customer": {"id": 84312}}, tenant="zion")
    world.sub("paystack", {"customer_code": "CUS_ok1", "email_token": "tok en"}, tenant="hope")
    first = run(world.db)
    assert first.counts == {"normalize": 2, "conflict": 1, "invalid": 2}
    assert first.outcomes == {"applied": 2, "reported": 3}
    second = run(world.db)
    assert second.counts == {"conflict": 1, "invalid": 2}
    assert second.outcomes == {"reported": 3}
    reported = lambda r: sorted((a.action.target, a.action.reason) for a in r.actions)  # noqa: E731
    assert reported(second) == [
        x for x in reported(first) if not x[1].startswith("provider_customer_id: —")
    ]
    assert len(audit_rows(world.db)) == 2


def test_two_different_customer_ids_are_a_conflict_and_nothing_is_written(world: World) -> None:
    sub_id = world.sub("stripe", {"customer": {"id": "cus_A1"}, "stripe_customer_id": "cus_B2"})
    result = run(world.db)
    [item] = result.actions
    assert (item.action.kind, item.outcome) == ("conflict", "reported")
    assert item.action.reason == (
        "provider_customer_id: cus_B2 (metadata.stripe_customer_id) ≠ cus_A1 "
        "(metadata.customer.id); different valid values; left for a human"
    )
    assert item.action.data["field"] == "provider_customer_id"
    assert item.action.data["values"] == [
        {"value": "cus_B2", "sources": ["metadata.stripe_customer_id"]},
        {"value": "cus_A1", "sources": ["metadata.customer.id"]},
    ]
    sub = world.get(sub_id)
    assert sub.provider_customer_id is None
    assert "stripeCustomerId" not in sub.metadata_


def test_an_existing_column_that_differs_is_a_conflict_never_overwritten(world: World) -> None:
    sub_id = world.sub("paystack", {"customer_code": "CUS_new1"}, provider_customer_id="CUS_old1")
    result = run(world.db)
    assert result.counts == {"conflict": 1}
    assert result.actions[0].action.data["values"][0] == {
        "value": "CUS_old1",
        "sources": ["provider_customer_id"],
    }
    sub = world.get(sub_id)
    assert sub.provider_customer_id == "CUS_old1"
    assert "paystackCustomerCode" not in sub.metadata_


def test_invalid_ids_are_reported_and_never_written(world: World) -> None:
    wrong_prefix = world.sub("stripe", {"customer": "CUS_wrongcase"})
    inner_space = world.sub("stripe", {"stripeCustomerId": "cus_ 12"}, tenant="bethel")
    numeric = world.sub("paystack", {"customer": {"id": 84312}}, tenant="zion")
    result = run(world.db)
    assert result.counts == {"invalid": 3}
    reasons = {t: a[0].reason for t, a in by_target(result, "invalid").items()}
    assert "does not start with cus_" in reasons[f"subscription:{wrong_prefix}"]
    assert "contains whitespace" in reasons[f"subscription:{inner_space}"]
    assert "numeric: Paystack's integer customer id" in reasons[f"subscription:{numeric}"]
    data = by_target(result, "invalid")[f"subscription:{numeric}"][0].data
    assert (data["field"], data["value"], data["sources"]) == (
        "provider_customer_id",
        84312,
        ["metadata.customer.id"],
    )
    for sub_id, metadata in (
        (wrong_prefix, {"customer": "CUS_wrongcase"}),
        (inner_space, {"stripeCustomerId": "cus_ 12"}),
        (numeric, {"customer": {"id": 84312}}),
    ):
        sub = world.get(sub_id)
        assert (sub.provider_customer_id, sub.metadata_) == (None, metadata)
    assert audit_rows(world.db) == []


def test_surrounding_whitespace_is_trimmed(world: World) -> None:
    sub_id = world.sub("stripe", {"customerId": "  cus_Pasted1\n"})
    run(world.db)
    sub = world.get(sub_id)
    assert sub.provider_customer_id == "cus_Pasted1"
    assert sub.metadata_ == {"customerId": "  cus_Pasted1\n", "stripeCustomerId": "cus_Pasted1"}


def test_a_subscription_id_held_by_another_subscription_is_a_conflict_not_a_crash(
    world: World,
) -> None:
    holder = world.sub("stripe", {}, provider_subscription_id="sub_Taken1")
    copied = world.sub(
        "stripe", {"subscription": "sub_Taken1", "customer": "cus_C1"}, tenant="bethel"
    )
    result = run(world.db)
    assert result.counts == {"normalize": 1, "conflict": 1}
    conflict = by_target(result, "conflict")[f"subscription:{copied}"][0]
    assert conflict.data["held_by_subscription_id"] == holder
    assert f"already the id of subscription:{holder}" in conflict.reason
    sub = world.get(copied)
    assert (sub.provider_subscription_id, sub.provider_customer_id) == (None, "cus_C1")


def test_two_subscriptions_naming_one_subscription_id_never_crash(world: World) -> None:
    first = world.sub("paystack", {"subscription_code": "SUB_dup1"})
    second = world.sub("paystack", {"subscription_code": "SUB_dup1"}, tenant="bethel")
    result = run(world.db)
    assert result.counts == {"normalize": 2}
    outcomes = {a.action.target: (a.outcome, a.error) for a in result.actions}
    assert outcomes[f"subscription:{first}"] == ("applied", None)
    outcome, error = outcomes[f"subscription:{second}"]
    assert outcome == "stale"
    assert f"SUB_dup1 is now the subscription id of subscription:{first}" in (error or "")
    assert world.get(second).provider_subscription_id is None
    again = run(world.db)
    assert again.counts == {"conflict": 1}
    assert again.actions[0].action.target == f"subscription:{second}"


def test_plan_metadata_feeds_the_subscriptions_of_a_single_tenant_plan(world: World) -> None:
    world.plan("bespoke", {"customerId": "cus_Plan1", "stripePriceId": "price_1"})
    sub_id = world.sub("stripe", {}, plan="bespoke")
    result = run(world.db)
    assert result.actions[0].action.reason == (
        "provider_customer_id: — → cus_Plan1 (plan.metadata.customerId); "
        "metadata.stripeCustomerId: — → cus_Plan1 (plan.metadata.customerId)"
    )
    assert world.get(sub_id).provider_customer_id == "cus_Plan1"


def test_plan_level_ids_on_a_shared_plan_are_reported_once_and_never_copied(world: World) -> None:
    plan_id = world.plan("standard", {"customerId": "cus_Shared1", "customer_code": "nope"})
    a = world.sub("stripe", {}, plan="standard", tenant="grace")
    b = world.sub("stripe", {"customer": "cus_Own1"}, plan="standard", tenant="bethel")
    world.sub("paystack", {}, plan="standard", tenant="zion")
    result = run(world.db)
    plan_actions = by_target(result)[f"plan:{plan_id}"]
    # reported once for the plan, read per provider: `customerId` on a Paystack subscription
    # would be the Paystack customer, and cus_… is not a Paystack code
    assert [(x.kind, x.data["provider"]) for x in plan_actions] == [
        ("conflict", "stripe"),
        ("invalid", "paystack"),
        ("invalid", "paystack"),
    ]
    assert "plan standard is used by 3 tenants" in plan_actions[0].reason
    assert "nope at plan.metadata.customer_code" in plan_actions[1].reason
    assert "cus_Shared1 at plan.metadata.customerId: does not start with CUS_" in (
        plan_actions[2].reason
    )
    assert not any(a.target.startswith("subscription:") for a in plan_actions)
    assert world.get(a).provider_customer_id is None
    assert world.get(b).provider_customer_id == "cus_Own1"


def test_one_audit_row_per_changed_subscription_with_before_and_after(world: World) -> None:
    stripe = world.sub("stripe", {"customer": "cus_A1"})
    paystack = world.sub(
        "paystack", {"customer_code": "CUS_p1", "email_token": "tok1"}, tenant="bethel"
    )
    world.sub("stripe", {"note": "nothing to do"}, tenant="zion")
    run(world.db)
    rows = audit_rows(world.db)
    assert [(r.entity_type, r.entity_id) for r in rows] == [
        ("subscription", str(stripe)),
        ("subscription", str(paystack)),
    ]
    first = rows[0]
    assert (first.actor, first.action, first.tenant_id) == (
        "test:ops",
        "subscription.metadata_backfill",
        world.tenants["grace"],
    )
    assert first.before == {"provider_customer_id": None, "metadata.stripeCustomerId": None}
    assert first.after == {"provider_customer_id": "cus_A1", "metadata.stripeCustomerId": "cus_A1"}
    assert rows[1].after == {
        "provider_customer_id": "CUS_p1",
        "metadata.paystackCustomerCode": "CUS_p1",
        "metadata.paystackEmailToken": "tok1",
    }


def test_updated_at_moves_when_a_subscription_is_normalised(world: World) -> None:
    sub_id = world.sub("stripe", {"customer": "cus_A1"})
    before = world.get(sub_id).updated_at
    run(world.db)
    assert world.get(sub_id).updated_at > before


class Meddling(SubscriptionMetadataBackfill):
    """Plans everything, lets someone change rows, then hands the (now old) plan to apply."""

    def __init__(self, meddle: Callable[[], None]) -> None:
        self.meddle = meddle

    def plan(self, session: Session, ctx: JobContext) -> Iterator[Action]:
        actions = list(super().plan(session, ctx))
        self.meddle()
        yield from actions


@pytest.mark.parametrize("batched", [True, False], ids=["batch", "one-by-one"])
def test_a_row_changed_between_plan_and_apply_is_stale_and_not_overwritten(
    world: World, batched: bool
) -> None:
    changed = world.sub("stripe", {"customer": "cus_Meta1"})
    untouched = world.sub("stripe", {"customer": "cus_Meta2"}, tenant="bethel")

    def meddle() -> None:  # a webhook sets the customer in between
        with world.db.session() as s:
            sub = s.get(Subscription, changed)
            assert sub is not None
            sub.provider_customer_id = "cus_Webhook1"

    job = Meddling(meddle)
    if not batched:
        job.batch_size = 1  # type: ignore[misc]
    result = run(world.db, job=job)
    outcomes = {a.action.target: (a.outcome, a.error) for a in result.actions}
    assert outcomes[f"subscription:{untouched}"] == ("applied", None)
    outcome, error = outcomes[f"subscription:{changed}"]
    assert outcome == "stale"
    assert "changed since the plan" in (error or "")
    sub = world.get(changed)
    assert sub.provider_customer_id == "cus_Webhook1"
    assert "stripeCustomerId" not in sub.metadata_
    assert [r.entity_id for r in audit_rows(world.db)] == [str(untouched)]


def test_a_preview_applied_after_the_run_is_stale(world: World) -> None:
    world.sub("stripe", {"customer": "cus_A1"})
    preview = run(world.db, dry_run=True)
    run(world.db)
    from faithflow_ops.jobs.runner import apply_one

    again = apply_one(world.db, JOB, ctx(), preview.actions[0].action)
    assert again.outcome == "stale"
    assert len(audit_rows(world.db)) == 1


def test_keyset_pages_cover_every_subscription_and_report_progress(world: World) -> None:
    ids = [world.sub("stripe", {"customer": f"cus_P{i}"}, tenant=f"t{i}") for i in range(7)]

    class Small(SubscriptionMetadataBackfill):
        page_size = 3
        batch_size = 2

    class Bar:
        def __init__(self) -> None:
            self.total: int | None = None
            self.done = 0

        def start(self, total: int | None) -> None:
            self.total = total

        def advance(self, n: int) -> None:
            self.done += n

    bar = Bar()
    result = run(world.db, job=Small(), progress=bar)
    assert result.outcomes == {"applied": 7}
    assert (bar.total, bar.done) == (7, 7)
    assert [world.get(i).provider_customer_id for i in ids] == [f"cus_P{i}" for i in range(7)]


def test_limit_stops_after_that_many_actions(world: World) -> None:
    for i in range(3):
        world.sub("stripe", {"customer": f"cus_L{i}"}, tenant=f"t{i}")
    result = run(world.db, limit=2)
    assert result.outcomes == {"applied": 2}
    assert run(world.db).outcomes == {"applied": 1}


def test_a_canonical_key_padded_with_whitespace_is_trimmed_in_place(world: World) -> None:
    metadata = {"stripeCustomerId": " cus_Pad1 ", "church": "Église Saint-Étienne"}
    sub_id = world.sub("stripe", metadata, provider_customer_id="cus_Pad1")
    result = run(world.db)
    assert result.actions[0].action.reason == (
        'metadata.stripeCustomerId: " cus_Pad1 " → cus_Pad1 '
        "(metadata.stripeCustomerId (whitespace trimmed))"
    )
    assert world.get(sub_id).metadata_ == {
        "stripeCustomerId": "cus_Pad1",
        "church": "Église Saint-Étienne",
    }


def test_null_metadata_gets_the_canonical_keys(world: World) -> None:
    sub_id = world.sub("stripe", None, provider_customer_id="cus_Col1")
    run(world.db)
    assert world.get(sub_id).metadata_ == {"stripeCustomerId": "cus_Col1"}


def test_metadata_that_is_not_an_object_is_reported(world: World) -> None:
    sub_id = world.sub("stripe", ["cus_A1"], provider_customer_id="cus_A1")
    result = run(world.db)
    assert result.counts == {"invalid": 1}
    assert "not an object" in result.actions[0].action.reason
    assert world.get(sub_id).metadata_ == ["cus_A1"]


# --- through the CLI -------------------------------------------------------------------------


def test_cli_preview_prints_one_json_document_with_every_change(world: World, cli: Any) -> None:
    sub_id = world.sub("stripe", {"customer": {"id": "cus_123"}})
    world.sub("paystack", {"customer": {"id": 84312}}, tenant="bethel")
    result = cli("subs", "backfill", "--dry-run", "--json")
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert (doc["job"], doc["dry_run"], doc["status"]) == (SPEC.name, True, "succeeded")
    assert doc["counts"] == {"normalize": 1, "invalid": 1}
    normalize = next(a for a in doc["actions"] if a["kind"] == "normalize")
    assert normalize["target"] == f"subscription:{sub_id}"
    assert "provider_customer_id: — → cus_123 (metadata.customer.id)" in normalize["reason"]
    assert "outcome" not in normalize
    assert world.get(sub_id).provider_customer_id is None


def test_cli_jobs_run_applies_and_records_the_run(world: World, cli: Any) -> None:
    sub_id = world.sub("stripe", {"customer": "cus_Cli1"})
    result = cli("jobs", "run", "subscription_metadata_backfill", "--json")
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["outcomes"] == {"applied": 1}
    assert doc["actions"][0]["outcome"] == "applied"
    assert world.get(sub_id).provider_customer_id == "cus_Cli1"
    [row] = audit_rows(world.db)
    assert row.actor.startswith("cli:")
    with world.db.read_session() as s:
        run_row = s.scalars(select(JobRun)).one()
    assert (run_row.job, run_row.dry_run, run_row.counts) == (SPEC.name, False, {"normalize": 1})


def test_cli_limit_is_honoured(world: World, cli: Any) -> None:
    for i in range(3):
        world.sub("stripe", {"customer": f"cus_L{i}"}, tenant=f"t{i}")
    result = cli("subs", "backfill", "--dry-run", "--json", "--limit", "1")
    assert result.exit_code == 0, result.output
    assert len(json.loads(result.stdout)["actions"]) == 1


def test_cli_table_output_says_what_would_be_done(world: World, cli: Any) -> None:
    world.sub("stripe", {"customer": "cus_T1"})
    result = cli("subs", "backfill", "--dry-run")
    assert result.exit_code == 0, result.output
    assert "normalize" in result.stdout
    assert "would do: normalize=1" in result.stderr
    with world.db.read_session() as s:
        assert s.scalar(select(func.count()).select_from(AuditLog)) == 0
        assert s.scalar(select(Subscription.provider_customer_id)) is None
    applied = cli("subs", "backfill")
    assert applied.exit_code == 0, applied.output
    assert "did: normalize=1 (applied=1)" in applied.stderr
    with world.db.read_session() as s:
        assert s.scalar(select(Subscription.provider_customer_id)) == "cus_T1"


def test_an_unrelated_change_after_the_backfill_plans_nothing(world: World) -> None:
    world.sub("stripe", {"customer": "cus_U1"})
    run(world.db)
    with world.db.session() as s:
        s.execute(update(Subscription).values(status="canceled"))
    assert run(world.db).counts == {}


@pytest.mark.parametrize("read_first", [True, False], ids=["data-read", "data-unread"])
def test_a_planned_change_applies_whether_or_not_its_preview_data_was_read(
    world: World, read_first: bool
) -> None:
    # A normalize action builds its reason and data only when read; apply never needs them.
    a = world.sub("stripe", {"customer": "cus_A1"})
    b = world.sub("paystack", {"customer_code": " CUS_B2 "}, tenant="zion")
    with world.db.read_session() as s:
        actions = list(JOB.plan(s, ctx()))
    assert [x.kind for x in actions] == ["normalize", "normalize"]
    if read_first:
        assert [x.reason for x in actions] == [
            "provider_customer_id: — → cus_A1 (metadata.customer); "
            "metadata.stripeCustomerId: — → cus_A1 (metadata.customer)",
            "provider_customer_id: — → CUS_B2 (metadata.customer_code); "
            "metadata.paystackCustomerCode: — → CUS_B2 (metadata.customer_code)",
        ]
        assert actions[0].data["columns"] == {"provider_customer_id": "cus_A1"}
        assert copy.copy(actions[1]).to_dict() == actions[1].to_dict()
    with world.db.session() as s:
        assert JOB.apply_batch(s, ctx(), actions) == ["applied", "applied"]
    assert world.get(a).provider_customer_id == "cus_A1"
    assert world.get(b).metadata_["paystackCustomerCode"] == "CUS_B2"
    assert [(r.entity_id, r.before, r.after) for r in audit_rows(world.db)] == [
        (str(a), {"provider_customer_id": None, "metadata.stripeCustomerId": None},
         {"provider_customer_id": "cus_A1", "metadata.stripeCustomerId": "cus_A1"}),
        (str(b), {"provider_customer_id": None, "metadata.paystackCustomerCode": None},
         {"provider_customer_id": "CUS_B2", "metadata.paystackCustomerCode": "CUS_B2"}),
    ]  # fmt: skip
