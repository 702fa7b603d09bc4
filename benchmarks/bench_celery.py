"""Celery: what jobpulse costs per task, next to bare Celery and the contrib instrumentation.

Run: ``.venv/bin/python benchmarks/bench_celery.py`` (needs Redis on 127.0.0.1:6379;
uses database 1 only). Targets (issue #3):

1. in process, ``apply()`` of 20,000 no-op tasks: jobpulse's added cost per task at
   most opentelemetry-instrumentation-celery's, both on the same SDK set-up
   (TracerProvider + BatchSpanProcessor + MeterProvider with a periodic reader;
   the exporters drop what they get, so the instrumentation is what is measured);
2. end to end, 5,000 no-op tasks through Redis to a real prefork worker with 2
   children: throughput with jobpulse at least 90% of the bare worker's. The
   worker exports OTLP/HTTP to a sink in another process (it answers 200 and
   drops the data), as it would to a collector.

Every in-process measurement runs in a fresh process; the end-to-end workers stay
up for all rounds and take turns (a worker stops consuming while the other runs).
Rounds alternate the configurations; the tables show medians and ratios of the
medians (machines are noisy: compare ratios, not times). On a shared virtual
machine single rounds swing by 10-20 %; ``--instructions`` also counts the
in-process instructions per task under valgrind's callgrind, which does not
depend on the machine's load (valgrind is a Debian package).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
REDIS_URL = "redis://127.0.0.1:6379/1"
CONFIGS = ("bare", "contrib", "jobpulse")


# -- shared: the app and the SDK set-up -------------------------------------------------
def make_app(queue: str = "bench") -> Any:
    from celery import Celery

    app = Celery("bench", broker=REDIS_URL, set_as_current=True)
    app.conf.update(
        task_default_queue=queue,
        task_ignore_result=True,
        worker_prefetch_multiplier=4,
        worker_hijack_root_logger=False,
        broker_connection_retry_on_startup=True,
    )

    @app.task(name="bench.noop", shared=False)  # type: ignore[untyped-decorator]
    def noop() -> None:
        return None

    return app


def sdk(otlp: bool) -> tuple[Any, Any]:
    """TracerProvider + BatchSpanProcessor and MeterProvider, as a user sets them up."""
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import (
        MetricExporter,
        MetricExportResult,
        PeriodicExportingMetricReader,
    )
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import (
        BatchSpanProcessor,
        SpanExporter,
        SpanExportResult,
    )

    class DropSpans(SpanExporter):
        def export(self, spans: Any) -> SpanExportResult:
            return SpanExportResult.SUCCESS

    class DropMetrics(MetricExporter):
        def export(self, metrics_data: Any, timeout_millis: float = 0, **_: Any) -> Any:
            return MetricExportResult.SUCCESS

        def force_flush(self, timeout_millis: float = 0) -> bool:
            return True

        def shutdown(self, timeout_millis: float = 0, **_: Any) -> None:
            pass

    if otlp:
        from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        span_exporter: SpanExporter = OTLPSpanExporter()
        metric_exporter: MetricExporter = OTLPMetricExporter()
    else:
        span_exporter, metric_exporter = DropSpans(), DropMetrics()
    tp = TracerProvider()
    tp.add_span_processor(BatchSpanProcessor(span_exporter))
    # Under callgrind a program runs ~50x slower: time-driven work (metric collection,
    # the watchdog's tick) would weigh 50x more per task than it does. --instructions
    # stretches both timers out of the measurement (the same for every config).
    interval = 3_600_000 if os.environ.get("BENCH_NO_TIMERS") else 15_000
    reader = PeriodicExportingMetricReader(metric_exporter, export_interval_millis=interval)
    mp = MeterProvider(metric_readers=[reader])
    return tp, mp


def instrument(config: str, otlp: bool = False) -> None:
    if config == "bare":
        return
    tp, mp = sdk(otlp)
    if config == "contrib":
        from opentelemetry.instrumentation.celery import CeleryInstrumentor

        CeleryInstrumentor().instrument(tracer_provider=tp, meter_provider=mp)  # type: ignore[no-untyped-call]
    else:
        import jobpulse

        jobpulse.instrument(
            tracer_provider=tp,
            meter_provider=mp,
            configure_otel=False,
            watchdog_interval=3600.0 if os.environ.get("BENCH_NO_TIMERS") else 1.0,
        )


# -- 1. in process -------------------------------------------------------------------------
def inproc_child(config: str, tasks: int) -> None:
    instrument(config)
    app = make_app()
    noop = app.tasks["bench.noop"]
    for _ in range(500):  # warm up: imports, caches, first-seen series
        noop.apply()
    started = time.perf_counter()
    for _ in range(tasks):
        noop.apply()
    elapsed = time.perf_counter() - started
    print(json.dumps({"us_per_task": elapsed / tasks * 1e6}), flush=True)


def inproc(rounds: int, tasks: int) -> dict[str, list[float]]:
    results: dict[str, list[float]] = {c: [] for c in CONFIGS}
    for r in range(rounds):
        order = CONFIGS if r % 2 == 0 else tuple(reversed(CONFIGS))
        for config in order:
            out = subprocess.run(
                [sys.executable, __file__, "--inproc-child", config, "--tasks", str(tasks)],
                capture_output=True, text=True, check=True, cwd=ROOT,
                env={**os.environ, "PYTHONPATH": str(ROOT)},
            )  # fmt: skip
            results[config].append(json.loads(out.stdout.strip().splitlines()[-1])["us_per_task"])
    return results


def _instructions(config: str, tasks: int) -> int:
    """Instructions the whole in-process child executes (valgrind's callgrind)."""
    out = subprocess.run(
        ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null", sys.executable,
         __file__, "--inproc-child", config, "--tasks", str(tasks)],
        capture_output=True, text=True, check=True, cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT), "BENCH_NO_TIMERS": "1", "PYTHONHASHSEED": "0"},
    )  # fmt: skip
    for line in out.stderr.splitlines():
        if "Collected :" in line:
            return int(line.rsplit(":", 1)[1].strip())
    raise SystemExit(f"callgrind printed no total for {config}:\n{out.stderr[-2000:]}")


