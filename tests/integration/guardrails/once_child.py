"""A process that claims a once key, does the side effect, and is SIGKILLed inside the block.

``python -m tests.integration.guardrails.once_child KEY`` (Redis: JOBPULSE_REDIS_URL).
"""

from __future__ import annotations

import os
import sys
import threading

import redis

import jobpulse


def main(key: str) -> None:
    url = os.environ["JOBPULSE_REDIS_URL"]
    jobpulse.instrument(configure_otel=False, guardrails={"redis": url})
    r = redis.Redis.from_url(url, socket_timeout=5)

    @jobpulse.job("Billing.charge")
    def charge() -> None:
        with jobpulse.once(key, lease=1.0) as claim:
            if claim:
                r.rpush("effects", f"charged by {os.getpid()}")
                r.set("inside", os.getpid())
                threading.Event().wait(120)  # the test kills us here

    charge()


if __name__ == "__main__":
    main(sys.argv[1])
