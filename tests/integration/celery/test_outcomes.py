"""Every outcome of a task run, on a real prefork worker (2 children), on Redis and RabbitMQ.

The worker is shared by the module's tests (one per broker); tests tell their
runs apart by task id. The test process is the producer: inside ``capture()``
it is instrumented with in-memory exporters, so the producer span is at hand to
check the worker's links against.
"""

from __future__ import annotations

import os
import signal
import time
import uuid
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from celery import chain, chord
from opentelemetry.sdk.trace import ReadableSpan

from jobpulse.testing import capture
from tests.support.otlp import Receiver

from .conftest import (
    BROKERS,
    Worker,
    child_pid,
    runs_of,
    settled_total,
    span_ids,
    start_worker,
    wait_runs,
)
from .tasks import coord

pytestmark = pytest.mark.integration

CONSUMER, PRODUCER = 5, 4  # OTLP span kinds
ERROR = 2  # OTLP status code


@pytest.fixture(scope="module", params=sorted(BROKERS))
def worker(
    request: pytest.FixtureRequest, receiver: Receiver, module_tmp: Path
) -> Iterator[Worker]:
    w = start_worker(
        receiver,
        module_tmp,
        broker=BROKERS[request.param],
        pool="prefork",
        concurrency=2,
        env={
            "JOBPULSE_RECORD_ARGS": '{"jp.args": ["customer"]}',
            "JOBPULSE_BUDGETS": '{"jp.hard": {"max_runtime": 7}}',
        },
    )
    yield w
    w.stop()


def _producer(cap: Any, job: str, task_id: str | None = None) -> ReadableSpan:
    spans: list[ReadableSpan] = [
        s
        for s in cap.spans
        if s.name == f"send {job}"
        and (task_id is None or (s.attributes or {}).get("messaging.message.id") == task_id)
    ]
    assert len(spans) == 1, spans
    return spans[0]


def _main(span_or_point: Any) -> bool:
    """Recorded by the worker's main process (children have ``node/index`` instance ids)."""
    return "/" not in str(span_or_point.resource.get("service.instance.id", ""))


def _attrs(worker: Worker, **extra: Any) -> dict[str, Any]:
    return {"jobpulse.queue.name": worker.queue, **extra}


def test_success_run_span_links_to_the_producer(worker: Worker, receiver: Receiver) -> None:
    with capture(raise_internal=True) as cap:
        result = worker.app.tasks["jp.export"].delay(3)
    assert result.get(timeout=30) == 3  # Celery's own behaviour is untouched
    (run,) = wait_runs(receiver, result.id)
    producer = _producer(cap, "jp.export")

    assert run.name == "jp.export"
    assert run.kind == CONSUMER
    a = run.attributes
    assert a["jobpulse.outcome"] == "success"
    assert a["jobpulse.action"] == "none"
    assert a["jobpulse.system"] == "celery"
    assert a["jobpulse.attempt"] == 1
    assert a["jobpulse.queue.name"] == worker.queue
    assert a["messaging.system"] == "celery"
    assert a["messaging.operation.type"] == "process"
    assert a["messaging.destination.name"] == worker.queue
    assert a["messaging.message.id"] == result.id
    assert a["messaging.client.id"] == worker.name
    assert a["code.function.name"].endswith("tasks.register.<locals>.export")
    assert a["jobpulse.budget.max_runtime"] == 30.0  # the smaller of time_limit/soft_time_limit
    assert a["jobpulse.heartbeat.count"] == 3
    assert a["jobpulse.queue.wait"] >= 0
    assert not _main(run)  # made in the pool child that ran it

    # a new trace, linked to the producer's span
    assert producer.kind.name == "PRODUCER"
    assert dict(producer.attributes or {})["messaging.operation.type"] == "send"
    assert run.links == [span_ids(producer)]
    assert run.trace_id != span_ids(producer)[0]
    steps = [s for s in receiver.spans if s.parent_span_id == run.span_id]
    assert {s.name for s in steps} == {"ExportOrders", "http:VendorApi"}

    q = _attrs(worker, **{"jobpulse.job.name": "jp.export"})
    runs = receiver.wait_for(
        lambda r: r.latest("jobpulse.job.runs", **q, **{"jobpulse.outcome": "success"}),
        what="the success counter",
    )
    assert all(_main(p) for p in runs)
    assert sum(p.value for p in runs) >= 1
    receiver.wait_for(lambda r: r.total("jobpulse.job.duration", **q) >= 1, what="durations")
    receiver.wait_for(lambda r: r.total("jobpulse.job.queue.wait", **q) >= 1, what="queue waits")
    capacity = receiver.wait_for(
        lambda r: r.latest("jobpulse.worker.capacity", **{"jobpulse.queue.name": worker.queue}),
        what="worker capacity",
    )
    assert [p.value for p in capacity] == [2.0]


