"""`faithflow plans …`: the subscription plans tenants buy, with their provider ids."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from faithflow_ops.cli import output
from faithflow_ops.cli.common import JsonOpt, actor, database
from faithflow_ops.errors import UserError

app = typer.Typer(
    rich_markup_mode=None,
    help="Subscription plans: add, list, show, and set provider ids in their metadata.",
    no_args_is_help=True,
)

CodeArg = Annotated[str, typer.Argument(help="The plan's code, e.g. growth-monthly-ngn.")]
MetaOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--meta",
        metavar="KEY=VALUE",
        help="Metadata entry, e.g. --meta stripePriceId=price_123 or "
        "--meta paystackPlanCode=PLN_abc; repeat for more.",
    ),
]


def parse_meta(pairs: list[str] | None, option: str | None = "--meta") -> dict[str, str]:
    """`KEY=VALUE` strings as a dict; a malformed or repeated one is refused by name.

    `option` names where they came from (None for positional arguments) in the messages.
    """
    label = option or "entry"
    example = f"{option} stripePriceId=price_123" if option else "stripePriceId=price_123"
    values: dict[str, str] = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        key = key.strip()
        if not sep or not key:
            raise UserError(f"{label} {pair!r} is not KEY=VALUE; write it as e.g. {example}")
        if not value:
            raise UserError(f"{label} {pair!r} has no value after '='; write it as e.g. {example}")
        if key in values:
            raise UserError(f"{label} key {key!r} is given twice; give each key once")
        values[key] = value
    return values


@app.command("add")
def add(
    code: Annotated[
        str, typer.Argument(help="Unique code: lowercase letters, digits, '.', '_', '-'.")
    ],
    name: Annotated[str, typer.Option("--name", help="Display name, e.g. 'Growth (monthly)'.")],
    amount: Annotated[
        str,
        typer.Option(
            "--amount",
            help="Price in major units, e.g. 49.99 (stored exactly as minor units; "
            "more decimals than the currency has are refused).",
        ),
    ],
    currency: Annotated[str, typer.Option("--currency", help="ISO 4217 code, e.g. NGN.")],
    interval: Annotated[str, typer.Option("--interval", help="Billing interval: month or year.")],
    tier: Annotated[
        int, typer.Option("--tier", help="Tier rank for upgrades/downgrades (higher = more).")
    ] = 0,
    meta: MetaOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Add an active plan. Provider ids go in --meta (stripePriceId, paystackPlanCode)."""
    from faithflow_ops.billing.plans import add_plan, plan_doc

    metadata = parse_meta(meta)
    with database().session() as session:
        plan = add_plan(
            session,
            code=code,
            name=name,
            amount=amount,
            currency=currency,
            interval=interval,
            tier_rank=tier,
            metadata=metadata,
            actor=actor(),
        )
        doc = plan_doc(plan)
    _render_one(doc, as_json)
    output.info(f"added plan {doc['code']} (id {doc['id']}): {_price(doc)} per {doc['interval']}")


@app.command("list")
def list_(as_json: JsonOpt = False) -> None:
    """Every plan with its price and provider ids, lowest tier first."""
    from faithflow_ops.billing.plans import list_plans, plan_doc

    with database().read_session() as session:
        docs = [plan_doc(p) for p in list_plans(session)]
    if output.empty(docs, "plan", as_json=as_json):
        return
    if as_json:
        output.print_json(docs)
        return
    output.table(
        [
            "code",
            "name",
            "price",
            "interval",
            "tier",
            "active",
            "stripePriceId",
            "paystackPlanCode",
        ],
        [
            [
                d["code"],
                d["name"],
                _price(d),
                d["interval"],
                d["tier_rank"],
                d["active"],
                d["metadata"].get("stripePriceId"),
                d["metadata"].get("paystackPlanCode"),
            ]
            for d in docs
        ],
    )
    output.list_footer(len(docs), len(docs), "plan")


@app.command("show")
def show(code: CodeArg, as_json: JsonOpt = False) -> None:
    """One plan: its fields, metadata and how many subscriptions it has by status."""
    from faithflow_ops.billing.plans import get_plan, plan_details

    with database().read_session() as session:
        doc = plan_details(session, get_plan(session, code))
    if as_json:
        output.print_json(doc)
        return
    counts = doc.pop("subscriptions")
    _render_one(doc, as_json=False)
    summary = ", ".join(f"{status}={n}" for status, n in counts.items()) or "none"
    output.info(f"subscriptions: {summary}")


