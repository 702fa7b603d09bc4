"""What jobpulse reads from and writes to a Celery message (protocol 2 headers).

Written by the producer: ``traceparent``/``tracestate`` (through the global
propagator) and ``jobpulse_enqueued_at`` (unix seconds, as a string). Read by
the worker from the request (the child's ``task.request``, the main process's
``Request.request_dict``): the producer context, when the run became due, the
queue, budgets and the ``messaging.*`` attributes.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from datetime import datetime, timezone
from typing import Any

from opentelemetry import propagate, trace
from opentelemetry.propagators.textmap import Getter

from ... import _names as n
from ..._run import Budget

SYSTEM = "celery"
ENQUEUED_AT = "jobpulse_enqueued_at"
SERVER_ADDRESS = "server.address"
SERVER_PORT = "server.port"


class _Getter(Getter[Any]):
    """Reads a header from a dict or a Celery ``Context``; non-strings become strings."""

    def get(self, carrier: Any, key: str) -> list[str] | None:
        value = carrier.get(key) if isinstance(carrier, Mapping) else getattr(carrier, key, None)
        if value is None:
            return None
        if isinstance(value, str):
            return [value]
        if isinstance(value, bytes):
            return [value.decode("utf-8", "replace")]
        if isinstance(value, (list, tuple)):
            return [v if isinstance(v, str) else str(v) for v in value]
        return [str(value)]

    def keys(self, carrier: Any) -> list[str]:
        return [str(k) for k in carrier] if isinstance(carrier, Mapping) else []


GETTER = _Getter()
_fields_cache: tuple[int, tuple[str, ...]] = (0, ())


def _propagator_fields(textmap: Any) -> tuple[str, ...]:
    global _fields_cache
    if _fields_cache[0] != id(textmap):
        _fields_cache = (id(textmap), tuple(textmap.fields))
    return _fields_cache[1]


def get(carrier: Any, key: str) -> Any:
    if isinstance(carrier, Mapping):
        return carrier.get(key)
    return getattr(carrier, key, None)


def producer_context(carrier: Any) -> trace.SpanContext | None:
    """The producer's span context carried in the message, if any (global propagator)."""
    textmap = propagate.get_global_textmap()
    fields = _propagator_fields(textmap)
    if fields and not any(get(carrier, f) is not None for f in fields):
        return None
    ctx = textmap.extract(carrier, getter=GETTER)
    span_context = trace.get_current_span(ctx).get_span_context()
    return span_context if span_context.is_valid else None


def inject(headers: dict[str, Any], span: trace.Span | None = None) -> None:
    """Write the trace context of ``span`` (else the current one) into the headers."""
    ctx = trace.set_span_in_context(span) if span is not None else None
    propagate.inject(headers, context=ctx)


def _seconds(value: Any) -> float | None:
    if value is None or isinstance(value, bool):
        return None
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        return None
    return seconds if seconds == seconds and seconds not in (float("inf"), float("-inf")) else None


def eta_seconds(value: Any) -> float | None:
    """A Celery ETA (ISO 8601 string or datetime) as unix seconds; naive means UTC."""
    if value is None:
        return None
    try:
        eta = value if isinstance(value, datetime) else datetime.fromisoformat(str(value))
    except (TypeError, ValueError):
        return None
    if eta.tzinfo is None:
        eta = eta.replace(tzinfo=timezone.utc)
    return eta.timestamp()


def queue_wait(carrier: Any, started_at: float | None = None) -> float | None:
    """Seconds from when the run became due (enqueue time, or its ETA/countdown) to start.

    Clamped at 0: the producer's clock may be ahead of the worker's.
    """
    due = _seconds(get(carrier, ENQUEUED_AT))
    eta = get(carrier, "eta")
    if eta is not None:
        eta_at = eta_seconds(eta)
        if eta_at is not None and (due is None or eta_at > due):
            due = eta_at
    if due is None:
        return None
    started = time.time() if started_at is None else started_at
    return max(0.0, started - due)


