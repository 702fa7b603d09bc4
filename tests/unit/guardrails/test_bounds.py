"""Enforce mode bounds retries: an attempt cap (budgets > framework > default_budget >
Guardrails.max_attempts, only ever lowering the framework's), passed to Celery only on
the attempt that must not be retried, and a backoff instead of an immediate Celery
retry. RQ retries keep their intervals. Observe mode changes nothing."""

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


def task(max_retries: Any = None, default_retry_delay: Any = 0, **more: Any) -> Any:
    return SimpleNamespace(max_retries=max_retries, default_retry_delay=default_retry_delay, **more)


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
    """``max_retries`` is passed only on the last attempt the budget allows (Celery then
    raises before sending anything); earlier attempts only get a backoff."""
    with capture(guardrails=Guardrails(enforce=True, max_attempts=4)):
        for retries in (0, 1, 2):
            change = celery_retry(task(None), request(retries), run_of(), max_retries=None,
                                  countdown=None, eta=None)  # fmt: skip
            assert change is not None
            assert set(change) == {"countdown"}
            assert 2.0**retries / 2 <= change["countdown"] <= 2.0**retries
        change = celery_retry(task(None), request(3), run_of(attempt=4), max_retries=None,
                              countdown=None, eta=None)  # fmt: skip
        assert change == {"max_retries": 3}  # 4 attempts, the first included: 3 > 3 stops


def test_default_is_25_attempts(run_of: Any) -> None:
    assert Guardrails().max_attempts == 25
    with capture(guardrails=ENFORCE):
        kw: dict[str, Any] = {"max_retries": None, "countdown": None, "eta": None}
        assert celery_retry(task(None, 5), request(23), run_of(), **kw) is None
        assert celery_retry(task(None, 5), request(24), run_of(), **kw) == {"max_retries": 24}
        assert celery_retry(task(None, 5), request(40), run_of(), **kw) == {"max_retries": 24}


def test_budgets_option_beats_celery_but_only_lowers_it(run_of: Any) -> None:
    budgets = {"T": jobpulse.Budget(max_attempts=3)}
    kw: dict[str, Any] = {"countdown": 10, "eta": None}
    with capture(guardrails=ENFORCE, budgets=budgets):
        run = run_of()
        assert celery_retry(task(None), request(1), run, max_retries=None, **kw) is None
        assert celery_retry(task(None), request(2), run, max_retries=None, **kw) == {
            "max_retries": 2
        }
        assert celery_retry(task(5), request(2), run, max_retries=None, **kw) == {"max_retries": 2}
        assert celery_retry(task(1), request(2), run, max_retries=None, **kw) is None  # 2 < 3
    budgets = {"T": jobpulse.Budget(max_attempts=10)}
    with capture(guardrails=ENFORCE, budgets=budgets):
        assert celery_retry(task(3), request(3), run_of(), max_retries=None, **kw) is None


def test_celery_bound_at_retry_time_counts(run_of: Any) -> None:
    """``self.retry(max_retries=10)`` is Celery's bound for this call, not the task's 3."""
    with capture(guardrails=ENFORCE):
        run = run_of()
        assert celery_retry(task(3), request(5), run, max_retries=10, countdown=1,
                            eta=None) is None  # fmt: skip
        assert celery_retry(task(None), request(2), run, max_retries=2, countdown=1,
                            eta=None) is None  # fmt: skip


@pytest.mark.parametrize(("max_retries", "attempts"), [(3.0, 4), (2.5, 3), (0, 1), (0.0, 1)])
def test_any_finite_max_retries_is_celerys_bound(
    run_of: Any, max_retries: float, attempts: int
) -> None:
    """Celery stops when ``retries > max_retries``: 3.0 allows 3 retries, 2.5 allows 2.
    jobpulse must not read them as "unbounded" and pass its higher default."""
    kw: dict[str, Any] = {"countdown": 1, "eta": None}
    with capture(guardrails=ENFORCE):
        for retries in range(30):
            assert celery_retry(task(max_retries), request(retries), run_of(),
                                max_retries=None, **kw) is None  # fmt: skip
            assert celery_retry(task(None), request(retries), run_of(),
                                max_retries=max_retries, **kw) is None  # fmt: skip
    with capture(guardrails=ENFORCE, budgets={"T": jobpulse.Budget(max_attempts=1)}):
        expected = None if attempts == 1 else {"max_retries": 0}  # only ever lowered
        assert celery_retry(task(max_retries), request(0), run_of(), max_retries=None,
                            **kw) == expected  # fmt: skip


@pytest.mark.parametrize("odd", [-1, -0.5, float("nan"), "3", True, object()])
def test_an_unreadable_max_retries_leaves_the_call_unchanged(run_of: Any, odd: Any) -> None:
    with capture(guardrails=Guardrails(enforce=True, max_attempts=2)):
        for retries in (0, 1, 5):
            assert celery_retry(task(odd), request(retries), run_of(), max_retries=None,
                                countdown=0, eta=None) is None  # fmt: skip
            assert celery_retry(task(3), request(retries), run_of(), max_retries=odd,
                                countdown=0, eta=None) is None  # fmt: skip


def test_infinite_max_retries_is_unbounded(run_of: Any) -> None:
    with capture(guardrails=Guardrails(enforce=True, max_attempts=2)):
        assert celery_retry(task(float("inf")), request(1), run_of(), max_retries=None,
                            countdown=1, eta=None) == {"max_retries": 1}  # fmt: skip


