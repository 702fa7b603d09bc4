"""The span writer sends the SDK's bytes: every shape of span the SDK makes, compared."""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import pytest
from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.common._internal import trace_encoder
from opentelemetry.exporter.otlp.proto.http import _log_exporter, trace_exporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import SpanLimits, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import Link, SpanContext, SpanKind, Status, StatusCode, TraceFlags
from opentelemetry.trace.span import TraceState

from jobpulse import _encoding, _guard, _wire

SDK_ENCODE = trace_encoder.encode_spans


def _sdk_bytes(spans: Any) -> bytes:
    return SDK_ENCODE(spans).SerializePartialToString()  # type: ignore[no-any-return]


def _writer() -> _wire.SpanEncoder:
    from opentelemetry.exporter.otlp.proto.common import _internal

    return _wire.SpanEncoder(_internal)


class _Spans:
    """Finished spans from providers of several resources and scopes."""

    def __init__(self, **limits: Any) -> None:
        self.exporter = InMemorySpanExporter()
        self.limits = SpanLimits(**limits) if limits else None

    def tracer(self, resource: Resource, *args: Any, **kwargs: Any) -> trace.Tracer:
        provider = TracerProvider(resource=resource, span_limits=self.limits)
        provider.add_span_processor(SimpleSpanProcessor(self.exporter))
        return provider.get_tracer(*args, **kwargs)

    def all(self) -> list[Any]:
        return list(self.exporter.get_finished_spans())


REMOTE = SpanContext(
    0xABCDEF0123456789ABCDEF0123456789, 0x1122334455667788, is_remote=True,
    trace_flags=TraceFlags(1), trace_state=TraceState([("vendor", "a=b"), ("x", "1")]),
)  # fmt: skip
LOCAL = SpanContext(0x42, 0x43, is_remote=False, trace_flags=TraceFlags(1))

VALUES: list[Any] = [
    "", "plain", "ünïcødé ✓", "x" * 300, True, False, 0, 1, -1, 127, 128, 2**62,
    -(2**63), 2**63 - 1, 0.0, -1.5, 1e300, math.inf, -math.inf, b"", b"\x00\xff",
    ("a", "b"), [1, 2, 3], (0.5, 1.5), [True, False], (), ["", "z"],
]  # fmt: skip


def _every_shape() -> list[Any]:
    spans = _Spans()
    svc = Resource({"service.name": "svc", "service.instance.id": "i-1"})
    with_schema = Resource({"service.name": "other"}, "https://opentelemetry.io/schemas/1.21.0")
    plain = spans.tracer(svc, "jobpulse", "1.0")
    scoped = spans.tracer(svc, "lib", "2", schema_url="https://example.com/s", attributes={"a": 1})
    bare = spans.tracer(svc, "")
    other = spans.tracer(with_schema, "jobpulse", "1.0")
    twin = spans.tracer(
        Resource({"service.name": "svc", "service.instance.id": "i-1"}), "jobpulse", "1.0"
    )
    for kind in SpanKind:
        plain.start_span(f"kind-{kind.name}", kind=kind).end()
    for i, value in enumerate(VALUES):
        plain.start_span("attr", attributes={f"k{i}": value, "jobpulse.job.name": "cached"}).end()
    for i in range(3):  # jobpulse's repeating attributes: written from the cache the 2nd time
        plain.start_span("run", attributes={
            "jobpulse.job.name": "emails.send", "jobpulse.attempt": 1 + i % 2,
            "jobpulse.system": "celery", "jobpulse.outcome": "success",
            "jobpulse.redelivered": bool(i), "jobpulse.run.id": f"run-{i}",
            "jobpulse.queue.wait": 0.25 * i, "jobpulse.job.name.long": "y" * 400,
        }).end()  # fmt: skip
    remote_parent = trace.set_span_in_context(trace.NonRecordingSpan(REMOTE))
    local_parent = trace.set_span_in_context(trace.NonRecordingSpan(LOCAL))
    linked = plain.start_span(
        "linked", context=remote_parent, kind=SpanKind.CONSUMER,
        links=[Link(REMOTE, {"why": "producer", "n": 2}), Link(LOCAL), Link(REMOTE, {})],
    )  # fmt: skip
    linked.add_event("jobpulse.heartbeat", {"jobpulse.progress.processed": 3, "note": "x"})
    linked.add_event("plain")
    linked.add_event("timed", {"t": 1.5}, timestamp=1_700_000_000_123_456_789)
    linked.record_exception(ValueError("bad ✗"))
    linked.set_status(Status(StatusCode.ERROR, "bad ✗"))
    linked.end()
    child = plain.start_span("child", context=local_parent)
    child.set_status(Status(StatusCode.OK))
    child.end()
    error = scoped.start_span("error-no-description")
    error.set_status(Status(StatusCode.ERROR))
    error.end()
    scoped.start_span("scoped", attributes={"x": "y"}).end()
    bare.start_span("").end()
    other.start_span("other resource").end()
    twin.start_span("an equal resource, another object").end()
    plain.start_span("interleaved after other resources").end()
    unended = plain.start_span("never ended")
    spans_list = spans.all()
    del unended
    return spans_list


