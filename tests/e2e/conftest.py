"""Fixtures of the end-to-end flows: `platform` is a fresh FaithFlow deployment per test, on
SQLite and on Postgres, started from a migrated and seeded world.

The world is seeded once per dialect per test process by the real CLI (`faithflow db
upgrade`, `tenants add`, `plans add`, `tenants link`, `support agents add`, in this process
like the flows' own calls, or as subprocesses with E2E_SUBPROCESS=1) over the session's
migrated template (tests/conftest.py's `_templates`: its migrations are run once per process
for every database test, so `db upgrade` finds nothing to do). Each flow gets it fresh: a
copy of the SQLite file, or on Postgres a database of the session's pool with the world's
rows written back in (`_PostgresWorld`).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from fakes.providers import FakeAPI, Reply, paystack_fake, stripe_fake
from fakes.smtp import smtp_server
from fakes.twilio import TwilioFake
from harness import PaystackWorld, Platform, StripeWorld, clean_environ, run_cli
from sqlalchemy.engine import make_url

from faithflow_ops.config import normalize_database_url

# The world every flow starts from. Tenants: grace (the church whose billing the flows follow)
# and hope (another church, to show what it must not see). Plans in three tiers with their
# Stripe prices. Both churches' Connect accounts linked. One support agent. For the Paystack
# flows: lagos and abuja (NGN), NGN plans in three tiers with their Paystack plan codes, and
# both churches' subaccounts linked.
TENANTS = {
    "grace": ("Grace Church", "America/New_York", "treasurer@gracechurch.org", "+12025550143"),
    "hope": ("Hope Chapel", "America/Chicago", "office@hopechapel.org", "+13125550188"),
}
PLANS = {  # code: (name, amount, tier, stripe price)
    "starter": ("Starter", "19", 1, "price_1QStarterMonthly"),
    "growth": ("Growth", "49", 2, "price_1QGrowthMonthly"),
    "pro": ("Pro", "99", 3, "price_1QProMonthly"),
}
CONNECT = {"grace": "acct_1QGraceConnect", "hope": "acct_1QHopeConnect"}
AGENT = "ada@faithflow.example"
# The Paystack side (tests/e2e/test_e2e_paystack_flows.py): two Nigerian churches billed in NGN
# through Paystack plans, each with its giving subaccount linked.
PAYSTACK_TENANTS = {
    "lagos": ("Lagos Chapel", "treasurer@lagoschapel.org", "+2348012345678"),
    "abuja": ("Abuja Grace Assembly", "finance@abujagrace.org", "+2348098765432"),
}
PAYSTACK_PLANS = {  # code: (name, amount, tier, paystack plan code)
    "starter-ngn": ("Starter (NGN)", "5000", 1, "PLN_starter0ngn01"),
    "growth-ngn": ("Growth (NGN)", "15000", 2, "PLN_growth0ngn01"),
    "pro-ngn": ("Pro (NGN)", "45000", 3, "PLN_pro0ngn01"),
}
SUBACCOUNTS = {"lagos": "ACCT_lagos0chapel1", "abuja": "ACCT_abuja0grace1"}


def _world_commands() -> list[list[list[str]]]:
    """Steps of CLI commands; the commands of one step do not depend on each other."""
    step2 = [
        [
            "tenants", "add", slug, "--name", name, "--timezone", zone, "--country", "US",
            "--currency", "USD", "--email", email, "--phone", phone,
        ]
        for slug, (name, zone, email, phone) in TENANTS.items()
    ]  # fmt: skip
    step2 += [
        [
            "plans", "add", code, "--name", name, "--amount", amount, "--currency", "USD",
            "--interval", "month", "--tier", str(tier), "--meta", f"stripePriceId={price}",
        ]
        for code, (name, amount, tier, price) in PLANS.items()
    ]  # fmt: skip
    step2.append(["support", "agents", "add", AGENT, "--name", "Ada Obi"])
    step2 += [
        [
            "tenants", "add", slug, "--name", name, "--timezone", "Africa/Lagos", "--country",
            "NG", "--currency", "NGN", "--email", email, "--phone", phone,
        ]
        for slug, (name, email, phone) in PAYSTACK_TENANTS.items()
    ]  # fmt: skip
    step2 += [
        [
            "plans", "add", code, "--name", name, "--amount", amount, "--currency", "NGN",
            "--interval", "month", "--tier", str(tier), "--meta", f"paystackPlanCode={plan}",
        ]
        for code, (name, amount, tier, plan) in PAYSTACK_PLANS.items()
    ]  # fmt: skip
    step3 = [["tenants", "link", slug, account] for slug, account in CONNECT.items()]
    step3 += [["tenants", "link", slug, account] for slug, account in SUBACCOUNTS.items()]
    return [[["db", "upgrade"]], step2, step3]


def _build_world(database_url: str, workdir: Path) -> None:
    env = {
        **clean_environ(),
        "FAITHFLOW_DATABASE_URL": database_url,
        "FAITHFLOW_LOG_FORMAT": "json",
        "XDG_DATA_HOME": str(workdir / "xdg"),
    }
    for step in _world_commands():
        for args in step:  # in this process, as the flows' own calls (run_cli)
            result = run_cli(env, args, timeout=120)
            assert result.returncode == 0, (
                f"world: faithflow {' '.join(args)}: {result.stdout}\n{result.stderr}"
            )


def _admin_url() -> str:
    """FAITHFLOW_TEST_POSTGRES_URL for the psycopg 3 driver (tests/conftest.py checks it is
    reachable: the `postgres_available` fixture)."""
    return normalize_database_url(os.environ["FAITHFLOW_TEST_POSTGRES_URL"])


def _url(name: str, driver: str | None = None) -> str:
    """The URL of the Postgres database `name` (for SQLAlchemy, or `driver`'s)."""
    url = make_url(_admin_url()).set(database=name)
    if driver:
        url = url.set(drivername=driver)
    return url.render_as_string(hide_password=False)


@pytest.fixture(scope="session")
def sqlite_world(tmp_path_factory: pytest.TempPathFactory, _templates: Any) -> Path:
    """The seeded SQLite file every SQLite flow copies: a copy of the session's migrated
    template (tests/conftest.py), seeded by the CLI."""
    folder = tmp_path_factory.mktemp("e2e-world")
    path = folder / "world.db"
    _templates.sqlite_copy(path)
    _build_world(f"sqlite:///{path}", folder)
    return path


class _PostgresWorld:
    """The world on Postgres, laid into a database of the session's pool (tests/conftest.py:
    migrated, emptied after each test, reused) for each flow, and given back after it.

    The CLI seeds it once, into the first database taken; what that left — every table's
    rows as COPY dumps them, every sequence's position — is then written back for each flow
    in one transaction, after a VACUUM of the emptied tables so that the rows land where they
    did in the first (the same order for a query without ORDER BY). No database is created or
    dropped for the flows: `CREATE DATABASE … TEMPLATE` cost 0.2-0.4 s a flow, and the DROP of
    each one forced a checkpoint of the whole cluster (2 to 24 s for the run's fifteen while
    other tests dirty pages)."""

    _TABLES = """
        SELECT quote_ident(tablename) FROM pg_tables
        WHERE schemaname = 'public' AND tablename <> 'alembic_version' ORDER BY 1
    """
    _SEQUENCES = """
        SELECT c.oid::regclass::text FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE n.nspname = 'public' AND c.relkind = 'S' ORDER BY 1
    """

    _USED = """
        SELECT string_agg('public.' || quote_ident(c.relname), ', ') FROM pg_class c
        JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE n.nspname = 'public' AND c.relkind = 'r' AND c.relname <> 'alembic_version'
          AND pg_relation_size(c.oid) > 0
    """

    def __init__(self, templates: Any) -> None:
        self.templates = templates  # tests/conftest.py's `_templates`: its Postgres pool
        self.rows: dict[str, bytes] | None = None  # table (quoted) → its rows, COPY format
        self.sequences = ""  # one SELECT of setval(…) calls: every sequence as the CLI left it

    def take(self, workdir: Path) -> str:
        name: str = self.templates.take_postgres()
        if self.rows is None:  # seed once; every flow then gets the world the same way
            try:
                _build_world(_url(name), workdir)
                self._snapshot(name)
            finally:
                self.give_back(name)
            name = self.templates.take_postgres()
        try:
            self._lay(name)
        except BaseException:
            self.give_back(name)
            raise
        return name

    def give_back(self, name: str) -> None:
        self.templates.give_back_postgres(name)  # every row gone, sequences at 1, or set aside

    def _snapshot(self, name: str) -> None:
        rows: dict[str, bytes] = {}
        with psycopg.connect(_url(name, "postgresql"), autocommit=True) as conn:
            tables = [table for (table,) in conn.execute(self._TABLES).fetchall()]
            for table in tables:
                with conn.cursor().copy(f"COPY public.{table} TO STDOUT") as copy:
                    data = b"".join(bytes(block) for block in copy)
                if data:
                    rows[table] = data
            calls = []
            for (sequence,) in conn.execute(self._SEQUENCES).fetchall():
                position = conn.execute(f"SELECT last_value, is_called FROM {sequence}").fetchone()
                assert position is not None
                quoted = sequence.replace("'", "''")
                calls.append(f"setval('{quoted}'::regclass, {int(position[0])}, {position[1]})")
        self.sequences = f"SELECT {', '.join(calls)}" if calls else ""
        self.rows = rows

    def _lay(self, name: str) -> None:
        """Write the world into `name`, which the pool gave emptied."""
        assert self.rows is not None
        with psycopg.connect(_url(name, "postgresql"), autocommit=True) as conn:
            # Every table that holds pages (the flows' deleted rows) as short as when new.
            (used,) = conn.execute(self._USED).fetchone() or (None,)
            if used:
                conn.execute(f"VACUUM (INDEX_CLEANUP ON) {used}")
            with conn.transaction():
                conn.execute("SET LOCAL session_replication_role = replica")  # no FK checks
                if self.sequences:
                    conn.execute(self.sequences)
                cursor = conn.cursor()
                for table, data in self.rows.items():
                    with cursor.copy(f"COPY public.{table} FROM STDIN") as copy:
                        copy.write(data)


@pytest.fixture(scope="session")
def postgres_world(_templates: Any) -> _PostgresWorld:
    return _PostgresWorld(_templates)


@pytest.fixture(params=["sqlite", "postgres"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh copy of the world on each dialect."""
    if request.param == "sqlite":
        world: Path = request.getfixturevalue("sqlite_world")
        copy = tmp_path / "faithflow.db"
        shutil.copyfile(world, copy)
        for suffix in ("-wal", "-shm"):
            if Path(f"{world}{suffix}").exists():
                shutil.copyfile(f"{world}{suffix}", f"{copy}{suffix}")
        yield f"sqlite:///{copy}"
        return
    if not request.getfixturevalue("postgres_available"):
        pytest.skip("Postgres not configured: set FAITHFLOW_TEST_POSTGRES_URL")
    world_pg: _PostgresWorld = request.getfixturevalue("postgres_world")
    name = world_pg.take(tmp_path)
    try:
        yield _url(name)
    finally:
        world_pg.give_back(name)


@pytest.fixture
def platform(database_url: str, tmp_path: Path) -> Iterator[Platform]:
    """One deployment per flow: the world's database, fresh provider stand-ins and an alert
    hook, the receiver started on first use and stopped afterwards."""
    stripe_world, paystack_world = StripeWorld(), PaystackWorld()
    stripe, paystack = stripe_fake(), paystack_fake()
    stripe_world.install(stripe)
    paystack_world.install(paystack)
    alerts = FakeAPI(lambda api, req: Reply(200, {"ok": True}))
    with (
        stripe.serve(),
        paystack.serve(),
        alerts.serve(),
        smtp_server() as smtp,
        TwilioFake().serve() as twilio,
    ):
        dialect = "sqlite" if database_url.startswith("sqlite") else "postgres"
        deployment = Platform(
            dialect, database_url, tmp_path, stripe, paystack, alerts, stripe_world,
            paystack_world, smtp, twilio,
        )  # fmt: skip
        try:
            yield deployment
        finally:
            deployment.stop()
