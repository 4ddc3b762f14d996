"""`faithflow dunning policy|prefs|analytics`: the ladder, each tenant's preferences, and what
the ladder achieved. Mounted on `faithflow dunning` by cli/dunning.py."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from faithflow_ops.cli import output
from faithflow_ops.cli.common import JsonOpt, actor, database, parse_now
from faithflow_ops.clock import parse_since
from faithflow_ops.errors import UserError

if TYPE_CHECKING:
    from faithflow_ops.dunning.policy import Policy

policy_app = typer.Typer(
    rich_markup_mode=None,
    help="The dunning ladder: show it, set it from a TOML file, reset it to the default.",
    no_args_is_help=True,
)
prefs_app = typer.Typer(
    rich_markup_mode=None,
    help="A tenant's dunning preferences: channels, contacts, quiet hours, opt-outs, pause.",
    no_args_is_help=True,
)

TenantOpt = Annotated[str, typer.Option("--tenant", help="The tenant's slug, e.g. grace-lagos.")]


# --- policy ---------------------------------------------------------------------------------


def _ladder(policy: Policy, title: str) -> None:
    output.table(
        ["step", "when", "channels", "template", "payment retry", "handover"],
        [
            [
                s.key,
                s.when(),
                ", ".join(s.channels) or "—",
                s.template,
                s.retry_payment,
                s.handover,
            ]
            for s in policy.steps
        ],
        title=title,
    )


@policy_app.command("show")
def policy_show(
    as_json: JsonOpt = False,
    as_toml: Annotated[
        bool,
        typer.Option("--toml", help="Print the ladder as a policy file (edit it, then `set`)."),
    ] = False,
) -> None:
    """The ladder in force: each step's time after the payment failed, channels, template,
    payment retry and hand-over to suspension."""
    from faithflow_ops.dunning.policy import current_policy, policy_doc, stored_source, to_toml

    if as_json and as_toml:
        raise UserError("choose one of --json and --toml")
    with database().read_session() as session:
        doc = policy_doc(session)
        policy = current_policy(session)
        source = stored_source(session)
    if as_json:
        output.print_json(doc)
        return
    if as_toml:
        text = source or to_toml(policy)
        typer.echo(text, nl=not text.endswith("\n"))
        return
    _ladder(policy, "dunning ladder")
    if doc["stored"]:
        output.info(f"set by {doc['updated_by']} at {output.fmt(doc['updated_at'])}")
    else:
        output.info("the built-in default ladder (no policy stored)")


@policy_app.command("set")
def policy_set(
    file: Annotated[
        str, typer.Option("--file", help="The policy file (TOML); see docs/dunning.md.")
    ],
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Check the file and show the ladder; save nothing.")
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """Replace the ladder with the one in a TOML file. An invalid file is refused with its
    line and the reason, as is a ladder whose final notice falls after the suspension day (the
    shortest grace in force); nothing is saved."""
    from faithflow_ops.billing.automation_plan import shortest_grace
    from faithflow_ops.dunning.policy import check_final_notice, parse_policy, save_policy

    path = Path(file)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UserError(
            f"no policy file {file!r}; write one with "
            "faithflow dunning policy show --toml > policy.toml"
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"cannot read {file!r} ({exc}); give a readable UTF-8 TOML file") from None
    policy = parse_policy(text, filename=file)
    with database().read_session() as session:
        check_final_notice(policy, shortest_grace(session))
    changed = False
    if not dry_run:
        with database().session() as session:
            changed = save_policy(session, policy, source=text, actor=actor())
    if as_json:
        output.print_json({"dry_run": dry_run, "changed": changed, **policy.to_dict()})
    else:
        _ladder(policy, "new dunning ladder" if not dry_run else "dunning ladder in " + file)
    if dry_run:
        output.info(f"dry run: {file} is valid ({len(policy.steps)} steps); nothing saved")
    elif changed:
        output.info(f"dunning ladder set from {file} ({len(policy.steps)} steps)")
    else:
        output.info("that ladder is already in force; nothing changed")


@policy_app.command("reset")
def policy_reset(as_json: JsonOpt = False) -> None:
    """Go back to the built-in default ladder (day 0, 3, 5, 7, 10 and 14)."""
    from faithflow_ops.dunning.policy import DEFAULT_POLICY, reset_policy

    with database().session() as session:
        changed = reset_policy(session, actor=actor())
    if as_json:
        output.print_json({"changed": changed, **DEFAULT_POLICY.to_dict()})
    else:
        _ladder(DEFAULT_POLICY, "dunning ladder")
    output.info(
        "dunning ladder reset to the default"
        if changed
        else "the default ladder is already in force"
    )


# --- prefs ----------------------------------------------------------------------------------


def _show_prefs(doc: dict[str, Any], as_json: bool) -> None:
    if as_json:
        output.print_json(doc)
        return
    channels = doc["channels"]
    fields = {
        "tenant": doc["tenant"],
        "time zone": doc["timezone"],
        "channels allowed": ", ".join(channels),
        "email": doc["contacts"]["email"],
        "sms (phone)": doc["contacts"]["sms"],
        "whatsapp": doc["contacts"]["whatsapp"],
        "quiet hours": "; ".join(w["text"] for w in doc["quiet_hours"]) or "none",
        "quiet hours source": "default" if doc["quiet_hours_default"] else "tenant",
        "sms opt-out": doc["sms_opt_out"],
        "whatsapp opt-out": doc["whatsapp_opt_out"],
        "whatsapp opt-in": (
            f"{doc['whatsapp_opt_in']['source']} ({doc['whatsapp_opt_in']['at']})"
            if doc["whatsapp_opt_in"]
            else "none recorded"
        ),
        "paused until": doc["paused_until"],
        "pause note": doc["pause_note"],
    }
    for channel, reason in doc["blocked"].items():
        fields[f"{channel} status"] = f"blocked: {reason}" if reason else "allowed"
    output.record(fields, title=f"dunning preferences: {doc['tenant']}")


@prefs_app.command("show")
def prefs_show(
    tenant: TenantOpt,
    as_json: JsonOpt = False,
    now: Annotated[
        str | None, typer.Option("--now", help="Evaluate the pause at this time (ISO-8601).")
    ] = None,
) -> None:
    """A tenant's dunning preferences: effective contacts, channels (and why one is blocked),
    quiet hours in the tenant's time zone, opt-outs and any pause."""
    from faithflow_ops.dunning.prefs import preferences_doc

    at = parse_now(now)
    with database().read_session() as session:
        doc = preferences_doc(session, tenant, now=at)
    _show_prefs(doc, as_json)


