"""`faithflow support …`: tickets, agents, the queue, analytics and the knowledge base."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

import typer

from faithflow_ops.cli import output, support_analytics, support_kb
from faithflow_ops.cli.common import JsonOpt, actor, database, parse_now

if TYPE_CHECKING:
    from faithflow_ops.models import SupportTicket

app = typer.Typer(
    rich_markup_mode=None,
    help="Support center: tickets, agents, queue health, analytics, knowledge base, deflection.",
    no_args_is_help=True,
)
tickets_app = typer.Typer(
    rich_markup_mode=None,
    help="Tickets: open, list, show, reply, note, assign, priority, status, reopen.",
    no_args_is_help=True,
)
app.add_typer(tickets_app, name="tickets")
agents_app = typer.Typer(
    rich_markup_mode=None,
    help="Platform support agents (users with no tenant): add, list, disable, enable.",
    no_args_is_help=True,
)
app.add_typer(agents_app, name="agents")
app.add_typer(support_kb.kb_app, name="kb")  # knowledge base and deflection: cli/support_kb.py
app.command("analytics")(support_analytics.analytics)  # cli/support_analytics.py

NowOpt = Annotated[
    str | None,
    typer.Option(
        "--now", help="Act as of this time (ISO-8601, e.g. 2026-03-01T09:00:00Z); default: now."
    ),
]
IdArg = Annotated[int, typer.Argument(metavar="ID", help="Ticket id (support tickets list).")]


def _show_ticket(doc: dict[str, Any], as_json: bool, verb: str | None = None) -> None:
    if as_json:
        output.print_json(doc)
        return
    fields = {
        k: output.minute(v) for k, v in doc.items() if k not in ("clocks", "messages", "sla_events")
    }
    output.record(fields, title=f"ticket {doc['id']}")
    output.table(
        ["metric", "state", "episode", "target", "due (UTC)", "min left", "breached", "fulfilled"],
        [
            [
                c["metric"],
                c["state"],
                c["episode"],
                f"{c['target_minutes']} min {c['hours']}",
                output.minute(c["due_at"]),
                c["minutes_left"],
                output.minute(c["breached_at"]),
                output.minute(c["fulfilled_at"]),
            ]
            for c in doc["clocks"].values()
        ],
        title="SLA clocks",
    )
    if doc.get("messages"):
        output.table(
            ["at", "author", "kind", "public", "body"],
            [
                [
                    output.minute(m["created_at"]),
                    m["author"],
                    m["author_kind"],
                    m["public"],
                    m["body"],
                ]
                for m in doc["messages"]
            ],
            title="messages",
        )
    if doc.get("sla_events"):
        output.table(
            ["metric", "episode", "kind", "occurred (UTC)", "due (UTC)"],
            [
                [
                    e["metric"],
                    e["episode"],
                    e["kind"],
                    output.minute(e["occurred_at"]),
                    output.minute(e["due_at"]),
                ]
                for e in doc["sla_events"]
            ],
            title="SLA events",
        )
    if verb:
        output.info(f"ticket {doc['id']} {verb}")


def _mutate(now: str | None, as_json: bool, verb: str, change: Any) -> None:
    """Parse --now, run `change(session, rules, when)` in one transaction, print the ticket."""
    from faithflow_ops.support.tickets import ticket_doc

    when = parse_now(now)
    with database().session() as session:
        r = support_kb.sla_rules(session)
        ticket: SupportTicket = change(session, r, when)
        doc = ticket_doc(session, ticket, r, when)
    _show_ticket(doc, as_json, verb)


@tickets_app.command("open")
def open_(
    tenant: Annotated[str, typer.Option("--tenant", help="The tenant's slug (or id).")],
    subject: Annotated[str, typer.Option("--subject", help="What the ticket is about.")],
    priority: Annotated[
        str, typer.Option("--priority", help="low, normal, high or urgent.")
    ] = "normal",
    body: Annotated[
        str | None, typer.Option("--body", help="The requester's first message.")
    ] = None,
    requester: Annotated[
        str | None,
        typer.Option(
            "--requester", help="Requester e-mail (default: the tenant's billing e-mail)."
        ),
    ] = None,
    requester_name: Annotated[
        str | None, typer.Option("--requester-name", help="Requester's name.")
    ] = None,
    category: Annotated[
        str | None, typer.Option("--category", help="Free-form category, e.g. billing.")
    ] = None,
    assign: Annotated[
        str | None, typer.Option("--assign", help="Assign to this agent (id or e-mail).")
    ] = None,
    now: NowOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Open a ticket; starts its first-response and resolution clocks at --now."""
    from faithflow_ops.support.tickets import open_ticket

    _mutate(
        now,
        as_json,
        "opened",
        lambda s, r, when: open_ticket(
            s,
            r,
            tenant=tenant,
            subject=subject,
            priority=priority,
            now=when,
            body=body,
            requester=requester,
            requester_name=requester_name,
            category=category,
            assignee=assign,
        ),
    )


