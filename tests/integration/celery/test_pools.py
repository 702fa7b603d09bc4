"""Solo, threads and gevent pools run tasks in the worker's main process: every run
counted once.

The threads worker also runs with ``continue_trace=True``: the run span is then a
child of the producer's span (and still linked to it). The gevent pool (best effort:
its monkey-patching turns jobpulse's watchdog and the SDK's export threads into
greenlets) runs when gevent is installed (the ``dev`` extra has it).
"""

from __future__ import annotations

import importlib.util
from collections.abc import Iterator
from pathlib import Path

import pytest

from jobpulse.testing import capture
from tests.support.otlp import Receiver

from .conftest import Worker, settled_total, span_ids, start_worker, wait_runs

pytestmark = pytest.mark.integration

POOLS = {"solo": 1, "threads": 2}
if importlib.util.find_spec("gevent") is not None:
    POOLS["gevent"] = 4


@pytest.fixture(scope="module", params=sorted(POOLS))
def worker(
    request: pytest.FixtureRequest, receiver: Receiver, module_tmp: Path
) -> Iterator[Worker]:
    env = {"JOBPULSE_CONTINUE_TRACE": "true"} if request.param == "threads" else {}
    w = start_worker(
        receiver, module_tmp, pool=request.param, concurrency=POOLS[request.param], env=env
    )
    yield w
    w.stop()


def _pool(worker: Worker) -> str:
    return next(pool for pool in POOLS if f"-{pool}-" in worker.queue)


def test_in_process_runs_are_counted_once(worker: Worker, receiver: Receiver) -> None:
    with capture(raise_internal=True):  # an instrumented producer: enqueue times
        ok = worker.send("jp.export", 2)
        bad = worker.send("jp.fail", "9")
        retried = worker.send("jp.retry_once", "t")
    assert ok.get(timeout=30) == 2
    assert retried.get(timeout=30) == "t"
    (run,) = wait_runs(receiver, ok.id)
    # made in the main process, which also counted it: no pool child, no node/index id
    assert "/" not in run.resource["service.instance.id"]
    assert run.attributes["jobpulse.outcome"] == "success"
    assert {s.name for s in receiver.spans if s.parent_span_id == run.span_id} == {
        "ExportOrders",
        "http:VendorApi",
    }
    q = {"jobpulse.queue.name": worker.queue}
    assert (
        settled_total(receiver, "jobpulse.job.runs", **q, **{"jobpulse.job.name": "jp.export"}) == 1
    )
    assert receiver.total("jobpulse.job.duration", **q, **{"jobpulse.job.name": "jp.export"}) == 1
    assert receiver.total("jobpulse.job.queue.wait", **q, **{"jobpulse.job.name": "jp.export"}) == 1
    wait_runs(receiver, bad.id)
    assert (
        settled_total(
            receiver,
            "jobpulse.job.runs",
            **q,
            **{"jobpulse.job.name": "jp.fail", "jobpulse.outcome": "error"},
        )
        == 1
    )
    first, second = wait_runs(receiver, retried.id, count=2)
    assert first.attributes["jobpulse.action"] == "retry"
    assert second.attributes["jobpulse.outcome"] == "success"
    name = {"jobpulse.job.name": "jp.retry_once"}
    assert settled_total(receiver, "jobpulse.job.runs", **q, **name) == 2


def test_capacity_is_the_pool_size(worker: Worker, receiver: Receiver) -> None:
    points = receiver.wait_for(
        lambda r: r.latest("jobpulse.worker.capacity", **{"jobpulse.queue.name": worker.queue}),
        what="worker capacity",
    )
    assert [p.value for p in points] == [float(POOLS[_pool(worker)])]


def test_trace_shape_follows_continue_trace(worker: Worker, receiver: Receiver) -> None:
    with capture(raise_internal=True) as cap:
        result = worker.app.tasks["jp.add"].delay(1, 1)
    assert result.get(timeout=30) == 2
    (run,) = wait_runs(receiver, result.id)
    (producer,) = [s for s in cap.spans if s.name == "send jp.add"]
    ids = span_ids(producer)
    assert run.links == [ids]
    if _pool(worker) == "threads":  # continue_trace=True: a child of the producer span
        assert (run.trace_id, run.parent_span_id) == ids
    else:  # the default: a new trace
        assert run.trace_id != ids[0]
        assert run.parent_span_id == ""


def test_gevent_hard_time_limit_is_one_timeout_run(worker: Worker, receiver: Receiver) -> None:
    """gevent raises its ``Timeout`` into the task's greenlet and Celery reports it as
    ``TimeLimitExceeded``: one ``timeout`` run, counted once (not an error, not twice)."""
    if _pool(worker) != "gevent":
        pytest.skip("the gevent pool's own hard time limit")
    with capture(raise_internal=True):
        result = worker.app.tasks["jp.hard"].delay()
    (run,) = wait_runs(receiver, result.id)
    a = run.attributes
    assert (a["jobpulse.outcome"], a["jobpulse.action"]) == ("timeout", "stop")
    assert a["error.type"] == "celery.exceptions.TimeLimitExceeded"
    q = {"jobpulse.queue.name": worker.queue, "jobpulse.job.name": "jp.hard"}
    assert settled_total(receiver, "jobpulse.job.runs", **q) == 1
    assert settled_total(receiver, "jobpulse.job.runs", **q, **{"jobpulse.outcome": "timeout"}) == 1
    assert worker.send("jp.add", 2, 2).get(timeout=30) == 4  # the worker goes on
