"""One RQ run in the process that executes it: begin, end, outcome, retries.

The run span is started around ``Worker.perform_job`` (in the work horse for
the forking ``Worker``, in the worker itself for ``SimpleWorker``), so it
covers what RQ does for the attempt: the job, its callbacks, saving the
result. The outcome comes from RQ's own decisions: the exception the worker
handled (``handle_exception``), and whether RQ put the job back in a queue
(``retry``) or not (``stop``).
"""

from __future__ import annotations

import datetime as _dt
import time
from typing import Any

from opentelemetry.trace import SpanContext, SpanKind

from ... import _guard, _lifecycle, _runtime
from ... import _names as n
from ..._run import Action, Budget, JobRun, Outcome, coerce_pair, stopped_by_budget
from ..._textsafe import error_type_of
from . import _attrs, _meta

FINISHED = "finished"
REQUEUED = frozenset({"queued", "scheduled"})
STOPPED = "stopped"
RETRY_RESULT = "rq.job.Retry"

#: exception types (set at install) that mean the run's own time budget ran out,
#: and those that mean the worker is shutting down under it
TIMEOUTS: tuple[type[BaseException], ...] = ()
SHUTDOWNS: tuple[type[BaseException], ...] = ()
RETRY_TYPE: type | None = None


class RunState:
    """What this process knows about a run of an RQ job it is handling."""

    __slots__ = (
        "attempt",
        "attrs",
        "before_fork",
        "budget",
        "exc",
        "job_name",
        "previous",
        "producer",
        "queue",
        "requeued",
        "run",
        "wait",
    )

    def __init__(self, attempt: int) -> None:
        self.attempt = attempt
        self.run: JobRun | None = None
        #: the run was started by the forking worker, for the horse to make current
        self.before_fork = False
        self.exc: BaseException | None = None
        self.requeued = False
        self.job_name = "unknown"
        self.queue = ""
        self.producer: SpanContext | None = None
        self.previous: SpanContext | None = None
        self.wait: float | None = None
        self.budget: Budget | None = None
        self.attrs: dict[str, Any] = {}


#: job id -> the run of it this process is handling (a retry saved meanwhile bumps
#: the attempt in the job's meta)
active: dict[str, RunState] = {}
_budgets: dict[tuple[float | None, int], Budget] = {}


def attempt_of(job: Any) -> int:
    found = _meta.number(_meta.entry(job), "attempt")
    if found is not None and found >= 1:
        return int(found)
    return 1 + int(getattr(job, "number_of_retries", None) or 0)


def _timestamp(value: Any) -> float | None:
    if not isinstance(value, _dt.datetime):
        return None
    if value.tzinfo is None:
        value = value.replace(tzinfo=_dt.timezone.utc)
    return float(value.timestamp())


def framework_budget(job: Any, queue: Any, attempt: int) -> Budget:
    """RQ's limits: the job's timeout (``-1`` is none) and its retries."""
    timeout = getattr(job, "timeout", None)
    if timeout is None:
        timeout = getattr(queue, "_default_timeout", None) or getattr(
            queue, "DEFAULT_TIMEOUT", None
        )
    max_runtime = float(timeout) if isinstance(timeout, (int, float)) and timeout > 0 else None
    retries = getattr(job, "retries_left", None)
    max_attempts = attempt + (retries if isinstance(retries, int) and retries > 0 else 0)
    key = (max_runtime, max_attempts)
    budget = _budgets.get(key)
    if budget is None:
        budget = Budget(max_runtime=max_runtime, max_attempts=max_attempts)
        if len(_budgets) < 1000:
            _budgets[key] = budget
    return budget


def describe(
    job: Any, queue: Any, state: RunState | None = None, name: str | None = None
) -> RunState:
    """Everything about the run that the job and its meta say (``name``: the job's,
    when the caller has it)."""
    state = state or RunState(attempt_of(job))
    found = _meta.entry(job)
    state.job_name = name or _attrs.job_name(job)
    state.queue = queue.name
    state.producer = _meta.span_context(found)
    state.previous = _meta.span_context(found, "previous")
    due = _meta.number(found, "enqueued_at")
    if due is None:
        due = _timestamp(getattr(job, "enqueued_at", None))
    state.wait = max(0.0, time.time() - due) if due is not None else None
    state.budget = framework_budget(job, queue, state.attempt)
    attrs = dict(_attrs.base(queue, "process"))
    attrs[n.MESSAGING_MESSAGE_ID] = job.id
    rt = _runtime.get()
    if rt is not None and rt.settings.record_args:
        attrs.update(_attrs.args(job, rt.settings.args_allowed(state.job_name)))
    state.attrs = attrs
    return state


def begin_before_fork(worker: Any, job: Any, queue: Any, run_id: str | None) -> None:
    """The forking worker, just before it forks the horse: describe the run and start
    its span here, for the horse only to make current (:func:`begin`).

    A horse pays a copy-on-write page fault (some microseconds) for every page of
    its parent's memory it writes, and running code writes the pages of every
    object it touches: describing and starting a run cost a horse about 1 ms, and
    the worker a tenth of that. The span starts just before the fork, so it covers
    the fork too. The run is neither registered nor current here: the worker's
    watchdog must not watch a run whose heartbeats happen in another process.
    Skipped when it would take unpickling the job's payload (another serializer,
    or its arguments recorded): the horse starts the run then.
    """
    state = active.get(job.id)
    rt = _runtime.get()
    if state is None or rt is None:
        return
    with _guard.never_raise("adapter.rq.begin"):
        name = _attrs.job_name_without_unpickling(job)
        if name is None or (rt.settings.record_args and rt.settings.args_allowed(name)):
            return
        describe(job, queue, state, name)
        state.run = _start(worker, job, state, run_id, record_metrics=False, here=False)
        state.before_fork = state.run is not None


