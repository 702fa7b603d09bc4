"""With opentelemetry-instrumentation-celery also active: one run span per task.

jobpulse adopts contrib's ``run/<task>`` span (the worker app turns contrib on
after jobpulse, the order that needs jobpulse to rearrange the receivers).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from jobpulse.testing import capture
from tests.support.otlp import Receiver, Span

from .conftest import Worker, settled_total, span_ids, start_worker, wait_runs

pytestmark = pytest.mark.integration

CONSUMER, ERROR = 5, 2


@pytest.fixture(scope="module")
def worker(receiver: Receiver, module_tmp: Path) -> Iterator[Worker]:
    w = start_worker(receiver, module_tmp, env={"JP_CELERY_CONTRIB": "1"})
    yield w
    w.stop()


def _consumer_spans(receiver: Receiver, task_id: str) -> list[Span]:
    return [
        s
        for s in receiver.spans
        if s.kind == CONSUMER
        and task_id
        in (s.attributes.get("messaging.message.id"), s.attributes.get("jobpulse.job.id"))
    ]


def test_one_run_span_per_task_carrying_jobpulse_attributes(
    worker: Worker, receiver: Receiver
) -> None:
    with capture(raise_internal=True) as cap:
        result = worker.app.tasks["jp.export"].delay(2)
    assert result.get(timeout=30) == 2
    (run,) = wait_runs(receiver, result.id)
    q = {"jobpulse.queue.name": worker.queue, "jobpulse.job.name": "jp.export"}
    assert settled_total(receiver, "jobpulse.job.runs", **q) == 1
    assert _consumer_spans(receiver, result.id) == [run]
    assert run.name == "run/jp.export"  # contrib's span...
    a = run.attributes
    assert a["celery.action"] == "run"
    assert a["jobpulse.outcome"] == "success"  # ...with jobpulse's attributes
    assert a["jobpulse.attempt"] == 1
    assert a["jobpulse.heartbeat.count"] == 2
    assert a["jobpulse.queue.name"] == worker.queue
    steps = {s.name for s in receiver.spans if s.parent_span_id == run.span_id}
    assert steps == {"ExportOrders", "http:VendorApi"}
    # contrib parents it under the producer's span (its default); no extra link then
    (producer,) = [s for s in cap.spans if s.name == "send jp.export"]
    assert run.parent_span_id == span_ids(producer)[1]
    assert run.links == []


def test_failure_on_the_adopted_span(worker: Worker, receiver: Receiver) -> None:
    result = worker.send("jp.fail", "c")
    with pytest.raises(ValueError, match="bad record c"):
        result.get(timeout=30)
    (run,) = wait_runs(receiver, result.id)
    assert _consumer_spans(receiver, result.id) == [run]
    assert run.attributes["jobpulse.outcome"] == "error"
    assert run.attributes["error.type"] == "ValueError"
    assert run.status_code == ERROR
