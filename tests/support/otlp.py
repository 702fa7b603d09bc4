"""An OTLP/HTTP receiver inside the test suite: what a collector would see.

Decodes the protobuf requests the SDK's http exporters send and keeps plain
records, so tests assert on what really crossed the wire.
"""

from __future__ import annotations

import gzip
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue


def _value(v: AnyValue) -> Any:
    kind = v.WhichOneof("value")
    if kind == "array_value":
        return [_value(x) for x in v.array_value.values]
    if kind == "kvlist_value":
        return {kv.key: _value(kv.value) for kv in v.kvlist_value.values}
    return getattr(v, kind) if kind else None


def _attrs(kvs: Any) -> dict[str, Any]:
    return {kv.key: _value(kv.value) for kv in kvs}


@dataclass
class Span:
    name: str
    trace_id: str
    span_id: str
    parent_span_id: str
    kind: int
    attributes: dict[str, Any]
    events: list[tuple[str, dict[str, Any]]]
    links: list[tuple[str, str]]
    status_code: int
    status_message: str
    resource: dict[str, Any]
    start_ns: int
    end_ns: int


@dataclass
class Point:
    name: str
    kind: str  # sum, gauge, histogram
    attributes: dict[str, Any]
    value: float
    resource: dict[str, Any]
    count: int = 0
    bucket_counts: list[int] = field(default_factory=list)
    bounds: list[float] = field(default_factory=list)
    unit: str = ""
    time_ns: int = 0
    monotonic: bool = False


@dataclass
class Log:
    body: Any
    severity: str
    attributes: dict[str, Any]
    trace_id: str
    resource: dict[str, Any]


class Receiver:
    """Start with :meth:`start`; point ``OTEL_EXPORTER_OTLP_ENDPOINT`` at :attr:`endpoint`."""

    def __init__(self) -> None:
        self.spans: list[Span] = []
        self.points: list[Point] = []
        self.logs: list[Log] = []
        self.requests = 0
        self._cond = threading.Condition()
        self._server: ThreadingHTTPServer | None = None

    @property
    def endpoint(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.server_port}"

    def start(self) -> Receiver:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                body = self.rfile.read(length)
                if self.headers.get("Content-Encoding") == "gzip":
                    body = gzip.decompress(body)
                receiver._ingest(self.path, body)
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", "0")
                self.end_headers()

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    def clear(self) -> None:
        with self._cond:
            self.spans.clear()
            self.points.clear()
            self.logs.clear()

    def env(self, **extra: str) -> dict[str, str]:
        """Environment for a worker process that exports here, quickly."""
        env = {
            "OTEL_EXPORTER_OTLP_ENDPOINT": self.endpoint,
            "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
            "OTEL_METRIC_EXPORT_INTERVAL": "300",
            "OTEL_BSP_SCHEDULE_DELAY": "100",
            "OTEL_BLRP_SCHEDULE_DELAY": "100",
        }
        env.update(extra)
        return env

    # -- decoding -------------------------------------------------------------
    def _ingest(self, path: str, body: bytes) -> None:
        with self._cond:
            self.requests += 1
            if path.endswith("/v1/traces"):
                self._traces(body)
            elif path.endswith("/v1/metrics"):
                self._metrics(body)
            elif path.endswith("/v1/logs"):
                self._logs(body)
            self._cond.notify_all()

    def _traces(self, body: bytes) -> None:
        req = ExportTraceServiceRequest.FromString(body)
        for rs in req.resource_spans:
            resource = _attrs(rs.resource.attributes)
            for ss in rs.scope_spans:
                for s in ss.spans:
                    self.spans.append(
                        Span(
                            name=s.name,
                            trace_id=s.trace_id.hex(),
                            span_id=s.span_id.hex(),
                            parent_span_id=s.parent_span_id.hex(),
                            kind=s.kind,
                            attributes=_attrs(s.attributes),
                            events=[(e.name, _attrs(e.attributes)) for e in s.events],
                            links=[(ln.trace_id.hex(), ln.span_id.hex()) for ln in s.links],
                            status_code=s.status.code,
                            status_message=s.status.message,
                            resource=resource,
                            start_ns=s.start_time_unix_nano,
                            end_ns=s.end_time_unix_nano,
                        )
                    )

    def _metrics(self, body: bytes) -> None:
        req = ExportMetricsServiceRequest.FromString(body)
        for rm in req.resource_metrics:
            resource = _attrs(rm.resource.attributes)
            for sm in rm.scope_metrics:
                for m in sm.metrics:
                    kind = m.WhichOneof("data")
                    data = getattr(m, kind)
                    for dp in data.data_points:
                        if kind == "histogram":
                            point = Point(
                                m.name, kind, _attrs(dp.attributes), dp.sum, resource,
                                count=dp.count, bucket_counts=list(dp.bucket_counts),
                                bounds=list(dp.explicit_bounds), unit=m.unit,
                                time_ns=dp.time_unix_nano,
                            )  # fmt: skip
                        else:
                            value = (
                                dp.as_double if dp.WhichOneof("value") == "as_double" else dp.as_int
                            )
                            point = Point(
                                m.name, kind, _attrs(dp.attributes), float(value), resource,
                                unit=m.unit, time_ns=dp.time_unix_nano,
                                monotonic=bool(getattr(data, "is_monotonic", False)),
                            )  # fmt: skip
                        self.points.append(point)

    def _logs(self, body: bytes) -> None:
        req = ExportLogsServiceRequest.FromString(body)
        for rl in req.resource_logs:
            resource = _attrs(rl.resource.attributes)
            for sl in rl.scope_logs:
                for rec in sl.log_records:
                    self.logs.append(
                        Log(
                            body=_value(rec.body),
                            severity=rec.severity_text,
                            attributes=_attrs(rec.attributes),
                            trace_id=rec.trace_id.hex(),
                            resource=resource,
                        )
                    )

    # -- queries ----------------------------------------------------------------
    def wait_for(
        self, predicate: Callable[[Receiver], Any], timeout: float = 30.0, what: str = ""
    ) -> Any:
        """Wait until ``predicate(self)`` is truthy; fail the test at the deadline."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                result = predicate(self)
                if result:
                    return result
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AssertionError(
                        f"timed out after {timeout}s waiting for {what or predicate}; "
                        f"have {len(self.spans)} spans, {len(self.points)} points, "
                        f"{len(self.logs)} logs"
                    )
                self._cond.wait(min(remaining, 0.5))

    def run_spans(self, job: str | None = None) -> list[Span]:
        with self._cond:
            return [
                s for s in self.spans
                if "jobpulse.run.id" in s.attributes
                and (job is None or s.attributes.get("jobpulse.job.name") == job)
            ]  # fmt: skip

    def latest(self, name: str, **attributes: Any) -> list[Point]:
        """The newest point of each series of metric ``name`` matching ``attributes``
        (dotted names via ``**{...}``); series are keyed by attributes and resource."""
        newest: dict[Any, Point] = {}
        with self._cond:
            for p in self.points:
                if p.name != name or any(p.attributes.get(k) != v for k, v in attributes.items()):
                    continue
                key = (
                    tuple(sorted(p.attributes.items())),
                    tuple(sorted((k, str(v)) for k, v in p.resource.items())),
                )
                if key not in newest or p.time_ns >= newest[key].time_ns:
                    newest[key] = p
        return list(newest.values())

    def total(self, name: str, **attributes: Any) -> float:
        """Sum over series of the newest cumulative value (counter value or histogram count)."""
        return sum(
            p.count if p.kind == "histogram" else p.value for p in self.latest(name, **attributes)
        )
