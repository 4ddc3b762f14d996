"""`faithflow tenants …`: add, list, show, suspend and reactivate churches; security policies;
link the provider ids (customers, Connect accounts, subaccounts) webhooks resolve tenants by."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from faithflow_ops.cli import output
from faithflow_ops.cli.common import JsonOpt, actor, database

app = typer.Typer(
    rich_markup_mode=None,
    help="Tenants (churches): add, list, show, suspend, reactivate, link ids, billing grace; "
    "security policy.",
    no_args_is_help=True,
)
policy_app = typer.Typer(
    rich_markup_mode=None,
    help="A tenant's security policy: MFA, SSO, session timeout, retention.",
    no_args_is_help=True,
)
app.add_typer(policy_app, name="policy")

SlugArg = Annotated[str, typer.Argument(help="The tenant's slug, e.g. grace-lagos.")]
DryRunOpt = Annotated[
    bool, typer.Option("--dry-run", help="Check and print what would be done; change nothing.")
]
YesOpt = Annotated[
    bool, typer.Option("--yes", "-y", help="Do not ask for confirmation (for scripts).")
]


@app.command("add")
def add(
    slug: Annotated[
        str,
        typer.Argument(help="Unique slug: 3-63 lowercase letters, digits and hyphens."),
    ],
    name: Annotated[str, typer.Option("--name", help="The church's display name.")],
    timezone: Annotated[
        str, typer.Option("--timezone", help="IANA time zone, e.g. Africa/Lagos.")
    ] = "UTC",
    country: Annotated[
        str | None, typer.Option("--country", help="ISO 3166-1 alpha-2 country code, e.g. NG.")
    ] = None,
    currency: Annotated[
        str, typer.Option("--currency", help="ISO 4217 billing currency, e.g. NGN.")
    ] = "USD",
    email: Annotated[str | None, typer.Option("--email", help="Billing email address.")] = None,
    phone: Annotated[
        str | None, typer.Option("--phone", help="Billing phone in E.164, e.g. +2348031234567.")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Add an active tenant (with the default security policy)."""
    from faithflow_ops.tenancy.tenants import add_tenant, tenant_doc

    with database().session() as session:
        tenant = add_tenant(
            session,
            slug=slug,
            name=name,
            timezone=timezone,
            country=country,
            currency=currency,
            email=email,
            phone=phone,
            actor=actor(),
        )
        doc = tenant_doc(tenant)
    _render_one(doc, as_json)
    output.info(f"added tenant {doc['slug']} (id {doc['id']})")


