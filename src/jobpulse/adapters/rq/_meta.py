"""The job meta entry jobpulse keeps: trace context, when the job became due, attempts.

``job.meta["jobpulse"]`` holds, as plain strings and numbers that any RQ
serializer can store:

* ``traceparent``, ``tracestate``: the W3C trace context of the enqueue
  (producer) span, which the run span links to;
* ``enqueued_at``: unix seconds when the job became due: when it was enqueued,
  or for ``enqueue_at``/``enqueue_in`` and interval retries the scheduled time,
  so queue wait never counts a planned delay;
* ``attempt`` (from the second attempt on): the number of the next run, since
  RQ keeps only the retries left, not the retries made;
* ``previous``: the traceparent of the previous attempt's run span.

jobpulse only changes the in-memory meta right before RQ itself saves the job
(enqueue, retry, schedule); it never writes to Redis on its own.
"""

from __future__ import annotations

import re
from typing import Any

from opentelemetry import trace
from opentelemetry.trace import SpanContext, TraceFlags
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

KEY = "jobpulse"
_W3C = TraceContextTextMapPropagator()
#: the traceparent jobpulse itself writes (version 00, lowercase, nothing around it)
_PLAIN_TRACEPARENT = re.compile(r"00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})")
_ZERO_TRACE, _ZERO_SPAN = "0" * 32, "0" * 16


def entry(job: Any) -> dict[str, Any] | None:
    """The job's jobpulse entry, or None (enqueued by a process without jobpulse)."""
    meta = getattr(job, "meta", None)
    if isinstance(meta, dict):
        found = meta.get(KEY)
        if isinstance(found, dict):
            return found
    return None


def ensure_entry(job: Any) -> dict[str, Any] | None:
    meta = getattr(job, "meta", None)
    if meta is None:
        meta = job.meta = {}
    if not isinstance(meta, dict):
        return None
    found = meta.get(KEY)
    if not isinstance(found, dict):
        found = meta[KEY] = {}
    return found


def traceparent(ctx: SpanContext) -> dict[str, str]:
    """``{"traceparent": ..., "tracestate": ...}`` for a span context (empty if invalid)."""
    carrier: dict[str, str] = {}
    if ctx.is_valid:
        _W3C.inject(carrier, context=trace.set_span_in_context(trace.NonRecordingSpan(ctx)))
    return carrier


def stamp(job: Any, ctx: SpanContext, enqueued_at: float) -> None:
    """Record the producer's context and the enqueue time in the job's meta."""
    found = ensure_entry(job)
    if found is None:
        return
    carrier = traceparent(ctx)
    if "traceparent" in carrier:
        found["traceparent"] = carrier["traceparent"]
        found["tracestate"] = carrier.get("tracestate", "")
    found["enqueued_at"] = enqueued_at


def span_context(found: dict[str, Any] | None, key: str = "traceparent") -> SpanContext | None:
    """The span context stored under ``key`` (``traceparent`` or ``previous``), if valid."""
    if not found:
        return None
    value = found.get(key)
    if not isinstance(value, str):
        return None
    found_state = found.get("tracestate") if key == "traceparent" else None
    state = found_state if isinstance(found_state, str) else ""
    plain = None if state else _PLAIN_TRACEPARENT.fullmatch(value)
    if plain is not None:
        # What the W3C propagator gives for this shape, without its context round
        # trip (a third of describing a run): every run reads one.
        trace_id, span_id, flags = plain.groups()
        if trace_id == _ZERO_TRACE or span_id == _ZERO_SPAN:
            return None
        return SpanContext(
            int(trace_id, 16), int(span_id, 16), is_remote=True,
            trace_flags=TraceFlags(int(flags, 16)),
        )  # fmt: skip
    carrier = {"traceparent": value}
    if state:
        carrier["tracestate"] = state
    ctx = trace.get_current_span(_W3C.extract(carrier)).get_span_context()
    return ctx if ctx.is_valid else None


def number(found: dict[str, Any] | None, key: str) -> float | None:
    if not found:
        return None
    value = found.get(key)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value)
