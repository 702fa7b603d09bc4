"""Real ``celery worker`` processes against the real Redis (database 1 only) and the real
RabbitMQ, exporting OTLP/HTTP to a receiver in the suite.

Workers are started by fixtures (one per module where possible: a worker takes a
couple of seconds to start), each on its own queue, and stopped by PID: SIGTERM
(warm shutdown) with a deadline, then SIGKILL to its process group. Every wait
has a deadline; nothing sleeps a fixed time to synchronise.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from celery import Celery
from opentelemetry.sdk.trace import ReadableSpan

from tests.support.otlp import Receiver, Span
from tests.support.waiting import waiter

from .tasks import REDIS_URL, coord, create_app

ROOT = Path(__file__).resolve().parents[3]
AMQP_URL = "amqp://guest:guest@127.0.0.1:5672//"
BROKERS = {"redis": REDIS_URL, "rabbitmq": AMQP_URL}
SESSION = uuid.uuid4().hex[:8]
#: the adapter's own mapping of retries to actions is under test, not the guardrails'
NO_GUARDRAILS = '{"classify": false}'


wait_until = waiter(30.0, max_delay=0.2)


@dataclass
class Worker:
    """A ``celery worker`` subprocess and an app (in the test process) that sends to it."""

    proc: subprocess.Popen[bytes]
    name: str
    queue: str
    broker: str
    app: Celery
    log: Path
    env: dict[str, str] = field(default_factory=dict)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def send(self, task: str, *args: Any, **options: Any) -> Any:
        return self.app.send_task(task, args, **options)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 60.0) -> float:
        """Signal the main process; wait for it to exit; SIGKILL the group at the deadline.
        Returns how long the exit took."""
        started = time.monotonic()
        if self.proc.poll() is None:
            try:
                os.kill(self.proc.pid, sig)
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                pass
            except ProcessLookupError:
                pass
        took = time.monotonic() - started
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)  # children left behind, if any
        except (ProcessLookupError, PermissionError):
            pass
        if self.proc.poll() is None:
            self.proc.wait(10)
        self.app.close()
        return took

    def output(self) -> str:
        try:
            return self.log.read_text(errors="replace")[-6000:]
        except OSError:
            return ""


def start_worker(
    receiver: Receiver | None,
    tmp_path: Path,
    *,
    broker: str = REDIS_URL,
    pool: str = "prefork",
    concurrency: int = 2,
    env: dict[str, str] | None = None,
    otel_env: dict[str, str] | None = None,
) -> Worker:
    queue = f"jp-{SESSION}-{pool}-{uuid.uuid4().hex[:6]}"
    name = f"{queue}@%h"
    full = {
        **os.environ,
        **(receiver.env() if receiver is not None else {}),
        **(otel_env or {}),
        "PYTHONPATH": str(ROOT),
        "OTEL_SERVICE_NAME": "celery-test-worker",
        "JP_CELERY_BROKER": broker,
        "JP_CELERY_QUEUE": queue,
        "JOBPULSE_GUARDRAILS": NO_GUARDRAILS,
        **(env or {}),
    }
    log = tmp_path / f"{queue}.log"
    cmd = [
        sys.executable, "-m", "celery", "-A", "tests.integration.celery.worker_app", "worker",
        "-P", pool, "-c", str(concurrency), "-Q", queue, "-n", name, "-l", "info",
        "--without-gossip", "--without-mingle", "--without-heartbeat",
    ]  # fmt: skip
    with log.open("wb") as out:
        proc = subprocess.Popen(
            cmd, env=full, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    app = create_app(broker, queue)
    worker = Worker(proc, name.replace("%h", _hostname()), queue, broker, app, log, full)
    try:
        wait_until(
            lambda: (
                proc.poll() is not None
                or bool(app.control.ping(destination=[worker.name], timeout=0.5))
            ),
            timeout=60,
            what=f"worker {worker.name} to answer a ping",
        )
        if proc.poll() is not None:
            raise AssertionError(f"worker exited with {proc.returncode}:\n{worker.output()}")
    except BaseException:
        worker.stop(signal.SIGKILL)
        raise
    return worker


def _hostname() -> str:
    import socket

    return socket.gethostname()


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    """One OTLP receiver for the module's workers (tests tell their data apart by ids)."""
    r = Receiver().start()
    yield r
    r.stop()


@pytest.fixture(scope="module")
def module_tmp(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("celery")


@pytest.fixture(scope="session", autouse=True)
def _forget_our_redis_keys() -> Iterator[None]:
    yield
    try:
        client = coord()
        for pattern in ("jp:*", f"jp-{SESSION}-*", f"_kombu.binding*.jp-{SESSION}-*"):
            for key in client.scan_iter(pattern, count=500):
                client.delete(key)
        # messages a killed worker left unacknowledged (kombu's shared "unacked" hash)
        for tag, payload in client.hscan_iter("unacked"):
            try:
                routing_key = json.loads(payload)[2]
            except (ValueError, IndexError, TypeError):
                continue
            if str(routing_key).startswith(f"jp-{SESSION}-"):
                client.hdel("unacked", tag)
                client.zrem("unacked_index", tag)
        client.close()
    except Exception:
        pass


# -- reading what arrived -------------------------------------------------------------
def runs_of(receiver: Receiver, task_id: str) -> list[Span]:
    """Run spans of one task (every attempt), oldest attempt first."""
    spans = [s for s in receiver.run_spans() if s.attributes.get("jobpulse.job.id") == task_id]
    return sorted(spans, key=lambda s: (s.attributes.get("jobpulse.attempt", 0), s.start_ns))


def wait_runs(
    receiver: Receiver, task_id: str, count: int = 1, timeout: float = 30.0
) -> list[Span]:
    receiver.wait_for(
        lambda r: len(runs_of(r, task_id)) >= count,
        timeout=timeout,
        what=f"{count} run span(s) of task {task_id}",
    )
    return runs_of(receiver, task_id)


def span_ids(span: ReadableSpan) -> tuple[str, str]:
    """(trace id, span id) in hex, as the receiver shows links and parents."""
    ctx = span.context
    assert ctx is not None
    return format(ctx.trace_id, "032x"), format(ctx.span_id, "016x")


def settled_total(receiver: Receiver, name: str, /, **attributes: Any) -> float:
    """The total once two more exports arrived after it first became non-zero: a value
    that would grow by a late duplicate has had the chance to."""
    timeout = 30.0
    receiver.wait_for(
        lambda r: r.total(name, **attributes) > 0, timeout=timeout, what=f"{name} {attributes}"
    )
    seen = max(p.time_ns for p in receiver.latest(name, **attributes))
    for _ in range(2):

        def newer(r: Receiver, seen: int = seen) -> bool:
            return any(p.time_ns > seen for p in r.latest(name, **attributes))

        receiver.wait_for(newer, timeout=timeout, what=f"a later export of {name}")
        seen = max(p.time_ns for p in receiver.latest(name, **attributes))
    return receiver.total(name, **attributes)


def child_pid(task_id: str, timeout: float = 30.0) -> int:
    client = coord()
    raw = wait_until(lambda: client.get(f"jp:pid:{task_id}"), timeout, f"pid of task {task_id}")
    return int(raw)
