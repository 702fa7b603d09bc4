"""Job metrics: names, units, attributes, zero series, caps and gauges per the contract."""

from __future__ import annotations

import pytest

import jobpulse
from jobpulse import _lifecycle, _names
from jobpulse.testing import capture


def _metric_defs(cap: object) -> dict[str, object]:
    data = cap.metric_reader.get_metrics_data()  # type: ignore[attr-defined]
    out = {}
    for rm in data.resource_metrics:
        for sm in rm.scope_metrics:
            assert sm.scope.name == "jobpulse"
            for m in sm.metrics:
                out[m.name] = m
    return out


def test_names_units_and_buckets_match_the_contract() -> None:
    with capture() as cap:

        @jobpulse.job("J")
        def j() -> None:
            with jobpulse.dependency("d", timeout=1):
                pass

        j()
        defs = _metric_defs(cap)
        expected = {
            _names.M_RUNS, _names.M_DURATION, _names.M_DEP_DURATION, _names.M_LAST_SUCCESS,
        }  # fmt: skip
        for name, unit, _ in expected:
            assert defs[name].unit == unit, name
        duration = defs["jobpulse.job.duration"].data.data_points[0]
        assert tuple(duration.explicit_bounds) == _names.DURATION_BUCKETS


def test_every_allowed_outcome_action_series_starts_at_zero() -> None:
    with capture() as cap:

        @jobpulse.job("J")
        def j() -> None:
            pass

        j()
        points = cap.metrics()["jobpulse.job.runs"]
        pairs = {
            (p.attributes["jobpulse.outcome"], p.attributes["jobpulse.action"]): p.value
            for p in points
        }
        assert len(pairs) == 16
        assert pairs[("success", "none")] == 1
        assert pairs[("error", "retry")] == 0
        assert pairs[("cancelled", "retry")] == 0
        assert ("success", "retry") not in pairs
        for p in points:
            assert set(p.attributes) == {
                "jobpulse.job.name", "jobpulse.system", "jobpulse.queue.name",
                "jobpulse.outcome", "jobpulse.action",
            }  # fmt: skip
            assert p.attributes["jobpulse.queue.name"] == ""


def test_error_types_are_capped_per_job() -> None:
    with capture() as cap:
        for i in range(60):
            _lifecycle.count_run(
                "J", system="celery", queue="q", outcome="error", action="stop", error_type=f"E{i}"
            )
        types = {p.attributes["error.type"] for p in cap.metrics()["jobpulse.job.errors"]}
        assert len(types) == 51
        assert "_OTHER" in types


def test_dependency_names_are_capped() -> None:
    with capture() as cap:
        for i in range(110):
            with jobpulse.dependency(f"dep{i}", timeout=1):
                pass
        names = {
            p.attributes["jobpulse.dependency.name"]
            for p in cap.metrics()["jobpulse.dependency.duration"]
        }
        assert len(names) == 101
        assert "_OTHER" in names


def test_lost_runs_record_no_duration_and_record_run_counts_once() -> None:
    with capture() as cap:
        _lifecycle.record_run(
            "tasks.crunch", system="celery", queue="default", outcome="lost", action="stop",
            job_id="abc", attempt=2, started_at=None,
        )  # fmt: skip
        runs = cap.metric(
            "jobpulse.job.runs", **{"jobpulse.outcome": "lost", "jobpulse.action": "stop"}
        )
        assert runs == 1
        assert cap.metric("jobpulse.job.duration", **{"jobpulse.outcome": "lost"}) is None
        (span,) = cap.run_spans()
        assert span.attributes["error.type"] == "lost"
        assert span.attributes["jobpulse.attempt"] == 2


def test_first_recorder_wins() -> None:
    with capture() as cap:
        run = _lifecycle.begin_run("J", system="celery", queue="q")
        _lifecycle.end_run(run, "timeout", "retry")
        _lifecycle.end_run(run, "error", "stop")
        assert cap.metric("jobpulse.job.runs", **{"jobpulse.outcome": "timeout"}) == 1
        assert cap.metric("jobpulse.job.runs", **{"jobpulse.outcome": "error"}) == 0


def test_illegal_pairs_are_coerced_to_what_an_operator_expects() -> None:
    with capture() as cap:
        _lifecycle.count_run("J", system="rq", outcome="success", action="retry")
        _lifecycle.count_run("J", system="rq", outcome="error", action="none")
        assert (
            cap.metric(
                "jobpulse.job.runs", **{"jobpulse.outcome": "success", "jobpulse.action": "none"}
            )
            == 1
        )
        assert (
            cap.metric(
                "jobpulse.job.runs", **{"jobpulse.outcome": "error", "jobpulse.action": "stop"}
            )
            == 1
        )


def test_queue_wait_is_clamped_and_recorded() -> None:
    with capture() as cap:
        run = _lifecycle.begin_run("J", system="rq", queue="q", queue_wait=-3.0)
        _lifecycle.end_run(run, "success")
        (span,) = cap.run_spans()
        assert span.attributes["jobpulse.queue.wait"] == 0.0
        assert cap.metric("jobpulse.job.queue.wait", **{"jobpulse.queue.name": "q"}) == 1


def test_last_success_timestamp_is_unix_seconds() -> None:
    import time

    with capture() as cap:
        _lifecycle.count_run("J", system="rq", queue="q", outcome="success")
        ts = cap.metric("jobpulse.job.last_success.timestamp", **{"jobpulse.job.name": "J"})
        assert ts is not None
        assert abs(ts - time.time()) < 60


@pytest.mark.parametrize("outcome", ["error", "timeout", "lost"])
def test_failed_outcomes_without_exception_use_the_outcome_as_error_type(outcome: str) -> None:
    with capture() as cap:
        _lifecycle.count_run("J", system="rq", outcome=outcome, action="stop")
        assert cap.metric("jobpulse.job.errors", **{"error.type": outcome}) == 1
