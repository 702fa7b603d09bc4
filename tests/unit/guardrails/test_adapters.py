"""The ready-made adapter calls (``guardrails._adapters``) do no work in observe mode
and never fail on odd task arguments."""

from __future__ import annotations

from jobpulse import _lifecycle
from jobpulse.guardrails._adapters import _jsonable, celery_failed, rq_failed
from jobpulse.testing import capture


class _Untouchable:
    """A Celery request whose arguments must not be read."""

    id = "t-1"
    retries = 0

    @property
    def args(self) -> list[object]:
        raise AssertionError("observe mode read the task's arguments")

    kwargs = args


def test_observe_mode_reads_no_task_arguments() -> None:
    with capture():
        run = _lifecycle.begin_run("J", system="celery", job_id="t-1")
        assert celery_failed(object(), _Untouchable(), run, PermissionError("no")) is None
        assert rq_failed(_Untouchable(), run, PermissionError("no")) is None
        _lifecycle.end_run(run, "error", "stop", PermissionError("no"))


def test_arguments_nested_too_deep_are_not_stored_for_release() -> None:
    deep: list[object] = []
    for _ in range(100_000):
        deep = [deep]
    assert _jsonable(deep) is None
    assert _jsonable([1, {"a": "b"}]) == [1, {"a": "b"}]