@app.command("list")
def list_(
    status: Annotated[
        str | None, typer.Option("--status", help="Only active, suspended or archived tenants.")
    ] = None,
    include_deleted: Annotated[
        bool, typer.Option("--include-deleted", help="Also list soft-deleted tenants.")
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """Tenants by slug; soft-deleted ones are hidden unless --include-deleted."""
    from faithflow_ops.tenancy.tenants import list_tenants, tenant_doc

    with database().read_session() as session:
        docs = [
            tenant_doc(t)
            for t in list_tenants(session, status=status, include_deleted=include_deleted)
        ]
    if output.empty(docs, "tenant", as_json=as_json):
        return
    if as_json:
        output.print_json(docs)
        return
    output.table(
        ["slug", "name", "status", "timezone", "country", "currency"],
        [
            [
                d["slug"],
                d["name"],
                d["status"] + (" (deleted)" if d["deleted_at"] else ""),
                d["timezone"],
                d["country"],
                d["currency"],
            ]
            for d in docs
        ],
    )
    output.list_footer(len(docs), len(docs), "tenant")


@app.command("show")
def show(slug: SlugArg, as_json: JsonOpt = False) -> None:
    """One tenant: its fields, security policy, subscriptions and user count."""
    from faithflow_ops.tenancy.details import tenant_details
    from faithflow_ops.tenancy.tenants import get_tenant

    with database().read_session() as session:
        doc = tenant_details(session, get_tenant(session, slug))
    if as_json:
        output.print_json(doc)
        return
    policy = doc.pop("security_policy")
    subs = doc.pop("subscriptions")
    accounts = doc.pop("provider_accounts")
    output.record(doc, title=f"tenant {doc['slug']}")
    output.record({k: v for k, v in policy.items() if k != "tenant"}, title="security policy")
    output.section(
        ["id", "plan", "provider", "status", "period ends"],
        [[s["id"], s["plan"], s["provider"], s["status"], s["current_period_end"]] for s in subs],
        "subscriptions",
        "no subscriptions",
    )
    output.section(
        ["provider", "kind", "id", "linked at", "by"],
        [
            [a["provider"], a["kind"], a["external_id"], a["created_at"], a["source"]]
            for a in accounts
        ],
        "provider ids",
        "no linked provider ids (see `faithflow tenants link`)",
    )


@app.command("set")
def set_(
    slug: SlugArg,
    email: Annotated[str | None, typer.Option("--email", help="Billing email address.")] = None,
    phone: Annotated[
        str | None, typer.Option("--phone", help="Billing phone in E.164, e.g. +2348031234567.")
    ] = None,
    sms_name: Annotated[
        str | None,
        typer.Option(
            "--sms-name",
            help="The church's name in SMS: GSM-7 letters, at most 30 characters, so a "
            "dunning SMS stays one segment (default: the name with accents and tone marks "
            "dropped; '' clears).",
        ),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Set the tenant's billing email, phone and/or SMS name (Paystack checkout needs the
    email; SMS call the church by the short name)."""
    from faithflow_ops.tenancy.tenants import set_billing_contact, tenant_doc

    with database().session() as session:
        result = set_billing_contact(
            session, slug, actor=actor(), email=email, phone=phone, sms_name=sms_name
        )
        doc = tenant_doc(result.tenant)
    _render_one(doc, as_json)
    if result.changed:
        output.info(f"updated {doc['slug']}'s billing contact")
    else:
        output.info(f"{doc['slug']} already had those values; nothing changed")


ExternalIdArg = Annotated[
    str,
    typer.Argument(
        metavar="EXTERNAL_ID",
        help="A provider id: cus_… (Stripe customer), acct_… (Stripe Connect account), "
        "CUS_… (Paystack customer) or ACCT_… (Paystack subaccount).",
    ),
]


@app.command("link")
def link(slug: SlugArg, external_id: ExternalIdArg, as_json: JsonOpt = False) -> None:
    """Link a provider id to the tenant so its webhooks find the tenant; the id's unmatched
    webhook events are handled at once. The provider and kind come from the id's prefix."""
    from faithflow_ops.webhooks.inbox import link_and_handle

    doc = link_and_handle(database(), slug, external_id, actor=actor())
    if as_json:
        output.print_json(doc)
    else:
        output.record(
            {k: doc[k] for k in ("tenant", "provider", "kind", "external_id", "created_at")},
            title="provider id",
        )
        if doc["handled"]:
            output.table(
                ["id", "type", "status", "detail"],
                [[h["id"], h["type"], h["status"], h["detail"]] for h in doc["handled"]],
                title="webhook events handled",
            )
    what = f"{doc['provider']} {doc['kind']} {doc['external_id']}"
    if not doc["changed"]:
        output.info(f"{doc['external_id']} is already linked to {doc['tenant']}; nothing changed")
        return
    output.info(f"linked {what} to {doc['tenant']}")
    handled = doc["handled"]
    if handled:
        counts: dict[str, int] = {}
        for h in handled:
            counts[h["status"]] = counts.get(h["status"], 0) + 1
        summary = ", ".join(f"{n} {status}" for status, n in sorted(counts.items()))
        plural = "s" if len(handled) != 1 else ""
        output.info(f"{len(handled)} unmatched webhook event{plural} handled: {summary}")
    else:
        output.info(f"no unmatched webhook events for {doc['external_id']}")


@app.command("unlink")
def unlink(slug: SlugArg, external_id: ExternalIdArg) -> None:
    """Remove a provider id from the tenant (its future webhooks will be unmatched)."""
    from faithflow_ops.tenancy.accounts import unlink as unlink_account

    with database().session() as session:
        result = unlink_account(session, slug, external_id, actor=actor())
        name, what = result.tenant.slug, result.external.describe()
    output.info(f"unlinked {what} from {name}")


@app.command("suspend")
def suspend(
    slug: SlugArg,
    reason: Annotated[
        str, typer.Option("--reason", help="Why, for the audit log and the tenant's staff.")
    ],
    dry_run: DryRunOpt = False,
    yes: YesOpt = False,
) -> None:
    """Suspend an active tenant (a suspended one is left as it is); its open dunning cases
    close. Asks first; not on a terminal it needs --yes."""

    from faithflow_ops.dunning.suspension import suspend_tenant
    from faithflow_ops.tenancy.tenants import suspend_check

    with database().read_session() as session:
        check = suspend_check(session, slug, reason=reason)
        state = (check.tenant.slug, check.tenant.status)
    if not check.changed:
        pass  # already suspended: say so below, nothing to confirm
    elif dry_run:
        output.info(
            f"dry run: tenant {state[0]} ({state[1]}) would be suspended ({reason.strip()}) and "
            "its open dunning cases closed; nothing was written"
        )
        return
    else:
        output.confirm(f"suspend tenant {state[0]} (now {state[1]})?", yes=yes)
    with database().session() as session:
        result = suspend_tenant(session, slug, reason=reason, actor=actor())
        tenant = result.tenant
        name, since, why = tenant.slug, tenant.suspended_at, tenant.suspension_reason
    if result.changed:
        output.info(f"suspended tenant {name}: {why or ''}")
    else:
        output.info(
            f"tenant {name} is already suspended (since {output.fmt(since)}: "
            f"{why or 'no reason recorded'}); nothing changed"
        )


@app.command("reactivate")
def reactivate(slug: SlugArg) -> None:
    """Reactivate a suspended tenant (an active one is left as it is)."""
    from faithflow_ops.tenancy.tenants import reactivate_tenant

    with database().session() as session:
        result = reactivate_tenant(session, slug, actor=actor())
        name = result.tenant.slug
    if result.changed:
        output.info(f"reactivated tenant {name}")
    else:
        output.info(f"tenant {name} is already active; nothing changed")


@app.command("set-grace")
def set_grace(
    slug: SlugArg,
    days: Annotated[
        str,
        typer.Argument(
            metavar="DAYS|default",
            help="Days a past-due subscription may stay unpaid before `subs automate` suspends "
            "the tenant (0-365), or 'default' for the plan's graceDays, else 14.",
        ),
    ],
) -> None:
    """Set the tenant's grace period before suspension for non-payment."""
    from faithflow_ops.errors import UserError
    from faithflow_ops.tenancy.tenants import set_billing_grace

    text = days.strip().lower()
    if text == "default":
        value = None
    elif text.isdigit():
        value = int(text)
    else:
        raise UserError(f"DAYS {days!r} must be a whole number of days (0-365) or 'default'")
    with database().session() as session:
        result = set_billing_grace(session, slug, value, actor=actor())
        name = result.tenant.slug
    shown = "the plan's graceDays, else 14 days" if value is None else f"{value} days"
    if result.changed:
        output.info(f"tenant {name}: grace before suspension for non-payment is {shown}")
    else:
        output.info(f"tenant {name}: grace is already {shown}; nothing changed")


@policy_app.command("show")
def policy_show(slug: SlugArg, as_json: JsonOpt = False) -> None:
    """The tenant's security policy (defaults when none was saved)."""
    from faithflow_ops.tenancy.policies import show_policy

    with database().read_session() as session:
        doc = show_policy(session, slug)
    _render_policy(doc, as_json)


@policy_app.command("set")
def policy_set(
    slug: SlugArg,
    mfa_required: Annotated[
        bool | None,
        typer.Option("--mfa-required/--no-mfa-required", help="Require MFA for tenant staff."),
    ] = None,
    sso_required: Annotated[
        bool | None,
        typer.Option("--sso-required/--no-sso-required", help="Require SSO for tenant staff."),
    ] = None,
    session_timeout: Annotated[
        int | None,
        typer.Option(
            "--session-timeout", metavar="MINUTES", help="Idle session timeout, 5 to 43200 minutes."
        ),
    ] = None,
    retention_days: Annotated[
        int | None,
        typer.Option(
            "--retention-days",
            metavar="DAYS",
            help="The tenant's own retention period, 30 to 3650 days: `retention run` uses it "
            "instead of the platform defaults for the tenant's tickets, messages, webhook "
            "bodies and its purge after deletion.",
        ),
    ] = None,
    default_retention: Annotated[
        bool,
        typer.Option(
            "--default-retention",
            help="Clear the tenant's own retention period: its data follows the platform "
            "defaults (FAITHFLOW_RETENTION_*_DAYS). To keep a tenant's data for good, place a "
            "legal hold (`retention hold`).",
        ),
    ] = False,
    keep_forever: Annotated[
        bool,
        typer.Option(
            "--keep-forever",
            hidden=True,
            help="Refused: it once promised what retention never did (see --default-retention).",
        ),
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """Change some of a tenant's security policy; unnamed settings keep their value."""
    from faithflow_ops.errors import UserError
    from faithflow_ops.tenancy.policies import set_policy

    if keep_forever:  # what this option once promised, retention never did
        raise UserError(
            "--keep-forever is gone: a tenant without its own retention period follows the "
            "platform defaults, which `retention run` applies. Clear the period with "
            f"--default-retention; to keep {slug}'s data for good, place a legal hold: "
            f"faithflow retention hold --tenant {slug} --reason …"
        )

    with database().session() as session:
        change = set_policy(
            session,
            slug,
            actor=actor(),
            mfa_required=mfa_required,
            sso_required=sso_required,
            session_timeout_minutes=session_timeout,
            data_retention_days=retention_days,
            clear_retention=default_retention,
        )
    _render_policy(change.doc, as_json)
    slug_text = change.doc["tenant"]
    if change.changed:
        output.info(f"updated {slug_text}'s policy: {', '.join(change.changed)}")
    else:
        output.info(f"{slug_text}'s policy already had those values; nothing changed")


def _render_one(doc: dict[str, Any], as_json: bool) -> None:
    if as_json:
        output.print_json(doc)
    else:
        output.record(doc, title=f"tenant {doc['slug']}")


def _render_policy(doc: dict[str, Any], as_json: bool) -> None:
    if as_json:
        output.print_json(doc)
        return
    fields = {k: v for k, v in doc.items() if k != "tenant"}
    if fields["data_retention_days"] is None:
        fields["data_retention_days"] = "platform defaults"
    if not fields["stored"]:
        output.info("no policy saved for this tenant; showing the defaults")
    output.record(fields, title=f"security policy of {doc['tenant']}")
