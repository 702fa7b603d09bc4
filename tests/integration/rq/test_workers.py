"""Forking workers, simple workers and worker pools: every run traced, counted once."""

from __future__ import annotations

from typing import Any

import pytest
from redis import Redis
from rq import Queue

from tests.support.otlp import Receiver

from . import jobs
from .conftest import SIMPLE, Workers, linked_to, runs, send_span

pytestmark = pytest.mark.integration
EXPORT = "tests.integration.rq.jobs.export"


def test_forking_worker_traces_every_horse_and_counts_each_run_once_in_the_parent(
    redis: Redis, workers: Workers, otlp: Receiver, producer: Any
) -> None:
    q = Queue("fork", connection=redis)
    enqueued = [q.enqueue(jobs.export, 3) for _ in range(20)]
    workers.run("fork", args=("-n", "forker"))

    spans = otlp.wait_for(lambda r: len(r.run_spans(EXPORT)) == 20 and r.run_spans(EXPORT))
    assert {s.attributes["jobpulse.outcome"] for s in spans} == {"success"}
    assert {s.attributes["jobpulse.job.id"] for s in spans} == {j.id for j in enqueued}
    for job in enqueued:
        run = next(s for s in spans if s.attributes["jobpulse.job.id"] == job.id)
        assert run.kind == 5  # CONSUMER
        assert run.parent_span_id == ""  # a new trace ...
        assert linked_to(run, send_span(producer, job.id))  # ... linked to the enqueue
        assert run.attributes["jobpulse.attempt"] == 1
        assert run.attributes["jobpulse.system"] == "rq"
        assert run.attributes["jobpulse.progress.processed"] == 3
        assert run.attributes["messaging.client.id"] == "forker"
        assert run.attributes["jobpulse.queue.wait"] >= 0
        children = {s.name for s in otlp.spans if s.parent_span_id == run.span_id}
        assert children == {"ExportOrders", "http:VendorApi"}
    # Each run's two lines, in its trace: the worker writes "run started" just before it
    # forks the horse (the run span starts there), the horse writes "run finished".
    lines = otlp.wait_for(
        lambda r: len([x for x in r.logs if x.body in ("run started", "run finished")]) >= 40
        and r.logs,
        what="the runs' log lines",
    )  # fmt: skip
    for run in spans:
        mine = sorted(x.body for x in lines if x.trace_id == run.trace_id and "run " in x.body)
        assert mine == ["run finished", "run started"]

    # Counted exactly once, by the worker (not by 20 short-lived horses) ...
    otlp.wait_for(lambda r: runs(r, EXPORT) >= 20, what="run counters")
    counted = [
        p for p in otlp.latest("jobpulse.job.runs", **{"jobpulse.job.name": EXPORT}) if p.value
    ]
    assert runs(otlp, EXPORT) == 20
    assert runs(otlp, EXPORT, **{"jobpulse.outcome": "success", "jobpulse.action": "none"}) == 20
    assert len({p.resource.get("service.instance.id") for p in counted}) == 1
    assert otlp.total("jobpulse.job.queue.wait", **{"jobpulse.job.name": EXPORT}) == 20
    (duration,) = otlp.latest("jobpulse.job.duration", **{"jobpulse.job.name": EXPORT})
    assert duration.count == 20
    # Dependency calls made in horses are recorded by the worker too; RQ's own Redis
    # calls during the runs are not the jobs' dependencies.
    deps = otlp.latest("jobpulse.dependency.duration")
    assert {p.attributes["jobpulse.dependency.name"] for p in deps} == {"http:VendorApi"}
    assert sum(p.count for p in deps) == 20
    assert not otlp.latest("jobpulse.dependency.unbounded_calls")
    # ... and the horses' spans carry the worker's stable instance id, not one per fork.
    assert {s.resource.get("service.instance.id") for s in spans} == {
        counted[0].resource.get("service.instance.id")
    }


def test_a_plain_success_in_a_horse_is_one_span_whose_line_says_how_long_it_took(
    redis: Redis, workers: Workers, otlp: Receiver, producer: Any
) -> None:
    """The worker starts the run span before the fork, the horse ends its copy: one span
    per run (the worker's copy is never exported), both lines in its trace."""
    add = "tests.integration.rq.jobs.add"
    q = Queue("plain", connection=redis)
    enqueued = [q.enqueue(jobs.add, i, 1) for i in range(6)]
    workers.run("plain")  # a burst worker: it has exported everything when it exits

    assert [j.latest_result().return_value for j in enqueued] == [1, 2, 3, 4, 5, 6]
    spans = otlp.wait_for(lambda r: len(r.run_spans(add)) >= 6 and r.run_spans(add))
    assert len(spans) == 6  # one per run: the horse's copy of the span is never exported
    assert {s.attributes["jobpulse.job.id"] for s in spans} == {j.id for j in enqueued}
    for run in spans:
        assert run.attributes["jobpulse.outcome"] == "success"
        assert run.attributes["jobpulse.action"] == "none"
        assert run.attributes["jobpulse.heartbeat.count"] == 0
        assert run.status_code == 0
        lines = [x for x in otlp.logs if x.trace_id == run.trace_id and "run " in str(x.body)]
        assert sorted(x.body for x in lines) == ["run finished", "run started"]
        (finished,) = (x for x in lines if x.body == "run finished")
        # the line and the span say the run took as long as the horse measured
        assert finished.attributes["jobpulse.elapsed"] == pytest.approx(
            (run.end_ns - run.start_ns) / 1e9, abs=0.005
        )
    otlp.wait_for(lambda r: runs(r, add) >= 6, what="run counters")
    assert runs(otlp, add, **{"jobpulse.outcome": "success", "jobpulse.action": "none"}) == 6
    (duration,) = otlp.latest("jobpulse.job.duration", **{"jobpulse.job.name": add})
    assert duration.count == 6