@tickets_app.command("list")
def list_(
    status: Annotated[
        str | None, typer.Option("--status", help="new, open, pending, on_hold, solved, closed.")
    ] = None,
    priority: Annotated[str | None, typer.Option("--priority", help="Only this priority.")] = None,
    tenant: Annotated[str | None, typer.Option("--tenant", help="Only this tenant (slug).")] = None,
    assignee: Annotated[
        str | None, typer.Option("--assignee", help="Agent id or e-mail; 'none' = unassigned.")
    ] = None,
    open_only: Annotated[
        bool, typer.Option("--open", help="Only tickets not solved or closed.")
    ] = False,
    limit: Annotated[int, typer.Option("--limit", min=1, help="Show at most this many.")] = 100,
    now: NowOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Tickets, newest first, with their status, assignee and nearest SLA due time."""
    from faithflow_ops.support.tickets import list_tickets, ticket_doc

    when = parse_now(now)
    with database().read_session() as session:
        r = support_kb.sla_rules(session)
        found, total = list_tickets(
            session,
            status=status,
            priority=priority,
            tenant=tenant,
            assignee=assignee,
            open_only=open_only,
            limit=limit,
        )
        docs = [ticket_doc(session, t, r, when) for t in found]
    if output.empty(docs, "ticket", as_json=as_json):
        return
    if as_json:
        output.print_json(docs)
    else:
        rows = []
        for d in docs:
            running = [c for c in d["clocks"].values() if c["state"] in ("running", "breached")]
            nearest = min(running, key=lambda c: c["due_at"], default=None)
            rows.append(
                [
                    d["id"],
                    d["tenant"],
                    d["priority"],
                    d["status"],
                    d["subject"],
                    d["assignee"],
                    output.minute(d["opened_at"]),
                    f"{nearest['metric']} {nearest['minutes_left']:+d} min" if nearest else "—",
                ]
            )
        output.table(
            ["id", "tenant", "priority", "status", "subject", "assignee", "opened", "next due"],
            rows,
        )
    if total > len(docs):
        output.info(f"showing {len(docs)} of {total}; raise --limit to see more")


@tickets_app.command("show")
def show(ticket_id: IdArg, now: NowOpt = None, as_json: JsonOpt = False) -> None:
    """One ticket: fields, SLA clocks (minutes left at --now), messages and SLA events."""
    from faithflow_ops.support.tickets import ticket_details

    when = parse_now(now)
    with database().read_session() as session:
        doc = ticket_details(session, ticket_id, support_kb.sla_rules(session), when)
    _show_ticket(doc, as_json)


@tickets_app.command("reply")
def reply(
    ticket_id: IdArg,
    author: Annotated[str, typer.Option("--as", help="agent or requester.")],
    body: Annotated[str, typer.Option("--body", help="The message text.")],
    agent: Annotated[
        str | None,
        typer.Option("--agent", help="Replying agent (id or e-mail); default: the assignee."),
    ] = None,
    now: NowOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """A public reply. An agent's fulfils the response clock; a requester's starts the next
    response clock (and reopens a solved ticket)."""
    from faithflow_ops.support.tickets import reply as do

    _mutate(
        now,
        as_json,
        "replied",
        lambda s, r, when: do(s, r, ticket_id, author=author, body=body, now=when, agent=agent),
    )


@tickets_app.command("note")
def note(
    ticket_id: IdArg,
    body: Annotated[str, typer.Option("--body", help="The note (agents only).")],
    agent: Annotated[str | None, typer.Option("--agent", help="Agent id or e-mail.")] = None,
    now: NowOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """An internal note: visible to agents only, stops no clock."""
    from faithflow_ops.support.tickets import note as do

    _mutate(
        now,
        as_json,
        "noted",
        lambda s, r, when: do(s, r, ticket_id, body=body, now=when, agent=agent),
    )


@tickets_app.command("assign")
def assign(
    ticket_id: IdArg,
    to: Annotated[
        str,
        typer.Option(
            "--to",
            help="Platform agent: user id or e-mail; 'none' unassigns (back to the queue).",
        ),
    ],
    now: NowOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Assign the ticket to a platform agent (a new ticket becomes open), or with --to none
    return it to the queue unassigned (its status stays)."""
    from faithflow_ops.support.tickets import UNASSIGN
    from faithflow_ops.support.tickets import assign as do

    verb = "unassigned" if to.strip().lower() == UNASSIGN else "assigned"
    _mutate(now, as_json, verb, lambda s, r, when: do(s, r, ticket_id, to=to, now=when))


@tickets_app.command("priority")
def priority(
    ticket_id: IdArg,
    new_priority: Annotated[
        str, typer.Argument(metavar="PRIORITY", help="low, normal, high or urgent.")
    ],
    now: NowOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Change the priority: running clocks take the new policy's targets from their start
    (time already used is kept); a breached clock stays breached, a fulfilled one fulfilled.
    Not on solved or closed tickets."""
    from faithflow_ops.support.tickets import set_priority

    _mutate(
        now,
        as_json,
        f"is {new_priority} priority",
        lambda s, r, when: set_priority(s, r, ticket_id, new_priority, now=when),
    )


@tickets_app.command("status")
def status(
    ticket_id: IdArg,
    new_status: Annotated[
        str, typer.Argument(metavar="STATUS", help="open, pending, on_hold, solved or closed.")
    ],
    resolution: Annotated[
        str | None,
        typer.Option(
            "--resolution", help="With solved: solved (default), deflected, duplicate, spam, …"
        ),
    ] = None,
    now: NowOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Change the status; pausing statuses stop the clocks that pause in them, solved fulfils
    every clock, closed is final."""
    from faithflow_ops.support.tickets import set_status

    _mutate(
        now,
        as_json,
        f"is {new_status}",
        lambda s, r, when: set_status(s, r, ticket_id, new_status, now=when, resolution=resolution),
    )


@tickets_app.command("reopen")
def reopen(ticket_id: IdArg, now: NowOpt = None, as_json: JsonOpt = False) -> None:
    """Reopen a solved ticket: a new resolution episode starts at --now."""
    from faithflow_ops.support.tickets import reopen as do

    _mutate(now, as_json, "reopened", lambda s, r, when: do(s, r, ticket_id, now=when))


@app.command("queue")
def queue(
    now: Annotated[
        str | None,
        typer.Option(
            "--now",
            help="Measure waiting minutes and due times to this time (ISO-8601); default: now. "
            "The tickets are always as they are now: a time before the newest ticket's "
            "opening is refused.",
        ),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Queue health, from the tickets as they are now: open by status and priority, unassigned,
    oldest waiting, breaching and due within the hour of --now, load per agent."""
    from faithflow_ops.support.views import check_queue_time
    from faithflow_ops.support.views import queue as build

    when = parse_now(now)
    with database().read_session() as session:
        check_queue_time(session, when)
        doc = build(session, when)
    if as_json:
        output.print_json(doc)
        return
    output.record(
        {
            "open": doc["open"],
            **{f"status {k}": v for k, v in doc["by_status"].items()},
            **{f"priority {k}": v for k, v in doc["by_priority"].items()},
            "unassigned": doc["unassigned"],
            "breaching now": len(doc["breaching_now"]),
            "due within the hour": len(doc["due_within_hour"]),
        },
        title=f"support queue at {when.isoformat()}",
    )
    for key, title in (("breaching_now", "breaching now"), ("due_within_hour", "due within 1 h")):
        if doc[key]:
            output.table(
                ["ticket", "metric", "priority", "due (UTC)", "min left"],
                [
                    [
                        r["ticket_id"],
                        r["metric"],
                        r["priority"],
                        output.minute(r["due_at"]),
                        r["minutes_left"],
                    ]
                    for r in doc[key]
                ],
                title=title,
            )
    if doc["oldest_waiting"]:
        output.table(
            ["ticket", "priority", "waiting since", "minutes"],
            [
                [
                    r["ticket_id"],
                    r["priority"],
                    output.minute(r["waiting_since"]),
                    r["waiting_minutes"],
                ]
                for r in doc["oldest_waiting"]
            ],
            title="oldest waiting",
        )
    if doc["agents"]:
        output.table(
            ["agent", "open", "urgent"],
            [[a["agent"], a["open"], a["urgent"]] for a in doc["agents"]],
            title="agent load",
        )


# agents

EmailArg = Annotated[str, typer.Argument(metavar="EMAIL", help="The agent's e-mail (or user id).")]


def _show_agent(doc: dict[str, Any], as_json: bool, message: str) -> None:
    if as_json:
        output.print_json(doc)
    else:
        output.record({k: output.minute(v) for k, v in doc.items()}, title=f"agent {doc['email']}")
    output.info(message)


@agents_app.command("add")
def agents_add(
    email: Annotated[str, typer.Argument(metavar="EMAIL", help="The agent's e-mail address.")],
    name: Annotated[str, typer.Option("--name", help="The agent's name.")],
    as_json: JsonOpt = False,
) -> None:
    """Add a platform support agent (a user with no tenant) who can be assigned tickets."""
    from faithflow_ops.support.agents import add_agent, agent_details

    with database().session() as session:
        doc = agent_details(session, add_agent(session, email=email, name=name, actor=actor()))
    _show_agent(doc, as_json, f"added agent {doc['email']} (id {doc['id']})")


@agents_app.command("list")
def agents_list(as_json: JsonOpt = False) -> None:
    """Platform agents by e-mail, with their open tickets and how many are urgent (disabled
    agents are listed too: they may still hold tickets)."""
    from faithflow_ops.support.agents import list_agents

    with database().read_session() as session:
        docs = list_agents(session)
    if output.empty(docs, "agent", as_json=as_json):
        return
    if as_json:
        output.print_json(docs)
        return
    output.table(
        ["id", "email", "name", "open tickets", "urgent open", "disabled since"],
        [
            [
                d["id"],
                d["email"],
                d["name"],
                d["open_tickets"],
                d["urgent_open"],
                output.minute(d["disabled_at"]),
            ]
            for d in docs
        ],
    )
    output.list_footer(len(docs), len(docs), "agent")


def _held(email: str, held: list[int]) -> str:
    if not held:
        return ""
    ids = ", ".join(f"#{t}" for t in held[:20]) + (" …" if len(held) > 20 else "")
    return (
        f"; {len(held)} open ticket{'s' if len(held) != 1 else ''} still assigned to {email} "
        f"({ids}): reassign with `faithflow support tickets assign ID --to AGENT` or return to "
        "the queue with `--to none`"
    )


@agents_app.command("disable")
def agents_disable(email: EmailArg, now: NowOpt = None, as_json: JsonOpt = False) -> None:
    """Disable an agent at --now: they can no longer be assigned tickets (the open tickets they
    hold stay theirs until reassigned; they are listed)."""
    from faithflow_ops.support.agents import agent_details, disable_agent

    when = parse_now(now)
    with database().session() as session:
        doc = agent_details(session, disable_agent(session, email, now=when, actor=actor()))
    held = doc["open_ticket_ids"]
    _show_agent(doc, as_json, f"disabled agent {doc['email']}" + _held(doc["email"], held))


@agents_app.command("enable")
def agents_enable(email: EmailArg, as_json: JsonOpt = False) -> None:
    """Enable a disabled agent again: they can be assigned tickets."""
    from faithflow_ops.support.agents import agent_details, enable_agent

    with database().session() as session:
        doc = agent_details(session, enable_agent(session, email, actor=actor()))
    _show_agent(doc, as_json, f"enabled agent {doc['email']}")