def inproc_instructions(tasks: int) -> dict[str, float]:
    """Instructions per ``apply()``: the difference between a run of ``tasks`` + 1,000
    tasks and one of ``tasks``, so imports, set-up and warm-up cancel out. Unlike
    time, the count does not depend on what else the machine is doing."""
    from concurrent.futures import ThreadPoolExecutor

    jobs = [(c, n) for c in CONFIGS for n in (tasks, tasks + 1000)]
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        counts = dict(zip(jobs, pool.map(lambda job: _instructions(*job), jobs), strict=True))
    return {c: (counts[(c, tasks + 1000)] - counts[(c, tasks)]) / 1000 for c in CONFIGS}


# -- 2. end to end -------------------------------------------------------------------------
def serve_sink() -> None:
    class Sink(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length", "0")))
            self.send_response(200)
            self.send_header("Content-Type", "application/x-protobuf")
            self.send_header("Content-Length", "0")
            self.end_headers()

    server = ThreadingHTTPServer(("127.0.0.1", 0), Sink)
    server.daemon_threads = True
    print(server.server_port, flush=True)
    server.serve_forever()


_worker_app: Any = None


def __getattr__(name: str) -> Any:
    """``app``: what a benchmark worker loads (``-A benchmarks.bench_celery:app``), built
    on first access so that importing this module builds nothing."""
    global _worker_app
    if name != "app":
        raise AttributeError(name)
    if _worker_app is None:
        instrument(os.environ["BENCH_CONFIG"], otlp=True)
        _worker_app = make_app(os.environ["BENCH_QUEUE"])
    return _worker_app


def group_cpu(pgid: int) -> tuple[float, float]:
    """CPU seconds (user + system) of a process group's leader and of the rest (Linux)."""
    tick = os.sysconf("SC_CLK_TCK")
    main = rest = 0.0
    try:
        entries = os.listdir("/proc")
    except OSError:
        return 0.0, 0.0
    for entry in entries:
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) != pgid:  # fields[2]: the process group
            continue
        seconds = (int(fields[11]) + int(fields[12])) / tick
        if int(entry) == pgid:
            main += seconds
        else:
            rest += seconds
    return main, rest


