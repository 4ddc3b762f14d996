"""`faithflow comms dispatch`: send the outbox's due messages (docs/comms.md).

The decisions live in `faithflow_ops.comms`. `dispatch` plans: `mark_unknown` (a claim whose
lease ran out: outcome unknown, never re-sent automatically), `suppress` (a due message whose
recipient is now suppressed) and `send` (due messages, by priority then due time). `sending`
applies: it claims each message just before its provider call (at most
FAITHFLOW_COMMS_CONCURRENCY at a time, a conditional UPDATE committed first), sends them
concurrently and records each outcome as it comes (`outcomes`: what a provider's answer means)
while the claim holds; SIGTERM finishes the sends in flight and leaves the rest queued. The
runner hands the batches to `apply_unmanaged`, since a send needs transactions of its own.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

from sqlalchemy.orm import Session

from faithflow_ops.comms import dispatch, sending
from faithflow_ops.db import Database
from faithflow_ops.dunning import cases as dunning_cases
from faithflow_ops.dunning.send_time import quiet_holds
from faithflow_ops.jobs.base import Action, ActionResult, Job, JobContext, StaleAction

# Dunning messages wait for the tenant's quiet hours on every attempt, not only the first.
QUIET = dispatch.QuietRule(frozenset({dunning_cases.CATEGORY}), quiet_holds)


class CommunicationsDispatch(Job):
    name = "communications_dispatch"
    batch_size = 2000  # sends claimed, sent and marked together
    table_columns = ("kind", "message", "channel", "to", "template", "attempts", "due")

    @classmethod
    def table_rows(cls, action: Action) -> list[tuple[Any, ...]]:
        d = action.data
        due = d.get("scheduled_at") or d.get("lease_expired_at")
        return [
            (
                action.kind,
                d.get("message"),
                d.get("channel"),
                d.get("to"),
                d.get("template"),
                d.get("attempts"),
                due,
            )
        ]

    def plan(self, session: Session, ctx: JobContext) -> Iterator[Action]:
        if not ctx.dry_run:  # SIGTERM: finish the sends in flight, leave the rest queued
            sending.stop_on_signals()
        actions = list(dispatch.plan(session, ctx.now, ctx.limit, quiet=QUIET))
        if ctx.progress is not None:
            ctx.progress.start(len(actions))
        yield from actions

    def apply(self, session: Session, ctx: JobContext, action: Action) -> None:
        if action.kind == dispatch.MARK_UNKNOWN:
            sending.apply_mark_unknown(session, ctx.now, action)
        elif action.kind == dispatch.SUPPRESS:
            sending.apply_suppress(session, ctx.now, action)
        elif action.kind == dispatch.DEFER:
            sending.apply_defer(session, ctx.now, action)
        elif action.kind == dispatch.SEND:
            # A send commits its claim before the provider call: it cannot live in the one
            # transaction `apply` is given. The runner sends through `apply_unmanaged`.
            raise ValueError("send actions are applied by apply_unmanaged (claim, send, mark)")
        else:
            raise ValueError(f"comms dispatch has no action kind {action.kind!r}")

    def apply_unmanaged(
        self, db: Database, ctx: JobContext, actions: Sequence[Action]
    ) -> list[ActionResult] | None:
        results: dict[int, ActionResult] = {}
        sends = [a for a in actions if a.kind == dispatch.SEND]
        for action in actions:
            if action.kind == dispatch.SEND:
                continue
            try:
                with db.session() as session:
                    self.apply(session, ctx, action)
                results[id(action)] = ActionResult(action, "applied")
            except StaleAction as exc:
                results[id(action)] = ActionResult(action, "stale", str(exc) or None)
            except Exception as exc:
                results[id(action)] = ActionResult(action, "failed", f"{type(exc).__name__}: {exc}")
        if sends:
            for result in sending.send_batch(db, ctx.settings, ctx.now, sends):
                results[id(result.action)] = result
        if ctx.progress is not None:
            ctx.progress.advance(len(actions))
        return [results[id(a)] for a in actions]


JOB = CommunicationsDispatch()
