"""The enqueue side: a PRODUCER span ``send {job}`` and the trace context in job meta.

``Queue.create_job`` is where every enqueue path (``enqueue``, ``enqueue_call``,
``enqueue_at``/``enqueue_in``, ``enqueue_many``) makes its jobs, so the span
starts there, as a child of the caller's span, and its context goes into the
meta before RQ saves the job. The span ends when the outermost public call
returns (``enqueue_many``: one span per job). A job made with ``Job.create``
and handed to ``Queue.enqueue_job`` is stamped there.

``Queue.schedule_job`` and ``Queue._enqueue_job`` are where a job is saved
again on its way into a queue: a scheduled job records its scheduled time as
``enqueued_at`` (queue wait counts from when it is due), a requeued one the
time of the requeue, and a retry of a run this process is handling bumps the
attempt (see :mod:`._runs`).
"""

from __future__ import annotations

import calendar
import time
from collections.abc import Callable
from contextvars import ContextVar
from typing import Any

from opentelemetry.trace import Span, SpanKind, Status, StatusCode

from ... import _guard, _runtime
from ... import _names as n
from ..._textsafe import safe_str
from . import _attrs, _meta, _runs

_pending: ContextVar[list[Span] | None] = ContextVar("jobpulse_rq_sends", default=None)


def start_send(queue: Any, job: Any) -> None:
    """Open the ``send`` span of a job being enqueued and stamp its meta."""
    rt = _runtime.get()
    if rt is None:
        return
    with _guard.never_raise("adapter.rq.send"):
        name = _attrs.job_name(job)
        attrs = dict(_attrs.base(queue, "send"))
        attrs[n.MESSAGING_MESSAGE_ID] = job.id
        attrs[n.JOB_NAME] = name
        span = rt.tracer.start_span(f"send {name}", kind=SpanKind.PRODUCER, attributes=attrs)
        _meta.stamp(job, span.get_span_context(), time.time())
        pending = _pending.get()
        if pending is None:
            span.end()
        else:
            pending.append(span)


def _end_sends(spans: list[Span], exc: BaseException | None) -> None:
    with _guard.never_raise("adapter.rq.send"):
        for span in spans:
            if exc is not None:
                span.record_exception(exc)
                span.set_status(Status(StatusCode.ERROR, safe_str(exc)))
            span.end()


def entry_point(original: Callable[..., Any]) -> Callable[..., Any]:
    """A public enqueue method: the send spans of the jobs it makes end when it returns."""

    def enqueue(self: Any, *args: Any, **kwargs: Any) -> Any:
        if _pending.get() is not None or _runtime.get() is None:
            return original(self, *args, **kwargs)
        spans: list[Span] = []
        token = _pending.set(spans)
        try:
            result = original(self, *args, **kwargs)
        except BaseException as exc:
            _pending.reset(token)
            _end_sends(spans, exc)
            raise
        _pending.reset(token)
        _end_sends(spans, None)
        return result

    return enqueue


def create_job(original: Callable[..., Any]) -> Callable[..., Any]:
    def create(self: Any, *args: Any, **kwargs: Any) -> Any:
        job = original(self, *args, **kwargs)
        if _runtime.get() is not None:
            start_send(self, job)
        return job

    return create


def enqueue_job(original: Callable[..., Any]) -> Callable[..., Any]:
    """``Queue.enqueue_job``: stamp a job made without ``Queue.create_job``."""
    outer = entry_point(original)

    def enqueue(self: Any, job: Any, *args: Any, **kwargs: Any) -> Any:
        if _runtime.get() is None:
            return original(self, job, *args, **kwargs)
        if _meta.entry(job) is None:
            spans: list[Span] = []
            token = _pending.set(spans) if _pending.get() is None else None
            try:
                start_send(self, job)
                result = original(self, job, *args, **kwargs)
            except BaseException as exc:
                if token is not None:
                    _pending.reset(token)
                    _end_sends(spans, exc)
                raise
            if token is not None:
                _pending.reset(token)
                _end_sends(spans, None)
            return result
        return outer(self, job, *args, **kwargs)

    return enqueue


def due_time(when: Any) -> float:
    """When RQ's scheduler considers a job scheduled for ``when`` due: its registry
    scores whole seconds (naive datetimes are local time), as RQ computes them."""
    if when.tzinfo is None:
        when = when.astimezone()
    return float(calendar.timegm(when.utctimetuple()))


def schedule_job(original: Callable[..., Any]) -> Callable[..., Any]:
    def schedule(self: Any, job: Any, when: Any, *args: Any, **kwargs: Any) -> Any:
        if _runtime.get() is not None:
            with _guard.never_raise("adapter.rq.schedule"):
                _runs.requeued(job, due=due_time(when))
        return original(self, job, when, *args, **kwargs)

    return schedule


def enqueue_saved(original: Callable[..., Any]) -> Callable[..., Any]:
    """``Queue._enqueue_job``: the job enters the queue now, unless the scheduler is
    moving a scheduled job (then it became due at its scheduled time)."""

    def enqueue(self: Any, job: Any, *args: Any, **kwargs: Any) -> Any:
        if _runtime.get() is not None:
            with _guard.never_raise("adapter.rq.enqueue"):
                if job.get_status(refresh=False) != "scheduled":
                    _runs.requeued(job, due=time.time())
        return original(self, job, *args, **kwargs)

    return enqueue
