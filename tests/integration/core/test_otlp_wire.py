"""What crosses the wire: spans, metrics and logs over OTLP/HTTP to a receiver in the suite."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.support.otlp import Receiver

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[3]


def run_worker(
    env: dict[str, str], *args: str, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    full = {**os.environ, **env, "PYTHONPATH": str(ROOT), "OTEL_SERVICE_NAME": "wire-worker"}
    return subprocess.run(
        [sys.executable, "-m", "tests.integration.core.wire_worker", *args],
        env=full, cwd=ROOT, capture_output=True, text=True, timeout=timeout, check=False,
    )  # fmt: skip


def test_spans_metrics_and_logs_arrive_with_contract_names(otlp: Receiver) -> None:
    proc = run_worker(otlp.env(), "plain")
    assert proc.returncode == 0, proc.stderr
    otlp.wait_for(lambda r: len(r.run_spans()) == 2, what="two run spans")
    otlp.wait_for(lambda r: r.total("jobpulse.job.runs") >= 2, what="run counters")
    otlp.wait_for(lambda r: any(log.body == "run finished" for log in r.logs), what="logs")

    ok = otlp.run_spans("WireExport")[0]
    assert ok.attributes["jobpulse.outcome"] == "success"
    assert ok.attributes["jobpulse.progress.processed"] == 3
    assert ok.resource["service.name"] == "wire-worker"
    assert [e[0] for e in ok.events].count("jobpulse.heartbeat") == 2  # first and last
    children = {s.name: s for s in otlp.spans if s.parent_span_id == ok.span_id}
    assert children["http:VendorApi"].attributes["jobpulse.dependency.timeout"] == 5.0
    assert "ExportOrders" in children

    bad = otlp.run_spans("WireFail")[0]
    assert bad.attributes["error.type"] == "ValueError"
    assert bad.status_code == 2  # ERROR
    assert bad.status_message == "bad record 17"

    assert (
        otlp.total(
            "jobpulse.job.runs", **{"jobpulse.job.name": "WireFail", "jobpulse.outcome": "error"}
        )
        == 1
    )
    (duration,) = otlp.latest("jobpulse.job.duration", **{"jobpulse.job.name": "WireExport"})
    assert duration.unit == "s"
    assert duration.bounds[:3] == [0.005, 0.01, 0.025]
    assert duration.bounds[-1] == 14400.0

    finished = [log for log in otlp.logs if log.body == "run finished"]
    failed = next(log for log in finished if log.attributes.get("jobpulse.job.name") == "WireFail")
    assert failed.severity == "ERROR"
    assert failed.attributes["jobpulse.outcome"] == "error"
    assert failed.trace_id == bad.trace_id
    # The JSON formatter wrote one object per line to stderr, with trace ids.
    import json

    lines = [json.loads(line) for line in proc.stderr.splitlines() if line.startswith("{")]
    assert any(line["msg"] == "run finished" and line["traceId"] == bad.trace_id for line in lines)


def test_forked_child_exports_its_spans_without_duplicating_parent_metrics(otlp: Receiver) -> None:
    proc = run_worker(otlp.env(), "fork")
    assert proc.returncode == 0, proc.stderr
    otlp.wait_for(
        lambda r: len(r.run_spans("WireExport")) == 2,
        what=f"parent and child runs (worker stderr: {proc.stderr[-1500:]!r})",
    )
    parent_instance = otlp.run_spans("WireFail")[0].resource.get("service.instance.id")
    otlp.wait_for(
        lambda r: r.total("jobpulse.job.runs", **{"jobpulse.job.name": "WireExport"}) >= 2
    )
    # The parent's failure was counted once: a child that re-exported the parent's
    # cumulative counters would make it 2.
    fails = otlp.latest(
        "jobpulse.job.runs",
        **{"jobpulse.job.name": "WireFail", "jobpulse.outcome": "error", "jobpulse.action": "stop"},
    )
    assert sum(p.value for p in fails) == 1, [
        (p.value, p.resource.get("service.instance.id")) for p in fails
    ]
    child_spans = [
        s
        for s in otlp.run_spans("WireExport")
        if s.resource.get("service.instance.id") != parent_instance
    ]
    assert len(child_spans) == 1


def test_a_dead_collector_does_not_hold_the_exit(tmp_path: Path) -> None:
    # A collector that accepts connections and never answers: the worst case.
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(64)
    port = server.getsockname()[1]
    try:
        env = {
            "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{port}",
            "OTEL_METRIC_EXPORT_INTERVAL": "60000",
            "JOBPULSE_FLUSH_TIMEOUT": "2",
        }
        started = time.monotonic()
        proc = run_worker(env, "plain", timeout=60)
        took = time.monotonic() - started
    finally:
        server.close()
    assert proc.returncode == 0, proc.stderr
    assert "done" in proc.stdout
    # 2 s flush + at most 2 s shutdown, plus interpreter start-up.
    assert took < 8, took
