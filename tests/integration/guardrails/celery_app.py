"""``celery -A tests.integration.guardrails.celery_app worker``: jobpulse with guardrails;
result backend, attempt memory and quarantine store on Redis DB 4.

The worker's environment picks the variant: ``JP_GUARD_QUEUE`` (its queue, required),
``JP_GUARD_BROKER`` (default Redis DB 4), ``JP_GUARD_ENFORCE`` (``0``: observe mode),
``JP_GUARD_DLX`` (a dead-letter exchange for the queue, RabbitMQ).
"""

from __future__ import annotations

import os
from typing import Any

import redis
from celery import Celery
from kombu import Exchange, Queue

import jobpulse
from jobpulse.guardrails import Guardrails, Rules

REDIS_URL = os.environ.get("JOBPULSE_TEST_REDIS_URL", "redis://127.0.0.1:6379/4")
#: attempts an unbounded task gets in enforce mode here (Guardrails.max_attempts)
MAX_ATTEMPTS = 3
#: jobpulse's budget for jpguard.fetch_budgeted
BUDGETED_ATTEMPTS = 2
_redis: list[Any] = []


class BadInput(ValueError):
    """Listed as non-retryable: poison on the first attempt."""


def _client() -> Any:
    if not _redis:
        _redis.append(redis.Redis.from_url(REDIS_URL, socket_timeout=5))
    return _redis[0]


def runs_key(task_id: str) -> str:
    """How many times the task with this id ran (each task counts its own runs)."""
    return f"runs:{task_id}"


def create_app(queue: str, broker: str = REDIS_URL, dlx: str | None = None) -> Celery:
    app = Celery("jpguard", broker=broker, backend=REDIS_URL, set_as_current=True)
    app.conf.update(
        task_default_queue=queue,
        result_expires=600,
        worker_prefetch_multiplier=1,
        broker_connection_retry_on_startup=True,
        worker_hijack_root_logger=False,
    )
    if dlx is not None:
        # a failed task Celery does not retry is rejected, not acked (with acks_late):
        # what docs/guardrails.md tells users to set for their dead-letter exchange on
        # Celery 5.7+ (not task_acks_on_failure_or_timeout, which would also requeue a
        # task killed by its hard time limit, forever)
        app.conf.task_acks_on_failure = False
        app.conf.task_queues = [
            Queue(
                queue,
                Exchange(queue, type="direct"),
                routing_key=queue,
                queue_arguments={
                    "x-dead-letter-exchange": dlx,
                    "x-dead-letter-routing-key": dlx,
                },
            )
        ]

    @app.task(
        name="jpguard.parse",
        shared=False,
        autoretry_for=(ValueError,),
        max_retries=5,
        default_retry_delay=0,  # a retry, if any, would come at once
        acks_late=True,
    )
    def parse(record: int) -> Any:
        raise BadInput(f"record {record} has no header")

    @app.task(name="jpguard.validate", shared=False, bind=True, acks_late=True)
    def validate(self: Any, record: int) -> str:
        """No retry path: fails until ``fixed:{record}`` is set in Redis."""
        client = _client()
        client.incr(runs_key(self.request.id))
        if not client.get(f"fixed:{record}"):
            raise BadInput(f"record {record} has no header")
        return "valid"

    def fetch(self: Any, vendor: str) -> str:
        _client().incr(runs_key(self.request.id))
        raise ConnectionError(f"vendor {vendor} reset the connection")

    # transient failures, retried at once (default_retry_delay=0) with no bound of Celery's
    for name in ("jpguard.fetch", "jpguard.fetch_budgeted"):
        app.task(
            name=name,
            shared=False,
            bind=True,
            autoretry_for=(ConnectionError,),
            max_retries=None,
            default_retry_delay=0,
        )(fetch)

    return app


if "JP_GUARD_QUEUE" in os.environ:  # the worker process
    jobpulse.instrument(
        guardrails=Guardrails(
            enforce=os.environ.get("JP_GUARD_ENFORCE", "1") == "1",
            redis=REDIS_URL,
            rules=Rules(non_retryable=("BadInput",)),
            max_attempts=MAX_ATTEMPTS,
        ),
        budgets={"jpguard.fetch_budgeted": jobpulse.Budget(max_attempts=BUDGETED_ATTEMPTS)},
    )
    app = create_app(
        os.environ["JP_GUARD_QUEUE"],
        broker=os.environ.get("JP_GUARD_BROKER", REDIS_URL),
        dlx=os.environ.get("JP_GUARD_DLX"),
    )
