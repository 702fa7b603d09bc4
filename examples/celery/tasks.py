"""Example Celery tasks: steps, heartbeats and dependency calls inside plain tasks.

The jobpulse calls are the same in RQ jobs and ``@jobpulse.job`` functions;
outside a run (jobpulse not instrumented, a unit test) they do nothing. Task
names are explicit (``shop.*``): they are the job names in every span, metric
and log line.
"""

from __future__ import annotations

import time
from typing import Any

import jobpulse

from .app import app


def fetch_orders(day: str) -> list[int]:
    # A dependency call with a timeout budget: a span, a duration histogram, and
    # "waiting on sql:orders-db" in the stall report if it hangs.
    with jobpulse.dependency("sql:orders-db", timeout=10):
        time.sleep(0.05)
        return list(range(1, 201))


@app.task(name="shop.nightly_export", time_limit=300, soft_time_limit=240, max_retries=3)
def nightly_export(day: str) -> int:
    """A long task that says where it is: steps and heartbeats with progress.

    Its budget comes from Celery: max_runtime 240 s (the smaller time limit),
    max_attempts 4 (max_retries + 1).
    """
    with jobpulse.step("FetchOrders"):
        orders = fetch_orders(day)
    with jobpulse.step("ExportOrders"):
        for i, _order in enumerate(orders, 1):
            time.sleep(0.005)  # the real work
            jobpulse.heartbeat(processed=i, total=len(orders))
    with jobpulse.step("Upload"), jobpulse.dependency("http:VendorApi", timeout=30):
        time.sleep(0.1)
    return len(orders)


@app.task(name="shop.send_report")
def send_report(exported: int, day: str) -> str:
    """Chained after ``nightly_export``: its message carries the trace context too."""
    return f"report for {day}: {exported} orders"


@app.task(
    name="shop.sync_account",
    bind=True,
    time_limit=60,
    autoretry_for=(ConnectionError,),
    max_retries=3,
    retry_backoff=1,  # 1 s, then 2 s
    retry_jitter=False,
)
def sync_account(self: Any, account: str) -> str:
    """Fails twice, then succeeds: three runs of one job id (attempt 1, 2, 3),
    the first two ``error``/``retry``, each linked to the previous attempt."""
    with jobpulse.dependency("http:CrmApi", timeout=5):
        if self.request.retries < 2:
            raise ConnectionError(f"CRM unavailable for {account}")
    return "synced"


@app.task(name="shop.fetch_rates", soft_time_limit=15, time_limit=20)
def fetch_rates(currency: str, hang: float = 0.1) -> str:
    """Can get stuck: with a large ``hang`` the vendor never answers.

    No heartbeat for 5 s (the budget set in ``app.py``): the watchdog logs a
    stall line while the task is still stuck, naming the step, the dependency
    it waits on and the stuck frames. At 15 s Celery's soft time limit ends it:
    outcome ``timeout``, action ``stop``.
    """
    with jobpulse.step("FetchRates"), jobpulse.dependency("http:RatesApi", timeout=5):
        time.sleep(hang)  # a socket read with no timeout, in real life
    return f"rates for {currency}"