def test_error_with_no_retry_left_is_error_stop(worker: Worker, receiver: Receiver) -> None:
    result = worker.send("jp.fail", "17")
    with pytest.raises(ValueError, match="bad record 17"):
        result.get(timeout=30)
    (run,) = wait_runs(receiver, result.id)
    assert run.attributes["jobpulse.outcome"] == "error"
    assert run.attributes["jobpulse.action"] == "stop"
    assert run.attributes["error.type"] == "ValueError"
    assert run.status_code == ERROR
    assert run.status_message == "bad record 17"
    assert any(name == "exception" for name, _ in run.events)
    q = _attrs(worker, **{"jobpulse.job.name": "jp.fail"})
    assert settled_total(receiver, "jobpulse.job.runs", **q, **{"jobpulse.outcome": "error"}) == 1
    assert receiver.total("jobpulse.job.errors", **q, **{"error.type": "ValueError"}) == 1


def test_autoretry_attempts_count_from_one_with_the_same_job_id(
    worker: Worker, receiver: Receiver
) -> None:
    result = worker.send("jp.flaky", "x")
    runs = wait_runs(receiver, result.id, count=3)
    assert len(runs) == 3
    assert [r.attributes["jobpulse.attempt"] for r in runs] == [1, 2, 3]
    assert [r.attributes["jobpulse.action"] for r in runs] == ["retry", "retry", "stop"]
    assert {r.attributes["jobpulse.outcome"] for r in runs} == {"error"}
    assert {r.attributes["error.type"] for r in runs} == {"KeyError"}
    assert len({r.attributes["jobpulse.run.id"] for r in runs}) == 3
    # each retry starts a new trace linked to the previous attempt's run span
    assert runs[1].links == [(runs[0].trace_id, runs[0].span_id)]
    assert runs[2].links == [(runs[1].trace_id, runs[1].span_id)]
    q = _attrs(worker, **{"jobpulse.job.name": "jp.flaky"})
    assert settled_total(receiver, "jobpulse.job.runs", **q, **{"jobpulse.action": "retry"}) == 2
    assert receiver.total("jobpulse.job.runs", **q, **{"jobpulse.action": "stop"}) == 1


def test_self_retry_is_error_retry_with_the_retried_type(
    worker: Worker, receiver: Receiver
) -> None:
    result = worker.send("jp.retry_once", "r")
    assert result.get(timeout=30) == "r"
    first, second = wait_runs(receiver, result.id, count=2)
    assert first.attributes["jobpulse.outcome"] == "error"
    assert first.attributes["jobpulse.action"] == "retry"
    assert first.attributes["error.type"] == "ConnectionError"
    assert second.attributes["jobpulse.attempt"] == 2
    assert second.attributes["jobpulse.outcome"] == "success"


def test_ignore_and_reject_are_control_flow(worker: Worker, receiver: Receiver) -> None:
    ignored = worker.send("jp.ignore")
    requeued = worker.send("jp.reject", "again")
    dropped = worker.send("jp.reject_drop")
    (ignore_run,) = wait_runs(receiver, ignored.id)
    assert ignore_run.attributes["jobpulse.outcome"] == "cancelled"
    assert ignore_run.attributes["jobpulse.action"] == "none"
    assert ignore_run.status_code != ERROR
    assert "error.type" not in ignore_run.attributes

    assert requeued.get(timeout=30) == "again"  # delivered again, then it ran
    rejected, ran = wait_runs(receiver, requeued.id, count=2)
    assert (rejected.attributes["jobpulse.outcome"], rejected.attributes["jobpulse.action"]) == (
        "cancelled",
        "retry",
    )
    assert ran.attributes["jobpulse.outcome"] == "success"

    (drop_run,) = wait_runs(receiver, dropped.id)
    assert drop_run.attributes["jobpulse.action"] == "stop"
    q = _attrs(worker, **{"jobpulse.job.name": "jp.reject_drop"})
    assert (
        settled_total(receiver, "jobpulse.job.runs", **q, **{"jobpulse.outcome": "cancelled"}) == 1
    )


def test_revoked_before_start_is_one_cancelled_run_without_duration(
    worker: Worker, receiver: Receiver
) -> None:
    task_id = uuid.uuid4().hex
    replies = worker.app.control.revoke(task_id, reply=True, timeout=10, destination=[worker.name])
    assert replies, "the worker did not confirm the revoke"
    worker.app.send_task("jp.noop", task_id=task_id)
    (run,) = wait_runs(receiver, task_id)
    assert run.attributes["jobpulse.outcome"] == "cancelled"
    assert run.attributes["jobpulse.action"] == "none"
    assert _main(run)
    q = _attrs(worker, **{"jobpulse.job.name": "jp.noop", "jobpulse.outcome": "cancelled"})
    assert settled_total(receiver, "jobpulse.job.runs", **q) == 1
    assert receiver.total("jobpulse.job.duration", **q) == 0


