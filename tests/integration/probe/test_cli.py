"""``jobpulse probe`` as a real process: OTLP to the in-suite receiver, ``/metrics`` in
the contract's Prometheus names, an outage logged without the password, SIGTERM."""

from __future__ import annotations

import datetime as dt
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from ...support.otlp import Receiver
from .conftest import AGE, AMQP_URL, DEPTH, OwnRedis, Rabbit, free_port, newest, value, wait_until

pytestmark = pytest.mark.integration


def rq_queue(server: OwnRedis, queue: str, depth: int, age: float) -> None:
    client = server.client()
    ids = [f"job-{i}" for i in range(depth)]
    client.sadd("rq:queues", f"rq:queue:{queue}")
    client.rpush(f"rq:queue:{queue}", *ids)
    enqueued = dt.datetime.fromtimestamp(time.time() - age, dt.timezone.utc)
    client.hset(f"rq:job:{ids[0]}", "enqueued_at", enqueued.strftime("%Y-%m-%dT%H:%M:%S.%fZ"))
    client.close()


def probe(args: list[str], env: dict[str, str], out: Path, err: Path) -> subprocess.Popen[bytes]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "JOBPULSE_"))}
    for var in ("REDIS_URL", "RQ_REDIS_URL", "CELERY_BROKER_URL", "RABBITMQ_MANAGEMENT_URL"):
        clean.pop(var, None)
    with out.open("wb") as o, err.open("wb") as e:
        return subprocess.Popen(
            [sys.executable, "-m", "jobpulse", "probe", *args],
            env={**clean, **env}, stdout=o, stderr=e,
        )  # fmt: skip


def scrape(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    from prometheus_client.parser import text_string_to_metric_families

    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        text = response.read().decode()
    samples = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            samples[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return samples


def series(samples: dict[Any, float], name: str, queue: str, system: str) -> float | None:
    for (metric, labels), v in samples.items():
        d = dict(labels)
        if (
            metric == name
            and d.get("jobpulse_queue_name") == queue
            and d.get("jobpulse_system") == system
        ):
            return v
    return None


def test_probe_process_exports_otlp_and_prometheus(
    otlp: Receiver, own_redis: OwnRedis, rabbit: Rabbit, management: str, token: str,
    tmp_path: Path,
) -> None:  # fmt: skip
    rq_q = f"{token}-rq"
    rq_queue(own_redis, rq_q, depth=4, age=90)
    cq = rabbit.declare(f"{token}-celery")
    rabbit.publish(cq, time.time() - 60)
    rabbit.publish(cq, time.time() - 1)
    wait_until(lambda: rabbit.depth(cq) == 2, 10, "2 messages")

    out, err = tmp_path / "out", tmp_path / "err"
    proc = probe(
        ["--redis-url", own_redis.url, "--amqp-url", AMQP_URL, "--celery-queue", cq,
         "--interval", "0.3", "--timeout", "1",
         "--prometheus-port", "0", "--prometheus-host", "127.0.0.1"],
        otlp.env(), out, err,
    )  # fmt: skip
    try:
        match = wait_until(
            lambda: re.search(r"serving /metrics on http://127\.0\.0\.1:(\d+)/", err.read_text()),
            30,
            "the /metrics line on stderr",
        )
        port = int(match.group(1))

        otlp.wait_for(
            lambda r: (
                value(r, DEPTH, rq_q, "rq") == 4
                and 90 <= (value(r, AGE, rq_q, "rq") or 0) < 110
                and value(r, DEPTH, cq, "celery") == 2
                and 59 <= (value(r, AGE, cq, "celery") or 0) < 90
            ),
            timeout=30,
            what="rq and celery values from the probe process",
        )
        point = newest(otlp, DEPTH, rq_q, "rq")
        assert point is not None
        assert point.resource.get("service.name") == "jobpulse-probe"

        def prometheus_ready() -> dict[Any, float] | None:
            samples = scrape(port)
            ok = (
                series(samples, "jobpulse_queue_depth", rq_q, "rq") == 4
                and series(samples, "jobpulse_queue_depth", cq, "celery") == 2
                and (series(samples, "jobpulse_queue_oldest_age_seconds", rq_q, "rq") or 0) >= 90
                and (series(samples, "jobpulse_queue_oldest_age_seconds", cq, "celery") or 0) >= 59
            )
            return samples if ok else None

        samples = wait_until(prometheus_ready, 15, "/metrics with the contract's names")
        names = {name for name, _labels in samples if name.startswith("jobpulse_queue")}
        assert names == {"jobpulse_queue_depth", "jobpulse_queue_oldest_age_seconds"}
        labels = {k for (name, ls) in samples if name == "jobpulse_queue_depth" for k, _ in ls}
        assert {"jobpulse_queue_name", "jobpulse_system"} <= labels
        assert not labels & {"url", "host", "broker"}

        # the broker goes away: one error line, without the password
        own_redis.stop()
        wait_until(lambda: "cannot reach" in err.read_text(), 15, "the outage line")

        proc.send_signal(signal.SIGTERM)
        assert proc.wait(20) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    text = err.read_text() + out.read_text()
    assert own_redis.password not in text
    assert "guest:guest" not in text
    assert "redis://***@127.0.0.1" in text
    assert "amqp://***@127.0.0.1" in text
    assert text.count("cannot reach the rq broker") == 1
    for log in otlp.logs:
        assert own_redis.password not in str(log.body)


def test_probe_once_and_bad_arguments(
    otlp: Receiver, own_redis: OwnRedis, token: str, tmp_path: Path
) -> None:
    rq_q = f"{token}-rq"
    rq_queue(own_redis, rq_q, depth=2, age=30)
    out, err = tmp_path / "out", tmp_path / "err"
    proc = probe(["--redis-url", own_redis.url, "--system", "rq", "--once"], otlp.env(), out, err)
    assert proc.wait(60) == 0
    line = next(x for x in out.read_text().splitlines() if rq_q in x)
    assert "depth=2" in line
    assert "oldest_age=3" in line
    # --once exported what it sampled before exiting
    otlp.wait_for(lambda r: value(r, DEPTH, rq_q, "rq") == 2, 10, "the --once export")

    # an unreachable broker: exit 1, said without the password
    url = f"redis://:{own_redis.password}@127.0.0.1:{free_port()}/0"
    proc = probe(["--redis-url", url, "--once", "--timeout", "1"], {}, out, err)
    assert proc.wait(60) == 1
    text = err.read_text() + out.read_text()
    assert "unavailable" in text
    assert "cannot reach" in text
    assert own_redis.password not in text

    # a URL the probe cannot use: exit 2, redacted
    env = {"CELERY_BROKER_URL": f"sqs://key:{own_redis.password}@"}
    proc = probe([], env, out, err)
    assert proc.wait(60) == 2
    text = err.read_text()
    assert "not supported" in text
    assert own_redis.password not in text
    # no broker at all
    proc = probe([], {}, out, err)
    assert proc.wait(60) == 2
    assert "no broker to sample" in err.read_text()