class E2EWorker:
    def __init__(self, config: str, sink: str) -> None:
        self.config = config
        self.queue = f"bench-{config}-{uuid.uuid4().hex[:6]}"
        self.name = f"{self.queue}@bench"
        env = {
            **os.environ,
            "PYTHONPATH": str(ROOT),
            "BENCH_CONFIG": config,
            "BENCH_QUEUE": self.queue,
            "OTEL_SERVICE_NAME": f"bench-{config}",
            "OTEL_EXPORTER_OTLP_ENDPOINT": sink,
            "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
        }
        self.proc = subprocess.Popen(
            [
                sys.executable, "-m", "celery", "-A", "benchmarks.bench_celery:app",
                "worker", "-P", "prefork", "-c", "2", "-Q", self.queue, "-n", self.name,
                "-l", "warning", "--without-gossip", "--without-mingle", "--without-heartbeat",
            ],
            env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            start_new_session=True,
        )  # fmt: skip
        self.app = make_app(self.queue)
        deadline = time.monotonic() + 60
        while not self.app.control.ping(destination=[self.name], timeout=0.5):
            if time.monotonic() > deadline or self.proc.poll() is not None:
                self.stop()
                raise RuntimeError(f"the {config} worker did not start")
        self.consume(False)

    def consume(self, on: bool) -> None:
        control = self.app.control
        call = control.add_consumer if on else control.cancel_consumer
        call(self.queue, destination=[self.name], reply=True, timeout=10)

    def done(self) -> int:
        """Tasks the worker has finished since it started (its own stats)."""
        stats = self.app.control.inspect(destination=[self.name], timeout=5).stats() or {}
        return int((stats.get(self.name) or {}).get("total", {}).get("bench.noop", 0))

    def run(self, tasks: int) -> tuple[float, float, float]:
        """Fill the queue while the worker does not consume, then time the drain.

        Returns tasks/s, and the CPU time per task (us) of the main process and of
        the pool children: CPU per task is steadier than throughput on a shared box.
        """
        noop = self.app.tasks["bench.noop"]
        before = self.done()
        with self.app.producer_or_acquire() as producer:
            for _ in range(tasks):
                noop.apply_async(producer=producer)
        cpu_before = group_cpu(self.proc.pid)
        started = time.perf_counter()
        self.consume(True)
        deadline = time.monotonic() + 600
        while self.done() < before + tasks:
            if time.monotonic() > deadline:
                raise RuntimeError(f"the {self.config} worker did not finish {tasks} tasks")
            time.sleep(0.05)
        elapsed = time.perf_counter() - started
        cpu_after = group_cpu(self.proc.pid)
        self.consume(False)
        main = (cpu_after[0] - cpu_before[0]) / tasks * 1e6
        children = (cpu_after[1] - cpu_before[1]) / tasks * 1e6
        return tasks / elapsed, main, children

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                pass
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        self.app.close()
        import redis

        client = redis.Redis.from_url(REDIS_URL)
        client.delete(
            self.queue, f"_kombu.binding.{self.queue}", f"_kombu.binding_permanent.{self.queue}"
        )
        client.close()


def e2e(
    rounds: int, tasks: int, configs: Sequence[str]
) -> dict[str, list[tuple[float, float, float]]]:
    sink = subprocess.Popen(
        [sys.executable, __file__, "--sink"], stdout=subprocess.PIPE, text=True, cwd=ROOT
    )
    assert sink.stdout is not None
    endpoint = f"http://127.0.0.1:{sink.stdout.readline().strip()}"
    workers = []
    try:
        workers = [E2EWorker(c, endpoint) for c in configs]
        results: dict[str, list[tuple[float, float, float]]] = {c: [] for c in configs}
        for r in range(rounds):
            for w in workers if r % 2 == 0 else reversed(workers):
                results[w.config].append(w.run(tasks))
        return results
    finally:
        for w in workers:
            w.stop()
        sink.terminate()
        sink.wait(10)


# -- the report ------------------------------------------------------------------------------
def _median(values: list[float]) -> float:
    return statistics.median(values)


def report_instructions(per_task: dict[str, float]) -> None:
    bare = per_task["bare"]
    print(
        "\n1b. apply() in process, instructions per task (callgrind; machine load does not count)"
    )
    print(f"{'config':<10} {'instr/task':>11} {'added':>9} {'x bare':>7}")
    for config in CONFIGS:
        added = "" if config == "bare" else f"{per_task[config] - bare:>9.0f}"
        print(f"{config:<10} {per_task[config]:>11.0f} {added:>9} {per_task[config] / bare:>7.2f}")
    contrib = per_task["contrib"] - bare
    if contrib > 0:
        ratio = (per_task["jobpulse"] - bare) / contrib
        verdict = "ok" if ratio <= 1.0 else "OVER TARGET"
        print(f"jobpulse added / contrib added = {ratio:.2f} (target <= 1.00: {verdict})")


