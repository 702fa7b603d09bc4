"""The process-wide registry of active runs and per-job facts.

The watchdog, the observable gauges and the exit flush read this; nothing else
holds run state. Gauges are computed from one :class:`Snapshot` so that
``active >= stalled`` holds in every export.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

from ._run import JobRun

JobKey = tuple[str, str, str]  # (job name, system, queue)
QueueKey = tuple[str, str]  # (queue, system)

STALL_RANK = {"heartbeat_timeout": 1, "max_runtime": 2, "cancel_ignored": 3}
STALL_REASONS = tuple(STALL_RANK)


@dataclass
class JobGauges:
    active: int = 0
    heartbeat_age: float = 0.0
    active_age: float = 0.0
    stalled: dict[str, int] = field(default_factory=lambda: dict.fromkeys(STALL_REASONS, 0))
    zombies: int = 0


@dataclass
class Snapshot:
    taken: float
    jobs: dict[JobKey, JobGauges]


def run_key(run: JobRun) -> JobKey:
    return (run.job_name, run.system, run.queue)


class Registry:
    """Active runs by run id, plus the facts that outlive a run."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.runs: dict[str, JobRun] = {}
        self.last_success: dict[JobKey, float] = {}
        self.capacity: dict[QueueKey, int] = {}
        self.queue_samples: dict[QueueKey, tuple[int, float | None]] = {}
        self._reported: set[JobKey] = set()
        self._snapshot: Snapshot | None = None

    # add/remove/active take no lock: one dict store, pop or copy is atomic under the
    # GIL, and they run twice per job run (a lock costs every run about 0.5 us).
    def add(self, run: JobRun) -> None:
        self.runs[run.run_id] = run
        self._snapshot = None

    def remove(self, run: JobRun) -> None:
        self.runs.pop(run.run_id, None)
        self._snapshot = None

    def active(self) -> list[JobRun]:
        return list(self.runs.values())

    def clear(self) -> None:
        """Forget everything (a forked child starts with none of its parent's runs)."""
        with self._lock:
            self.runs.clear()
            self.last_success.clear()
            self.capacity.clear()
            self.queue_samples.clear()
            self._reported.clear()
            self._snapshot = None

    def snapshot(self, max_age: float = 0.05) -> Snapshot:
        """Gauge values for every job with active runs, and a final 0 for those that just
        stopped having any. Reused for ``max_age`` seconds (until a run starts or ends) so
        the gauges of one collection agree with each other."""
        now = time.monotonic()
        cached = self._snapshot
        if cached is not None and now - cached.taken < max_age:
            return cached
        jobs: dict[JobKey, JobGauges] = {}
        for run in self.active():
            key = (run.job_name, run.system, run.queue)
            g = jobs.get(key)
            if g is None:
                g = jobs[key] = JobGauges()
            g.active += 1
            elapsed = now - run.started_mono
            hb_age = now - run.last_beat
            g.active_age = max(g.active_age, elapsed)
            g.heartbeat_age = max(g.heartbeat_age, hb_age)
            if run.stall_reason is not None:
                g.stalled[run.stall_reason] += 1
            if run.zombie:
                g.zombies += 1
        with self._lock:
            for key in self._reported - jobs.keys():
                jobs[key] = JobGauges()  # the final 0
            self._reported = {k for k, g in jobs.items() if g.active}
        snap = Snapshot(now, jobs)
        self._snapshot = snap
        return snap