def test_expired_is_cancelled(worker: Worker, receiver: Receiver) -> None:
    past = datetime.now(timezone.utc) - timedelta(minutes=5)
    result = worker.send("jp.add", 1, 1, expires=past)
    (run,) = wait_runs(receiver, result.id)
    assert run.attributes["jobpulse.outcome"] == "cancelled"


def test_revoke_with_terminate_is_one_cancelled_run(worker: Worker, receiver: Receiver) -> None:
    result = worker.send("jp.sleepy", 30)
    child_pid(result.id)
    worker.app.control.revoke(result.id, terminate=True, reply=True, timeout=10)
    (run,) = wait_runs(receiver, result.id)
    assert run.attributes["jobpulse.outcome"] == "cancelled"
    assert run.end_ns > run.start_ns  # it had started
    q = _attrs(worker, **{"jobpulse.job.name": "jp.sleepy", "jobpulse.outcome": "cancelled"})
    assert settled_total(receiver, "jobpulse.job.runs", **q) == 1
    assert len(runs_of(receiver, result.id)) == 1  # the terminated child did not add one


def test_soft_time_limit_is_timeout_and_the_task_cleans_up(
    worker: Worker, receiver: Receiver
) -> None:
    result = worker.send("jp.soft")
    (run,) = wait_runs(receiver, result.id)
    assert run.attributes["jobpulse.outcome"] == "timeout"
    assert run.attributes["jobpulse.action"] == "stop"
    assert run.attributes["error.type"] == "celery.exceptions.SoftTimeLimitExceeded"
    assert run.attributes["jobpulse.budget.max_runtime"] == 0.5
    assert run.status_code == ERROR
    assert coord().get(f"jp:cleaned:{result.id}") == b"1"
    steps = {s.name for s in receiver.spans if s.parent_span_id == run.span_id}
    assert steps == {"Crunch", "Cleanup"}


def test_hard_time_limit_is_recorded_once_by_the_main_process(
    worker: Worker, receiver: Receiver
) -> None:
    with capture(raise_internal=True) as cap:
        result = worker.app.tasks["jp.hard"].delay()
    (run,) = wait_runs(receiver, result.id)
    a = run.attributes
    assert (a["jobpulse.outcome"], a["jobpulse.action"]) == ("timeout", "stop")
    assert a["error.type"] == "celery.exceptions.TimeLimitExceeded"
    assert a["jobpulse.budget.max_runtime"] == 7.0  # jobpulse's budgets option wins
    assert run.kind == CONSUMER
    assert _main(run)
    assert run.links == [span_ids(_producer(cap, "jp.hard"))]  # linked to the task's trace
    assert run.end_ns - run.start_ns >= 0.9e9  # from when the child started it
    q = _attrs(worker, **{"jobpulse.job.name": "jp.hard"})
    assert settled_total(receiver, "jobpulse.job.runs", **q, **{"jobpulse.outcome": "timeout"}) == 1
    assert receiver.total("jobpulse.job.duration", **q) == 1
    assert len(runs_of(receiver, result.id)) == 1
    assert worker.send("jp.add", 2, 2).get(timeout=30) == 4  # the pool replaced the child


def test_sigkilled_child_is_lost_and_counted_once(worker: Worker, receiver: Receiver) -> None:
    with capture(raise_internal=True) as cap:
        result = worker.app.tasks["jp.victim"].delay()
    os.kill(child_pid(result.id), signal.SIGKILL)
    (run,) = wait_runs(receiver, result.id)
    a = run.attributes
    assert (a["jobpulse.outcome"], a["jobpulse.action"]) == ("lost", "stop")
    assert a["error.type"] == "celery.exceptions.WorkerLostError"
    assert run.status_code == ERROR
    assert _main(run)
    assert run.links == [span_ids(_producer(cap, "jp.victim"))]
    q = _attrs(worker, **{"jobpulse.job.name": "jp.victim"})
    assert settled_total(receiver, "jobpulse.job.runs", **q, **{"jobpulse.outcome": "lost"}) == 1
    assert receiver.total("jobpulse.job.duration", **q) == 0  # a lost run has no duration
    assert (
        receiver.total(
            "jobpulse.job.errors", **q, **{"error.type": "celery.exceptions.WorkerLostError"}
        )
        == 1
    )
    assert worker.send("jp.add", 3, 3).get(timeout=30) == 6


