"""Helpers for testing code that uses jobpulse, in-process and without a collector.

::

    from jobpulse.testing import capture

    def test_export_reports_progress():
        with capture() as cap:
            nightly_export(orders)
        run = cap.run_spans()[0]
        assert run.attributes["jobpulse.outcome"] == "success"
        assert cap.metric("jobpulse.job.runs", **{"jobpulse.outcome": "success"}) == 1

``capture()`` instruments jobpulse with in-memory span, metric and log
exporters for the duration of the block and uninstruments it afterwards.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from . import _guard, _runtime
from . import _names as n


class _ListHandler(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@dataclass
class Captured:
    """What jobpulse emitted inside a :func:`capture` block."""

    span_exporter: InMemorySpanExporter
    metric_reader: InMemoryMetricReader
    tracer_provider: TracerProvider
    meter_provider: MeterProvider
    _logs: _ListHandler = field(repr=False)

    @property
    def spans(self) -> list[ReadableSpan]:
        """Every finished span, in the order they ended."""
        return list(self.span_exporter.get_finished_spans())

    def run_spans(self, job: str | None = None) -> list[ReadableSpan]:
        """Finished run spans (those with ``jobpulse.run.id``), optionally of one job."""
        return [
            s
            for s in self.spans
            if s.attributes
            and n.RUN_ID in s.attributes
            and (job is None or s.attributes.get(n.JOB_NAME) == job)
        ]

    @property
    def logs(self) -> list[logging.LogRecord]:
        """jobpulse's log records; attributes use the contract's dotted names."""
        return list(self._logs.records)

    def metrics(self) -> dict[str, list[Any]]:
        """Collect now: metric name -> list of data points."""
        data = self.metric_reader.get_metrics_data()
        out: dict[str, list[Any]] = {}
        if data is None:
            return out
        for rm in data.resource_metrics:
            for sm in rm.scope_metrics:
                for metric in sm.metrics:
                    out.setdefault(metric.name, []).extend(metric.data.data_points)
        return out

    def metric(self, name: str, **attributes: Any) -> float | None:
        """Sum of a counter/gauge's points (or a histogram's count) whose attributes
        include ``attributes`` (dotted names may be passed with ``**{...}``). None if absent."""
        points = [
            p
            for p in self.metrics().get(name, [])
            if all(p.attributes.get(k) == v for k, v in attributes.items())
        ]
        if not points:
            return None
        total = 0.0
        for p in points:
            total += p.count if hasattr(p, "bucket_counts") else p.value
        return total


@contextlib.contextmanager
def capture(*, raise_internal: bool = False, **options: Any) -> Iterator[Captured]:
    """Instrument jobpulse with in-memory exporters for the block.

    ``raise_internal=True`` makes jobpulse's own swallowed failures raise,
    so a test notices them. Other options go to ``instrument()``.
    """
    _runtime.uninstrument()
    exporter = InMemorySpanExporter()
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(exporter))
    reader = InMemoryMetricReader()
    meter_provider = MeterProvider(metric_readers=[reader])
    handler = _ListHandler()
    logger = logging.getLogger(n.LOGGER_NAME)
    previous_level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    previous_raise = _guard.RAISE_INTERNAL
    _guard.RAISE_INTERNAL = raise_internal
    options.setdefault("configure_otel", False)
    try:
        _runtime.instrument(
            tracer_provider=tracer_provider, meter_provider=meter_provider, **options
        )
        yield Captured(exporter, reader, tracer_provider, meter_provider, handler)
    finally:
        _runtime.uninstrument()
        _guard.RAISE_INTERNAL = previous_raise
        logger.removeHandler(handler)
        logger.setLevel(previous_level)
        meter_provider.shutdown()
        tracer_provider.shutdown()
