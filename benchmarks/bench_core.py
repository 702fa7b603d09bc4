"""Core costs: heartbeat(), a no-op job run with full telemetry, memory, the watchdog tick.

Run: ``.venv/bin/python benchmarks/bench_core.py`` (or ``scripts/bench``).
Targets (issue #2): heartbeat median <= 1 us; run overhead <= 100 us over the
bare call with the real SDK and a BatchSpanProcessor; 1,000,000 heartbeats end
with <= 100 events and flat memory; a watchdog tick over 10,000 runs < 10 ms.
"""

from __future__ import annotations

import gc
import statistics
import time
import tracemalloc
from collections.abc import Callable, Sequence
from typing import Any

from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult

import jobpulse
from jobpulse import _lifecycle, _runtime


class CountingExporter(SpanExporter):
    """Receives batches like a real exporter would, without the network in the timing."""

    def __init__(self) -> None:
        self.count = 0
        self.last: ReadableSpan | None = None

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        self.count += len(spans)
        if spans:
            self.last = spans[-1]
        return SpanExportResult.SUCCESS


def instrument() -> CountingExporter:
    exporter = CountingExporter()
    tp = TracerProvider()
    tp.add_span_processor(BatchSpanProcessor(exporter, max_queue_size=65_536))
    mp = MeterProvider(metric_readers=[InMemoryMetricReader()])
    jobpulse.instrument(
        tracer_provider=tp, meter_provider=mp, configure_otel=False, adapters="none"
    )
    return exporter


def per_call(fn: Callable[[], Any], n: int, rounds: int = 7) -> list[float]:
    """Seconds per call, one figure per round."""
    out = []
    for _ in range(rounds):
        gc.collect()
        start = time.perf_counter()
        for _ in range(n):
            fn()
        out.append((time.perf_counter() - start) / n)
    return out


def bench_heartbeat() -> dict[str, float]:
    results: dict[str, float] = {}

    @jobpulse.job("bench.heartbeat", heartbeat_timeout=3600)
    def loop() -> None:
        hb = jobpulse.heartbeat
        timings = []
        for _ in range(9):
            start = time.perf_counter()
            for i in range(100_000):
                hb(processed=i)
            timings.append((time.perf_counter() - start) / 100_000)
        results["median_us"] = statistics.median(timings) * 1e6
        start = time.perf_counter()
        for i in range(1_000_000):
            hb(processed=i, total=1_000_000)
        results["million_s"] = time.perf_counter() - start

    loop()
    return results


def bench_run_overhead() -> dict[str, float]:
    def bare() -> None:
        pass

    @jobpulse.job("bench.noop")
    def traced() -> None:
        with jobpulse.step("Step"):
            pass

    n = 20_000
    bare_t = statistics.median(per_call(bare, n))
    traced_t = statistics.median(per_call(traced, n))
    return {
        "bare_us": bare_t * 1e6,
        "jobpulse_us": traced_t * 1e6,
        "added_us": (traced_t - bare_t) * 1e6,
    }


def bench_memory(exporter: CountingExporter) -> dict[str, float]:
    @jobpulse.job("bench.memory", heartbeat_timeout=3600)
    def loop(n: int) -> None:
        for i in range(n):
            jobpulse.heartbeat(processed=i, total=n)

    rt = _runtime.get()
    assert rt is not None
    loop(10)  # warm up
    tracemalloc.start()
    loop(10_000)
    _, peak_small = tracemalloc.get_traced_memory()
    tracemalloc.reset_peak()
    loop(1_000_000)
    _, peak_big = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    jobpulse.flush(5)
    last = exporter.last
    events = sum(1 for e in (last.events if last else ()) if e.name == "jobpulse.heartbeat")
    return {"peak_10k_kib": peak_small / 1024, "peak_1m_kib": peak_big / 1024, "events": events}


def bench_watchdog() -> dict[str, float]:
    rt = _runtime.get()
    assert rt is not None
    budget = jobpulse.Budget(max_runtime=3600, heartbeat_timeout=600)
    runs = [
        _lifecycle.begin_run(f"job{i % 100}", system="function", activate=False, job_budget=budget)
        for i in range(10_000)
    ]
    timings = []
    for _ in range(20):
        start = time.perf_counter()
        rt.watchdog.tick()
        timings.append(time.perf_counter() - start)
    snap = []
    for _ in range(20):
        start = time.perf_counter()
        rt.registry.snapshot(max_age=0)
        snap.append(time.perf_counter() - start)
    for run in runs:
        _lifecycle.end_run(run, "success")
    return {
        "tick_ms": statistics.median(timings) * 1e3,
        "snapshot_ms": statistics.median(snap) * 1e3,
    }


def main() -> None:
    exporter = instrument()
    hb = bench_heartbeat()
    run = bench_run_overhead()
    mem = bench_memory(exporter)
    wd = bench_watchdog()
    jobpulse.uninstrument()
    rows = [
        ("heartbeat() median per call", f"{hb['median_us']:.3f} us", "<= 1 us"),
        ("1,000,000 heartbeats in a loop", f"{hb['million_s']:.3f} s", "< 1 s"),
        ("bare no-op call", f"{run['bare_us']:.2f} us", ""),
        ("no-op job run (run span, step, metrics, watchdog)", f"{run['jobpulse_us']:.1f} us", ""),
        ("  added per run", f"{run['added_us']:.1f} us", "<= 100 us"),
        ("heartbeat events after 1,000,000 heartbeats", f"{mem['events']:.0f}", "<= 100"),
        ("peak memory during a 10,000-heartbeat run", f"{mem['peak_10k_kib']:.1f} KiB", ""),
        ("peak memory during a 1,000,000-heartbeat run", f"{mem['peak_1m_kib']:.1f} KiB", "flat"),
        ("watchdog tick, 10,000 active runs", f"{wd['tick_ms']:.2f} ms", "< 10 ms"),
        ("gauge snapshot, 10,000 active runs", f"{wd['snapshot_ms']:.2f} ms", ""),
    ]
    width = max(len(r[0]) for r in rows)
    print(f"{'measure':<{width}}  {'value':>12}  target")
    for name, value, target in rows:
        print(f"{name:<{width}}  {value:>12}  {target}")


if __name__ == "__main__":
    main()