@app.command("set-meta")
def set_meta(
    code: CodeArg,
    pairs: Annotated[
        list[str] | None,
        typer.Argument(metavar="KEY=VALUE", help="Entries to set, e.g. stripePriceId=price_1."),
    ] = None,
    unset: Annotated[
        list[str] | None,
        typer.Option("--unset", metavar="KEY", help="Remove this key; repeat for more."),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Set or remove metadata keys on a plan; other keys are kept."""

    from faithflow_ops.billing.plans import plan_doc, set_plan_metadata

    values = parse_meta(pairs, option=None)
    keys = [key.strip() for key in unset or []]
    if any(not key for key in keys):
        raise UserError("--unset needs a key name, e.g. --unset stripePriceId")
    with database().session() as session:
        change = set_plan_metadata(session, code, values=values, unset=keys, actor=actor())
        doc = plan_doc(change.plan)
    _render_one(doc, as_json)
    for key in change.missing_keys:
        output.warn(f"{key} was not set on {doc['code']}")
    if change.changed:
        done = [f"set {k}" for k in change.set_keys] + [f"unset {k}" for k in change.unset_keys]
        output.info(f"plan {doc['code']}: {', '.join(done)}")
    else:
        output.info(f"plan {doc['code']}: nothing changed")


def _price(doc: dict[str, Any]) -> str:
    """A plan's price as faithflow_ops.money shows it: `NGN 15,000.00`, `JPY 7,900`."""
    from faithflow_ops.money import format_money

    return format_money(doc["amount_minor"], doc["currency"])


def _render_one(doc: dict[str, Any], as_json: bool) -> None:
    if as_json:
        output.print_json(doc)
        return
    fields = {k: v for k, v in doc.items() if k != "metadata"}
    fields["amount"] = f"{_price(doc)} ({doc['amount_minor']} minor units)"
    for key, value in sorted(doc["metadata"].items()):
        fields[f"metadata.{key}"] = value
    output.record(fields, title=f"plan {doc['code']}")


@app.command("deactivate")
def deactivate(code: CodeArg, as_json: JsonOpt = False) -> None:
    """Stop selling a plan: no new checkout, plan change or `subs add` to it; its
    subscriptions are untouched and renew as before."""
    from faithflow_ops.billing.plans import deactivate_plan, plan_details

    with database().session() as session:
        plan, changed = deactivate_plan(session, code, actor=actor())
        doc = plan_details(session, plan)
    counts = doc.pop("subscriptions")
    _render_one(doc, as_json)
    live = sum(n for status, n in counts.items() if status != "canceled")
    if changed:
        output.info(
            f"plan {doc['code']} deactivated: no new subscriptions on it; "
            f"{live} live subscription(s) keep it"
        )
    else:
        output.info(f"plan {doc['code']} was already inactive; nothing changed")


@app.command("reprice")
def reprice(
    code: CodeArg,
    amount: Annotated[
        str, typer.Option("--amount", help="The new price in major units, e.g. 59.99.")
    ],
    new_code: Annotated[
        str | None,
        typer.Option("--code", help="The new version's code (default: CODE-v2, -v3, …)."),
    ] = None,
    meta: MetaOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Change a price as a new plan version: a copy at the new price (CODE-v2 by default), and
    the old plan deactivated. Subscribers stay on the old plan and its price. The old provider
    ids are not copied: give the new Stripe price / Paystack plan with --meta (or set-meta)."""
    from faithflow_ops.billing.plans import plan_doc, reprice_plan

    metadata = parse_meta(meta)
    with database().session() as session:
        result = reprice_plan(
            session, code, amount=amount, new_code=new_code, metadata=metadata, actor=actor()
        )
        doc, old_code = plan_doc(result.new), result.old.code
    _render_one(doc, as_json)
    output.info(
        f"plan {old_code} deactivated, {doc['code']} added at the new price; "
        f"{result.subscribers} live subscription(s) stay on {old_code}"
    )
    for key in result.missing_ids:
        output.warn(
            f"{doc['code']} has no {key} (the old one names the old price); set it with "
            f"`faithflow plans set-meta {doc['code']} {key}=…` before selling it"
        )
