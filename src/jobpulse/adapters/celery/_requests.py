"""The worker's main process: it counts every run and records the ones its children cannot.

For the prefork pool Celery calls ``Request.on_success``/``on_failure``/
``on_timeout`` in the main process, which outlives its children. jobpulse
subclasses each task's Request class (through
``celery.worker.strategy.create_request_cls``) to hook them:

* a run the child finished: counted here (``count_run``), the child made the span;
* a hard time limit or a child that died (SIGKILL, OOM: ``WorkerLostError``):
  the child could not report, so this process records the run, span and metrics
  (``record_run``), linked to the task's trace; Celery reports a hard time limit
  twice, it is counted once;
* a revoked or expired task (``task_revoked``): one ``cancelled`` run, no
  duration when it never started.

Solo, threads, gevent and eventlet pools run tasks in this process: the run
counted itself (``_consumer.counted_here``; a request's ``worker_pid`` cannot tell,
gevent's is a greenlet id), so nothing is counted twice.
"""

from __future__ import annotations

import time
from typing import Any

from opentelemetry.trace import SpanKind

from ... import _guard, _lifecycle, _runtime
from ... import _names as n
from ..._run import Action, Outcome
from . import _consumer, _message, _outcome, _process
from ._process import WORKER

#: task id -> when it started, for a run revoked with terminate=True
_terminating: dict[str, float | None] = {}


# -- the Request hooks -----------------------------------------------------------
def _ran_elsewhere(req: Any) -> bool:
    """The task ran in another process (a prefork child), or never started."""
    if _consumer.counted_here(req.id):
        req._jobpulse_done = True  # and Celery's later callbacks for it (on_timeout, ...)
        return False
    pid = req.worker_pid
    return pid is None or pid != _process.pid()


def _identity(req: Any) -> dict[str, Any]:
    info = req.request_dict
    return {
        "job_name": req.task.name,
        "system": _message.SYSTEM,
        "queue": _message.queue_of(req.delivery_info),
        "job_id": str(req.id),
        "attempt": _message.attempt(info.get("retries", 0)),
    }


def _queue_wait(req: Any) -> float | None:
    started = req.time_start
    return None if started is None else _message.queue_wait(req.request_dict, started)


def request_succeeded(req: Any, result: Any) -> None:
    """The main process's hot path: one call per task, kept lean."""
    if (
        _process.ACTIVE
        and type(result) is tuple
        and len(result) == 3
        and not result[0]  # a failure: Celery passes it on to on_failure
        and _ran_elsewhere(req)
        and _runtime.get() is not None
    ):
        _count_success(req, result[2])


@_guard.guarded("adapter.celery.worker")
def _count_success(req: Any, runtime: Any) -> None:
    info = req.request_dict
    started = req.time_start
    _lifecycle.count_run(
        req.task.name, system=_message.SYSTEM, queue=_message.queue_of(req.delivery_info),
        outcome=Outcome.SUCCESS, action=Action.NONE,
        duration=runtime if isinstance(runtime, (int, float)) else None,
        queue_wait=None if started is None else _message.queue_wait(info, started),
        job_id=req.id, attempt=_message.attempt(info.get("retries", 0)),
    )  # fmt: skip
    req._jobpulse_done = True


