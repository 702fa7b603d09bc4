"""Real RQ workers (forking, simple, pools) against the real Redis, database 2 only,
exporting OTLP/HTTP to the receiver in the suite. Workers are started by the
fixtures and stopped by PID; every wait has a deadline."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from redis import Redis

from tests.support.otlp import Receiver
from tests.support.waiting import waiter

ROOT = Path(__file__).resolve().parents[3]
REDIS_URL = "redis://127.0.0.1:6379/2"  # database 2 only: other suites use the others
SETTINGS = "tests.integration.rq.settings"
SIMPLE = "rq.worker.SimpleWorker"


wait_until = waiter(20.0, max_delay=0.2)


@pytest.fixture
def redis() -> Iterator[Redis]:
    conn = Redis.from_url(REDIS_URL)
    try:
        conn.ping()
    except Exception as exc:  # pragma: no cover - environment
        pytest.skip(f"no Redis at {REDIS_URL}: {exc}")
    conn.flushdb()
    yield conn
    conn.flushdb()
    conn.close()


class Workers:
    """Starts ``rq worker`` processes; stops what is left by PID at the end."""

    def __init__(self, otlp: Receiver, redis: Redis) -> None:
        self.otlp = otlp
        self.redis = redis
        self.procs: list[subprocess.Popen[str]] = []

    def env(self, **extra: str) -> dict[str, str]:
        path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)
        env = {**os.environ, **self.otlp.env(), "PYTHONPATH": path}
        env.setdefault("OTEL_SERVICE_NAME", "rq-test-worker")
        env.update(extra)
        return env

    def start(
        self,
        *queues: str,
        worker_class: str | None = None,
        burst: bool = True,
        pool: int | None = None,
        args: tuple[str, ...] = (),
        env: dict[str, str] | None = None,
    ) -> subprocess.Popen[str]:
        cmd = [sys.executable, "-m", "rq.cli"]
        cmd += ["worker-pool", "-n", str(pool)] if pool else ["worker"]
        cmd += ["-c", SETTINGS, "-u", REDIS_URL]
        if worker_class:
            cmd += ["-w", worker_class]
        if burst:
            cmd.append("--burst")
        cmd += [*args, *queues]
        proc = subprocess.Popen(
            cmd, cwd=ROOT, env=self.env(**(env or {})), text=True,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
        self.procs.append(proc)
        return proc

    def run(self, *queues: str, timeout: float = 60, **kwargs: Any) -> str:
        """A burst worker, to completion; returns its output."""
        proc = self.start(*queues, burst=True, **kwargs)
        try:
            out, _ = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill(proc)
            out, _ = proc.communicate()
            raise AssertionError(f"worker did not finish in {timeout}s:\n{out}") from None
        assert proc.returncode == 0, out
        return out

    def stop(self, proc: subprocess.Popen[str], timeout: float = 20) -> str:
        """Warm shutdown (SIGTERM), then SIGKILL at the deadline."""
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGTERM)
        try:
            out, _ = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill(proc)
            out, _ = proc.communicate()
        return out or ""

    @staticmethod
    def kill(proc: subprocess.Popen[str]) -> None:
        """SIGKILL the worker's whole session (the worker, its horse, its scheduler)."""
        for kill in (os.killpg, os.kill):
            try:
                kill(proc.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass

    def close(self) -> None:
        for key in self.redis.keys("test:pid:*"):  # work horses live in their own groups
            try:
                os.kill(int(self.redis.get(key) or 0), signal.SIGKILL)
            except (ProcessLookupError, ValueError, PermissionError):
                pass
        for proc in self.procs:
            if proc.poll() is None:
                self.kill(proc)
            try:
                proc.communicate(timeout=10)
            except subprocess.TimeoutExpired:  # pragma: no cover
                pass


@pytest.fixture
def workers(otlp: Receiver, redis: Redis) -> Iterator[Workers]:
    w = Workers(otlp, redis)
    try:
        yield w
    finally:
        w.close()


@pytest.fixture
def producer() -> Iterator[Any]:
    """This test process as an instrumented producer (spans kept in memory)."""
    from jobpulse.testing import capture

    with capture(raise_internal=True) as cap:
        yield cap


def send_span(cap: Any, job_id: str) -> Any:
    """The producer span of a job (from :func:`producer`)."""
    return next(
        s for s in cap.spans if s.attributes and s.attributes.get("messaging.message.id") == job_id
        and s.name.startswith("send ")
    )  # fmt: skip


def linked_to(span: Any, other: Any) -> bool:
    """Does receiver span ``span`` link to the SDK span ``other``?"""
    ctx = other.get_span_context()
    return (f"{ctx.trace_id:032x}", f"{ctx.span_id:016x}") in span.links


def runs(otlp: Receiver, job: str, **attrs: Any) -> float:
    """``jobpulse.job.runs`` of one job, summed over series (and processes)."""
    return otlp.total("jobpulse.job.runs", **{"jobpulse.job.name": job, **attrs})
