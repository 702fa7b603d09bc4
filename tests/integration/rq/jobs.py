"""Jobs the RQ tests enqueue; importable by worker processes (``tests.integration.rq.jobs``)."""

from __future__ import annotations

import os
import time
from typing import Any

from rq import get_current_job

import jobpulse


def _redis() -> Any:
    job = get_current_job()
    assert job is not None
    return job.connection


def noop() -> None:
    return None


def add(a: int, b: int) -> int:
    return a + b


def export(n: int) -> int:
    """Steps, heartbeats and a dependency call inside an RQ job."""
    with jobpulse.step("ExportOrders"):
        for i in range(1, n + 1):
            jobpulse.heartbeat(processed=i, total=n)
    with jobpulse.dependency("http:VendorApi", timeout=5):
        pass
    return n


def fail(message: str = "bad record 17") -> None:
    raise ValueError(message)


def sleepy(seconds: float) -> str:
    """Publishes its pid (so a test can kill the horse), then sleeps."""
    job = get_current_job()
    assert job is not None
    job.connection.set(f"test:pid:{job.id}", os.getpid())
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        time.sleep(0.05)
    return "woke"


def budget() -> dict[str, Any]:
    run = jobpulse.current_run()
    assert run is not None
    return {
        "max_runtime": run.budget.max_runtime,
        "max_attempts": run.budget.max_attempts,
        "attempt": run.attempt,
    }


def on_success(job: Any, connection: Any, result: Any, *args: Any, **kwargs: Any) -> None:
    connection.set(f"test:on_success:{job.id}", repr(result))


def on_failure(job: Any, connection: Any, typ: Any, value: Any, tb: Any) -> None:
    connection.set(f"test:on_failure:{job.id}", typ.__name__)


def long_export(seconds: float) -> int:
    """Long enough to outlive the horse's hand-off (5 s): it exports live from then on."""
    deadline = time.monotonic() + seconds
    beats = 0
    with jobpulse.step("Crunch"):
        while time.monotonic() < deadline:
            beats += 1
            jobpulse.heartbeat(processed=beats)
            time.sleep(0.1)
    with jobpulse.dependency("http:VendorApi", timeout=5):
        pass
    return beats
