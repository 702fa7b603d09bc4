"""Run spans, steps, dependencies and heartbeats of in-process jobs, as the contract names them."""

from __future__ import annotations

import asyncio

import pytest
from opentelemetry import trace
from opentelemetry.trace import SpanKind, StatusCode

import jobpulse
from jobpulse.testing import capture


def test_sync_job_run_span_carries_identity_budgets_and_outcome() -> None:
    with capture() as cap:

        @jobpulse.job("NightlyExport", max_runtime=300, heartbeat_timeout=60)
        def export(orders: list[int]) -> int:
            with jobpulse.step("ExportOrders"):
                for i, _ in enumerate(orders, 1):
                    jobpulse.heartbeat(processed=i, total=len(orders))
            with jobpulse.dependency("http:VendorApi", timeout=30):
                pass
            return len(orders)

        assert export([1, 2, 3]) == 3
        (run,) = cap.run_spans()
        attrs = run.attributes
        assert run.name == "NightlyExport"
        assert run.kind is SpanKind.INTERNAL
        assert attrs["jobpulse.job.name"] == "NightlyExport"
        assert attrs["jobpulse.system"] == "function"
        assert attrs["jobpulse.attempt"] == 1
        assert attrs["jobpulse.outcome"] == "success"
        assert attrs["jobpulse.action"] == "none"
        assert attrs["jobpulse.budget.max_runtime"] == 300.0
        assert attrs["jobpulse.budget.heartbeat_timeout"] == 60.0
        assert attrs["jobpulse.progress.processed"] == 3
        assert attrs["jobpulse.progress.total"] == 3
        assert attrs["jobpulse.heartbeat.count"] == 3
        assert attrs["code.function.name"].endswith("export")
        assert run.status.status_code is StatusCode.UNSET
        assert run.parent is None  # a new trace

        step, dep = (s for s in cap.spans if s.name in ("ExportOrders", "http:VendorApi"))
        assert step.parent.span_id == run.context.span_id
        assert step.attributes["jobpulse.step.name"] == "ExportOrders"
        assert dep.parent.span_id == run.context.span_id
        assert dep.attributes["jobpulse.dependency.timeout"] == 30.0
        assert dep.attributes["jobpulse.dependency.outcome"] == "ok"


def test_run_links_to_the_callers_span_and_starts_a_new_trace() -> None:
    with capture() as cap:

        @jobpulse.job
        def work() -> None:
            pass

        tracer = cap.tracer_provider.get_tracer("test")
        with tracer.start_as_current_span("request") as request:
            work()
        (run,) = cap.run_spans()
        assert run.context.trace_id != request.get_span_context().trace_id
        assert [link.context.span_id for link in run.links] == [request.get_span_context().span_id]


def test_continue_trace_makes_the_run_a_child_of_the_caller() -> None:
    with capture(continue_trace=True) as cap:

        @jobpulse.job
        def work() -> None:
            pass

        tracer = cap.tracer_provider.get_tracer("test")
        with tracer.start_as_current_span("request") as request:
            work()
        (run,) = cap.run_spans()
        assert run.context.trace_id == request.get_span_context().trace_id
        assert run.parent.span_id == request.get_span_context().span_id


def test_failed_run_is_error_stop_with_qualified_error_type_and_status() -> None:
    with capture() as cap:

        class VendorDown(Exception):
            pass

        @jobpulse.job("Sync")
        def sync() -> None:
            with jobpulse.step("Fetch"):
                raise VendorDown("vendor returned 503")

        with pytest.raises(VendorDown):
            sync()
        (run,) = cap.run_spans()
        assert run.attributes["jobpulse.outcome"] == "error"
        assert run.attributes["jobpulse.action"] == "stop"
        assert run.attributes["error.type"].endswith("VendorDown")
        assert "." in run.attributes["error.type"]  # qualified: module.Class
        assert run.status.status_code is StatusCode.ERROR
        assert run.status.description == "vendor returned 503"
        assert any(e.name == "exception" for e in run.events)
        assert cap.metric("jobpulse.job.errors", **{"jobpulse.outcome": "error"}) == 1


def test_builtin_error_types_are_unqualified() -> None:
    with capture() as cap:

        @jobpulse.job
        def bad() -> None:
            raise ValueError("nope")

        with pytest.raises(ValueError, match="nope"):
            bad()
        assert cap.run_spans()[0].attributes["error.type"] == "ValueError"


