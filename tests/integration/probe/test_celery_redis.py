"""Celery queues on the real Redis (DB 3), published by a real Celery app: priority
sub-queues counted, the oldest ``jobpulse_enqueued_at`` found at the lists' right ends,
queues discovered from kombu's bindings."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest

from jobpulse import _runtime
from jobpulse.probe import ProbeConfig, Sampler, build_sources, start_sampler

from ...support.otlp import Receiver
from .conftest import AGE, DEPTH, REDIS_URL, newest, value

pytestmark = pytest.mark.integration


@pytest.fixture
def celery_app(token: str) -> Iterator[Any]:
    from celery import Celery

    app = Celery(f"{token}-app", broker=REDIS_URL, set_as_current=False)
    yield app
    app.close()


def send(app: Any, queue: str, enqueued_at: float | None, priority: int | None = None) -> None:
    """Publish a task the way the jobpulse Celery adapter marks it (protocol 2 headers)."""
    headers = {} if enqueued_at is None else {"jobpulse_enqueued_at": repr(enqueued_at)}
    app.send_task("jpt.noop", queue=queue, priority=priority, headers=headers)


def test_celery_redis_depth_with_priorities_and_oldest_age(
    instrumented: Receiver, redis3: Any, celery_app: Any, token: str, samplers: list[Sampler]
) -> None:
    now = time.time()
    q, bare = f"{token}-tasks", f"{token}-bare"
    # published oldest first; the oldest of all sits in a priority sub-queue
    send(celery_app, q, now - 300, priority=6)
    send(celery_app, q, now - 100)
    send(celery_app, q, now - 50)
    send(celery_app, q, now - 10)
    send(celery_app, q, now - 5, priority=6)
    send(celery_app, bare, None)  # no jobpulse header: depth only
    assert redis3.llen(q) == 3
    assert redis3.llen(f"{q}\x06\x166") == 2

    samplers.append(start_sampler(redis_url=REDIS_URL, systems="celery", interval=0.2))
    otlp = instrumented
    otlp.wait_for(
        lambda r: (
            value(r, DEPTH, q, "celery") == 5
            and 300 <= (value(r, AGE, q, "celery") or 0) < 320
            and value(r, DEPTH, bare, "celery") == 1
        ),
        timeout=15,
        what="celery depth 5 (priorities counted) and oldest age ~300 s",
    )
    point = newest(otlp, DEPTH, q, "celery")
    assert point is not None
    assert point.attributes == {"jobpulse.queue.name": q, "jobpulse.system": "celery"}
    # the bare queue has a depth and no age series (unknown is not 0)
    assert newest(otlp, AGE, bare, "celery") is None
    assert _runtime.registry().queue_samples[(bare, "celery")] == (1, None)
    # Celery's broadcast/event machinery is not sampled
    assert not any(k[0].endswith(".pidbox") for k in _runtime.registry().queue_samples)

    # the oldest message consumed (kombu pops from the right): the age follows
    redis3.rpop(f"{q}\x06\x166")
    otlp.wait_for(
        lambda r: (
            value(r, DEPTH, q, "celery") == 4 and 100 <= (value(r, AGE, q, "celery") or 0) < 120
        ),
        timeout=15,
        what="age from the next-oldest message",
    )


def test_celery_redis_transport_options(redis3: Any, token: str) -> None:
    """Celery's documented priority set-up (sep ':', ten steps) and a global key prefix."""
    from celery import Celery

    prefix = f"{token}:"
    app = Celery(f"{token}-app2", broker=REDIS_URL, set_as_current=False)
    app.conf.broker_transport_options = {
        "sep": ":", "priority_steps": list(range(10)), "global_keyprefix": prefix,
        "queue_order_strategy": "priority",
    }  # fmt: skip
    q = f"{token}-prio"
    now = time.time()
    try:
        send(app, q, now - 60, priority=9)
        send(app, q, now - 30, priority=1)
        send(app, q, now - 20)
    finally:
        app.close()
    assert redis3.llen(f"{prefix}{q}:9") == 1
    assert redis3.llen(f"{prefix}{q}:1") == 1

    config = ProbeConfig.from_options(
        redis_url=REDIS_URL, systems="celery", celery_sep=":",
        celery_priority_steps=range(10), celery_key_prefix=prefix,
    )  # fmt: skip
    sampler = Sampler(build_sources(config))
    try:
        [(_src, samples)] = sampler.sample_once()
    finally:
        sampler.stop()
    assert samples is not None
    [sample] = [s for s in samples if s.queue == q]  # discovered through the prefixed binding
    assert sample.depth == 3
    assert sample.oldest_age is not None
    assert 60 <= sample.oldest_age < 80
