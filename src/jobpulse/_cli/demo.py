"""``jobpulse demo``: every failure mode in under a minute, no broker, no collector.

Without ``--otlp-endpoint`` (or ``OTEL_EXPORTER_OTLP_ENDPOINT``) the telemetry
is written as OTLP-JSON lines to ``./jobpulse-demo/`` (``--out``):
``traces.jsonl``, ``metrics.jsonl``, ``logs.jsonl``, plus the JSON log lines
in ``jobpulse.log``.
"""

from __future__ import annotations

import argparse
import logging
import os
import time
from pathlib import Path
from typing import Any


def register(sub: Any) -> None:
    parser = sub.add_parser(
        "demo",
        help="run a small in-process worker whose jobs show each failure mode",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--otlp-endpoint",
        default=os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT"),
        help="send OTLP/HTTP here (default: $OTEL_EXPORTER_OTLP_ENDPOINT, else write files)",
    )
    parser.add_argument(
        "--out", type=Path, default=Path("jobpulse-demo"), help="where files go without a collector"
    )
    parser.add_argument(
        "--vendor-wait",
        type=float,
        default=6.0,
        help="seconds the stuck job waits on the vendor that never answers (default 6)",
    )
    parser.set_defaults(handler=run)


def _exporters(endpoint: str | None, out: Path) -> tuple[Any, Any, Any, str]:
    if endpoint:
        from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
        from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        base = endpoint.rstrip("/")
        return (
            OTLPSpanExporter(endpoint=f"{base}/v1/traces"),
            OTLPMetricExporter(endpoint=f"{base}/v1/metrics"),
            OTLPLogExporter(endpoint=f"{base}/v1/logs"),
            f"OTLP/HTTP {base} (traces, metrics, logs)",
        )
    from .._demo.files import JsonLinesLogExporter, JsonLinesMetricExporter, JsonLinesSpanExporter

    return (
        JsonLinesSpanExporter(out / "traces.jsonl"),
        JsonLinesMetricExporter(out / "metrics.jsonl"),
        JsonLinesLogExporter(out / "logs.jsonl"),
        f"OTLP-JSON files in {out}/ (traces.jsonl, metrics.jsonl, logs.jsonl; "
        f"JSON log lines in {out}/jobpulse.log)",
    )


