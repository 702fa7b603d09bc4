"""A short horse run hands its spans and log lines to the parent instead of exporting them.

Exporting from every work horse costs an HTTP request per signal per job in
the job's critical path (the parent waits for the horse): more than the fork
itself. So while a horse's run is young, the spans it finishes and jobpulse's
log lines for it are kept in memory; at the end they travel to the parent
with the report, and the parent feeds them to its own span processors and
log handler, which export them in batches in the background, with the
horse's resource and trace context intact.

A run that lives longer than :data:`SPILL_AFTER` seconds, finishes more than
:data:`MAX_SPANS` spans or logs a warning "spills": what was kept goes to the
horse's own processors and from then on everything flows as usual (live
heartbeat and stall lines, batches exported by the horse); the horse then
flushes, bounded, before ``os._exit``. Providers that are not the SDK's (a
vendor's) are left alone, and the horse flushes.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import Event, ReadableSpan
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import Link, SpanContext, SpanKind, Status, StatusCode, TraceFlags
from opentelemetry.trace.span import TraceState

from ... import _guard, _runtime

SPILL_AFTER = 5.0
MAX_SPANS = 256
_PLAIN = (str, int, float, bool, type(None))


class Handoff:
    """Installed in a work horse for its one run (never in a long-lived process)."""

    def __init__(self, rt: _runtime.Runtime, multi: Any, handler: logging.Handler | None) -> None:
        self.rt = rt
        self.started = time.monotonic()
        self.lock = threading.Lock()
        self.multi = multi
        self.processors: tuple[Any, ...] = multi._span_processors if multi is not None else ()
        self.spans: list[ReadableSpan] = []
        self.handler = handler
        self.records: list[tuple[dict[str, Any], tuple[Any, ...] | None]] = []
        self.metrics: list[tuple[Any, ...]] = []
        self.spilled = False
        #: records someone else's handler sent to the horse's log pipeline (flush them)
        self.foreign_logs = False
        if multi is not None:
            multi._span_processors = (self,)
        if handler is not None:
            handler.emit = self._emit  # type: ignore[method-assign]
            logs: Any = getattr(
                getattr(handler, "_logger_provider", None), "_multi_log_record_processor", None
            )
            on_emit = getattr(logs, "on_emit", None)
            if on_emit is not None:

                def noticed(*args: Any, **kwargs: Any) -> Any:
                    self.foreign_logs = True
                    return on_emit(*args, **kwargs)

                logs.on_emit = noticed
        self._capture_metrics()
        # the watchdog's thread spills a long run (a thread of its own would cost every
        # horse a thread start); without a watchdog, a timer thread does
        self.timer: threading.Timer | None = None
        if rt.watchdog is not None:
            rt.watchdog.after(SPILL_AFTER, self.spill)
        else:
            self.timer = threading.Timer(SPILL_AFTER, self.spill)
            self.timer.daemon = True
            self.timer.start()

    # -- counters and histograms: the parent records them --------------------------
    def _capture_metrics(self) -> None:
        instruments = self.rt.instruments
        metrics = self.metrics
        instruments.record_dependency = (  # type: ignore[method-assign]
            lambda name, outcome, duration: metrics.append(("dep", name, outcome, duration))
        )
        instruments.record_unbounded = (  # type: ignore[method-assign]
            lambda name: metrics.append(("unbounded", name))
        )
        _guard.set_counter(lambda component: metrics.append(("error", component)))

    # -- the span processor the horse's provider now calls ---------------------
    def on_start(self, span: Any, parent_context: Any = None) -> None:
        for p in self.processors:
            p.on_start(span, parent_context=parent_context)

    def _on_ending(self, span: Any) -> None:
        for p in self.processors:
            ending = getattr(p, "_on_ending", None)
            if ending is not None:
                ending(span)

    def on_end(self, span: ReadableSpan) -> None:
        with self.lock:
            if not self.spilled:
                self.spans.append(span)
                if len(self.spans) <= MAX_SPANS:
                    return
        if not self.spilled:
            self.spill()
            return
        for p in self.processors:
            p.on_end(span)

    def shutdown(self) -> None:
        for p in self.processors:
            p.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        self.spill()
        return all(p.force_flush(timeout_millis) for p in self.processors)

    # -- jobpulse's OTel log handler in the horse ----------------------------------
    def _emit(self, record: logging.LogRecord) -> None:
        assert self.handler is not None
        if not self.spilled and record.levelno >= logging.WARNING:
            self.spill()  # a warning (a stall) must go out now
        with self.lock:
            if not self.spilled:
                ctx = trace.get_current_span().get_span_context()
                self.records.append(
                    (record_state(record), encode_context(ctx) if ctx.is_valid else None)
                )
                return
        type(self.handler).emit(self.handler, record)

    def spill(self) -> None:
        """The run is long (or loud): give what was kept to the horse's own pipeline,
        start the horse's gauges, and from now on let everything through."""
        with self.lock:
            if self.spilled:
                return
            self.spilled = True
            spans, self.spans = self.spans, []
            records, self.records = self.records, []
            if self.multi is not None:
                self.multi._span_processors = self.processors
            if self.handler is not None:
                self.handler.__dict__.pop("emit", None)
        with _guard.never_raise("adapter.rq.spill"):
            from ._fork import fresh_connections

            providers = self.rt.providers
            fresh_connections(
                getattr(providers.tracer_provider, "_active_span_processor", None),
                getattr(providers.logger_provider, "_multi_log_record_processor", None),
            )
            for span in spans:
                for p in self.processors:
                    p.on_end(span)
            if self.handler is not None:
                emit_records(self.handler, records)
            self.rt.child_metrics()  # gauges (active, stalled) for a run this long
            self._capture_metrics()  # counters and histograms still go to the parent

    def give_back(self, spans: list[Any], records: list[Any]) -> None:
        """Spans and records :meth:`take` returned that the parent cannot receive."""
        for raw in spans:
            for p in self.processors:
                p.on_end(decode_span(raw))
        if self.handler is not None:
            emit_records(self.handler, records)

    def take(self) -> tuple[list[Any], list[Any], list[Any]] | tuple[None, None, list[Any]]:
        """End the hand-off: the encoded spans and log records for the parent (None when
        the run spilled: the horse must flush), and the counted metrics."""
        if self.timer is not None:
            self.timer.cancel()
        with self.lock:
            spilled = self.spilled
            self.spilled = True  # anything after this (a stray thread) passes through
            spans, self.spans = self.spans, []
            records, self.records = self.records, []
            if self.multi is not None:
                self.multi._span_processors = self.processors
            if self.handler is not None:
                self.handler.__dict__.pop("emit", None)
        if spilled or self.multi is None:
            return None, None, self.metrics
        return [encode_span(s) for s in spans], records, self.metrics


