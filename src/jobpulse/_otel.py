"""OpenTelemetry SDK wiring that respects what the user already configured.

jobpulse never replaces a provider. With ``configure_otel=None`` (the default)
it builds providers from the standard ``OTEL_*`` variables only where none is
set yet; with ``True`` it builds its own (and makes them global only where
none is set); with ``False`` it uses whatever is there, possibly nothing.

Facts this module designs around (see docs/design.md):

* gRPC is not fork-safe, so the OTLP exporters are HTTP/protobuf.
* Forked children inherit the parent's metric state. Exporters built here are
  bound to the process that made them; a child builds a fresh MeterProvider.
* The SDK's flush can block for its whole export timeout when the collector is
  down, so every flush here runs in a daemon thread joined with a deadline.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from opentelemetry import metrics, trace
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import (
    MetricExporter,
    MetricExportResult,
    MetricReader,
    MetricsData,
    PeriodicExportingMetricReader,
)
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter

from . import _guard
from ._config import ConfigurationError, Settings
from ._forklazy import lazy_after_fork

_log = logging.getLogger("jobpulse")


@dataclass
class Providers:
    """The providers jobpulse emits through, and which of them it built (and so owns)."""

    tracer_provider: Any
    meter_provider: Any
    logger_provider: Any | None
    owned: set[str] = field(default_factory=set)
    metric_readers: list[MetricReader] = field(default_factory=list)
    prometheus: Any = None

    def each(self) -> tuple[Any, Any, Any]:
        """The tracer, logger and meter providers (the logger's may be None)."""
        return (self.tracer_provider, self.logger_provider, self.meter_provider)


class CountingBatchSpanProcessor(BatchSpanProcessor):
    """A BatchSpanProcessor that counts what a full queue drops.

    The SDK drops silently (a log line at most); an operator needs to know the
    traces are incomplete, so drops go to ``jobpulse.telemetry.errors``.
    """

    def __init__(self, exporter: SpanExporter, max_queue_size: int) -> None:
        batch = min(max_queue_size, int(os.environ.get("OTEL_BSP_MAX_EXPORT_BATCH_SIZE") or 512))
        super().__init__(exporter, max_queue_size=max_queue_size, max_export_batch_size=batch)
        self._max_queue = max_queue_size

    def on_end(self, span: ReadableSpan) -> None:
        inner = getattr(self, "_batch_processor", None)
        queue = getattr(inner, "_queue", None)
        if queue is not None and len(queue) >= self._max_queue:
            _guard.report("export.span_queue_full")
        super().on_end(span)


class ProcessBoundMetricExporter(MetricExporter):
    """Exports only from the process that built it.

    After a fork the SDK restarts the inherited periodic reader in the child,
    which would export the parent's cumulative counters again under the
    child's identity: duplicated data. The child gets a fresh MeterProvider;
    this wrapper silences the inherited one.
    """

    def __init__(self, inner: MetricExporter) -> None:
        super().__init__(
            preferred_temporality=getattr(inner, "_preferred_temporality", None),
            preferred_aggregation=getattr(inner, "_preferred_aggregation", None),
        )
        self._inner = inner
        self._pid = os.getpid()

    def export(
        self, metrics_data: MetricsData, timeout_millis: float = 10_000, **kwargs: Any
    ) -> MetricExportResult:
        if os.getpid() != self._pid:
            return MetricExportResult.SUCCESS
        return self._inner.export(metrics_data, timeout_millis=timeout_millis, **kwargs)

    def force_flush(self, timeout_millis: float = 10_000) -> bool:
        if os.getpid() != self._pid:
            return True
        return self._inner.force_flush(timeout_millis=timeout_millis)

    def shutdown(self, timeout_millis: float = 30_000, **kwargs: Any) -> None:
        if os.getpid() == self._pid:
            self._inner.shutdown(timeout_millis=timeout_millis, **kwargs)


class ParentOnlyMetricReader(PeriodicExportingMetricReader):
    """A periodic reader that stays in the process that built it.

    After a fork the SDK starts the reader's ticker thread again in the child,
    and that thread, once :func:`silence_inherited_readers` stops it, runs one
    last full collection of the parent's instruments, whose export
    :class:`ProcessBoundMetricExporter` then drops: a thread start and a wasted
    collection in every prefork child and every RQ work horse. jobpulse gives a
    child that exports metrics its own MeterProvider, so the inherited reader
    needs no thread at all.
    """

    def _at_fork_reinit(self) -> None:
        """No ticker in a forked child (the SDK calls this after every fork)."""


def _env(name: str, default: str) -> str:
    return os.environ.get(name, "").strip() or default


def _exporter_kind(signal: str) -> str:
    var = f"OTEL_{signal.upper()}_EXPORTER"
    kind = _env(var, "otlp").lower().split(",")[0].strip()
    if kind not in ("otlp", "console", "none"):
        raise ConfigurationError(
            f"{var}={kind!r} is not supported by jobpulse's SDK set-up; valid values: "
            "otlp, console, none (or set up the SDK yourself and pass configure_otel=False)"
        )
    protocol = _env(
        f"OTEL_EXPORTER_OTLP_{signal.upper()}_PROTOCOL",
        _env("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"),
    )
    if kind == "otlp" and protocol != "http/protobuf":
        raise ConfigurationError(
            f"OTEL_EXPORTER_OTLP_PROTOCOL={protocol!r}: jobpulse exports OTLP over "
            "http/protobuf only, because gRPC channels do not survive the forks that Celery "
            "and RQ workers make; valid values: http/protobuf"
        )
    return kind


def _span_exporter() -> SpanExporter | None:
    kind = _exporter_kind("traces")
    if kind == "none":
        return None
    if kind == "console":
        from opentelemetry.sdk.trace.export import ConsoleSpanExporter

        return ConsoleSpanExporter()
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    return OTLPSpanExporter()


def _metric_exporter() -> MetricExporter | None:
    kind = _exporter_kind("metrics")
    if kind == "none":
        return None
    if kind == "console":
        from opentelemetry.sdk.metrics.export import ConsoleMetricExporter

        return ConsoleMetricExporter()
    from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter

    return OTLPMetricExporter()


def _log_exporter() -> Any | None:
    kind = _exporter_kind("logs")
    if kind == "none":
        return None
    if kind == "console":
        from opentelemetry.sdk._logs.export import ConsoleLogExporter

        return ConsoleLogExporter()
    from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter

    return OTLPLogExporter()


def _is_set(provider: Any) -> bool:
    name = type(provider).__name__
    return not (name.startswith(("Proxy", "_Proxy", "NoOp", "_NoOp", "Default")))


def _global_logger_provider() -> Any:
    try:
        from opentelemetry._logs import get_logger_provider

        return get_logger_provider()
    except ImportError:  # pragma: no cover - API without logs
        return None


@dataclass
class Exporters:
    """Explicit exporters (the demo and tests pass these); None = from OTEL_* variables."""

    span: SpanExporter | None = None
    metric: MetricExporter | None = None
    log: Any | None = None
    from_env: bool = True


def _metric_interval_ms() -> float:
    raw = os.environ.get("OTEL_METRIC_EXPORT_INTERVAL", "").strip()
    try:
        return float(raw) if raw else 15_000.0
    except ValueError:
        return 15_000.0


def build_meter_provider(
    resource: Resource, exporter: MetricExporter | None, prometheus: Any = None
) -> tuple[MeterProvider, list[MetricReader]]:
    readers: list[MetricReader] = []
    if exporter is not None:
        readers.append(
            ParentOnlyMetricReader(
                ProcessBoundMetricExporter(exporter), export_interval_millis=_metric_interval_ms()
            )
        )
    if prometheus is not None:
        readers.append(prometheus)
    return MeterProvider(resource=resource, metric_readers=readers, shutdown_on_exit=False), readers


def _bsp_queue_size() -> int:
    raw = os.environ.get("OTEL_BSP_MAX_QUEUE_SIZE", "").strip()
    return int(raw) if raw.isdigit() and int(raw) > 0 else 8192


def setup(settings: Settings, exporters: Exporters | None = None) -> Providers:
    """Decide which providers jobpulse emits through, building the missing ones."""
    exporters = exporters or Exporters()
    build = settings.configure_otel
    owned: set[str] = set()
    resource = Resource.create()

    tp = settings.tracer_provider
    if tp is None:
        tp = trace.get_tracer_provider()
        if build is True or (build is None and not _is_set(tp)):
            span_exporter = _span_exporter() if exporters.from_env else exporters.span
            tp = TracerProvider(resource=resource, shutdown_on_exit=False)
            if span_exporter is not None:
                with lazy_after_fork():
                    processor = CountingBatchSpanProcessor(span_exporter, _bsp_queue_size())
                tp.add_span_processor(processor)
            owned.add("tracer")
            if not _is_set(trace.get_tracer_provider()):
                trace.set_tracer_provider(tp)

    mp = settings.meter_provider
    readers: list[MetricReader] = []
    prometheus = None
    if mp is None:
        mp = metrics.get_meter_provider()
        if build is True or (build is None and not _is_set(mp)):
            metric_exporter = _metric_exporter() if exporters.from_env else exporters.metric
            if settings.prometheus_port is not None:
                prometheus = _start_prometheus(settings)
            mp, readers = build_meter_provider(resource, metric_exporter, prometheus)
            owned.add("meter")
            if not _is_set(metrics.get_meter_provider()):
                metrics.set_meter_provider(mp)
    if settings.prometheus_port is not None and "meter" not in owned:
        raise ConfigurationError(
            "instrument(prometheus_port=...) / JOBPULSE_PROMETHEUS_PORT needs jobpulse to build "
            "the MeterProvider, but one is already set; valid values: None here, and a "
            "PrometheusMetricReader on your own MeterProvider"
        )

    lp = settings.logger_provider
    if lp is None:
        lp = _global_logger_provider()
        if build is True or (build is None and lp is not None and not _is_set(lp)):
            log_exporter = _log_exporter() if exporters.from_env else exporters.log
            lp = _build_logger_provider(resource, log_exporter)
            if lp is not None:
                owned.add("logger")
        elif lp is not None and not _is_set(lp):
            lp = None
    preload_export_imports()
    return Providers(tp, mp, lp, owned, readers, prometheus)


def preload_export_imports() -> None:
    """Import now what the OTLP/HTTP export path imports at its first request.

    ``requests`` imports ``netrc`` (and ``shlex``) inside every request's
    preparation. A worker that forks (a prefork pool, an RQ work horse) while an
    export thread of the parent is in the middle of that first import leaves the
    child a half-initialized module whose import lock nobody will release: every
    export of the child then blocks forever (seen: a forked child's flush stuck
    in ``requests.utils.get_netrc_auth``). Importing them before any fork closes
    that window."""
    if "requests" in sys.modules:
        import netrc  # noqa: F401
        import shlex  # noqa: F401


def _build_logger_provider(resource: Resource, exporter: Any | None) -> Any | None:
    if exporter is None:
        return None
    from opentelemetry._logs import set_logger_provider
    from opentelemetry.sdk._logs import LoggerProvider
    from opentelemetry.sdk._logs.export import BatchLogRecordProcessor

    lp = LoggerProvider(resource=resource, shutdown_on_exit=False)
    with lazy_after_fork():
        processor = BatchLogRecordProcessor(exporter)
    lp.add_log_record_processor(processor)
    if not _is_set(_global_logger_provider()):
        set_logger_provider(lp)
    return lp


_prometheus_lock = threading.Lock()
_prometheus_server: tuple[Any, Any] | None = None


def _start_prometheus(settings: Settings) -> Any:
    """A PrometheusMetricReader served on ``prometheus_host:prometheus_port``, once per process."""
    global _prometheus_server
    try:
        from opentelemetry.exporter.prometheus import PrometheusMetricReader
        from prometheus_client import start_http_server
    except ImportError as exc:
        raise ConfigurationError(
            "instrument(prometheus_port=...) needs the prometheus extra: "
            "pip install 'jobpulse[prometheus]'"
        ) from exc
    with _prometheus_lock:
        reader = PrometheusMetricReader()
        if _prometheus_server is None:
            _prometheus_server = start_http_server(
                settings.prometheus_port or 0, addr=settings.prometheus_host
            )
        return reader


def stop_prometheus() -> None:
    global _prometheus_server
    with _prometheus_lock:
        if _prometheus_server is not None:
            server, _thread = _prometheus_server
            server.shutdown()
            server.server_close()
            _prometheus_server = None


def prometheus_port() -> int | None:
    """The port the /metrics endpoint listens on (useful with port 0)."""
    if _prometheus_server is None:
        return None
    return int(_prometheus_server[0].server_port)


def run_bounded(fn: Callable[[], Any], timeout: float, name: str) -> bool:
    """Run ``fn`` in a daemon thread; give up waiting after ``timeout`` seconds.

    Returns True when ``fn`` finished in time. A collector that is down must
    not hold a worker's exit for the SDK's whole export timeout.
    """
    done = threading.Event()

    def target() -> None:
        try:
            fn()
        except Exception as exc:  # noqa: BLE001
            _guard.report(name, exc)
        finally:
            done.set()

    thread = threading.Thread(target=target, name=f"jobpulse-{name}", daemon=True)
    thread.start()
    return done.wait(timeout)


def flush_providers(providers: Providers, timeout: float) -> bool:
    """Force-flush spans, logs and metrics, together bounded by ``timeout`` seconds."""
    millis = int(timeout * 1000)

    def flush() -> None:
        for provider in (providers.tracer_provider, providers.logger_provider):
            fn = getattr(provider, "force_flush", None)
            if fn is not None:
                fn(millis)
        fn = getattr(providers.meter_provider, "force_flush", None)
        if fn is not None:
            fn(millis)

    return run_bounded(flush, timeout, "flush")


def shutdown_owned(providers: Providers, timeout: float) -> bool:
    def shutdown() -> None:
        for kind, provider in (
            ("tracer", providers.tracer_provider),
            ("logger", providers.logger_provider),
            ("meter", providers.meter_provider),
        ):
            if kind in providers.owned and provider is not None:
                provider.shutdown()

    return run_bounded(shutdown, timeout, "shutdown")


def set_instance_id(providers: Providers, instance_id: str) -> None:
    """Give a forked child a stable ``service.instance.id`` (node name and pool index)."""
    for provider in providers.each():
        update = getattr(provider, "_update_resource", None)
        if update is not None:
            update(Resource({"service.instance.id": instance_id}))


def silence_inherited_readers(readers: Sequence[MetricReader]) -> None:
    """Stop the periodic reader threads a child inherited (the SDK restarts them after fork)."""
    for reader in readers:
        event = getattr(reader, "_shutdown_event", None)
        if event is not None:
            event.set()


def fresh_connections(*roots: Any) -> int:
    """Give a forked child's exporters new HTTP sessions instead of the ones it inherited.

    A keep-alive connection of the parent's exporter is, after a fork, the same
    socket in two processes; and a lock inside the inherited session (urllib3's
    pool and its queue) that one of the parent's export threads held at the
    moment of the fork stays held forever in the child, so the child's first
    export would wait on it until its flush deadline (seen: a forked child
    exporting nothing). The child's exporters get fresh sessions with the same
    settings; the inherited ones are dropped without being touched (closing
    them could wait on those locks too, and must not close the parent's
    sockets). Walks the processors and exporters under ``roots`` (ten levels
    deep at most).
    """
    try:
        import requests
    except ImportError:  # pragma: no cover - the OTLP/HTTP exporter needs requests
        return 0
    replaced = 0
    seen: set[int] = set()
    stack: list[tuple[Any, int]] = [(root, 0) for root in roots if root is not None]
    while stack:
        obj, depth = stack.pop()
        if id(obj) in seen or depth > 10:
            continue
        seen.add(id(obj))
        if isinstance(obj, (tuple, list)):
            stack.extend((item, depth + 1) for item in obj)
            continue
        module = type(obj).__module__ or ""
        if not module.startswith(("opentelemetry", "jobpulse")):
            continue
        try:
            attrs = vars(obj)
        except TypeError:
            continue
        for name, child in list(attrs.items()):
            if isinstance(child, requests.Session):
                attrs[name] = _session_like(child)
                replaced += 1
            else:
                stack.append((child, depth + 1))
    return replaced


def _session_like(old: Any) -> Any:
    """A new ``requests.Session`` with ``old``'s settings and none of its state."""
    import requests

    new = requests.Session()
    new.headers = old.headers.copy()
    for name in ("auth", "proxies", "verify", "cert", "trust_env", "max_redirects", "params"):
        if hasattr(old, name):
            value = getattr(old, name)
            setattr(new, name, value.copy() if isinstance(value, dict) else value)
    return new
