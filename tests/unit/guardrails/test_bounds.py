"""Enforce mode bounds retries: an attempt cap (budgets > framework > default_budget >
Guardrails.max_attempts, only ever lowering the framework's) and a backoff instead of
an immediate Celery retry. Observe mode changes nothing."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

import jobpulse
from jobpulse import _lifecycle
from jobpulse._config import ConfigurationError
from jobpulse._run import JobRun
from jobpulse.guardrails import Guardrails
from jobpulse.guardrails._bounds import BACKOFF_MAX, backoff, celery_retry, rq_retries
from jobpulse.testing import capture

ENFORCE = Guardrails(enforce=True)


def task(max_retries: int | None = None, default_retry_delay: Any = 0) -> Any:
    return SimpleNamespace(max_retries=max_retries, default_retry_delay=default_retry_delay)


def request(retries: int = 0) -> Any:
    return SimpleNamespace(retries=retries)


@pytest.fixture
def run_of() -> Any:
    """A run of job ``T`` with the budget ``begin_run`` would resolve (not registered:
    these functions only read it)."""

    def make(*, system: str = "celery", attempt: int = 1, framework_budget: Any = None) -> JobRun:
        return JobRun(
            job_name="T", job_id="t-1", run_id=f"r-{attempt}", attempt=attempt, system=system,
            queue="", budget=_lifecycle.resolve_budget("T", None, framework_budget),
            enforce=False, hb_interval=10.0, thread_id=0,
        )  # fmt: skip

    return make


def test_backoff_is_exponential_with_equal_jitter() -> None:
    for retries in range(12):
        ceiling = min(BACKOFF_MAX, 2.0**retries)
        for _ in range(20):
            assert ceiling / 2 <= backoff(retries) <= ceiling
    assert backoff(10_000) <= BACKOFF_MAX


def test_unbounded_celery_task_gets_the_guardrails_default(run_of: Any) -> None:
    with capture(guardrails=Guardrails(enforce=True, max_attempts=4)):
        change = celery_retry(task(None), request(0), run_of(), max_retries=None, countdown=None,
                              eta=None)  # fmt: skip
        assert change is not None
        assert change["max_retries"] == 3  # 4 attempts, the first included
        assert 0.5 <= change["countdown"] <= 1.0  # default_retry_delay=0: not at once


def test_default_is_25_attempts(run_of: Any) -> None:
    assert Guardrails().max_attempts == 25
    with capture(guardrails=ENFORCE):
        change = celery_retry(task(None, 5), request(), run_of(), max_retries=None,
                              countdown=None, eta=None)  # fmt: skip
        assert change == {"max_retries": 24}


def test_budgets_option_beats_celery_but_only_lowers_it(run_of: Any) -> None:
    budgets = {"T": jobpulse.Budget(max_attempts=3)}
    with capture(guardrails=ENFORCE, budgets=budgets):
        run = run_of()
        kw: dict[str, Any] = {"countdown": 10, "eta": None}
        assert celery_retry(task(None), request(), run, max_retries=None, **kw) == {
            "max_retries": 2
        }
        assert celery_retry(task(5), request(), run, max_retries=None, **kw) == {"max_retries": 2}
        assert celery_retry(task(1), request(), run, max_retries=None, **kw) is None  # 2 < 3
    budgets = {"T": jobpulse.Budget(max_attempts=10)}
    with capture(guardrails=ENFORCE, budgets=budgets):
        assert celery_retry(task(3), request(), run_of(), max_retries=None, **kw) is None


def test_celery_bound_at_retry_time_counts(run_of: Any) -> None:
    """``self.retry(max_retries=10)`` is Celery's bound for this call, not the task's 3."""
    with capture(guardrails=ENFORCE):
        run = run_of()
        assert celery_retry(task(3), request(), run, max_retries=10, countdown=1, eta=None) is None
        assert celery_retry(task(None), request(), run, max_retries=2, countdown=1,
                            eta=None) is None  # fmt: skip


def test_default_budget_comes_after_celery(run_of: Any) -> None:
    with capture(guardrails=ENFORCE, default_budget=jobpulse.Budget(max_attempts=6)):
        run = run_of()
        kw: dict[str, Any] = {"max_retries": None, "countdown": 1, "eta": None}
        assert celery_retry(task(None), request(), run, **kw) == {"max_retries": 5}
        assert celery_retry(task(8), request(), run, **kw) is None


@pytest.mark.parametrize(
    ("countdown", "eta", "delay", "backs_off"),
    [
        (None, None, 0, True),
        (0, None, 180, True),
        (None, None, None, True),
        (None, None, 180, False),  # Celery waits default_retry_delay
        (5, None, 0, False),
        (None, "2030-01-01T00:00:00", 0, False),
    ],
)
def test_only_an_immediate_retry_gets_a_backoff(
    run_of: Any, countdown: Any, eta: Any, delay: Any, backs_off: bool
) -> None:
    with capture(guardrails=ENFORCE):
        change = celery_retry(task(3, delay), request(3), run_of(), max_retries=None,
                              countdown=countdown, eta=eta)  # fmt: skip
        if backs_off:
            assert change is not None
            assert 4.0 <= change["countdown"] <= 8.0  # the 4th retry
        else:
            assert change is None


def test_observe_mode_changes_nothing(run_of: Any) -> None:
    with capture(budgets={"T": jobpulse.Budget(max_attempts=2)}):
        assert celery_retry(task(None), request(), run_of(), max_retries=None, countdown=0,
                            eta=None) is None  # fmt: skip
        job = SimpleNamespace(retries_left=5)
        rq_retries(job, run_of(system="rq", framework_budget=jobpulse.Budget(max_attempts=6)))
        assert job.retries_left == 5


def test_rq_stops_at_the_jobpulse_budget(run_of: Any) -> None:
    with capture(guardrails=ENFORCE, budgets={"T": jobpulse.Budget(max_attempts=3)}):
        framework = jobpulse.Budget(max_attempts=6)  # attempt 2, 4 retries left
        job = SimpleNamespace(retries_left=4)
        rq_retries(job, run_of(system="rq", attempt=2, framework_budget=framework))
        assert job.retries_left == 1
        job = SimpleNamespace(retries_left=4)
        rq_retries(job, run_of(system="rq", attempt=4, framework_budget=framework))
        assert job.retries_left == 0
    with capture(guardrails=ENFORCE):  # RQ's own bound: unchanged
        job = SimpleNamespace(retries_left=4)
        rq_retries(job, run_of(system="rq", attempt=2, framework_budget=framework))
        assert job.retries_left == 4
        job = SimpleNamespace(retries_left=None)
        rq_retries(job, run_of(system="rq"))
        assert job.retries_left is None


@pytest.mark.parametrize("bad", [0, -1, 2.5, True, "25", None])
def test_max_attempts_is_validated(bad: Any) -> None:
    with pytest.raises(ValueError, match=r"Guardrails\.max_attempts must be a whole number >= 1"):
        Guardrails(max_attempts=bad)
    with pytest.raises(ConfigurationError, match="max_attempts"):
        jobpulse.instrument(guardrails={"max_attempts": bad}, configure_otel=False)


class _Retry(Exception):
    pass


@pytest.mark.parametrize(
    ("prior", "caller_max", "left"),
    [(None, None, None), (7, None, 7), (None, 4, 4), (7, 4, 4)],
)
def test_celery_override_max_retries_is_left_as_the_callers_call_would(
    prior: int | None, caller_max: int | None, left: int | None
) -> None:
    """Celery's Task.retry stores a given max_retries on the task (autoretry_for reuses it
    for later runs): jobpulse's bounded value must not stay there."""
    pytest.importorskip("celery")
    from jobpulse.adapters.celery._consumer import _retry_bounded

    def original(task: Any, args: Any, kwargs: Any, exc: Any, **options: Any) -> Any:
        if options.get("max_retries") is not None:  # what Celery does
            task.override_max_retries = options["max_retries"]
        raise _Retry

    fake = SimpleNamespace()
    if prior is not None:
        fake.override_max_retries = prior
    with pytest.raises(_Retry):
        _retry_bounded(original, fake, None, None, None, {"max_retries": 2}, caller_max)
    assert getattr(fake, "override_max_retries", None) == left
