"""Fixtures for the probe tests: Redis DB 3, RabbitMQ, a Redis of our own to stop and
start, a TCP proxy to cut, the management plugin, and in-process instrumentation that
exports to the in-suite OTLP receiver."""

from __future__ import annotations

import importlib
import os
import shutil
import socket
import subprocess
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import jobpulse
from jobpulse.probe import Sampler
from tests.support.waiting import waiter

from ...support.otlp import Point, Receiver
from .tcpproxy import TcpProxy

REDIS_URL = "redis://127.0.0.1:6379/3"  # the probe tests use Redis DB 3 only
AMQP_URL = "amqp://guest:guest@127.0.0.1:5672//"
MANAGEMENT = "http://127.0.0.1:15672"
DEPTH = "jobpulse.queue.depth"
AGE = "jobpulse.queue.oldest.age"


wait_until = waiter(15.0, max_delay=0.1)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def newest(otlp: Receiver, metric: str, queue: str, system: str) -> Point | None:
    """The newest exported point of one queue series, or None."""
    points = otlp.latest(metric, **{"jobpulse.queue.name": queue, "jobpulse.system": system})
    return max(points, key=lambda p: p.time_ns) if points else None


def value(otlp: Receiver, metric: str, queue: str, system: str) -> float | None:
    point = newest(otlp, metric, queue, system)
    return None if point is None else point.value


@pytest.fixture
def token() -> str:
    """A unique fragment for queue names and key prefixes."""
    return "jpt" + uuid.uuid4().hex[:10]


@pytest.fixture
def redis3(token: str) -> Iterator[Any]:
    """A client on Redis DB 3; every key containing the test's token is deleted after
    (tests give RQ jobs ids that contain it)."""
    import redis

    client = redis.Redis.from_url(REDIS_URL)
    client.ping()
    yield client
    for key in list(client.scan_iter(match=f"*{token}*", count=1000)):
        client.delete(key)
    for set_key in list(client.scan_iter(match="*queues", count=1000)):
        members = [m for m in client.smembers(set_key) if token.encode() in m]
        if members:
            client.srem(set_key, *members)
    client.close()


@pytest.fixture
def instrumented(otlp: Receiver, monkeypatch: pytest.MonkeyPatch) -> Receiver:
    """jobpulse instrumented in this process, exporting to ``otlp`` every 300 ms."""
    for key, val in otlp.env(OTEL_SERVICE_NAME="probe-tests").items():
        monkeypatch.setenv(key, val)
    jobpulse.instrument(configure_otel=True, adapters="none")
    return otlp


@pytest.fixture
def samplers() -> Iterator[list[Sampler]]:
    """Samplers a test started; stopped after it."""
    started: list[Sampler] = []
    yield started
    for sampler in started:
        sampler.stop()


class OwnRedis:
    """A redis-server on a free port, with a password, that a test can stop and start."""

    password = "s3cr3t-Pr0be-pw"

    def __init__(self, workdir: Path) -> None:
        self.port = free_port()
        self.workdir = workdir
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://:{self.password}@127.0.0.1:{self.port}/0"

    def client(self) -> Any:
        import redis

        return redis.Redis.from_url(self.url)

    def start(self) -> OwnRedis:
        exe = shutil.which("redis-server")
        assert exe, "redis-server is not installed"
        self.proc = subprocess.Popen(
            [exe, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--requirepass", self.password, "--dir", str(self.workdir)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        client = self.client()

        def up() -> bool:
            try:
                return bool(client.ping())
            except Exception:
                return False

        wait_until(up, 10, "own redis-server to answer")
        client.close()
        return self

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[OwnRedis]:
    server = OwnRedis(tmp_path).start()
    yield server
    server.stop()


@pytest.fixture
def proxy() -> Iterator[TcpProxy]:
    """A TCP proxy to RabbitMQ's 5672 that a test can cut and restore."""
    p = TcpProxy(("127.0.0.1", 5672)).start()
    yield p
    p.stop()


def kombu() -> Any:
    return importlib.import_module("kombu")


class Rabbit:
    """Queues on the real RabbitMQ, deleted after the test."""

    def __init__(self) -> None:
        self.conn = kombu().Connection(AMQP_URL, connect_timeout=5)
        self.conn.connect()
        self.channel = self.conn.channel()
        self.names: list[str] = []

    def declare(self, name: str) -> str:
        self.channel.queue_declare(queue=name, durable=False, auto_delete=False)
        self.names.append(name)
        return name

    def publish(self, queue: str, enqueued_at: float | None, *, timestamp: bool = True) -> None:
        """A Celery protocol-2 message as the jobpulse Celery adapter sends it: the
        ``jobpulse_enqueued_at`` header and the AMQP ``timestamp`` property."""
        headers: dict[str, Any] = {"lang": "py", "task": "jpt.noop", "id": uuid.uuid4().hex}
        properties: dict[str, Any] = {}
        if enqueued_at is not None:
            headers["jobpulse_enqueued_at"] = repr(enqueued_at)
            if timestamp:
                properties["timestamp"] = int(enqueued_at)
        kombu().Producer(self.channel).publish(
            [[], {}, {}], routing_key=queue, exchange="", serializer="json",
            headers=headers, **properties,
        )  # fmt: skip

    def depth(self, queue: str) -> int:
        return int(self.channel.queue_declare(queue=queue, passive=True)[1])

    def close(self) -> None:
        for name in self.names:
            try:
                self.channel.queue_delete(queue=name)
            except Exception:
                self.channel = self.conn.channel()
        self.conn.release()


@pytest.fixture
def rabbit() -> Iterator[Rabbit]:
    r = Rabbit()
    yield r
    r.close()


def _management_up() -> bool:
    request = urllib.request.Request(
        MANAGEMENT + "/api/overview", headers={"Authorization": "Basic Z3Vlc3Q6Z3Vlc3Q="}
    )
    try:
        with urllib.request.urlopen(request, timeout=2) as response:
            return bool(response.status == 200)
    except OSError:
        return False


@pytest.fixture(scope="session")
def management() -> str:
    """The RabbitMQ management API, enabled here when it is off
    (``rabbitmq-plugins enable rabbitmq_management``; needs the rights to run it)."""
    if not _management_up():
        exe = shutil.which("rabbitmq-plugins") or "/usr/sbin/rabbitmq-plugins"
        result = subprocess.run(
            [exe, "enable", "rabbitmq_management"],
            capture_output=True, text=True, timeout=120, env={**os.environ},
        )  # fmt: skip
        if result.returncode != 0:
            pytest.fail(
                "the RabbitMQ management plugin is off and `rabbitmq-plugins enable "
                f"rabbitmq_management` failed: {result.stderr.strip() or result.stdout.strip()}"
            )
        wait_until(_management_up, 60, "the RabbitMQ management API to answer")
    return MANAGEMENT
