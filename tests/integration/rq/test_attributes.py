"""Budgets from RQ's limits, messaging attributes, and arguments only where allowed."""

from __future__ import annotations

import json
from typing import Any

import pytest
from redis import Redis
from rq import Queue, Retry

from tests.support.otlp import Receiver

from . import jobs
from .conftest import SIMPLE, Workers

pytestmark = pytest.mark.integration
BUDGET = "tests.integration.rq.jobs.budget"
ADD = "tests.integration.rq.jobs.add"


@pytest.mark.parametrize("worker_class", [None, SIMPLE], ids=["forking", "simple"])
def test_job_timeout_and_retries_are_the_budget_unless_jobpulse_budgets_say_otherwise(
    redis: Redis, workers: Workers, otlp: Receiver, producer: Any, worker_class: str | None
) -> None:
    q = Queue("budget", connection=redis)
    rq_only = q.enqueue(jobs.budget, job_timeout=7, retry=Retry(max=3))
    workers.run("budget", worker_class=worker_class)
    assert rq_only.return_value() == {"max_runtime": 7.0, "max_attempts": 4, "attempt": 1}

    overridden = q.enqueue(jobs.budget, job_timeout=7, retry=Retry(max=3))
    option = json.dumps({BUDGET: {"max_runtime": 3, "max_attempts": 2}})
    workers.run("budget", worker_class=worker_class, env={"JOBPULSE_BUDGETS": option})
    assert overridden.return_value() == {"max_runtime": 3.0, "max_attempts": 2, "attempt": 1}

    spans = otlp.wait_for(lambda r: len(r.run_spans(BUDGET)) == 2 and r.run_spans(BUDGET))
    limits = {s.attributes["jobpulse.job.id"]: s.attributes["jobpulse.budget.max_runtime"]
              for s in spans}  # fmt: skip
    assert limits == {rq_only.id: 7.0, overridden.id: 3.0}


def test_messaging_attributes_and_no_arguments_unless_allowed(
    redis: Redis, workers: Workers, otlp: Receiver, producer: Any
) -> None:
    q = Queue("attrs", connection=redis)
    hidden = q.enqueue(jobs.add, 40, 2)
    workers.run("attrs", args=("-n", "attr-worker"))
    allowed = q.enqueue(jobs.add, 40, b=2)
    workers.run(
        "attrs", args=("-n", "attr-worker"), env={"JOBPULSE_RECORD_ARGS": json.dumps({ADD: ["a"]})}
    )

    spans = otlp.wait_for(lambda r: len(r.run_spans(ADD)) == 2 and r.run_spans(ADD))
    by_id = {s.attributes["jobpulse.job.id"]: s.attributes for s in spans}
    attrs = by_id[hidden.id]
    assert attrs["messaging.system"] == "rq"
    assert attrs["messaging.operation.name"] == "process"
    assert attrs["messaging.operation.type"] == "process"
    assert attrs["messaging.destination.name"] == "attrs"
    assert attrs["messaging.message.id"] == hidden.id
    assert attrs["messaging.client.id"] == "attr-worker"
    assert attrs["jobpulse.queue.name"] == "attrs"
    assert attrs["code.function.name"] == ADD
    assert attrs["server.address"] == "127.0.0.1"
    assert not [k for k in attrs if k.startswith("jobpulse.job.arg.")]
    assert not any("redis://" in str(v) for v in attrs.values())
    assert by_id[allowed.id]["jobpulse.job.arg.a"] == 40
    assert "jobpulse.job.arg.b" not in by_id[allowed.id]
