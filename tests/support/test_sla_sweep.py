"""`sla sweep` on both dialects: breaches at their due time, warnings once, idempotent runs,
notifications through the outbox, the urgent alert hook (and its failure), the task endpoint,
and the plan's partial indexes."""

from __future__ import annotations

import datetime as dt
from typing import Any

import httpx
import pytest
from fakes.disputes import AlertReceiver, Answer
from helpers import job_document, running
from sqlalchemy import select, text
from support_world import call, open_ticket, sweep

from faithflow_ops.config import Settings
from faithflow_ops.db import Database
from faithflow_ops.models import Incident, OutboundMessage, SlaEvent, SupportTicket


@pytest.fixture(autouse=True)
def _queue_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAITHFLOW_SUPPORT_QUEUE_EMAIL", "support@faithflow.example")
    monkeypatch.setenv("FAITHFLOW_PROVIDER_MAX_ATTEMPTS", "1")


def rows(out: dict[str, Any]) -> list[tuple[str, int, str, int]]:
    return [
        (a["kind"], a["data"]["ticket_id"], a["data"]["metric"], a["data"]["minutes_left"])
        for a in out["actions"]
    ]


def events(db: Database) -> list[tuple[int, str, int, str, str]]:
    with db.read_session() as s:
        return [
            (e.ticket_id, e.metric, e.episode, e.kind, e.occurred_at.isoformat())
            for e in s.scalars(select(SlaEvent).order_by(SlaEvent.id))
        ]


def test_warning_then_breach_each_once_at_their_own_times(world: Database, cli) -> None:
    t = open_ticket(cli, "urgent")["id"]  # first response due 09:30, warning at 09:24
    assert sweep(cli, "2026-03-02T09:20:00Z")["counts"] == {}
    out = sweep(cli, "2026-03-02T09:25:00Z")
    assert rows(out) == [("sla_warning", t, "first_response", 5)]
    assert out["outcomes"] == {"applied": 1}
    assert sweep(cli, "2026-03-02T09:25:00Z")["counts"] == {}  # same --now: nothing
    assert sweep(cli, "2026-03-02T09:28:00Z")["counts"] == {}  # warned once
    # the sweep runs late (10:07): the breach is marked at 09:30, when it happened
    out = sweep(cli, "2026-03-02T10:07:00Z")
    assert rows(out) == [("sla_breach", t, "first_response", -37)]
    assert sweep(cli, "2026-03-02T10:07:00Z")["counts"] == {}
    assert sweep(cli, "2026-03-02T10:30:00Z")["counts"] == {}
    with world.read_session() as s:
        ticket = s.get(SupportTicket, t)
        assert ticket is not None
        assert ticket.first_response_breached_at == dt.datetime(2026, 3, 2, 9, 30, tzinfo=dt.UTC)
        assert ticket.first_response_warned_at == dt.datetime(2026, 3, 2, 9, 25, tzinfo=dt.UTC)
    assert events(world) == [
        (t, "first_response", 1, "warning", "2026-03-02T09:24:00+00:00"),
        (t, "first_response", 1, "breach", "2026-03-02T09:30:00+00:00"),
    ]
    breaches = call(cli, "sla", "breaches")
    assert [(b["ticket_id"], b["metric"], b["due_at"], b["breached_at"]) for b in breaches] == [
        (t, "first_response", "2026-03-02T09:30:00+00:00", "2026-03-02T09:30:00+00:00")
    ]


def test_a_clock_found_overdue_gets_its_breach_and_no_late_warning(world: Database, cli) -> None:
    t = open_ticket(cli, "urgent")["id"]
    out = sweep(cli, "2026-03-02T13:30:00Z")  # first response and resolution both overdue
    assert sorted(rows(out)) == [
        ("sla_breach", t, "first_response", -240),
        ("sla_breach", t, "resolution", -30),
    ]
    assert [e[3] for e in events(world)] == ["breach", "breach"]


def test_preview_lists_minutes_left_and_writes_nothing(world: Database, cli) -> None:
    t = open_ticket(cli, "urgent")["id"]
    out = sweep(cli, "2026-03-02T09:45:00Z", "--dry-run")
    assert out["dry_run"] is True and rows(out) == [("sla_breach", t, "first_response", -15)]
    assert out["actions"][0]["data"]["due_at"] == "2026-03-02T09:30:00+00:00"
    table = cli("sla", "sweep", "--dry-run", "--now", "2026-03-02T09:45:00Z")
    assert table.exit_code == 0 and "-15" in table.stdout and "first_response" in table.stdout
    assert events(world) == []


