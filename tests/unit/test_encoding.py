"""jobpulse's exporters put the same bytes on the wire as the SDK's encoder, faster."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import pytest
from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.common._log_encoder import encode_logs
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import SimpleLogRecordProcessor
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import Link, SpanContext, SpanKind, Status, StatusCode, TraceFlags
from opentelemetry.trace.span import TraceState

from jobpulse import _encoding

try:  # its name since SDK 1.39
    from opentelemetry.sdk._logs.export import InMemoryLogRecordExporter as InMemoryLogExporter
except ImportError:  # pragma: no cover
    from opentelemetry.sdk._logs.export import InMemoryLogExporter


@pytest.fixture
def installed() -> Iterator[None]:
    _encoding.install()
    # the trace and the log encoder (and the OTLP/HTTP span exporter, once it is loaded)
    assert {name for _, name, _, _ in _encoding._installed} >= {"_encode_attributes"}
    assert sum(name == "_encode_attributes" for _, name, _, _ in _encoding._installed) == 2
    try:
        yield
    finally:
        _encoding.uninstall()


def _both(encode: Any, batch: Any) -> tuple[bytes, bytes, bytes]:
    _encoding.uninstall()
    sdk = encode(batch).SerializeToString()
    _encoding.install()
    cold = encode(batch).SerializeToString()
    warm = encode(batch).SerializeToString()  # every repeated attribute from the cache
    return sdk, cold, warm


def _spans() -> list[Any]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource({"service.name": "svc", "n": 3}))
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer(
        "jobpulse", "1.0", schema_url="https://opentelemetry.io/schemas/1.44.0"
    )
    producer = SpanContext(
        0x1234, 0x5678, is_remote=True, trace_flags=TraceFlags(1),
        trace_state=TraceState([("vendor", "a=b")]),
    )  # fmt: skip
    for i in range(3):
        span = tracer.start_span(
            "emails.send",
            kind=SpanKind.CONSUMER,
            context=trace.set_span_in_context(trace.NonRecordingSpan(producer)),
            links=[Link(producer, {"jobpulse.link": "producer", "i": i})],
            attributes={
                "jobpulse.job.name": "emails.send", "jobpulse.job.id": f"id-{i}",
                "jobpulse.run.id": f"run-{i}", "jobpulse.attempt": 1 + i % 2,
                "jobpulse.queue.wait": 0.25 * i, "jobpulse.redelivered": bool(i),
                "messaging.system": "celery", "tags": ("a", "b"), "counts": [1, 2, 3],
                "ratios": (0.5, 1.5), "flags": [True, False],
            },
        )  # fmt: skip
        span.add_event("jobpulse.heartbeat", {"jobpulse.progress.processed": i, "note": "x"})
        span.add_event("plain")
        if i == 2:
            span.record_exception(ValueError("bad"))
            span.set_status(Status(StatusCode.ERROR, "bad"))
        with trace.use_span(span):
            tracer.start_span("step", attributes={"jobpulse.step.name": "load"}).end()
        span.set_attributes({"jobpulse.outcome": "success", "jobpulse.heartbeat.count": i})
        span.end()
    return list(exporter.get_finished_spans())


def test_spans_encode_to_the_sdks_bytes(installed: None) -> None:
    sdk, cold, warm = _both(encode_spans, _spans())
    assert sdk == cold == warm
    assert b"emails.send" in sdk


def test_log_records_encode_to_the_sdks_bytes(installed: None) -> None:
    exporter = InMemoryLogExporter()
    provider = LoggerProvider(resource=Resource({"service.name": "svc"}))
    provider.add_log_record_processor(SimpleLogRecordProcessor(exporter))
    from jobpulse._loghandler import OTelLogHandler

    handler = OTelLogHandler(provider)
    logger = logging.getLogger("jobpulse.test-encoding")
    logger.propagate = False
    logger.setLevel(logging.INFO)
    logger.addHandler(handler)
    span = TracerProvider().get_tracer("t").start_span("job")
    try:
        with trace.use_span(span, end_on_exit=True):
            for i in range(3):
                logger.info("run started", extra={"jobpulse.job.name": "a", "jobpulse.attempt": i})
                logger.warning("stalled", extra={"jobpulse.elapsed": 1.5, "list": ["x", "y"]})
        logger.error("outside a span", extra={"jobpulse.run.id": "r1"})
    finally:
        logger.removeHandler(handler)
    sdk, cold, warm = _both(encode_logs, list(exporter.get_finished_logs()))
    assert sdk == cold == warm
    assert b"run started" in sdk


def test_instrument_installs_the_cache_and_uninstrument_removes_it() -> None:
    from opentelemetry.exporter.otlp.proto.common._internal import trace_encoder

    import jobpulse

    original = trace_encoder._encode_attributes
    jobpulse.instrument(configure_otel=False)
    assert trace_encoder._encode_attributes is not original
    _encoding._cache.clear()
    encode_spans(_spans())
    assert ("jobpulse.job.name", str, "emails.send") in _encoding._cache
    # jobpulse's repeated values only: no ids, no user attributes
    assert {k[0] for k in _encoding._cache} <= _encoding.CACHED_KEYS
    jobpulse.uninstrument()
    assert trace_encoder._encode_attributes is original
    assert not _encoding._cache


@pytest.mark.parametrize("how", ["keyword", "environment"])
def test_fast_export_off_leaves_the_sdks_exporters_alone(
    how: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from opentelemetry.exporter.otlp.proto.common._internal import trace_encoder
    from opentelemetry.exporter.otlp.proto.http import trace_exporter

    import jobpulse

    before = (trace_encoder._encode_attributes, trace_exporter.encode_spans)
    if how == "keyword":
        jobpulse.instrument(configure_otel=False, fast_export=False)
    else:
        monkeypatch.setenv("JOBPULSE_FAST_EXPORT", "false")
        jobpulse.instrument(configure_otel=False)
    assert (trace_encoder._encode_attributes, trace_exporter.encode_spans) == before
    assert not _encoding._installed


@pytest.mark.allow_internal_errors
def test_a_failing_cache_falls_back_to_the_sdks_encoder(
    installed: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    expected = _both(encode_spans, _spans())[0]

    def broken(*args: Any) -> Any:
        raise RuntimeError("cache bug")

    monkeypatch.setattr(_encoding, "cached_attributes", broken)
    assert encode_spans(_spans()).SerializeToString() != b""
    assert len(encode_spans(_spans()).SerializeToString()) == len(expected)


def test_the_cache_stays_bounded_and_keeps_no_user_data() -> None:
    from opentelemetry.exporter.otlp.proto.common._internal import _encode_key_value

    _encoding._cache.clear()
    for i in range(_encoding.MAX_ENTRIES * 2 + 5):
        _encoding.cached_attributes({"jobpulse.job.name": f"job{i}"}, _encode_key_value)
        assert len(_encoding._cache) <= _encoding.MAX_ENTRIES
    _encoding._cache.clear()
    long_name = "x" * (_encoding.MAX_VALUE_LENGTH + 1)
    attrs = {"db.statement": "SELECT 1", "jobpulse.run.id": "r1", "jobpulse.job.name": long_name}
    assert len(_encoding.cached_attributes(attrs, _encode_key_value)) == 3
    assert not _encoding._cache


def test_calls_of_another_shape_go_to_the_sdks_function(installed: None) -> None:
    from opentelemetry.exporter.otlp.proto.common._internal import _log_encoder

    seen: list[Any] = []
    module, _name, _original, replacement = next(
        entry for entry in _encoding._installed if entry[0] is _log_encoder
    )
    wrapped = _encoding._dispatcher(lambda *a, **k: seen.append((a, k)) or [], lambda k, v: v)
    wrapped({"a": 1}, allow_null=True)  # a newer SDK's keyword
    assert seen == [(({"a": 1},), {"allow_null": True})]
    assert module._encode_attributes is replacement


def test_uninstall_restores_the_sdks_encoder() -> None:
    from opentelemetry.exporter.otlp.proto.common._internal import trace_encoder

    original = trace_encoder._encode_attributes
    _encoding.install()
    assert trace_encoder._encode_attributes is not original
    _encoding.uninstall()
    assert trace_encoder._encode_attributes is original

    _encoding.install()

    def theirs(attributes: Any) -> Any:  # someone wrapped the encoder after jobpulse
        return original(attributes)

    trace_encoder._encode_attributes = theirs
    try:
        _encoding.uninstall()
        assert trace_encoder._encode_attributes is theirs  # left in place
    finally:
        trace_encoder._encode_attributes = original
