"""The dunning ladder (policy file), tenant preferences and the dunning templates, through the
library and the CLI, on SQLite and Postgres."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import pytest
import typer
from helpers import said
from sqlalchemy import event, select, update

from faithflow_ops.comms import templates
from faithflow_ops.db import Database
from faithflow_ops.dunning.policy import (
    DEFAULT_POLICY,
    PolicyError,
    Step,
    current_policy,
    parse_policy,
    save_policy,
    to_toml,
)
from faithflow_ops.dunning.prefs import preferences_for, save_preferences
from faithflow_ops.dunning.windows import DEFAULT_QUIET_HOURS, parse_window
from faithflow_ops.errors import UserError
from faithflow_ops.models import AuditLog, DunningPreference, Tenant
from faithflow_ops.tenancy.tenants import add_tenant

UTC = dt.UTC
NOW = dt.datetime(2026, 11, 25, 12, 0, tzinfo=UTC)


@pytest.fixture
def run():
    """`faithflow dunning policy|prefs|analytics` mounted the way cli/dunning.py mounts them."""
    from typer.testing import CliRunner

    from faithflow_ops.cli import _Group
    from faithflow_ops.cli import dunning_settings as ds

    root = typer.Typer(cls=_Group, rich_markup_mode=None)
    dunning = typer.Typer(rich_markup_mode=None)
    dunning.add_typer(ds.policy_app, name="policy")
    dunning.add_typer(ds.prefs_app, name="prefs")
    dunning.command("analytics")(ds.analytics)
    root.add_typer(dunning, name="dunning")

    @root.callback()
    def _root() -> None:
        """test root"""

    runner = CliRunner()

    def invoke(*args: str) -> Any:
        return runner.invoke(root, ["dunning", *args], catch_exceptions=False)

    return invoke


def tenant(db: Database, slug: str = "grace-lagos", **kw: Any) -> int:
    fields: dict[str, Any] = {
        "name": "Grace Assembly Lagos",
        "timezone": "Africa/Lagos",
        "currency": "NGN",
        "email": "Finance@Grace.example",
        "phone": "+234 803 123 4567",
    } | kw
    with db.session() as s:
        return add_tenant(s, slug=slug, actor="test", **fields).id


# --- the policy file ------------------------------------------------------------------------

VALID = """\
# our ladder
[[step]]
key = "first"
day = 0
channels = ["email"]
template = "dunning_payment_failed"

[[step]]
key = "half-day"
hours = 12
channels = ["sms", "whatsapp"]
template = "dunning_reminder"
retry_payment = true

[[step]]
key = "late"
day = 2
hours = 6
channels = ["email", "sms"]
template = "dunning_final_notice"

