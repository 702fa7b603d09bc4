"""A real jobpulse process for the end-to-end asset test (test_e2e_prometheus.py).

It instruments itself with jobpulse's own Prometheus endpoint on 127.0.0.1 and
a free port (printed as the first stdout line, JSON), then keeps every
situation the shipped alerts and dashboards are about going, for real, through
jobpulse's public API and lifecycle verbs (the ones the adapters speak):

* ``e2e.healthy`` (queue ``fast``) succeeds ten times a second, with queue
  wait, a bounded dependency call, one that runs past its timeout and one
  with no timeout at all; ``e2e.grower`` keeps finishing on queue ``growing``;
* ``e2e.flaky`` always fails: two retries, then a final error;
* ``e2e.stale`` succeeded once, at start;
* ``e2e.stuck_heartbeat``, ``e2e.stuck_runtime``, ``e2e.zombie`` succeeded
  once, then one run of each gets stuck: silent past its heartbeat timeout;
  heartbeating past its max runtime; past its max runtime with enforcement,
  ignoring the cancel request (the watchdog marks all three);
* queue samples, as the probe sets them: ``dead`` has an old backlog and no
  consumer, ``growing`` grows, ``fast`` is fine.

Events that must happen after Prometheus's first scrape (so ``increase()``
sees them) wait for a ``go`` line on stdin: two ``e2e.poison`` runs are
quarantined and jobpulse reports one swallowed internal error. The process
exits when stdin closes.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time

os.environ.setdefault("OTEL_SERVICE_NAME", "jobpulse-e2e")
for _signal in ("TRACES", "METRICS", "LOGS"):
    os.environ[f"OTEL_{_signal}_EXPORTER"] = "none"

import jobpulse  # noqa: E402
from jobpulse import _guard, _lifecycle, _otel, _runtime  # noqa: E402
from jobpulse._run import Action, Budget, Outcome  # noqa: E402

STOP = threading.Event()
T0 = time.monotonic()


def run_once(job: str, queue: str, outcome: Outcome, action: Action, **kw: object) -> None:
    run = _lifecycle.begin_run(job, system="celery", queue=queue, **kw)  # type: ignore[arg-type]
    exc = None if outcome is Outcome.SUCCESS else ValueError(f"{job} failed")
    _lifecycle.end_run(run, outcome, action, exc)


def every(interval: float, fn: object) -> None:
    def loop() -> None:
        while not STOP.is_set():
            fn()  # type: ignore[operator]
            STOP.wait(interval)

    threading.Thread(target=loop, daemon=True).start()


def healthy() -> None:
    run = _lifecycle.begin_run("e2e.healthy", system="celery", queue="fast", queue_wait=0.05)
    with jobpulse.dependency("db:orders", timeout=1.0):
        time.sleep(0.002)
    with jobpulse.dependency("http:slow", timeout=0.001):
        time.sleep(0.005)
    with jobpulse.dependency("http:legacy"):
        pass
    jobpulse.heartbeat(1, 1)
    _lifecycle.end_run(run, Outcome.SUCCESS, Action.NONE)


def grower() -> None:
    run_once("e2e.grower", "growing", Outcome.SUCCESS, Action.NONE)


def flaky() -> None:
    for attempt in (1, 2, 3):
        final = attempt == 3
        run_once(
            "e2e.flaky",
            "fast",
            Outcome.ERROR,
            Action.STOP if final else Action.RETRY,
            attempt=attempt,
        )


def queue_samples() -> None:
    elapsed = time.monotonic() - T0
    samples = _runtime.registry().queue_samples
    samples[("dead", "celery")] = (50, 600.0 + elapsed)
    samples[("growing", "celery")] = (int(20 + 5 * elapsed), 2.0)
    samples[("fast", "celery")] = (2, 1.0)


def stuck(job: str, budget: Budget, *, enforce: bool, beat: bool) -> None:
    """One run that never ends (until the process does)."""
    run_once(job, "slow", Outcome.SUCCESS, Action.NONE)

    def body() -> None:
        run = _lifecycle.begin_run(
            job, system="celery", queue="slow", job_budget=budget, enforce=enforce
        )
        assert run is not None
        while not STOP.is_set():
            if beat:
                jobpulse.heartbeat()
            STOP.wait(0.1)

    threading.Thread(target=body, daemon=True).start()


def main() -> int:
    jobpulse.instrument(
        prometheus_port=0,
        prometheus_host="127.0.0.1",
        configure_otel=True,
        watchdog_interval=0.2,
        cancel_grace=1.0,
        adapters="none",
    )
    registry = _runtime.registry()
    registry.capacity[("fast", "celery")] = 4
    registry.capacity[("growing", "celery")] = 2
    queue_samples()
    run_once("e2e.stale", "fast", Outcome.SUCCESS, Action.NONE)
    run_once("e2e.poison", "fast", Outcome.SUCCESS, Action.NONE)  # its series exist at 0
    stuck("e2e.stuck_heartbeat", Budget(heartbeat_timeout=1.0), enforce=False, beat=False)
    stuck("e2e.stuck_runtime", Budget(max_runtime=1.0), enforce=False, beat=True)
    stuck("e2e.zombie", Budget(max_runtime=1.0), enforce=True, beat=False)
    every(0.1, healthy)
    every(0.2, grower)
    every(0.1, flaky)
    every(0.25, queue_samples)
    print(json.dumps({"port": _otel.prometheus_port(), "pid": os.getpid()}), flush=True)

    for line in sys.stdin:
        if line.strip() == "go":
            for _ in range(2):
                run_once("e2e.poison", "fast", Outcome.ERROR, Action.QUARANTINE)
            _guard.report("e2e.induced")
            print(json.dumps({"went": True}), flush=True)
    STOP.set()
    return 0


if __name__ == "__main__":
    sys.exit(main())
