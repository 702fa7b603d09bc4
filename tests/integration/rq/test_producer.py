"""The enqueue side: trace context and due time in job meta, a PRODUCER span per job."""

from __future__ import annotations

import time
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from opentelemetry.trace import SpanKind
from redis import Redis
from rq import Queue
from rq.job import Job

from tests.support.otlp import Receiver

from . import jobs
from .conftest import SIMPLE, Workers, linked_to, send_span

pytestmark = pytest.mark.integration
ADD = "tests.integration.rq.jobs.add"


def test_enqueue_puts_the_trace_context_and_time_in_meta_under_the_callers_span(
    redis: Redis, producer: Any
) -> None:
    q = Queue("meta", connection=redis)
    tracer = producer.tracer_provider.get_tracer("test")
    before = time.time()
    with tracer.start_as_current_span("request") as request:
        job = q.enqueue(jobs.add, 1, 2)
    entry = Job.fetch(job.id, connection=redis).meta["jobpulse"]
    assert set(entry) == {"traceparent", "tracestate", "enqueued_at"}
    assert before <= entry["enqueued_at"] <= time.time()
    sent = send_span(producer, job.id)
    ctx = sent.get_span_context()
    assert (
        entry["traceparent"] == f"00-{ctx.trace_id:032x}-{ctx.span_id:016x}-{ctx.trace_flags:02x}"
    )
    assert sent.kind is SpanKind.PRODUCER
    assert sent.name == f"send {ADD}"
    assert sent.parent is not None
    assert sent.parent.span_id == request.get_span_context().span_id
    assert sent.attributes["messaging.operation.type"] == "send"
    assert sent.attributes["messaging.destination.name"] == "meta"
    assert sent.attributes["messaging.system"] == "rq"
    assert sent.attributes["server.address"] == "127.0.0.1"
    assert not any("redis://" in str(v) for v in sent.attributes.values())


def test_every_enqueue_path_is_traced(redis: Redis, producer: Any) -> None:
    q = Queue("paths", connection=redis)
    made = [
        q.enqueue(jobs.add, 1, 2),
        q.enqueue_call(jobs.add, args=(1, 2)),
        q.enqueue_in(timedelta(seconds=60), jobs.add, 1, 2),
        q.enqueue_at(datetime.now(timezone.utc) + timedelta(seconds=60), jobs.add, 1, 2),
        *q.enqueue_many([Queue.prepare_data(jobs.add, (i, i)) for i in range(3)]),
        q.enqueue_job(Job.create(jobs.add, args=(1, 2), connection=redis)),
    ]
    for job in made:
        entry = Job.fetch(job.id, connection=redis).meta["jobpulse"]
        assert entry["traceparent"].startswith("00-")
        assert send_span(producer, job.id).end_time is not None
    sends = [s for s in producer.spans if s.name.startswith("send ")]
    assert len(sends) == len(made)


def test_scheduled_jobs_wait_from_when_they_are_due_and_dependents_from_their_release(
    redis: Redis, workers: Workers, otlp: Receiver, producer: Any
) -> None:
    q = Queue("later", connection=redis)
    due = time.time() + 3
    later = q.enqueue_in(timedelta(seconds=3), jobs.add, 1, 2)
    at = q.enqueue_at(datetime.fromtimestamp(due, timezone.utc), jobs.add, 3, 4)
    # due when RQ's scheduler says so: its registry scores whole seconds
    assert Job.fetch(later.id, connection=redis).meta["jobpulse"]["enqueued_at"] >= int(due) - 1
    first = q.enqueue(jobs.sleepy, 1.5)
    after = q.enqueue(jobs.add, 5, 6, depends_on=first)
    proc = workers.start("later", burst=False, args=("--with-scheduler",), worker_class=SIMPLE)
    spans = otlp.wait_for(lambda r: len(r.run_spans(ADD)) == 3 and r.run_spans(ADD), 30)
    workers.stop(proc)

    by_id = {s.attributes["jobpulse.job.id"]: s for s in spans}
    # The wait excludes the delay: due at +3 s, a scheduled job would otherwise wait
    # >= 2 s (the registry's whole seconds take up to 1 s off), and it may wait up to a
    # scheduler poll (1 s) plus the pickup; a dependent would otherwise wait >= 1.5 s
    # (its dependency's run) and waits only for the pickup.
    for label, job, bound in (("enqueue_in", later, 1.9), ("enqueue_at", at, 1.9),
                              ("dependent", after, 1.0)):  # fmt: skip
        run = by_id[job.id]
        assert linked_to(run, send_span(producer, job.id))
        assert run.attributes["jobpulse.queue.wait"] < bound, (label, run.attributes)
    assert by_id[later.id].start_ns / 1e9 >= int(due) - 1
    assert by_id[after.id].start_ns > otlp.run_spans("tests.integration.rq.jobs.sleepy")[0].end_ns
