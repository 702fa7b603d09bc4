"""One test per outcome: retry, job timeout, SIGKILLed horse, abandoned job, a fork that
failed, stopped job, and RQ's callbacks still running."""

from __future__ import annotations

import itertools
import os
import signal
from typing import Any

import pytest
from redis import Redis
from rq import Callback, Queue, Retry
from rq.command import send_stop_job_command
from rq.job import Job
from rq.registry import StartedJobRegistry

from tests.support.otlp import Receiver

from . import jobs
from .conftest import SIMPLE, Workers, linked_to, runs, send_span, wait_until

pytestmark = pytest.mark.integration
FAIL = "tests.integration.rq.jobs.fail"
SLEEPY = "tests.integration.rq.jobs.sleepy"
ADD = "tests.integration.rq.jobs.add"
NO_GUARDRAILS = {"JOBPULSE_GUARDRAILS": '{"classify": false}'}


def horse_pid(redis: Redis, job: Job) -> int:
    return int(wait_until(lambda: redis.get(f"test:pid:{job.id}"), what="the horse's pid"))


def run_lines(otlp: Receiver, run: Any) -> list[str]:
    """The ``run ...`` lines in a run's trace, once both have arrived."""
    lines = otlp.wait_for(
        lambda r: [x.body for x in r.logs if x.trace_id == run.trace_id and "run " in x.body]
        if len([x for x in r.logs if x.trace_id == run.trace_id]) >= 2 else None,
        what=f"the lines of run {run.span_id}",
    )  # fmt: skip
    return sorted(lines)


def test_retry_attempts_count_from_one_then_stop(
    redis: Redis, workers: Workers, otlp: Receiver, producer: Any
) -> None:
    q = Queue("retry", connection=redis)
    job = q.enqueue(jobs.fail, retry=Retry(max=2, interval=2))
    proc = workers.start("retry", burst=False, args=("--with-scheduler",), env=NO_GUARDRAILS)
    spans = otlp.wait_for(lambda r: len(r.run_spans(FAIL)) == 3 and r.run_spans(FAIL), 30)
    workers.stop(proc)

    spans.sort(key=lambda s: s.attributes["jobpulse.attempt"])
    assert [s.attributes["jobpulse.attempt"] for s in spans] == [1, 2, 3]
    assert [s.attributes["jobpulse.action"] for s in spans] == ["retry", "retry", "stop"]
    assert {s.attributes["jobpulse.outcome"] for s in spans} == {"error"}
    assert {s.attributes["jobpulse.job.id"] for s in spans} == {job.id}
    assert len({s.attributes["jobpulse.run.id"] for s in spans}) == 3
    sent = send_span(producer, job.id)
    for previous, span in itertools.pairwise(spans):
        assert linked_to(span, sent)
        assert (previous.trace_id, previous.span_id) in span.links  # the previous attempt
        # Queue wait counts from when the retry was due, not from the failure
        # (the retry interval is 2 s; the scheduler moves due jobs every second).
        assert span.attributes["jobpulse.queue.wait"] < 1.9
        assert span.start_ns - previous.end_ns >= 1.9e9
    otlp.wait_for(lambda r: runs(r, FAIL) >= 3, what="run counters")
    assert runs(otlp, FAIL, **{"jobpulse.outcome": "error", "jobpulse.action": "retry"}) == 2
    assert runs(otlp, FAIL, **{"jobpulse.outcome": "error", "jobpulse.action": "stop"}) == 1


def test_job_timeout_is_a_timeout_and_jobpulse_leaves_rqs_death_penalty_alone(
    redis: Redis, workers: Workers, otlp: Receiver, producer: Any
) -> None:
    q = Queue("timeout", connection=redis)
    job = q.enqueue(jobs.sleepy, 30, job_timeout=1)
    workers.run("timeout")

    (run,) = otlp.wait_for(lambda r: r.run_spans(SLEEPY))
    assert run.attributes["jobpulse.outcome"] == "timeout"
    assert run.attributes["jobpulse.action"] == "stop"
    assert run.attributes["error.type"] == "rq.timeouts.JobTimeoutException"
    assert run.attributes["jobpulse.budget.max_runtime"] == 1.0
    assert run.status_code == 2
    assert 0.9e9 < run.end_ns - run.start_ns < 10e9
    assert job.get_status() == "failed"  # RQ's own verdict, untouched
    otlp.wait_for(lambda r: runs(r, SLEEPY) >= 1, what="the timeout counted")
    assert runs(otlp, SLEEPY, **{"jobpulse.outcome": "timeout", "jobpulse.action": "stop"}) == 1


