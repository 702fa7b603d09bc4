"""Calls that can wait forever: detected inside runs, with their effective timeout."""

from __future__ import annotations

import socket
import threading
from typing import Any

import pytest

import jobpulse
from jobpulse.autodeps import forget_call_sites
from jobpulse.testing import Captured, capture

from .conftest import REDIS_URL, SilentServer, wait_until

requests = pytest.importorskip("requests")
pytestmark = pytest.mark.integration


@pytest.fixture(autouse=True)
def _fresh_call_sites() -> None:
    forget_call_sites()


def client_spans(cap: Captured) -> list[Any]:
    return [s for s in cap.spans if s.kind.name == "CLIENT"]


def unbounded(cap: Captured, name: str) -> float | None:
    return cap.metric("jobpulse.dependency.unbounded_calls", **{"jobpulse.dependency.name": name})


def test_requests_call_annotates_the_official_client_span(http_server: str) -> None:
    """One CLIENT span (opentelemetry-instrumentation-requests) carrying jobpulse's
    dependency attributes, no second span; the timeout is connect + read."""
    with capture() as cap:

        @jobpulse.job("Fetch")
        def fetch() -> str:
            return str(requests.get(http_server, timeout=(1, 2)).text)

        assert fetch() == "ok"
        [span] = client_spans(cap)
        assert span.attributes["jobpulse.dependency.name"] == "http:127.0.0.1"
        assert span.attributes["jobpulse.dependency.timeout"] == 3.0
        assert span.attributes["jobpulse.dependency.outcome"] == "ok"
        run = cap.run_spans("Fetch")[0]
        assert span.parent is not None
        assert span.parent.span_id == run.context.span_id
        assert not [s for s in cap.spans if s.name == "http:127.0.0.1"]
        assert unbounded(cap, "http:127.0.0.1") is None
        assert (
            cap.metric(
                "jobpulse.dependency.duration", **{"jobpulse.dependency.name": "http:127.0.0.1"}
            )
            == 1
        )


def test_calls_outside_runs_are_left_alone(http_server: str) -> None:
    with capture() as cap:
        requests.get(http_server)
        [span] = client_spans(cap)
        assert "jobpulse.dependency.name" not in (span.attributes or {})
        assert unbounded(cap, "http:127.0.0.1") is None


def test_an_unbounded_call_that_never_answers_is_reported_while_stuck(
    silent_server: SilentServer,
) -> None:
    """The watchdog's stall line names what the run waits on; the call is counted as
    unbounded and warned about once, naming this file and line."""
    failures: list[BaseException] = []
    with capture(watchdog_interval=0.02) as cap:

        @jobpulse.job("Sync", heartbeat_timeout=0.2)
        def sync() -> None:
            with jobpulse.step("Download"):
                requests.get(silent_server.url)  # no timeout: can wait forever

        def worker() -> None:
            try:
                sync()
            except Exception as exc:
                failures.append(exc)

        thread = threading.Thread(target=worker)
        thread.start()
        try:
            stall = wait_until(
                lambda: [r for r in cap.logs if getattr(r, "jobpulse.stall.reason", None)],
                what="a stall line",
            )[0]
            assert getattr(stall, "jobpulse.dependency.name") == "http:127.0.0.1"
            assert "waiting on http:127.0.0.1" in stall.getMessage()
            assert getattr(stall, "jobpulse.step.name") == "Download"
            assert thread.is_alive()  # still stuck when reported
            assert unbounded(cap, "http:127.0.0.1") == 1
            [warning] = [r for r in cap.logs if "no timeout" in r.getMessage()]
            assert warning.levelname == "WARNING"
            site = getattr(warning, "jobpulse.dependency.call_site")
            assert site.startswith(__file__ + ":")
        finally:
            silent_server.close()  # the test's bound: the call now fails
            thread.join(10)
        assert not thread.is_alive()
        assert failures, "the request should fail once the server closes"
        [span] = client_spans(cap)
        assert "jobpulse.dependency.timeout" not in (span.attributes or {})
        assert span.attributes["jobpulse.dependency.outcome"] == "error"


def test_warned_once_per_call_site(silent_server: SilentServer, http_server: str) -> None:
    with capture() as cap:

        @jobpulse.job("J")
        def j() -> None:
            for _ in range(3):
                requests.get(http_server)

        j()
        assert unbounded(cap, "http:127.0.0.1") == 3
        assert len([r for r in cap.logs if "no timeout" in r.getMessage()]) == 1


def test_httpx_gets_a_jobpulse_dependency_span(http_server: str) -> None:
    httpx = pytest.importorskip("httpx")
    with capture() as cap:

        @jobpulse.job("J")
        def j() -> None:
            httpx.get(http_server, timeout=httpx.Timeout(2.0, connect=1.0))
            httpx.get(http_server, timeout=None)

        j()
        spans = [s for s in cap.spans if s.name == "http:127.0.0.1"]
        assert [s.attributes.get("jobpulse.dependency.timeout") for s in spans] == [3.0, None]
        assert all(s.kind.name == "INTERNAL" for s in spans)
        assert unbounded(cap, "http:127.0.0.1") == 1


def test_redis_commands_and_raw_sockets(redis_db: Any, http_server: str) -> None:
    """redis-py with socket_timeout=None and a raw socket with no timeout are unbounded;
    jobpulse's own Redis calls (guardrails) are not the run's dependencies."""
    import redis

    port = int(http_server.rsplit(":", 1)[1])
    with capture(guardrails={"enforce": True}) as cap:

        @jobpulse.job("J")
        def j() -> None:
            bare = redis.Redis.from_url(REDIS_URL, socket_timeout=None)  # redis-py 8: 5 s
            bare.set("k", "1")
            bounded = redis.Redis.from_url(REDIS_URL, socket_timeout=2)
            bounded.get("k")
            with jobpulse.once("mail:1") as claim:
                assert claim
            sock = socket.socket()
            sock.connect(("127.0.0.1", port))
            sock.close()
            bare.close()
            bounded.close()

        j()
        assert unbounded(cap, "redis:127.0.0.1") == 1  # the SET; once's calls not counted
        duration = cap.metric(
            "jobpulse.dependency.duration", **{"jobpulse.dependency.name": "redis:127.0.0.1"}
        )
        assert duration == 2
        assert unbounded(cap, f"tcp:127.0.0.1:{port}") == 1


def test_detection_can_be_switched_off(http_server: str) -> None:
    with capture(detect_dependencies=False) as cap:

        @jobpulse.job("J")
        def j() -> None:
            requests.get(http_server)

        j()
        assert unbounded(cap, "http:127.0.0.1") is None
        assert client_spans(cap) == []
