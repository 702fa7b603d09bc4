"""Prefork children recycled after every task still deliver every span, once.

The contrib instrumentation loses most spans here
(open-telemetry/opentelemetry-python-contrib#4916): a recycled child exits with
``os._exit`` before its batch processor exports.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.otlp import Receiver

from .conftest import Worker, runs_of, settled_total, start_worker

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def worker(receiver: Receiver, module_tmp: Path) -> Iterator[Worker]:
    # a long batch delay: only jobpulse's flushes can deliver the spans in time
    w = start_worker(
        receiver,
        module_tmp,
        concurrency=2,
        env={"JP_CELERY_MAX_TASKS_PER_CHILD": "1"},
        otel_env={"OTEL_BSP_SCHEDULE_DELAY": "60000"},
    )
    yield w
    w.stop()


def test_twenty_tasks_give_twenty_run_spans(worker: Worker, receiver: Receiver) -> None:
    results = [worker.send("jp.noop") for _ in range(20)]
    for result in results:
        result.get(timeout=60)
    ids = {r.id for r in results}
    receiver.wait_for(
        lambda r: sum(len(runs_of(r, i)) for i in ids) >= 20, timeout=60, what="20 run spans"
    )
    spans = [s for i in ids for s in runs_of(receiver, i)]
    assert len(spans) == 20
    assert {s.attributes["jobpulse.job.id"] for s in spans} == ids
    assert len({s.attributes["jobpulse.run.id"] for s in spans}) == 20
    # stable instance ids: node name and pool index, reused by the replacement child
    instances = {s.resource["service.instance.id"] for s in spans}
    assert instances <= {f"{worker.name}/0", f"{worker.name}/1"}, instances
    q = {"jobpulse.queue.name": worker.queue, "jobpulse.job.name": "jp.noop"}
    assert settled_total(receiver, "jobpulse.job.runs", **q) == 20
