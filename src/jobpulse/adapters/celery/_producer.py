"""The producer side: ``delay``/``apply_async``/canvas send a task.

``before_task_publish`` writes the trace context and ``jobpulse_enqueued_at``
into the protocol 2 headers and starts a PRODUCER span ``send {job name}``;
``after_task_publish`` ends it. A retry published from inside a run of the
same job (``self.retry()``, autoretry) carries that run's span context instead,
so the next attempt links to the previous one. Eager calls publish nothing.
"""

from __future__ import annotations

import time
from typing import Any

from opentelemetry.trace import Span, SpanKind

from ... import _guard, _runtime
from ... import _names as n
from ..._context import current
from . import _coexist, _message

#: task id -> its open PRODUCER span, between before_ and after_task_publish
_pending: dict[str, Span] = {}
_MAX_PENDING = 1024  # a publish that failed never sends after_task_publish


def _broker_url() -> Any:
    from celery import current_app

    return current_app.conf.broker_url


def before_publish(
    sender: Any = None,
    body: Any = None,
    routing_key: Any = None,
    headers: Any = None,
    properties: Any = None,
    **_: Any,
) -> None:
    rt = _runtime.get()
    if rt is None or not isinstance(headers, dict):
        return
    with _guard.never_raise("adapter.celery.publish"):
        task_id = headers.get("id")
        job_name = str(sender or headers.get("task") or "")
        run = current.get()
        if (
            run is not None
            and run.system == _message.SYSTEM
            and run.job_id == task_id
            and run.span is not None
        ):
            _message.inject(headers, run.span)  # the next attempt links to this one
        elif _coexist.contrib_active():
            if "traceparent" not in headers:  # contrib injects its own span's context
                _message.inject(headers)
        elif task_id is not None:
            queue = str(routing_key or "")
            attrs = dict(_message.messaging_attributes("send", queue, _broker_url()))
            attrs[n.MESSAGING_MESSAGE_ID] = str(task_id)
            attrs[n.JOB_NAME] = job_name
            attrs[n.JOB_ID] = str(task_id)
            attrs[n.SYSTEM] = _message.SYSTEM
            span = rt.tracer.start_span(
                f"send {job_name}", kind=SpanKind.PRODUCER, attributes=attrs
            )
            _message.inject(headers, span)
            if len(_pending) >= _MAX_PENDING:
                _pending.pop(next(iter(_pending))).end()
            _pending[str(task_id)] = span
        now = time.time()
        headers[_message.ENQUEUED_AT] = repr(now)
        if isinstance(properties, dict):
            # The AMQP timestamp property: RabbitMQ's management API reports the head
            # message's, which is how `jobpulse probe` tells a queue's oldest age there.
            properties.setdefault("timestamp", int(now))


def after_publish(sender: Any = None, headers: Any = None, **_: Any) -> None:
    if not _pending or not isinstance(headers, dict):
        return
    with _guard.never_raise("adapter.celery.publish"):
        span = _pending.pop(str(headers.get("id")), None)
        if span is not None:
            span.end()


def clear() -> None:
    while _pending:
        _pending.popitem()[1].end()
