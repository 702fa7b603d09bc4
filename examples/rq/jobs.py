"""Example RQ jobs: steps, heartbeats and dependency calls inside plain RQ job functions.

Nothing here is RQ-specific: the same calls work in Celery tasks and in
``@jobpulse.job`` functions. Outside a run (jobpulse not instrumented, or a
unit test) they do nothing.
"""

from __future__ import annotations

import random
import time

import jobpulse


def fetch_orders(day: str) -> list[int]:
    # A dependency call with a timeout budget: a span, a duration histogram, and
    # "waiting on orders-db" in the stall report if it hangs.
    with jobpulse.dependency("sql:orders-db", timeout=10):
        time.sleep(0.05)
        return list(range(1, 201))


def nightly_export(day: str) -> int:
    """A long job that says where it is: steps and heartbeats with progress."""
    with jobpulse.step("FetchOrders"):
        orders = fetch_orders(day)
    with jobpulse.step("ExportOrders"):
        for i, _order in enumerate(orders, 1):
            time.sleep(0.005)  # the real work
            jobpulse.heartbeat(processed=i, total=len(orders))
    with jobpulse.step("Upload"), jobpulse.dependency("http:VendorApi", timeout=30):
        time.sleep(0.1)
    return len(orders)


def flaky_sync(account: str) -> str:
    """Fails now and then: enqueue it with ``retry=Retry(max=3, interval=[5, 30, 60])``
    and every attempt is a run of the same job id (attempt 1, 2, ...)."""
    if random.random() < 0.5:
        raise ConnectionError(f"vendor API unavailable for {account}")
    return "synced"


def send_report(day: str) -> str:
    """Runs after ``nightly_export`` (``depends_on``); its queue wait starts when that ends."""
    return f"report for {day}"
