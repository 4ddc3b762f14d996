"""Every table and message that names a tenant names it by slug (issue 16): an operator knows
churches as `grace-lagos`, not as 3. Over a seeded world (the demo's platform plus a dispute, a
webhook event, a domain and a Stripe invoice we do not hold), every list and preview with
tenant rows is run: its table has no tenant id column, its `tenant` column holds slugs, and
its --json keeps `tenant_id` beside the `tenant` slug where it has one. On SQLite and Postgres.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator
from typing import Any

import pytest
from fakes.providers import FakeAPI, Recorded, Reply, stripe_fake

from faithflow_ops.config import Settings
from faithflow_ops.db import Database
from faithflow_ops.demo import seed
from faithflow_ops.models import (
    Dispute,
    Invoice,
    Subscription,
    SubscriptionPlan,
    Tenant,
    WebhookEvent,
)

NOW = dt.datetime(2026, 3, 2, 9, 0, tzinfo=dt.UTC)
AT = ("--now", NOW.isoformat())
SLUG = "slug-shown-grace"  # the tenant whose Stripe invoice is missing here


def _stripe_invoice() -> dict[str, Any]:
    """A paid Stripe invoice (docs.stripe.com/api/invoices/object) of SLUG's subscription."""
    created = int((NOW - dt.timedelta(days=2)).timestamp())
    return {
        "id": "in_slug_shown",
        "object": "invoice",
        "customer": "cus_slug_shown",
        "parent": {
            "type": "subscription_details",
            "subscription_details": {"subscription": "sub_slug_shown", "metadata": {}},
        },
        "status": "paid",
        "amount_due": 7900,
        "amount_paid": 7900,
        "currency": "usd",
        "created": created,
        "period_start": created - 30 * 86400,
        "period_end": created,
        "status_transitions": {"paid_at": created + 60},
        "hosted_invoice_url": "https://invoice.stripe.com/i/in_slug_shown",
    }


@pytest.fixture
def world(db: Database, cli: Any, monkeypatch: pytest.MonkeyPatch) -> dict[int, str]:
    """The seeded platform; returns every tenant's {id: slug}."""
    monkeypatch.setenv("FAITHFLOW_DOMAIN_CNAME_TARGET", "edge.faithflow.example")
    with db.session() as s:
        seed(s, NOW, Settings(database_url="sqlite://"))
        plan = SubscriptionPlan(
            code="slug-shown", name="Growth", amount_minor=7900, currency="USD", interval="month"
        )
        tenant = Tenant(slug=SLUG, name="Grace Slug Church", timezone="UTC", currency="USD")
        s.add_all([plan, tenant])
        s.flush()
        sub = Subscription(
            tenant_id=tenant.id,
            plan_id=plan.id,
            provider="stripe",
            provider_subscription_id="sub_slug_shown",
            provider_customer_id="cus_slug_shown",
            status="active",
        )
        s.add(sub)
        s.flush()
        invoice = Invoice(
            tenant_id=tenant.id,
            subscription_id=sub.id,
            provider="stripe",
            provider_invoice_id="in_slug_held",
            status="open",
            amount_due_minor=7900,
            amount_paid_minor=0,
            currency="USD",
        )
        s.add(invoice)
        s.flush()
        s.add(
            Dispute(
                tenant_id=tenant.id,
                scope="platform",
                provider="stripe",
                provider_dispute_id="dp_slug_shown",
                invoice_id=invoice.id,
                amount_minor=7900,
                currency="USD",
                reason="fraudulent",
                status="needs_response",
                evidence_due_by=NOW + dt.timedelta(hours=20),
            )
        )
        s.add(
            WebhookEvent(
                provider="stripe",
                scope="platform",
                event_key="evt_slug_shown",
                event_type="invoice.paid",
                status="applied",
                first_received_at=NOW,
                last_received_at=NOW,
                tenant_id=tenant.id,
                outcome="invoice in_slug_held paid",
            )
        )
        slugs = dict(s.query(Tenant.id, Tenant.slug).all())
    added = cli("domains", "add", "www.slug-shown.example", "--tenant", SLUG, *AT)
    assert added.exit_code == 0, added.output
    return {int(k): str(v) for k, v in slugs.items()}


@pytest.fixture
def stripe(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeAPI]:
    fake = stripe_fake()
    answer = fake.default

    def default(api: FakeAPI, req: Recorded) -> Reply:
        # `disputes monitor` lists disputes from the same base (docs.stripe.com/api/disputes/list)
        if req.path == "/v1/disputes":
            return Reply(200, {"object": "list", "url": req.path, "has_more": False, "data": []})
        return answer(api, req)

    fake.default = default
    fake.objects = {
        "invoices": [_stripe_invoice()],
        "subscriptions": [
            {"id": "sub_slug_shown", "object": "subscription", "status": "active",
             "created": int((NOW - dt.timedelta(days=90)).timestamp())},
        ],
    }  # fmt: skip
    with fake.serve():
        monkeypatch.setenv("STRIPE_SECRET_KEY", "sk_test_slug")
        monkeypatch.setenv("STRIPE_API_BASE", fake.url)
        yield fake