def take_begun_span(state: RunState) -> Any:
    """The run span this worker began before the fork, for the one who records the run
    here instead of its horse (once: the horse no longer owns it), or None."""
    if not state.before_fork or state.run is None:
        return None
    state.before_fork = False
    return state.run.span


def begin(
    worker: Any, job: Any, queue: Any, run_id: str | None, record_metrics: bool
) -> RunState | None:
    """Start the run span of an attempt in the process that performs it (in a horse,
    make current the run its worker started before the fork)."""
    state: RunState | None = None
    with _guard.never_raise("adapter.rq.begin"):
        found = active.get(job.id)
        if found is not None and found.before_fork and found.run is not None:
            found.before_fork = False
            _lifecycle.activate_run(found.run)
            return found
        state = describe(job, queue)
        active[job.id] = state
        state.run = _start(worker, job, state, run_id, record_metrics, here=True)
    return state


def _start(
    worker: Any, job: Any, state: RunState, run_id: str | None, record_metrics: bool, here: bool
) -> JobRun | None:
    return _lifecycle.begin_run(
        state.job_name,
        system=_attrs.SYSTEM,
        job_id=job.id,
        run_id=run_id,
        attempt=state.attempt,
        queue=state.queue,
        framework_budget=state.budget,
        producer=state.producer,
        links=(state.previous,) if state.previous is not None else (),
        queue_wait=state.wait,
        kind=SpanKind.CONSUMER,
        attributes=state.attrs,
        code_function=state.job_name,
        record_metrics=record_metrics,
        activate=here,
        register=here,
        worker=getattr(worker, "name", None),
    )


def failure(exc: BaseException | None, job: Any, status: Any) -> tuple[Outcome, Action]:
    """Outcome and action of an attempt that did not succeed, as RQ decided it."""
    if exc is not None and isinstance(exc, TIMEOUTS):
        outcome = Outcome.TIMEOUT
    elif exc is not None and isinstance(exc, SHUTDOWNS):
        outcome = Outcome.CANCELLED
    else:
        outcome = Outcome.ERROR
    if status in REQUEUED:
        return outcome, Action.RETRY
    return outcome, Action.NONE if outcome is Outcome.CANCELLED else Action.STOP


def end(
    state: RunState | None, job: Any, ok: Any, raised: BaseException | None
) -> tuple[Outcome, Action, str | None, float | None] | None:
    """Finish the run from RQ's verdict; returns what was recorded (outcome, action,
    error type, duration) for a parent process to count."""
    if state is None:
        return None
    active.pop(str(getattr(job, "id", "")), None)
    run = state.run
    result: tuple[Outcome, Action, str | None, float | None] | None = None
    with _guard.never_raise("adapter.rq.end"):
        exc = raised or state.exc
        status = job.get_status(refresh=False)
        error_type: str | None = None
        returned = getattr(job, "_result", None)
        if exc is None and ok and not (RETRY_TYPE and isinstance(returned, RETRY_TYPE)):
            outcome, action = Outcome.SUCCESS, Action.NONE
        else:
            outcome, action = failure(exc, job, status)
            if exc is None and ok:
                error_type = RETRY_RESULT  # the job returned rq.Retry: a failed attempt
        outcome = stopped_by_budget(run, outcome, exc)  # the rule end_run applies
        action = coerce_pair(outcome, action)
        if outcome in (Outcome.ERROR, Outcome.TIMEOUT, Outcome.LOST) and error_type is None:
            error_type = error_type_of(exc) if exc is not None else outcome.value
        duration = run.elapsed if run is not None else None
        _lifecycle.end_run(run, outcome, action, exc, error_type=error_type)
        recorded = getattr(run.span, "attributes", None) if run is not None else None
        if recorded is not None:  # the guardrails may have changed the action (quarantine)
            action = Action(recorded.get(n.ACTION, action.value))
        result = (outcome, action, error_type, duration)
    if run is not None and not run.ended:  # a failure above: never leave the run open
        _lifecycle.end_run(run, Outcome.ERROR, Action.STOP)
    return result


def requeued(job: Any, due: float) -> None:
    """RQ is saving ``job`` on its way back into a queue (``due`` = when it is due).

    For a retry of a run this process is handling, the next attempt's number and
    this run's span context go into the meta, which RQ saves right after.
    """
    state = active.get(job.id)
    found = _meta.entry(job)
    if state is not None and not state.requeued:
        state.requeued = True
        found = _meta.ensure_entry(job)
        if found is not None:
            if job.get_status(refresh=False) == FINISHED:  # a Repeat: a new first attempt
                found.pop("attempt", None)
                found.pop("previous", None)
            else:
                found["attempt"] = state.attempt + 1
                # (in the worker, for a horse that died: the span the worker started
                # before the fork, which it records the run on)
                span = state.run.span if state.run is not None else None
                ctx = span.get_span_context() if span is not None else None
                previous = _meta.traceparent(ctx) if ctx is not None else {}
                if "traceparent" in previous:
                    found["previous"] = previous["traceparent"]
                else:
                    found.pop("previous", None)
    if found is not None:
        found["enqueued_at"] = due