def test_async_job_is_system_asyncio() -> None:
    with capture() as cap:

        @jobpulse.job(queue="reports")
        async def report() -> str:
            async with jobpulse.step("Render"):
                jobpulse.heartbeat(processed=1)
                await asyncio.sleep(0)
            return "ok"

        assert asyncio.run(report()) == "ok"
        (run,) = cap.run_spans()
        assert run.attributes["jobpulse.system"] == "asyncio"
        assert run.attributes["jobpulse.queue.name"] == "reports"
        assert run.attributes["jobpulse.heartbeat.count"] == 1


def test_async_dependency_enforces_its_timeout_after_recording_it() -> None:
    with capture() as cap:

        @jobpulse.job
        async def call() -> None:
            async with jobpulse.dependency("http:Slow", timeout=0.05):
                await asyncio.sleep(30)

        with pytest.raises(TimeoutError, match="http:Slow"):
            asyncio.run(call())
        dep = next(s for s in cap.spans if s.name == "http:Slow")
        assert dep.attributes["jobpulse.dependency.outcome"] == "timeout"
        assert dep.status.status_code is StatusCode.ERROR
        run = cap.run_spans()[0]
        # The dependency timeout escaped: the run is an error, not a run timeout.
        assert run.attributes["jobpulse.outcome"] == "error"
        assert run.attributes["error.type"] == "TimeoutError"
        warnings = [r for r in cap.logs if r.levelname == "WARNING"]
        assert any(getattr(r, "jobpulse.dependency.name", None) == "http:Slow" for r in warnings)


def test_sync_dependency_records_a_call_that_ran_past_its_timeout() -> None:
    with capture() as cap:

        @jobpulse.job
        def call() -> str:
            with jobpulse.dependency("sql:Report", timeout=0.001):
                deadline = __import__("time").monotonic() + 0.01
                while __import__("time").monotonic() < deadline:
                    pass
            return "returned anyway"

        assert call() == "returned anyway"
        dep = next(s for s in cap.spans if s.name == "sql:Report")
        assert dep.attributes["jobpulse.dependency.outcome"] == "timeout"
        assert dep.status.status_code is StatusCode.ERROR
        assert cap.run_spans()[0].attributes["jobpulse.outcome"] == "success"
        assert (
            cap.metric(
                "jobpulse.dependency.duration",
                **{
                    "jobpulse.dependency.name": "sql:Report",
                    "jobpulse.dependency.outcome": "timeout",
                },
            )
            == 1
        )


def test_dependency_without_timeout_counts_as_unbounded() -> None:
    with capture() as cap:

        @jobpulse.job
        def call() -> None:
            with jobpulse.dependency("smb:FileShare"):
                pass

        call()
        call()
        assert (
            cap.metric(
                "jobpulse.dependency.unbounded_calls",
                **{"jobpulse.dependency.name": "smb:FileShare"},
            )
            == 2
        )
        dep = next(s for s in cap.spans if s.name == "smb:FileShare")
        assert "jobpulse.dependency.timeout" not in dep.attributes


def test_step_and_dependency_work_as_decorators() -> None:
    with capture() as cap:

        @jobpulse.step("Transform")
        def transform(x: int) -> int:
            return x * 2

        @jobpulse.dependency("http:Api", timeout=5)
        async def fetch() -> int:
            return 21

        @jobpulse.job
        async def pipeline() -> int:
            return transform(await fetch())

        assert asyncio.run(pipeline()) == 42
        names = {s.name for s in cap.spans}
        assert {"Transform", "http:Api"} <= names


def test_heartbeat_outside_a_run_is_a_no_op() -> None:
    with capture() as cap:
        jobpulse.heartbeat(processed=1, total=2)
        assert jobpulse.current_run() is None
        assert cap.spans == []


def test_heartbeat_events_are_throttled_first_and_last_kept_at_most_100() -> None:
    with capture(heartbeat_interval=1e-7) as cap:

        @jobpulse.job
        def loop(n: int) -> None:
            for i in range(1, n + 1):
                jobpulse.heartbeat(processed=i, total=n)

        loop(50_000)
        (run,) = cap.run_spans()
        events = [e for e in run.events if e.name == "jobpulse.heartbeat"]
        assert len(events) == 100
        assert events[0].attributes["jobpulse.progress.processed"] == 1
        assert events[-1].attributes["jobpulse.progress.processed"] == 50_000
        assert run.attributes["jobpulse.heartbeat.count"] == 50_000