def test_every_shape_of_span_writes_the_sdks_bytes() -> None:
    spans = _every_shape()
    writer = _writer()
    assert writer.request(spans) == _sdk_bytes(spans)
    assert writer.request(spans) == _sdk_bytes(spans)  # warm: cached attributes and scopes


def test_each_span_alone_writes_the_sdks_bytes() -> None:
    writer = _writer()
    for span in _every_shape():
        assert writer.request([span]) == _sdk_bytes([span]), span.name


def test_dropped_attributes_events_and_links_are_counted_as_the_sdk_counts_them() -> None:
    spans = _Spans(max_attributes=2, max_events=1, max_links=1, max_event_attributes=1,
                   max_link_attributes=1)  # fmt: skip
    tracer = spans.tracer(Resource({"service.name": "svc"}), "t")
    span = tracer.start_span(
        "limited", attributes={"a": 1, "b": 2, "c": 3},
        links=[Link(REMOTE, {"x": 1, "y": 2}), Link(LOCAL)],
    )  # fmt: skip
    span.add_event("e1", {"p": 1, "q": 2})
    span.add_event("e2")
    span.end()
    batch = spans.all()
    assert batch[0].dropped_attributes
    assert batch[0].dropped_events
    assert batch[0].dropped_links
    assert _writer().request(batch) == _sdk_bytes(batch)


def test_an_empty_batch_is_an_empty_request() -> None:
    assert _writer().request([]) == _sdk_bytes([]) == b""


@pytest.fixture
def installed() -> Iterator[None]:
    _encoding.install()
    try:
        yield
    finally:
        _encoding.uninstall()


def test_the_exporter_sends_the_written_bytes_and_uninstall_restores_it(installed: None) -> None:
    assert trace_exporter.encode_spans is not SDK_ENCODE
    spans = _every_shape()
    request = trace_exporter.encode_spans(spans)
    assert isinstance(request, _wire.EncodedRequest)
    assert request.SerializePartialToString() == request.SerializeToString() == _sdk_bytes(spans)
    assert (
        len(request.resource_spans) == 2
    )  # anything else asked: the SDK's message (equal resources merged)
    _encoding.uninstall()
    assert trace_exporter.encode_spans is SDK_ENCODE


