"""`faithflow comms …` driven from the CLI alone, on SQLite and Postgres: send → dispatch →
list/show; retry, cancel, suppress; every bad input exits 2 with a one-line message."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from fakes.twilio import SID, TOKEN, TwilioFake, error
from helpers import said

from faithflow_ops.db import Database


@pytest.fixture
def twilio(monkeypatch: pytest.MonkeyPatch) -> Iterator[TwilioFake]:
    fake = TwilioFake()
    with fake.serve():
        for name, value in {
            "TWILIO_ACCOUNT_SID": SID,
            "TWILIO_AUTH_TOKEN": TOKEN,
            "TWILIO_FROM": "+15005550006",
            "TWILIO_WHATSAPP_FROM": "+14155238886",
            "TWILIO_API_BASE": fake.url,
        }.items():
            monkeypatch.setenv(name, value)
        yield fake


def send(cli: Any, *args: str) -> dict[str, Any]:
    result = cli("comms", "send", *args, "--json")
    assert result.exit_code == 0, result.stderr
    doc: dict[str, Any] = json.loads(result.stdout)
    return doc


def test_send_dispatch_list_show_from_the_cli(db: Database, cli: Any, twilio: TwilioFake) -> None:
    sent = send(
        cli,
        "--channel",
        "sms",
        "--to",
        "+234 801 234 5678",
        "--template",
        "notice",
        "--var",
        "subject=Hi",
        "--var",
        "message=Choir practice at 6pm",
        "--key",
        "k1",
    )
    assert sent == {"id": sent["id"], "status": "queued", "created": True}
    again = send(
        cli,
        "--channel",
        "sms",
        "--to",
        "+2348012345678",
        "--template",
        "notice",
        "--var",
        "subject=Hi",
        "--var",
        "message=other",
        "--key",
        "k1",
    )
    assert again == {"id": sent["id"], "status": "queued", "created": False}

    preview = cli("comms", "dispatch", "--dry-run", "--json")
    assert preview.exit_code == 0, preview.stderr
    assert json.loads(preview.stdout)["counts"] == {"send": 1}
    assert twilio.requests == []

    run = cli("comms", "dispatch", "--json")
    assert run.exit_code == 0, run.stderr
    doc = json.loads(run.stdout)
    assert (doc["job"], doc["status"], doc["outcomes"]) == (
        "communications_dispatch",
        "succeeded",
        {"applied": 1},
    )
    assert [r.form["Body"] for r in twilio.requests] == ["FaithFlow: Choir practice at 6pm"]

    listed = json.loads(cli("comms", "list", "--status", "sent", "--json").stdout)
    assert [(m["id"], m["channel"], m["recipient"], m["status"]) for m in listed] == [
        (sent["id"], "sms", "+2348012345678", "sent")
    ]
    assert json.loads(cli("comms", "list", "--channel", "email", "--json").stdout) == []

    shown = json.loads(cli("comms", "show", str(sent["id"]), "--json").stdout)
    assert shown["body"] == "FaithFlow: Choir practice at 6pm"
    assert shown["variables"] == {"subject": "Hi", "message": "Choir practice at 6pm"}
    assert shown["attempts"] == 1 and shown["provider_message_id"].startswith("SM")
    table = cli("comms", "show", str(sent["id"]))
    assert table.exit_code == 0 and "Choir practice at 6pm" in table.stdout


def test_a_tenant_message_uses_the_tenant(db: Database, cli: Any) -> None:
    added = cli("tenants", "add", "grace", "--name", "Grace Chapel")
    assert added.exit_code == 0, added.stderr
    sent = send(
        cli,
        "--channel",
        "email",
        "--to",
        "Pastor@Grace.example",
        "--template",
        "notice",
        "--tenant",
        "grace",
        "--var",
        "subject=Hello",
        "--var",
        "message=Welcome",
    )
    shown = json.loads(cli("comms", "show", str(sent["id"]), "--json").stdout)
    assert (shown["tenant"], shown["recipient"], shown["subject"]) == (
        "grace",
        "pastor@grace.example",
        "Hello",
    )
    assert shown["variables"]["tenant_name"] == "Grace Chapel"
    assert (
        json.loads(cli("comms", "list", "--tenant", "grace", "--json").stdout)[0]["id"]
        == (sent["id"])
    )


def test_cancel_then_retry(db: Database, cli: Any) -> None:
    sent = send(
        cli,
        "--channel",
        "sms",
        "--to",
        "+2348012345678",
        "--template",
        "notice",
        "--var",
        "subject=s",
        "--var",
        "message=m",
    )
    ident = str(sent["id"])
    canceled = cli("comms", "cancel", ident)
    assert canceled.exit_code == 0 and "queued → canceled" in said(canceled)
    again = cli("comms", "cancel", ident)
    assert again.exit_code == 2
    assert "is canceled; only queued or scheduled messages can be canceled" in said(again)
    retried = cli("comms", "retry", ident)
    assert retried.exit_code == 0 and "canceled → queued" in said(retried)
    twice = cli("comms", "retry", ident)
    assert twice.exit_code == 2 and "is queued; only failed, unknown, canceled" in said(twice)


def test_retry_of_a_scheduled_message_keeps_its_not_before(db: Database, cli: Any) -> None:
    # Canceled while it waited for its minute (quiet hours, a window): a retry must not send
    # it early.
    sent = send(
        cli,
        "--channel",
        "sms",
        "--to",
        "+2348012345678",
        "--template",
        "notice",
        "--var",
        "subject=s",
        "--var",
        "message=m",
        "--not-before",
        "2099-01-01T10:00:00Z",
    )
    ident = str(sent["id"])
    assert cli("comms", "cancel", ident).exit_code == 0
    retried = cli("comms", "retry", ident)
    assert retried.exit_code == 0
    assert "canceled → scheduled" in said(retried) and "2099-01-01T10:00:00+00:00" in said(retried)
    shown = json.loads(cli("comms", "show", ident, "--json").stdout)
    assert shown["status"] == "scheduled"
    assert shown["next_attempt_at"] == "2099-01-01T10:00:00+00:00"
    preview = json.loads(cli("comms", "dispatch", "--dry-run", "--json").stdout)
    assert preview["counts"] == {}


def test_a_sent_message_cannot_be_retried(db: Database, cli: Any, twilio: TwilioFake) -> None:
    sent = send(
        cli,
        "--channel",
        "sms",
        "--to",
        "+2348012345678",
        "--template",
        "notice",
        "--var",
        "subject=s",
        "--var",
        "message=m",
    )
    assert cli("comms", "dispatch").exit_code == 0
    result = cli("comms", "retry", str(sent["id"]))
    assert result.exit_code == 2
    assert "is sent; only failed, unknown, canceled messages can be retried" in said(result)
    assert "enqueue a new message" in said(result)


def test_a_failed_dispatch_exits_1_and_retry_requeues(
    db: Database, cli: Any, twilio: TwilioFake
) -> None:
    sent = send(
        cli,
        "--channel",
        "sms",
        "--to",
        "+2348012345678",
        "--template",
        "notice",
        "--var",
        "subject=s",
        "--var",
        "message=m",
    )
    twilio.script("+2348012345678", error(400, 21211, "The 'To' number is not valid"))
    run = cli("comms", "dispatch", "--json")
    assert run.exit_code == 1
    assert json.loads(run.stdout)["outcomes"] == {"failed": 1}
    assert cli("comms", "retry", str(sent["id"])).exit_code == 0
    assert cli("comms", "dispatch").exit_code == 0
    shown = json.loads(cli("comms", "show", str(sent["id"]), "--json").stdout)
    assert shown["status"] == "sent"


def test_suppress_add_list_remove(db: Database, cli: Any) -> None:
    added = cli(
        "comms",
        "suppress",
        "add",
        "+234 801 234 5678",
        "--channel",
        "sms",
        "--reason",
        "stop",
        "--note",
        "replied STOP by hand",
        "--until",
        "2099-01-01",
    )
    assert added.exit_code == 0, added.stderr
    assert "+2348012345678 suppressed on sms (stop)" in said(added)
    assert "already suppressed" in said(
        cli("comms", "suppress", "add", "+2348012345678", "--channel", "sms", "--reason", "stop")
    )
    listed = json.loads(cli("comms", "suppress", "list", "--json").stdout)
    assert [(s["contact"], s["channel"], s["reason"], s["note"]) for s in listed] == [
        ("+2348012345678", "sms", "stop", "replied STOP by hand")
    ]
    sent = send(
        cli,
        "--channel",
        "sms",
        "--to",
        "+2348012345678",
        "--template",
        "notice",
        "--var",
        "subject=s",
        "--var",
        "message=m",
    )
    assert sent["status"] == "suppressed"
    removed = cli("comms", "suppress", "remove", "+2348012345678", "--channel", "sms")
    assert removed.exit_code == 0
    assert json.loads(cli("comms", "suppress", "list", "--json").stdout) == []
    gone = cli("comms", "suppress", "remove", "+2348012345678", "--channel", "sms")
    assert gone.exit_code == 2 and "is not on the sms suppression list" in said(gone)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("comms", "show", "999"), "no outbox message 999"),
        (("comms", "retry", "999"), "no outbox message 999"),
        (("comms", "cancel", "999"), "no outbox message 999"),
        (("comms", "list", "--status", "lost"), "--status 'lost' is not one of"),
        (("comms", "list", "--channel", "fax"), "--channel 'fax' is not one of"),
        (("comms", "list", "--tenant", "nobody"), "no tenant with slug 'nobody'"),
        (
            ("comms", "send", "--channel", "fax", "--to", "x", "--template", "notice"),
            "--channel 'fax' is not one of: email, sms, whatsapp",
        ),
        (
            (
                "comms",
                "send",
                "--channel",
                "sms",
                "--to",
                "0801",
                "--template",
                "notice",
                "--var",
                "subject=s",
                "--var",
                "message=m",
            ),
            "'0801' is not a phone number in international form",
        ),
        (
            (
                "comms",
                "send",
                "--channel",
                "email",
                "--to",
                "not-an-address",
                "--template",
                "notice",
                "--var",
                "subject=s",
                "--var",
                "message=m",
            ),
            "'not-an-address' is not an email address",
        ),
        (
            ("comms", "send", "--channel", "sms", "--to", "+2348012345678", "--template", "nope"),
            "template 'nope' has no sms version",
        ),
        (
            ("comms", "send", "--channel", "sms", "--to", "+2348012345678", "--template", "notice"),
            "needs the variable 'message'",
        ),
        (
            (
                "comms",
                "send",
                "--channel",
                "sms",
                "--to",
                "+2348012345678",
                "--template",
                "notice",
                "--var",
                "novalue",
            ),
            "--var 'novalue' is not key=value",
        ),
        (
            (
                "comms",
                "send",
                "--channel",
                "sms",
                "--to",
                "+2348012345678",
                "--template",
                "notice",
                "--tenant",
                "nobody",
                "--var",
                "message=m",
            ),
            "no tenant with slug 'nobody'",
        ),
        (
            ("comms", "suppress", "add", "x@y.example", "--channel", "email", "--reason", "bored"),
            "--reason 'bored' is not one of: bounce, complaint, unsubscribe, stop",
        ),
        (
            ("comms", "suppress", "add", "x@y.example", "--channel", "fax", "--reason", "bounce"),
            "--channel 'fax' is not one of",
        ),
        (
            ("comms", "suppress", "add", "nope", "--channel", "email", "--reason", "bounce"),
            "'nope' is not an email address",
        ),
        (
            (
                "comms",
                "suppress",
                "add",
                "x@y.example",
                "--channel",
                "email",
                "--reason",
                "bounce",
                "--until",
                "someday",
            ),
            "--until 'someday' is not a date",
        ),
        (
            (
                "comms",
                "suppress",
                "add",
                "x@y.example",
                "--channel",
                "email",
                "--reason",
                "bounce",
                "--until",
                "2001-01-01",
            ),
            "--until 2001-01-01T00:00:00+00:00 is in the past",
        ),
        (("comms", "show", "99999999999999999999"), "no outbox message 99999999999999999999"),
        (("comms", "retry", "4294967296"), "no outbox message 4294967296"),
        (("comms", "list", "--limit", "99999999999999999999"), "--limit"),
        (
            (
                "comms",
                "send",
                "--channel",
                "sms",
                "--to",
                "+2348012345678",
                "--template",
                "notice",
                "--var",
                "message=m",
                "--not-before",
                "soon",
            ),
            "--not-before 'soon' is not an ISO-8601 time",
        ),
        (
            (
                "comms",
                "send",
                "--channel",
                "sms",
                "--to",
                "+2348012345678",
                "--template",
                "notice",
                "--var",
                "message=m",
                "--key",
                "k" * 256,
            ),
            "idempotency key is 256 characters; at most 255",
        ),
        (
            (
                "comms",
                "send",
                "--channel",
                "email",
                "--to",
                "t@church.org",
                "--template",
                "notice",
                "--var",
                "subject=" + "s" * 501,
                "--var",
                "message=m",
            ),
            "the subject is 501 characters; at most 500",
        ),
    ],
)
def test_bad_input_exits_2_with_a_clear_message(
    db: Database, cli: Any, args: tuple[str, ...], message: str
) -> None:
    result = cli(*args)
    assert result.exit_code == 2, result.stdout
    assert message in said(result)
    assert "Traceback" not in result.stderr
    assert json.loads(cli("comms", "list", "--json").stdout) == []  # nothing half-written


def test_dispatch_without_twilio_settings_names_the_variable(db: Database, cli: Any) -> None:
    send(
        cli,
        "--channel",
        "sms",
        "--to",
        "+2348012345678",
        "--template",
        "notice",
        "--var",
        "subject=s",
        "--var",
        "message=m",
    )
    run = cli("comms", "dispatch", "--json")
    assert run.exit_code == 1
    [action] = json.loads(run.stdout)["actions"]
    assert "TWILIO_ACCOUNT_SID is not set" in action["error"]
    listed = json.loads(cli("comms", "list", "--json").stdout)
    assert listed[0]["status"] == "queued"


def test_templates_lists_the_package_templates(cli: Any) -> None:
    docs = json.loads(cli("comms", "templates", "--json").stdout)
    assert {
        "name": "notice",
        "channels": ["email", "sms", "whatsapp"],
        "whatsapp_approved": [],  # no TWILIO_CONTENT_SIDS: WhatsApp would go by SMS
        "sms_name_room": 133,  # 160 - len("FaithFlow: ") - a 16-character $message
    } in docs
