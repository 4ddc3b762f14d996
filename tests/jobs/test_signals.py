"""A job process stopped by SIGTERM (cron and Render send it on shutdown) records its run as
failed and releases its lease, exactly like Ctrl-C, and exits 143."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest
from fakes.gate import Gate
from sqlalchemy import select

from faithflow_ops.db import Database
from faithflow_ops.models import JobLock, JobRun

JOB = "disputes_monitor"


def _run_row(db: Database) -> JobRun | None:
    with db.read_session() as s:
        return s.scalars(select(JobRun).where(JobRun.job == JOB)).first()


@pytest.mark.parametrize(
    ("signum", "code", "name"), [(signal.SIGTERM, 143, "SIGTERM"), (signal.SIGINT, 130, "SIGINT")]
)
def test_a_signal_mid_run_records_the_run_failed_and_releases_the_lease(
    db: Database, db_url: str, signum: int, code: int, name: str
) -> None:
    with Gate().serve() as gate:
        env = {
            **os.environ,
            "FAITHFLOW_DATABASE_URL": db_url,
            "PAYSTACK_SECRET_KEY": "sk_test_gate",
            "PAYSTACK_API_BASE": gate.url,
        }
        faithflow = os.path.join(os.path.dirname(sys.executable), "faithflow")
        proc = subprocess.Popen(
            [faithflow, "jobs", "run", JOB, "--now", "2026-03-01T09:00:00Z", "--json"],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            # the run is recorded and its plan is waiting on the provider: mid-run
            assert gate.entered.wait(60), "the job never called the provider"
            row = _run_row(db)
            assert row is not None and row.status == "running"
            proc.send_signal(signum)
            _, err = proc.communicate(timeout=60)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(10)
    assert proc.returncode == code, err
    assert f"terminated by {name}" in err
    assert "Traceback" not in err
    row = _run_row(db)
    assert row is not None
    assert row.status == "failed"
    assert row.finished_at is not None
    assert f"terminated by {name}" in (row.error or "")
    with db.read_session() as s:
        assert s.get(JobLock, JOB) is None
