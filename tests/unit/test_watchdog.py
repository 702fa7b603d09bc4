"""The watchdog makes stuck work visible while it is stuck, and enforces budgets when asked."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable

import pytest

import jobpulse
from jobpulse import _runtime
from jobpulse.testing import Captured, capture
from tests.support.waiting import waiter

wait_until = waiter(10.0, max_delay=0.005)


def stall_lines(cap: Captured) -> list[object]:
    return [
        r for r in cap.logs if getattr(r, "jobpulse.stall.reason", None) and r.levelname != "INFO"
    ]


def test_a_run_stuck_in_a_dependency_is_reported_while_stuck() -> None:
    release = threading.Event()
    with capture(watchdog_interval=0.02) as cap:

        @jobpulse.job("Export", heartbeat_timeout=0.1)
        def export() -> None:
            with jobpulse.step("Upload"), jobpulse.dependency("http:VendorApi", timeout=30):
                release.wait(10)  # a call that does not answer

        worker = threading.Thread(target=export)
        worker.start()
        try:
            wait_until(lambda: stall_lines(cap), what="a stall line")
            line = stall_lines(cap)[0]
            # While still stuck: the gauges say so too.
            assert cap.metric("jobpulse.job.active", **{"jobpulse.job.name": "Export"}) == 1
            assert (
                cap.metric(
                    "jobpulse.job.stalled",
                    **{"jobpulse.job.name": "Export", "jobpulse.stall.reason": "heartbeat_timeout"},
                )
                == 1
            )
            hb_age = cap.metric("jobpulse.job.heartbeat.age", **{"jobpulse.job.name": "Export"})
            assert hb_age is not None
            assert hb_age >= 0.1
        finally:
            release.set()
            worker.join(10)
        assert getattr(line, "jobpulse.stall.reason") == "heartbeat_timeout"
        assert getattr(line, "jobpulse.step.name") == "Upload"
        assert getattr(line, "jobpulse.dependency.name") == "http:VendorApi"
        assert "test_watchdog.py" in getattr(line, "code.stacktrace")
        from jobpulse.logs import record_fields

        fields = record_fields(line)  # type: ignore[arg-type]
        assert fields["waitingOn"] == "http:VendorApi"
        assert fields["stallReason"] == "heartbeat_timeout"
        assert fields["timeoutMs"] == 30000
        assert any("in export" in frame for frame in fields["stack"])
        (run,) = cap.run_spans()
        stalled = [e for e in run.events if e.name == "jobpulse.stalled"]
        assert stalled[0].attributes["jobpulse.stall.reason"] == "heartbeat_timeout"
        assert stalled[0].attributes["jobpulse.dependency.name"] == "http:VendorApi"
        # Without enforcement the job's behaviour is unchanged.
        assert run.attributes["jobpulse.outcome"] == "success"
        # Gauges end with one final 0 for the job, then disappear.
        assert cap.metric("jobpulse.job.active", **{"jobpulse.job.name": "Export"}) == 0


def test_stall_reason_escalates_to_max_runtime_and_is_counted_once() -> None:
    with capture(watchdog_interval=3600) as cap:
        started = threading.Event()
        release = threading.Event()

        @jobpulse.job("Slow", max_runtime=1, heartbeat_timeout=0.5)
        def slow() -> None:
            started.set()
            release.wait(10)

        worker = threading.Thread(target=slow)
        worker.start()
        started.wait(5)
        rt = _runtime.get()
        assert rt is not None
        run = rt.registry.active()[0]
        rt.watchdog.tick(now=run.started_mono + 0.6)
        assert run.stall_reason == "heartbeat_timeout"
        rt.watchdog.tick(now=run.started_mono + 1.5)
        assert run.stall_reason == "max_runtime"
        stalled = {
            r: cap.metric(
                "jobpulse.job.stalled",
                **{"jobpulse.job.name": "Slow", "jobpulse.stall.reason": r},
            )
            for r in ("heartbeat_timeout", "max_runtime", "cancel_ignored")
        }
        assert stalled == {"heartbeat_timeout": 0, "max_runtime": 1, "cancel_ignored": 0}
        release.set()
        worker.join(10)
        assert len(stall_lines(cap)) == 2


def test_heartbeats_clear_a_heartbeat_stall() -> None:
    with capture(watchdog_interval=3600):
        rt = _runtime.get()
        assert rt is not None

        @jobpulse.job("Beat", heartbeat_timeout=1)
        def beat() -> str | None:
            run = jobpulse.current_run()
            assert run is not None
            rt.watchdog.tick(now=run.last_beat + 2)
            before = run.stall_reason
            jobpulse.heartbeat()
            rt.watchdog.tick(now=run.last_beat + 0.1)
            return f"{before}->{run.stall_reason}"

        assert beat() == "heartbeat_timeout->None"


def test_enforced_sync_run_gets_budget_exceeded_from_its_next_heartbeat() -> None:
    with capture(watchdog_interval=0.01, enforce=True) as cap:

        @jobpulse.job("Crunch", max_runtime=0.05)
        def crunch() -> None:
            while True:
                jobpulse.heartbeat()
                time.sleep(0.001)

        with pytest.raises(jobpulse.BudgetExceeded) as info:
            crunch()
        assert isinstance(info.value, TimeoutError)
        (run,) = cap.run_spans()
        assert run.attributes["jobpulse.outcome"] == "timeout"
        assert run.attributes["jobpulse.action"] == "stop"
        assert run.attributes["error.type"] == "jobpulse.BudgetExceeded"
        names = [e.name for e in run.events]
        assert "jobpulse.stalled" in names
        assert "jobpulse.cancel_requested" in names


def test_enforced_sync_run_entering_a_step_gets_budget_exceeded() -> None:
    with capture(watchdog_interval=0.01, enforce=True):

        @jobpulse.job("Steps", max_runtime=0.05)
        def steps() -> None:
            while True:
                with jobpulse.step("Chunk"):
                    time.sleep(0.005)

        with pytest.raises(jobpulse.BudgetExceeded):
            steps()


def test_enforced_async_run_over_max_runtime_is_cancelled() -> None:
    with capture(watchdog_interval=0.01) as cap:

        @jobpulse.job("Poll", max_runtime=0.05, enforce=True)
        async def poll() -> None:
            await asyncio.sleep(30)

        started = time.monotonic()
        with pytest.raises(jobpulse.BudgetExceeded):
            asyncio.run(poll())
        assert time.monotonic() - started < 5
        (run,) = cap.run_spans()
        assert run.attributes["jobpulse.outcome"] == "timeout"


def test_without_enforcement_a_run_over_budget_finishes_normally() -> None:
    with capture(watchdog_interval=0.01) as cap:

        @jobpulse.job("Late", max_runtime=0.02)
        def late() -> str:
            wait_until(lambda: cap.logs and stall_lines(cap), what="stall")
            for _ in range(3):
                jobpulse.heartbeat()
            return "done"

        assert late() == "done"
        assert cap.run_spans()[0].attributes["jobpulse.outcome"] == "success"


def test_a_run_ignoring_cancellation_becomes_a_zombie_and_escalates() -> None:
    release = threading.Event()
    with capture(watchdog_interval=0.01, enforce=True, cancel_grace=0.05) as cap:

        @jobpulse.job("Stubborn", max_runtime=0.02)
        def stubborn() -> None:
            release.wait(10)  # never calls heartbeat(): cannot be cancelled

        raised: list[BaseException] = []

        def call() -> None:
            try:
                stubborn()
            except BaseException as exc:
                raised.append(exc)

        worker = threading.Thread(target=call)
        worker.start()
        try:
            wait_until(
                lambda: any(
                    r.levelname == "ERROR" and "zombie" in r.getMessage() for r in cap.logs
                ),
                what="zombie line",
            )
            assert cap.metric("jobpulse.job.zombies", **{"jobpulse.job.name": "Stubborn"}) == 1
            assert (
                cap.metric(
                    "jobpulse.job.stalled",
                    **{"jobpulse.job.name": "Stubborn", "jobpulse.stall.reason": "cancel_ignored"},
                )
                == 1
            )
        finally:
            release.set()
            worker.join(10)
        line = next(r for r in cap.logs if r.levelname == "ERROR" and "zombie" in r.getMessage())
        assert getattr(line, "jobpulse.action") == "escalate"
        # It returned eventually, over its enforced budget: the caller got BudgetExceeded,
        # and the run is a timeout.
        assert [type(e) for e in raised] == [jobpulse.BudgetExceeded]
        assert cap.run_spans()[0].attributes["jobpulse.outcome"] == "timeout"


def test_asyncio_stall_line_shows_the_tasks_await_chain() -> None:
    with capture(watchdog_interval=0.01) as cap:

        async def wait_for_vendor(event: asyncio.Event) -> None:
            await event.wait()

        @jobpulse.job("AsyncStuck", heartbeat_timeout=0.05)
        async def stuck() -> None:
            event = asyncio.Event()
            waiter = asyncio.create_task(asyncio.sleep(0))
            await waiter
            loop = asyncio.get_running_loop()
            deadline = loop.time() + 10

            async def release_when_reported() -> None:
                while not stall_lines(cap) and loop.time() < deadline:
                    await asyncio.sleep(0.01)
                event.set()

            helper = asyncio.create_task(release_when_reported())
            await wait_for_vendor(event)
            await helper

        asyncio.run(stuck())
        line = stall_lines(cap)[0]
        assert "wait_for_vendor" in getattr(line, "code.stacktrace")


def test_watchdog_tick_with_many_runs_is_fast() -> None:
    with capture(watchdog_interval=3600):
        from jobpulse import _lifecycle

        rt = _runtime.get()
        assert rt is not None
        runs = [
            _lifecycle.begin_run(
                f"job{i % 50}",
                system="function",
                activate=False,
                job_budget=jobpulse.Budget(max_runtime=3600, heartbeat_timeout=600),
            )
            for i in range(10_000)
        ]
        best = min(_timed(rt.watchdog.tick) for _ in range(5))
        for run in runs:
            _lifecycle.end_run(run, "success")
        # Not a benchmark (see benchmarks/); a guard against an accidental O(n^2).
        assert best < 0.1, best


def _timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


@pytest.mark.allow_internal_errors
def test_watchdog_timers_run_once_on_its_thread_and_survive_a_failing_one() -> None:
    fired: list[str] = []
    with capture(watchdog_interval=0.02) as cap:
        rt = _runtime.get()
        assert rt is not None
        assert rt.watchdog is not None

        def boom() -> None:
            raise RuntimeError("a broken timer")

        rt.watchdog.after(0.0, boom)
        rt.watchdog.after(0.05, lambda: fired.append(threading.current_thread().name))
        rt.watchdog.after(0.06, lambda: fired.append("second"))
        wait_until(lambda: len(fired) == 2, what="both timers")
        errors = cap.metric("jobpulse.telemetry.errors", **{"jobpulse.component": "watchdog.timer"})
        assert errors == 1  # counted, and the watchdog went on
    assert fired == ["jobpulse-watchdog", "second"]  # once each, on the watchdog's thread
