"""A small in-process worker and the demo's jobs, one per failure mode.

The worker is what an adapter looks like from the inside: it translates its
own lifecycle (dequeue, run, retry with backoff) into the core's verbs, and
the core does the telemetry.
"""

from __future__ import annotations

import queue
import random
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import jobpulse
from jobpulse import _lifecycle
from jobpulse._run import Action, Budget, BudgetExceeded, Outcome
from jobpulse.guardrails import quarantine, should_quarantine

QUEUE = "demo"


@dataclass
class Job:
    name: str
    fn: Callable[[int], None]
    budget: Budget = field(default_factory=Budget)
    enforce: bool | None = None


@dataclass
class _Message:
    job: Job
    job_id: str
    attempt: int
    due: float


class Worker:
    """Threads taking messages off an in-memory queue; bounded retries with backoff and jitter."""

    def __init__(self, threads: int = 4, backoff: float = 0.2) -> None:
        self._queue: queue.Queue[_Message | None] = queue.Queue()
        self._threads = [
            threading.Thread(target=self._loop, name=f"demo-worker-{i}", daemon=True)
            for i in range(threads)
        ]
        self._backoff = backoff
        self._pending = 0
        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)

    def start(self) -> None:
        for thread in self._threads:
            thread.start()

    def enqueue(
        self, job: Job, *, job_id: str | None = None, attempt: int = 1, delay: float = 0
    ) -> None:
        with self._lock:
            self._pending += 1
        message = _Message(job, job_id or _lifecycle.new_id(), attempt, time.time() + delay)
        if delay:
            timer = threading.Timer(delay, self._queue.put, (message,))
            timer.daemon = True
            timer.start()
        else:
            self._queue.put(message)

    def wait_idle(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        with self._idle:
            while self._pending:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._idle.wait(remaining)
        return True

    def stop(self) -> None:
        for _ in self._threads:
            self._queue.put(None)

    def _loop(self) -> None:
        while True:
            message = self._queue.get()
            if message is None:
                return
            try:
                self._run(message)
            finally:
                with self._idle:
                    self._pending -= 1
                    self._idle.notify_all()

    def _run(self, message: _Message) -> None:
        job = message.job
        run = _lifecycle.begin_run(
            job.name, system="function", job_id=message.job_id, attempt=message.attempt,
            queue=QUEUE, job_budget=job.budget, enforce=job.enforce,
            queue_wait=time.time() - message.due, code_function=_qualified(job.fn),
        )  # fmt: skip
        try:
            job.fn(message.attempt)
        except BudgetExceeded as exc:
            _lifecycle.end_run(run, Outcome.TIMEOUT, Action.STOP, exc)
        except Exception as exc:  # noqa: BLE001 - a worker survives its jobs
            max_attempts = job.budget.max_attempts or 1
            payload = should_quarantine(run, exc)
            if payload is not None:  # poison, enforcement on: set aside, never retried
                quarantine(payload)
                _lifecycle.end_run(run, Outcome.ERROR, Action.QUARANTINE, exc)
            elif message.attempt < max_attempts:
                _lifecycle.end_run(run, Outcome.ERROR, Action.RETRY, exc)
                delay = self._backoff * 2 ** (message.attempt - 1) * random.uniform(0.8, 1.2)
                self.enqueue(job, job_id=message.job_id, attempt=message.attempt + 1, delay=delay)
            else:
                _lifecycle.end_run(run, Outcome.ERROR, Action.STOP, exc)
        else:
            _lifecycle.end_run(run, Outcome.SUCCESS, Action.NONE)


def _qualified(fn: Callable[..., object]) -> str:
    return f"{fn.__module__}.{fn.__qualname__}"


# -- the jobs ------------------------------------------------------------------------
def nightly_export(attempt: int) -> None:
    """Healthy: steps, steady heartbeats, a bounded dependency call."""
    with jobpulse.step("LoadOrders"):
        orders = list(range(120))
        time.sleep(0.2)
    with jobpulse.step("ExportOrders"):
        for i, _order in enumerate(orders, 1):
            time.sleep(0.004)
            jobpulse.heartbeat(processed=i, total=len(orders))
    with jobpulse.dependency("http:WarehouseApi", timeout=2):
        time.sleep(0.05)


class Blackhole:
    """A TCP server on 127.0.0.1 that accepts and never answers: the vendor that hangs."""

    def __init__(self) -> None:
        self._sock = socket.socket()
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(16)
        self.port = self._sock.getsockname()[1]

    def close(self) -> None:
        self._sock.close()


def vendor_sync(blackhole: Blackhole, wait: float) -> Callable[[int], None]:
    def vendor_sync(attempt: int) -> None:
        """Stuck: waits on a vendor that never answers; the watchdog reports it while stuck."""
        address = ("127.0.0.1", blackhole.port)
        with (
            jobpulse.step("PullInvoices"),
            jobpulse.dependency("tcp:VendorApi", timeout=3),
            socket.create_connection(address, timeout=wait) as conn,
        ):
            conn.sendall(b"GET /invoices\r\n\r\n")
            conn.recv(1024)  # never answers: socket.timeout after `wait` seconds

    return vendor_sync


NOTIFICATIONS: list[str] = []


def flaky_import(attempt: int) -> None:
    """Flaky: the partner API fails twice, then answers; retries are bounded.

    The "import started" mail is a side effect guarded by ``once``: sent by the
    first attempt, skipped by the retries.
    """
    with jobpulse.once("demo:import-started-mail:batch-7") as claim:
        if claim:
            NOTIFICATIONS.append(f"import started (attempt {attempt})")
    with jobpulse.step("FetchBatch"), jobpulse.dependency("http:PartnerApi", timeout=1):
        time.sleep(0.05)
        if attempt < 3:
            raise ConnectionError(f"partner API reset the connection (attempt {attempt})")
    with jobpulse.step("Store"):
        for i in range(1, 51):
            jobpulse.heartbeat(processed=i, total=50)


def rebuild_index(attempt: int) -> None:
    """Over budget: runs past its max runtime with enforcement on, stopped at a heartbeat."""
    with jobpulse.step("Reindex"):
        for i in range(1, 10_000):
            time.sleep(0.01)
            jobpulse.heartbeat(processed=i)


class BadRecord(ValueError):
    """A record that can never be imported as it is: retrying will not help."""


def import_records(records: list[str]) -> Callable[[int], None]:
    def import_records(attempt: int) -> None:
        """Poison: record 13 is malformed; the same input fails the same way every time."""
        with jobpulse.step("ParseRecords"):
            for i, record in enumerate(records, 1):
                if not record.isdigit():
                    raise BadRecord(f"record {i} is not a number: {record!r}")
                jobpulse.heartbeat(processed=i, total=len(records))

    return import_records
