"""A real prefork Celery worker (2 children) running ``celery_app`` for one test."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from tests.support.otlp import Receiver

from .conftest import REDIS_URL, wait_until

ROOT = Path(__file__).resolve().parents[3]


@contextmanager
def celery_worker(
    otlp: Receiver,
    log: Path,
    *,
    broker: str = REDIS_URL,
    enforce: bool = True,
    dlx: str | None = None,
    queue: str | None = None,
) -> Iterator[tuple[Any, dict[str, str], str]]:
    """(app, env, queue): a worker on a queue of its own, ready; stopped by its pid."""
    from .celery_app import create_app

    queue = queue or f"jp-guard-{uuid.uuid4().hex[:8]}"
    name = f"{queue}@%h"
    env = {
        **os.environ,
        **otlp.env(),
        "PYTHONPATH": str(ROOT),
        "OTEL_SERVICE_NAME": "celery-guard",
        "JP_GUARD_QUEUE": queue,
        "JP_GUARD_BROKER": broker,
        "JP_GUARD_ENFORCE": "1" if enforce else "0",
    }
    if dlx is not None:
        env["JP_GUARD_DLX"] = dlx
    cmd = [
        sys.executable, "-m", "celery", "-A", "tests.integration.guardrails.celery_app",
        "worker", "-P", "prefork", "-c", "2", "-Q", queue, "-n", name, "-l", "info",
        "--without-gossip", "--without-mingle", "--without-heartbeat",
    ]  # fmt: skip
    with log.open("wb") as out:
        proc = subprocess.Popen(
            cmd, env=env, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    app = create_app(queue, broker=broker, dlx=dlx)
    node = name.replace("%h", socket.gethostname())
    try:
        wait_until(
            lambda: proc.poll() is not None or app.control.ping(destination=[node], timeout=0.5),
            timeout=60,
            what="the worker to answer a ping",
        )
        assert proc.poll() is None, log.read_text(errors="replace")[-4000:]
        yield app, env, queue
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


def state(app: Any, task_id: str) -> str:
    """The task's state in the result backend now (a fresh AsyncResult: no cache)."""
    return str(app.AsyncResult(task_id).state)


def run(cmd: list[str], env: dict[str, str], timeout: float = 60) -> str:
    proc = subprocess.run(
        cmd, cwd=ROOT, env=env, text=True, capture_output=True, timeout=timeout, check=False
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout + proc.stderr