def queue_of(delivery_info: Any) -> str:
    """The queue a message came from: its routing key (the queue name for Celery's
    default direct routing)."""
    if not isinstance(delivery_info, Mapping):
        return ""
    return str(delivery_info.get("routing_key") or "")


def redelivered(delivery_info: Any) -> bool | None:
    if isinstance(delivery_info, Mapping) and delivery_info.get("redelivered"):
        return True
    return None


_budgets: dict[tuple[float | None, int | None], Budget | None] = {}


def _limit(*values: Any) -> float | None:
    for value in values:
        seconds = _seconds(value)
        if seconds is not None and seconds > 0:
            return seconds
    return None


def framework_budget(task: Any, timelimit: Any, worker_limits: tuple[Any, Any]) -> Budget | None:
    """Celery's budget for a run: the smaller time limit as ``max_runtime`` and
    ``max_retries + 1`` as ``max_attempts``; message options beat the task's, which
    beat the worker's defaults."""
    hard = soft = None
    if isinstance(timelimit, (list, tuple)) and len(timelimit) == 2:
        hard, soft = timelimit
    hard = _limit(hard, getattr(task, "time_limit", None), worker_limits[0])
    soft = _limit(soft, getattr(task, "soft_time_limit", None), worker_limits[1])
    limits = [x for x in (hard, soft) if x is not None]
    max_runtime = min(limits) if limits else None
    retries = getattr(task, "max_retries", None)
    max_attempts = retries + 1 if isinstance(retries, int) and retries >= 0 else None
    key = (max_runtime, max_attempts)
    if key not in _budgets:
        if len(_budgets) > 1024:
            _budgets.clear()
        _budgets[key] = (
            None
            if max_runtime is None and max_attempts is None
            else Budget(max_runtime=max_runtime, max_attempts=max_attempts)
        )
    return _budgets[key]


_brokers: dict[str, dict[str, Any]] = {}


def broker_attributes(url: Any) -> dict[str, Any]:
    """``server.address``/``server.port`` of the broker: host and port only, never the
    credentials or the rest of the URL."""
    key = url if isinstance(url, str) else ""
    cached = _brokers.get(key)
    if cached is not None:
        return cached
    attrs: dict[str, Any] = {}
    if key:
        try:
            from kombu.utils.url import url_to_parts

            parts = url_to_parts(key.split(";")[0].strip())
            if parts.hostname:
                attrs[SERVER_ADDRESS] = parts.hostname
                if parts.port:
                    attrs[SERVER_PORT] = int(parts.port)
        except Exception:  # noqa: BLE001 - an odd URL only costs the attribute
            attrs = {}
    if len(_brokers) < 64:
        _brokers[key] = attrs
    return attrs


_base: dict[tuple[str, str, str], dict[str, Any]] = {}


def messaging_attributes(operation: str, queue: str, broker_url: Any = None) -> dict[str, Any]:
    """The ``messaging.*`` attributes shared by every message of a queue, and the
    broker's ``server.*`` when ``broker_url`` is given (the producer's span: the run
    span carries enough, and every attribute costs each run), cached: build a
    per-message dict from this, never mutate it."""
    key = (operation, queue, broker_url if isinstance(broker_url, str) else "")
    attrs = _base.get(key)
    if attrs is None:
        attrs = {
            n.MESSAGING_SYSTEM: SYSTEM,
            n.MESSAGING_OPERATION_NAME: operation,
            n.MESSAGING_OPERATION_TYPE: operation,
            **broker_attributes(broker_url),
        }
        if queue:
            attrs[n.MESSAGING_DESTINATION_NAME] = queue
        if len(_base) < 4096:
            _base[key] = attrs
    return attrs


def code_function(task: Any) -> str | None:
    """``module.qualname`` of the function behind a task."""
    fn = getattr(task, "run", None)
    fn = getattr(fn, "__func__", fn)
    module = getattr(fn, "__module__", None)
    qualname = getattr(fn, "__qualname__", None)
    if not module or not qualname:
        return None
    return f"{module}.{qualname}" if module != "__main__" else str(qualname)


def attempt(retries: Any) -> int:
    return retries + 1 if isinstance(retries, int) and retries >= 0 else 1