def request_failed(req: Any, exc_info: Any) -> None:
    if (
        not _process.ACTIVE
        or _runtime.get() is None
        or req._jobpulse_done
        or not _ran_elsewhere(req)
    ):
        return
    with _guard.never_raise("adapter.celery.worker"):
        from billiard.einfo import ExceptionWithTraceback
        from celery.exceptions import Terminated, TimeLimitExceeded, WorkerLostError
        from celery.worker import state

        exc = getattr(exc_info, "exception", None)
        if isinstance(exc, ExceptionWithTraceback):
            exc = exc.exc
        if isinstance(exc, Terminated):  # revoked: task_revoked records it
            if req._already_cancelled:  # cancelled on connection loss: redelivered
                _record(req, Outcome.CANCELLED, Action.RETRY, None)
            return
        if isinstance(exc, (WorkerLostError, SystemExit, KeyboardInterrupt)):
            if req._already_cancelled or req._already_revoked:
                return
            task = req.task
            if state.should_terminate:  # cold shutdown took it away
                retry = bool(task.acks_late)
                _record(req, Outcome.CANCELLED, Action.RETRY if retry else Action.STOP, None)
                return
            if not isinstance(exc, WorkerLostError):
                exc = WorkerLostError(f"Worker exited prematurely: {type(exc).__name__}.")
            _record(req, Outcome.LOST, Action.RETRY if _lost_retried(req) else Action.STOP, exc)
            return
        if isinstance(exc, TimeLimitExceeded):
            _hard_timeout(req, exc)
            return
        outcome, action, exc, error_type = _outcome.classify(exc, soft_fired=req._jobpulse_soft)
        started = req.time_start
        _lifecycle.count_run(
            **_identity(req), outcome=outcome, action=action, exc=exc, error_type=error_type,
            duration=None if started is None else max(0.0, time.time() - started),
            queue_wait=_queue_wait(req),
        )  # fmt: skip
    req._jobpulse_done = True


def request_timed_out(req: Any, soft: bool, timeout: Any) -> None:
    if not _process.ACTIVE or _runtime.get() is None:
        return
    if soft:
        req._jobpulse_soft = True
        return
    if req._jobpulse_done or not _ran_elsewhere(req):
        return
    with _guard.never_raise("adapter.celery.worker"):
        from celery.exceptions import TimeLimitExceeded
        from celery.worker import state

        if not state.should_terminate:
            _hard_timeout(req, TimeLimitExceeded(timeout))


def _hard_timeout(req: Any, exc: BaseException) -> None:
    task = req.task
    acks = getattr(task, "acks_on_timeout", None)
    if acks is None:
        acks = getattr(task, "acks_on_failure_or_timeout", True)
    requeued = bool(task.acks_late) and not acks
    _record(req, Outcome.TIMEOUT, Action.RETRY if requeued else Action.STOP, exc)


def _lost_retried(req: Any) -> bool:
    """Celery runs a lost task again (``retry_on_worker_lost``, or a requeue), as in
    ``Request.on_failure``."""
    task = req.task
    if getattr(task, "retry_on_worker_lost", False):
        max_retries = task.max_retries
        retries = req.request_dict.get("retries", 0) or 0
        return bool(max_retries is None or retries < max_retries)
    return bool(task.acks_late and getattr(task, "reject_on_worker_lost", False))


def _record(req: Any, outcome: Outcome, action: Action, exc: BaseException | None) -> None:
    """A run the child could not report: span (linked to the task's trace) and metrics."""
    req._jobpulse_done = True
    ident = _identity(req)
    info = req.request_dict
    started = req.time_start
    attrs = dict(_message.messaging_attributes("process", ident["queue"]))
    attrs[n.MESSAGING_MESSAGE_ID] = ident["job_id"]
    code_function = _message.code_function(req.task)
    if code_function:
        attrs[n.CODE_FUNCTION_NAME] = code_function
    error_type = _outcome.error_type(exc) if exc is not None else None
    _lifecycle.record_run(
        **ident, outcome=outcome, action=action, exc=exc, error_type=error_type,
        started_at=started, producer=_message.producer_context(info), kind=SpanKind.CONSUMER,
        attributes=attrs, framework_budget=_budget(req), record_metrics=False,
        worker=req.hostname,
    )  # fmt: skip
    _lifecycle.count_run(
        **ident, outcome=outcome, action=action, exc=exc, error_type=error_type,
        duration=(
            None if started is None or outcome is Outcome.LOST else max(0.0, time.time() - started)
        ),
        queue_wait=_queue_wait(req),
    )  # fmt: skip