def test_default_budget_comes_after_celery(run_of: Any) -> None:
    with capture(guardrails=ENFORCE, default_budget=jobpulse.Budget(max_attempts=6)):
        run = run_of()
        kw: dict[str, Any] = {"max_retries": None, "countdown": 1, "eta": None}
        assert celery_retry(task(None), request(4), run, **kw) is None
        assert celery_retry(task(None), request(5), run, **kw) == {"max_retries": 5}
        assert celery_retry(task(8), request(5), run, **kw) is None


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


def test_backoff_stays_under_the_tasks_retry_backoff_max(run_of: Any) -> None:
    """A task with ``retry_backoff`` keeps its autoretry countdowns under
    ``retry_backoff_max``; when its full jitter draws 0, jobpulse's backoff does too."""
    for retries in (0, 3, 10):
        assert backoff(retries, maximum=3.0) <= 3.0
    assert backoff(5, maximum=0.0) == 0.0
    kw: dict[str, Any] = {"max_retries": None, "countdown": 0, "eta": None}
    with capture(guardrails=ENFORCE):
        capped = task(3, retry_backoff=True, retry_backoff_max=3)
        for _ in range(20):
            change = celery_retry(capped, request(2), run_of(), **kw)
            assert change is not None
            assert 1.5 <= change["countdown"] <= 3.0
        no_wait = task(3, retry_backoff=True, retry_backoff_max=0)
        assert celery_retry(no_wait, request(2), run_of(), **kw) is None  # as Celery would
        not_asked = task(3, retry_backoff=False, retry_backoff_max=3)  # not the task's cap
        change = celery_retry(not_asked, request(2), run_of(), **kw)
        assert change is not None
        assert 2.0 <= change["countdown"] <= 4.0


def test_observe_mode_changes_nothing(run_of: Any) -> None:
    with capture(budgets={"T": jobpulse.Budget(max_attempts=2)}):
        for retries in (0, 1, 5):
            assert celery_retry(task(None), request(retries), run_of(), max_retries=None,
                                countdown=0, eta=None) is None  # fmt: skip
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


def _delays(job: Any) -> list[int]:
    """The delays RQ will wait before each retry left, as ``Job.retry`` picks them."""
    rq_job = pytest.importorskip("rq.job")
    job = SimpleNamespace(retry_intervals=job.retry_intervals, retries_left=job.retries_left)
    out = []
    while job.retries_left:
        out.append(rq_job.Job.get_retry_interval(job))
        job.retries_left -= 1
    return out


@pytest.mark.parametrize(
    ("intervals", "retries_left", "attempt"),
    [
        ([10, 20, 30, 40, 50], 5, 1),
        ([10, 20, 30, 40, 50], 3, 3),
        ([10, 20], 5, 1),  # fewer intervals than retries: RQ repeats the first
        ([10, 20], 4, 2),
        ([7], 6, 1),
        ([10, 20, 30, 40, 50, 60, 70], 5, 1),  # more intervals than retries
    ],
)
def test_rq_retries_keep_their_intervals(
    run_of: Any, intervals: list[int], retries_left: int, attempt: int
) -> None:
    """RQ picks ``intervals[len(intervals) - retries_left]``: lowering ``retries_left``
    alone would jump to later intervals. The retries left wait what they would have."""
    framework = jobpulse.Budget(max_attempts=attempt + retries_left)
    original = _delays(SimpleNamespace(retry_intervals=intervals, retries_left=retries_left))
    with capture(guardrails=ENFORCE, budgets={"T": jobpulse.Budget(max_attempts=attempt + 2)}):
        job = SimpleNamespace(retries_left=retries_left, retry_intervals=list(intervals))
        rq_retries(job, run_of(system="rq", attempt=attempt, framework_budget=framework))
        assert job.retries_left == 2
        assert _delays(job) == original[:2]
    with capture(guardrails=ENFORCE, budgets={"T": jobpulse.Budget(max_attempts=attempt)}):
        job = SimpleNamespace(retries_left=retries_left, retry_intervals=list(intervals))
        rq_retries(job, run_of(system="rq", attempt=attempt, framework_budget=framework))
        assert job.retries_left == 0
        assert job.retry_intervals == intervals  # no retry left: nothing to keep
    with capture(guardrails=ENFORCE):  # RQ's own bound: the intervals are RQ's
        job = SimpleNamespace(retries_left=retries_left, retry_intervals=list(intervals))
        rq_retries(job, run_of(system="rq", attempt=attempt, framework_budget=framework))
        assert (job.retries_left, job.retry_intervals) == (retries_left, intervals)


def test_rq_retries_without_intervals(run_of: Any) -> None:
    with capture(guardrails=ENFORCE, budgets={"T": jobpulse.Budget(max_attempts=2)}):
        job = SimpleNamespace(retries_left=4, retry_intervals=None)
        rq_retries(job, run_of(system="rq"))
        assert (job.retries_left, job.retry_intervals) == (1, None)


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
    from jobpulse.adapters.celery._retry import _retry_capped

    def original(task: Any, args: Any, kwargs: Any, exc: Any, **options: Any) -> Any:
        if options.get("max_retries") is not None:  # what Celery does
            task.override_max_retries = options["max_retries"]
        raise _Retry

    fake = SimpleNamespace()
    if prior is not None:
        fake.override_max_retries = prior
    with pytest.raises(_Retry):
        _retry_capped(original, fake, None, None, None, {"max_retries": 2}, caller_max)
    assert getattr(fake, "override_max_retries", None) == left
