"""The queue-health probe: time per sample and memory with 1,000,000 waiting jobs.

Run: ``.venv/bin/python benchmarks/bench_probe.py [--depth N] [--amqp-depth N]``
(or ``scripts/bench``). Needs Redis on 127.0.0.1:6379 (DB 3 is used and cleaned)
and, for the RabbitMQ part, RabbitMQ on 5672 with guest/guest (``--amqp-depth 0``
skips it).

Target (issue #4): one sample of a 1,000,000-job queue in under 10 ms, O(1) broker
round trips per queue whatever the depth. Each source is timed at depth 10 and at
the full depth, so the ratio shows the cost does not grow with the queue.

Filling: the RQ queue holds real-looking job ids (36 characters) pushed in
10,000-id RPUSH batches; the Celery list's oldest (right-most) message is a real
kombu envelope with ``jobpulse_enqueued_at`` and the rest are small placeholders
(LLEN and LINDEX -1 do not read the other elements, so their size does not matter
to the sample; it keeps Redis's memory small). RabbitMQ messages are transient.
"""

from __future__ import annotations

import argparse
import gc
import importlib
import json
import os
import statistics
import subprocess
import sys
import time
import tracemalloc
import uuid
from collections.abc import Callable
from typing import Any

from jobpulse.probe import QueueSample
from jobpulse.probe.celery_rabbitmq import CeleryRabbitMQSource
from jobpulse.probe.celery_redis import CeleryRedisSource
from jobpulse.probe.rq_redis import RQRedisSource

REDIS_URL = "redis://127.0.0.1:6379/3"
AMQP_URL = "amqp://guest:guest@127.0.0.1:5672//"
BATCH = 10_000


def fill_list(client: Any, key: str, n: int, make: Callable[[int], bytes], left: bool) -> float:
    """Push ``n`` items in batches of 10,000 per command, pipelined; seconds taken."""
    start = time.perf_counter()
    pipe = client.pipeline(transaction=False)
    for lo in range(0, n, BATCH):
        items = [make(i) for i in range(lo, min(n, lo + BATCH))]
        (pipe.lpush if left else pipe.rpush)(key, *items)
        if len(pipe) >= 20:
            pipe.execute()
    pipe.execute()
    return time.perf_counter() - start


def now_sampler(source: Any) -> Callable[[], list[QueueSample]]:
    return lambda: source.sample(time.time())  # type: ignore[no-any-return]


def timed(sample: Callable[[], list[QueueSample]], n: int) -> dict[str, float]:
    """Milliseconds per sample (after one warm-up), and the tracemalloc peak over the run."""
    sample()
    gc.collect()
    tracemalloc.start()
    times = []
    for _ in range(n):
        start = time.perf_counter()
        sample()
        times.append((time.perf_counter() - start) * 1000)
    _current, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    times.sort()
    return {
        "median_ms": round(statistics.median(times), 3),
        "p95_ms": round(times[int(0.95 * (len(times) - 1))], 3),
        "max_ms": round(times[-1], 3),
        "peak_alloc_kib": round(peak / 1024, 1),
    }


def bench_rq(client: Any, tag: str, depth: int, n: int) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for label, size in (("small", 10), ("full", depth)):
        name = f"{tag}-rq-{label}"
        key = f"rq:queue:{name}"
        head = str(uuid.uuid4())
        client.rpush(key, head)
        fill = fill_list(client, key, size - 1, lambda i: str(uuid.uuid4()).encode(), left=False)
        client.hset(f"rq:job:{head}", "enqueued_at", "2026-01-01T00:00:00.000000Z")
        source = RQRedisSource(REDIS_URL, queues=[name], discover=False)
        [s] = source.sample(time.time())
        assert s.depth == size, s
        assert s.oldest_age is not None, s
        out[label] = {"depth": size, "fill_s": round(fill, 2), **timed(
            now_sampler(source), n
        )}  # fmt: skip
        source.close()
    return out  # the queues stay for probe_process(); main() deletes them


def bench_celery_redis(client: Any, tag: str, depth: int, n: int) -> dict[str, Any]:
    out: dict[str, Any] = {}
    envelope = json.dumps(
        {
            "body": "W1tdLCB7fSwgeyJjYWxsYmFja3MiOiBudWxsfV0=",
            "content-encoding": "utf-8",
            "content-type": "application/json",
            "headers": {
                "lang": "py",
                "task": "bench.noop",
                "id": str(uuid.uuid4()),
                "jobpulse_enqueued_at": repr(time.time() - 3600),
            },
            "properties": {"priority": 0, "delivery_tag": str(uuid.uuid4())},
        }
    ).encode()
    for label, size in (("small", 10), ("full", depth)):
        name = f"{tag}-celery-{label}"
        client.lpush(name, envelope)  # the oldest: LPUSH first, the others pushed after it
        fill = fill_list(client, name, size - 1, lambda i: b"placeholder-%d" % i, left=True)
        source = CeleryRedisSource(REDIS_URL, queues=[name], discover=False)
        [s] = source.sample(time.time())
        assert s.depth == size, s
        assert s.oldest_age is not None, s
        assert s.oldest_age >= 3600, s
        out[label] = {"depth": size, "fill_s": round(fill, 2), **timed(
            now_sampler(source), n
        )}  # fmt: skip
        source.close()
    return out


