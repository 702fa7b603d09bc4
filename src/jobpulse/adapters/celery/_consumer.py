"""The side that runs the task: ``task_prerun`` begins a run, ``task_postrun`` ends it.

These receivers run where the task runs: a prefork pool child, or the main
worker process for the solo, threads, gevent and eventlet pools, or the caller
for eager ``apply()``. In a prefork child the run records no counters or
histograms (the main process counts it, see :mod:`._requests`) and, when the child
is about to be recycled (``worker_max_tasks_per_child``,
``worker_max_memory_per_child``), spans are flushed at the end of the task,
bounded by ``flush_timeout``.
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
#: task id -> its run, between task_prerun and task_postrun
_runs: dict[str, JobRun] = {}
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
        _begin(rt, task, str(task_id), args, kwargs)


@_guard.guarded("adapter.celery.run")  # a try/except: cheaper than a context manager here
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
        _runs[task_id] = run


def on_postrun(
    sender: Any = None, task_id: Any = None, task: Any = None, retval: Any = None,
    state: Any = None, **_: Any,
) -> None:  # fmt: skip
    run = _runs.pop(task_id if type(task_id) is str else str(task_id), None)
    if run is None:
        return
    if state == _SUCCESS:  # the common case, straight to the core (which never raises)
        _lifecycle.end_run(run, Outcome.SUCCESS, Action.NONE)
    else:
        _end(run, retval, state)
    if not run.record_metrics:  # a pool child
        _after_task_in_child()


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
    else:
        exc = retval if isinstance(retval, BaseException) else None
    outcome, action, exc, error_type = _outcome.classify(exc, state=state)
    if action is Action.STOP and exc is not None:  # failed, and Celery will not retry it
        _quarantine_unretried(run, outcome, exc)
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


def clear() -> None:
    _runs.clear()
    _infos.clear()


# -- guardrails enforce mode: poison runs set aside, other retries bounded ----------
_original_retry: Any = None
#: ``Task.retry``'s parameters after ``exc``, in order
_RETRY_PARAMS = ("throw", "eta", "countdown", "max_retries")
_OVERRIDE = "override_max_retries"  # what Task.retry leaves on the task for autoretry_for
_UNSET: Any = object()


def _message_request(task: Any) -> Any:
    """The task's request when it runs from a message (not eager, not called directly)."""
    request = task.request
    if request.is_eager or request.called_directly or request.id is None:
        return None
    return request


def _quarantine_instead(task: Any, exc: BaseException | None) -> BaseException | None:
    """The :class:`~._outcome.Quarantined` rejection to raise instead of retrying, when
    the guardrails (enforce mode) classify this failure as poison; None otherwise."""
    if exc is None or _runtime.get() is None:
        return None
    with _guard.never_raise("adapter.celery.guardrails"):
        request = _message_request(task)
        run = _runs.get(str(request.id)) if request is not None else None
        if run is None:
            return None
        from celery.utils.serialization import get_pickleable_exception

        from ...guardrails._adapters import celery_failed

        if celery_failed(task, request, run, exc) is None:
            return None
        # the pool sends the rejection to the main process: keep it picklable
        return _outcome.Quarantined(get_pickleable_exception(exc), requeue=False)
    return None


def _quarantine_unretried(run: JobRun, outcome: Outcome, exc: BaseException) -> None:
    """A failed run Celery does not retry (no ``autoretry_for``, no ``self.retry()``, or
    retries used up): in enforce mode a poison run's payload is stored as on the retry
    path, so it can be reviewed and released. Celery's result and ack stay its own: with
    ``acks_late`` and ``acks_on_failure_or_timeout=False`` Celery rejects the message
    without requeue (a dead-letter exchange gets it), see docs/guardrails.md."""
    if _runtime.get() is None:
        return
    with _guard.never_raise("adapter.celery.guardrails"):
        from celery import current_task  # task_postrun runs before Celery pops the task

        from ...guardrails._adapters import celery_failed
        from ...guardrails._quarantine import handled

        task = current_task._get_current_object()
        request = _message_request(task) if task is not None else None
        if request is None or str(request.id) != run.job_id or handled(run.run_id):
            return  # eager, another task's postrun, or already set aside by Task.retry
        celery_failed(task, request, run, exc, outcome=outcome.value)


def _bounded(
    task: Any, rest: tuple[Any, ...], options: dict[str, Any]
) -> tuple[dict[str, Any], Any] | None:
    """``Task.retry``'s options (after ``exc``) as keywords, with ``max_retries`` and
    ``countdown`` bounded in enforce mode, and the caller's own ``max_retries``; None:
    call it unchanged."""
    if _runtime.get() is None or len(rest) > len(_RETRY_PARAMS):
        return None
    with _guard.never_raise("adapter.celery.guardrails"):
        named = dict(zip(_RETRY_PARAMS, rest, strict=False))
        if named.keys() & options.keys():
            return None  # Celery's own TypeError, untouched
        named.update(options)
        request = _message_request(task)
        run = _runs.get(str(request.id)) if request is not None else None
        if run is None:
            return None
        from ...guardrails._bounds import celery_retry

        change = celery_retry(
            task, request, run, max_retries=named.get("max_retries"),
            countdown=named.get("countdown"), eta=named.get("eta"),
        )  # fmt: skip
        if change is None:
            return None
        return {**named, **change}, named.get("max_retries")
    return None


def _retry_bounded(original: Any, task: Any, args: Any, kwargs: Any, exc: Any,
                   named: dict[str, Any], caller_max: Any) -> Any:  # fmt: skip
    """Call ``Task.retry`` with the bounded options, then leave ``override_max_retries``
    as the caller's own call would have (autoretry_for reuses it for later runs)."""
    prior = task.__dict__.get(_OVERRIDE, _UNSET)
    try:
        return original(task, args, kwargs, exc, **named)
    finally:
        with _guard.never_raise("adapter.celery.guardrails"):  # never replace the Retry
            if caller_max is not None:
                task.__dict__[_OVERRIDE] = caller_max
            elif prior is _UNSET:
                task.__dict__.pop(_OVERRIDE, None)
            else:
                task.__dict__[_OVERRIDE] = prior


def patch_retry() -> None:
    """Wrap ``Task.retry`` (also what ``autoretry_for`` calls), where the next attempt
    would be sent: in enforce mode a poison run raises ``Reject(exc, requeue=False)``,
    and any other retry stays within the run's attempt budget, with a backoff instead
    of an immediate retry (``jobpulse.guardrails._bounds``)."""
    global _original_retry
    if _original_retry is not None:
        return
    from celery.app.task import Task

    original = Task.retry

    def retry(self: Any, args: Any = None, kwargs: Any = None, exc: Any = None,
              *rest: Any, **options: Any) -> Any:  # fmt: skip
        reject = _quarantine_instead(self, exc if exc is not None else sys.exc_info()[1])
        if reject is not None:
            raise reject
        bounded = _bounded(self, rest, options)
        if bounded is not None:
            return _retry_bounded(original, self, args, kwargs, exc, *bounded)
        return original(self, args, kwargs, exc, *rest, **options)

    retry.__wrapped__ = original  # type: ignore[attr-defined]
    retry.__doc__ = original.__doc__
    Task.retry = retry  # type: ignore[method-assign]
    _original_retry = original


def unpatch_retry() -> None:
    global _original_retry
    if _original_retry is None:
        return
    from celery.app.task import Task

    Task.retry = _original_retry  # type: ignore[method-assign]
    _original_retry = None
