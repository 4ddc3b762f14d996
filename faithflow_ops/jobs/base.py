"""The job contract (DESIGN §2): a plan that yields Actions, and an idempotent apply.

The plain data (`Action`, `ActionResult`, `StaleAction`, `parse_time`) lives in
`faithflow_ops.actions` so domain code can use it without importing a job; it is re-exported
here for the jobs."""

from __future__ import annotations

import datetime as dt
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Literal, Protocol, TypeVar

from faithflow_ops.actions import Action, ActionResult, Outcome, StaleAction, parse_time
from faithflow_ops.jobs.options import NoOptions

__all__ = [
    "Action",
    "ActionResult",
    "Job",
    "JobContext",
    "Outcome",
    "Progress",
    "StaleAction",
    "Trigger",
    "parse_time",
]

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from faithflow_ops.config import Settings
    from faithflow_ops.db import Database

Trigger = Literal["cli", "http", "scheduler"]
OptionsT = TypeVar("OptionsT")


class Progress(Protocol):
    """Where a long plan reports how far it got (a Rich bar on a terminal, else nothing)."""

    def start(self, total: int | None) -> None: ...

    def advance(self, n: int) -> None: ...


@dataclass(frozen=True)
class JobContext:
    now: dt.datetime
    dry_run: bool
    trigger: Trigger
    settings: Settings
    limit: int | None = None
    actor: str = "job"
    progress: Progress | None = None
    # The job's own options (`JobSpec.options`, filled by jobs.options.fill); read them with
    # `Job.options(ctx, TheirClass)`.
    options: object = NoOptions()


class Job(ABC):
    """Base class of every job module's `JOB`.

    Subclasses set the class attributes and implement `plan` and `apply`. Kinds listed in
    `report_only` are findings for a human (conflicts, invalid data): apply records them and
    changes nothing. `apply`/`apply_batch` run on a worker thread while `plan` goes on reading
    the next batch, so they must not share mutable state with the plan.
    """

    name: ClassVar[str]
    report_only: ClassVar[frozenset[str]] = frozenset()
    # Kinds that say the plan itself could not see everything (a provider pull that failed):
    # a run or a preview holding one is `partial`, never `succeeded`.
    failure_kinds: ClassVar[frozenset[str]] = frozenset()
    batch_size: ClassVar[int] = 1  # actions handed to apply_batch at once
    # How a preview shows on a terminal: these columns, `table_rows` rows per action.
    table_columns: ClassVar[tuple[str, ...]] = ("kind", "target", "reason")

    @classmethod
    def table_rows(cls, action: Action) -> list[tuple[Any, ...]]:
        """The rows one action shows as in a terminal table (one per change, say)."""
        return [(action.kind, action.target, action.reason)]

    @staticmethod
    def options(ctx: JobContext, cls: type[OptionsT]) -> OptionsT:
        """The run's options as `cls`, or its defaults when the caller gave none."""
        return ctx.options if isinstance(ctx.options, cls) else cls()

    def check(self, ctx: JobContext) -> list[str]:
        """Refuse a run that cannot do its work before it takes the lock: raise UserError (a
        bad option) or ConfigError (a missing setting) naming the fix. Returns warnings for
        the operator (what the run will leave out). Nothing is recorded for a refusal."""
        return []

    @abstractmethod
    def plan(self, session: Session, ctx: JobContext) -> Iterator[Action]:
        """Yield what the job would do now; read-only."""

    @abstractmethod
    def apply(self, session: Session, ctx: JobContext, action: Action) -> None:
        """Apply one action or raise StaleAction; runs inside a write transaction."""

    def apply_batch(
        self, session: Session, ctx: JobContext, actions: Sequence[Action]
    ) -> list[Outcome] | None:
        """Apply many actions in one transaction for speed, or return None to go one by one.

        Must be all-or-nothing: return an outcome per action when every one applied, or None
        (after changing nothing) so the runner falls back to `apply` per action, each in its
        own transaction, to find and record the ones that fail.
        """
        return None

    def apply_unmanaged(
        self, db: Database, ctx: JobContext, actions: Sequence[Action]
    ) -> list[ActionResult] | None:
        """Apply a batch in transactions of the job's own, or return None for the default
        (`apply_batch`, then `apply` one by one).

        For jobs whose work must commit between its steps — claim a row, call the outside
        world, record the outcome (`comms dispatch`) — and may run the outside calls
        concurrently. Return one ActionResult per action, in order; one action's failure is
        its result, not an exception (an exception fails the run).
        """
        return None
