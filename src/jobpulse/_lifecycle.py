"""The verbs adapters speak: a run started, a run finished, a run was recorded by someone else.

Adapters (Celery, RQ, asyncio, ``@jobpulse.job``) only translate a framework's
lifecycle into these calls; spans, metrics, logs, budgets and the watchdog are
all here. Every verb is safe to call with odd input and never raises into the
job (failures are counted in ``jobpulse.telemetry.errors``).
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Mapping, Sequence
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import Link, SpanKind, Status, StatusCode

from . import _guard, _runtime
from . import _names as n
from ._context import current
from ._loghandler import direct_handler
from ._registry import JobKey
from ._run import (
    FAILED_OUTCOMES,
    Action,
    Budget,
    JobRun,
    Outcome,
    coerce_pair,
    stopped_by_budget,
)
from ._textsafe import error_type_of, safe_str
from .guardrails import _hook as _guardrails

_log = logging.getLogger(n.LOGGER_NAME)
_EMPTY_CONTEXT = otel_context.Context()
#: members and values to members, without Enum's call machinery on the hot path
_OUTCOMES: dict[Any, Outcome] = {**{o: o for o in Outcome}, **{o.value: o for o in Outcome}}
_ACTIONS: dict[Any, Action] = {**{a: a for a in Action}, **{a.value: a for a in Action}}


_getrandbits = random.getrandbits  # reseeded by the random module after fork


def new_id() -> str:
    """A 128-bit random id as 32 hex digits (uuid4's entropy, a tenth of its cost)."""
    return f"{_getrandbits(128):032x}"


#: cleared by instrument()/uninstrument(): settings decide part of the answer
budget_cache: dict[tuple[str, Budget | None, Budget | None], Budget] = {}


def resolve_budget(
    job_name: str, job_budget: Budget | None = None, framework_budget: Budget | None = None
) -> Budget:
    """The budget a run gets: ``budgets`` option > the job's own > framework > default."""
    rt = _runtime.get()
    key = (job_name, job_budget, framework_budget)
    cached = budget_cache.get(key)
    if cached is not None:
        return cached
    budget = Budget()
    if rt is not None:
        budget = budget.over(rt.settings.budget_for(job_name))
    budget = budget.over(job_budget).over(framework_budget)
    if rt is not None:
        budget = budget.over(rt.settings.default_budget)
    if len(budget_cache) > 4096:
        budget_cache.clear()
    budget_cache[key] = budget
    return budget


ARG_PREFIX = "jobpulse.job.arg."


def args_attributes(
    job_name: str, fn: Any, args: Sequence[Any], kwargs: Mapping[str, Any]
) -> dict[str, Any] | None:
    """The job arguments the user allowed for this job (``record_args``), as attributes.

    Nothing is recorded unless the job's allow-list names the argument: job
    arguments carry customer data and secrets more often than not.
    """
    rt = _runtime.get()
    if rt is None or not rt.settings.record_args:
        return None
    allowed = rt.settings.args_allowed(job_name)
    if not allowed:
        return None
    with _guard.never_raise("run.args"):
        import inspect

        bound = inspect.signature(fn).bind_partial(*args, **kwargs)
        return arg_values(allowed, bound.arguments)
    return None


def arg_values(allowed: Sequence[str], values: Mapping[str, Any]) -> dict[str, Any]:
    """``jobpulse.job.arg.<name>`` for each allowed name present, as bounded attribute values."""
    from ._textsafe import attribute_value

    return {ARG_PREFIX + name: attribute_value(values[name]) for name in allowed if name in values}


def _identity(
    job_name: str,
    job_id: str,
    run_id: str,
    attempt: int,
    system: str,
    queue: str,
    budget: Budget,
) -> dict[str, Any]:
    """The run span's identity and budget attributes, shared by every way a run is recorded."""
    attrs: dict[str, Any] = {
        n.JOB_NAME: job_name,
        n.JOB_ID: job_id,
        n.RUN_ID: run_id,
        n.ATTEMPT: attempt,
        n.SYSTEM: system,
    }
    if queue:
        attrs[n.QUEUE_NAME] = queue
    if budget.max_runtime is not None:
        attrs[n.BUDGET_MAX_RUNTIME] = float(budget.max_runtime)
    if budget.heartbeat_timeout is not None:
        attrs[n.BUDGET_HEARTBEAT_TIMEOUT] = float(budget.heartbeat_timeout)
    return attrs


def _parent_context(continue_trace: bool, producer: trace.SpanContext | None) -> Any:
    """A new trace, or (``continue_trace``) the producer's span as the parent."""
    if continue_trace and producer is not None and producer.is_valid:
        return trace.set_span_in_context(trace.NonRecordingSpan(producer))
    return _EMPTY_CONTEXT


def _links(producer: trace.SpanContext | None, extra: Sequence[trace.SpanContext]) -> list[Link]:
    links = []
    for ctx in (producer, *extra):
        if ctx is not None and ctx.is_valid:
            links.append(Link(ctx))
    return links


def begin_run(
    job_name: str,
    *,
    system: str,
    job_id: str | None = None,
    run_id: str | None = None,
    attempt: int = 1,
    queue: str = "",
    job_budget: Budget | None = None,
    framework_budget: Budget | None = None,
    enforce: bool | None = None,
    producer: trace.SpanContext | None = None,
    links: Sequence[trace.SpanContext] = (),
    queue_wait: float | None = None,
    redelivered: bool | None = None,
    kind: SpanKind = SpanKind.INTERNAL,
    attributes: Mapping[str, Any] | None = None,
    code_function: str | None = None,
    record_metrics: bool = True,
    activate: bool = True,
    register: bool = True,
    worker: str | None = None,
    span: trace.Span | None = None,
) -> JobRun | None:
    """Start a run: a span in a new trace linked to its producer, registered with the
    watchdog, made current (``activate``) so steps and heartbeats find it.

    Returns None when jobpulse is not instrumented or failed internally.
    ``record_metrics=False`` is for processes that may be recycled (pool children,
    work horses): the long-lived parent counts the run with :func:`count_run`.
    ``span``: use this already started span as the run span instead of starting one
    (another instrumentation's span for the same run, so there is one span per run):
    the run's attributes and links are added to it and ``end_run`` calls its ``end()``.
    ``register=False, activate=False``: a run started for another process (an RQ
    work horse about to be forked), which calls :func:`activate_run` for it there.
    """
    rt = _runtime.get()
    if rt is None:
        return None
    try:  # never_raise, spelled out: a context manager costs every run ~0.7 us
        settings = rt.settings
        budget = resolve_budget(job_name, job_budget, framework_budget)
        hb_interval = settings.heartbeat_interval
        if budget.heartbeat_timeout is not None:
            hb_interval = min(hb_interval, 0.8 * budget.heartbeat_timeout)
        run = JobRun(
            job_name=job_name,
            job_id=job_id or f"{_getrandbits(128):032x}",  # new_id(), inlined (hot path)
            run_id=run_id or f"{_getrandbits(128):032x}",
            attempt=max(1, int(attempt)),
            system=system,
            queue=queue or "",
            budget=budget,
            enforce=settings.enforce if enforce is None else enforce,
            hb_interval=hb_interval,
            thread_id=threading.get_ident(),
            record_metrics=record_metrics,
            code_function=code_function,
        )
        attrs = _identity(job_name, run.job_id, run.run_id, run.attempt, system, queue, budget)
        if queue_wait is not None:
            queue_wait = max(0.0, float(queue_wait))
            attrs[n.QUEUE_WAIT] = queue_wait
        if redelivered is not None:
            attrs[n.REDELIVERED] = bool(redelivered)
        if code_function:
            attrs[n.CODE_FUNCTION_NAME] = code_function
        if worker:
            attrs[n.MESSAGING_CLIENT_ID] = worker
            run.extra_attributes[n.MESSAGING_CLIENT_ID] = worker
        if attributes:
            attrs.update(attributes)

        if producer is None and system in ("function", "asyncio"):
            ambient = trace.get_current_span().get_span_context()
            producer = ambient if ambient.is_valid else None
        parent = _parent_context(True, producer) if settings.continue_trace else _EMPTY_CONTEXT
        if span is None:
            run.span = rt.tracer.start_span(
                job_name,
                context=parent,
                kind=kind,
                attributes=attrs,
                links=_links(producer, links) if producer is not None or links else None,
            )
        else:
            span.set_attributes(attrs)
            for link in _links(producer, links):
                span.add_link(link.context)
            run.span = span
        if register:
            rt.registry.add(run)
        if activate:
            run.ctx_token = current.set(run)
            run.otel_token = otel_context.attach(trace.set_span_in_context(run.span))
        if record_metrics:
            key = (job_name, system, run.queue)
            rt.instruments.job_attrs(key)
            if queue_wait is not None:
                rt.instruments.record_queue_wait(key, queue_wait)
        if _log.isEnabledFor(logging.INFO):
            emit_log(run, logging.INFO, "run started")
        return run
    except _guard.PASSTHROUGH:
        raise
    except Exception as exc:  # noqa: BLE001 - swallow() re-raises in tests
        _guard.swallow("run.begin", exc)
    return None


def activate_run(run: JobRun) -> None:
    """Make a run started with ``register=False, activate=False`` this process's current
    run: the watchdog watches it, steps and heartbeats find it."""
    rt = _runtime.get()
    if rt is not None:
        rt.registry.add(run)
    run.thread_id = threading.get_ident()
    run.ctx_token = current.set(run)
    if run.span is not None:
        run.otel_token = otel_context.attach(trace.set_span_in_context(run.span))


def end_run(
    run: JobRun | None,
    outcome: Outcome | str,
    action: Action | str | None = None,
    exc: BaseException | None = None,
    *,
    error_type: str | None = None,
) -> None:
    """Finish a run: outcome and action on the span, metrics, the ``run finished`` line.

    The first recorder wins: a second call for the same run is ignored (Celery
    reports a hard time limit twice; it is one run).
    """
    if run is None or run.ended:
        return
    run.ended = True
    rt = _runtime.get()
    try:
        if rt is None:
            return
        try:  # never_raise, spelled out (hot path)
            _finish(rt, run, _OUTCOMES.get(outcome) or Outcome(outcome),
                    None if action is None else _ACTIONS.get(action) or Action(action), exc,
                    error_type)  # fmt: skip
        except _guard.PASSTHROUGH:
            raise
        except Exception as exc_:  # noqa: BLE001 - swallow() re-raises in tests
            _guard.swallow("run.end", exc_)
    finally:
        if run.otel_token is not None:
            _safe_detach(run.otel_token)
            run.otel_token = None
        if run.ctx_token is not None:
            try:
                current.reset(run.ctx_token)
            except ValueError:  # reset from another context (thread hand-off): clear it
                current.set(None)
            run.ctx_token = None
        if rt is not None:
            rt.registry.remove(run)


def abandon_run(run: JobRun | None) -> None:
    """Forget a run without recording it: no span end, no metrics, no log line.

    For a process being terminated in the middle of a run when the process that
    terminates it records the run (Celery's main worker process after a hard time
    limit, a revoke with ``terminate=True`` or a cold shutdown): one run, one record.
    """
    if run is None or run.ended:
        return
    run.ended = True
    if run.otel_token is not None:
        _safe_detach(run.otel_token)
        run.otel_token = None
    if run.ctx_token is not None:
        try:
            current.reset(run.ctx_token)
        except ValueError:
            current.set(None)
        run.ctx_token = None
    rt = _runtime.get()
    if rt is not None:
        rt.registry.remove(run)


def record_exception(span: Any, exc: BaseException) -> None:
    """``span.record_exception`` for any exception, even one whose ``__str__`` raises."""
    try:
        span.record_exception(exc)
    except Exception:  # noqa: BLE001 - the SDK calls str(exc); build the event ourselves
        import traceback

        try:
            stack = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
        except Exception:  # noqa: BLE001
            stack = ""
        span.add_event(
            "exception",
            {
                "exception.type": error_type_of(exc),
                "exception.message": safe_str(exc),
                "exception.stacktrace": safe_str(stack, 16_384),
            },
        )


def _safe_detach(token: Any) -> None:
    try:
        otel_context.detach(token)
    except Exception:  # noqa: BLE001 - detaching in another context logs; never raise
        pass


def _finish(
    rt: _runtime.Runtime,
    run: JobRun,
    outcome: Outcome,
    action: Action | None,
    exc: BaseException | None,
    error_type: str | None,
) -> None:
    duration = time.monotonic() - run.started_mono
    if outcome is Outcome.SUCCESS and exc is None:  # the common case: no failure paths
        action = Action.NONE
    else:
        outcome = stopped_by_budget(run, outcome, exc)
        action = coerce_pair(outcome, action)
        if outcome in FAILED_OUTCOMES:  # guardrails: poison -> quarantine (docs/guardrails.md)
            if error_type is None:
                error_type = error_type_of(exc) if exc is not None else outcome._value_
            action = _guardrails.failed_run_action(
                run=run, job_name=run.job_name, system=run.system, queue=run.queue,
                job_id=run.job_id, run_id=run.run_id, attempt=run.attempt,
                outcome=outcome._value_, action=action, exc=exc, error_type=error_type,
            )  # fmt: skip
    failed = outcome in FAILED_OUTCOMES
    ov, av = outcome._value_, action._value_
    span = run.span
    if span is not None:
        if run.heartbeat_count > run.last_event_beat:
            from ._api import heartbeat_event_attributes

            span.add_event(n.EVENT_HEARTBEAT, heartbeat_event_attributes(run, {}))
        end_attrs: dict[str, Any] = {
            n.OUTCOME: ov,
            n.ACTION: av,
            n.HEARTBEAT_COUNT: run.heartbeat_count,
        }
        if run.processed is not None:
            end_attrs[n.PROGRESS_PROCESSED] = run.processed
        if run.total is not None:
            end_attrs[n.PROGRESS_TOTAL] = run.total
        if error_type is not None:
            end_attrs[n.ERROR_TYPE] = error_type
        span.set_attributes(end_attrs)
        if failed:
            if exc is not None:
                record_exception(span, exc)
            span.set_status(Status(StatusCode.ERROR, safe_str(exc) if exc is not None else None))
    if run.record_metrics:
        rt.instruments.record_run(
            (run.job_name, run.system, run.queue), outcome, action, error_type, duration
        )
    level = logging.ERROR if failed else logging.INFO
    if _log.isEnabledFor(level):
        emit_log(run, level, "run finished", {
            n.OUTCOME: ov, n.ACTION: av, **({n.ERROR_TYPE: error_type} if error_type else {}),
        })  # fmt: skip
    if span is not None:
        span.end()


def count_run(
    job_name: str,
    *,
    system: str,
    queue: str = "",
    outcome: Outcome | str,
    action: Action | str | None = None,
    exc: BaseException | None = None,
    error_type: str | None = None,
    duration: float | None = None,
    queue_wait: float | None = None,
    job_id: str | None = None,
    run_id: str | None = None,
    attempt: int = 1,
) -> None:
    """Count a run in this (long-lived) process's metrics, without a span.

    For a parent process (Celery's main worker, RQ's worker) counting the runs
    its children executed and traced. ``job_id``/``run_id``/``attempt`` let the
    guardrails classify a failure the same way the child did.
    """
    rt = _runtime.get()
    if rt is None:
        return
    try:  # never_raise, spelled out: Celery's main process calls this for every task
        outcome = _OUTCOMES.get(outcome) or Outcome(outcome)
        act = coerce_pair(
            outcome, None if action is None else _ACTIONS.get(action) or Action(action)
        )
        if outcome in FAILED_OUTCOMES and error_type is None:
            error_type = error_type_of(exc) if exc is not None else outcome.value
        if outcome in FAILED_OUTCOMES:
            act = _guardrails.failed_run_action(
                job_name=job_name, system=system, queue=queue or "", job_id=job_id,
                run_id=run_id, attempt=attempt, outcome=outcome.value, action=act, exc=exc,
                error_type=error_type,
            )  # fmt: skip
        key: JobKey = (job_name, system, queue or "")
        rt.instruments.job_attrs(key)
        if queue_wait is not None:
            rt.instruments.record_queue_wait(key, max(0.0, queue_wait))
        rt.instruments.record_run(key, outcome, act, error_type, duration)
    except _guard.PASSTHROUGH:
        raise
    except Exception as exc_:  # noqa: BLE001 - swallow() re-raises in tests
        _guard.swallow("run.count", exc_)


def record_run(
    job_name: str,
    *,
    system: str,
    outcome: Outcome | str,
    action: Action | str | None = None,
    exc: BaseException | None = None,
    error_type: str | None = None,
    job_id: str | None = None,
    run_id: str | None = None,
    attempt: int = 1,
    queue: str = "",
    started_at: float | None = None,
    producer: trace.SpanContext | None = None,
    kind: SpanKind = SpanKind.CONSUMER,
    attributes: Mapping[str, Any] | None = None,
    framework_budget: Budget | None = None,
    record_metrics: bool = True,
    worker: str | None = None,
    span: trace.Span | None = None,
) -> None:
    """Record a run that some other process executed and cannot report itself.

    A pool child killed by its hard time limit or SIGKILL, a work horse that
    died, a job revoked before it started: whoever noticed records it. The span
    starts at ``started_at`` (unix seconds) when known, else now; a ``lost`` run
    records no duration. ``span``: the run's span, started already by this
    process for the one that died (an RQ worker starts it before the fork), to
    end here instead of a new one: the dead process's spans and lines point at it.
    """
    rt = _runtime.get()
    if rt is None:
        return
    with _guard.never_raise("run.record"):
        outcome = Outcome(outcome)
        budget = resolve_budget(job_name, None, framework_budget)
        act = coerce_pair(outcome, None if action is None else Action(action))
        if outcome in FAILED_OUTCOMES and error_type is None:
            error_type = error_type_of(exc) if exc is not None else outcome.value
        now = time.time()
        start = started_at if started_at is not None and started_at <= now else now
        job_id = job_id or new_id()
        run_id = run_id or new_id()
        guard_attrs: dict[str, Any] = {}
        if outcome in FAILED_OUTCOMES:
            act = _guardrails.failed_run_action(
                job_name=job_name, system=system, queue=queue or "", job_id=job_id,
                run_id=run_id, attempt=attempt, outcome=outcome.value, action=act, exc=exc,
                error_type=error_type, attributes=guard_attrs,
            )  # fmt: skip
        attrs: dict[str, Any] = {
            **guard_attrs,
            **_identity(job_name, job_id, run_id, max(1, int(attempt)), system, queue, budget),
            n.OUTCOME: outcome.value,
            n.ACTION: act.value,
        }
        if error_type is not None:
            attrs[n.ERROR_TYPE] = error_type
        if worker:
            attrs[n.MESSAGING_CLIENT_ID] = worker
        if attributes:
            attrs.update(attributes)
        if span is None:
            span = rt.tracer.start_span(
                job_name,
                context=_parent_context(rt.settings.continue_trace, producer),
                kind=kind,
                attributes=attrs,
                links=_links(producer, ()),
                start_time=int(start * 1e9),
            )
        else:
            span.set_attributes(attrs)
        if outcome in FAILED_OUTCOMES:
            if exc is not None:
                record_exception(span, exc)
            span.set_status(Status(StatusCode.ERROR, safe_str(exc) if exc is not None else None))
        if record_metrics:
            key: JobKey = (job_name, system, queue or "")
            rt.instruments.job_attrs(key)
            duration = None if outcome is Outcome.LOST or started_at is None else now - start
            rt.instruments.record_run(key, outcome, act, error_type, duration)
        level = logging.ERROR if outcome in FAILED_OUTCOMES else logging.INFO
        if _log.isEnabledFor(level):
            fields = {k: v for k, v in attrs.items() if k != n.SYSTEM}
            fields[n.ELAPSED] = now - start
            _log_in_span(span, level, "run finished", fields)
        span.end()


def _log_in_span(span: Any, level: int, msg: str, fields: Mapping[str, Any]) -> None:
    _emit_line(level, msg, dict(fields), trace.set_span_in_context(span))


def _emit_line(level: int, msg: str, extra: dict[str, Any], context: Any = None) -> None:
    """One line to the ``jobpulse`` logger, correlated with ``context`` (None: the current
    one): straight to the OTel handler when nothing else would see it, else stdlib."""
    direct = direct_handler(_log, level)
    if direct is not None:
        ctx = otel_context.get_current() if context is None else context
        direct.emit_fields(_log.name, level, msg, extra, ctx)
        return
    if context is None:
        _log.log(level, msg, extra=extra)
        return
    token = otel_context.attach(context)
    try:
        _log.log(level, msg, extra=extra)
    finally:
        _safe_detach(token)


def run_fields(run: JobRun) -> dict[str, Any]:
    """The identity and progress fields every log line of a run carries."""
    fields: dict[str, Any] = {
        n.JOB_NAME: run.job_name,
        n.RUN_ID: run.run_id,
        n.JOB_ID: run.job_id,
        n.ATTEMPT: run.attempt,
        n.ELAPSED: time.monotonic() - run.started_mono,
    }
    if run.queue:
        fields[n.QUEUE_NAME] = run.queue
    if run.steps:
        fields[n.STEP_NAME] = run.steps[-1]
    if run.processed is not None:
        fields[n.PROGRESS_PROCESSED] = run.processed
    if run.total is not None:
        fields[n.PROGRESS_TOTAL] = run.total
    fields.update(run.extra_attributes)
    return fields


def emit_log(run: JobRun, level: int, msg: str, fields: Mapping[str, Any] | None = None) -> None:
    """One structured line about a run, correlated with its span from any thread."""
    extra = run_fields(run)
    if fields:
        extra.update(fields)
    span = run.span
    if span is not None and trace.get_current_span() is not span:
        _emit_line(level, msg, extra, trace.set_span_in_context(span))  # from another thread
    else:
        _emit_line(level, msg, extra)