def test_paused_and_fulfilled_clocks_never_breach(world: Database, cli) -> None:
    t = str(open_ticket(cli, "urgent")["id"])
    call(
        cli,
        "support",
        "tickets",
        "reply",
        t,
        "--as",
        "agent",
        "--body",
        "Hi",
        "--now",
        "2026-03-02T09:10:00Z",
    )
    call(cli, "support", "tickets", "status", t, "on_hold", "--now", "2026-03-02T09:20:00Z")
    assert sweep(cli, "2026-03-03T09:00:00Z")["counts"] == {}  # a day later: still paused


def test_a_reopened_ticket_resumes_its_breached_clock_without_a_second_breach(
    world: Database, cli
) -> None:
    # Zendesk: a reopened ticket's resolution clock resumes; one that breached stays breached
    t = open_ticket(cli, "urgent")["id"]
    call(
        cli, "support", "tickets", "reply", str(t), "--as", "agent", "--body", "Done",
        "--now", "2026-03-02T09:10:00Z",
    )  # fmt: skip
    sweep(cli, "2026-03-02T14:00:00Z")  # resolution episode 1 breached at 13:00
    call(cli, "support", "tickets", "status", str(t), "solved", "--now", "2026-03-02T14:10:00Z")
    doc = call(cli, "support", "tickets", "reopen", str(t), "--now", "2026-03-02T15:00:00Z")
    res = doc["clocks"]["resolution"]
    assert (res["episode"], res["state"]) == (2, "breached")
    assert res["breached_at"] == res["due_at"] == "2026-03-02T13:00:00+00:00"
    assert sweep(cli, "2026-03-02T19:30:00Z")["counts"] == {}  # no second breach
    assert [(e[1], e[2], e[3], e[4]) for e in events(world) if e[3] == "breach"] == [
        ("resolution", 1, "breach", "2026-03-02T13:00:00+00:00"),
    ]


def test_a_reopened_ticket_breaches_when_the_rest_of_its_target_runs_out(
    world: Database, cli
) -> None:
    t = open_ticket(cli, "urgent")["id"]  # resolution: 4 calendar hours from 09:00
    call(
        cli, "support", "tickets", "reply", str(t), "--as", "agent", "--body", "Done",
        "--now", "2026-03-02T09:10:00Z",
    )  # fmt: skip
    call(cli, "support", "tickets", "status", str(t), "solved", "--now", "2026-03-02T12:00:00Z")
    call(cli, "support", "tickets", "reopen", str(t), "--now", "2026-03-02T15:00:00Z")
    # 3 h used before the solve, 1 h left from 15:00: due 16:00 (a restart would say 19:00)
    out = sweep(cli, "2026-03-02T16:30:00Z")
    assert rows(out) == [("sla_breach", t, "resolution", -30)]
    assert [(e[1], e[2], e[3], e[4]) for e in events(world) if e[3] == "breach"] == [
        ("resolution", 2, "breach", "2026-03-02T16:00:00+00:00"),
    ]


def digests(db: Database) -> list[tuple[str, str, str]]:
    """(recipient, subject, body) of the queued SLA e-mails, oldest first."""
    with db.read_session() as s:
        return [
            (m.recipient, m.subject or "", m.body)
            for m in s.scalars(select(OutboundMessage).order_by(OutboundMessage.id))
            if m.template == "sla_digest" and m.category == "support"
        ]


def notices(db: Database, kind: str = "breach") -> dict[int, dict[str, Any]]:
    with db.read_session() as s:
        return {
            e.ticket_id: e.data["notify"] for e in s.scalars(select(SlaEvent).filter_by(kind=kind))
        }