def test_a_task_that_exits_its_child_is_lost_recorded_once(
    worker: Worker, receiver: Receiver
) -> None:
    result = worker.send("jp.exit")
    (run,) = wait_runs(receiver, result.id)
    assert (run.attributes["jobpulse.outcome"], run.attributes["jobpulse.action"]) == (
        "lost",
        "stop",
    )
    assert _main(run)
    q = _attrs(worker, **{"jobpulse.job.name": "jp.exit"})
    assert settled_total(receiver, "jobpulse.job.runs", **q, **{"jobpulse.outcome": "lost"}) == 1
    assert len(runs_of(receiver, result.id)) == 1
    assert worker.send("jp.add", 4, 4).get(timeout=30) == 8


def test_queue_wait_leaves_out_the_countdown_and_clamps_clock_skew(
    worker: Worker, receiver: Receiver
) -> None:
    with capture(raise_internal=True):
        delayed = worker.app.tasks["jp.noop"].apply_async(countdown=2)
    sent = time.time()
    # jobpulse is not instrumented here now: a producer whose clock is an hour ahead
    skewed = worker.send("jp.noop", headers={"jobpulse_enqueued_at": str(time.time() + 3600)})
    plain = worker.send("jp.noop")  # a producer without jobpulse: no enqueue time
    (run,) = wait_runs(receiver, delayed.id)
    assert run.start_ns / 1e9 >= sent + 1.5  # it waited for its ETA...
    assert run.attributes["jobpulse.queue.wait"] < 1.5  # ...which is not queue wait
    (skew_run,) = wait_runs(receiver, skewed.id)
    assert skew_run.attributes["jobpulse.queue.wait"] == 0.0
    (plain_run,) = wait_runs(receiver, plain.id)
    assert "jobpulse.queue.wait" not in plain_run.attributes


def test_canvas_messages_carry_the_context(worker: Worker, receiver: Receiver) -> None:
    app = worker.app
    with capture(raise_internal=True) as cap:
        flow = chain(app.signature("jp.chain_a", (1,)), app.signature("jp.chain_b"))
        result = flow.apply_async()
        fan = chord([app.signature("jp.add", (i, i)) for i in range(3)])(app.signature("jp.total"))
    assert result.get(timeout=30) == 4
    assert fan.get(timeout=30) == 6
    (b_run,) = wait_runs(receiver, result.id)
    (a_run,) = wait_runs(receiver, result.parent.id)
    assert a_run.links == [span_ids(_producer(cap, "jp.chain_a"))]
    # jp.chain_b was sent from inside jp.chain_a's run: its send span is in that trace
    send_b = receiver.wait_for(
        lambda r: [
            s
            for s in r.spans
            if s.name == "send jp.chain_b" and s.attributes["messaging.message.id"] == result.id
        ],
        what="send jp.chain_b",
    )[0]
    assert send_b.kind == PRODUCER
    assert send_b.trace_id == a_run.trace_id
    assert b_run.links == [(send_b.trace_id, send_b.span_id)]
    (total_run,) = wait_runs(receiver, fan.id)
    assert len(total_run.links) == 1
    for child in fan.parent.results:
        (header_run,) = wait_runs(receiver, child.id)
        assert header_run.links == [span_ids(_producer(cap, "jp.add", child.id))]


def test_args_only_when_allowed_and_no_credentials(worker: Worker, receiver: Receiver) -> None:
    with capture(raise_internal=True) as cap:
        result = worker.app.tasks["jp.args"].delay("c-17", secret="s3cr3t-pw")
    (run,) = wait_runs(receiver, result.id)
    assert run.attributes["jobpulse.job.arg.customer"] == "c-17"
    assert "jobpulse.job.arg.secret" not in run.attributes
    producer = dict(_producer(cap, "jp.args").attributes or {})
    assert producer["server.address"] == "127.0.0.1"  # the broker, without credentials
    assert producer["server.port"] in (5672, 6379)
    for attrs in (run.attributes, producer):
        text = repr(attrs)
        assert "s3cr3t" not in text
        assert "guest:guest" not in text
        assert "@127" not in text
    other = wait_runs(receiver, worker.send("jp.add", 1, 2).id)[0]
    assert not [k for k in other.attributes if k.startswith("jobpulse.job.arg.")]


def test_counters_come_from_the_main_process_only(worker: Worker, receiver: Receiver) -> None:
    result = worker.send("jp.add", 5, 5)
    assert result.get(timeout=30) == 10
    points = receiver.wait_for(
        lambda r: r.latest("jobpulse.job.runs", **{"jobpulse.queue.name": worker.queue}),
        what="run counters",
    )
    assert points
    assert [p.resource.get("service.instance.id") for p in points if not _main(p)] == []
    assert not [
        p
        for p in receiver.latest("jobpulse.job.duration", **{"jobpulse.queue.name": worker.queue})
        if not _main(p)
    ]
    # the children export their spans under a stable node/index instance id
    (run,) = wait_runs(receiver, result.id)
    instance = run.resource["service.instance.id"]
    assert instance in (f"{worker.name}/0", f"{worker.name}/1"), instance
