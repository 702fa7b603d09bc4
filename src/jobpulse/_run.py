"""One attempt at one job, and the words that describe how it ended.

A :class:`JobRun` is the only place run state lives. The context variable in
:mod:`jobpulse._context` points at the current one, the registry holds every
active one, and the watchdog, gauges and exit flush read it. Its fields are
plain attributes, not properties, because ``heartbeat()`` touches them in
tight loops.
"""

from __future__ import annotations

import enum
import time
from dataclasses import dataclass, fields, replace
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import asyncio

    from opentelemetry.trace import Span


class Outcome(str, enum.Enum):
    """What happened to this attempt."""

    SUCCESS = "success"
    ERROR = "error"
    TIMEOUT = "timeout"
    CANCELLED = "cancelled"
    LOST = "lost"


class Action(str, enum.Enum):
    """What happens next: the operators' decision framework."""

    NONE = "none"
    RETRY = "retry"
    STOP = "stop"
    QUARANTINE = "quarantine"
    ESCALATE = "escalate"


_FAILED_ACTIONS = (Action.RETRY, Action.STOP, Action.QUARANTINE, Action.ESCALATE)

#: The (outcome, action) pairs the contract allows; every job's run counter is
#: created at 0 for each of them so the first failure shows in ``increase()``.
ALLOWED_PAIRS: dict[Outcome, tuple[Action, ...]] = {
    Outcome.SUCCESS: (Action.NONE,),
    Outcome.ERROR: _FAILED_ACTIONS,
    Outcome.TIMEOUT: _FAILED_ACTIONS,
    Outcome.LOST: _FAILED_ACTIONS,
    Outcome.CANCELLED: (Action.NONE, Action.RETRY, Action.STOP),
}

FAILED_OUTCOMES = frozenset({Outcome.ERROR, Outcome.TIMEOUT, Outcome.LOST})


def coerce_pair(outcome: Outcome, action: Action | None) -> Action:
    """Return an allowed action for ``outcome``.

    Adapters pass what the framework told them; when that is missing or not a
    legal pair (a framework quirk), fall back to the pair an operator would
    expect rather than emit a series the alerts do not know.
    """
    allowed = ALLOWED_PAIRS[outcome]
    if action in allowed:
        return action  # type: ignore[return-value]
    if outcome is Outcome.SUCCESS or outcome is Outcome.CANCELLED:
        return Action.NONE
    return Action.STOP


def stopped_by_budget(run: JobRun | None, outcome: Outcome, exc: BaseException | None) -> Outcome:
    """``timeout`` for a run that its budget stopped (a ``BudgetExceeded``, or an error or
    cancellation after enforcement asked it to stop), whatever the stop looked like;
    ``outcome`` otherwise. One rule for the core and for adapters that settle an
    outcome before the core sees it."""
    if isinstance(exc, BudgetExceeded) or (
        run is not None
        and run.cancel_requested_at is not None
        and outcome in (Outcome.ERROR, Outcome.CANCELLED)
    ):
        return Outcome.TIMEOUT
    return outcome


class BudgetExceeded(TimeoutError):
    """Raised into an enforced run that went past its budget.

    A ``TimeoutError`` so that code which already handles timeouts handles
    this one too. Raised only when enforcement is on.
    """

    # Its public home: error.type reads ``jobpulse.BudgetExceeded``, and pickles
    # (Celery result backends, pool pipes) name the module users import it from.
    __module__ = "jobpulse"

    def __init__(self, job: str, reason: str, limit: float, elapsed: float) -> None:
        self.job = job
        self.reason = reason
        self.limit = limit
        self.elapsed = elapsed
        super().__init__(f"{job}: {reason} budget of {limit:g}s exceeded after {elapsed:.3f}s")

    def __reduce__(self) -> tuple[type[BudgetExceeded], tuple[str, str, float, float]]:
        return (type(self), (self.job, self.reason, self.limit, self.elapsed))


