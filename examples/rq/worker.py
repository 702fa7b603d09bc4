"""A worker script, for deployments that start RQ workers from their own code.

    REDIS_URL=redis://127.0.0.1:6379/0 python worker.py            # forking Worker
    REDIS_URL=redis://127.0.0.1:6379/0 python worker.py --simple   # SimpleWorker

``jobpulse.instrument()`` comes first, before the worker forks its horses.
"""

from __future__ import annotations

import os
import sys

import jobpulse

jobpulse.instrument()

from redis import Redis  # noqa: E402 - after instrument(), which hooks rq on import
from rq import Queue, SimpleWorker, Worker  # noqa: E402

redis = Redis.from_url(os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0"))
worker_class = SimpleWorker if "--simple" in sys.argv else Worker
worker = worker_class([Queue("default", connection=redis)], connection=redis)
worker.work(with_scheduler=True, burst="--burst" in sys.argv)