def otel_handler(rt: _runtime.Runtime) -> logging.Handler | None:
    from ..._loghandler import is_otel_handler

    for handler in rt.log_handlers:
        if is_otel_handler(handler):
            return handler
    return None


def start(rt: _runtime.Runtime) -> Handoff:
    """Keep this horse's spans, log lines and counts for the parent (the spans only
    when the tracer provider is the SDK's)."""
    multi = getattr(rt.providers.tracer_provider, "_active_span_processor", None)
    if not isinstance(getattr(multi, "_span_processors", None), tuple):
        multi = None
        rt.child_metrics()
    return Handoff(rt, multi, otel_handler(rt) if multi is not None else None)


# -- encoding (plain values: the parent is a fork of the same program) --------------
def encode_context(ctx: SpanContext) -> tuple[Any, ...]:
    state = ctx.trace_state.to_header() if ctx.trace_state else ""
    return (ctx.trace_id, ctx.span_id, int(ctx.trace_flags), state, ctx.is_remote)


def decode_context(raw: Sequence[Any]) -> SpanContext:
    trace_id, span_id, flags, state, remote = raw
    return SpanContext(
        trace_id, span_id, is_remote=bool(remote), trace_flags=TraceFlags(flags),
        trace_state=TraceState.from_header([state]) if state else None,
    )  # fmt: skip