def test_notifications_go_to_the_assignee_or_the_queue_once(world: Database, cli) -> None:
    mine = open_ticket(cli, "urgent", assign="ada@faithflow.example")["id"]
    queue = open_ticket(cli, "urgent")["id"]
    sweep(cli, "2026-03-02T09:25:00Z")  # warnings
    sweep(cli, "2026-03-02T09:40:00Z")  # breaches
    sweep(cli, "2026-03-02T09:40:00Z")  # nothing new: nothing sent
    sent = digests(world)
    warned = "[SLA warning] ticket #{}: first response due in 5 min (urgent)"
    breached = "[SLA breach] ticket #{}: first response overdue since 2026-03-02 09:30 (urgent)"
    assert [(to, subject) for to, subject, _ in sent] == [
        ("ada@faithflow.example", warned.format(mine)),
        ("support@faithflow.example", warned.format(queue)),
        ("ada@faithflow.example", breached.format(mine)),
        ("support@faithflow.example", breached.format(queue)),
    ]
    body = sent[2][2]
    assert (
        f"- #{mine} [urgent] first response BREACHED at 2026-03-02 09:30 UTC (10 min overdue)"
        in body
    )
    assert f"faithflow support tickets show {mine}" in body and f"#{queue}" not in body
    assert "1 breach on tickets assigned to you:" in body
    assert "1 breach on unassigned tickets (the support queue):" in sent[3][2]
    with world.read_session() as s:
        by_id = {m.id: m for m in s.scalars(select(OutboundMessage))}
    for ticket, note in notices(world).items():
        assert f"#{ticket} " in by_id[note["message_id"]].body and note["status"] == "queued"


def test_one_digest_per_recipient_lists_breaches_first_then_by_priority(
    world: Database, cli, monkeypatch: pytest.MonkeyPatch
) -> None:
    from faithflow_ops.jobs import sla_sweep

    # default targets, opened Monday 09:00, swept at 12:50: the high first response (due 10:00)
    # and the urgent one (09:30) are breached; the normal first response (240 business
    # minutes, due 13:00) and the urgent resolution (240 minutes, due 13:00) are warned
    high = open_ticket(cli, "high")["id"]
    normal = open_ticket(cli, "normal")["id"]
    urgent = open_ticket(cli, "urgent")["id"]
    monkeypatch.setattr(sla_sweep, "DIGEST_ITEMS", 2)
    out = sweep(cli, "2026-03-02T12:50:00Z")
    assert sorted(
        (a["data"]["ticket_id"], a["kind"], a["data"]["metric"]) for a in out["actions"]
    ) == [
        (high, "sla_breach", "first_response"),
        (normal, "sla_warning", "first_response"),
        (urgent, "sla_breach", "first_response"),
        (urgent, "sla_warning", "resolution"),
    ]
    ((to, subject, body),) = digests(world)  # all unassigned: ONE e-mail, to the queue
    assert to == "support@faithflow.example"
    assert subject == (
        f"[SLA] 2 breaches, 2 warnings: ticket #{urgent}: first response overdue since "
        "2026-03-02 09:30 (urgent) and 3 more"
    )
    # breaches before warnings, urgent before high; DIGEST_ITEMS listed, the rest counted
    assert body.index(f"- #{urgent} [urgent] first response BREACHED") < body.index(
        f"- #{high} [high] first response BREACHED"
    )
    assert f"- #{normal} " not in body and "… and 2 more, not listed here." in body
    assert "marked 2 breaches, 2 warnings" in body
    every = [*notices(world).values(), *notices(world, "warning").values()]
    assert len(every) == 4 and len({n["message_id"] for n in every}) == 1