def test_default_interval_keeps_only_first_and_last_heartbeat_of_a_short_run() -> None:
    with capture() as cap:

        @jobpulse.job
        def loop() -> None:
            for i in range(1, 1001):
                jobpulse.heartbeat(processed=i, phase="copy")

        loop()
        events = [e for e in cap.run_spans()[0].events if e.name == "jobpulse.heartbeat"]
        assert [e.attributes["jobpulse.progress.processed"] for e in events] == [1, 1000]
        assert events[0].attributes["jobpulse.detail.phase"] == "copy"


def test_current_run_exposes_identity_and_budgets() -> None:
    seen = {}
    with capture(budgets={"Exp*": jobpulse.Budget(max_runtime=10)}):

        @jobpulse.job("Export", heartbeat_timeout=5)
        def export() -> None:
            run = jobpulse.current_run()
            assert run is not None
            seen.update(
                job=run.job_name,
                attempt=run.attempt,
                budget=run.budget,
                elapsed=run.elapsed,
                ids=(run.run_id, run.job_id),
            )

        export()
    assert seen["job"] == "Export"
    assert seen["attempt"] == 1
    assert seen["budget"] == jobpulse.Budget(max_runtime=10, heartbeat_timeout=5)
    assert seen["elapsed"] >= 0
    assert all(seen["ids"])


def test_budgets_option_wins_over_the_jobs_own_budget() -> None:
    with capture(budgets={"Export": jobpulse.Budget(max_runtime=10)}) as cap:

        @jobpulse.job("Export", max_runtime=300)
        def export() -> None:
            pass

        export()
        assert cap.run_spans()[0].attributes["jobpulse.budget.max_runtime"] == 10.0


def test_without_instrument_a_job_is_the_plain_function() -> None:
    jobpulse.uninstrument()

    @jobpulse.job
    def add(a: int, b: int) -> int:
        jobpulse.heartbeat(processed=1)
        with jobpulse.step("s"), jobpulse.dependency("d", timeout=1):
            return a + b

    assert add(1, 2) == 3


def test_run_lines_are_json_with_identity_progress_and_trace_ids() -> None:
    import io
    import json
    import logging

    from jobpulse.logs import JsonFormatter

    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    logging.getLogger("jobpulse").addHandler(handler)
    try:
        with capture() as cap:

            @jobpulse.job("Export")
            def export() -> None:
                with jobpulse.step("Copy"):
                    jobpulse.heartbeat(processed=1, total=2)

            export()
            run = cap.run_spans()[0]
    finally:
        logging.getLogger("jobpulse").removeHandler(handler)
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    lines = [line for line in lines if line["msg"] in ("run started", "heartbeat", "run finished")]
    _started, beat, finished = lines
    trace_id = format(run.context.trace_id, "032x")
    for line in lines:
        assert line["job"] == "Export"
        assert line["runId"] == run.attributes["jobpulse.run.id"]
        assert line["jobId"] == run.attributes["jobpulse.job.id"]
        assert line["attempt"] == 1
        assert line["traceId"] == trace_id
        assert line["ts"].endswith("Z")
        assert "elapsedMs" in line
    assert beat["heartbeat"] is True
    assert beat["step"] == "Copy"
    assert (beat["processed"], beat["total"]) == (1, 2)
    assert finished["outcome"] == "success"
    assert finished["action"] == "none"
    assert "heartbeat" not in finished


def test_active_span_inside_a_run_is_the_run_or_its_step() -> None:
    with capture() as cap:

        @jobpulse.job("J")
        def j() -> int:
            inner = trace.get_current_span().get_span_context().span_id
            with jobpulse.step("S"):
                in_step = trace.get_current_span().get_span_context().span_id
            return inner, in_step  # type: ignore[return-value]

        inner, in_step = j()  # type: ignore[misc]
        run = cap.run_spans()[0]
        step = next(s for s in cap.spans if s.name == "S")
        assert inner == run.context.span_id
        assert in_step == step.context.span_id


def test_job_arguments_are_recorded_only_when_allowed_per_job() -> None:
    with capture(record_args={"Charge": ["order_id"]}) as cap:

        @jobpulse.job("Charge")
        def charge(order_id: int, card_number: str) -> None:
            pass

        @jobpulse.job("Refund")
        def refund(order_id: int, card_number: str) -> None:
            pass

        charge(17, card_number="4111111111111111")
        refund(18, "4111111111111111")
        by_job = {s.name: dict(s.attributes) for s in cap.run_spans()}
    assert by_job["Charge"]["jobpulse.job.arg.order_id"] == 17
    for attrs in by_job.values():
        assert not any("4111" in str(v) for v in attrs.values())
    assert not any(k.startswith("jobpulse.job.arg.") for k in by_job["Refund"])