def table(text: str) -> tuple[list[str], list[list[str]]]:
    """(header, rows) of the one Rich table in `text` (piped: one line per row)."""
    lines = text.splitlines()
    header = next(line for line in lines if "┃" in line)
    columns = [c.strip() for c in header.strip().strip("┃").split("┃")]
    rows = [
        [c.strip() for c in line.strip().strip("│").split("│")]
        for line in lines
        if line.strip().startswith("│")
    ]
    return columns, rows


# (command, the slug that must show up); every one lists or previews rows of tenants
COMMANDS: list[tuple[tuple[str, ...], str]] = [
    (("subs", "list"), SLUG),
    (("invoices", "list"), SLUG),
    (("disputes", "list"), SLUG),
    (("webhooks", "list"), SLUG),
    (("domains", "list"), SLUG),
    (("comms", "list"), "grace-lagos"),
    (("support", "tickets", "list", *AT), "grace-lagos"),
    (("incidents", "list"), ""),
    (("sla", "breaches", *AT), "grace-lagos"),  # after `sla sweep` recorded the demo's breach
    (("audit", "list"), SLUG),
    (("dunning", "preview", *AT), ""),
    (("subs", "automate", "--dry-run", *AT), ""),
    (("disputes", "monitor", "--dry-run", *AT), SLUG),
    (("invoices", "reconcile", "--dry-run", "--provider", "stripe", *AT), SLUG),
]


def _problems(cli: Any, known: set[str], args: tuple[str, ...], slug: str) -> list[str]:
    shown = cli(*args)
    name = " ".join(args)
    if shown.exit_code != 0:
        return [f"{name}: exit {shown.exit_code}: {shown.output}"]
    columns, rows = table(shown.stdout)
    if {"tenant_id", "tenant id", "tenant_ids"} & set(columns) or "tenant" not in columns:
        return [f"{name}: columns {columns}"]
    cells = [row[columns.index("tenant")] for row in rows if len(row) == len(columns)]
    wrong = [cell for cell in cells if cell not in known and cell not in ("", "—")]
    if not cells or wrong or (slug and slug not in cells):
        return [f"{name}: tenant shown as {wrong or cells}:\n{shown.stdout}"]
    return []


def test_tables_name_tenants_by_slug_never_by_id(
    cli: Any, world: dict[int, str], stripe: FakeAPI
) -> None:
    assert cli("sla", "sweep", *AT).exit_code == 0
    known = set(world.values())
    problems = [p for args, slug in COMMANDS for p in _problems(cli, known, args, slug)]
    assert not problems, "\n\n".join(problems)


def test_json_rows_with_a_tenant_id_also_carry_the_slug(cli: Any, world: dict[int, str]) -> None:
    for args in (args for args, _ in COMMANDS if "list" in args):
        listed = cli(*args, "--json")
        assert listed.exit_code == 0, listed.output
        for row in json.loads(listed.stdout):
            if row.get("tenant_id") is not None:
                assert row["tenant"] == world[row["tenant_id"]], (args, row)


# (list command whose first --json row is shown, show command) for every `show` of a record
# that belongs to a tenant
SHOWS = [
    (("subs", "list"), ("subs", "show")),
    (("invoices", "list"), ("invoices", "show")),
    (("disputes", "list"), ("disputes", "show")),
    (("webhooks", "list"), ("webhooks", "show")),
    (("support", "tickets", "list", *AT), ("support", "tickets", "show", *AT)),
    (("comms", "list"), ("comms", "show")),
]


def test_show_records_name_the_tenant_by_slug(cli: Any, world: dict[int, str]) -> None:
    problems = []
    for listing, show in SHOWS:
        listed = cli(*listing, "--json")
        assert listed.exit_code == 0, listed.output
        row = json.loads(listed.stdout)[0]
        shown = cli(*show[:2] if show[0] != "support" else show[:3], str(row["id"]),
                    *show[3 if show[0] == "support" else 2:])  # fmt: skip
        name = " ".join(show)
        if shown.exit_code != 0:
            problems.append(f"{name}: exit {shown.exit_code}: {shown.output}")
        elif "tenant_id" in shown.stdout or not set(world.values()) & set(shown.stdout.split()):
            problems.append(f"{name}: tenant not named by slug:\n{shown.stdout}")
    assert not problems, "\n\n".join(problems)


def test_json_keeps_the_id_and_adds_the_slug(
    cli: Any, world: dict[int, str], stripe: FakeAPI
) -> None:
    listed = cli("webhooks", "list", "--json")
    assert listed.exit_code == 0, listed.output
    (event,) = json.loads(listed.stdout)
    assert world[event["tenant_id"]] == event["tenant"] == SLUG
    shown = cli("webhooks", "show", str(event["id"]))
    assert SLUG in shown.stdout and "tenant_id" not in shown.stdout
    preview = cli("invoices", "reconcile", "--dry-run", "--provider", "stripe", "--json", *AT)
    assert preview.exit_code == 0, preview.output
    actions = json.loads(preview.stdout)["actions"]
    about = [a for a in actions if "tenant_id" in a["data"]]
    assert "missing_locally" in {a["kind"] for a in about}
    for action in about:
        assert action["data"]["tenant"] == world[action["data"]["tenant_id"]]
        if action["kind"] in ("missing_locally", "relink_customer"):
            assert f"tenant {SLUG}" in action["reason"], action["reason"]