@pytest.mark.allow_internal_errors
def test_a_batch_the_writer_fails_on_goes_to_the_sdks_encoder(
    installed: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(self: Any, span: Any) -> bytes:
        raise RuntimeError("writer bug")

    monkeypatch.setattr(_wire.SpanEncoder, "item", broken)
    spans = _every_shape()
    before = _guard.counts().get("export.wire", 0)
    request = trace_exporter.encode_spans(spans)
    assert request.SerializePartialToString() == _sdk_bytes(spans)
    assert _guard.counts().get("export.wire", 0) == before + 1


def test_an_attribute_the_sdk_cannot_encode_is_skipped_and_logged_once_as_by_the_sdk(
    installed: None, caplog: pytest.LogCaptureFixture
) -> None:
    spans = _every_shape()[:1]
    span = spans[0]
    span._attributes = {"ok": 1, "bad": object(), "big": 2**70}  # past the API's cleaning
    with caplog.at_level("ERROR"):
        sent = trace_exporter.encode_spans(spans).SerializePartialToString()
    ours = [r.getMessage() for r in caplog.records if "Failed to encode key" in r.getMessage()]
    caplog.clear()
    with caplog.at_level("ERROR"):
        expected = _sdk_bytes(spans)
    theirs = [r.getMessage() for r in caplog.records if "Failed to encode key" in r.getMessage()]
    assert sent == expected
    assert ours == theirs
    assert len(theirs) == 2


def test_one_cached_attribute_in_a_span_an_event_and_a_link_is_three_fields() -> None:
    spans = _Spans()
    tracer = spans.tracer(Resource({"service.name": "svc"}), "t")
    same = {"jobpulse.step.name": "load", "jobpulse.attempt": 2}
    for _ in range(2):
        span = tracer.start_span("run", attributes=same, links=[Link(REMOTE, same)])
        span.add_event("jobpulse.heartbeat", same)
        span.end()
    writer = _writer()
    batch = spans.all()
    assert writer.request(batch) == _sdk_bytes(batch)
    assert writer.request(batch[1:]) == _sdk_bytes(batch[1:])


def _one(
    resource: Resource, name: str = "t", scope: dict[str, Any] | None = None, **attributes: Any
) -> Any:
    tracer = TracerProvider(resource=resource).get_tracer(name, **(scope or {}))
    span = tracer.start_span("s", attributes=attributes, start_time=1)
    span.end(end_time=2)
    return span


def _outcome(encode: Any, spans: Any) -> Any:
    try:
        return encode(spans)
    except Exception as exc:  # what the exporter would see
        return type(exc)


def test_resources_and_scopes_are_grouped_as_the_sdks_dicts_group_them() -> None:
    # equal (==) resources that hash differently stay apart, as in the SDK's dict
    apart = [_one(Resource({"n": 1})), _one(Resource({"n": True})), _one(Resource({"n": 1.0}))]
    # equal scopes (attributes in another order) are looked up per resource
    r1, r2 = Resource({"r": 1}), Resource({"r": 2})
    scopes = [
        _one(r1, "lib", {"attributes": {"a": 1, "b": 2}}),
        _one(r2, "lib", {"attributes": {"b": 2, "a": 1}}),
        _one(r1, "lib", {"attributes": {"b": 2, "a": 1}}),
    ]
    writer = _writer()
    for batch in (apart, scopes, apart + scopes, scopes + apart):
        assert writer.request(batch) == _sdk_bytes(batch)


@pytest.mark.parametrize("depth", [2, 9, 33, 49, 80])
def test_deeply_nested_values_get_what_the_sdk_does_with_them(depth: int) -> None:
    nested: Any = 1
    for i in range(depth):
        nested = {"k": nested} if i % 2 else [nested]
    spans = [_one(Resource({}), x=nested, y="kept")]
    encode = trace_exporter.encode_spans
    _encoding.install()
    try:
        ours = _outcome(lambda s: trace_exporter.encode_spans(s).SerializePartialToString(), spans)
    finally:
        _encoding.uninstall()
    assert trace_exporter.encode_spans is encode
    assert ours == _outcome(_sdk_bytes, spans)


def test_a_batch_the_sdk_cannot_encode_either_fails_as_before_and_counts_nothing(
    installed: None,
) -> None:
    spans = [_one(Resource({}))]
    spans[0]._name = "lone \ud800 surrogate"
    before = dict(_guard.counts())
    with pytest.raises(Exception):  # noqa: B017, PT011 - whatever the SDK raises
        trace_exporter.encode_spans(spans)
    assert _guard.counts() == before


# -- log records ---------------------------------------------------------------------
def _sdk_log_bytes(batch: Any) -> bytes:
    from opentelemetry.exporter.otlp.proto.common._log_encoder import encode_logs

    return encode_logs(batch).SerializeToString()  # type: ignore[no-any-return]


def _every_log() -> list[Any]:
    from opentelemetry._logs import SeverityNumber
    from opentelemetry.sdk._logs import LoggerProvider, LogRecordLimits
    from opentelemetry.sdk._logs.export import SimpleLogRecordProcessor

    try:  # its name since SDK 1.39
        from opentelemetry.sdk._logs.export import InMemoryLogRecordExporter as Exporter
    except ImportError:  # pragma: no cover
        from opentelemetry.sdk._logs.export import InMemoryLogExporter as Exporter

    exporter = Exporter()
    loggers = []
    for resource, limits in (
        (Resource({"service.name": "svc"}), None),
        (Resource({"service.name": "other"}, "https://opentelemetry.io/schemas/1.21.0"),
         LogRecordLimits(max_attributes=2)),
    ):  # fmt: skip
        provider = LoggerProvider(resource=resource, log_record_limits=limits)
        provider.add_log_record_processor(SimpleLogRecordProcessor(exporter))
        loggers.append(provider.get_logger("jobpulse", "1.0"))
        loggers.append(provider.get_logger("lib", schema_url="https://example.com/s"))
    tracer = TracerProvider().get_tracer("t")
    bodies: list[Any] = [
        "run started", "", "ünï ✓", None, 0, -5, 2**62, 1.5, True, b"\x01", ["a", 1],
        {"k": "v", "n": [1, 2]}, ("x",),
    ]  # fmt: skip
    for i, body in enumerate(bodies):
        logger = loggers[i % len(loggers)]
        span = tracer.start_span("s") if i % 3 == 0 else None
        context = trace.set_span_in_context(span) if span is not None else None
        logger.emit(
            timestamp=1_700_000_000_000_000_000 + i if i % 4 else None,
            observed_timestamp=1_700_000_000_000_000_500 + i,
            context=context,
            severity_number=list(SeverityNumber)[i % len(SeverityNumber)],
            severity_text=("INFO", "", None)[i % 3],
            body=body,
            attributes={
                "jobpulse.job.name": "emails.send", "jobpulse.run.id": f"r{i}",
                "jobpulse.attempt": 1 + i % 2, "jobpulse.elapsed": 0.25 * i,
                "jobpulse.outcome": "success", f"k{i}": VALUES[i % len(VALUES)],
            },
            event_name="jobpulse.run" if i % 5 == 0 else None,
        )  # fmt: skip
    return [data for data in exporter.get_finished_logs()]


def test_every_shape_of_log_record_writes_the_sdks_bytes() -> None:
    from opentelemetry.exporter.otlp.proto.common import _internal

    batch = _every_log()
    assert any(r.dropped_attributes for r in batch)
    writer = _wire.LogEncoder(_internal)
    assert writer.request(batch) == _sdk_log_bytes(batch)
    assert writer.request(batch) == _sdk_log_bytes(batch)  # warm
    for record in batch:
        assert writer.request([record]) == _sdk_log_bytes([record])


def test_the_log_exporter_sends_the_written_bytes(installed: None) -> None:
    batch = _every_log()
    request = _log_exporter.encode_logs(batch)
    assert isinstance(request, _wire.EncodedRequest)
    assert request.SerializeToString() == _sdk_log_bytes(batch)


@pytest.mark.parametrize("severity", [-1, 2**31, True, 7.0])
def test_a_severity_the_sdk_would_refuse_or_widen_is_the_sdks_to_encode(
    installed: None, severity: Any
) -> None:
    batch = _every_log()[:1]

    class Odd:
        value = severity

    batch[0].log_record.severity_number = Odd()
    ours = _outcome(lambda b: _log_exporter.encode_logs(b).SerializeToString(), batch)
    assert ours == _outcome(_sdk_log_bytes, batch)
