"""Exporters that write OTLP-JSON lines, one file per signal, like the collector's file exporter.

For the demo without a collector: the files are what a collector would have
received, in the encoding ``otelcol``'s ``otlpjsonfile`` receiver reads back.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from google.protobuf.json_format import MessageToJson
from opentelemetry.exporter.otlp.proto.common._log_encoder import encode_logs
from opentelemetry.exporter.otlp.proto.common.metrics_encoder import encode_metrics
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.sdk.metrics.export import MetricExporter, MetricExportResult, MetricsData
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult


class _Lines:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("")

    def write(self, message: Any) -> None:
        line = MessageToJson(message, indent=None)
        with self._lock, self.path.open("a") as fh:
            fh.write(line + "\n")


class JsonLinesSpanExporter(SpanExporter):
    def __init__(self, path: Path) -> None:
        self._out = _Lines(path)

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        self._out.write(encode_spans(spans))
        return SpanExportResult.SUCCESS


class JsonLinesMetricExporter(MetricExporter):
    def __init__(self, path: Path) -> None:
        super().__init__()
        self._out = _Lines(path)

    def export(
        self, metrics_data: MetricsData, timeout_millis: float = 10_000, **kwargs: Any
    ) -> MetricExportResult:
        self._out.write(encode_metrics(metrics_data))
        return MetricExportResult.SUCCESS

    def force_flush(self, timeout_millis: float = 10_000) -> bool:
        return True

    def shutdown(self, timeout_millis: float = 30_000, **kwargs: Any) -> None:
        pass


class JsonLinesLogExporter:
    def __init__(self, path: Path) -> None:
        self._out = _Lines(path)

    def export(self, batch: Sequence[Any]) -> Any:
        from opentelemetry.sdk._logs.export import LogExportResult

        self._out.write(encode_logs(batch))
        return LogExportResult.SUCCESS

    def shutdown(self) -> None:
        pass

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        return True
