"""`faithflow jobs …` and the job command contract through the CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from faithflow_ops.db import Database
from faithflow_ops.jobs import locks
from faithflow_ops.jobs.registry import JOBS

BACKFILL = "subscription_metadata_backfill"


def stripe_subscriptions(db: Database, metadata: list[dict]) -> None:
    """One plan, and an active Stripe subscription per metadata document, each for its own
    tenant (`grace`, `grace-1`, …: a tenant has one live subscription)."""
    from faithflow_ops.models import Subscription, SubscriptionPlan, Tenant

    with db.session() as s:
        plan = SubscriptionPlan(
            code="basic", name="Basic", amount_minor=1000, currency="USD", interval="month"
        )
        tenants = [
            Tenant(slug=f"grace-{i}" if i else "grace", name="Grace") for i in range(len(metadata))
        ]
        s.add_all([plan, *tenants])
        s.flush()
        s.add_all(
            Subscription(
                tenant_id=tenant.id,
                plan_id=plan.id,
                provider="stripe",
                status="active",
                metadata_=meta,
            )
            for tenant, meta in zip(tenants, metadata, strict=True)
        )


def test_jobs_list_shows_every_job_with_schedule_next_run_and_paths(cli) -> None:
    result = cli("jobs", "list", "--json")
    assert result.exit_code == 0, result.stderr
    rows = json.loads(result.stdout)
    assert [r["name"] for r in rows] == [s.name for s in JOBS]
    row = next(r for r in rows if r["name"] == BACKFILL)
    assert row["schedule"] == "10 2 * * *"
    assert row["explanation"] == "At 02:10 every day"
    assert row["cli"] == "faithflow subs backfill"
    assert row["task_path"] == "/tasks/subscriptions/metadata-backfill"
    assert row["next_run"].endswith("T02:10:00+00:00")


def test_jobs_list_honours_cron_overrides(cli, monkeypatch) -> None:
    monkeypatch.setenv("CRON_SUBSCRIPTION_METADATA_BACKFILL", "*/5 * * * *")
    rows = json.loads(cli("jobs", "list", "--json").stdout)
    assert rows[0]["schedule"] == "*/5 * * * *"


def test_an_invalid_cron_override_exits_2_naming_the_variable(cli, monkeypatch) -> None:
    monkeypatch.setenv("CRON_SUBSCRIPTION_METADATA_BACKFILL", "every night")
    result = cli("jobs", "list")
    assert result.exit_code == 2
    assert "CRON_SUBSCRIPTION_METADATA_BACKFILL" in result.stderr


def test_preview_json_is_one_document_and_records_a_run(cli, db: Database) -> None:
    result = cli("subs", "backfill", "--dry-run", "--json", "--now", "2026-03-01T09:00:00Z")
    assert result.exit_code == 0, result.stderr
    doc = json.loads(result.stdout)
    assert doc["job"] == BACKFILL and doc["dry_run"] is True
    assert doc["now"] == "2026-03-01T09:00:00+00:00"
    assert doc["status"] == "succeeded" and doc["actions"] == []
    runs = json.loads(cli("jobs", "runs", "--json").stdout)
    assert runs[0]["job"] == BACKFILL and runs[0]["dry_run"] is True
    assert runs[0]["trigger"] == "cli"


def test_bad_now_exits_2_with_an_example(cli, db: Database) -> None:
    result = cli("subs", "backfill", "--now", "yesterday")
    assert result.exit_code == 2
    assert "--now 'yesterday' is not an ISO-8601 time" in result.stderr
    assert "2026-03-01T09:00:00Z" in result.stderr


def test_limit_below_one_is_a_usage_error(cli, db: Database) -> None:
    result = cli("subs", "backfill", "--limit", "0")
    assert result.exit_code == 2
    huge = cli("subs", "backfill", "--limit", "99999999999999999999")  # beyond a SQL LIMIT
    assert huge.exit_code == 2 and "less than or equal to 1000000000" in huge.stderr


def test_unknown_job_name_exits_2(cli, db: Database) -> None:
    result = cli("jobs", "run", "reticulate-splines")
    assert result.exit_code == 2
    assert "no job named 'reticulate-splines'" in result.stderr


def test_jobs_runs_rejects_an_unknown_status(cli, db: Database) -> None:
    result = cli("jobs", "runs", "--status", "exploded")
    assert result.exit_code == 2
    assert "--status 'exploded' is not one of" in result.stderr


def test_a_held_lock_exits_75_and_says_who_holds_it(cli, db: Database) -> None:
    assert locks.acquire(db, BACKFILL, "cron-host:4242", 600) is None
    result = cli("jobs", "run", BACKFILL)
    assert result.exit_code == 75
    assert "already running (since" in result.stderr
    assert "holder cron-host:4242" in result.stderr
    runs = json.loads(cli("jobs", "runs", "--status", "skipped", "--json").stdout)
    assert len(runs) == 1


def test_unmigrated_database_says_to_run_db_upgrade(cli, tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("FAITHFLOW_DATABASE_URL", f"sqlite:///{tmp_path / 'empty.db'}")
    result = cli("jobs", "runs")
    assert result.exit_code == 2
    assert "faithflow db upgrade" in result.stderr


def test_unreachable_database_exits_2_without_a_traceback(cli, monkeypatch) -> None:
    monkeypatch.setenv("FAITHFLOW_DATABASE_URL", "postgresql://nobody@127.0.0.1:1/none")
    result = cli("jobs", "runs")
    assert result.exit_code == 2
    assert "cannot reach the database" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_real_second_process_exits_75_while_the_first_holds_the_lock(
    cli, db: Database, db_url: str
) -> None:
    """Two real processes: this one holds the job's lease (a committed `job_locks` row, as
    any holder's is), a `faithflow` process started from its console script is skipped with
    exit 75. Once released, a run (in-process: no third start-up) succeeds."""
    assert locks.acquire(db, BACKFILL, "other-process", 600) is None
    try:
        env = {**os.environ, "FAITHFLOW_DATABASE_URL": db_url}
        faithflow = os.path.join(os.path.dirname(sys.executable), "faithflow")
        busy = subprocess.run(
            [faithflow, "subs", "backfill"], env=env, capture_output=True, text=True, timeout=60
        )
        assert busy.returncode == 75, busy.stderr
        assert "holder other-process" in busy.stderr
    finally:
        locks.release(db, BACKFILL, "other-process")
    free = cli("subs", "backfill", "--json")
    assert free.exit_code == 0, free.stderr
    assert json.loads(free.stdout)["status"] == "succeeded"


def test_every_command_has_help_and_the_reference_is_current(cli) -> None:
    from pathlib import Path

    import typer

    from faithflow_ops.cli import app
    from faithflow_ops.cli.reference import render, walk

    for path, command in walk(typer.main.get_command(app), ("faithflow",)):
        assert (command.help or "").strip(), f"{' '.join(path)} has no help text"
        for param in command.params:
            if param.param_type_name == "option" and param.name != "help":
                assert getattr(param, "help", None), f"{' '.join(path)} {param.name} has no help"
    reference = Path(__file__).resolve().parents[2] / "docs" / "cli.md"
    assert reference.read_text() == render(), (
        "docs/cli.md is stale: python -m faithflow_ops.cli.reference > docs/cli.md"
    )


def test_groups_load_on_demand_and_their_listed_help_is_their_own() -> None:
    """`faithflow --help` lists groups from the table without importing them; each line is the
    group's own help and every registry job is reachable in its group."""
    import subprocess

    from faithflow_ops.cli import GROUPS, load_group
    from faithflow_ops.jobs.registry import JOBS

    for name, (_, text) in GROUPS.items():
        assert load_group(name).info.help == text, f"GROUPS[{name!r}] help differs from its module"
    for spec in JOBS:
        assert spec.cli_group in GROUPS, f"{spec.name}: no command group {spec.cli_group!r}"
        verbs = {c.name for c in load_group(spec.cli_group).registered_commands}
        assert spec.cli_verb in verbs, f"{spec.cli_command} is not a command"
    probe = (
        "import sys\nsys.argv = ['faithflow', '--help']\nfrom faithflow_ops.cli import app\n"
        "try:\n    app()\nexcept SystemExit:\n    pass\n"
        "print(','.join(sorted(sys.modules)), file=sys.stderr)"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    loaded = set(out.stderr.strip().split(","))
    groups = {module for module, _ in GROUPS.values()} - {"faithflow_ops.cli.jobs"}  # demo's
    assert not groups & loaded, f"--help imported {sorted(groups & loaded)}"
    for name in GROUPS:
        assert f"  {name} " in out.stdout


def test_a_reader_that_goes_away_does_not_stop_the_run(db: Database, db_url: str) -> None:
    """`faithflow subs backfill --json | head -c 100`: the output stops, the work does not."""
    from sqlalchemy import func, select

    from faithflow_ops.models import Subscription

    stripe_subscriptions(
        db, [{"customer": {"id": f"cus_{i:06d}abc"}, "note": "x" * 300} for i in range(400)]
    )
    faithflow = os.path.join(os.path.dirname(sys.executable), "faithflow")
    env = {**os.environ, "FAITHFLOW_DATABASE_URL": db_url}
    proc = subprocess.Popen(
        [faithflow, "subs", "backfill", "--json"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert proc.stdout is not None
    assert proc.stdout.read(100).startswith(b'{"actions": [')
    proc.stdout.close()
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err.decode()
    assert b"Traceback" not in err
    with db.read_session() as s:
        done = s.scalar(
            select(func.count())
            .select_from(Subscription)
            .where(Subscription.provider_customer_id.is_not(None))
        )
    assert done == 400


def test_the_preview_table_has_a_row_per_change_with_old_new_and_source(cli, db: Database) -> None:
    stripe_subscriptions(db, [{"stripe": {"customer": {"id": "cus_Abc123"}}}])
    result = cli("subs", "backfill", "--dry-run")
    assert result.exit_code == 0, result.stderr
    lines = [line for line in result.stdout.splitlines() if "cus_Abc123" in line]
    assert len(lines) == 2  # the column and the canonical metadata key
    assert "provider_customer_id" in lines[0] and "metadata.stripe.customer.id" in lines[0]
    assert "metadata.stripeCustomerId" in lines[1]
    assert "would do: normalize=1" in result.stderr