def bench_rabbitmq(tag: str, depth: int, n: int) -> dict[str, Any]:
    amqp: Any = importlib.import_module("amqp")

    conn = amqp.Connection("127.0.0.1:5672", userid="guest", password="guest")
    conn.connect()
    chan = conn.channel()
    out: dict[str, Any] = {}
    try:
        for label, size in (("small", 10), ("full", depth)):
            name = f"{tag}-amqp-{label}"
            chan.queue_declare(name, durable=False, auto_delete=False)
            start = time.perf_counter()
            first = amqp.Message(b"[[], {}, {}]", timestamp=int(time.time()) - 3600,
                                 application_headers={"jobpulse_enqueued_at": "0"})  # fmt: skip
            chan.basic_publish(first, routing_key=name)
            rest = amqp.Message(b"[[], {}, {}]", delivery_mode=1)
            for _ in range(size - 1):
                chan.basic_publish(rest, routing_key=name)
            source = CeleryRabbitMQSource(AMQP_URL, queues=[name], timeout=30)
            deadline = time.monotonic() + 300
            while source.sample(time.time())[0].depth < size and time.monotonic() < deadline:
                time.sleep(0.5)
            fill = time.perf_counter() - start
            # the management statistics lag up to 5 s behind
            s = source.sample(time.time())[0]
            while s.oldest_age is None and time.monotonic() < deadline:
                time.sleep(0.5)
                s = source.sample(time.time())[0]
            out[label] = {"depth": s.depth, "fill_s": round(fill, 2),
                          "head_age_s": s.oldest_age, **timed(
                now_sampler(source), max(20, n // 10)
            )}  # fmt: skip
            depth_only = CeleryRabbitMQSource(AMQP_URL, queues=[name], management=False)
            out[label]["depth_only"] = timed(now_sampler(depth_only), max(20, n // 10))
            source.close()
            depth_only.close()
            chan.queue_delete(name)
    finally:
        conn.close()
    return out


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))


def probe_process(tag: str, seconds: float) -> dict[str, Any]:
    """The ``jobpulse probe`` process itself sampling both 1M-deep Redis queues every
    10 ms (about 100 samples a second): resident memory early and after ``seconds``."""
    env = {**os.environ, "OTEL_TRACES_EXPORTER": "none", "OTEL_METRICS_EXPORTER": "none",
           "OTEL_LOGS_EXPORTER": "none"}  # fmt: skip
    proc = subprocess.Popen(
        [sys.executable, "-m", "jobpulse", "probe", "--redis-url", REDIS_URL, "--no-discover",
         "--rq-queue", f"{tag}-rq-full", "--celery-queue", f"{tag}-celery-full",
         "--interval", "0.01"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        time.sleep(2.0)  # a benchmark, not a test: let it start and settle
        early = rss_kib(proc.pid)
        time.sleep(seconds)
        late = rss_kib(proc.pid)
    finally:
        proc.terminate()
        proc.wait(10)
    return {"rss_mib_after_2s": round(early / 1024, 1),
            f"rss_mib_after_{2 + seconds:.0f}s": round(late / 1024, 1),
            "samples_between_approx": int(seconds / 0.01)}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--depth", type=int, default=1_000_000)
    parser.add_argument("--amqp-depth", type=int, default=1_000_000)
    parser.add_argument("--samples", type=int, default=200)
    parser.add_argument("--rss-seconds", type=float, default=20.0)
    args = parser.parse_args()

    import redis

    client = redis.Redis.from_url(REDIS_URL)
    tag = "bench-probe-" + uuid.uuid4().hex[:8]
    results: dict[str, Any] = {}
    try:
        results["rq_redis"] = bench_rq(client, tag, args.depth, args.samples)
        results["celery_redis"] = bench_celery_redis(client, tag, args.depth, args.samples)
        results["probe_process"] = probe_process(tag, args.rss_seconds)
        if args.amqp_depth > 0:
            results["celery_rabbitmq"] = bench_rabbitmq(tag, args.amqp_depth, args.samples)
    finally:
        for key in client.scan_iter(match=f"*{tag}*", count=1000):
            client.delete(key)

    def row(name: str, depth: int, r: dict[str, Any]) -> str:
        return (
            f"{name:<22} {depth:>9} {r['median_ms']:>10} {r['p95_ms']:>8} {r['max_ms']:>8} "
            f"{r['peak_alloc_kib']:>9}"
        )

    print(f"{'source':<22} {'depth':>9} {'median ms':>10} {'p95 ms':>8} {'max ms':>8} "
          f"{'peak KiB':>9}")  # fmt: skip
    for source in ("rq_redis", "celery_redis", "celery_rabbitmq"):
        for label in ("small", "full"):
            r = results.get(source, {}).get(label)
            if r:
                print(row(source, r["depth"], r))
                if "depth_only" in r:
                    print(row(source + " (depth only)", r["depth"], r["depth_only"]))
    print(json.dumps(results, indent=1))
    for source in ("rq_redis", "celery_redis"):
        full = results[source]["full"]
        verdict = "ok" if full["median_ms"] < 10 else "OVER TARGET"
        print(f"{source}: {full['median_ms']} ms per sample at depth {full['depth']}: {verdict}")


if __name__ == "__main__":
    main()
