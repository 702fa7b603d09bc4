"""Worker shutdown, warm and cold, exports what is buffered, within a bounded time.

The workers here batch spans for a minute and export metrics every minute, so
only jobpulse's shutdown flushes can deliver the data the tests wait for.
"""

from __future__ import annotations

import signal
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.otlp import Receiver

from .conftest import child_pid, runs_of, start_worker, wait_runs

pytestmark = pytest.mark.integration

SLOW_EXPORT = {"OTEL_BSP_SCHEDULE_DELAY": "60000", "OTEL_METRIC_EXPORT_INTERVAL": "60000"}


@pytest.mark.parametrize("how", ["warm", "cold"])
def test_shutdown_flushes_children_and_main_process(
    how: str, receiver: Receiver, module_tmp: Path
) -> None:
    worker = start_worker(receiver, module_tmp, otel_env=SLOW_EXPORT)
    try:
        done = [worker.send("jp.add", i, i) for i in range(6)]
        for result in done:
            result.get(timeout=30)
        running = worker.send("jp.sleepy", 60) if how == "cold" else None
        if running is not None:
            child_pid(running.id)
        assert not [s for r in done for s in runs_of(receiver, r.id)]  # still buffered
    finally:
        took = worker.stop(signal.SIGTERM if how == "warm" else signal.SIGQUIT)
    assert took < 20, f"{how} shutdown took {took:.1f}s"
    for result in done:
        (run,) = wait_runs(receiver, result.id, timeout=10)
        assert run.attributes["jobpulse.outcome"] == "success"
    q = {"jobpulse.queue.name": worker.queue, "jobpulse.job.name": "jp.add"}
    receiver.wait_for(lambda r: r.total("jobpulse.job.runs", **q) == 6, timeout=10, what="counts")
    if running is not None:  # cold shutdown took it away: recorded once, by the main process
        (run,) = wait_runs(receiver, running.id, timeout=10)
        assert run.attributes["jobpulse.outcome"] == "cancelled"
        assert "/" not in run.resource["service.instance.id"]


@pytest.fixture
def silent_collector() -> Iterator[str]:
    """A collector that accepts connections and never answers."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)
    yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    sock.close()


def test_shutdown_is_bounded_when_the_collector_hangs(
    silent_collector: str, module_tmp: Path
) -> None:
    worker = start_worker(
        None,
        module_tmp,
        otel_env={
            "OTEL_EXPORTER_OTLP_ENDPOINT": silent_collector,
            "OTEL_EXPORTER_OTLP_TIMEOUT": "60",  # the SDK alone would wait a minute per flush
            "OTEL_METRIC_EXPORT_INTERVAL": "60000",
        },
        env={"JOBPULSE_FLUSH_TIMEOUT": "1"},
    )
    try:
        for result in [worker.send("jp.add", i, i) for i in range(4)]:
            assert result.get(timeout=30) is not None
    finally:
        took = worker.stop(signal.SIGTERM)
    assert took < 20, f"warm shutdown with a hung collector took {took:.1f}s"
