"""RQ throughput, bare vs with jobpulse: no-op jobs drained by a burst worker.

Run: ``.venv/bin/python benchmarks/bench_rq.py`` (needs Redis on 127.0.0.1:6379; uses
database 2 only). Targets (issue #4): ``SimpleWorker`` with jobpulse >= 90% of bare
RQ's throughput; the forking ``Worker`` >= 95%.

Each measurement runs in a fresh process: enqueue the jobs (with jobpulse
instrumented in the jobpulse rounds, so the jobs carry their trace context),
then drain them with ``worker.work(burst=True)``, timed from the call to the
worker's teardown (the one-off flush of what is buffered at shutdown is not
throughput).
With jobpulse, spans and metrics go over OTLP/HTTP to a sink in another
process (it answers 200 and drops the data), as they would to a collector
(a forking worker's horses hand their spans and lines to the worker, which
exports them in batches, see docs/rq.md). RQ logs at
WARNING in both modes, so RQ's own logging does not hide jobpulse's cost.
``--sdk`` adds the OpenTelemetry SDK set up alone, ``--floor`` (``SimpleWorker``)
the contract's per-run telemetry written straight against the SDK, and
``--ceiling`` (forking ``Worker``) jobpulse set up but recording no run: what
any per-run telemetry on top of jobpulse and the SDK could reach at best.
Bare and jobpulse rounds alternate; the table shows medians of the rounds
and the ratio of the medians (machines are noisy: compare ratios, not times).
CPU per job (the worker's threads and its reaped horses) is printed too: what
each mode costs the machine, less swayed by other tenants than throughput.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
REDIS_URL = "redis://127.0.0.1:6379/2"
QUEUE = "bench_rq"
NOOP = "os.getpid"  # an importable no-op: the job's own cost is nothing


# -- the OTLP sink (its own process, so it takes no GIL from the worker) --------
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


# -- one measurement (a child process) -----------------------------------------
def sdk_only() -> None:
    """The OpenTelemetry SDK as jobpulse would set it up (traces, metrics, logs over
    OTLP/HTTP), without jobpulse: what any OTel-instrumented RQ worker pays."""
    from opentelemetry import metrics, trace
    from opentelemetry._logs import set_logger_provider
    from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
    from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk._logs import LoggerProvider
    from opentelemetry.sdk._logs.export import BatchLogRecordProcessor
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    tp = TracerProvider()
    tp.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    trace.set_tracer_provider(tp)
    metrics.set_meter_provider(
        MeterProvider(metric_readers=[PeriodicExportingMetricReader(OTLPMetricExporter())])
    )
    lp = LoggerProvider()
    lp.add_log_record_processor(BatchLogRecordProcessor(OTLPLogExporter()))
    set_logger_provider(lp)


def contract_floor(base: type) -> type:
    """``base`` emitting, for each run, the telemetry the contract asks for, written
    straight against the SDK (no jobpulse, no adapter logic): a CONSUMER span with the
    21 attributes jobpulse's RQ run span carries, the ``run started`` and ``run
    finished`` records, the duration and queue-wait histograms and the run count. What
    any implementation of the contract on the OpenTelemetry SDK pays per run, at least.
    """
    import uuid

    from opentelemetry import context, metrics, trace
    from opentelemetry._logs import SeverityNumber, get_logger_provider
    from opentelemetry.trace import SpanKind

    tracer = trace.get_tracer("floor")
    logger = get_logger_provider().get_logger("floor")
    meter = metrics.get_meter("floor")
    duration = meter.create_histogram("jobpulse.job.duration", unit="s")
    queue_wait = meter.create_histogram("jobpulse.job.queue.wait", unit="s")
    runs = meter.create_counter("jobpulse.job.runs")

    def line(body: str, attrs: dict[str, Any]) -> None:
        now = time.time_ns()
        logger.emit(
            timestamp=now, observed_timestamp=now, context=context.get_current(),
            severity_number=SeverityNumber.INFO, severity_text="INFO", body=body,
            attributes=attrs,
        )  # fmt: skip

    class Floor(base):  # type: ignore[misc, valid-type]
        def perform_job(self, job: Any, queue: Any, *args: Any, **kwargs: Any) -> Any:
            started = time.monotonic()
            wait = max(0.0, time.time() - job.enqueued_at.timestamp()) if job.enqueued_at else 0
            name, run_id = job.func_name, uuid.uuid4().hex
            ids = {"jobpulse.job.name": name, "jobpulse.run.id": run_id, "jobpulse.job.id": job.id,
                   "jobpulse.attempt": 1, "jobpulse.queue.name": queue.name,
                   "messaging.client.id": self.name}  # fmt: skip
            span = tracer.start_span(name, kind=SpanKind.CONSUMER, attributes={
                **ids, "jobpulse.system": "rq", "jobpulse.budget.max_runtime": 180.0,
                "jobpulse.queue.wait": wait, "code.function.name": name,
                "messaging.system": "rq", "messaging.operation.name": "process",
                "messaging.operation.type": "process", "messaging.destination.name": queue.name,
                "server.address": "127.0.0.1", "server.port": 6379,
                "messaging.message.id": job.id,
            })  # fmt: skip
            token = context.attach(trace.set_span_in_context(span))
            line("run started", {**ids, "jobpulse.elapsed": 0.0})
            try:
                return super().perform_job(job, queue, *args, **kwargs)
            finally:
                seconds = time.monotonic() - started
                end = {"jobpulse.outcome": "success", "jobpulse.action": "none"}
                span.set_attributes({**end, "jobpulse.heartbeat.count": 0})
                series = {"jobpulse.job.name": name, "jobpulse.system": "rq",
                          "jobpulse.queue.name": queue.name}  # fmt: skip
                duration.record(seconds, {**series, "jobpulse.outcome": "success"})
                queue_wait.record(wait, series)
                runs.add(1, {**series, **end})
                line("run finished", {**ids, "jobpulse.elapsed": seconds, **end})
                context.detach(token)
                span.end()

    return Floor


def record_nothing() -> None:
    """jobpulse set up exactly as in the jobpulse rounds (providers, exporters, watchdog,
    its handling of a horse's fork: the worker's instance id kept, no MeterProvider
    built in the horse), with the RQ adapter recording no run at all: what having
    jobpulse and the SDK in a forking worker costs before any telemetry is written. No
    design of per-run telemetry on top of them can beat it."""
    from jobpulse import _runtime
    from jobpulse.adapters.rq import _worker

    def execute_job(original: Any) -> Any:
        def execute(self: Any, *args: Any, **kwargs: Any) -> Any:
            rt = _runtime.get()
            assert rt is not None
            saved = _worker.prepare_fork(rt)  # what the real execute_job does around it
            try:
                return original(self, *args, **kwargs)
            finally:
                _worker.end_fork(saved)

        return execute

    def untouched(original: Any) -> Any:
        def call(*args: Any, **kwargs: Any) -> Any:  # a wrapper (patches expect one)
            return original(*args, **kwargs)

        return call

    _worker.perform_job = _worker.fork_work_horse = untouched
    _worker.execute_job = execute_job


def _cpu_seconds() -> float:
    """CPU of the worker (all its threads) and of its reaped work horses: what the
    machine pays per job, less swayed by other tenants than wall time."""
    import resource

    me, horses = (
        resource.getrusage(resource.RUSAGE_SELF),
        resource.getrusage(resource.RUSAGE_CHILDREN),
    )
    return me.ru_utime + me.ru_stime + horses.ru_utime + horses.ru_stime


def measure(kind: str, mode: str, jobs: int) -> None:
    if mode in ("jobpulse", "idle"):
        import jobpulse

        if mode == "idle":
            record_nothing()
        jobpulse.instrument()
    elif mode in ("sdk", "floor"):
        sdk_only()
    from redis import Redis
    from rq import Queue, SimpleWorker, Worker

    redis = Redis.from_url(REDIS_URL)
    queue = Queue(f"{QUEUE}_{os.getpid()}", connection=redis)  # its own queue: no flushing
    enqueue_started = time.perf_counter()
    for start in range(0, jobs, 500):
        batch = [Queue.prepare_data(NOOP, result_ttl=60) for _ in range(min(500, jobs - start))]
        queue.enqueue_many(batch)
    enqueue_seconds = time.perf_counter() - enqueue_started
    base: type = SimpleWorker if kind == "simple" else Worker
    if mode == "floor":
        base = contract_floor(base)
    drained: list[float] = []
    cpu: list[float] = []

    class Timed(base):  # type: ignore[misc, valid-type]
        """Notes when the queue is drained: the worker's shutdown (and jobpulse's final
        flush of what is still buffered) is not part of its throughput."""

        def teardown(self) -> None:
            drained.append(time.perf_counter())
            cpu.append(_cpu_seconds())
            super().teardown()

    worker = Timed([queue], connection=redis)
    cpu_started = _cpu_seconds()
    started = time.perf_counter()
    worker.work(burst=True, logging_level="WARNING")
    seconds = drained[0] - started
    cpu_seconds = cpu[0] - cpu_started
    done = queue.finished_job_registry.count
    ids = queue.finished_job_registry.get_job_ids()
    for start in range(0, len(ids), 500):  # clean up after itself (other runs share db 2)
        redis.delete(*(f"rq:{kind}:{job_id}" for job_id in ids[start : start + 500]
                       for kind in ("job", "results", "executions")))  # fmt: skip
    keys = list(redis.scan_iter(f"rq:*{queue.name}*"))
    if keys:
        redis.delete(*keys)
    redis.srem("rq:queues", queue.key)
    print(json.dumps({"seconds": seconds, "jobs": done, "enqueue_seconds": enqueue_seconds,
                      "cpu_seconds": cpu_seconds}))  # fmt: skip


def run_child(kind: str, mode: str, jobs: int, endpoint: str) -> dict[str, float]:
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT / "src"),
        "OTEL_EXPORTER_OTLP_ENDPOINT": endpoint,
        "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
        "OTEL_SERVICE_NAME": "bench-rq",
    }
    proc = subprocess.run(
        [sys.executable, __file__, "--measure", kind, mode, str(jobs)],
        env=env, capture_output=True, text=True, timeout=1800, check=False,
    )  # fmt: skip
    if proc.returncode != 0:
        raise SystemExit(f"{kind}/{mode} failed:\n{proc.stderr[-3000:]}")
    result: dict[str, float] = json.loads(proc.stdout.strip().splitlines()[-1])
    if result["jobs"] != jobs:
        raise SystemExit(f"{kind}/{mode}: {result['jobs']} of {jobs} jobs finished")
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--jobs", type=int, default=5000, help="jobs per SimpleWorker round")
    parser.add_argument("--fork-jobs", type=int, default=1000, help="jobs per forking round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--only", choices=("simple", "fork"))
    parser.add_argument(
        "--sdk", action="store_true",
        help="also measure the OTel SDK set up alone, without jobpulse",
    )  # fmt: skip
    parser.add_argument(
        "--floor", action="store_true",
        help="also measure (SimpleWorker) the contract's per-run telemetry written straight "
        "against the SDK: what any implementation of the contract pays at least",
    )  # fmt: skip
    parser.add_argument(
        "--ceiling", action="store_true",
        help="also measure (forking Worker) jobpulse set up but recording no run: what "
        "jobpulse and the SDK cost a forking worker before any telemetry is written",
    )  # fmt: skip
    parser.add_argument("--measure", nargs=3, help=argparse.SUPPRESS)
    parser.add_argument("--sink", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.sink:
        serve_sink()
        return
    if args.measure:
        kind, mode, jobs = args.measure
        measure(kind, mode, int(jobs))
        return

    sink = subprocess.Popen([sys.executable, __file__, "--sink"], stdout=subprocess.PIPE, text=True)
    try:
        assert sink.stdout is not None
        endpoint = f"http://127.0.0.1:{sink.stdout.readline().strip()}"
        kinds = [k for k in ("simple", "fork") if args.only in (None, k)]
        rows = []
        floors: dict[str, float] = {}
        ceilings: dict[str, float] = {}
        cpu: dict[str, dict[str, float]] = {}  # kind -> mode -> median CPU ms per job
        for kind in kinds:
            jobs = args.jobs if kind == "simple" else args.fork_jobs
            # the floor is SimpleWorker's: a horse would need a flush of its own per job
            floor = args.floor and kind == "simple"
            ceiling = args.ceiling and kind == "fork"
            modes = ("bare", *(("sdk",) if args.sdk else ()), *(("floor",) if floor else ()),
                     *(("idle",) if ceiling else ()), "jobpulse")  # fmt: skip
            rates: dict[str, list[float]] = {m: [] for m in modes}
            enqueue: dict[str, list[float]] = {m: [] for m in modes}
            cpu_ms: dict[str, list[float]] = {m: [] for m in modes}
            for round_ in range(args.rounds):
                order = modes if round_ % 2 == 0 else tuple(reversed(modes))
                for mode in order:
                    r = run_child(kind, mode, jobs, endpoint)
                    rates[mode].append(jobs / r["seconds"])
                    enqueue[mode].append(r["enqueue_seconds"] / jobs * 1e6)
                    cpu_ms[mode].append(r["cpu_seconds"] / jobs * 1e3)
                    print(
                        f"  {kind:6} {mode:8} round {round_ + 1}: {rates[mode][-1]:8.1f} jobs/s",
                        file=sys.stderr, flush=True,
                    )  # fmt: skip
            bare, jp = statistics.median(rates["bare"]), statistics.median(rates["jobpulse"])
            ratios = [j / b for b, j in zip(rates["bare"], rates["jobpulse"], strict=True)]
            sdk = statistics.median(rates["sdk"]) if args.sdk else None
            cpu[kind] = {m: statistics.median(v) for m, v in cpu_ms.items()}
            if floor:
                floors[kind] = statistics.median(rates["floor"])
            if ceiling:
                ceilings[kind] = statistics.median(rates["idle"])
            rows.append((kind, jobs, bare, jp, jp / bare, min(ratios), max(ratios),
                         statistics.median(enqueue["bare"]),
                         statistics.median(enqueue["jobpulse"]), sdk))  # fmt: skip
    finally:
        sink.kill()
        sink.wait()

    target = {"simple": 0.90, "fork": 0.95}
    print()
    print(f"RQ burst drain, no-op jobs, medians of {args.rounds} rounds (Redis db 2, OTLP sink)")
    header = (
        f"{'worker':<8} {'jobs':>5} {'bare jobs/s':>12} {'jobpulse jobs/s':>16} {'ratio':>6} "
        f"{'(min-max)':>12} {'target':>7} {'enqueue us/job bare/jp':>24}"
    )
    print(header)
    print("-" * len(header))
    for kind, jobs, bare, jp, ratio, lo, hi, eb, ej, _sdk in rows:
        ok = "ok" if ratio >= target[kind] else "MISS"
        print(
            f"{kind:<8} {jobs:>5} {bare:>12.1f} {jp:>16.1f} {ratio:>6.3f} "
            f"{f'({lo:.3f}-{hi:.3f})':>12} {f'>={target[kind]:.2f}':>7} {ok:>3} "
            f"{eb:>10.0f} / {ej:<10.0f}"
        )
    if any(row[-1] is not None for row in rows):
        print()
        print("the OTel SDK alone (providers + OTLP exporters, no jobpulse), same rounds:")
        for kind, _jobs, bare, jp, *_rest, sdk in rows:
            print(
                f"  {kind:<8} sdk {sdk:8.1f} jobs/s = {sdk / bare:.3f} of bare; "
                f"jobpulse = {jp / sdk:.3f} of the SDK alone"
            )
    if floors:
        print()
        print("the contract's per-run telemetry written straight against the SDK, same rounds:")
        for row in rows:
            kind, bare, jp = row[0], row[2], row[3]
            if kind not in floors:
                continue
            floor = floors[kind]
            print(
                f"  {kind:<8} floor {floor:8.1f} jobs/s = {floor / bare:.3f} of bare; "
                f"jobpulse = {jp / floor:.3f} of the floor"
            )

    for kind, ceiling in ceilings.items():
        bare, jp = next((row[2], row[3]) for row in rows if row[0] == kind)
        print()
        print("jobpulse set up but recording no run (the ceiling), same rounds:")
        print(
            f"  {kind:<8} ceiling {ceiling:8.1f} jobs/s = {ceiling / bare:.3f} of bare; "
            f"jobpulse = {jp / ceiling:.3f} of the ceiling"
        )

    print()
    print("CPU per job (the worker's threads and its work horses; not Redis or the sink):")
    for kind, by_mode in cpu.items():
        bare_ms = by_mode["bare"]
        others = ", ".join(
            f"{mode} {ms:.3f} ms (+{ms - bare_ms:.3f})" for mode, ms in by_mode.items()
            if mode != "bare"
        )  # fmt: skip
        print(f"  {kind:<8} bare {bare_ms:.3f} ms; {others}")


if __name__ == "__main__":
    main()