@dataclass(frozen=True)
class Budget:
    """Limits a run must stay inside. ``None`` means "no limit known here".

    max_runtime: seconds, one attempt from start to end.
    heartbeat_timeout: seconds, the longest silence between heartbeats.
    queue_wait: seconds, from when the run became due to its start.
    max_attempts: how many attempts a job gets, the first included.
    """

    max_runtime: float | None = None
    heartbeat_timeout: float | None = None
    queue_wait: float | None = None
    max_attempts: int | None = None

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
                raise ValueError(
                    f"Budget.{f.name} must be a positive number or None, got {value!r}"
                )
        if self.max_attempts is not None and not float(self.max_attempts).is_integer():
            raise ValueError(
                f"Budget.max_attempts must be a whole number, got {self.max_attempts!r}"
            )

    def over(self, other: Budget | None) -> Budget:
        """This budget, with ``other`` filling the fields this one leaves open."""
        if other is None:
            return self
        return replace(
            self,
            **{
                f.name: getattr(other, f.name)
                for f in fields(self)
                if getattr(self, f.name) is None and getattr(other, f.name) is not None
            },
        )


class JobRun:
    """One attempt at one job (rq's Execution, not its Job).

    Public read-only view for users: ``job_name``, ``run_id``, ``job_id``,
    ``attempt``, ``system``, ``queue``, ``budget``, ``elapsed``, ``step``,
    ``dependency``, ``processed``, ``total``. Everything else is jobpulse's.
    """

    __slots__ = (
        "__weakref__",
        "attempt",
        "budget",
        "cancel_requested_at",
        "code_function",
        "ctx_token",
        "dep_started",
        "dep_timeout",
        "dependency",
        "ended",
        "enforce",
        "events_recorded",
        "extra_attributes",
        "failed_inputs",
        "hb_interval",
        "heartbeat_count",
        "job_id",
        "job_name",
        "last_beat",
        "last_event_beat",
        "loop",
        "next_event_at",
        "otel_token",
        "processed",
        "queue",
        "record_metrics",
        "run_id",
        "span",
        "stall_reason",
        "started_at",
        "started_mono",
        "steps",
        "system",
        "task",
        "thread_id",
        "total",
        "zombie",
    )

    def __init__(
        self,
        *,
        job_name: str,
        job_id: str,
        run_id: str,
        attempt: int,
        system: str,
        queue: str,
        budget: Budget,
        enforce: bool,
        hb_interval: float,
        thread_id: int,
        record_metrics: bool = True,
        code_function: str | None = None,
    ) -> None:
        self.job_name = job_name
        self.job_id = job_id
        self.run_id = run_id
        self.attempt = attempt
        self.system = system
        self.queue = queue
        self.budget = budget
        self.enforce = enforce
        self.hb_interval = hb_interval
        self.thread_id = thread_id
        self.record_metrics = record_metrics
        self.code_function = code_function
        self.started_at = time.time()
        self.started_mono = time.monotonic()
        self.last_beat = self.started_mono
        self.next_event_at = self.started_mono  # the first heartbeat is always recorded
        self.heartbeat_count = 0
        self.events_recorded = 0
        self.last_event_beat = 0  # heartbeat_count when the last event was recorded
        self.processed: int | None = None
        self.total: int | None = None
        self.steps: list[str] = []
        self.dependency: str | None = None
        self.dep_started: float = 0.0
        self.dep_timeout: float | None = None
        self.span: Span | None = None
        self.stall_reason: str | None = None
        self.cancel_requested_at: float | None = None
        self.zombie = False
        self.ended = False
        self.task: asyncio.Task[Any] | None = None
        self.loop: asyncio.AbstractEventLoop | None = None
        self.extra_attributes: dict[str, Any] = {}
        # the failing call's (args, kwargs), only while a @jobpulse.job run whose
        # guardrails enforce ends (input fingerprint); never on the exception, which
        # result backends and pool pipes pickle
        self.failed_inputs: tuple[tuple[Any, ...], dict[str, Any]] | None = None
        self.ctx_token: Any = None
        self.otel_token: Any = None

    @property
    def elapsed(self) -> float:
        """Seconds since this attempt started."""
        return time.monotonic() - self.started_mono

    @property
    def step(self) -> str | None:
        """The innermost step this run is in, if any."""
        return self.steps[-1] if self.steps else None

    def __repr__(self) -> str:
        return (
            f"<JobRun {self.job_name} run_id={self.run_id} job_id={self.job_id} "
            f"attempt={self.attempt} elapsed={self.elapsed:.3f}s>"
        )
