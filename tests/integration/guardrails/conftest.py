"""Redis DB 4 only (flushed around each test), local servers bounded by the test."""

from __future__ import annotations

import os
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from jobpulse.guardrails import memory
from tests.support.waiting import waiter

REDIS_URL = os.environ.get("JOBPULSE_TEST_REDIS_URL", "redis://127.0.0.1:6379/4")


wait_until = waiter(15.0, max_delay=0.01)


@pytest.fixture
def redis_db(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """A flushed Redis DB 4, also the guardrails' Redis (JOBPULSE_REDIS_URL)."""
    redis = pytest.importorskip("redis")
    client = redis.Redis.from_url(REDIS_URL, socket_timeout=5, socket_connect_timeout=5)
    try:
        client.ping()
    except redis.RedisError as exc:
        pytest.skip(f"no Redis at {REDIS_URL}: {exc}")
    assert client.connection_pool.connection_kwargs.get("db") == 4, "tests use Redis DB 4 only"
    client.flushdb()
    monkeypatch.setenv("JOBPULSE_REDIS_URL", REDIS_URL)
    memory.clear_local()
    yield client
    client.flushdb()
    client.close()


class _Answering(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = b"ok"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def http_server() -> Iterator[str]:
    """An HTTP server on 127.0.0.1 that answers ``ok``."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Answering)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()
    thread.join(5)


class SilentServer:
    """Accepts connections and never answers, until :meth:`close` (the test's bound)."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.sock.settimeout(0.05)
        self.port = self.sock.getsockname()[1]
        self.conns: list[socket.socket] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/never"

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except (TimeoutError, OSError):
                continue
            self.conns.append(conn)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        for conn in self.conns:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            conn.close()
        self.sock.close()


@pytest.fixture
def silent_server() -> Iterator[SilentServer]:
    server = SilentServer()
    yield server
    server.close()
