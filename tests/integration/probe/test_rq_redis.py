"""RQ queues on the real Redis (DB 3): discovered from RQ's registry of queues, depth and
oldest age as they reach the OTLP receiver."""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
import time
from typing import Any

import pytest

from jobpulse import _runtime
from jobpulse.probe import ProbeConfig, Sampler, build_sources, start_sampler

from ...support.otlp import Receiver
from .conftest import AGE, DEPTH, REDIS_URL, newest, value, wait_until

pytestmark = pytest.mark.integration


def rq_time(ts: float) -> str:
    """A unix time in RQ's ``enqueued_at`` format."""
    return dt.datetime.fromtimestamp(ts, dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def test_rq_queues_from_registry_reach_otlp(
    instrumented: Receiver, redis3: Any, token: str, samplers: list[Sampler]
) -> None:
    from rq import Queue

    busy, empty = f"{token}-busy", f"{token}-empty"
    q = Queue(busy, connection=redis3)
    jobs = [q.enqueue("builtins.len", "x", job_id=f"{token}-b{i}") for i in range(5)]
    # the oldest job (the head) was enqueued 120 s ago
    redis3.hset(jobs[0].key, "enqueued_at", rq_time(time.time() - 120))
    # a job whose hash expired leaves its id at the head: the next id gives the age
    redis3.lpush(q.key, f"{token}-expired-job")
    e = Queue(empty, connection=redis3)
    e.enqueue("builtins.len", "x", job_id=f"{token}-e0")
    redis3.lpop(e.key)  # drained, but still in RQ's registry of queues

    samplers.append(start_sampler(redis_url=REDIS_URL, systems="rq", interval=0.2))

    otlp = instrumented
    otlp.wait_for(
        lambda r: (
            value(r, DEPTH, busy, "rq") == 6
            and 120 <= (value(r, AGE, busy, "rq") or 0) < 140
            and value(r, DEPTH, empty, "rq") == 0
            and value(r, AGE, empty, "rq") == 0
        ),
        timeout=15,
        what="rq depth 6 / age ~120 s and an empty queue at 0 / 0",
    )
    depth_point = newest(otlp, DEPTH, busy, "rq")
    age_point = newest(otlp, AGE, busy, "rq")
    assert depth_point is not None
    assert age_point is not None
    assert depth_point.attributes == {"jobpulse.queue.name": busy, "jobpulse.system": "rq"}
    assert age_point.attributes == depth_point.attributes
    assert (depth_point.kind, depth_point.unit) == ("gauge", "{message}")
    assert (age_point.kind, age_point.unit) == ("gauge", "s")

    # a queue removed from RQ's registry stops being reported
    e.delete()
    wait_until(lambda: (empty, "rq") not in _runtime.registry().queue_samples, 10, "key gone")
    gone_at = time.time_ns()
    otlp.wait_for(
        lambda r: (p := newest(r, DEPTH, busy, "rq")) is not None and p.time_ns > gone_at + 5e8,
        timeout=10,
        what="an export after the queue was removed",
    )
    last = newest(otlp, DEPTH, empty, "rq")
    assert last is not None
    assert last.time_ns < gone_at


def _rq_major() -> int:
    import rq

    return int(rq.__version__.split(".")[0])


@pytest.mark.skipif(_rq_major() < 3, reason="RQ_KEY_PREFIX is RQ 3's")
def test_rq_key_prefix_from_the_environment(redis3: Any, token: str) -> None:
    """RQ 3 reads RQ_KEY_PREFIX at import: enqueue with it in a real RQ process, and the
    probe, given the same environment, finds the queue; the default prefix does not."""
    name = f"{token}-prefixed"
    prefix = f"{token}pfx"
    code = (
        "import sys, redis, rq\n"
        "q = rq.Queue(sys.argv[1], connection=redis.Redis.from_url(sys.argv[2]))\n"
        "for _ in range(3): q.enqueue('builtins.len', 'x')\n"
        "print(q.key)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, name, REDIS_URL],
        env={**os.environ, "RQ_KEY_PREFIX": prefix}, capture_output=True, text=True,
        timeout=60, check=True,
    )  # fmt: skip
    assert out.stdout.strip() == f"{prefix}:queue:{name}"

    env = {"REDIS_URL": REDIS_URL, "RQ_KEY_PREFIX": prefix}
    sources = build_sources(ProbeConfig.from_options(systems="rq", environ=env))
    assert [s.system for s in sources] == ["rq"]
    sampler = Sampler(sources, interval=1)
    try:
        [(_src, samples)] = sampler.sample_once()
        assert samples is not None
        [sample] = [s for s in samples if s.queue == name]
        assert sample.depth == 3
        assert sample.oldest_age is not None
        assert 0 <= sample.oldest_age < 60
        assert _runtime.registry().queue_samples[(name, "rq")] == (3, sample.oldest_age)
    finally:
        sampler.stop()
    assert (name, "rq") not in _runtime.registry().queue_samples

    default = Sampler(build_sources(ProbeConfig.from_options(redis_url=REDIS_URL, systems="rq")))
    try:
        [(_src, samples)] = default.sample_once()
        assert samples is not None
        assert name not in {s.queue for s in samples}
    finally:
        default.stop()


def test_named_rq_queue_without_discovery(redis3: Any, token: str) -> None:
    from rq import Queue

    named, other = f"{token}-named", f"{token}-other"
    Queue(named, connection=redis3).enqueue("builtins.len", "x", job_id=f"{token}-n0")
    Queue(other, connection=redis3).enqueue("builtins.len", "x", job_id=f"{token}-o0")
    sampler = Sampler(
        build_sources(
            ProbeConfig.from_options(
                redis_url=REDIS_URL, systems=["rq"], rq_queues=[named], discover=False
            )
        )
    )
    try:
        [(_src, samples)] = sampler.sample_once()
    finally:
        sampler.stop()
    assert samples is not None
    assert [(s.queue, s.depth) for s in samples] == [(named, 1)]