def test_the_event_names_the_address_as_the_digest_was_sent_to(
    world: Database, cli, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FAITHFLOW_SUPPORT_QUEUE_EMAIL", " Support@FaithFlow.Example ")
    t = open_ticket(cli, "urgent")["id"]
    sweep(cli, "2026-03-02T09:40:00Z")
    ((to, _, _),) = digests(world)
    assert to == notices(world)[t]["to"] == "support@faithflow.example"


def test_without_a_queue_address_the_breach_is_still_marked(
    world: Database, cli, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("FAITHFLOW_SUPPORT_QUEUE_EMAIL")
    t = open_ticket(cli, "urgent")["id"]
    out = sweep(cli, "2026-03-02T09:40:00Z")
    assert out["status"] == "succeeded" and out["outcomes"] == {"applied": 1}
    with world.read_session() as s:
        event = s.scalars(select(SlaEvent).filter_by(ticket_id=t)).one()
    assert "FAITHFLOW_SUPPORT_QUEUE_EMAIL" in event.data["notify"]["skipped"]


def sla_incidents(db: Database) -> dict[str, tuple[str, str, int]]:
    """cause → (severity, status, id) of the support incidents."""
    with db.read_session() as s:
        return {
            i.cause: (i.severity, i.status, i.id)
            for i in s.scalars(select(Incident).filter_by(kind="support").order_by(Incident.id))
        }


def escalate(cli, now: str) -> dict[str, Any]:
    result = cli("incidents", "escalate", "--json", "--now", now)
    return job_document(result)


def test_urgent_marks_open_incidents_that_incidents_escalate_sends_to_the_hook(
    world: Database, cli, monkeypatch: pytest.MonkeyPatch
) -> None:
    hook = AlertReceiver()
    with hook.serve():
        monkeypatch.setenv("ALERT_WEBHOOK_URL", hook.url + "/hook")
        ok = open_ticket(cli, "urgent", assign="ada@faithflow.example")["id"]
        normal = open_ticket(cli, "normal")["id"]  # normal priority: no incident, no hook
        sweep(cli, "2026-03-02T09:25:00Z")  # the urgent first response is due 09:30
        warning = f"sla:{ok}:first_response:1:warning"
        assert sla_incidents(world) == {warning: ("warning", "open", 1)}
        escalate(cli, "2026-03-02T09:25:00Z")
        (sent,) = hook.alerts
        assert "SLA warning: urgent ticket" in sent["text"] and f"#{ok}" in sent["text"]
        out = sweep(cli, "2026-03-02T09:40:00Z")
        breach = f"sla:{ok}:first_response:1:breach"
        found = sla_incidents(world)
        assert found[warning][:2] == ("warning", "resolved")  # superseded by the breach
        assert found[breach][:2] == ("critical", "open")
        # the hook is down: the sweep never calls it, so nothing of the sweep fails
        hook.queue("/hook", Answer(502, {"error": "down"}))
        failed = escalate(cli, "2026-03-02T09:40:00Z")
        assert out["status"] == "succeeded" and failed["status"] == "failed"
        late = open_ticket(cli, "urgent", now="2026-03-02T10:00:00Z")["id"]
        out = sweep(cli, "2026-03-02T10:40:00Z")
        assert out["status"] == "succeeded" and out["outcomes"] == {"applied": 1}
        again = escalate(cli, "2026-03-02T10:41:00Z")  # the backoff has passed: both go out
        # ... and the warning the breach superseded posts its resolution (issue 22 #7)
        assert again["outcomes"] == {"applied": 3}
        assert sorted(a["kind"] for a in again["actions"]) == ["alert", "alert", "alert_resolved"]
        texts = [a["text"] for a in hook.alerts[1:]]
    assert any(f"#{ok}, first response overdue since 2026-03-02 09:30" in t for t in texts)
    assert any(f"#{late}," in t for t in texts)
    assert not any(f"#{normal}," in t for t in texts)
    with world.read_session() as s:
        event = s.scalars(select(SlaEvent).filter_by(ticket_id=ok, kind="breach")).one()
    assert event.data["alert"] == {"incident": sla_incidents(world)[breach][2]}
    # the agent answers: the clock is fulfilled and its incident resolved
    call(
        cli,
        "support",
        "tickets",
        "reply",
        str(ok),
        "--as",
        "agent",
        "--body",
        "On it",
        "--now",
        "2026-03-02T10:45:00Z",
    )
    assert sla_incidents(world)[breach][:2] == ("critical", "resolved")


def test_a_breach_a_ticket_command_catches_on_an_urgent_ticket_is_an_incident_too(
    world: Database, cli, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ALERT_WEBHOOK_URL", "http://127.0.0.1:9/hook")  # never called here
    t = open_ticket(cli, "urgent")["id"]  # resolution: 240 calendar minutes, due 13:00
    call(
        cli,
        "support",
        "tickets",
        "reply",
        str(t),
        "--as",
        "agent",
        "--body",
        "Looking",
        "--now",
        "2026-03-02T09:10:00Z",
    )
    # put on hold at 13:20, before any sweep: the pause records the 13:00 breach itself
    call(cli, "support", "tickets", "status", str(t), "on_hold", "--now", "2026-03-02T13:20:00Z")
    breach = f"sla:{t}:resolution:1:breach"
    assert sla_incidents(world)[breach][:2] == ("critical", "open")
    # a late first reply on another urgent ticket: the breach is recorded and, the clock being
    # fulfilled by that very reply, its incident is resolved at once (nothing left to act on)
    late = open_ticket(cli, "urgent", now="2026-03-02T13:00:00Z")["id"]
    call(
        cli,
        "support",
        "tickets",
        "reply",
        str(late),
        "--as",
        "agent",
        "--body",
        "Sorry",
        "--now",
        "2026-03-02T13:45:00Z",
    )
    assert sla_incidents(world)[f"sla:{late}:first_response:1:breach"][:2] == (
        "critical",
        "resolved",
    )
    call(cli, "support", "tickets", "status", str(t), "solved", "--now", "2026-03-02T14:00:00Z")
    assert {status for _, status, _ in sla_incidents(world).values()} == {"resolved"}


def test_the_task_endpoint_runs_the_same_sweep(world: Database, cli, db_url: str) -> None:
    from receiver.app import create_app

    t = open_ticket(cli, "urgent")["id"]
    key = "k" * 32
    settings = Settings.from_env()
    settings = Settings(**{**settings.__dict__, "database_url": db_url, "integration_api_key": key})
    app = create_app(settings, db=world)
    with running(app) as url:
        headers = {"Authorization": f"Bearer {key}"}
        body: dict[str, Any] = {"dry_run": True, "now": "2026-03-02T09:40:00Z"}
        preview = httpx.post(url + "/tasks/support/sla", json=body, headers=headers)
        assert preview.status_code == 200, preview.text
        assert preview.json()["counts"] == {"sla_breach": 1}
        body["dry_run"] = False
        done = httpx.post(url + "/tasks/support/sla", json=body, headers=headers, timeout=60)
        assert done.json()["outcomes"] == {"applied": 1}
        again = httpx.post(url + "/tasks/support/sla", json=body, headers=headers, timeout=60)
        assert again.json()["counts"] == {}
        refused = httpx.post(url + "/tasks/support/sla", json=body)
        assert refused.status_code == 401
    assert [e[0] for e in events(world)] == [t]


def test_the_plan_reads_open_tickets_through_its_partial_indexes(world: Database) -> None:
    from faithflow_ops.jobs.sla_sweep import _T, _breach_due, _warning_due

    now = dt.datetime(2026, 3, 2, 9, 0, tzinfo=dt.UTC)
    with world.session() as s:
        dialect = s.get_bind().dialect
        for metric in ("first_response", "next_response", "resolution"):
            for where, index in (
                (_breach_due(metric, now), f"ix_support_tickets_sla_{metric}_due"),
                (_warning_due(metric, now), f"ix_support_tickets_sla_{metric}_warn"),
            ):
                sql = str(
                    select(_T.c.id)
                    .where(where)
                    .compile(dialect=dialect, compile_kwargs={"literal_binds": True})
                )
                if dialect.name == "postgresql":
                    s.execute(text("SET LOCAL enable_seqscan = off"))
                    plan = "\n".join(r[0] for r in s.execute(text("EXPLAIN " + sql)))
                else:
                    plan = "\n".join(
                        str(r[-1]) for r in s.execute(text("EXPLAIN QUERY PLAN " + sql))
                    )
                assert index in plan, plan


def test_a_batch_sends_one_digest_per_recipient_and_a_bad_address_does_not_stop_the_others(
    world: Database, cli
) -> None:
    from sqlalchemy import update

    from faithflow_ops.models import User

    mine = [open_ticket(cli, "urgent", assign="ada@faithflow.example")["id"] for _ in range(2)]
    queue = open_ticket(cli, "urgent")["id"]
    odd = open_ticket(cli, "urgent")["id"]
    with world.session() as s:  # a legacy agent row whose address the outbox refuses
        s.add(User(email="not-an-address", name="Legacy"))
        s.flush()
        legacy = s.scalars(select(User.id).filter_by(email="not-an-address")).one()
        s.execute(update(SupportTicket).where(SupportTicket.id == odd).values(assignee_id=legacy))
    out = sweep(cli, "2026-03-02T09:40:00Z")
    assert out["status"] == "succeeded" and out["outcomes"] == {"applied": 4}
    notify = notices(world)
    with world.read_session() as s:
        messages = {
            m.id: (m.recipient, m.idempotency_key, m.status, m.body)
            for m in s.scalars(select(OutboundMessage).filter_by(template="sla_digest"))
        }
    assert notify[odd]["to"] == "not-an-address" and "not an email address" in notify[odd]["error"]
    assert "message_id" not in notify[odd]
    assert len(messages) == 2  # Ada's two breaches in one e-mail, the queue's in another
    assert notify[mine[0]]["message_id"] == notify[mine[1]]["message_id"]
    for ticket, to in [(mine[0], "ada@"), (mine[1], "ada@"), (queue, "support@")]:
        recipient, key, status, body = messages[notify[ticket]["message_id"]]
        assert recipient.startswith(to) and notify[ticket]["to"] == recipient
        assert key.startswith("sla:digest:20260302T094000Z:") and f"- #{ticket} [urgent]" in body
        assert status == notify[ticket]["status"] == "queued"
    assert sweep(cli, "2026-03-02T09:40:00Z")["counts"] == {}
    assert len(digests(world)) == 2


def test_a_digest_is_keyed_by_the_marks_it_reports() -> None:
    from faithflow_ops.jobs.sla_sweep import _Claim, _digest

    now = dt.datetime(2026, 3, 2, 9, 40, tzinfo=dt.UTC)
    due = dt.datetime(2026, 3, 2, 9, 30, tzinfo=dt.UTC)

    def mark(ticket: int, kind: str = "sla_breach") -> _Claim:
        return _Claim(
            kind, "resolution", ticket, 1, "normal", "s", None, 1, None, due, "grace", None, -10
        )

    key = _digest("q@x.example", [mark(1), mark(2)], now).idempotency_key
    assert key == _digest("q@x.example", [mark(2), mark(1)], now).idempotency_key
    others = [
        _digest("q@x.example", [mark(1)], now),
        _digest("q@x.example", [mark(1), mark(3)], now),
        _digest("r@x.example", [mark(1), mark(2)], now),
        _digest("q@x.example", [mark(1), mark(2, "sla_warning")], now),
    ]
    assert key not in {m.idempotency_key for m in others}
    assert len(key) <= 255


def test_a_suppressed_agent_gets_a_suppressed_message_and_the_breach_is_recorded(
    world: Database, cli
) -> None:
    from faithflow_ops.comms.suppression import add_suppression

    t = open_ticket(cli, "urgent", assign="ada@faithflow.example")["id"]
    with world.session() as s:
        add_suppression(
            s,
            channel="email",
            contact="ada@faithflow.example",
            reason="bounce",
            now=dt.datetime(2026, 3, 2, 9, 0, tzinfo=dt.UTC),
        )
    sweep(cli, "2026-03-02T09:40:00Z")
    with world.read_session() as s:
        event = s.scalars(select(SlaEvent).filter_by(ticket_id=t)).one()
        message = s.get(OutboundMessage, event.data["notify"]["message_id"])
    assert event.data["notify"]["status"] == "suppressed"
    assert message is not None and message.status == "suppressed"


def test_a_digest_the_outbox_refuses_is_kept_in_its_events_and_the_rest_still_go_out(
    world: Database, cli, monkeypatch: pytest.MonkeyPatch
) -> None:
    from faithflow_ops.comms import templates
    from faithflow_ops.errors import UserError

    first = open_ticket(cli, "urgent", assign="ada@faithflow.example")["id"]
    second = open_ticket(cli, "urgent")["id"]  # to the queue: a digest of its own
    render = templates.render

    def refuse_second(name: str, channel: str, variables: dict[str, Any], **kw: Any) -> Any:
        if f"- #{second} " in variables.get("items", ""):
            raise UserError("template sla_digest.email.txt needs the variable 'x'")
        return render(name, channel, variables, **kw)

    monkeypatch.setattr(templates, "render", refuse_second)
    out = sweep(cli, "2026-03-02T09:40:00Z")
    assert out["status"] == "succeeded" and out["outcomes"] == {"applied": 2}
    notify = notices(world)
    assert [to for to, _, _ in digests(world)] == ["ada@faithflow.example"]
    assert notify[first]["status"] == "queued" and "message_id" in notify[first]
    assert "needs the variable 'x'" in notify[second]["error"]
    assert "message_id" not in notify[second]


def test_a_breach_that_happened_survives_a_policy_change_before_the_sweep_saw_it(
    world: Database, cli
) -> None:
    # urgent first response due 09:30; at 09:40, before any sweep, the target is relaxed to
    # 60 min and a note recomputes the clocks: the breach at 09:30 happened all the same
    t = open_ticket(cli, "urgent")["id"]
    call(
        cli,
        "sla",
        "policy",
        "set",
        "--metric",
        "first_response",
        "--priority",
        "urgent",
        "--target",
        "60m",
    )
    doc = call(
        cli,
        "support",
        "tickets",
        "note",
        str(t),
        "--body",
        "looking",
        "--now",
        "2026-03-02T09:40:00Z",
    )
    fr = doc["clocks"]["first_response"]
    assert fr["breached_at"] == "2026-03-02T09:30:00+00:00" and fr["state"] == "breached"
    assert events(world) == [(t, "first_response", 1, "breach", "2026-03-02T09:30:00+00:00")]
    # the same outcome whatever the sweep's cadence: a sweep now finds nothing more to mark
    assert sweep(cli, "2026-03-02T09:45:00Z")["actions"] == []
    assert len(events(world)) == 1


def test_a_note_on_an_overdue_clock_leaves_the_breach_to_the_sweep_which_notifies(
    world: Database, cli
) -> None:
    t = open_ticket(cli, "urgent")["id"]  # first response due 09:30
    doc = call(
        cli, "support", "tickets", "note", str(t), "--body", "x", "--now", "2026-03-02T09:40:00Z"
    )
    assert doc["clocks"]["first_response"]["breached_at"] is None
    out = sweep(cli, "2026-03-02T09:45:00Z")
    assert rows(out) == [("sla_breach", t, "first_response", -15)]
    assert events(world) == [(t, "first_response", 1, "breach", "2026-03-02T09:30:00+00:00")]
    ((to, subject, _),) = digests(world)
    assert to == "support@faithflow.example" and subject.startswith(f"[SLA breach] ticket #{t}:")


def test_breaches_open_and_limit_are_answered_in_sql(world: Database, cli) -> None:
    from sqlalchemy import event

    from faithflow_ops.support.views import breaches

    answered = open_ticket(cli, "urgent")["id"]  # first response due 09:30
    waiting = open_ticket(cli, "urgent", now="2026-03-02T09:05:00Z")["id"]  # due 09:35
    sweep(cli, "2026-03-02T09:40:00Z")
    call(
        cli,
        "support",
        "tickets",
        "reply",
        str(answered),
        "--as",
        "agent",
        "--body",
        "Sorry",
        "--now",
        "2026-03-02T09:45:00Z",
    )
    every = call(cli, "sla", "breaches")
    assert [(b["ticket_id"], b["open"]) for b in every] == [(waiting, True), (answered, False)]
    assert [b["ticket_id"] for b in call(cli, "sla", "breaches", "--open")] == [waiting]
    assert [b["ticket_id"] for b in call(cli, "sla", "breaches", "--limit", "1")] == [waiting]
    statements: list[str] = []

    def seen(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        statements.append(statement)

    event.listen(world.engine, "before_cursor_execute", seen)
    try:
        with world.read_session() as s:
            assert [r["ticket_id"] for r in breaches(s, open_only=True, limit=5)] == [waiting]
    finally:
        event.remove(world.engine, "before_cursor_execute", seen)
    (query,) = [q for q in statements if "sla_events" in q]
    assert "LIMIT" in query and "first_response_fulfilled_at IS NULL" in query


def test_lowering_an_urgent_ticket_resolves_its_sla_incidents(
    world: Database, cli, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PAGERDUTY_ROUTING_KEY", "r" * 32)  # PagerDuty alone is a hook too
    t = open_ticket(cli, "urgent")["id"]
    sweep(cli, "2026-03-02T09:40:00Z")  # first response breached at 09:30
    breach = f"sla:{t}:first_response:1:breach"
    assert sla_incidents(world)[breach][:2] == ("critical", "open")
    call(cli, "support", "tickets", "priority", str(t), "high", "--now", "2026-03-02T09:45:00Z")
    assert sla_incidents(world)[breach][:2] == ("critical", "resolved")


def test_without_an_escalation_hook_urgent_marks_open_no_incident(world: Database, cli) -> None:
    t = open_ticket(cli, "urgent")["id"]
    sweep(cli, "2026-03-02T09:40:00Z")  # the sweep's breach of the first response
    call(cli, "support", "tickets", "status", str(t), "on_hold", "--now", "2026-03-02T13:20:00Z")
    assert sla_incidents(world) == {}  # nobody to alert: the breaches are in `sla breaches`
    with world.read_session() as s:
        data = [e.data for e in s.scalars(select(SlaEvent).filter_by(kind="breach"))]
    assert len(data) == 2 and not any("alert" in d for d in data)
