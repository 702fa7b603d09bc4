"""A forked child (an RQ work horse) starts no export thread until it has something to export."""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence
from typing import Any

import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult

from jobpulse._forklazy import is_lazy, lazy_after_fork
from tests.support.forking import in_child

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="fork only")


class Names(SpanExporter):
    def __init__(self) -> None:
        self.names: list[str] = []

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        self.names.extend(s.name for s in spans)
        return SpanExportResult.SUCCESS


def _export_threads() -> list[str]:
    return sorted(t.name for t in threading.enumerate() if t.name.startswith("OtelBatch"))


def test_a_child_starts_the_export_thread_on_its_first_span_and_exports_it() -> None:
    exporter = Names()
    with lazy_after_fork():
        processor = BatchSpanProcessor(exporter, schedule_delay_millis=60_000)
    provider = TracerProvider()
    provider.add_span_processor(processor)
    assert is_lazy(processor)
    assert _export_threads()  # the parent's thread runs as usual

    def child() -> dict[str, Any]:
        before = _export_threads()
        provider.get_tracer("t").start_span("in-child").end()
        after = _export_threads()
        processor.force_flush()
        return {"before": before, "after": after, "names": exporter.names}

    provider.get_tracer("t").start_span("queued-in-parent").end()  # not exported yet
    result = in_child(child)
    assert result["before"] == []
    assert len(result["after"]) == 1
    assert result["names"] == ["in-child"]  # the parent's queued span is the parent's
    # the parent still exports through its own thread, its queue intact
    provider.get_tracer("t").start_span("in-parent").end()
    assert processor.force_flush()
    assert exporter.names == ["queued-in-parent", "in-parent"]
    processor.shutdown()


def test_a_child_that_never_emits_flushes_and_shuts_down_without_a_thread() -> None:
    exporter = Names()
    with lazy_after_fork():
        processor = BatchSpanProcessor(exporter)

    def child() -> dict[str, Any]:
        flushed = processor.force_flush()
        processor.shutdown()
        return {"flushed": flushed, "threads": _export_threads()}

    result = in_child(child)
    assert result == {"flushed": True, "threads": []}
    processor.shutdown()


def test_log_processors_defer_too() -> None:
    from opentelemetry.sdk._logs.export import BatchLogRecordProcessor

    try:
        from opentelemetry.sdk._logs.export import InMemoryLogRecordExporter as Exporter
    except ImportError:  # pragma: no cover
        from opentelemetry.sdk._logs.export import InMemoryLogExporter as Exporter
    with lazy_after_fork():
        processor = BatchLogRecordProcessor(Exporter())
    assert is_lazy(processor)
    assert in_child(lambda: {"threads": _export_threads()}) == {"threads": []}
    processor.shutdown()


def test_processors_built_outside_the_block_are_the_sdks() -> None:
    """...which start a thread in every child at fork: the cost the block avoids."""
    processor = BatchSpanProcessor(Names())
    assert not is_lazy(processor)
    assert in_child(lambda: {"threads": _export_threads()})["threads"]
    processor.shutdown()


def test_a_fork_that_ran_no_python_fork_handlers_loses_no_record() -> None:
    """uWSGI forks in C: the SDK's own "emitted after a fork" check is what resets the
    processor, on the first emit; that record and the next are both exported."""
    from opentelemetry.util._once import Once

    exporter = Names()
    with lazy_after_fork():
        processor = BatchSpanProcessor(exporter, schedule_delay_millis=60_000)
    provider = TracerProvider()
    provider.add_span_processor(processor)
    inner: Any = processor._batch_processor  # type: ignore[attr-defined]

    def child() -> dict[str, Any]:
        inner._pid = os.getppid()  # as if no fork handler had run
        inner._bsp_reset_once = Once()
        tracer = provider.get_tracer("t")
        tracer.start_span("first").end()
        tracer.start_span("second").end()
        processor.force_flush()
        return {"names": exporter.names, "threads": _export_threads()}

    result = in_child(child)
    assert result["names"] == ["first", "second"]
    assert len(result["threads"]) == 1
    processor.shutdown()


def test_the_export_paths_lazy_imports_are_done_before_any_fork() -> None:
    """A child forked while the parent's first export imports ``netrc`` would block on
    that import forever (seen in CI: a forked child's flush stuck there)."""
    import subprocess
    import sys

    code = (
        "import sys, jobpulse; jobpulse.instrument(configure_otel=True); "
        "print('netrc' in sys.modules, 'shlex' in sys.modules)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True,
        env={**os.environ, "OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:9"},
    )  # fmt: skip
    assert out.stdout.split() == ["True", "True"]
