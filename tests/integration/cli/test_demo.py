"""The README's first command: the demo shows each failure mode and says where telemetry went."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.support.otlp import Receiver

pytestmark = pytest.mark.integration


def run_demo(
    *args: str, env: dict[str, str] | None = None
) -> tuple[subprocess.CompletedProcess[str], float]:
    started = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-m", "jobpulse", "demo", "--vendor-wait", "3", *args],
        capture_output=True, text=True, timeout=90, env={**os.environ, **(env or {})}, check=False,
    )  # fmt: skip
    return proc, time.monotonic() - started


def test_demo_without_a_collector_writes_otlp_json_and_reports_the_stuck_run(
    tmp_path: Path,
) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_EXPORTER_OTLP")}
    started = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-m", "jobpulse", "demo", "--vendor-wait", "3", "--out", str(tmp_path)],
        capture_output=True, text=True, timeout=90, env=env, check=False,
    )  # fmt: skip
    took = time.monotonic() - started
    assert proc.returncode == 0, proc.stderr
    assert took < 60
    out = proc.stdout
    # The stuck run was reported while stuck, naming what it waits on.
    assert "run stalled: heartbeat_timeout" in out
    assert "waitingOn=tcp:VendorApi" in out
    assert "budget exceeded (max_runtime); cancel requested" in out
    for job in (
        "demo.nightly_export",
        "demo.vendor_sync",
        "demo.flaky_import",
        "demo.rebuild_index",
    ):
        assert job in out
    assert "success/none 3" in out  # the healthy export, three runs
    assert "error/retry 2" in out  # the flaky import: two retries, then success
    assert "timeout/stop 1" in out  # over budget, enforced
    # The poison record was quarantined, not retried, then released and run again.
    assert "error/quarantine 1, success/none 1" in out
    assert "quarantined demo.import_records import-batch-7" in out
    assert "record 4 is not a number" in out
    # The side effect guarded by once ran on the first attempt only.
    assert "mail was sent 1 time(s) over 3 attempts" in out
    assert f"OTLP-JSON files in {tmp_path}" in out

    spans = [
        span
        for line in (tmp_path / "traces.jsonl").read_text().splitlines()
        for rs in json.loads(line)["resourceSpans"]
        for ss in rs["scopeSpans"]
        for span in ss["spans"]
    ]
    runs = [s for s in spans if any(a["key"] == "jobpulse.run.id" for a in s["attributes"])]
    assert len(runs) == 3 + 1 + 3 + 1 + 2
    metrics = (tmp_path / "metrics.jsonl").read_text()
    assert "jobpulse.job.runs" in metrics
    assert "jobpulse.job.stalled" in metrics
    lines = [json.loads(line) for line in (tmp_path / "jobpulse.log").read_text().splitlines()]
    stall = next(line for line in lines if line.get("stallReason") == "heartbeat_timeout")
    assert stall["waitingOn"] == "tcp:VendorApi"
    assert stall["step"] == "PullInvoices"
    assert stall["stack"]
    assert stall["traceId"]


def test_demo_exports_to_an_otlp_endpoint(otlp: Receiver) -> None:
    proc, _ = run_demo("--otlp-endpoint", otlp.endpoint)
    assert proc.returncode == 0, proc.stderr
    assert f"OTLP/HTTP {otlp.endpoint}" in proc.stdout
    otlp.wait_for(lambda r: len(r.run_spans()) == 10, timeout=30, what="10 run spans")
    otlp.wait_for(lambda r: r.total("jobpulse.job.runs", **{"jobpulse.outcome": "timeout"}) == 1)
    assert otlp.run_spans("demo.vendor_sync")[0].resource["service.name"] == "jobpulse-demo"
