"""Enforce mode with a real Celery worker (prefork, 2 children): a poison task is not
retried but rejected without requeue, its payload stored in Redis, and the run recorded
as ``error``/``quarantine`` by the child (span) and by the main process (counter)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from jobpulse.guardrails import RedisStore
from tests.support.otlp import Receiver

from .conftest import REDIS_URL, wait_until

celery = pytest.importorskip("celery")
pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[3]
TASK = "jpguard.parse"


@pytest.fixture
def worker(redis_db: Any, otlp: Receiver, tmp_path: Path) -> Iterator[tuple[Any, dict[str, str]]]:
    """A prefork worker (2 children) on a queue of its own; stopped by its pid."""
    from .celery_app import create_app

    queue = f"jp-guard-{uuid.uuid4().hex[:8]}"
    name = f"{queue}@%h"
    env = {
        **os.environ,
        **otlp.env(),
        "PYTHONPATH": str(ROOT),
        "OTEL_SERVICE_NAME": "celery-guard",
        "JP_GUARD_QUEUE": queue,
    }
    log = tmp_path / "worker.log"
    cmd = [
        sys.executable, "-m", "celery", "-A", "tests.integration.guardrails.celery_app",
        "worker", "-P", "prefork", "-c", "2", "-Q", queue, "-n", name, "-l", "info",
        "--without-gossip", "--without-mingle", "--without-heartbeat",
    ]  # fmt: skip
    with log.open("wb") as out:
        proc = subprocess.Popen(
            cmd, env=env, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    app = create_app(queue)
    node = name.replace("%h", _hostname())
    try:
        wait_until(
            lambda: proc.poll() is not None or app.control.ping(destination=[node], timeout=0.5),
            timeout=60,
            what="the worker to answer a ping",
        )
        assert proc.poll() is None, log.read_text(errors="replace")[-4000:]
        yield app, env
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGTERM)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                pass
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        if proc.poll() is None:
            proc.wait(10)
        app.close()


def _hostname() -> str:
    import socket

    return socket.gethostname()


def run(cmd: list[str], env: dict[str, str], timeout: float = 60) -> str:
    proc = subprocess.run(
        cmd, cwd=ROOT, env=env, text=True, capture_output=True, timeout=timeout, check=False
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout + proc.stderr


def test_poison_celery_task_is_rejected_not_retried(
    redis_db: Any, otlp: Receiver, worker: tuple[Any, dict[str, str]]
) -> None:
    app, env = worker
    result = app.send_task(TASK, (7,))
    task_id = result.id

    wait_until(lambda: result.state not in ("PENDING", "STARTED"), timeout=30, what="a result")
    assert result.state in ("FAILURE", "REJECTED"), result.state  # not RETRY

    store = RedisStore(redis_db)
    stored = wait_until(lambda: store.get(task_id), what="the quarantine payload")
    assert stored.job == TASK
    assert stored.system == "celery"
    assert stored.attempts == 1  # not the 6 autoretry_for would have made
    assert stored.reason == "non_retryable"
    assert stored.error_type.endswith("BadInput")
    assert stored.input_fingerprint is not None
    assert stored.release is not None
    assert stored.release["task"] == TASK
    assert stored.release["args"] == [7]

    otlp.wait_for(
        lambda r: r.total("jobpulse.job.runs", **{"jobpulse.action": "quarantine"}) >= 1,
        what="the main process's counter",
    )
    assert otlp.total("jobpulse.job.runs", **{"jobpulse.action": "retry"}) == 0
    assert otlp.total("jobpulse.job.runs", **{"jobpulse.outcome": "error"}) == 1
    otlp.wait_for(
        lambda r: any(s.attributes.get("jobpulse.job.id") == task_id for s in r.run_spans()),
        what="the run span",
    )
    spans = [s for s in otlp.run_spans() if s.attributes.get("jobpulse.job.id") == task_id]
    assert len(spans) == 1
    assert spans[0].attributes["jobpulse.outcome"] == "error"
    assert spans[0].attributes["jobpulse.action"] == "quarantine"
    assert stored.trace_id == spans[0].trace_id

    listing = run(
        [sys.executable, "-m", "jobpulse", "quarantine", "--redis", REDIS_URL, "list"], env
    )
    assert task_id in listing
    assert "BadInput" in listing
