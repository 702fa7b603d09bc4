"""The side that runs the task: ``task_prerun`` begins a run, ``task_postrun`` ends it.

These receivers run where the task runs: a prefork pool child, or the main
worker process for the solo, threads, gevent and eventlet pools, or the caller
for eager ``apply()``. In a prefork child the run records no counters or
histograms (the main process counts it, see :mod:`._requests`) and, when the child
is about to be recycled (``worker_max_tasks_per_child``,
``worker_max_memory_per_child``), spans are flushed at the end of the task,
bounded by ``flush_timeout``.

Guardrails enforce mode at the same place (the ``Task.retry`` wrapper, and the
payload of a failed run Celery does not retry) is in :mod:`._retry`.
"""

from __future__ import annotations

import sys
from typing import Any

from opentelemetry import trace
from opentelemetry.trace import SpanKind

from ... import _guard, _lifecycle, _runtime
from ... import _names as n
from ..._run import Action, Budget, JobRun, Outcome
from . import _coexist, _message, _outcome
from ._process import WORKER, in_pool_child

_SUCCESS = "SUCCESS"  # celery.states.SUCCESS
#: (task id, id of the execution's request context) -> its run, between task_prerun
#: and task_postrun: two runs of one task id can overlap in one process (a countdown=0
#: retry under gevent or threads, a redelivery), each has its own request context.
#: (Not an attribute on the context: Celery copies a context's __dict__ into others.)
_runs: dict[tuple[str, int], JobRun] = {}
#: ids of runs this (long-lived) process started and counts itself (solo, threads,
#: gevent, eventlet pools): Celery's Request callbacks for them must not count them
#: again. (A pool's "pid" cannot tell: gevent's is the greenlet's id.)
_counted_here: dict[str, int] = {}  # task id -> runs started here not yet called back
#: what is the same for every run of a task from a queue: built once (reading
#: Celery's configuration is slow), cleared by uninstall() and at worker start
_infos: dict[tuple[Any, ...], tuple[dict[str, Any] | None, str | None, Budget | None]] = {}


def _info(
    task: Any, queue: str, eager: bool, timelimit: Any
) -> tuple[dict[str, Any] | None, str | None, Budget | None]:
    if isinstance(timelimit, list):
        timelimit = tuple(timelimit)
    key = (task.name, queue, eager, timelimit)
    info = _infos.get(key)
    if info is None:
        # an eager call is no message: no messaging.* or broker attributes
        attrs = None if eager else _message.messaging_attributes("process", queue)
        budget = _message.framework_budget(
            task, timelimit, (WORKER.time_limit, WORKER.soft_time_limit)
        )
        info = (attrs, _message.code_function(task), budget)
        if len(_infos) > 4096:
            _infos.clear()
        _infos[key] = info
    return info


def on_prerun(
    sender: Any = None, task_id: Any = None, task: Any = None, args: Any = None,
    kwargs: Any = None, **_: Any,
) -> None:  # fmt: skip
    rt = _runtime.get()
    if rt is not None and task is not None and task_id is not None:
        try:  # never_raise, spelled out: one call less on every task
            _begin(rt, task, task_id if type(task_id) is str else str(task_id), args, kwargs)
        except _guard.PASSTHROUGH:
            raise
        except Exception as exc:  # noqa: BLE001 - swallow() re-raises in tests
            _guard.swallow("adapter.celery.run", exc)


def _begin(rt: Any, task: Any, task_id: str, args: Any, kwargs: Any) -> None:
    request = task.request
    job_name = task.name
    eager = bool(request.is_eager)
    if eager:  # no message: the caller's span is the producer
        delivery = None
        queue = ""
        ambient = trace.get_current_span().get_span_context()
        producer = ambient if ambient.is_valid else None
        queue_wait = None
    else:
        delivery = request.delivery_info
        queue = _message.queue_of(delivery)
        producer = _message.producer_context(request)
        queue_wait = _message.queue_wait(request)
    base, code_function, budget = _info(task, queue, eager, request.timelimit)
    attrs: dict[str, Any] | None = None
    if base is not None:
        attrs = dict(base)
        attrs[n.MESSAGING_MESSAGE_ID] = task_id
    if rt.settings.record_args:
        allowed = _lifecycle.args_attributes(job_name, task.run, args or (), kwargs or {})
        if allowed:
            attrs = {**(attrs or {}), **allowed}
    adopted = None
    if _coexist.contrib_active():
        contrib_span = _coexist.contrib_run_span(task, task_id)
        if contrib_span is not None:
            adopted = _coexist.AdoptedSpan(contrib_span)
            if producer is not None and getattr(contrib_span, "parent", None) == producer:
                producer = None  # contrib made it a child of the producer: no link too
    run = _lifecycle.begin_run(
        job_name,
        system=_message.SYSTEM,
        job_id=task_id,
        attempt=_message.attempt(request.retries),
        queue=queue,
        framework_budget=budget,
        producer=producer,
        queue_wait=queue_wait,
        redelivered=None if eager else _message.redelivered(delivery),
        kind=SpanKind.CONSUMER,
        attributes=attrs,
        code_function=code_function,
        record_metrics=eager or not in_pool_child(),
        worker=None if eager else request.hostname,
        span=adopted,
    )
    if run is not None:
        if len(_runs) > 10_000:  # runs whose task_postrun never came (a killed thread)
            _runs.clear()
        _runs[(task_id, id(request))] = run
        if run.record_metrics and not eager:
            if len(_counted_here) > 10_000:  # callbacks that never came (a lost worker)
                _counted_here.clear()
            # a count: two runs of one id can overlap (a countdown=0 retry, a redelivery)
            _counted_here[task_id] = _counted_here.get(task_id, 0) + 1


