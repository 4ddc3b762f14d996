"""`faithflow dunning run` (preview: `dunning preview` = `run --dry-run`): the past-due recovery
ladder. The runbook is docs/dunning.md; this docstring is the contract.

Action kinds:

- `send_step`: the ladder step now due on an open case, on the channels the tenant's
  preferences allow (blocked channels are listed with the reason), scheduled for the first
  minute allowed by the suppression window (at most one dunning message per tenant per
  `FAITHFLOW_DUNNING_WINDOW_HOURS`, default 20; all channels of one step are one contact and go
  together) and the tenant's quiet hours. Applying it enqueues one outbox message per channel
  (`not_before` = the scheduled minute, idempotency key `dunning:{case}:{step}:{channel}`,
  category `dunning`, about the `dunning_attempts` row) and records that row, together.
- `retry_payment`: the step retries the payment at the provider (dunning/retry.py). The attempt
  row is claimed and committed first, the provider called with no transaction open, then the
  outcome recorded; a crash in between leaves the claim without an outcome (never charged twice).
- `handover`: the step hands the case over to suspension (`handed_over_at`); `subs automate`
  suspends the tenant once its grace has run out.
- `skip_steps`: steps passed over, recorded as skipped attempts so they never fire late: the
  earlier steps when several are overdue at once (a case found late: only the latest due step
  is taken), or a step every channel of which the tenant's preferences block (opt-out).
- `open_case` / `close_case`: the safety net for anything that bypassed the hook in
  `set_subscription_status`: a past-due subscription of an active tenant with no open case; an
  open case whose subscription is no longer past due (recovered, canceled, suspended) or whose
  tenant is suspended or gone.
- `paused` (report-only): the tenant paused dunning until a promised payment; nothing is sent
  or charged until then, and the latest step due at the end of the pause is taken.
- `held` (report-only): a step with a payment retry due in the church's quiet hours; it is
  taken when they end (`until`).
- `waiting` (report-only, the preview only): an open case with no step due — its next step
  and when, and what each step taken did (sent, delivered, scheduled for …, skipped and why).
- `no_contact` (report-only, a human must act): every channel of the step due lacks a contact
  (no email address or phone number); it repeats until one is added or the next step is due.

A step is due once `past_due_since + offset <= now` and no later step was taken; it is never
dropped and never sent early: held back by the window or quiet hours it is scheduled, not
skipped. plan reads everything in a few set-based queries before the first action is yielded
(the runner applies early batches while the plan goes on), so a second run at the same `now`
plans no new sends. apply re-checks that the case is still open (`UPDATE … WHERE status =
'open'`, rowcount) — a payment recovered between preview and run sends nothing — and inserts
each attempt `ON CONFLICT DO NOTHING` (a step is never taken twice).

The rules live in the dunning package: `dunning.planner` decides (plan), `dunning.steps`
applies; this module is the job's glue.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

from sqlalchemy.orm import Session

from faithflow_ops.billing.grace import DEFAULT_GRACE_DAYS, plan_grace
from faithflow_ops.dunning import planner, steps
from faithflow_ops.jobs.base import Action, Job, JobContext, Outcome, StaleAction
from faithflow_ops.money import format_money

KINDS = planner.KINDS
GRACE = planner.GraceRule(plan_grace, DEFAULT_GRACE_DAYS)


class Dunning(Job):
    name = "dunning"
    report_only = planner.REPORT_ONLY
    batch_size = 100  # send_step/skip/handover actions per transaction
    table_columns = (
        "kind",
        "tenant",
        "case",
        "amount",
        "days",
        "step",
        "channels",
        "scheduled (UTC)",
        "held back / reason",
    )

    @classmethod
    def table_rows(cls, action: Action) -> list[tuple[Any, ...]]:
        d = action.data
        amount = (
            format_money(d["amount_minor"], d["currency"])  # a case holds ISO 4217 units
            if "amount_minor" in d
            else ""
        )
        channels = ", ".join(d.get("channels") or ())
        blocked = d.get("blocked") or {}
        if blocked:
            channels += (" " if channels else "") + " ".join(
                f"(-{ch}: {why})" for ch, why in blocked.items()
            )
        held = "; ".join(d.get("held_back") or ()) or action.reason
        return [
            (
                action.kind,
                d.get("tenant"),
                d.get("case_id") or action.target,
                amount,
                d.get("days_past_due", ""),
                d.get("step", ""),
                channels,
                d.get("scheduled_at", ""),
                held,
            )
        ]

    def plan(self, session: Session, ctx: JobContext) -> Iterator[Action]:
        actions = planner.plan_actions(session, ctx.now, ctx.settings, GRACE, explain=ctx.dry_run)
        if ctx.progress is not None:
            ctx.progress.start(len(actions))
        yield from actions

    def apply(self, session: Session, ctx: JobContext, action: Action) -> None:
        steps.apply(session, action, now=ctx.now, actor=ctx.actor, settings=ctx.settings)

    def apply_batch(
        self, session: Session, ctx: JobContext, actions: Sequence[Action]
    ) -> list[Outcome] | None:
        # Payment retries call a provider outside any transaction: never in a batch.
        if any(a.kind in steps.UNBATCHED for a in actions):
            return None
        try:
            for action in actions:
                self.apply(session, ctx, action)
                session.flush()
        except StaleAction:
            return None  # the runner rolls back and applies them one by one
        return ["applied"] * len(actions)


JOB = Dunning()
