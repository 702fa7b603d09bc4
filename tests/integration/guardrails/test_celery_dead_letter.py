"""Enforce mode on RabbitMQ: a poison task's message is rejected without requeue and
lands in the queue's dead-letter exchange, both when jobpulse stops the retry
(``autoretry_for``: ``Reject(requeue=False)``) and when the task has no retry path
(Celery rejects it itself with ``acks_late`` and ``task_acks_on_failure=False``, as
docs/guardrails.md recommends for Celery 5.7+)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from jobpulse.guardrails import RedisStore
from tests.support.otlp import Receiver

from .celery_worker import celery_worker, state
from .conftest import wait_until

kombu = pytest.importorskip("kombu")
pytestmark = pytest.mark.integration
AMQP_URL = "amqp://guest:guest@127.0.0.1:5672//"


class DeadLetters:
    """A dead-letter exchange and its queue on the real RabbitMQ, deleted after the test
    with the work queue (and its exchange) the worker declared."""

    def __init__(self, token: str) -> None:
        self.exchange = f"{token}-dlx"
        self.queue = f"{token}-dead"
        self.work_queue = token
        self.conn = kombu.Connection(AMQP_URL, connect_timeout=5)
        self.conn.connect()
        self.channel = self.conn.channel()
        self.channel.exchange_declare(self.exchange, "direct", durable=False, auto_delete=False)
        self.channel.queue_declare(queue=self.queue, durable=False, auto_delete=False)
        self.channel.queue_bind(self.queue, self.exchange, routing_key=self.exchange)

    def depth(self) -> int:
        return int(self.channel.queue_declare(queue=self.queue, passive=True)[1])

    def task_ids(self) -> list[str]:
        ids = []
        while (message := self.channel.basic_get(self.queue, no_ack=True)) is not None:
            death = message.headers["x-death"][0]
            assert death["reason"] == "rejected", death
            assert death["queue"] == self.work_queue
            ids.append(message.headers["id"])
        return ids

    def close(self) -> None:
        for delete, name in (
            (self.channel.queue_delete, self.queue),
            (self.channel.queue_delete, self.work_queue),
            (self.channel.exchange_delete, self.exchange),
            (self.channel.exchange_delete, self.work_queue),
        ):
            try:
                delete(name)
            except Exception:  # a failed delete closes the channel: open another
                self.channel = self.conn.channel()
        self.conn.release()


@pytest.fixture
def dead_letters() -> Iterator[DeadLetters]:
    letters = DeadLetters(f"jp-dlx-{uuid.uuid4().hex[:8]}")
    yield letters
    letters.close()


def test_poison_messages_reach_the_dead_letter_queue(
    redis_db: Any, otlp: Receiver, tmp_path: Path, dead_letters: DeadLetters
) -> None:
    with celery_worker(
        otlp,
        tmp_path / "worker.log",
        broker=AMQP_URL,
        dlx=dead_letters.exchange,
        queue=dead_letters.work_queue,
    ) as (app, _env, queue):
        retried = app.send_task("jpguard.parse", (1,)).id  # autoretry_for: jobpulse rejects
        unretried = app.send_task("jpguard.validate", (2,)).id  # no retry path: Celery does

        wait_until(lambda: dead_letters.depth() >= 2, timeout=30, what="2 dead letters")
        assert sorted(dead_letters.task_ids()) == sorted([retried, unretried])
        for task_id in (retried, unretried):
            assert state(app, task_id) == "FAILURE"
        store = RedisStore(redis_db)
        for task_id in (retried, unretried):
            stored = wait_until(lambda t=task_id: store.get(t), what="the payload")
            assert stored.attempts == 1
            assert stored.reason == "non_retryable"
        # nothing was requeued: the work queue is empty
        assert int(dead_letters.channel.queue_declare(queue=queue, passive=True)[1]) == 0
