"""The Celery tasks the integration tests run, on an app built for one broker and queue.

``create_app`` is used by the worker process (``worker_app``) and by the test
process, which only sends. Tasks coordinate with the tests through Redis DB 1
(``jp:*`` keys): a pid to kill, a cleanup marker, a delivery counter.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import Any, TypeVar, cast

import redis
from celery import Celery
from celery.exceptions import Ignore, Reject, SoftTimeLimitExceeded
from kombu.entity import Queue

import jobpulse

REDIS_URL = "redis://127.0.0.1:6379/1"
F = TypeVar("F", bound=Callable[..., Any])


def coord() -> redis.Redis:
    return redis.Redis.from_url(REDIS_URL)


def create_app(broker: str, queue: str, **conf: Any) -> Celery:
    app = Celery("jptest", broker=broker, backend=REDIS_URL, set_as_current=True)
    app.conf.update(
        task_default_queue=queue,
        # a queue RabbitMQ forgets 10 minutes after the tests stop using it
        task_queues=[Queue(queue, queue_arguments={"x-expires": 600_000})]  # type: ignore[no-untyped-call]
        if broker.startswith("amqp")
        else None,
        result_expires=600,
        worker_prefetch_multiplier=1,
        broker_connection_retry_on_startup=True,
        worker_hijack_root_logger=False,
        **conf,
    )
    register(app)
    return app


def register(app: Celery) -> None:
    def task(**options: Any) -> Callable[[F], F]:  # per app: tests build several apps
        return cast(Callable[[F], F], app.task(shared=False, **options))

    @task(name="jp.add")
    def add(x: int, y: int) -> int:
        return x + y

    @task(name="jp.noop")
    def noop() -> None:
        return None

    @task(name="jp.export", time_limit=60, soft_time_limit=30, max_retries=5)
    def export(n: int) -> int:
        with jobpulse.step("ExportOrders"):
            for i in range(1, n + 1):
                jobpulse.heartbeat(processed=i, total=n)
        with jobpulse.dependency("http:VendorApi", timeout=5):
            pass
        return n

    @task(name="jp.fail")
    def fail(tag: str) -> None:
        raise ValueError(f"bad record {tag}")

    @task(
        name="jp.flaky", bind=True, autoretry_for=(KeyError,), max_retries=2,
        default_retry_delay=0,
    )  # fmt: skip
    def flaky(self: Any, tag: str) -> None:
        raise KeyError(tag)

    @task(name="jp.retry_once", bind=True, max_retries=3)
    def retry_once(self: Any, tag: str) -> str:
        if self.request.retries == 0:
            raise self.retry(exc=ConnectionError(f"vendor down {tag}"), countdown=0.2)
        return tag

    @task(name="jp.ignore")
    def ignore() -> None:
        raise Ignore()

    @task(name="jp.reject", bind=True, acks_late=True)
    def reject(self: Any, tag: str) -> str:
        if coord().incr(f"jp:deliveries:{self.request.id}") == 1:
            raise Reject("not now", requeue=True)
        return tag

    @task(name="jp.reject_drop", acks_late=True)
    def reject_drop() -> None:
        raise Reject("never", requeue=False)

    @task(name="jp.sleepy", bind=True)
    def sleepy(self: Any, seconds: float) -> None:
        coord().set(f"jp:pid:{self.request.id}", os.getpid(), ex=600)
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            jobpulse.heartbeat()
            time.sleep(0.05)

    @task(name="jp.victim", bind=True)
    def victim(self: Any) -> None:
        coord().set(f"jp:pid:{self.request.id}", os.getpid(), ex=600)
        time.sleep(60)

    @task(name="jp.soft", bind=True, soft_time_limit=0.5, time_limit=20)
    def soft(self: Any) -> None:
        try:
            with jobpulse.step("Crunch"):
                while True:
                    time.sleep(0.02)
        except SoftTimeLimitExceeded:
            with jobpulse.step("Cleanup"):
                coord().set(f"jp:cleaned:{self.request.id}", 1, ex=600)
            raise

    @task(name="jp.hard", bind=True, time_limit=1)
    def hard(self: Any) -> None:
        coord().set(f"jp:pid:{self.request.id}", os.getpid(), ex=600)
        time.sleep(60)

    @task(name="jp.exit")
    def exit_() -> None:
        raise SystemExit(3)

    @task(name="jp.args")
    def args(customer: str, secret: str) -> None:
        return None

    @task(name="jp.chain_a")
    def chain_a(x: int) -> int:
        return x + 1

    @task(name="jp.chain_b")
    def chain_b(x: int) -> int:
        return x * 2

    @task(name="jp.total")
    def total(values: list[int]) -> int:
        return sum(values)
