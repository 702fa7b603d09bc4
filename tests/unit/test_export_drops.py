"""Spans dropped by a full export queue are counted, not lost silently."""

from __future__ import annotations

import threading
from collections.abc import Sequence

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

import jobpulse
from jobpulse import _guard
from jobpulse._otel import CountingBatchSpanProcessor


class StuckExporter(SpanExporter):
    def __init__(self) -> None:
        self.release = threading.Event()

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        self.release.wait(10)
        return SpanExportResult.SUCCESS


@pytest.mark.allow_internal_errors
def test_full_queue_drops_are_counted_in_telemetry_errors() -> None:
    exporter = StuckExporter()
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(CountingBatchSpanProcessor(exporter, max_queue_size=8))
    reader = InMemoryMetricReader()
    jobpulse.instrument(
        tracer_provider=tracer_provider,
        meter_provider=MeterProvider(metric_readers=[reader]),
        configure_otel=False,
    )
    before = _guard.counts().get("export.span_queue_full", 0)

    @jobpulse.job
    def noop() -> None:
        pass

    try:
        for _ in range(100):
            assert noop() is None  # the job is unaffected
    finally:
        exporter.release.set()
    dropped = _guard.counts()["export.span_queue_full"] - before
    # A queue of 8 and one batch of 8 in the stuck exporter: the rest is dropped.
    assert dropped >= 100 - 8 - 8
    points = [
        p
        for rm in reader.get_metrics_data().resource_metrics
        for sm in rm.scope_metrics
        for m in sm.metrics
        if m.name == "jobpulse.telemetry.errors"
        for p in m.data.data_points
    ]
    assert any(
        p.attributes["jobpulse.component"] == "export.span_queue_full" and p.value == dropped
        for p in points
    )
    tracer_provider.shutdown()