def encode_span(s: ReadableSpan) -> tuple[Any, ...]:
    scope = s.instrumentation_scope
    return (
        s.name,
        encode_context(s.context) if s.context is not None else None,
        encode_context(s.parent) if s.parent is not None else None,
        s.kind.value,
        s.start_time,
        s.end_time,
        dict(s.attributes or {}),
        [(e.name, dict(e.attributes or {}), e.timestamp) for e in s.events],
        [(encode_context(link.context), dict(link.attributes or {})) for link in s.links],
        (s.status.status_code.value, s.status.description),
        (dict(s.resource.attributes), s.resource.schema_url),
        (scope.name, scope.version, scope.schema_url, dict(scope.attributes or {}))
        if scope is not None
        else None,
    )


_resources: dict[Any, Resource] = {}
_scopes: dict[Any, InstrumentationScope] = {}


def _resource(raw: Any) -> Resource:
    attrs, schema = raw
    key = (tuple(sorted((k, repr(v)) for k, v in attrs.items())), schema)
    found = _resources.get(key)
    if found is None:
        found = _resources[key] = Resource(attrs, schema)
        if len(_resources) > 64:
            _resources.clear()
    return found


def _scope(raw: Any) -> InstrumentationScope | None:
    if raw is None:
        return None
    name, version, schema, attrs = raw
    key = (name, version, schema, tuple(sorted((k, repr(v)) for k, v in attrs.items())))
    found = _scopes.get(key)
    if found is None:
        found = _scopes[key] = InstrumentationScope(name, version, schema, attrs or None)
        if len(_scopes) > 64:
            _scopes.clear()
    return found


def decode_span(raw: Sequence[Any]) -> ReadableSpan:
    name, ctx, parent, kind, start, end, attrs, events, links, status, resource, scope = raw
    return ReadableSpan(
        name=name,
        context=decode_context(ctx) if ctx is not None else None,
        parent=decode_context(parent) if parent is not None else None,
        resource=_resource(resource),
        attributes=attrs,
        events=[Event(n, a, timestamp=t) for n, a, t in events],
        links=[Link(decode_context(c), a) for c, a in links],
        kind=SpanKind(kind),
        status=Status(StatusCode(status[0]), status[1]),
        start_time=start,
        end_time=end,
        instrumentation_scope=_scope(scope),
    )


def record_state(record: logging.LogRecord) -> dict[str, Any]:
    """A log record as plain values (message formatted, no traceback objects)."""
    state: dict[str, Any] = {}
    for key, value in record.__dict__.items():
        if isinstance(value, _PLAIN) or (
            isinstance(value, (list, tuple)) and all(isinstance(v, _PLAIN) for v in value)
        ):
            state[key] = value
    state["msg"] = record.getMessage()
    state["args"] = None
    state["exc_info"] = None
    return state


def emit_records(handler: logging.Handler, records: list[Any]) -> None:
    """Emit log records through ``handler`` in the trace context they were made in."""
    for state, ctx in records:
        record = logging.makeLogRecord(state)
        token = None
        if ctx is not None:
            span = trace.NonRecordingSpan(decode_context(ctx))
            token = otel_context.attach(trace.set_span_in_context(span))
        try:
            handler.handle(record)
        finally:
            if token is not None:
                otel_context.detach(token)


def receive(rt: _runtime.Runtime, spans: list[Any], records: list[Any], metrics: list[Any]) -> None:
    """In the parent: a horse's spans, log lines and counts, into this process's pipeline."""
    instruments = rt.instruments
    for entry in metrics:
        if entry[0] == "dep":
            instruments.record_dependency(entry[1], entry[2], entry[3])
        elif entry[0] == "unbounded":
            instruments.record_unbounded(entry[1])
        elif entry[0] == "error":
            instruments.record_telemetry_error(entry[1])
    multi = getattr(rt.providers.tracer_provider, "_active_span_processor", None)
    if multi is not None:
        for raw in spans:
            multi.on_end(decode_span(raw))
    handler = otel_handler(rt)
    if handler is not None and records:
        emit_records(handler, records)