def on_postrun(
    sender: Any = None, task_id: Any = None, task: Any = None, retval: Any = None,
    state: Any = None, **_: Any,
) -> None:  # fmt: skip
    if task is None:
        return
    run = _runs.pop((task_id if type(task_id) is str else str(task_id), id(task.request)), None)
    if run is None:
        return
    if state == _SUCCESS:  # the common case, straight to the core (which never raises)
        _lifecycle.end_run(run, Outcome.SUCCESS, Action.NONE)
    else:
        _end(run, retval, state)
    if not run.record_metrics:  # a pool child
        _after_task_in_child()


def run_of(request: Any) -> JobRun | None:
    """The run of the execution ``request`` (a task's current request context)."""
    if request is None:
        return None
    return _runs.get((str(request.id), id(request)))


@_guard.guarded("adapter.celery.run")
def _end(run: JobRun, retval: Any, state: Any) -> None:
    if state is None:  # a BaseException is on its way out of the task
        exc = sys.exc_info()[1]
        if not run.record_metrics and (
            _terminated() or isinstance(exc, (SystemExit, KeyboardInterrupt))
        ):
            # This pool child is going away: the main process terminated it (hard time
            # limit, revoke with terminate, cold shutdown), or the task's SystemExit ends
            # it (Celery then reports a lost worker). The main process records the run:
            # one run, one record.
            _lifecycle.abandon_run(run)
            return
        if run.record_metrics and _outcome.killed_greenlet(exc):
            # gevent pool, revoke(terminate=True): the task_revoked receiver records it
            _lifecycle.abandon_run(run)
            return
    else:
        exc = retval if isinstance(retval, BaseException) else None
    outcome, action, exc, error_type = _outcome.classify(exc, state=state)
    if action is Action.STOP and exc is not None:  # failed, and Celery will not retry it
        from ._retry import quarantine_unretried  # the failure path only

        quarantine_unretried(run, outcome, exc, error_type)
    _lifecycle.end_run(run, outcome, action, exc, error_type=error_type)


def _terminated() -> bool:
    """billiard's terminate-signal handler fired: this child is being stopped."""
    try:
        from billiard.common import terminate_handler_fired
    except ImportError:  # older billiard: no way to tell; record the run here
        return False
    return bool(terminate_handler_fired())


def _after_task_in_child() -> None:
    """Flush when this child is about to be recycled: it exits with ``os._exit``."""
    WORKER.tasks_done += 1
    WORKER.unflushed = True
    limit = WORKER.max_tasks_per_child
    recycle = bool(limit) and WORKER.tasks_done >= (limit or 0)
    if not recycle and WORKER.max_memory_per_child:
        recycle = _memory_over(WORKER.max_memory_per_child)
    if recycle:
        flush_child()


def _memory_over(limit_kb: int) -> bool:
    try:
        from billiard.compat import mem_rss

        used = mem_rss()
    except Exception:  # noqa: BLE001 - billiard cannot measure it either
        return False
    return bool(used > 0 and used > limit_kb)


def flush_child() -> None:
    rt = _runtime.get()
    if rt is None or not WORKER.unflushed:
        return
    WORKER.unflushed = False
    with _guard.never_raise("adapter.celery.flush"):
        rt.flush(rt.settings.flush_timeout)


def counted_here(task_id: Any) -> bool:
    """This process started (and counted) that run; forgets it (one callback per run)."""
    if not _counted_here:  # a prefork main process: the common case, nothing to look up
        return False
    key = task_id if type(task_id) is str else str(task_id)
    left = _counted_here.get(key)
    if left is None:
        return False
    if left > 1:
        _counted_here[key] = left - 1
    else:
        del _counted_here[key]
    return True


def clear() -> None:
    _runs.clear()
    _infos.clear()
    _counted_here.clear()
