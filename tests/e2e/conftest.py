"""Fixtures of the end-to-end flows: `platform` is a fresh FaithFlow deployment per test, on
SQLite and on Postgres, started from a migrated and seeded template.

The template (the "world") is built once per dialect per test run, by the real CLI
(`faithflow db upgrade`, `tenants add`, `plans add`, `tenants link`, `support agents add`, in
this process like the flows' own calls, or as subprocesses with E2E_SUBPROCESS=1), and copied
for each test: a SQLite file copy, or `CREATE DATABASE … TEMPLATE` on Postgres. xdist
workers share the template through a file lock in the run's common temporary directory; the
last worker out drops the Postgres one.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from fakes.providers import FakeAPI, Reply, paystack_fake, stripe_fake
from fakes.smtp import smtp_server
from fakes.twilio import TwilioFake
from harness import PaystackWorld, Platform, StripeWorld, clean_environ, run_cli
from sqlalchemy import create_engine, text
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


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _admin_url() -> str:
    """FAITHFLOW_TEST_POSTGRES_URL for the psycopg 3 driver (tests/conftest.py checks it is
    reachable: the `postgres_available` fixture)."""
    return normalize_database_url(os.environ["FAITHFLOW_TEST_POSTGRES_URL"])


@pytest.fixture(scope="session")
def _shared_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A directory every xdist worker of this run shares (the run's base temp's parent)."""
    base = tmp_path_factory.getbasetemp()
    shared = base.parent if base.name.startswith("popen-gw") else base
    path = shared / "e2e-world"
    path.mkdir(exist_ok=True)
    return path


@pytest.fixture(scope="session")
def sqlite_world(_shared_dir: Path) -> Path:
    """The migrated, seeded SQLite file every SQLite flow copies."""
    path = _shared_dir / "world.db"
    with _locked(_shared_dir / "sqlite.lock"):
        if not (_shared_dir / "sqlite.ready").exists():
            for stale in _shared_dir.glob("world.db*"):
                stale.unlink()
            _build_world(f"sqlite:///{path}", _shared_dir / "sqlite-build")
            (_shared_dir / "sqlite.ready").touch()
    return path


@pytest.fixture(scope="session")
def postgres_world(_shared_dir: Path) -> Iterator[str]:
    """The name of the migrated, seeded Postgres database every Postgres flow clones. Workers
    count themselves in a state file; the last one out drops it."""
    state_path = _shared_dir / "postgres.json"
    lock = _shared_dir / "postgres.lock"
    admin = create_engine(_admin_url(), isolation_level="AUTOCOMMIT")
    try:
        with _locked(lock):
            state = json.loads(state_path.read_text()) if state_path.exists() else None
            if state is None:
                name = f"ff_e2e_world_{uuid.uuid4().hex[:12]}"
                with admin.connect() as conn:
                    conn.execute(text(f'CREATE DATABASE "{name}"'))
                url = make_url(_admin_url()).set(database=name)
                try:
                    _build_world(url.render_as_string(hide_password=False), _shared_dir / "pg")
                except BaseException:
                    with admin.connect() as conn:
                        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
                    raise
                state = {"name": name, "users": 0}
            state["users"] += 1
            state_path.write_text(json.dumps(state))
        yield state["name"]
        with _locked(lock):
            state = json.loads(state_path.read_text())
            state["users"] -= 1
            if state["users"] <= 0:
                with admin.connect() as conn:
                    conn.execute(text(f'DROP DATABASE IF EXISTS "{state["name"]}" WITH (FORCE)'))
                state_path.unlink()
            else:
                state_path.write_text(json.dumps(state))
    finally:
        admin.dispose()


@pytest.fixture(params=["sqlite", "postgres"])
def database_url(
    request: pytest.FixtureRequest, tmp_path: Path, _shared_dir: Path
) -> Iterator[str]:
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
    template = request.getfixturevalue("postgres_world")
    name = f"ff_e2e_{uuid.uuid4().hex[:12]}"
    admin = create_engine(_admin_url(), isolation_level="AUTOCOMMIT")
    with _locked(_shared_dir / "postgres.lock"), admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}" TEMPLATE "{template}"'))
    admin.dispose()
    request.getfixturevalue("_drop_at_exit").append(name)
    yield make_url(_admin_url()).set(database=name).render_as_string(hide_password=False)


@pytest.fixture(scope="session")
def _drop_at_exit() -> Iterator[list[str]]:
    """The flows' Postgres databases, dropped when this process is done: DROP DATABASE forces a
    checkpoint, seconds after a flow has dirtied many pages; one after another at the end,
    only the first has much to write."""
    names: list[str] = []
    yield names
    admin = create_engine(_admin_url(), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        for name in names:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


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
