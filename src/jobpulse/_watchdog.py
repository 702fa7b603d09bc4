"""One daemon thread per process that makes stuck work visible while it is stuck.

Span events arrive only when a span ends, and a stuck run's span may never
end. So the watchdog, not the run, notices a run crossing its heartbeat
timeout or max runtime: it marks the run (the gauges read that), adds a
``jobpulse.stalled`` event, and logs a warning that says the step, the
dependency being waited on, for how long, and the stuck thread's innermost
frames (an asyncio task's await chain). With enforcement on it asks the run to
stop, and reports a run that does not stop within the grace period as a zombie.
"""

from __future__ import annotations

import _thread
import logging
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from . import _guard, _lifecycle
from . import _names as n
from ._registry import STALL_RANK
from ._stacks import task_stack, thread_stack
from .logs import STACK_ATTR

if TYPE_CHECKING:
    from ._run import JobRun
    from ._runtime import Runtime

_log = logging.getLogger(n.LOGGER_NAME)


class Watchdog:
    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self.interval = runtime.settings.watchdog_interval
        self.grace = runtime.settings.cancel_grace
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        #: set when a thread started by :meth:`restart_after_fork` has left its loop
        self._done: threading.Event | None = None
        self._ident: int | None = None
        #: one-shot callbacks (monotonic deadline, callback), run by this thread: one
        #: thread less where a thread start is a cost (every RQ work horse)
        self._timers: list[tuple[float, Callable[[], None]]] = []
        self._timers_lock = threading.Lock()

    def after(self, seconds: float, callback: Callable[[], None]) -> None:
        """Run ``callback`` on the watchdog's thread ``seconds`` from now (up to one
        interval late when the watchdog was already waiting)."""
        with self._timers_lock:
            self._timers.append((time.monotonic() + seconds, callback))

    def _run_timers(self, now: float) -> None:
        with self._timers_lock:
            due = [t for t in self._timers if t[0] <= now]
            if not due:
                return
            self._timers = [t for t in self._timers if t[0] > now]
        for _, callback in due:
            try:
                callback()
            except Exception as exc:  # noqa: BLE001 - the watchdog must outlive its bugs
                _guard.report("watchdog.timer", exc)

    def start(self) -> None:
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="jobpulse-watchdog", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        thread, done = self._thread, self._done
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=2.0)
        elif done is not None and self._ident != threading.get_ident():
            done.wait(timeout=2.0)
        self._thread = None
        self._done = None

    def restart_after_fork(self) -> None:
        """Threads do not survive fork; the child gets its own watchdog (and none of the
        parent's timers).

        Started without ``threading.Thread``: its ``start()`` blocks until the new
        thread has been scheduled, a context switch that costs a forked child
        (an RQ work horse, one per job) about 0.3 ms of a 10 ms life. The thread
        is the same loop; it is only missing from ``threading.enumerate()``."""
        self._timers = []
        self._timers_lock = threading.Lock()  # the parent's may have been held at fork
        self._stop = threading.Event()
        self._thread = None
        self._done = None
        done = threading.Event()
        self._ident = _thread.start_new_thread(self._loop_then, (done,))
        self._done = done

    def _loop_then(self, done: threading.Event) -> None:
        try:
            threading.current_thread().name = "jobpulse-watchdog"  # its log lines say so
            self._loop()
        finally:
            done.set()

    def _wait(self) -> float:
        """Until the next tick, or the next timer if that comes first."""
        timers = self._timers
        if not timers:
            return self.interval
        soonest = min(deadline for deadline, _ in timers) - time.monotonic()
        return max(0.0, min(self.interval, soonest))

    def _loop(self) -> None:
        while not self._stop.wait(self._wait()):
            try:
                self.tick()
            except Exception as exc:  # noqa: BLE001 - the watchdog must outlive its bugs
                _guard.report("watchdog", exc)
            if self._timers:
                self._run_timers(time.monotonic())

    def tick(self, now: float | None = None) -> None:
        """Check every active run against its budgets once."""
        now = time.monotonic() if now is None else now
        grace = self.grace
        for run in self.runtime.registry.active():
            if run.ended:
                continue
            budget = run.budget
            reason: str | None = None
            if run.cancel_requested_at is not None and now - run.cancel_requested_at > grace:
                reason = "cancel_ignored"
            elif budget.max_runtime is not None and now - run.started_mono > budget.max_runtime:
                reason = "max_runtime"
            elif (
                budget.heartbeat_timeout is not None
                and now - run.last_beat > budget.heartbeat_timeout
            ):
                reason = "heartbeat_timeout"
            current = run.stall_reason
            if reason is None:
                if current == "heartbeat_timeout":
                    run.stall_reason = None  # heartbeats resumed
                continue
            if current is not None and STALL_RANK[reason] <= STALL_RANK[current]:
                continue
            run.stall_reason = reason
            self._stalled(run, reason, now)

    def _stalled(self, run: JobRun, reason: str, now: float) -> None:
        with _guard.never_raise("watchdog.stall"):
            elapsed = now - run.started_mono
            attrs: dict[str, Any] = {n.STALL_REASON: reason, n.ELAPSED: elapsed}
            if run.steps:
                attrs[n.STEP_NAME] = run.steps[-1]
            waiting = run.dependency
            if waiting is not None:
                attrs[n.DEPENDENCY_NAME] = waiting
            if run.span is not None:
                run.span.add_event(n.EVENT_STALLED, attrs)
            stack = task_stack(run.task) if run.task is not None else thread_stack(run.thread_id)
            fields = dict(attrs)
            if stack:
                fields[STACK_ATTR] = stack
            if waiting is not None and run.dep_timeout is not None:
                fields[n.DEPENDENCY_TIMEOUT] = run.dep_timeout
            if reason == "cancel_ignored":
                run.zombie = True
                fields[n.OUTCOME] = "timeout"
                fields[n.ACTION] = "escalate"
                _lifecycle.emit_log(
                    run, logging.ERROR,
                    f"cancellation not honoured after {self.grace:g}s grace; "
                    "the run is still going (zombie)", fields,
                )  # fmt: skip
                return
            limit = (
                run.budget.max_runtime if reason == "max_runtime" else run.budget.heartbeat_timeout
            )
            what = f"waiting on {waiting}" if waiting else "no dependency declared"
            silent = now - run.last_beat
            _lifecycle.emit_log(
                run, logging.WARNING,
                f"run stalled: {reason} ({limit:g}s) crossed after {elapsed:.1f}s, "
                f"{silent:.1f}s since last heartbeat, {what}", fields,
            )  # fmt: skip
            if run.enforce and run.cancel_requested_at is None:
                self._request_cancel(run, reason, now)

    def _request_cancel(self, run: JobRun, reason: str, now: float) -> None:
        run.cancel_requested_at = now
        if run.span is not None:
            run.span.add_event(n.EVENT_CANCEL_REQUESTED, {n.STALL_REASON: reason})
        _lifecycle.emit_log(
            run, logging.WARNING, f"budget exceeded ({reason}); cancel requested",
            {n.STALL_REASON: reason, n.OUTCOME: "timeout", n.ACTION: "stop"},
        )  # fmt: skip
        task, loop = run.task, run.loop
        if task is not None and loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(task.cancel)
