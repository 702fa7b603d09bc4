"""Enqueue the example jobs (the producer side).

    REDIS_URL=redis://127.0.0.1:6379/0 python enqueue.py

With jobpulse instrumented here too, every enqueue is a ``send {job}`` PRODUCER
span (a child of whatever span is current, e.g. the web request) and the job's
run spans link back to it.
"""

from __future__ import annotations

import os
from datetime import timedelta

import jobs
from redis import Redis
from rq import Queue, Retry

import jobpulse

jobpulse.instrument()

queue = Queue(
    "default", connection=Redis.from_url(os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0"))
)
export = queue.enqueue(jobs.nightly_export, "2026-11-29", job_timeout=600)
queue.enqueue(jobs.send_report, "2026-11-29", depends_on=export)
queue.enqueue(jobs.flaky_sync, "acme", retry=Retry(max=3, interval=[1, 2, 5]))
queue.enqueue_in(timedelta(seconds=10), jobs.nightly_export, "2026-11-30", job_timeout=600)
print(f"enqueued 4 jobs on {queue.name!r}; start a worker: rq worker -c settings --with-scheduler")
jobpulse.flush(5)
