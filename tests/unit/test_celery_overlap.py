"""Two runs of one Celery task id can overlap in one process (a ``countdown=0`` retry
under the threads or gevent pool, a redelivery): each ``task_postrun`` ends its own
run, found by the execution's request context, never the other one."""

from __future__ import annotations

from typing import Any

import pytest

celery = pytest.importorskip("celery")

from celery import Celery  # noqa: E402

from jobpulse.adapters.celery import _consumer  # noqa: E402
from jobpulse.testing import capture  # noqa: E402


def _push(task: Any, retries: int) -> None:
    task.push_request(
        id="same-id", retries=retries, is_eager=False, called_directly=False, args=[],
        kwargs={}, delivery_info={"routing_key": "unit", "exchange": ""}, hostname="unit@h",
    )  # fmt: skip


def test_overlapping_runs_of_one_task_id_end_their_own_runs() -> None:
    app = Celery("jpoverlap", broker="memory://", set_as_current=False)

    @app.task(name="jpoverlap.sync", shared=False)  # type: ignore[untyped-decorator]
    def sync() -> None:
        return None

    app.finalize()
    task = app.tasks["jpoverlap.sync"]
    with capture(raise_internal=True) as cap:
        _push(task, retries=0)
        _consumer.on_prerun(task_id="same-id", task=task, args=(), kwargs={})
        first = _consumer.run_of(task.request)
        _push(task, retries=1)  # attempt 2 starts before attempt 1 has ended
        _consumer.on_prerun(task_id="same-id", task=task, args=(), kwargs={})
        second = _consumer.run_of(task.request)
        assert first is not None
        assert second is not None
        assert first is not second
        _consumer.on_postrun(task_id="same-id", task=task, state="SUCCESS")
        task.pop_request()
        assert second.ended
        assert not first.ended  # still running: not ended by the other attempt's postrun
        assert _consumer.run_of(task.request) is first
        _consumer.on_postrun(task_id="same-id", task=task, state="FAILURE", retval=ValueError())
        task.pop_request()
        assert first.ended
    by_attempt = {
        s.attributes["jobpulse.attempt"]: s for s in cap.spans if s.name == "jpoverlap.sync"
    }
    assert by_attempt[2].attributes["jobpulse.outcome"] == "success"
    assert by_attempt[1].attributes["jobpulse.outcome"] == "error"
