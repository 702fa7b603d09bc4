"""jobpulse never changes a job's result; its own failures are counted, not raised."""

from __future__ import annotations

import pytest

import jobpulse
from jobpulse import _guard, _runtime
from jobpulse.testing import capture


class Unprintable(Exception):
    def __str__(self) -> str:
        raise RuntimeError("__str__ is broken too")


def test_exception_whose_str_raises_is_recorded_and_re_raised() -> None:
    with capture() as cap:

        @jobpulse.job
        def bad() -> None:
            raise Unprintable()

        with pytest.raises(Unprintable):
            bad()
        run = cap.run_spans()[0]
        assert run.attributes["jobpulse.outcome"] == "error"
        assert "unprintable" in (run.status.description or "")


def test_huge_and_odd_heartbeat_details_are_bounded() -> None:
    with capture() as cap:

        @jobpulse.job
        def odd() -> None:
            jobpulse.heartbeat(processed=1, blob="x" * 1_000_000, obj=object(), bad=Unprintable())

        odd()
        event = next(e for e in cap.run_spans()[0].events if e.name == "jobpulse.heartbeat")
        assert len(event.attributes["jobpulse.detail.blob"]) <= 256
        assert "unprintable" in event.attributes["jobpulse.detail.bad"]


@pytest.mark.allow_internal_errors
def test_a_failing_metric_pipeline_does_not_change_the_result(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with capture() as cap:
        rt = _runtime.get()
        assert rt is not None

        def broken(*args: object, **kwargs: object) -> None:
            raise RuntimeError("exporter exploded")

        monkeypatch.setattr(rt.instruments, "record_run", broken)
        before = _guard.counts().get("run.end", 0)

        @jobpulse.job
        def work() -> int:
            return 42

        assert work() == 42
        assert work() == 42
        assert _guard.counts()["run.end"] == before + 2
        assert cap.metric("jobpulse.telemetry.errors", **{"jobpulse.component": "run.end"}) == 2
        # Logged once, not per failure.
        assert sum("internal failure in run.end" in r.getMessage() for r in cap.logs) <= 1


def test_the_test_suite_makes_internal_failures_raise(monkeypatch: pytest.MonkeyPatch) -> None:
    with capture(raise_internal=True):
        rt = _runtime.get()
        assert rt is not None
        monkeypatch.setattr(
            rt.instruments, "record_run", lambda *a, **k: (_ for _ in ()).throw(RuntimeError("x"))
        )

        @jobpulse.job
        def work() -> int:
            return 1

        with pytest.raises(RuntimeError, match="x"):
            work()
    _guard._counts.pop("run.end", None)


def test_passthrough_exceptions_are_not_swallowed() -> None:
    class SoftTimeLimit(Exception):
        pass

    _guard.add_passthrough(SoftTimeLimit)
    with pytest.raises(SoftTimeLimit), _guard.never_raise("x"):
        raise SoftTimeLimit()


def test_budget_exceeded_pickles_under_its_public_name() -> None:
    import pickle

    exc = jobpulse.BudgetExceeded("tasks.export", "max_runtime", 300, 301.5)
    again = pickle.loads(pickle.dumps(exc))
    assert type(again) is jobpulse.BudgetExceeded
    assert (again.job, again.reason, again.limit, again.elapsed) == (
        "tasks.export",
        "max_runtime",
        300,
        301.5,
    )
    assert type(exc).__module__ == "jobpulse"
