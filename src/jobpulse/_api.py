"""What user code calls inside jobs: ``job``, ``step``, ``dependency``, ``heartbeat``.

``heartbeat()`` is the hot path: called millions of times in loops, it reads
the run from the context variable, bumps a counter, stores progress and
compares the clock with the next event time. Everything heavier (span event,
log line) happens at most once per heartbeat interval.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import logging
import time
from collections.abc import Callable
from typing import Any, TypeVar, overload

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import Status, StatusCode

from . import _guard, _lifecycle, _runtime
from . import _names as n
from ._context import current
from ._run import Action, Budget, BudgetExceeded, JobRun, Outcome
from ._textsafe import attribute_value, safe_str
from .guardrails._notes import note_inputs, note_step

F = TypeVar("F", bound=Callable[..., Any])
_log = logging.getLogger(n.LOGGER_NAME)
_monotonic = time.monotonic


# -- heartbeat ------------------------------------------------------------------
def heartbeat(processed: int | None = None, total: int | None = None, **details: Any) -> None:
    """Say "alive, and here is my progress". A no-op outside a run.

    With enforcement on, a run that went over its budget gets
    :class:`BudgetExceeded` raised here: the cooperative cancellation point.
    """
    run = current.get()
    if run is None:
        return
    now = _monotonic()
    run.last_beat = now
    run.heartbeat_count += 1
    if processed is not None:
        run.processed = processed
    if total is not None:
        run.total = total
    if run.cancel_requested_at is not None:
        _raise_budget(run)
    if now >= run.next_event_at:
        _record_heartbeat(run, now, details)


def heartbeat_event_attributes(run: JobRun, details: dict[str, Any]) -> dict[str, Any]:
    attrs: dict[str, Any] = {n.ELAPSED: _monotonic() - run.started_mono}
    if run.processed is not None:
        attrs[n.PROGRESS_PROCESSED] = run.processed
    if run.total is not None:
        attrs[n.PROGRESS_TOTAL] = run.total
    if run.steps:
        attrs[n.STEP_NAME] = run.steps[-1]
    for key, value in details.items():
        attrs[f"jobpulse.detail.{key}"] = attribute_value(value)
    return attrs


def _record_heartbeat(run: JobRun, now: float, details: dict[str, Any]) -> None:
    run.next_event_at = now + run.hb_interval
    with _guard.never_raise("heartbeat"):
        attrs = heartbeat_event_attributes(run, details)
        # One slot is kept for the last heartbeat, recorded at the end of the run.
        if run.span is not None and run.events_recorded < n.MAX_HEARTBEAT_EVENTS - 1:
            run.span.add_event(n.EVENT_HEARTBEAT, attrs)
            run.events_recorded += 1
            run.last_event_beat = run.heartbeat_count
        if _log.isEnabledFor(logging.INFO):
            attrs[n.HEARTBEAT_COUNT] = run.heartbeat_count
            _lifecycle.emit_log(run, logging.INFO, "heartbeat", attrs)


def _raise_budget(run: JobRun) -> None:
    reason = run.stall_reason if run.stall_reason in ("max_runtime", "heartbeat_timeout") else None
    reason = reason or "max_runtime"
    limit = (
        run.budget.heartbeat_timeout if reason == "heartbeat_timeout" else run.budget.max_runtime
    ) or 0.0
    raise BudgetExceeded(run.job_name, reason, limit, _monotonic() - run.started_mono)


# -- job --------------------------------------------------------------------------
def _qualified(fn: Callable[..., Any]) -> str:
    module = getattr(fn, "__module__", None) or ""
    qual = getattr(fn, "__qualname__", None) or getattr(fn, "__name__", "job")
    return f"{module}.{qual}" if module and module != "__main__" else str(qual)


def _over_budget(run: JobRun | None) -> BudgetExceeded | None:
    """For an enforced run that returned after its max runtime: the error its caller gets."""
    if run is None or not run.enforce or run.budget.max_runtime is None:
        return None
    elapsed = _monotonic() - run.started_mono
    if run.cancel_requested_at is None and elapsed <= run.budget.max_runtime:
        return None
    return BudgetExceeded(run.job_name, "max_runtime", run.budget.max_runtime, elapsed)


def _failure(exc: BaseException, run: JobRun | None) -> tuple[Outcome, Action]:
    if isinstance(exc, BudgetExceeded):
        return Outcome.TIMEOUT, Action.STOP
    if isinstance(exc, (asyncio.CancelledError, KeyboardInterrupt, SystemExit, GeneratorExit)):
        return Outcome.CANCELLED, Action.NONE
    return Outcome.ERROR, Action.STOP


def _end_failed(
    run: JobRun | None,
    outcome: Outcome,
    action: Action,
    exc: BaseException,
    inputs: tuple[tuple[Any, ...], dict[str, Any]] | None,
) -> None:
    """End a failed run with the call's arguments on the run, for the guardrails' input
    fingerprint, and only while it ends: never on the exception, which pickles them
    into result backends and pool pipes (``guardrails._notes``)."""
    if inputs is not None:
        note_inputs(run, *inputs)
    try:
        _lifecycle.end_run(run, outcome, action, exc)
    finally:
        if run is not None:
            run.failed_inputs = None


@overload
def job(name: F, /) -> F: ...
@overload
def job(
    name: str | None = None,
    *,
    max_runtime: float | None = None,
    heartbeat_timeout: float | None = None,
    queue_wait: float | None = None,
    max_attempts: int | None = None,
    queue: str | None = None,
    enforce: bool | None = None,
) -> Callable[[F], F]: ...
def job(
    name: Any = None,
    *,
    max_runtime: float | None = None,
    heartbeat_timeout: float | None = None,
    queue_wait: float | None = None,
    max_attempts: int | None = None,
    queue: str | None = None,
    enforce: bool | None = None,
) -> Any:
    """Make every call of a function (plain or ``async def``) a run of a job.

    Budgets are checked here, at decoration time, so a typo fails at import.
    """
    if callable(name):
        return job()(name)
    if name is not None and (not isinstance(name, str) or not name):
        raise ValueError(f"job(name=...) must be a non-empty string, got {name!r}")
    budget = Budget(max_runtime, heartbeat_timeout, queue_wait, max_attempts)

    def decorate(fn: F) -> F:
        job_name = name or _qualified(fn)
        code_function = _qualified(fn)
        q = queue or ""

        if inspect.iscoroutinefunction(fn):

            @functools.wraps(fn)
            async def run_async(*args: Any, **kwargs: Any) -> Any:
                if _runtime.get() is None:
                    return await fn(*args, **kwargs)
                return await drive_coroutine(
                    fn(*args, **kwargs), job_name, queue=q, budget=budget, enforce=enforce,
                    code_function=code_function,
                    attributes=_lifecycle.args_attributes(job_name, fn, args, kwargs),
                    inputs=(args, kwargs),
                )  # fmt: skip

            return run_async  # type: ignore[return-value]

        @functools.wraps(fn)
        def run_sync(*args: Any, **kwargs: Any) -> Any:
            if _runtime.get() is None:
                return fn(*args, **kwargs)
            run = _lifecycle.begin_run(
                job_name, system="function", queue=q, job_budget=budget, enforce=enforce,
                code_function=code_function,
                attributes=_lifecycle.args_attributes(job_name, fn, args, kwargs),
            )  # fmt: skip
            try:
                result = fn(*args, **kwargs)
            except BaseException as exc:
                _end_failed(run, *_failure(exc, run), exc, (args, kwargs))
                raise
            over = _over_budget(run)
            if over is not None:
                _end_failed(run, Outcome.TIMEOUT, Action.STOP, over, (args, kwargs))
                raise over
            _lifecycle.end_run(run, Outcome.SUCCESS, Action.NONE)
            return result

        return run_sync  # type: ignore[return-value]

    return decorate


async def drive_coroutine(
    coro: Any,
    job_name: str,
    *,
    queue: str = "",
    budget: Budget | None = None,
    enforce: bool | None = None,
    code_function: str | None = None,
    attributes: dict[str, Any] | None = None,
    inputs: tuple[tuple[Any, ...], dict[str, Any]] | None = None,
) -> Any:
    """Await ``coro`` as one run of ``job_name`` (system ``asyncio``) in the current task.

    With enforcement, the watchdog cancels the task when the run goes over its
    budget; the cancellation is turned into :class:`BudgetExceeded` for the caller.
    ``inputs``: the call's ``(args, kwargs)``, kept on the run while a failed run ends
    (as ``job`` does for plain functions) so the guardrails' quarantine payload gets an
    input fingerprint.
    """
    run = _lifecycle.begin_run(
        job_name, system="asyncio", queue=queue, job_budget=budget, enforce=enforce,
        code_function=code_function, attributes=attributes,
    )  # fmt: skip
    if run is not None:
        run.task = asyncio.current_task()
        run.loop = asyncio.get_running_loop()
    try:
        result = await coro
    except asyncio.CancelledError as exc:
        if run is not None and run.cancel_requested_at is not None:
            _uncancel(run)
            budget_exc = _over_budget(run) or BudgetExceeded(
                job_name, "max_runtime", run.budget.max_runtime or 0.0, run.elapsed
            )
            _end_failed(run, Outcome.TIMEOUT, Action.STOP, budget_exc, inputs)
            raise budget_exc from exc
        _lifecycle.end_run(run, Outcome.CANCELLED, Action.NONE, exc)
        raise
    except BaseException as exc:
        _end_failed(run, *_failure(exc, run), exc, inputs)
        raise
    over = _over_budget(run)
    if over is not None:
        _end_failed(run, Outcome.TIMEOUT, Action.STOP, over, inputs)
        raise over
    _lifecycle.end_run(run, Outcome.SUCCESS, Action.NONE)
    return result


def _uncancel(run: JobRun) -> None:
    task = run.task
    uncancel = getattr(task, "uncancel", None)
    if uncancel is not None:
        uncancel()


# -- step and dependency ---------------------------------------------------------
class _Scope:
    """A span scope usable as ``with``, ``async with`` and a decorator."""

    def __init__(self) -> None:
        self._stack: list[Any] = []

    def _clone(self) -> _Scope:
        raise NotImplementedError

    def _enter(self, is_async: bool) -> None:
        raise NotImplementedError

    def _exit(self, exc: BaseException | None) -> BaseException | None:
        raise NotImplementedError

    def __enter__(self) -> _Scope:
        self._enter(False)
        return self

    def __exit__(self, et: Any, exc: BaseException | None, tb: Any) -> None:
        replacement = self._exit(exc)
        if replacement is not None and replacement is not exc:
            raise replacement from exc

    async def __aenter__(self) -> _Scope:
        self._enter(True)
        return self

    async def __aexit__(self, et: Any, exc: BaseException | None, tb: Any) -> None:
        replacement = self._exit(exc)
        if replacement is not None and replacement is not exc:
            raise replacement from exc

    def __call__(self, fn: F) -> F:
        if inspect.iscoroutinefunction(fn):

            @functools.wraps(fn)
            async def wrapped_async(*args: Any, **kwargs: Any) -> Any:
                async with self._clone():
                    return await fn(*args, **kwargs)

            return wrapped_async  # type: ignore[return-value]

        @functools.wraps(fn)
        def wrapped(*args: Any, **kwargs: Any) -> Any:
            with self._clone():
                return fn(*args, **kwargs)

        return wrapped  # type: ignore[return-value]


def _end_span(span: Any, exc: BaseException | None, error: bool) -> None:
    if error:
        if exc is not None:
            _lifecycle.record_exception(span, exc)
        span.set_status(Status(StatusCode.ERROR, safe_str(exc) if exc is not None else None))
    span.end()


class step(_Scope):
    """A coarse stage inside a run: ``with jobpulse.step("ExportOrders"): ...``.

    Entering a step is a cancellation point for enforced runs over budget.
    Outside a run it does nothing.
    """

    def __init__(self, name: str) -> None:
        super().__init__()
        self.name = name

    def _clone(self) -> step:
        return step(self.name)

    def _enter(self, is_async: bool) -> None:
        run = current.get()
        rt = _runtime.get()
        if run is None or rt is None:
            self._stack.append(None)
            return
        if run.cancel_requested_at is not None:
            _raise_budget(run)
        entry = None
        with _guard.never_raise("step"):
            span = rt.tracer.start_span(self.name, attributes={n.STEP_NAME: self.name})
            token = otel_context.attach(trace.set_span_in_context(span))
            run.steps.append(self.name)
            entry = (run, span, token)
        self._stack.append(entry)

    def _exit(self, exc: BaseException | None) -> BaseException | None:
        entry = self._stack.pop() if self._stack else None
        if entry is None:
            return None
        run, span, token = entry
        note_step(exc, self.name)  # guardrails: the step a run failed in
        with _guard.never_raise("step"):
            if run.steps and run.steps[-1] == self.name:
                run.steps.pop()
            _lifecycle._safe_detach(token)
            _end_span(span, exc, exc is not None and not isinstance(exc, GeneratorExit))
        return None


def _is_timeout(exc: BaseException | None) -> bool:
    if exc is None:
        return False
    if isinstance(exc, TimeoutError) and not isinstance(exc, BudgetExceeded):
        return True
    return "Timeout" in type(exc).__name__ and not isinstance(exc, BudgetExceeded)


class dependency(_Scope):
    """A call out of the run with its timeout budget: ``dependency("http:Vendor", timeout=30)``.

    Sync form: the timeout is recorded (outcome ``timeout`` when the call ran
    past it). Async form: the timeout is enforced; the body is cancelled and
    ``TimeoutError`` raised after outcome ``timeout`` is recorded. A call with
    no timeout counts in ``jobpulse.dependency.unbounded_calls``.
    """

    def __init__(self, name: str, *, timeout: float | None = None) -> None:
        super().__init__()
        if timeout is not None and (isinstance(timeout, bool) or not timeout > 0):
            raise ValueError(
                f"dependency(timeout=...) must be a positive number or None, got {timeout!r}"
            )
        self.name = name
        self.timeout = None if timeout is None else float(timeout)

    def _clone(self) -> dependency:
        return dependency(self.name, timeout=self.timeout)

    def _enter(self, is_async: bool) -> None:
        rt = _runtime.get()
        if rt is None:
            self._stack.append(None)
            return
        run = current.get()
        entry = None
        with _guard.never_raise("dependency"):
            attrs: dict[str, Any] = {n.DEPENDENCY_NAME: self.name}
            if self.timeout is not None:
                attrs[n.DEPENDENCY_TIMEOUT] = self.timeout
            else:
                rt.instruments.record_unbounded(self.name)
            span = rt.tracer.start_span(self.name, attributes=attrs)
            token = otel_context.attach(trace.set_span_in_context(span))
            saved = None
            now = _monotonic()
            if run is not None:
                saved = (run.dependency, run.dep_started, run.dep_timeout)
                run.dependency, run.dep_started, run.dep_timeout = self.name, now, self.timeout
            timer = None
            expired: list[bool] = []
            if is_async and self.timeout is not None:
                task = asyncio.current_task()
                if task is not None:

                    def expire() -> None:
                        expired.append(True)
                        task.cancel()

                    timer = asyncio.get_running_loop().call_later(self.timeout, expire)
            entry = (run, span, token, saved, now, timer, expired)
        self._stack.append(entry)

    def _exit(self, exc: BaseException | None) -> BaseException | None:
        entry = self._stack.pop() if self._stack else None
        if entry is None:
            return None
        run, span, token, saved, started, timer, expired = entry
        replacement: BaseException | None = None
        if timer is not None:
            timer.cancel()
        if expired and isinstance(exc, asyncio.CancelledError):
            task = asyncio.current_task()
            uncancel = getattr(task, "uncancel", None)
            if uncancel is not None:
                uncancel()
            replacement = TimeoutError(
                f"dependency {self.name!r} did not answer within its {self.timeout:g}s timeout"
            )
        with _guard.never_raise("dependency"):
            elapsed = _monotonic() - started
            if (
                replacement is not None
                or _is_timeout(exc)
                or (self.timeout is not None and elapsed > self.timeout)
            ):
                outcome = "timeout"
            elif exc is not None and not isinstance(exc, GeneratorExit):
                outcome = "error"
            else:
                outcome = "ok"
            span.set_attribute(n.DEPENDENCY_OUTCOME, outcome)
            _lifecycle._safe_detach(token)
            _end_span(span, replacement or exc, outcome != "ok")
            rt = _runtime.get()
            if rt is not None:
                rt.instruments.record_dependency(self.name, outcome, elapsed)
            if run is not None:
                if saved is not None:
                    run.dependency, run.dep_started, run.dep_timeout = saved
                if outcome == "timeout" and _log.isEnabledFor(logging.WARNING):
                    fields: dict[str, Any] = {
                        n.DEPENDENCY_NAME: self.name,
                        n.OUTCOME: "timeout",
                    }
                    if self.timeout is not None:
                        fields[n.DEPENDENCY_TIMEOUT] = self.timeout
                    _lifecycle.emit_log(
                        run, logging.WARNING,
                        f"dependency {self.name} over its timeout after {elapsed:.3f}s", fields,
                    )  # fmt: skip
        return replacement
