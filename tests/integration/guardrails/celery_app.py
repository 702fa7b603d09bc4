"""``celery -A tests.integration.guardrails.celery_app worker``: jobpulse with enforced
guardrails; broker, result backend, attempt memory and quarantine store on Redis DB 4."""

from __future__ import annotations

import os
from typing import Any

from celery import Celery

import jobpulse
from jobpulse.guardrails import Guardrails, Rules

REDIS_URL = os.environ.get("JOBPULSE_TEST_REDIS_URL", "redis://127.0.0.1:6379/4")


class BadInput(ValueError):
    """Listed as non-retryable: poison on the first attempt."""


def create_app(queue: str) -> Celery:
    app = Celery("jpguard", broker=REDIS_URL, backend=REDIS_URL, set_as_current=True)
    app.conf.update(
        task_default_queue=queue,
        result_expires=600,
        worker_prefetch_multiplier=1,
        broker_connection_retry_on_startup=True,
        worker_hijack_root_logger=False,
    )

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

    return app


if "JP_GUARD_QUEUE" in os.environ:  # the worker process
    jobpulse.instrument(
        guardrails=Guardrails(
            enforce=True, redis=REDIS_URL, rules=Rules(non_retryable=("BadInput",))
        )
    )
    app = create_app(os.environ["JP_GUARD_QUEUE"])