def report(
    inproc_results: dict[str, list[float]],
    e2e_results: dict[str, list[tuple[float, float, float]]],
) -> None:
    if inproc_results:
        n = len(inproc_results["bare"])
        bare = _median(inproc_results["bare"])
        print(f"\n1. apply() in process, no-op tasks, median of {n} rounds")
        print(f"{'config':<10} {'us/task':>9} {'added us/task':>14} {'x bare':>7}  rounds")
        added = {}
        for config in CONFIGS:
            med = _median(inproc_results[config])
            added[config] = med - bare
            rounds_text = " ".join(f"{v:.1f}" for v in inproc_results[config])
            extra = f"{added[config]:>14.1f}" if config != "bare" else f"{'':>14}"
            print(f"{config:<10} {med:>9.1f} {extra} {med / bare:>7.2f}  {rounds_text}")
        if added["contrib"] > 0:
            ratio = added["jobpulse"] / added["contrib"]
            verdict = "ok" if ratio <= 1.0 else "OVER TARGET"
            print(f"jobpulse added / contrib added = {ratio:.2f} (target <= 1.00: {verdict})")
    if e2e_results:
        n = len(e2e_results["bare"])
        rate = {c: _median([v[0] for v in vs]) for c, vs in e2e_results.items()}
        main = {c: _median([v[1] for v in vs]) for c, vs in e2e_results.items()}
        kids = {c: _median([v[2] for v in vs]) for c, vs in e2e_results.items()}
        print(f"\n2. end to end, Redis, prefork -c 2, no-op tasks, median of {n} rounds")
        print(
            f"{'config':<10} {'tasks/s':>9} {'vs bare':>8} {'main us/task':>13} "
            f"{'children us/task':>17}  tasks/s by round"
        )
        for config, values in e2e_results.items():
            rounds_text = " ".join(f"{v[0]:.0f}" for v in values)
            print(
                f"{config:<10} {rate[config]:>9.0f} {rate[config] / rate['bare']:>8.2f} "
                f"{main[config]:>13.0f} {kids[config]:>17.0f}  {rounds_text}"
            )
        if "jobpulse" in e2e_results:
            ratio = rate["jobpulse"] / rate["bare"]
            verdict = "ok" if ratio >= 0.9 else "UNDER TARGET"
            print(f"jobpulse / bare = {ratio:.2f} (target >= 0.90: {verdict})")
            print(
                f"worker CPU added per task by jobpulse: main process "
                f"{main['jobpulse'] - main['bare']:+.0f} us, pool children "
                f"{kids['jobpulse'] - kids['bare']:+.0f} us"
            )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--tasks", type=int, default=20_000, help="in-process tasks per round")
    parser.add_argument("--e2e-rounds", type=int, default=3)
    parser.add_argument("--e2e-tasks", type=int, default=5_000)
    parser.add_argument("--skip-inproc", action="store_true")
    parser.add_argument("--skip-e2e", action="store_true")
    parser.add_argument("--no-contrib-e2e", action="store_true", help="bare and jobpulse only")
    parser.add_argument(
        "--instructions",
        action="store_true",
        help="also count the in-process instructions per task with valgrind (a few minutes)",
    )
    parser.add_argument("--inproc-child", choices=CONFIGS, help=argparse.SUPPRESS)
    parser.add_argument("--sink", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.sink:
        serve_sink()
        return 0
    if args.inproc_child:
        inproc_child(args.inproc_child, args.tasks)
        return 0
    # a SIGTERM (a timeout, Ctrl+C in a wrapper) still runs the finally blocks that
    # stop the workers: they run in their own sessions and would outlive us
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    inproc_results = {} if args.skip_inproc else inproc(args.rounds, args.tasks)
    configs = ("bare", "jobpulse") if args.no_contrib_e2e else CONFIGS
    e2e_results = {} if args.skip_e2e else e2e(args.e2e_rounds, args.e2e_tasks, configs)
    report(inproc_results, e2e_results)
    if args.instructions:
        report_instructions(inproc_instructions(300))
    return 0


if __name__ == "__main__":
    sys.exit(main())
