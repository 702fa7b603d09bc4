"""Living with opentelemetry-instrumentation-celery: one run span per task, not two.

When the contrib instrumentation is active it makes a CONSUMER span per task
(``run/<task>``). jobpulse then adopts that span as the run span: the run's
attributes, links, events, outcome and status go onto it, and contrib keeps
ending it. For that, jobpulse's ``task_prerun`` receiver must run after
contrib's (the span exists) and its ``task_postrun`` receiver before contrib's
(the span is still open); :func:`keep_order` arranges the receiver lists.
On the producer side contrib's ``apply_async/<task>`` span is the only one.
"""

from __future__ import annotations

import sys
from typing import Any

from opentelemetry import trace
from opentelemetry.util.types import Attributes

CONTRIB = "opentelemetry.instrumentation.celery"


def contrib_active() -> bool:
    """opentelemetry-instrumentation-celery is instrumenting this process now."""
    module = sys.modules.get(CONTRIB)
    if module is None:
        return False
    instrumentor = getattr(getattr(module, "CeleryInstrumentor", None), "_instance", None)
    return bool(getattr(instrumentor, "_is_instrumented_by_opentelemetry", False))


def contrib_run_span(task: Any, task_id: str) -> trace.Span | None:
    """contrib's recording run span for this task, if it made one."""
    utils = sys.modules.get(CONTRIB + ".utils")
    retrieve = getattr(utils, "retrieve_context", None)
    if retrieve is None:
        return None
    found = retrieve(task, task_id)
    if not found:
        return None
    span = found[0]
    return span if isinstance(span, trace.Span) and span.is_recording() else None


class AdoptedSpan(trace.Span):
    """Another instrumentation's span used as the run span; its owner ends it."""

    __slots__ = ("_span",)

    def __init__(self, span: trace.Span) -> None:
        self._span = span

    def end(self, end_time: int | None = None) -> None:
        pass  # contrib's task_postrun ends it

    def get_span_context(self) -> trace.SpanContext:
        return self._span.get_span_context()

    def set_attributes(self, attributes: Any) -> None:
        self._span.set_attributes(attributes)

    def set_attribute(self, key: str, value: Any) -> None:
        self._span.set_attribute(key, value)

    def add_event(
        self, name: str, attributes: Attributes = None, timestamp: int | None = None
    ) -> None:
        self._span.add_event(name, attributes, timestamp)

    def add_link(self, context: trace.SpanContext, attributes: Attributes = None) -> None:
        self._span.add_link(context, attributes)

    def update_name(self, name: str) -> None:
        self._span.update_name(name)

    def is_recording(self) -> bool:
        return self._span.is_recording()

    def set_status(self, status: Any, description: str | None = None) -> None:
        self._span.set_status(status, description)

    def record_exception(
        self,
        exception: BaseException,
        attributes: Attributes = None,
        timestamp: int | None = None,
        escaped: bool = False,
    ) -> None:
        self._span.record_exception(exception, attributes, timestamp, escaped)


def _move(signal: Any, dispatch_uid: str, *, first: bool) -> None:
    with signal.lock:
        receivers = signal.receivers
        for index, (key, _receiver) in enumerate(receivers):
            if isinstance(key, tuple) and key and key[0] == dispatch_uid:
                entry = receivers.pop(index)
                if first:
                    receivers.insert(0, entry)
                else:
                    receivers.append(entry)
                break
        signal.sender_receivers_cache.clear()


def keep_order(prerun_uid: str, postrun_uid: str) -> None:
    """jobpulse's prerun receiver last, its postrun receiver first (see module doc)."""
    from celery import signals

    _move(signals.task_prerun, prerun_uid, first=False)
    _move(signals.task_postrun, postrun_uid, first=True)