def _pause_end(value: str, timezone: str) -> dt.datetime:
    """`--pause-until`: a date (dunning resumes at 00:00 that day in the tenant's zone) or an
    ISO-8601 time."""
    from zoneinfo import ZoneInfo

    text = value.strip()
    try:
        day = dt.date.fromisoformat(text)
    except ValueError:
        pass
    else:
        return dt.datetime.combine(day, dt.time(0, 0), tzinfo=ZoneInfo(timezone)).astimezone(dt.UTC)
    try:
        when = dt.datetime.fromisoformat(text.replace("z", "Z").replace("Z", "+00:00"))
    except ValueError:
        raise UserError(
            f"--pause-until {value!r} is not a date; use e.g. --pause-until 2026-03-05"
        ) from None
    return when if when.tzinfo else when.replace(tzinfo=ZoneInfo(timezone))


@prefs_app.command("set")
def prefs_set(
    tenant: TenantOpt,
    channels: Annotated[
        str | None,
        typer.Option("--channels", help="Channels allowed, e.g. email,sms (default: all three)."),
    ] = None,
    email: Annotated[
        str | None,
        typer.Option(
            "--email", help="Send dunning email here instead of the billing email ('' clears)."
        ),
    ] = None,
    phone: Annotated[
        str | None,
        typer.Option(
            "--phone", help="SMS number (E.164) instead of the billing phone ('' clears)."
        ),
    ] = None,
    whatsapp: Annotated[
        str | None,
        typer.Option(
            "--whatsapp",
            help="WhatsApp number (E.164; never defaulted to the phone); a new number forgets "
            "the opt-in unless --whatsapp-consent comes with it ('' clears).",
        ),
    ] = None,
    whatsapp_consent: Annotated[
        str | None,
        typer.Option(
            "--whatsapp-consent",
            metavar="SOURCE",
            help="Record the church's WhatsApp opt-in for its WhatsApp number, now, with where "
            "it came from (e.g. 'signed form, 2026-11-02'); WhatsApp dunning goes by SMS "
            "without one. '' withdraws it.",
        ),
    ] = None,
    quiet: Annotated[
        list[str] | None,
        typer.Option(
            "--quiet",
            help="A quiet window in the tenant's time zone, e.g. 'sun 06:00-14:00', "
            "'daily 21:00-08:00', 'mon-fri 22:00-07:00'; repeat for several (they replace the "
            "current ones); 'none' for no quiet hours.",
        ),
    ] = None,
    quiet_default: Annotated[
        bool,
        typer.Option(
            "--quiet-default", help="Back to the default quiet hours (21-08 daily, Sun 06-14)."
        ),
    ] = False,
    sms_opt_out: Annotated[
        bool | None,
        typer.Option(
            "--sms-opt-out/--sms-opt-in", help="The tenant opted out of (or back into) SMS."
        ),
    ] = None,
    whatsapp_opt_out: Annotated[
        bool | None,
        typer.Option(
            "--whatsapp-opt-out/--whatsapp-opt-in",
            help="The tenant opted out of (or back into) WhatsApp.",
        ),
    ] = None,
    pause_until: Annotated[
        str | None,
        typer.Option(
            "--pause-until",
            help="Hold dunning messages until this date (00:00 in the tenant's zone) or time: "
            "a promised payment. Needs --note.",
        ),
    ] = None,
    note: Annotated[
        str | None, typer.Option("--note", help="Why dunning is paused (kept with the pause).")
    ] = None,
    resume: Annotated[bool, typer.Option("--resume", help="End a pause now.")] = False,
    now: Annotated[
        str | None, typer.Option("--now", help="The time to check --pause-until against.")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Change a tenant's dunning preferences; only the options given change."""
    from faithflow_ops.dunning.prefs import preferences_doc, save_preferences
    from faithflow_ops.dunning.windows import windows_from_specs
    from faithflow_ops.tenancy.tenants import get_tenant

    if quiet and quiet_default:
        raise UserError("give --quiet windows or --quiet-default, not both")
    if pause_until is not None and resume:
        raise UserError("give --pause-until or --resume, not both")
    if note is not None and pause_until is None:
        raise UserError("--note goes with --pause-until DATE (why dunning is paused)")
    at = parse_now(now)
    changes: dict[str, Any] = {}
    if channels is not None:
        changes["channels"] = [c for c in channels.split(",") if c.strip()]
    if whatsapp_consent is not None:
        changes["whatsapp_consent"] = whatsapp_consent
    for key, value in (("email", email), ("phone", phone), ("whatsapp", whatsapp)):
        if value is not None:
            changes[key] = value
    if quiet:
        changes["quiet_hours"] = windows_from_specs(quiet)
    if quiet_default:
        changes["quiet_hours"] = None
    if sms_opt_out is not None:
        changes["sms_opt_out"] = sms_opt_out
    if whatsapp_opt_out is not None:
        changes["whatsapp_opt_out"] = whatsapp_opt_out
    if resume:
        changes["paused_until"] = None
    with database().session() as session:
        if pause_until is not None:
            zone = get_tenant(session, tenant).timezone
            changes["paused_until"] = _pause_end(pause_until, zone)
            changes["pause_note"] = note
        save_preferences(session, tenant, actor=actor(), now=at, **changes)
        doc = preferences_doc(session, tenant, now=at)
    _show_prefs(doc, as_json)
    output.info(f"dunning preferences of {tenant} saved")


# --- analytics ------------------------------------------------------------------------------


def analytics(
    since: Annotated[
        str | None,
        typer.Option(
            "--since", help="Cases opened at or after this date/time (default: 30 days ago)."
        ),
    ] = None,
    until: Annotated[
        str | None,
        typer.Option("--until", help="…and before this date/time (default: now)."),
    ] = None,
    now: Annotated[
        str | None, typer.Option("--now", help="Take this as the current time (ISO-8601).")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """What the ladder achieved for the cases opened in a window: recovered (count, amount,
    rate, median time, by step), suspended, canceled, attempts and message outcomes per step
    and channel, and the open cases now."""
    from faithflow_ops.dunning.analytics import compute
    from faithflow_ops.dunning.policy import current_policy

    at = parse_now(now)
    end = at if until is None else parse_now(until, "--until", "2026-03-01")
    start = end - dt.timedelta(days=30) if since is None else parse_since(since, at)
    with database().read_session() as session:
        order = tuple(s.key for s in current_policy(session).steps)
        doc = compute(session, since=start, until=end, step_order=order)
    if as_json:
        output.print_json(doc)
        return
    _render_analytics(doc)


def _money(amounts: dict[str, int]) -> str:
    """Sums by currency as faithflow_ops.money shows them: `GHS 450.00, NGN 15,000.00`."""
    from faithflow_ops.money import format_totals

    return format_totals(amounts)


def _render_analytics(doc: dict[str, Any]) -> None:
    from faithflow_ops.dunning.analytics import duration

    cases, rec = doc["cases"], doc["recovered"]
    output.record(
        {
            "cases opened": f"{cases['opened']} ({_money(doc['opened_amount_minor'])})",
            "recovered": f"{rec['count']} ({_money(rec['amount_minor'])})",
            "recovery rate": f"{output.percent(rec['rate'])} of opened, "
            f"{output.percent(rec['rate_of_closed'])} of closed",
            "median time to recover": duration(rec["median_seconds_to_recover"]),
            "suspended": f"{doc['suspended']['count']} "
            f"({_money(doc['suspended']['amount_minor'])})",
            "canceled": doc["canceled"]["count"],
            "still open": cases["open"],
            "attempts": doc["attempts"]["total"],
            "payment retries": ", ".join(
                f"{k} {v}" for k, v in doc["attempts"]["payment_retries"].items()
            ) or "—",
            "open now (all cases)": f"{doc['currently_open']['count']} "
            f"({_money(doc['currently_open']['amount_minor'])})",
        },
        title=f"dunning {output.fmt(doc['since'])} → {output.fmt(doc['until'])}",
    )  # fmt: skip
    rows = doc["attempts"]["by_step"]
    if rows:
        output.table(
            ["step", "channel", "attempts", "delivered", "sent", "failed", "suppressed", "other"],
            [
                [
                    r["step"],
                    r["channel"],
                    r["attempts"],
                    *_message_counts(r),
                ]
                for r in rows
            ],
            title="attempts by step and channel",
        )
    _bars(rec["by_step"])


def _message_counts(row: dict[str, Any]) -> list[Any]:
    messages = row.get("messages")
    if messages is None:
        outcomes = row.get("retry_outcomes")
        other = ", ".join(f"{k} {v}" for k, v in outcomes.items()) if outcomes else None
        return [None, None, None, None, other]
    main = ("delivered", "sent", "failed", "suppressed")
    rest = {k: v for k, v in messages.items() if k not in main and v}
    return [
        *(messages.get(k, 0) for k in main),
        ", ".join(f"{k} {v}" for k, v in rest.items()) or None,
    ]


def _bars(by_step: list[dict[str, Any]]) -> None:
    """A bar per step: how many cases it recovered (Rich; plain text when piped)."""
    from rich.table import Table
    from rich.text import Text

    console = output.stdout_console()
    if not by_step:
        output.info("no case recovered in this window")
        return
    width = 40
    most = max(r["count"] for r in by_step)
    chart = Table(title="recovery by step", show_header=False, box=None, pad_edge=False)
    chart.add_column("step", style="bold")
    chart.add_column("bar")
    chart.add_column("count", justify="right")
    for row in by_step:
        filled = round(width * row["count"] / most) if most else 0
        chart.add_row(
            Text(row["step"]),
            Text("█" * max(filled, 1 if row["count"] else 0), style="green"),
            Text(f"{row['count']} ({output.percent(row['share'])})"),
        )
    console.print(chart)