def run(args: argparse.Namespace) -> int:
    try:
        import rich  # noqa: F401
    except ImportError:
        print("jobpulse demo needs rich for its tables: pip install 'jobpulse[demo]'")
        return 2
    from opentelemetry.sdk._logs import LoggerProvider
    from opentelemetry.sdk._logs.export import BatchLogRecordProcessor
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import (
        InMemoryMetricReader,
        PeriodicExportingMetricReader,
    )
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor
    from rich.console import Console
    from rich.live import Live

    import jobpulse

    from .. import _runtime
    from .._demo.report import Report
    from .._demo.worker import (
        NOTIFICATIONS,
        BadRecord,
        Blackhole,
        Job,
        Worker,
        flaky_import,
        import_records,
        nightly_export,
        rebuild_index,
        vendor_sync,
    )
    from ..guardrails import Guardrails, Rules, release, store_for
    from ..logs import JsonFormatter, TextFormatter

    console = Console()
    if not console.is_terminal:
        console = Console(width=160)  # a log file or CI: do not squeeze the table to 80 columns
    args.out.mkdir(parents=True, exist_ok=True)
    span_exp, metric_exp, log_exp, destination = _exporters(args.otlp_endpoint, args.out)
    attrs = {} if os.environ.get("OTEL_SERVICE_NAME") else {"service.name": "jobpulse-demo"}
    resource = Resource.create(attrs)
    tracer_provider = TracerProvider(resource=resource, shutdown_on_exit=False)
    tracer_provider.add_span_processor(BatchSpanProcessor(span_exp, schedule_delay_millis=500))
    reader = InMemoryMetricReader()
    meter_provider = MeterProvider(
        resource=resource,
        metric_readers=[reader, PeriodicExportingMetricReader(metric_exp, 2_000)],
        shutdown_on_exit=False,
    )
    logger_provider = LoggerProvider(resource=resource, shutdown_on_exit=False)
    logger_provider.add_log_record_processor(BatchLogRecordProcessor(log_exp))

    jobpulse.instrument(
        tracer_provider=tracer_provider,
        meter_provider=meter_provider,
        logger_provider=logger_provider,
        configure_otel=False,
        adapters="none",
        watchdog_interval=0.25,
        heartbeat_interval=1.0,
        # Poison runs are set aside for a human instead of retried (enforced guardrails).
        guardrails=Guardrails(enforce=True, rules=Rules(non_retryable=(BadRecord,))),
    )
    logger = logging.getLogger("jobpulse")
    to_file = logging.FileHandler(args.out / "jobpulse.log", mode="w")
    to_file.setFormatter(JsonFormatter())
    to_console = logging.StreamHandler(console.file)
    to_console.setLevel(logging.WARNING)
    to_console.setFormatter(TextFormatter())
    logger.addHandler(to_file)
    logger.addHandler(to_console)

    console.rule("[bold]jobpulse demo[/]: an in-process worker, five jobs, five ways to fail")
    console.print(
        "  [green]demo.nightly_export[/]  healthy: steps, heartbeats, a bounded dependency call\n"
        "  [yellow]demo.vendor_sync[/]     stuck on a vendor that never answers "
        "(heartbeat timeout 2s)\n"
        "  [yellow]demo.flaky_import[/]    a flaky partner API, bounded retries with backoff\n"
        "  [magenta]demo.rebuild_index[/]   over its 1.5s max runtime, enforcement on\n"
        "  [red]demo.import_records[/]   a poison record: quarantined, not retried; "
        "released once fixed\n"
    )
    blackhole = Blackhole()
    worker = Worker(threads=4)
    worker.start()
    export = Job("demo.nightly_export", nightly_export, jobpulse.Budget(30, 5))
    for delay in (0.0, 1.0, 2.0):
        worker.enqueue(export, delay=delay)
    worker.enqueue(
        Job(
            "demo.vendor_sync",
            vendor_sync(blackhole, args.vendor_wait),
            jobpulse.Budget(max_runtime=30, heartbeat_timeout=2),
        )
    )
    worker.enqueue(Job("demo.flaky_import", flaky_import, jobpulse.Budget(max_attempts=3)))
    worker.enqueue(
        Job("demo.rebuild_index", rebuild_index, jobpulse.Budget(max_runtime=1.5), enforce=True)
    )

    batch_id = "import-batch-7"
    records = ["10", "11", "12", "1e3", "14"]
    importer = Job("demo.import_records", import_records(records), jobpulse.Budget(max_attempts=5))
    worker.enqueue(importer, job_id=batch_id)

    rt = _runtime.get()
    assert rt is not None
    report = Report(reader, rt.registry)
    started = time.monotonic()

    def drain(title: str) -> None:
        with Live(report.table(title), console=console, refresh_per_second=4) as live:
            while not worker.wait_idle(0.25):
                live.update(report.table(f"{title} ({time.monotonic() - started:.0f}s)"))
                if time.monotonic() - started > 55:
                    break
            live.update(report.table(f"{title}: done after {time.monotonic() - started:.1f}s"))

    drain("while it runs")
    store = store_for()
    for payload in store.entries():
        console.print(f"\n[bold red]quarantined[/] {payload.job} {payload.job_id}:")
        fields = payload.public()
        for key in (
            "error_type", "error_message", "attempts", "step", "input_fingerprint",
            "trace_id", "suggested_action",
        ):  # fmt: skip
            console.print(f"  {key:<18} {fields.get(key)}")
        console.print("[bold]operator[/]: fixes record 4 and releases the job (same job id)")
        release(payload.id)
        records[3] = "13"
        worker.enqueue(importer, job_id=payload.job_id, attempt=payload.attempts + 1)
    drain("after the release")
    console.print(
        f"\n[bold]once[/]: the import-started mail was sent {len(NOTIFICATIONS)} time(s) "
        "over 3 attempts of demo.flaky_import (the retries skipped it)"
    )
    worker.stop()
    blackhole.close()

    flushed = jobpulse.flush(5)
    meter_provider.force_flush(5_000)
    console.print(
        f"\nTelemetry went to: {destination}"
        + ("" if flushed else " [red](the flush did not finish in 5 s)[/]")
    )
    console.print(
        "What to look at: the [yellow]stall[/] line above names the step, the dependency the run "
        "waits on, for how long, and the stuck thread's frames; the table's runs column is "
        "jobpulse.job.runs by outcome/action."
    )
    jobpulse.uninstrument()
    logger.removeHandler(to_file)
    logger.removeHandler(to_console)
    to_file.close()
    for provider in (tracer_provider, meter_provider, logger_provider):
        provider.shutdown()
    return 0