def _budget(req: Any) -> Any:
    return _message.framework_budget(
        req.task, req.time_limits, (WORKER.time_limit, WORKER.soft_time_limit)
    )


def request_class(base: type) -> type:
    """``base`` (a task's Request class) with jobpulse's main-process hooks."""

    class JobpulseRequest(base):  # type: ignore[misc, valid-type]
        _jobpulse_done = False
        _jobpulse_soft = False

        def on_success(self, failed__retval__runtime: Any, **kwargs: Any) -> Any:
            request_succeeded(self, failed__retval__runtime)
            return super().on_success(failed__retval__runtime, **kwargs)

        def on_failure(
            self, exc_info: Any, send_failed_event: bool = True, return_ok: bool = False
        ) -> Any:
            request_failed(self, exc_info)
            return super().on_failure(
                exc_info, send_failed_event=send_failed_event, return_ok=return_ok
            )

        def on_timeout(self, soft: bool, timeout: Any) -> Any:
            request_timed_out(self, soft, timeout)
            return super().on_timeout(soft, timeout)

        def terminate(self, pool: Any, signal: Any = None) -> Any:
            if _process.ACTIVE and self.time_start:
                if len(_terminating) > 1024:
                    _terminating.clear()
                _terminating[str(self.id)] = self.time_start
            return super().terminate(pool, signal)

    JobpulseRequest.__name__ = JobpulseRequest.__qualname__ = base.__name__
    JobpulseRequest.__module__ = base.__module__
    return JobpulseRequest


_original_create_request_cls: Any = None


def patch_strategy() -> None:
    """Every Request class the worker builds from now on carries the hooks."""
    global _original_create_request_cls
    if _original_create_request_cls is not None:
        return
    from celery.worker import strategy

    original = strategy.create_request_cls

    def create_request_cls(*args: Any, **kwargs: Any) -> Any:
        cls = original(*args, **kwargs)
        try:
            return request_class(cls)
        except Exception as exc:  # noqa: BLE001 - never break the worker
            _guard.report("adapter.celery.worker", exc)
            return cls

    create_request_cls.__wrapped__ = original  # type: ignore[attr-defined]
    strategy.create_request_cls = create_request_cls
    _original_create_request_cls = original


def unpatch_strategy() -> None:
    global _original_create_request_cls
    if _original_create_request_cls is None:
        return
    from celery.worker import strategy

    strategy.create_request_cls = _original_create_request_cls
    _original_create_request_cls = None


# -- revoked ------------------------------------------------------------------------
def on_revoked(
    sender: Any = None, request: Any = None, terminated: Any = None, expired: Any = None,
    **_: Any,
) -> None:  # fmt: skip
    if not _process.ACTIVE or _runtime.get() is None or request is None:
        return
    with _guard.never_raise("adapter.celery.worker"):
        task_id = str(request.id)
        job_name = getattr(sender, "name", None) or str(getattr(request, "task", "") or "")
        queue = _message.queue_of(getattr(request, "delivery_info", None))
        started = _terminating.pop(task_id, None) if terminated else None
        attrs = dict(_message.messaging_attributes("process", queue))
        attrs[n.MESSAGING_MESSAGE_ID] = task_id
        _lifecycle.record_run(
            job_name, system=_message.SYSTEM, outcome=Outcome.CANCELLED, action=Action.NONE,
            job_id=task_id, attempt=_message.attempt(getattr(request, "retries", 0)),
            queue=queue, started_at=started, producer=_message.producer_context(request),
            kind=SpanKind.CONSUMER, attributes=attrs,
            framework_budget=_message.framework_budget(
                sender, getattr(request, "timelimit", None),
                (WORKER.time_limit, WORKER.soft_time_limit),
            ),
            worker=getattr(request, "hostname", None),
        )  # fmt: skip