[[step]]
key = "hand-over"
day = 9
handover = true
"""


def test_a_valid_file_becomes_a_ladder_sorted_by_offset() -> None:
    policy = parse_policy(VALID)
    assert [s.key for s in policy.steps] == ["first", "half-day", "late", "hand-over"]
    assert policy.steps[1] == Step(
        "half-day", dt.timedelta(hours=12), ("sms", "whatsapp"), "dunning_reminder", True
    )
    assert policy.steps[2].offset == dt.timedelta(days=2, hours=6)
    assert policy.steps[2].when() == "day 2 + 6 h" and policy.steps[1].when() == "12 h"
    assert policy.steps[3].handover and policy.steps[3].channels == ()


def test_steps_out_of_order_in_the_file_are_sorted() -> None:
    text = VALID.replace('key = "first"\nday = 0', 'key = "first"\nday = 1')
    assert [s.key for s in parse_policy(text).steps] == ["half-day", "first", "late", "hand-over"]


def test_the_default_ladder_matches_the_issue_and_round_trips() -> None:
    steps = {s.key: s for s in DEFAULT_POLICY.steps}
    assert [s.offset.days for s in DEFAULT_POLICY.steps] == [0, 3, 5, 7, 10, 14]
    assert steps["day0"].channels == ("email",) and not steps["day0"].retry_payment
    assert steps["day3"].channels == ("email",) and steps["day3"].retry_payment
    assert steps["day5"].channels == ("sms",)
    assert steps["day7"].channels == ("whatsapp",) and steps["day7"].retry_payment
    assert steps["day10"].channels == ("email", "sms")
    assert steps["day10"].template == "dunning_final_notice"
    assert steps["day14"].handover and steps["day14"].channels == ()
    assert parse_policy(to_toml(DEFAULT_POLICY)) == DEFAULT_POLICY
    custom = parse_policy(VALID)
    assert parse_policy(to_toml(custom)) == custom


def _bad(body: str) -> str:
    with pytest.raises(PolicyError) as caught:
        parse_policy(body)
    return str(caught.value)


STEP = '[[step]]\nkey = "{key}"\nday = {day}\nchannels = ["email"]\ntemplate = "dunning_reminder"\n'


@pytest.mark.parametrize(
    ("body", "line", "reason"),
    [
        ('[[step]]\nkey = "a"\nday = \n', 3, "not valid TOML"),
        ('[[step]]\nkey = "a"\nday = 1\nchanels = ["email"]\n', 4, "unknown key 'chanels'"),
        ('ladder = "x"\n' + STEP.format(key="a", day=1), 1, "unknown setting 'ladder'"),
        ("# nothing here\n", 1, "no steps"),
        ('[[step]]\nday = 1\nchannels = ["email"]\ntemplate = "dunning_reminder"\n', 1, "no key"),
        ('[[step]]\nkey = "Day 1"\nday = 1\nhandover = true\n', 2, "lower-case"),
        ('[[step]]\nkey = "a"\nday = "3"\nhandover = true\n', 3, "day is text, not a whole"),
        ('[[step]]\nkey = "a"\nday = 1.5\nhandover = true\n', 3, "day is a decimal number"),
        ('[[step]]\nkey = "a"\nday = true\nhandover = true\n', 3, "day is true/false"),
        ('[[step]]\nkey = "a"\nday = -2\nhandover = true\n', 3, "negative"),
        ('[[step]]\nkey = "a"\nhandover = true\n', 1, "no offset"),
        ('[[step]]\nkey = "a"\nday = 400\nhandover = true\n', 3, "within 365 days"),
        (STEP.format(key="a", day=1) + "\n" + STEP.format(key="a", day=2), 8, "defined twice"),
        (STEP.format(key="a", day=1) + "\n" + STEP.format(key="b", day=1), 7, "same offset"),
        (
            '[[step]]\nkey = "a"\nday = 1\nchannels = ["email", "fax"]\n'
            'template = "dunning_reminder"\n',
            4,
            "channel 'fax' is not one of",
        ),
        (
            '[[step]]\nkey = "a"\nday = 1\nchannels = "email"\ntemplate = "dunning_reminder"\n',
            4,
            "channels is text, not a list",
        ),
        ('[[step]]\nkey = "a"\nday = 1\nchannels = ["email"]\n', 1, "has no template"),
        (
            '[[step]]\nkey = "a"\nday = 1\nchannels = ["email"]\ntemplate = "welcome_pack"\n',
            5,
            "no template 'welcome_pack'",
        ),
        ('[[step]]\nkey = "a"\nday = 1\ntemplate = "dunning_reminder"\n', 4, "no channels"),
        ('[[step]]\nkey = "a"\nday = 1\n', 1, "does nothing"),
        ('[[step]]\nkey = "a"\nday = 1\nretry_payment = "yes"\n', 4, "not true or false"),
        (
            '[[step]]\nkey = "end"\nday = 5\nhandover = true\n\n' + STEP.format(key="b", day=9),
            1,
            "is not the last step",
        ),
        (
            '[[step]]\nkey = "a"\nday = 5\nhandover = true\n\n[[step]]\nkey = "b"\nday = 9\n'
            "handover = true\n",
            6,
            "second handover",
        ),
        ("step = 3\n", 1, "must be [[step]] tables"),
    ],
)
def test_each_invalid_file_is_refused_with_its_line_and_reason(
    body: str, line: int, reason: str
) -> None:
    message = _bad(body)
    assert message.startswith(f"policy.toml line {line}: "), message
    assert reason in message, message


def test_a_template_missing_a_channel_names_the_file_to_add(monkeypatch) -> None:
    monkeypatch.setattr(templates, "available", lambda name: ("email",))
    message = _bad(
        '[[step]]\nkey = "a"\nday = 1\nchannels = ["email", "sms"]\ntemplate = "dunning_reminder"\n'
    )
    assert message.startswith("policy.toml line 4: ")
    assert "has no sms version" in message
    assert "faithflow_ops/comms/templates/dunning_reminder.sms.txt" in message


def test_the_policy_is_stored_read_back_reset_and_audited(db: Database) -> None:
    with db.read_session() as s:
        assert current_policy(s) == DEFAULT_POLICY
    custom = parse_policy(VALID)
    with db.session() as s:
        assert save_policy(s, custom, source=VALID, actor="test:ops") is True
    with db.session() as s:
        assert current_policy(s) == custom
        assert save_policy(s, custom, source=VALID, actor="test:ops") is False
    with db.read_session() as s:
        actions = [a.action for a in s.scalars(select(AuditLog).order_by(AuditLog.id))]
    assert actions == ["dunning.policy.set"]


# --- policy CLI -----------------------------------------------------------------------------


def test_policy_show_prints_the_default_ladder(run, db: Database) -> None:
    result = run("policy", "show")
    assert result.exit_code == 0, result.stderr
    for text in ("day0", "day 3", "dunning_final_notice", "email, sms"):
        assert text in result.stdout
    assert "built-in default" in said(result)
    doc = json.loads(run("policy", "show", "--json").stdout)
    assert doc["stored"] is False
    assert [s["key"] for s in doc["steps"]] == ["day0", "day3", "day5", "day7", "day10", "day14"]
    assert doc["steps"][1] == {
        "key": "day3",
        "offset_hours": 72,
        "day": 3,
        "channels": ["email"],
        "template": "dunning_reminder",
        "retry_payment": True,
        "handover": False,
    }
    toml = run("policy", "show", "--toml").stdout
    assert parse_policy(toml) == DEFAULT_POLICY


def test_policy_set_dry_run_saves_nothing_and_set_saves(run, db: Database, tmp_path: Path) -> None:
    path = tmp_path / "policy.toml"
    path.write_text(VALID)
    result = run("policy", "set", "--file", str(path), "--dry-run")
    assert result.exit_code == 0, result.stderr
    assert "half-day" in result.stdout and "nothing saved" in said(result)
    assert json.loads(run("policy", "show", "--json").stdout)["stored"] is False

    result = run("policy", "set", "--file", str(path))
    assert result.exit_code == 0, result.stderr
    assert "dunning ladder set" in said(result)
    doc = json.loads(run("policy", "show", "--json").stdout)
    assert doc["stored"] is True and doc["updated_by"].startswith("cli:")
    assert [s["key"] for s in doc["steps"]] == ["first", "half-day", "late", "hand-over"]
    assert run("policy", "show", "--toml").stdout == VALID  # the file as written, comments too

    again = run("policy", "set", "--file", str(path))
    assert "already in force" in said(again)
    reset = run("policy", "reset")
    assert reset.exit_code == 0 and "reset to the default" in said(reset)
    assert json.loads(run("policy", "show", "--json").stdout)["stored"] is False
    with db.read_session() as s:
        actions = [a.action for a in s.scalars(select(AuditLog).order_by(AuditLog.id))]
    assert actions == ["dunning.policy.set", "dunning.policy.reset"]


def test_policy_set_refuses_an_invalid_file_with_its_line(
    run, db: Database, tmp_path: Path
) -> None:
    path = tmp_path / "policy.toml"
    path.write_text(VALID.replace('channels = ["sms", "whatsapp"]', 'channels = ["sms", "pager"]'))
    result = run("policy", "set", "--file", str(path))
    assert result.exit_code == 2
    assert f"{path} line 11: step 'half-day': channel 'pager' is not one of" in said(result)
    assert "Traceback" not in result.stderr
    assert json.loads(run("policy", "show", "--json").stdout)["stored"] is False
    missing = run("policy", "set", "--file", str(tmp_path / "nope.toml"))
    assert missing.exit_code == 2 and "no policy file" in said(missing)


def test_policy_set_refuses_a_final_notice_after_the_suspension_day(
    run, db: Database, tmp_path: Path
) -> None:
    tid = tenant(db, slug="short-grace")
    with db.session() as s:
        s.execute(update(Tenant).where(Tenant.id == tid).values(billing_grace_days=7))
    path = tmp_path / "policy.toml"
    path.write_text(to_toml(DEFAULT_POLICY))  # final notice on day 10
    for args in (("--dry-run",), ()):
        result = run("policy", "set", "--file", str(path), *args)
        assert result.exit_code == 2
        assert (
            "the final notice 'day10' (day 10) falls after the suspension day: tenant "
            "short-grace (billing grace) suspends after 7 days past due; move the final notice "
            "to day 7 or earlier, or lengthen that grace"
        ) in said(result)
        assert "Traceback" not in result.stderr
    assert json.loads(run("policy", "show", "--json").stdout)["stored"] is False
    path.write_text(to_toml(DEFAULT_POLICY).replace("day = 10", "day = 6"))
    assert run("policy", "set", "--file", str(path)).exit_code == 0


# --- preferences ----------------------------------------------------------------------------


def test_defaults_come_from_the_tenant_when_nothing_is_stored(db: Database) -> None:
    tid = tenant(db)
    with db.read_session() as s:
        prefs = preferences_for(s, [tid, 999_999])[tid]
    assert set(preferences_for.__annotations__) >= {"return"}
    assert prefs.timezone == "Africa/Lagos"
    assert prefs.channels == frozenset({"email", "sms", "whatsapp"})
    assert prefs.email == "finance@grace.example"
    assert prefs.phone == "+2348031234567"
    # WhatsApp needs an opt-in for its number: never the phone by default (issue 21)
    assert prefs.whatsapp is None and prefs.blocked("whatsapp") is not None
    assert prefs.quiet_hours == DEFAULT_QUIET_HOURS
    assert prefs.blocked("email") is None and prefs.contact("sms") == "+2348031234567"
    assert not prefs.sms_opt_out and prefs.paused_until is None and not prefs.paused(NOW)


def test_blocked_says_why_a_channel_is_not_used(db: Database) -> None:
    tid = tenant(db, phone=None)
    with db.session() as s:
        save_preferences(s, "grace-lagos", actor="test", channels=["email", "sms"], now=NOW)
    with db.read_session() as s:
        prefs = preferences_for(s, [tid])[tid]
    assert prefs.blocked("sms") == "no phone number"
    assert prefs.blocked("whatsapp") == "channel not allowed by the tenant"
    with db.session() as s:
        prefs = save_preferences(
            s, "grace-lagos", actor="test", phone="+2348030000000", sms_opt_out=True, now=NOW
        )
    assert prefs.blocked("sms") == "sms opted out"
    assert prefs.blocked("email") is None


def test_preferences_for_reads_many_tenants_in_two_queries(db: Database) -> None:
    ids = []
    with db.session() as s:
        for i in range(30):
            ids.append(add_tenant(s, slug=f"church-{i:03d}", name=f"Church {i}", actor="t").id)
    for slug in ("church-001", "church-002"):
        with db.session() as s:
            save_preferences(s, slug, actor="t", channels=["email"], now=NOW)
    statements: list[str] = []

    def count(*args: Any) -> None:
        statements.append(args[2])

    event.listen(db.engine, "before_cursor_execute", count)
    try:
        with db.read_session() as s:
            found = preferences_for(s, ids)
    finally:
        event.remove(db.engine, "before_cursor_execute", count)
    assert len(found) == 30
    assert len([q for q in statements if q.lstrip().upper().startswith("SELECT")]) == 2
    assert found[ids[1]].channels == frozenset({"email"})
    assert found[ids[0]].channels == frozenset({"email", "sms", "whatsapp"})


def test_prefs_set_and_show_through_the_cli(run, db: Database) -> None:
    tenant(db)
    result = run(
        "prefs", "set", "--tenant", "grace-lagos", "--channels", "email,sms",
        "--email", "Treasurer@Grace.example", "--whatsapp", "+234 802 000 0000",
        "--quiet", "daily 21:30-07:30", "--quiet", "sun 06:00-13:00", "--sms-opt-out",
        "--pause-until", "2026-12-01", "--note", "treasurer promised payment on the 1st",
        "--now", NOW.isoformat(), "--json",
    )  # fmt: skip
    assert result.exit_code == 0, result.stderr
    doc = json.loads(result.stdout)
    assert doc["channels"] == ["email", "sms"]
    assert doc["contacts"] == {
        "email": "treasurer@grace.example",
        "sms": "+2348031234567",
        "whatsapp": "+2348020000000",
    }
    assert [w["text"] for w in doc["quiet_hours"]] == ["daily 21:30-07:30", "sun 06:00-13:00"]
    assert doc["quiet_hours_default"] is False
    assert doc["blocked"] == {
        "email": None,
        "sms": "sms opted out",
        "whatsapp": "channel not allowed by the tenant",
    }
    # a date pauses until 00:00 that day in the tenant's zone (Lagos, UTC+1)
    assert doc["paused_until"] == "2026-11-30T23:00:00+00:00"
    assert doc["pause_note"] == "treasurer promised payment on the 1st" and doc["paused"] is True

    shown = run("prefs", "show", "--tenant", "grace-lagos", "--json", "--now", NOW.isoformat())
    assert json.loads(shown.stdout) == doc
    table = run("prefs", "show", "--tenant", "grace-lagos", "--now", NOW.isoformat())
    assert "blocked: sms opted out" in table.stdout and "sun 06:00-13:00" in table.stdout

    back = run(
        "prefs", "set", "--tenant", "grace-lagos", "--quiet-default", "--sms-opt-in", "--resume",
        "--channels", "email,sms,whatsapp", "--email", "", "--json",
    )  # fmt: skip
    assert back.exit_code == 0, back.stderr
    doc = json.loads(back.stdout)
    assert doc["quiet_hours_default"] is True and doc["paused_until"] is None
    assert doc["pause_note"] is None and doc["sms_opt_out"] is False
    assert doc["contacts"]["email"] == "finance@grace.example"  # override cleared
    with db.read_session() as s:
        audits = list(
            s.scalars(
                select(AuditLog)
                .where(AuditLog.action == "dunning.prefs.set")
                .order_by(AuditLog.id)  # the order written: the heap returns rows in any order
            )
        )
        row = s.scalar(select(DunningPreference))
    assert len(audits) == 2
    assert audits[0].after is not None and audits[0].after["sms_opt_out"] is True
    assert row is not None and row.quiet_hours is None and row.updated_by.startswith("cli:")


def test_prefs_quiet_none_turns_quiet_hours_off(run, db: Database) -> None:
    tenant(db)
    result = run("prefs", "set", "--tenant", "grace-lagos", "--quiet", "none", "--json")
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["quiet_hours"] == []


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--channels", "email,fax"), "channel 'fax' is not one of: email, sms, whatsapp"),
        (("--channels", ","), "allow at least one channel"),
        (("--email", "not-an-address"), "is not an email address"),
        (("--phone", "0803 123"), "not a phone number in international form"),
        (("--quiet", "sunday morning"), "are not 'DAYS HH:MM-HH:MM'"),
        (("--quiet", "funday 06:00-14:00"), "'funday' is not a day"),
        (("--quiet", "sun 25:00-14:00"), "is not HH:MM"),
        (("--quiet", "daily 00:00-00:00"), "quiet hours cover the whole week"),
        (("--quiet", "sun 06:00-14:00", "--quiet-default"), "not both"),
        (("--pause-until", "2026-12-01"), "say why dunning is paused with --note"),
        (("--pause-until", "next week", "--note", "x"), "is not a date"),
        (("--pause-until", "2026-01-01", "--note", "x"), "is not in the future"),
        (("--pause-until", "9999-12-31", "--note", "x"), "more than a year away"),
        (("--pause-until", "2026-12-01", "--note", "x", "--resume"), "not both"),
        (("--note", "x"), "--note goes with --pause-until"),
        ((), "nothing to change"),
    ],
)
def test_prefs_set_refuses_bad_input_and_changes_nothing(
    run, db: Database, args: tuple[str, ...], message: str
) -> None:
    tenant(db)
    result = run("prefs", "set", "--tenant", "grace-lagos", "--now", NOW.isoformat(), *args)
    assert result.exit_code == 2, result.stdout
    assert message in said(result)
    with db.read_session() as s:
        assert s.scalar(select(DunningPreference)) is None
        assert s.scalar(select(AuditLog).where(AuditLog.action == "dunning.prefs.set")) is None


def test_prefs_of_an_unknown_tenant_is_a_clear_error(run, db: Database) -> None:
    for args in (("show",), ("set", "--sms-opt-out")):
        result = run("prefs", *args, "--tenant", "nobody")
        assert result.exit_code == 2 and "no tenant with slug 'nobody'" in said(result)


def test_saving_the_same_preferences_again_changes_nothing(db: Database) -> None:
    tenant(db)
    for _ in range(2):
        with db.session() as s:
            save_preferences(s, "grace-lagos", actor="t", sms_opt_out=True, now=NOW)
    with db.read_session() as s:
        audits = s.scalars(select(AuditLog).where(AuditLog.action == "dunning.prefs.set")).all()
    assert len(audits) == 1


def test_quiet_window_specs() -> None:
    assert parse_window("mon-fri 22:00-07:00").days == frozenset(range(5))
    assert parse_window("fri-mon 22:00-07:00").days == frozenset({4, 5, 6, 0})
    assert parse_window("Sat,Sunday 13:00-15:00").days == frozenset({5, 6})
    assert parse_window("weekends 13:00-15:00").describe() == "sat-sun 13:00-15:00"
    assert parse_window("daily 21:00-08:00").describe() == "daily 21:00-08:00"
    assert parse_window("mon,wed,thu 9:05-10:00").describe() == "mon,wed-thu 09:05-10:00"
    with pytest.raises(UserError):
        parse_window("mon 10:60-11:00")


# --- templates ------------------------------------------------------------------------------

LONG_NAME = "Redeemed Christian Church of God Victory"  # 40 characters
VARIABLES = {
    "tenant_name": LONG_NAME,
    "amount_minor": 150_000_000,
    "currency": "NGN",
    "invoice_number": "",
    "days_past_due": 10,
    "pay_url": "",
    "suspend_at": "2026-09-24T09:00:00Z",
}


@pytest.mark.parametrize(
    "name", ["dunning_payment_failed", "dunning_reminder", "dunning_final_notice"]
)
@pytest.mark.parametrize("locale", ["en", "en_NG", "en_GH", "en_KE", "pt_BR", "es", "de"])
def test_every_dunning_template_renders_and_sms_fit_one_segment(name: str, locale: str) -> None:
    assert templates.available(name) == ("email", "sms", "whatsapp")
    for channel in ("email", "sms", "whatsapp"):
        rendered = templates.render(
            name, channel, VARIABLES, locale=locale, timezone="Africa/Lagos"
        )
        assert LONG_NAME in rendered.body
        assert "$" not in rendered.body  # every placeholder filled
        if channel == "email":
            assert rendered.subject and LONG_NAME in rendered.subject
        if channel == "sms":
            assert templates.sms_segments(rendered.body) == 1, (len(rendered.body), rendered.body)
            assert "NGN 1" in rendered.body


def test_dunning_templates_carry_the_pay_link_when_there_is_one() -> None:
    url = "https://invoice.stripe.com/i/acct_1/test_YWNjdF8x"
    for name in ("dunning_payment_failed", "dunning_reminder", "dunning_final_notice"):
        for channel in ("email", "whatsapp"):
            body = templates.render(name, channel, VARIABLES | {"pay_url": url}).body
            assert url in body
    final = templates.render("dunning_final_notice", "email", VARIABLES, locale="en_NG")
    assert final.subject is not None and "24 Sept 2026" in final.subject
