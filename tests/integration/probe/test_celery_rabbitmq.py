"""Celery queues on the real RabbitMQ: depth from a passive declare, oldest age from the
management API's head message timestamp (nothing consumed), depth only without it, and a
broker that goes away behind a proxy and comes back."""

from __future__ import annotations

import time

import pytest

from jobpulse import _runtime
from jobpulse.probe import Sampler, start_sampler
from jobpulse.probe.celery_rabbitmq import CeleryRabbitMQSource

from ...support.otlp import Receiver
from .conftest import AGE, AMQP_URL, DEPTH, Rabbit, free_port, newest, value, wait_until
from .tcpproxy import TcpProxy

pytestmark = pytest.mark.integration


def log_lines(otlp: Receiver, needle: str) -> list[str]:
    return [str(log.body) for log in list(otlp.logs) if needle in str(log.body)]


def test_rabbitmq_depth_and_head_age_without_consuming(
    instrumented: Receiver, rabbit: Rabbit, management: str, token: str,
    samplers: list[Sampler],
) -> None:  # fmt: skip
    q, empty, missing = rabbit.declare(f"{token}-q"), rabbit.declare(f"{token}-e"), f"{token}-x"
    now = time.time()
    for ago in (200, 100, 50, 5):
        rabbit.publish(q, now - ago)
    wait_until(lambda: rabbit.depth(q) == 4, 10, "4 messages in the queue")

    samplers.append(
        start_sampler(amqp_url=AMQP_URL, celery_queues=[q, empty, missing], interval=0.2)
    )
    otlp = instrumented
    # management statistics refresh every 5 s: the age may take that long to appear
    otlp.wait_for(
        lambda r: (
            value(r, DEPTH, q, "celery") == 4
            and 199 <= (value(r, AGE, q, "celery") or 0) < 230
            and value(r, DEPTH, empty, "celery") == 0
            and value(r, AGE, empty, "celery") == 0
        ),
        timeout=30,
        what="rabbitmq depth 4, head age ~200 s, empty queue 0 / 0",
    )
    point = newest(otlp, AGE, q, "celery")
    assert point is not None
    assert point.attributes == {"jobpulse.queue.name": q, "jobpulse.system": "celery"}
    # a queue that does not exist has no series, and says so once
    assert newest(otlp, DEPTH, missing, "celery") is None
    otlp.wait_for(lambda r: log_lines(r, "does not exist"), 10, "the missing-queue line")
    start = samplers[0].samples
    wait_until(lambda: samplers[0].samples >= start + 5, 10, "five more samples")
    assert len(log_lines(otlp, f"{missing}' does not exist")) == 1

    # sampling consumed nothing and redelivered nothing: the head message is untouched
    samplers[0].stop()
    message = rabbit.channel.basic_get(q, no_ack=True)
    assert message is not None
    assert message.delivery_info["redelivered"] is False
    assert float(message.headers["jobpulse_enqueued_at"]) == pytest.approx(now - 200)
    assert rabbit.depth(q) == 3


def test_rabbitmq_without_management_is_depth_only(
    instrumented: Receiver, rabbit: Rabbit, token: str, samplers: list[Sampler]
) -> None:
    q = rabbit.declare(f"{token}-q")
    rabbit.publish(q, time.time() - 100)
    rabbit.publish(q, time.time() - 50)
    wait_until(lambda: rabbit.depth(q) == 2, 10, "2 messages")
    nowhere = f"http://127.0.0.1:{free_port()}"  # no management API there
    samplers.append(
        start_sampler(amqp_url=AMQP_URL, celery_queues=q, management_url=nowhere, interval=0.2)
    )
    otlp = instrumented
    otlp.wait_for(lambda r: value(r, DEPTH, q, "celery") == 2, 15, "depth 2")
    start = samplers[0].samples
    wait_until(lambda: samplers[0].samples >= start + 5, 10, "five more samples")
    otlp.wait_for(lambda r: log_lines(r, "depth only"), 10, "the depth-only line")
    assert newest(otlp, AGE, q, "celery") is None
    assert _runtime.registry().queue_samples[(q, "celery")] == (2, None)
    [line] = log_lines(otlp, "depth only")
    assert "rabbitmq-plugins enable rabbitmq_management" in line
    assert "guest:guest" not in line
    assert "***@127.0.0.1" in line


def test_rabbitmq_head_without_timestamp_has_no_age(
    rabbit: Rabbit, management: str, token: str
) -> None:
    q = rabbit.declare(f"{token}-q")
    rabbit.publish(q, time.time() - 100, timestamp=False)  # a producer that sets no timestamp
    wait_until(lambda: rabbit.depth(q) == 1, 10, "1 message")
    source = CeleryRabbitMQSource(AMQP_URL, queues=[q])
    sampler = Sampler([source])
    try:
        wait_until(lambda: (r := sampler.sample_once()[0][1]) and r[0].depth == 1, 10, "depth 1")
        [(_src, samples)] = sampler.sample_once()
        assert samples is not None
        assert [(s.queue, s.depth, s.oldest_age) for s in samples] == [(q, 1, None)]
    finally:
        sampler.stop()


def test_rabbitmq_outage_and_reconnect(
    instrumented: Receiver, rabbit: Rabbit, proxy: TcpProxy, token: str,
    samplers: list[Sampler],
) -> None:  # fmt: skip
    q = rabbit.declare(f"{token}-q")
    rabbit.publish(q, time.time())
    wait_until(lambda: rabbit.depth(q) == 1, 10, "1 message")
    url = f"amqp://guest:guest@127.0.0.1:{proxy.port}//"
    sampler = start_sampler(
        amqp_url=url, celery_queues=q, management=False, interval=0.2, timeout=2
    )
    samplers.append(sampler)
    otlp = instrumented
    otlp.wait_for(lambda r: value(r, DEPTH, q, "celery") == 1, 15, "depth 1 through the proxy")

    proxy.cut()
    wait_until(lambda: (q, "celery") not in _runtime.registry().queue_samples, 15, "key gone")
    start = sampler.samples
    wait_until(lambda: sampler.samples >= start + 5, 15, "five samples during the outage")
    otlp.wait_for(lambda r: log_lines(r, "cannot reach"), 10, "the outage line")
    assert len(log_lines(otlp, "cannot reach")) == 1  # once per outage

    rabbit.publish(q, time.time())
    proxy.restore()
    otlp.wait_for(lambda r: value(r, DEPTH, q, "celery") == 2, 15, "depth 2 after reconnecting")
    otlp.wait_for(lambda r: log_lines(r, "is back"), 10, "the recovery line")
    for line in log_lines(otlp, "jobpulse probe"):
        assert "guest:guest" not in line