def test_simple_worker_runs_jobs_in_process_and_counts_them_once(
    redis: Redis, workers: Workers, otlp: Receiver, producer: Any
) -> None:
    q = Queue("simple", connection=redis)
    enqueued = [q.enqueue(jobs.export, 2) for _ in range(5)]
    q.enqueue(jobs.fail)
    workers.run("simple", worker_class=SIMPLE)

    spans = otlp.wait_for(lambda r: len(r.run_spans(EXPORT)) == 5 and r.run_spans(EXPORT))
    for job in enqueued:
        run = next(s for s in spans if s.attributes["jobpulse.job.id"] == job.id)
        assert linked_to(run, send_span(producer, job.id))
    otlp.wait_for(lambda r: runs(r, EXPORT) >= 5, what="run counters")
    assert runs(otlp, EXPORT) == 5
    fail = "tests.integration.rq.jobs.fail"
    (bad,) = otlp.wait_for(lambda r: r.run_spans(fail))
    assert bad.attributes["jobpulse.outcome"] == "error"
    assert bad.attributes["error.type"] == "ValueError"
    assert bad.status_code == 2
    otlp.wait_for(lambda r: runs(r, fail) >= 1, what="the failure counted")
    assert runs(otlp, fail, **{"jobpulse.outcome": "error", "jobpulse.action": "stop"}) == 1
    assert runs(otlp, fail) == 1


def test_worker_pool_workers_trace_and_count_their_runs(
    redis: Redis, workers: Workers, otlp: Receiver, producer: Any
) -> None:
    q = Queue("pool", connection=redis)
    enqueued = [q.enqueue(jobs.export, 1) for _ in range(8)]
    workers.run("pool", pool=2)

    spans = otlp.wait_for(lambda r: len(r.run_spans(EXPORT)) == 8 and r.run_spans(EXPORT))
    assert {s.attributes["jobpulse.job.id"] for s in spans} == {j.id for j in enqueued}
    # Pool workers end with os._exit: jobpulse flushes their counts at teardown.
    otlp.wait_for(lambda r: runs(r, EXPORT) >= 8, what="run counters of both pool workers")
    assert runs(otlp, EXPORT) == 8


def test_a_long_run_in_a_horse_exports_live_and_is_still_counted_once(
    redis: Redis, workers: Workers, otlp: Receiver, producer: Any
) -> None:
    long = "tests.integration.rq.jobs.long_export"
    q = Queue("long", connection=redis)
    job = q.enqueue(jobs.long_export, 6.5)
    proc = workers.start("long", burst=False)
    # Past the hand-off (5 s) the horse exports its own gauges while the run goes on.
    active = {"jobpulse.job.name": long}
    otlp.wait_for(
        lambda r: any(p.value == 1 for p in r.latest("jobpulse.job.active", **active)),
        timeout=20, what="the active gauge from the running horse",
    )  # fmt: skip
    assert not otlp.run_spans(long)
    (run,) = otlp.wait_for(lambda r: r.run_spans(long), timeout=20)
    assert run.attributes["jobpulse.outcome"] == "success"
    assert run.attributes["jobpulse.job.id"] == job.id
    assert {s.name for s in otlp.spans if s.parent_span_id == run.span_id} == {
        "Crunch", "http:VendorApi"
    }  # fmt: skip
    workers.stop(proc)
    otlp.wait_for(lambda r: runs(r, long) >= 1, what="the run counted")
    assert runs(otlp, long) == 1
    deps = otlp.latest(
        "jobpulse.dependency.duration", **{"jobpulse.dependency.name": "http:VendorApi"}
    )
    assert sum(p.count for p in deps) == 1


def test_spawn_worker_runs_are_recorded_by_the_worker_from_rqs_status(
    redis: Redis, workers: Workers, otlp: Receiver, producer: Any
) -> None:
    spawn = pytest.importorskip("rq.worker").__dict__.get("SpawnWorker")
    if spawn is None:
        pytest.skip("this RQ has no SpawnWorker")
    q = Queue("spawn", connection=redis)
    ok = q.enqueue(jobs.add, 1, 2)
    bad = q.enqueue(jobs.fail)
    workers.run("spawn", worker_class="rq.worker.SpawnWorker")

    spans = otlp.wait_for(lambda r: len(r.run_spans()) == 2 and r.run_spans())
    by_id = {s.attributes["jobpulse.job.id"]: s for s in spans}
    assert by_id[ok.id].attributes["jobpulse.outcome"] == "success"
    assert by_id[bad.id].attributes["jobpulse.outcome"] == "error"
    assert by_id[bad.id].attributes["jobpulse.action"] == "stop"
    for job in (ok, bad):
        assert linked_to(by_id[job.id], send_span(producer, job.id))
    otlp.wait_for(lambda r: r.total("jobpulse.job.runs") >= 2, what="run counters")
    assert otlp.total("jobpulse.job.runs") == 2
