"""`faithflow invoices reconcile`: compare the providers' invoices with ours, fix what is safe to
fix, and report the rest (docs/invoices.md is the runbook).

The glue: which providers to read (`selected`: the ones whose key is set, or `--provider`),
the window (`window`: `--since`, else 35 days before `now`), and the three halves in
billing/ — what is read at the provider (`reconcile_remote`), the findings
(`reconcile_plan`, whose docstring lists every action kind), and the fixes
(`reconcile_apply`). This module hands them the webhook handlers' rules (`_WebhookRules`):
the webhooks import billing, so billing does not import them.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from typing import Any

from sqlalchemy.orm import Session

from faithflow_ops.billing import reconcile_apply
from faithflow_ops.billing.reconcile_plan import (
    KINDS,
    REPORT_KINDS,
    SLACK,
    WINDOW,
    plan_provider,
    provider_skipped,
)
from faithflow_ops.billing.reconcile_remote import fetch
from faithflow_ops.errors import ConfigError
from faithflow_ops.jobs.base import Action, Job, JobContext
from faithflow_ops.jobs.options import InvoicesReconcileOptions
from faithflow_ops.models.billing import PROVIDERS
from faithflow_ops.webhooks import events
from faithflow_ops.webhooks import paystack as paystack_hooks
from faithflow_ops.webhooks import stripe as stripe_hooks
from faithflow_ops.webhooks.paystack import _SUB_STATUS as PAYSTACK_STATUS
from faithflow_ops.webhooks.stripe import _STATUS as STRIPE_STATUS

__all__ = ["JOB", "KINDS", "REPORT_KINDS", "SLACK", "WINDOW", "InvoicesReconcile"]

KEY_VARIABLES = {"stripe": "STRIPE_SECRET_KEY", "paystack": "PAYSTACK_SECRET_KEY"}


class _WebhookRules:
    """`reconcile_remote.WebhookRules` over the webhook handlers' own tables."""

    def subscription_status(self, provider: str, status: str) -> str | None:
        return (STRIPE_STATUS if provider == "stripe" else PAYSTACK_STATUS).get(status)

    def parse_time(self, value: object) -> dt.datetime | None:
        return events.parse_time(value)

    def paid_rank(self, provider: str) -> int:
        if provider == "stripe":
            return stripe_hooks.RANKS["invoice.paid"]
        return paystack_hooks.RANKS["invoice.update"]


WEBHOOK_RULES = _WebhookRules()


class InvoicesReconcile(Job):
    name = "invoices_reconcile"
    report_only = frozenset(REPORT_KINDS)
    table_columns = ("kind", "target", "tenant", "reason")

    @classmethod
    def table_rows(cls, action: Action) -> list[tuple[Any, ...]]:
        return [(action.kind, action.target, action.data.get("tenant"), action.reason)]

    def check(self, ctx: JobContext) -> list[str]:
        """The same refusal from every door: a --provider whose key is missing, no provider
        configured at all, or a --since not before now (ConfigError, exit 2); a provider left
        out for want of its key is a warning (and a `provider_skipped` finding)."""
        self.window(ctx)
        _, skipped = self.selected(ctx)
        return [f"{KEY_VARIABLES[p]} is not set: {p} is skipped" for p in skipped]

    def selected(self, ctx: JobContext) -> tuple[list[str], list[str]]:
        """(providers to reconcile, providers skipped for want of a key)."""
        settings = ctx.settings
        wanted = self.options(ctx, InvoicesReconcileOptions).provider
        configured = {
            "stripe": bool(settings.stripe_secret_key),
            "paystack": bool(settings.paystack_secret_key),
        }
        if wanted is not None:
            if not configured[wanted]:
                raise ConfigError(
                    f"cannot reconcile {wanted}: {KEY_VARIABLES[wanted]} is not set; set it, "
                    "or leave out --provider to reconcile the configured providers only"
                )
            return [wanted], []
        chosen = [p for p in PROVIDERS if configured[p]]
        if not chosen:
            raise ConfigError(
                "no payment provider is configured: set STRIPE_SECRET_KEY and/or "
                "PAYSTACK_SECRET_KEY to reconcile invoices"
            )
        return chosen, [p for p in PROVIDERS if not configured[p]]

    def window(self, ctx: JobContext) -> dt.datetime:
        since = self.options(ctx, InvoicesReconcileOptions).since or ctx.now - WINDOW
        if since >= ctx.now:
            raise ConfigError(
                f"--since {since.isoformat()} is not before now ({ctx.now.isoformat()}); "
                "pick an earlier start"
            )
        return since

    def plan(self, session: Session, ctx: JobContext) -> Iterator[Action]:
        chosen, skipped = self.selected(ctx)
        since = self.window(ctx)
        actions = [provider_skipped(p, KEY_VARIABLES[p]) for p in skipped]
        if ctx.progress is not None:
            ctx.progress.start(len(chosen))
        # Every provider is read and planned before the first action is yielded: applying
        # early actions cannot change what later findings see.
        for provider in chosen:
            fetched = fetch(provider, ctx.settings, since - SLACK, ctx.now, WEBHOOK_RULES)
            actions += plan_provider(session, provider, fetched, since, ctx.now)
            if ctx.progress is not None:
                ctx.progress.advance(1)
        yield from actions

    def apply(self, session: Session, ctx: JobContext, action: Action) -> None:
        reconcile_apply.apply(session, action, now=ctx.now, actor=ctx.actor, rules=WEBHOOK_RULES)


JOB = InvoicesReconcile()