def test_a_horse_killed_by_sigkill_is_lost_and_recorded_by_the_parent(
    redis: Redis, workers: Workers, otlp: Receiver, producer: Any
) -> None:
    q = Queue("kill", connection=redis)
    job = q.enqueue(jobs.sleepy, 60)
    proc = workers.start("kill", burst=False, args=("-n", "killer"))
    os.kill(horse_pid(redis, job), signal.SIGKILL)

    (run,) = otlp.wait_for(lambda r: r.run_spans(SLEEPY))
    assert run.attributes["jobpulse.outcome"] == "lost"
    assert run.attributes["jobpulse.action"] == "stop"
    assert run.attributes["error.type"] == "lost"
    assert run.attributes["jobpulse.job.id"] == job.id
    assert run.attributes["messaging.client.id"] == "killer"
    assert run.status_code == 2
    assert linked_to(run, send_span(producer, job.id))
    # The worker started the run before the fork and ends that same span: both of the
    # run's lines are in its trace.
    assert run_lines(otlp, run) == ["run finished", "run started"]
    # The worker advertises its capacity while it lives.
    otlp.wait_for(
        lambda r: any(
            p.value == 1
            for p in r.latest("jobpulse.worker.capacity", **{"jobpulse.queue.name": "kill"})
        ),
        what="worker capacity",
    )
    workers.stop(proc)
    otlp.wait_for(lambda r: runs(r, SLEEPY) >= 1, what="the lost run counted")
    assert runs(otlp, SLEEPY, **{"jobpulse.outcome": "lost", "jobpulse.action": "stop"}) == 1
    assert not otlp.latest("jobpulse.job.duration", **{"jobpulse.job.name": SLEEPY})


def test_a_retry_after_a_killed_horse_links_to_the_lost_attempt(
    redis: Redis, workers: Workers, otlp: Receiver, producer: Any
) -> None:
    q = Queue("killretry", connection=redis)
    job = q.enqueue(jobs.sleepy, 60, retry=Retry(max=1))
    proc = workers.start("killretry", burst=False, env=NO_GUARDRAILS)
    first = horse_pid(redis, job)
    os.kill(first, signal.SIGKILL)
    second = wait_until(
        lambda: (pid := int(redis.get(f"test:pid:{job.id}") or first)) != first and pid,
        what="the second attempt's horse",
    )  # fmt: skip
    os.kill(second, signal.SIGKILL)
    spans = otlp.wait_for(lambda r: len(r.run_spans(SLEEPY)) == 2 and r.run_spans(SLEEPY))
    workers.stop(proc)

    spans.sort(key=lambda s: s.attributes["jobpulse.attempt"])
    assert [s.attributes["jobpulse.attempt"] for s in spans] == [1, 2]
    assert [s.attributes["jobpulse.outcome"] for s in spans] == ["lost", "lost"]
    assert [s.attributes["jobpulse.action"] for s in spans] == ["retry", "stop"]
    # The worker recorded both runs, each on the span it started before its fork; the
    # second attempt links to the first as to any previous attempt.
    assert (spans[0].trace_id, spans[0].span_id) in spans[1].links
    assert linked_to(spans[1], send_span(producer, job.id))


def test_a_job_abandoned_by_a_dead_worker_is_lost_when_rq_cleans_up(
    redis: Redis, workers: Workers, otlp: Receiver, producer: Any
) -> None:
    q = Queue("abandon", connection=redis)
    job = q.enqueue(jobs.sleepy, 60)
    dead = workers.start("abandon", burst=False)
    pid = horse_pid(redis, job)
    workers.kill(dead)  # the worker and its horse die together, nobody reports
    os.kill(pid, signal.SIGKILL)
    dead.communicate(timeout=10)
    assert job.get_status() == "started"

    # Let the job's heartbeat expire (instead of waiting a minute) and free the
    # maintenance lock the dead worker took, so the next worker cleans up at start.
    registry = StartedJobRegistry(queue=q)
    members: Any = redis.zrange(registry.key, 0, -1)
    redis.zadd(registry.key, dict.fromkeys(members, 1))
    redis.delete(q.registry_cleaning_key)
    workers.run("abandon", args=("-n", "cleaner"))

    (run,) = otlp.wait_for(lambda r: r.run_spans(SLEEPY))
    assert run.attributes["jobpulse.outcome"] == "lost"
    assert run.attributes["jobpulse.action"] == "stop"
    assert run.attributes["error.type"] == "rq.exceptions.AbandonedJobError"
    assert run.attributes["jobpulse.job.id"] == job.id
    assert linked_to(run, send_span(producer, job.id))
    assert job.get_status() == "failed"
    otlp.wait_for(lambda r: runs(r, SLEEPY) >= 1, what="the abandoned run counted")
    assert runs(otlp, SLEEPY, **{"jobpulse.outcome": "lost", "jobpulse.action": "stop"}) == 1


