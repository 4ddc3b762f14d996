"""Both volunteer jobs through their three doors — the CLI (`--now --json`, the preview alias),
the task endpoint (API key) and the internal scheduler — and the operator commands, with their
bad inputs (exit 2, one line, nothing written)."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
from conftest import Church, messages, z
from helpers import job_document, running, said
from sqlalchemy import func, select

from faithflow_ops.config import Settings
from faithflow_ops.db import Database
from faithflow_ops.models import VolunteerAssignment, VolunteerBlockout, VolunteerPerson
from faithflow_ops.scheduler import Scheduler


def call(cli: Any, *args: str) -> dict[str, Any]:
    result = cli(*args, "--json")
    assert result.exit_code == 0, result.stderr
    doc: dict[str, Any] = json.loads(result.stdout)
    return doc


def test_the_whole_flow_from_the_cli(db: Database, cli: Any) -> None:
    assert cli("tenants", "add", "hope", "--name", "Hope Parish", "--timezone",
               "Africa/Lagos").exit_code == 0  # fmt: skip
    lead = call(cli, "volunteers", "person", "add", "Lola", "--tenant", "hope",
                "--email", "lola@hope.example")["id"]  # fmt: skip
    ada = call(cli, "volunteers", "person", "add", "Ada", "--tenant", "hope", "--phone",
               "+2348031234567", "--channel", "sms")["id"]  # fmt: skip
    team = call(cli, "volunteers", "team", "add", "Ushers", "--tenant", "hope",
                "--leader", str(lead))["id"]  # fmt: skip
    event = call(cli, "volunteers", "event", "add", "Sunday Mass", "--tenant", "hope",
                 "--start", "2026-03-08T08:00:00+01:00")  # fmt: skip
    assert event["timezone"] == "Africa/Lagos"
    need = call(cli, "volunteers", "need", "set", str(event["id"]), "--team", str(team),
                "--position", "Door", "--needed", "2")  # fmt: skip
    assignment = call(cli, "volunteers", "assign", str(event["id"]), "--position",
                      str(need["position_id"]), "--person", str(ada))["id"]  # fmt: skip

    preview = cli("volunteers", "preview-remind", "--now", "2026-03-06T06:00:00Z", "--json")
    doc = job_document(preview)
    assert (doc["dry_run"], doc["counts"]) == (True, {"send_reminder": 1})
    assert messages(db) == []
    done = job_document(cli("volunteers", "remind", "--now", "2026-03-06T06:00:00Z", "--json"))
    assert done["outcomes"] == {"applied": 1}
    again = job_document(cli("volunteers", "remind", "--now", "2026-03-06T07:00:00Z", "--json"))
    assert again["counts"] == {}

    gaps = job_document(cli("volunteers", "gaps", "--now", "2026-03-05T08:00:00Z", "--json"))
    assert gaps["counts"] == {"gap_alert": 1}
    assert gaps["actions"][0]["data"]["gap"] == 2 and gaps["actions"][0]["data"]["pending"] == 1
    r = call(cli, "volunteers", "respond", str(assignment), "--accept")
    assert r["status"] == "confirmed"
    roster = call(cli, "volunteers", "roster", str(event["id"]))
    [line] = roster["positions"]
    assert (line["needed"], line["gap"], len(line["confirmed"])) == (2, 1, 1)
    table = cli("volunteers", "roster", str(event["id"]))
    assert table.exit_code == 0 and "GAP 1" in table.stdout
    assert [m.template for m in messages(db)] == ["volunteer_reminder", "volunteer_gap_alert"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["person", "add", "X", "--tenant", "nope", "--email", "x@e.example"], "no tenant"),
        (["person", "add", "X", "--tenant", "grace", "--channel", "sms"], "needs --phone"),
        (
            [
                "person",
                "add",
                "X",
                "--tenant",
                "grace",
                "--email",
                "x@e.example",
                "--remind-days",
                "30",
            ],
            "-1 (off)",
        ),
        (
            [
                "event",
                "add",
                "E",
                "--tenant",
                "grace",
                "--start",
                "2026-03-08T09:00:00Z",
                "--timezone",
                "Mars/Olympus",
            ],
            "unknown time zone",
        ),
        (["event", "add", "E", "--tenant", "grace", "--start", "soon"], "--start"),
        (["respond", "1", "--accept", "--decline"], "exactly one of"),
        (["blockout", "add", "2", "--from", "2026-03-08", "--until", "2026-03-01"], "before"),
        (["blockout", "add", "2", "--from", "8 March"], "YYYY-MM-DD"),
        (["assign", "1", "--position", "999", "--person", "2"], "no position"),
        (["gaps", "--now", "2026-03-01T00:00:00Z", "--horizon-days", "0"], "--horizon-days"),
    ],
)
def test_bad_input_exits_2_with_one_line_and_writes_nothing(
    church: Church, cli: Any, args: list[str], message: str
) -> None:
    def count() -> tuple[int, int, int]:
        with church.db.read_session() as session:
            return tuple(  # type: ignore[return-value]
                session.scalar(select(func.count()).select_from(m)) or 0
                for m in (VolunteerPerson, VolunteerAssignment, VolunteerBlockout)
            )

    before = count()
    result = cli("volunteers", *args)
    assert result.exit_code == 2, result.stderr
    assert message in said(result)
    assert "Traceback" not in result.stderr
    assert count() == before


def test_the_task_endpoints_run_the_same_jobs(church: Church, db_url: str) -> None:
    from receiver.app import create_app

    church.assign(church.ann, confirmed=True)
    key = "k" * 32
    settings = Settings.from_env()
    settings = Settings(**{**settings.__dict__, "database_url": db_url, "integration_api_key": key})
    app = create_app(settings, db=church.db)
    with running(app) as url:
        headers = {"X-API-Key": key}
        body: dict[str, Any] = {"dry_run": True, "now": "2026-03-06T06:00:00Z"}
        path = url + "/tasks/volunteers/reminders"
        preview = httpx.post(path, json=body, headers=headers, timeout=60)
        assert preview.status_code == 200, preview.text
        assert preview.json()["counts"] == {"send_reminder": 1}
        body["dry_run"] = False
        done = httpx.post(path, json=body, headers=headers, timeout=60)
        assert done.json()["outcomes"] == {"applied": 1}
        assert httpx.post(path, json=body, headers=headers, timeout=60).json()["counts"] == {}
        assert httpx.post(path, json=body, timeout=60).status_code == 401
        gaps = url + "/tasks/volunteers/gap-alerts"
        body = {"now": "2026-03-01T13:00:00Z", "horizon_days": 14}
        alerted = httpx.post(gaps, json=body, headers=headers, timeout=60)
        assert alerted.status_code == 200, alerted.text
        assert alerted.json()["counts"] == {"gap_alert": 1}  # Camera; Sound is confirmed
        bad = httpx.post(gaps, json={**body, "horizon_days": 0}, headers=headers, timeout=60)
        assert bad.status_code == 400, bad.text
    assert len(messages(church.db)) == 2


def test_the_scheduler_runs_both_jobs_at_their_times(
    church: Church, monkeypatch: pytest.MonkeyPatch, db_url: str
) -> None:
    church.assign(church.ann, confirmed=True)
    cfg = Settings.from_env(
        {"FAITHFLOW_DATABASE_URL": db_url, "CRON_VOLUNTEER_GAP_ALERTS": "45 * * * *"}
    )
    s = Scheduler.from_settings(church.db, cfg, start=z("2026-03-06T05:50:00Z"))
    s.jobs = [j for j in s.jobs if j.spec.name.startswith("volunteer_")]
    assert {j.spec.name: j.expr for j in s.jobs} == {
        "volunteer_reminders": "0 * * * *",
        "volunteer_gap_alerts": "45 * * * *",
    }
    s.clock = lambda: z("2026-03-06T06:00:00Z")
    s.tick()  # reminders due at 06:00
    assert [m.template for m in messages(church.db)] == ["volunteer_reminder"]
    s.clock = lambda: z("2026-03-06T06:45:00Z")
    s.tick()  # gap alerts at :45 (3-day threshold: Camera short)
    assert [m.template for m in messages(church.db)][1:] == ["volunteer_gap_alert"]
