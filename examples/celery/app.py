"""The Celery app. ``jobpulse.instrument()`` is called where the app is created.

    OTEL_SERVICE_NAME=shop-worker OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:4318 \\
        celery -A examples.celery.app worker --loglevel=INFO

Every process that imports this module is instrumented: the worker (before it
forks its pool; the children inherit it) and the producer (``enqueue.py``),
which writes the trace context and the enqueue time into each message.
Telemetry settings come from the usual ``OTEL_*`` and ``JOBPULSE_*`` variables;
the ``budgets`` keyword below wins over ``JOBPULSE_BUDGETS``.
"""

from __future__ import annotations

import os

import jobpulse
from celery import Celery

# max_runtime comes from each task's time limits; add the heartbeat timeout
# that lets the watchdog report fetch_rates while it is stuck.
jobpulse.instrument(budgets={"shop.fetch_rates": jobpulse.Budget(heartbeat_timeout=5)})
app = Celery(
    "shop",
    broker=os.environ.get("CELERY_BROKER_URL", "redis://127.0.0.1:6379/0"),
    include=["examples.celery.tasks"],
)
app.conf.update(
    worker_prefetch_multiplier=1,  # long tasks: one message per pool process at a time
    broker_connection_retry_on_startup=True,
)