def test_a_fork_that_fails_is_an_error_recorded_by_the_worker(
    redis: Redis, workers: Workers, otlp: Receiver, producer: Any
) -> None:
    """No horse, so no report, and RQ's started-registry cleanup skips the job (it never
    became ``started``): the worker records the run it began before the fork."""
    q = Queue("nofork", connection=redis)
    job = q.enqueue(jobs.add, 1, 2)
    proc = workers.start("nofork", env={"RQ_TEST_FORK_FAILS": "1"})
    out, _ = proc.communicate(timeout=60)  # RQ's worker quits on the unhandled error
    assert "Resource temporarily unavailable" in out

    (run,) = otlp.wait_for(lambda r: r.run_spans(ADD))
    assert run.attributes["jobpulse.outcome"] == "error"
    assert run.attributes["jobpulse.action"] == "stop"
    assert run.attributes["error.type"] == "BlockingIOError"
    assert run.attributes["jobpulse.job.id"] == job.id
    assert run.status_code == 2
    assert linked_to(run, send_span(producer, job.id))
    assert run_lines(otlp, run) == ["run finished", "run started"]
    otlp.wait_for(lambda r: runs(r, ADD) >= 1, what="the run counted")
    assert runs(otlp, ADD, **{"jobpulse.outcome": "error", "jobpulse.action": "stop"}) == 1
    assert job.get_status() == "queued"  # RQ's own state is left to RQ


def test_a_stopped_job_is_cancelled(
    redis: Redis, workers: Workers, otlp: Receiver, producer: Any
) -> None:
    q = Queue("stop", connection=redis)
    job = q.enqueue(jobs.sleepy, 60)
    proc = workers.start("stop", burst=False)
    horse_pid(redis, job)
    send_stop_job_command(redis, job.id)

    (run,) = otlp.wait_for(lambda r: r.run_spans(SLEEPY))
    assert run.attributes["jobpulse.outcome"] == "cancelled"
    assert run.attributes["jobpulse.action"] == "none"
    assert run.status_code == 0  # not an error
    assert "error.type" not in run.attributes
    assert wait_until(lambda: job.get_status() == "stopped", what="RQ's stopped status")
    workers.stop(proc)
    otlp.wait_for(lambda r: runs(r, SLEEPY) >= 1, what="the cancelled run counted")
    assert runs(otlp, SLEEPY, **{"jobpulse.outcome": "cancelled", "jobpulse.action": "none"}) == 1


@pytest.mark.parametrize("worker_class", [None, SIMPLE], ids=["forking", "simple"])
def test_on_success_and_on_failure_callbacks_still_run(
    redis: Redis, workers: Workers, otlp: Receiver, producer: Any, worker_class: str | None
) -> None:
    q = Queue("callbacks", connection=redis)
    ok = q.enqueue(jobs.add, 1, 2, on_success=Callback(jobs.on_success))
    bad = q.enqueue(jobs.fail, on_failure=Callback(jobs.on_failure))
    workers.run("callbacks", worker_class=worker_class)

    assert redis.get(f"test:on_success:{ok.id}") == b"3"
    assert redis.get(f"test:on_failure:{bad.id}") == b"ValueError"
    assert ok.return_value() == 3
    spans = otlp.wait_for(lambda r: len(r.run_spans()) == 2 and r.run_spans())
    outcomes = {s.attributes["jobpulse.job.id"]: s.attributes["jobpulse.outcome"] for s in spans}
    assert outcomes == {ok.id: "success", bad.id: "error"}
