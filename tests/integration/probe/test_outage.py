"""A Redis broker that goes away and comes back (a real redis-server of the test's own,
with a password): its gauges stop while it is gone, one error line per outage, the probe
reconnects by itself, and the password appears nowhere."""

from __future__ import annotations

import logging
import time
from typing import Any

import pytest

from jobpulse import _guard, _runtime
from jobpulse.probe import QueueSample, Sampler, Scrubber, Source, redact_url
from jobpulse.probe.celery_rabbitmq import CeleryRabbitMQSource
from jobpulse.probe.celery_redis import CeleryRedisSource
from jobpulse.probe.rq_redis import RQRedisSource

from ...support.otlp import Receiver
from .conftest import DEPTH, REDIS_URL, OwnRedis, newest, value, wait_until

pytestmark = pytest.mark.integration


def fill(server: OwnRedis, queue: str, depth: int) -> None:
    """An RQ queue of ``depth`` jobs, written the way RQ lays it out."""
    client = server.client()
    ids = [f"job-{i}" for i in range(depth)]
    client.sadd("rq:queues", f"rq:queue:{queue}")
    client.rpush(f"rq:queue:{queue}", *ids)
    client.hset(f"rq:job:{ids[0]}", "enqueued_at", "2000-01-01T00:00:00.000000Z")
    client.close()


def errors(otlp: Receiver) -> list[str]:
    return [str(log.body) for log in list(otlp.logs) if "cannot reach" in str(log.body)]


def one_outage(
    otlp: Receiver, server: OwnRedis, sampler: Sampler, flaky: str, healthy: str, n: int
) -> None:
    """Stop the server, check the gauges stop and one line per source, start it again."""
    server.stop()
    wait_until(lambda: (flaky, "rq") not in _runtime.registry().queue_samples, 10, "key gone")
    gone_at = time.time_ns()
    start = sampler.samples
    wait_until(lambda: sampler.samples >= start + 5, 10, "samples in the outage")
    # exports go on for the healthy broker; the flaky one's gauges stopped
    otlp.wait_for(
        lambda r: (p := newest(r, DEPTH, healthy, "rq")) and p.time_ns > gone_at + 5e8,
        timeout=10,
        what="an export during the outage",
    )
    last = newest(otlp, DEPTH, flaky, "rq")
    assert last is not None
    assert last.time_ns < gone_at
    assert ("celery", "celery") not in _runtime.registry().queue_samples
    # one error line per outage and per source (rq and celery share the broker)
    otlp.wait_for(lambda r: len(errors(r)) >= 2 * n, 10, "outage lines")
    assert len(errors(otlp)) == 2 * n

    server.start()  # same port, empty (--save ''): refill
    fill(server, flaky, 3 + n)
    otlp.wait_for(
        lambda r: value(r, DEPTH, flaky, "rq") == 3 + n,
        timeout=15,
        what="the flaky broker sampled again after it came back",
    )


def test_redis_outage_reported_once_and_reconnected(
    instrumented: Receiver, own_redis: OwnRedis, redis3: Any, token: str
) -> None:
    from rq import Queue

    flaky, healthy = f"{token}-flaky", f"{token}-healthy"
    fill(own_redis, flaky, 2)
    Queue(healthy, connection=redis3).enqueue("builtins.len", "x", job_id=f"{token}-h0")
    sampler = Sampler(
        [
            RQRedisSource(own_redis.url, timeout=1),
            CeleryRedisSource(own_redis.url, queues=["celery"], timeout=1),
            RQRedisSource(REDIS_URL, queues=[healthy], discover=False),
        ],
        interval=0.2,
    ).start()
    otlp = instrumented
    try:
        otlp.wait_for(
            lambda r: value(r, DEPTH, flaky, "rq") == 2 and value(r, DEPTH, healthy, "rq") == 1,
            timeout=15,
            what="both brokers sampled",
        )
        for outage in (1, 2):
            one_outage(otlp, own_redis, sampler, flaky, healthy, outage)
        assert any("is back" in str(log.body) for log in otlp.logs)
    finally:
        sampler.stop()
    assert not [k for k in _runtime.registry().queue_samples if token in k[0]]

    # the password is nowhere in what was exported
    secret = own_redis.password
    for log in otlp.logs:
        assert secret not in str(log.body)
        assert secret not in str(log.attributes)
        assert secret not in str(log.resource)
    for point in otlp.points:
        assert secret not in str(point.attributes)
        assert secret not in str(point.resource)
    assert any("redis://***@127.0.0.1" in line for line in errors(otlp))


def test_wrong_credentials_are_an_outage_without_the_password(
    own_redis: OwnRedis, caplog: pytest.LogCaptureFixture
) -> None:
    wrong = "wr0ng-Passw0rd"
    sources: list[Source] = [
        RQRedisSource(own_redis.url.replace(own_redis.password, wrong), timeout=2),
        CeleryRabbitMQSource(f"amqp://guest:{wrong}@127.0.0.1:5672//", timeout=2),
    ]
    sampler = Sampler(sources, interval=1)
    with caplog.at_level(logging.INFO, logger="jobpulse"):
        try:
            for _ in range(3):
                assert [samples for _src, samples in sampler.sample_once()] == [None, None]
        finally:
            sampler.stop()
    lines = [r.getMessage() for r in caplog.records if "cannot reach" in r.getMessage()]
    assert len(lines) == 2  # once per outage, per broker
    assert "AuthenticationError" in lines[0]
    assert "ACCESS_REFUSED" in lines[1]
    assert not [r for r in caplog.records if wrong in r.getMessage() + str(r.exc_info)]


class Broken:
    """A source with a bug whose message carries its URL."""

    system = "rq"
    url = "redis://:hunter2-secret@127.0.0.1:1/0"
    broker = redact_url(url)

    def sample(self, now: float) -> list[QueueSample]:
        raise ValueError(f"bad reply from {self.url}")

    def close(self) -> None:
        pass

    def scrub(self, text: object) -> str:
        return Scrubber([self.url])(text)


@pytest.mark.allow_internal_errors
def test_a_bug_is_counted_and_logged_without_the_url(caplog: pytest.LogCaptureFixture) -> None:
    before = _guard.counts().get("probe", 0)
    sampler = Sampler([Broken()], interval=1)
    with caplog.at_level(logging.WARNING, logger="jobpulse"):
        assert sampler.sample_once() == [(sampler.sources[0], None)]
        assert sampler.sample_once() == [(sampler.sources[0], None)]
    sampler.stop()
    assert _guard.counts().get("probe", 0) == before + 2
    text = "\n".join(r.getMessage() + str(r.exc_info) for r in caplog.records)
    assert "hunter2-secret" not in text
